package queue

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// OutboxRow is a stored outbox message. Seq increases with every row.
type OutboxRow struct {
	Seq       uint64
	Topic     string
	Payload   []byte
	CreatedAt time.Time
}

// outboxLocked appends out to the outbox in b.
func (q *Queue) outboxLocked(b *batch, out []OutboxMsg, now int64) {
	for _, m := range out {
		q.st.seq++
		row := outboxRow{CreatedAt: now, Topic: m.Topic, Payload: m.Payload}
		if err := b.set(outboxKey(q.st.seq, now), encodeOutbox(&row)); err != nil {
			b.failed = err
			return
		}
		q.st.outbox = append(q.st.outbox, outRef{seq: q.st.seq, created: now})
		q.st.outCount++
		b.notify = true
	}
}

// OutboxAppend appends msgs to the outbox durably (one commit for all).
func (q *Queue) OutboxAppend(ctx context.Context, msgs ...OutboxMsg) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := validOutbox(msgs); err != nil {
		return err
	}
	return q.write(int64(len(msgs)), outboxSize(msgs), func(b *batch) (bool, error) {
		b.n++
		q.outboxLocked(b, msgs, q.now().UnixNano())
		return true, nil
	})
}

// OutboxPeek returns up to n of the oldest committed outbox rows, oldest first.
// A row that cannot be decoded is set aside and skipped.
func (q *Queue) OutboxPeek(n int) ([]OutboxRow, error) {
	if n <= 0 {
		return nil, nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	var start []byte
	if q.st.outHead < len(q.st.outbox) {
		r := q.st.outbox[q.st.outHead]
		start = outboxKey(r.seq, r.created)
	}
	q.mu.Unlock()
	if start == nil {
		return nil, nil
	}
	var rows []OutboxRow
	var damaged [][]byte
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(n, 100), Prefix: []byte{pfxOutbox}})
		defer it.Close()
		for it.Seek(start); it.Valid() && len(rows) < n; it.Next() {
			item := it.Item()
			seq, _, ok := parseOutboxKey(item.Key())
			if !ok {
				continue
			}
			err := item.Value(func(v []byte) error {
				r, err := decodeOutbox(v)
				if err != nil {
					damaged = append(damaged, item.KeyCopy(nil))
					return nil
				}
				rows = append(rows, OutboxRow{Seq: seq, Topic: r.Topic, Payload: r.Payload, CreatedAt: time.Unix(0, r.CreatedAt)})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	if len(damaged) > 0 {
		if err := q.setAside(damaged); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// setAside moves the outbox rows under keys to the damaged prefix.
func (q *Queue) setAside(keys [][]byte) error {
	return q.write(int64(2*len(keys)), int64(len(keys))*4096, func(b *batch) (bool, error) {
		for _, k := range keys {
			item, err := b.txn.Get(k)
			if err != nil {
				continue
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				continue
			}
			seq, _, _ := parseOutboxKey(k)
			if !q.dropOutboxRef(seq) {
				continue
			}
			b.n++
			q.log.Error("queue outbox row damaged, set aside", "seq", seq, "size", len(val))
			q.st.seq++
			if err := b.set(damagedKey(q.st.seq, k), val); err != nil {
				b.failed = err
			}
			if err := b.del(k); err != nil {
				b.failed = err
			}
			q.st.damaged++
		}
		return true, nil
	})
}

// dropOutboxRef marks seq deleted in the in-memory outbox order; false when
// it is not there.
func (q *Queue) dropOutboxRef(seq uint64) bool {
	o := q.st.outbox
	i := sort.Search(len(o), func(i int) bool { return o[i].seq >= seq })
	if i < q.st.outHead || i >= len(o) || o[i].seq != seq || o[i].deleted {
		return false
	}
	o[i].deleted = true
	q.st.outCount--
	for q.st.outHead < len(o) && o[q.st.outHead].deleted {
		q.st.outHead++
	}
	if q.st.outHead > 1024 && q.st.outHead > len(o)/2 {
		q.st.outbox = slices.Clone(o[q.st.outHead:])
		q.st.outHead = 0
	}
	return true
}

// OutboxDelete removes published rows. Unknown seqs are ignored.
func (q *Queue) OutboxDelete(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return q.write(int64(len(seqs)), int64(len(seqs))*64, func(b *batch) (bool, error) {
		k := 0
		for _, s := range seqs {
			o := q.st.outbox
			i := sort.Search(len(o), func(i int) bool { return o[i].seq >= s })
			if i >= len(o) || o[i].seq != s || o[i].deleted {
				continue
			}
			created := o[i].created
			q.dropOutboxRef(s)
			b.n++
			k++
			if err := b.del(outboxKey(s, created)); err != nil {
				b.failed = err
			}
		}
		return k > 0, nil
	})
}

// OutboxNotify is signalled (capacity 1, never blocks the queue) after
// outbox rows were committed.
func (q *Queue) OutboxNotify() <-chan struct{} { return q.outNotify }
