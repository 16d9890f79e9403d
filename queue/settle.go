package queue

// Settle: Ack, Nack and Dead of a leased job, each with its outbox rows in
// the same commit.

import (
	"context"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
)

// OutboxMsg is a message to publish, written durably with the operation.
type OutboxMsg struct {
	Topic   string // relative, e.g. "results/cam1"
	Payload []byte
	// Keep, in Ack and AckNext, also keeps Payload as the job's result, which Get
	// returns while it is retained (Options.ResultsKept, ResultsMaxBytes, ResultMaxAge).
	Keep bool
}

// deadLocked moves a job to the dead set in b.
func (q *Queue) deadLocked(b *batch, id string, rec *record, reason string, now int64, out []OutboxMsg) {
	q.st.seq++
	rec.State = stDead
	rec.DeadReason = truncate(reason)
	rec.DiedAt = now
	rec.DeadSeq = q.st.seq
	rec.Due = 0
	if err := b.set(idKey(pfxJob, id), encodeRecord(rec)); err != nil {
		b.failed = err
		return
	}
	if err := b.set(seqKey(pfxDead, rec.DeadSeq), []byte(id)); err != nil {
		b.failed = err
		return
	}
	q.st.dead++
	q.outboxLocked(b, out, now)
}

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	s = s[:maxErrorLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// settle checks that l is the current lease of its job and removes it.
func (q *Queue) settle(l *Lease) (*leaseEntry, error) {
	if q.closed {
		return nil, ErrClosed
	}
	if l == nil {
		return nil, ErrNotLeased
	}
	le, ok := q.st.leases[l.Job.ID]
	if !ok || le.token != l.token {
		return nil, fmt.Errorf("%w: job %q", ErrNotLeased, l.Job.ID)
	}
	if le.deadline <= q.now().UnixNano() {
		q.promoteLocked(q.now().UnixNano())
		return nil, fmt.Errorf("%w: job %q: lease expired", ErrNotLeased, l.Job.ID)
	}
	delete(q.st.leases, l.Job.ID)
	return le, nil
}

// Ack completes a leased job: the job is removed, its id remembered for
// DedupeWindow, and out appended to the outbox, all in one durable commit.
func (q *Queue) Ack(ctx context.Context, l *Lease, out ...OutboxMsg) error {
	if err := validOutbox(out); err != nil {
		return err
	}
	b, err := q.ack(l, out)
	if err != nil {
		return err
	}
	return q.await(b)
}

// AckNext acks l like Ack and, in the same commit, leases the next ready
// job, so a busy worker pays one fsync per job instead of two. The returned
// lease is nil when no job was ready; the caller then blocks in Lease.
func (q *Queue) AckNext(ctx context.Context, l *Lease, out ...OutboxMsg) (*Lease, error) {
	if err := validOutbox(out); err != nil {
		return nil, err
	}
	next, b, err := func() (*Lease, *batch, error) {
		q.enter()
		defer q.leave()
		q.mu.Lock()
		defer q.mu.Unlock()
		b, err := q.ackLocked(l, out)
		if err != nil {
			return nil, nil, err
		}
		st := q.leaseLocked(b)
		if st.batch != nil {
			b = st.batch
		}
		return st.lease, b, nil
	}()
	if err != nil {
		return nil, err
	}
	if err := q.await(b); err != nil {
		return nil, err
	}
	return next, nil
}

func (q *Queue) ack(l *Lease, out []OutboxMsg) (*batch, error) {
	q.enter()
	defer q.leave()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ackLocked(l, out)
}

func (q *Queue) ackLocked(l *Lease, out []OutboxMsg) (*batch, error) {
	le, err := q.settle(l)
	if err != nil {
		return nil, err
	}
	b, after := q.join(int64(4+maxEvictPerAck+len(out)), 128+2*outboxSize(out))
	defer q.runLater(&after)
	b.n++
	now := q.now().UnixNano()
	rec := le.rec
	q.removeJobLocked(b, l.Job.ID, rec)
	if err := b.setEntry(badger.NewEntry(idKey(pfxDone, l.Job.ID), encodeDone(now)).WithTTL(q.opts.DedupeWindow)); err != nil {
		b.failed = err
	}
	q.outboxLocked(b, out, now)
	q.keepResultsLocked(b, l.Job.ID, out, now)
	return b, nil
}

// removeJobLocked deletes a job's record and image in b; the blob file is
// removed after the commit.
func (q *Queue) removeJobLocked(b *batch, id string, rec *record) {
	if err := b.del(idKey(pfxJob, id)); err != nil {
		b.failed = err
	}
	if rec.Inline {
		if err := b.del(idKey(pfxImage, id)); err != nil {
			b.failed = err
		}
	} else {
		name := rec.Blob
		b.after = append(b.after, func() { q.removeBlob(name) })
	}
	q.st.jobs--
	q.st.bytes -= rec.ImageSize
}

// Nack ends a failed attempt: the job is retried after an exponential backoff
// with jitter, keeping its place in its priority, or moved to the dead set
// (dead is true) when its attempts are used up. out is appended to the outbox
// in the same commit.
func (q *Queue) Nack(ctx context.Context, l *Lease, cause error, out ...OutboxMsg) (dead bool, err error) {
	if err := validOutbox(out); err != nil {
		return false, err
	}
	b, dead, err := q.nack(l, cause, out, false)
	if err != nil {
		return false, err
	}
	return dead, q.await(b)
}

// Dead ends a leased job permanently: it goes to the dead set with cause as
// its reason, and out to the outbox, in one commit.
func (q *Queue) Dead(ctx context.Context, l *Lease, cause error, out ...OutboxMsg) error {
	if err := validOutbox(out); err != nil {
		return err
	}
	b, _, err := q.nack(l, cause, out, true)
	if err != nil {
		return err
	}
	return q.await(b)
}

func (q *Queue) nack(l *Lease, cause error, out []OutboxMsg, permanent bool) (*batch, bool, error) {
	q.enter()
	defer q.leave()
	q.mu.Lock()
	defer q.mu.Unlock()
	le, err := q.settle(l)
	if err != nil {
		return nil, false, err
	}
	b, after := q.join(int64(3+len(out)), 4096+outboxSize(out))
	defer q.runLater(&after)
	b.n++
	now := q.now().UnixNano()
	rec := le.rec
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	rec.LastError = truncate(msg)
	if permanent || int(rec.Attempt) >= q.opts.MaxAttempts {
		reason := msg
		if !permanent {
			reason = fmt.Sprintf("attempts exhausted (%d): %s", rec.Attempt, msg)
		}
		q.deadLocked(b, l.Job.ID, rec, reason, now, out)
		return b, true, nil
	}
	rec.State = stDelayed
	rec.Due = now + int64(q.backoff(int(rec.Attempt)))
	if err := b.set(idKey(pfxJob, l.Job.ID), encodeRecord(rec)); err != nil {
		b.failed = err
	}
	q.st.delayed.push(delayedEntry{due: rec.Due, prio: rec.Priority, e: entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: l.Job.ID}})
	q.outboxLocked(b, out, now)
	return b, false, nil
}

