package queue

// Jobs: looking jobs up by id and listing them, for operators (the control
// API's `inferq jobs` and `inferq job ID`). Reads only; a listing is one
// Badger read transaction, consistent in itself, and states are as the
// running queue sees them (a job of a previous process's lease is ready).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
)

// ErrNotFound is returned by Get for an id the queue neither holds nor
// remembers as done.
var ErrNotFound = errors.New("job not found")

// JobInfo is a job as an operator sees it.
type JobInfo struct {
	Job
	State      string    // ready, delayed, leased, dead, or done
	Due        time.Time // delayed: when it becomes ready again
	LeaseUntil time.Time // leased: the lease deadline
	DeadReason string
	DiedAt     time.Time
	DoneAt     time.Time // done: when it was acked (within the dedupe window)
	Result     []byte    // done: the kept result (OutboxMsg.Keep), while retained
}

// JobFilter selects jobs for Jobs; zero fields select all.
type JobFilter struct {
	State  string // ready, delayed, leased or dead
	Source string
	Limit  int // at most this many (0: 1000)
}

// Get returns the job id: held (ready, delayed, leased, dead), or done
// within the dedupe window (State "done", the rest empty). ErrNotFound
// otherwise.
func (q *Queue) Get(id string) (JobInfo, error) {
	if err := validID(id); err != nil {
		return JobInfo{}, err
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return JobInfo{}, ErrClosed
	}
	lease := q.st.leases[id]
	q.mu.Unlock()
	now := q.now()
	var info JobInfo
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(idKey(pfxJob, id))
		if err == nil {
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("%w: job %s", ErrDamaged, id)
			}
			info = jobInfo(id, rec, lease, now)
			return nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		item, err = txn.Get(idKey(pfxDone, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error {
			at, ok := decodeDone(v)
			if !ok || now.UnixNano()-at >= int64(q.opts.DedupeWindow) {
				return ErrNotFound
			}
			info = JobInfo{Job: Job{ID: id}, State: "done", DoneAt: time.Unix(0, at)}
			return nil
		}); err != nil {
			return err
		}
		info.Result, err = q.result(txn, id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDamaged) {
			return JobInfo{}, err
		}
		return JobInfo{}, fmt.Errorf("cannot look up job %s: %w", id, err)
	}
	return info, nil
}

// Jobs lists held jobs matching f, highest priority first and, within a
// priority, in queue order (dead jobs with their priority).
func (q *Queue) Jobs(f JobFilter) ([]JobInfo, error) {
	switch f.State {
	case "", "ready", "delayed", "leased", "dead":
	default:
		return nil, invalidf("state %q: must be ready, delayed, leased or dead", f.State)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	leases := make(map[string]*leaseEntry, len(q.st.leases))
	for id, l := range q.st.leases {
		leases[id] = l
	}
	q.mu.Unlock()
	now := q.now()
	var all []JobInfo
	var seqs []uint64
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxJob}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id, _ := parseIDKey(pfxJob, it.Item().Key())
			var rec *record
			if err := it.Item().Value(func(v []byte) error {
				r, err := decodeRecord(v)
				if err == nil {
					rec = r
				}
				return nil
			}); err != nil {
				return err
			}
			if rec == nil || id == "" || f.Source != "" && rec.Source != f.Source {
				continue
			}
			info := jobInfo(id, rec, leases[id], now)
			if f.State != "" && info.State != f.State {
				continue
			}
			all = append(all, info)
			seqs = append(seqs, rec.Seq)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list jobs: %w", err)
	}
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if all[a].Priority != all[b].Priority {
			return cmp.Compare(all[b].Priority, all[a].Priority)
		}
		return cmp.Compare(seqs[a], seqs[b])
	})
	out := make([]JobInfo, 0, min(limit, len(all)))
	for _, i := range order[:min(limit, len(order))] {
		out = append(out, all[i])
	}
	return out, nil
}

// jobInfo is rec as the running queue sees it: a record marked leased by a
// previous process is ready; a delayed job past its due time is ready.
func jobInfo(id string, rec *record, lease *leaseEntry, now time.Time) JobInfo {
	info := JobInfo{Job: jobOf(id, rec), State: rec.State.String()}
	switch rec.State {
	case stLeased:
		if lease == nil {
			info.State = "ready"
		} else {
			info.LeaseUntil = time.Unix(0, lease.deadline)
		}
	case stDelayed:
		if rec.Due <= now.UnixNano() {
			info.State = "ready"
		} else {
			info.Due = time.Unix(0, rec.Due)
		}
	case stDead:
		info.DeadReason, info.DiedAt = rec.DeadReason, time.Unix(0, rec.DiedAt)
	}
	return info
}

// ErrRunning is returned by Cancel for a job that is leased (running now):
// it is not taken from under the worker.
var ErrRunning = errors.New("job is running")

// SetPriority gives a held job a new priority (MinPriority..MaxPriority). A ready job moves to the
// new priority keeping its original order there; a delayed, dead or leased job
// keeps its state and is ordered by the new priority when it is ready again.
// ErrNotFound for an id that is not held.
func (q *Queue) SetPriority(ctx context.Context, id string, prio int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validID(id); err != nil {
		return err
	}
	if err := CheckPriority(prio); err != nil {
		return err
	}
	return q.write(2, 4096, func(b *batch) (bool, error) {
		rec, err := getRecord(b, id)
		if err != nil {
			return false, err
		}
		if rec == nil {
			return false, ErrNotFound
		}
		old := rec.Priority
		if int(old) == prio {
			return false, nil
		}
		if l, ok := q.st.leases[id]; ok {
			rec = l.rec
		}
		rec.Priority = uint8(prio)
		b.n++
		if err := b.set(idKey(pfxJob, id), encodeRecord(rec)); err != nil {
			b.failed = err
			return true, nil
		}
		if e, ok := q.st.ready[old].removeFunc(func(e entry) bool { return e.id == id }); ok {
			q.st.ready[prio].push(e)
			q.broadcastLocked()
		}
		for i := range q.st.delayed {
			if q.st.delayed[i].e.id == id {
				q.st.delayed[i].prio = uint8(prio)
			}
		}
		return true, nil
	})
}

// Cancel removes a queued, delayed or dead job with its image, for good.
// ErrRunning for a leased job, ErrNotFound for an id that is not held.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validID(id); err != nil {
		return err
	}
	return q.write(4, 4096, func(b *batch) (bool, error) {
		if _, ok := q.st.leases[id]; ok {
			return false, ErrRunning
		}
		rec, err := getRecord(b, id)
		if err != nil {
			return false, err
		}
		if rec == nil {
			return false, ErrNotFound
		}
		b.n++
		switch rec.State {
		case stDead:
			if err := b.del(seqKey(pfxDead, rec.DeadSeq)); err != nil {
				b.failed = err
			}
			q.st.dead--
		default:
			q.st.ready[rec.Priority].removeFunc(func(e entry) bool { return e.id == id })
			q.st.delayed.removeFunc(func(d delayedEntry) bool { return d.e.id == id })
		}
		q.removeJobLocked(b, id, rec)
		q.log.Info("queue job cancelled", logkey.JobID, id)
		return true, nil
	})
}

// getRecord reads id's record in b's transaction: nil when there is none.
func getRecord(b *batch, id string) (*record, error) {
	item, err := b.txn.Get(idKey(pfxJob, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read job: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot read job: %w", err)
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("%w: job %s", ErrDamaged, id)
	}
	return rec, nil
}
