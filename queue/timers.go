package queue

// Timers: lease expiry, retry wake-ups, value-log GC and the ballast file,
// run by Run.

import (
	"context"
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
)

// Run expires leases, wakes delayed jobs and runs value-log GC until ctx is
// done (it returns nil) or the queue is closed (ErrClosed).
func (q *Queue) Run(ctx context.Context) error {
	// Close waits for Run's work (GC, the ballast file) to end before it closes the
	// database and returns.
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.running.Add(1)
	q.mu.Unlock()
	defer q.running.Done()
	gc := time.NewTicker(q.opts.GCInterval)
	defer gc.Stop()
	tick := time.NewTicker(min(time.Second, q.opts.LeaseTimeout/4+time.Millisecond))
	defer tick.Stop()
	ballast := time.NewTicker(10 * time.Second)
	defer ballast.Stop()
	q.keepBallast()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.closing:
			return ErrClosed
		case <-tick.C:
			q.mu.Lock()
			if !q.closed {
				q.promoteLocked(q.now().UnixNano())
			}
			q.mu.Unlock()
		case <-gc.C:
			q.runGC()
		case <-ballast.C:
			q.keepBallast()
		}
	}
}

// keepBallast writes the ballast file when it is missing and there is room.
func (q *Queue) keepBallast() {
	if q.opts.testBallast != nil {
		q.opts.testBallast()
	}
	if err := q.disk.keepBallast(); err != nil {
		q.log.Warn("queue ballast file", logkey.Err, err)
	}
}

// runGC rewrites value-log files while Badger finds enough garbage.
func (q *Queue) runGC() {
	n := 0
	for n < 16 {
		select {
		case <-q.closing:
			return
		default:
		}
		if err := q.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				q.log.Warn("queue value-log GC failed", logkey.Err, err)
			}
			break
		}
		n++
		// GC's rewrites bypass the journal: make them durable now.
		q.mu.Lock()
		if !q.closed {
			if err := q.checkpointLocked(); err != nil {
				q.log.Error("queue checkpoint after value-log GC failed", logkey.Err, err)
			}
		}
		q.mu.Unlock()
	}
	if n > 0 {
		q.log.Debug("queue value-log GC", "rewritten", n)
	}
}

// promoteLocked returns expired leases' jobs to their place and moves delayed
// jobs whose time has come to ready.
func (q *Queue) promoteLocked(now int64) {
	woke := false
	for id, l := range q.st.leases {
		if l.deadline <= now {
			delete(q.st.leases, id)
			q.st.ready[l.rec.Priority].push(entry{seq: l.rec.Seq, enq: l.rec.EnqueuedAt, id: id})
			q.log.Warn("queue lease expired, job returned", logkey.JobID, id, logkey.Attempt, l.rec.Attempt)
			woke = true
		}
	}
	for len(q.st.delayed) > 0 && q.st.delayed[0].due <= now {
		d := q.st.delayed.pop()
		q.st.ready[d.prio].push(d.e)
		woke = true
	}
	if woke {
		q.broadcastLocked()
	}
}

// nextWakeLocked is when the next delayed job or lease deadline falls due
// (Unix ns), or 0 when nothing is pending.
func (q *Queue) nextWakeLocked() int64 {
	var t int64
	if len(q.st.delayed) > 0 {
		t = q.st.delayed[0].due
	}
	for _, l := range q.st.leases {
		if t == 0 || l.deadline < t {
			t = l.deadline
		}
	}
	return t
}