// backoff is BackoffBase * 2^(attempt-1), capped at BackoffMax, times a
// jitter factor in [0.8, 1.2].
func (q *Queue) backoff(attempt int) time.Duration {
	d := float64(q.opts.BackoffBase) * math.Pow(2, float64(max(attempt-1, 0)))
	d = min(d, float64(q.opts.BackoffMax))
	return time.Duration(d * q.jitter())
}

// Release gives a leased job back unrun: it returns to its place, its attempt
// not counted (a worker paused between leasing and running it).
func (q *Queue) Release(ctx context.Context, l *Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := func() (*batch, error) {
		q.enter()
		defer q.leave()
		q.mu.Lock()
		defer q.mu.Unlock()
		le, err := q.settle(l)
		if err != nil {
			return nil, err
		}
		b, after := q.join(2, 4096)
		defer q.runLater(&after)
		b.n++
		rec := le.rec
		if rec.Attempt > 0 {
			rec.Attempt--
		}
		rec.State = stReady
		if err := b.set(idKey(pfxJob, l.Job.ID), encodeRecord(rec)); err != nil {
			b.failed = err
		}
		q.st.ready[rec.Priority].push(entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: l.Job.ID})
		q.broadcastLocked()
		return b, nil
	}()
	if err != nil {
		return err
	}
	return q.await(b)
}
