package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// DeadJob is a job in the dead-letter set.
type DeadJob struct {
	Job    Job
	Reason string
	DiedAt time.Time
}

// ListDead returns up to limit dead jobs (all when limit <= 0), oldest death first.
func (q *Queue) ListDead(limit int) ([]DeadJob, error) {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	var out []DeadJob
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: []byte{pfxDead}})
		defer it.Close()
		for it.Rewind(); it.Valid() && (limit <= 0 || len(out) < limit); it.Next() {
			id, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			item, err := txn.Get(idKey(pfxJob, string(id)))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			rec, err := decodeRecord(v)
			if err != nil || rec.State != stDead {
				continue
			}
			out = append(out, DeadJob{Job: jobOf(string(id), rec), Reason: rec.DeadReason, DiedAt: time.Unix(0, rec.DiedAt)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list dead jobs: %w", err)
	}
	return out, nil
}

// deadIDs returns the ids of every dead job.
func (q *Queue) deadIDs() ([]string, error) {
	var ids []string
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfxDead}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			ids = append(ids, string(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list dead jobs: %w", err)
	}
	return ids, nil
}

// RetryDead moves the named dead jobs back to ready with their attempt count
// reset; they keep their original place. With no ids it moves nothing
// (RetryAllDead moves all). It returns how many were moved.
func (q *Queue) RetryDead(ctx context.Context, ids ...string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return q.eachDead(ids, func(b *batch, id string, rec *record) error {
		if err := b.del(seqKey(pfxDead, rec.DeadSeq)); err != nil {
			return err
		}
		rec.State = stReady
		rec.Attempt = 0
		rec.DeadReason, rec.DiedAt, rec.DeadSeq = "", 0, 0
		if err := b.set(idKey(pfxJob, id), encodeRecord(rec)); err != nil {
			return err
		}
		q.st.dead--
		q.st.ready[rec.Priority].push(entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: id})
		q.broadcastLocked()
		return nil
	})
}

// RetryAllDead retries every dead job (RetryDead).
func (q *Queue) RetryAllDead(ctx context.Context) (int, error) {
	ids, err := q.deadIDs()
	if err != nil {
		return 0, err
	}
	return q.RetryDead(ctx, ids...)
}

// PurgeAllDead deletes every dead job (PurgeDead).
func (q *Queue) PurgeAllDead() (int, error) {
	ids, err := q.deadIDs()
	if err != nil {
		return 0, err
	}
	return q.PurgeDead(ids...)
}

// PurgeDead deletes the named dead jobs with their images; with no ids it
// deletes nothing (PurgeAllDead deletes all). It returns how many were deleted.
func (q *Queue) PurgeDead(ids ...string) (int, error) {
	return q.eachDead(ids, func(b *batch, id string, rec *record) error {
		if err := b.del(seqKey(pfxDead, rec.DeadSeq)); err != nil {
			return err
		}
		q.removeJobLocked(b, id, rec)
		q.st.dead--
		return nil
	})
}

// eachDead applies fn to the dead jobs among ids, a chunk per commit.
func (q *Queue) eachDead(ids []string, fn func(b *batch, id string, rec *record) error) (int, error) {
	total := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 256)]
		ids = ids[len(chunk):]
		n := 0
		err := q.write(int64(3*len(chunk)), int64(len(chunk))*4096, func(b *batch) (bool, error) {
			for _, id := range chunk {
				item, err := b.txn.Get(idKey(pfxJob, id))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return false, fmt.Errorf("cannot read dead job: %w", err)
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return false, fmt.Errorf("cannot read dead job: %w", err)
				}
				rec, err := decodeRecord(v)
				if err != nil || rec.State != stDead {
					continue
				}
				b.n++
				n++
				if err := fn(b, id, rec); err != nil {
					b.failed = err
					break
				}
			}
			return n > 0, nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
