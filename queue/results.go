package queue

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Results of done jobs are kept so that a job can be looked up by id after its result
// was published (the old design's per-upload status and result): an OutboxMsg marked
// Keep in Ack or AckNext is also stored under the job's id, in the same commit, for
// ResultMaxAge (capped at DedupeWindow, so a kept result always belongs to a job the
// queue still remembers as done) and while it is among the ResultsKept most recent
// and within ResultsMaxBytes. The oldest results are deleted first, a few per ack.

// maxEvictPerAck bounds the deletions one ack adds, so lowering the limits between runs
// shrinks the kept results over the next acks instead of in one large commit.
const maxEvictPerAck = 4

// keptResult is one kept result in done order.
type keptResult struct {
	id    string
	at    int64 // done time (unix nanos): the key's version when several acks share an id
	bytes int64
}

// resultTTL is how long a kept result lives.
func (o Options) resultTTL() time.Duration {
	return min(o.ResultMaxAge, o.DedupeWindow)
}

func encodeResult(doneAt int64, payload []byte) []byte {
	return append(binary.AppendVarint(nil, doneAt), payload...)
}

func decodeResult(v []byte) (int64, []byte, bool) {
	at, n := binary.Varint(v)
	if n <= 0 {
		return 0, nil, false
	}
	return at, v[n:], true
}

// keepResultsLocked stores the Keep messages of out as job id's result in b and deletes
// the oldest kept results past the limits.
func (q *Queue) keepResultsLocked(b *batch, id string, out []OutboxMsg, now int64) {
	if q.opts.ResultsKept <= 0 {
		return
	}
	for _, m := range out {
		if !m.Keep {
			continue
		}
		e := badger.NewEntry(idKey(pfxResult, id), encodeResult(now, m.Payload)).WithTTL(q.opts.resultTTL())
		if err := b.setEntry(e); err != nil {
			b.failed = err
			return
		}
		q.st.results = append(q.st.results, keptResult{id: id, at: now, bytes: int64(len(m.Payload))})
		q.st.resultBytes += int64(len(m.Payload))
		q.st.resultAt[id] = now
		break // one result per job
	}
	for n := 0; n < maxEvictPerAck && len(q.st.results) > 0; n++ {
		old := q.st.results[0]
		expired := now-old.at >= int64(q.opts.resultTTL())
		if !expired && len(q.st.results) <= q.opts.ResultsKept && q.st.resultBytes <= q.opts.ResultsMaxBytes {
			break
		}
		q.st.results = q.st.results[1:]
		q.st.resultBytes -= old.bytes
		if q.st.resultAt[old.id] != old.at {
			continue // the id was acked again since: its newer result stays
		}
		delete(q.st.resultAt, old.id)
		if !expired { // an expired one Badger drops by itself
			if err := b.del(idKey(pfxResult, old.id)); err != nil {
				b.failed = err
				return
			}
		}
	}
}

// loadResults rebuilds the kept results' order from the stored keys (their expiry
// times give the done order; values are not read).
func loadResults(txn *badger.Txn, st *memState, ttl time.Duration) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxResult}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		id := string(item.Key()[1:])
		at := time.Unix(int64(item.ExpiresAt()), 0).Add(-ttl).UnixNano()
		st.results = append(st.results, keptResult{id: id, at: at, bytes: item.ValueSize()})
		st.resultBytes += item.ValueSize()
		st.resultAt[id] = at
	}
	slices.SortFunc(st.results, func(a, b keptResult) int { return int(a.at - b.at) })
}

// result reads job id's kept result; nil when none is kept.
func (q *Queue) result(txn *badger.Txn, id string) ([]byte, error) {
	item, err := txn.Get(idKey(pfxResult, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	_, p, ok := decodeResult(v)
	if !ok {
		return nil, nil
	}
	return p, nil
}
