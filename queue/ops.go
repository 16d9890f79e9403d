package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
)

// NewJob is a job to enqueue. Exactly one of Image and ImageFile is set.
type NewJob struct {
	ID       string // stable id, 1..256 bytes of UTF-8 without control characters
	Priority int    // 0..9, higher first
	Source   string
	Meta     map[string]string
	Deadline time.Time // zero: none; a job past its deadline is not leased
	Image    []byte    // the image bytes, or
	// ImageFile is a file to adopt: hard-linked (copied and fsynced across file
	// systems) into the blob dir before the commit. The caller may delete its
	// original once Enqueue returns.
	ImageFile string
}

// EnqueueResult tells whether the id was already known.
type EnqueueResult struct {
	Duplicate bool
	State     string // of the existing job when Duplicate: ready, delayed, leased, dead or done
}

// Job is a stored job as handed out by Lease.
type Job struct {
	ID          string
	Priority    int
	Source      string
	Meta        map[string]string
	EnqueuedAt  time.Time
	Deadline    time.Time // zero: none
	Attempt     int       // 1 on the first lease
	LastError   string
	ImageSize   int64
	ImageSHA256 string // hex
}

// Lease is a job handed to a worker until Ack, Nack, Dead or Deadline.
type Lease struct {
	Job      Job
	Deadline time.Time

	token uint64
	rec   *record
}

// OutboxMsg is a message to publish, written durably with the operation.
type OutboxMsg struct {
	Topic   string // relative, e.g. "results/cam1"
	Payload []byte
}

func validID(id string) error {
	if id == "" || len(id) > maxIDLen || !utf8.ValidString(id) {
		return invalidf("id %q: must be 1..%d bytes of UTF-8", id, maxIDLen)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return invalidf("id %q: contains a control character", id)
		}
	}
	return nil
}

func (j *NewJob) validate() error {
	if err := validID(j.ID); err != nil {
		return err
	}
	if j.Priority < 0 || j.Priority > 9 {
		return invalidf("priority %d: must be 0..9", j.Priority)
	}
	if len(j.Source) > maxSourceLen || !utf8.ValidString(j.Source) {
		return invalidf("source %q: must be at most %d bytes of UTF-8", j.Source, maxSourceLen)
	}
	n := 0
	for k, v := range j.Meta {
		n += len(k) + len(v)
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return invalidf("meta %q: must be UTF-8", k)
		}
	}
	if n > maxMetaBytes {
		return invalidf("meta: %d bytes, limit %d", n, maxMetaBytes)
	}
	if (j.Image == nil) == (j.ImageFile == "") {
		return invalidf("image: exactly one of image and image_file must be set")
	}
	return nil
}

func validOutbox(out []OutboxMsg) error {
	total := 0
	for _, m := range out {
		if m.Topic == "" || len(m.Topic) > maxTopicLen || !utf8.ValidString(m.Topic) {
			return invalidf("outbox topic %q: must be 1..%d bytes of UTF-8", m.Topic, maxTopicLen)
		}
		total += len(m.Payload)
	}
	if total > maxPayloadLen {
		return invalidf("outbox payload: %d bytes, limit %d", total, maxPayloadLen)
	}
	return nil
}

func outboxSize(out []OutboxMsg) int64 {
	n := int64(0)
	for _, m := range out {
		n += int64(len(m.Topic) + len(m.Payload) + 64)
	}
	return n
}

// Enqueue stores j durably: it returns once j's record and image are fsynced.
// Enqueuing an id that is queued, leased, dead or done within DedupeWindow
// stores nothing and reports Duplicate. When a limit would be exceeded it
// returns a *FullError (errors.Is(err, ErrFull)).
func (q *Queue) Enqueue(ctx context.Context, j NewJob) (EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return EnqueueResult{}, err
	}
	if err := j.validate(); err != nil {
		return EnqueueResult{}, err
	}
	need := int64(len(j.Image))
	if j.ImageFile != "" {
		// A file on the queue's own file system is linked, not copied: no new space.
		if fi, err := os.Stat(j.ImageFile); err == nil && !sameDevice(fi, q.blobDir) {
			need = fi.Size()
		}
	}
	if err := q.disk.admit(need, true); err != nil {
		return EnqueueResult{}, err
	}
	rec := &record{State: stReady, Priority: uint8(j.Priority), Source: j.Source, Meta: j.Meta}
	if !j.Deadline.IsZero() {
		rec.Deadline = j.Deadline.UnixNano()
	}
	var inline []byte
	switch {
	case j.ImageFile != "":
		fi, err := os.Lstat(j.ImageFile)
		if err == nil && fi.Mode().IsRegular() && fi.Size() <= int64(q.opts.InlineMax) {
			data, err := os.ReadFile(j.ImageFile)
			if err != nil {
				return EnqueueResult{}, fmt.Errorf("cannot read image file: %w", err)
			}
			inline = data
			break
		}
		name, size, sum, err := q.adoptBlob(j.ImageFile)
		if err != nil {
			return EnqueueResult{}, err
		}
		rec.Blob, rec.ImageSize, rec.SHA256 = name, size, sum
	case len(j.Image) <= q.opts.InlineMax:
		inline = j.Image
	default:
		name, err := q.writeBlob(j.Image)
		if err != nil {
			return EnqueueResult{}, err
		}
		rec.Blob, rec.ImageSize, rec.SHA256 = name, int64(len(j.Image)), sha256.Sum256(j.Image)
	}
	if rec.Blob == "" {
		rec.Inline = true
		rec.ImageSize = int64(len(inline))
		rec.SHA256 = sha256.Sum256(inline)
	}
	res, b, err := q.enqueue(j.ID, rec, inline)
	if b != nil {
		err = q.await(b)
	}
	if rec.Blob != "" && (err != nil && b == nil || res.Duplicate) {
		q.removeBlob(rec.Blob)
	}
	return res, err
}

// Admit reports whether a job with an image of size bytes would be taken
// now: nil, or the *FullError Enqueue would return (disk reserve, max_jobs,
// max_bytes), or ErrClosed. It stores nothing. A source calls it before it
// moves input toward the queue (a spool file claimed onto the state disk),
// so that refused input stays where it is.
func (q *Queue) Admit(size int64) error {
	if err := q.disk.admit(size, false); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return ErrClosed
	case q.opts.MaxJobs > 0 && q.st.jobs+1 > q.opts.MaxJobs:
		return &FullError{Limit: "max_jobs", Value: int64(q.st.jobs + 1), Max: int64(q.opts.MaxJobs)}
	case q.opts.MaxBytes > 0 && q.st.bytes+size > q.opts.MaxBytes:
		return &FullError{Limit: "max_bytes", Value: q.st.bytes + size, Max: q.opts.MaxBytes}
	}
	return nil
}

func (q *Queue) enqueue(id string, rec *record, inline []byte) (EnqueueResult, *batch, error) {
	q.enter()
	defer q.leave()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return EnqueueResult{}, nil, ErrClosed
	}
	now := q.now()
	b, after := q.join(3, int64(len(inline)+256+len(rec.Source)+maxMetaBytes/8))
	defer runLater(&after)
	if st, err := q.lookup(b, id, now); err != nil {
		return EnqueueResult{}, nil, err
	} else if st != "" {
		return EnqueueResult{Duplicate: true, State: st}, nil, nil
	}
	if q.opts.MaxJobs > 0 && q.st.jobs+1 > q.opts.MaxJobs {
		return EnqueueResult{}, nil, &FullError{Limit: "max_jobs", Value: int64(q.st.jobs + 1), Max: int64(q.opts.MaxJobs)}
	}
	if q.opts.MaxBytes > 0 && q.st.bytes+rec.ImageSize > q.opts.MaxBytes {
		return EnqueueResult{}, nil, &FullError{Limit: "max_bytes", Value: q.st.bytes + rec.ImageSize, Max: q.opts.MaxBytes}
	}
	q.st.seq++
	rec.Seq = q.st.seq
	rec.EnqueuedAt = now.UnixNano()
	b.n++
	if err := b.set(idKey(pfxJob, id), encodeRecord(rec)); err != nil {
		b.failed = err
		return EnqueueResult{}, b, nil
	}
	if rec.Inline {
		if err := b.set(idKey(pfxImage, id), inline); err != nil {
			b.failed = err
			return EnqueueResult{}, b, nil
		}
	} else {
		b.dirSync = true
	}
	q.st.jobs++
	q.st.bytes += rec.ImageSize
	q.st.ready[rec.Priority].push(entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: id})
	q.broadcastLocked()
	return EnqueueResult{}, b, nil
}

// lookup returns the state of id when it is held or done within the dedupe
// window, "" otherwise.
func (q *Queue) lookup(b *batch, id string, now time.Time) (string, error) {
	if _, ok := q.st.leases[id]; ok {
		return stLeased.String(), nil
	}
	item, err := b.txn.Get(idKey(pfxJob, id))
	if err == nil {
		var st state
		_ = item.Value(func(v []byte) error {
			if r, err := decodeRecord(v); err == nil {
				st = r.State
				if st == stDelayed && r.Due <= now.UnixNano() {
					st = stReady
				}
			}
			return nil
		})
		if st == stLeased {
			st = stReady // a stale lease from a previous process
		}
		if st == 0 {
			return "damaged", nil
		}
		return st.String(), nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return "", fmt.Errorf("cannot look up job: %w", err)
	}
	item, err = b.txn.Get(idKey(pfxDone, id))
	if err == nil {
		var at int64
		var ok bool
		_ = item.Value(func(v []byte) error { at, ok = decodeDone(v); return nil })
		if ok && now.UnixNano()-at < int64(q.opts.DedupeWindow) {
			return "done", nil
		}
		return "", nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return "", fmt.Errorf("cannot look up job: %w", err)
	}
	return "", nil
}

// Lease blocks until a job is ready and hands out the highest-priority one
// (FIFO within a priority), or until ctx is done or the queue closed. A ready
// job is always returned even when ctx is already done, so Lease with a
// cancelled context polls. The job's attempt count is stored before Lease
// returns. Jobs past their deadline are moved to the dead set with reason
// "expired"; jobs whose attempts are used up (their process died with them)
// are moved to the dead set too.
func (q *Queue) Lease(ctx context.Context) (*Lease, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l, b, wait, wake, err := q.tryLease()
		if err != nil {
			return nil, err
		}
		if b != nil {
			if err := q.await(b); err != nil {
				return nil, err
			}
			if l != nil {
				return l, nil
			}
			continue // only expired or exhausted jobs were moved: look again
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var tc <-chan time.Time
		if wake != 0 {
			d := time.Duration(wake - q.now().UnixNano())
			if d < time.Millisecond {
				d = time.Millisecond
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		select {
		case <-wait:
		case <-tc:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.closing:
			return nil, ErrClosed
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (q *Queue) tryLease() (l *Lease, b *batch, wait <-chan struct{}, wake int64, err error) {
	q.enter()
	defer q.leave()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, nil, nil, 0, ErrClosed
	}
	return q.leaseLocked(nil)
}

// leaseLocked leases the next ready job, writing into b (or the current
// batch when b is nil). It returns the batch to await when it wrote anything.
func (q *Queue) leaseLocked(b *batch) (l *Lease, _ *batch, wait <-chan struct{}, wake int64, err error) {
	nowT := q.now()
	now := nowT.UnixNano()
	q.promoteLocked(now)
	wait = q.readyCh
	if q.disk.holdLeases() {
		// Below the disk floor: keep what is left for settling and the outbox.
		return nil, b, wait, now + int64(time.Second), nil
	}
	var after []func()
	defer runLater(&after)
	for p := 9; p >= 0; p-- {
		for len(q.st.ready[p]) > 0 {
			if b == nil || b.entries+8 > q.maxBatchCount {
				var a []func()
				b, a = q.join(8, 64<<10)
				after = append(after, a...)
			}
			e := q.st.ready[p].pop()
			rec, err := q.readRecord(b, e.id)
			if err != nil {
				b.failed = err
				b.n++
				return nil, b, nil, 0, nil
			}
			if rec == nil {
				continue // gone (damaged and set aside)
			}
			b.n++ // from here on the batch carries a write of ours
			switch {
			case rec.Deadline != 0 && now > rec.Deadline:
				q.st.expired++
				q.log.Info("queue job expired", "job_id", e.id, "deadline", time.Unix(0, rec.Deadline))
				var out []OutboxMsg
				if q.opts.OnExpired != nil {
					out = q.opts.OnExpired(jobOf(e.id, rec))
				}
				q.deadLocked(b, e.id, rec, "expired", now, out)
				continue
			case int(rec.Attempt) >= q.opts.MaxAttempts:
				reason := fmt.Sprintf("attempts exhausted (%d)", rec.Attempt)
				if rec.State == stLeased {
					reason += ": the process stopped or the lease expired during the last attempt"
				} else if rec.LastError != "" {
					reason += ": " + rec.LastError
				}
				q.log.Warn("queue job dead-lettered", "job_id", e.id, "reason", reason)
				var out []OutboxMsg
				if q.opts.OnExhausted != nil {
					out = q.opts.OnExhausted(jobOf(e.id, rec), reason)
				}
				q.deadLocked(b, e.id, rec, reason, now, out)
				continue
			}
			if rec.State == stLeased {
				rec.LastError = fmt.Sprintf("attempt %d interrupted: the process stopped or the lease expired", rec.Attempt)
			}
			rec.Attempt++
			rec.State = stLeased
			rec.Due = 0
			if err := b.set(idKey(pfxJob, e.id), encodeRecord(rec)); err != nil {
				b.failed = err
				return nil, b, nil, 0, nil
			}
			q.st.token++
			deadline := nowT.Add(q.opts.LeaseTimeout)
			le := &leaseEntry{id: e.id, token: q.st.token, deadline: deadline.UnixNano(), rec: rec}
			q.st.leases[e.id] = le
			return &Lease{Job: jobOf(e.id, rec), Deadline: deadline, token: le.token, rec: rec}, b, nil, 0, nil
		}
	}
	return nil, b, wait, q.nextWakeLocked(), nil
}

// readRecord reads id's record in b's transaction. A record that cannot be
// decoded is set aside (nil, nil).
func (q *Queue) readRecord(b *batch, id string) (*record, error) {
	key := idKey(pfxJob, id)
	item, err := b.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		q.log.Error("queue index names a missing job", "job_id", id)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read job: %w", err)
	}
	val, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot read job: %w", err)
	}
	rec, derr := decodeRecord(val)
	if derr == nil {
		return rec, nil
	}
	q.log.Error("queue record damaged, set aside", "job_id", id, "err", derr, "size", len(val))
	q.st.seq++
	b.n++
	if err := b.set(damagedKey(q.st.seq, key), val); err != nil {
		return nil, err
	}
	if err := b.del(key); err != nil {
		return nil, err
	}
	q.st.damaged++
	q.st.jobs--
	return nil, nil
}

func jobOf(id string, r *record) Job {
	j := Job{
		ID: id, Priority: int(r.Priority), Source: r.Source, Meta: maps.Clone(r.Meta),
		EnqueuedAt: time.Unix(0, r.EnqueuedAt), Attempt: int(r.Attempt), LastError: r.LastError,
		ImageSize: r.ImageSize, ImageSHA256: fmt.Sprintf("%x", r.SHA256),
	}
	if r.Deadline != 0 {
		j.Deadline = time.Unix(0, r.Deadline)
	}
	return j
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
		next, b2, _, _, err := q.leaseLocked(b)
		if b2 != nil {
			b = b2
		}
		return next, b, err
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
	b, after := q.join(int64(3+len(out)), 128+outboxSize(out))
	defer runLater(&after)
	b.n++
	now := q.now().UnixNano()
	rec := le.rec
	q.removeJobLocked(b, l.Job.ID, rec)
	if err := b.setEntry(badger.NewEntry(idKey(pfxDone, l.Job.ID), encodeDone(now)).WithTTL(q.opts.DedupeWindow)); err != nil {
		b.failed = err
	}
	q.outboxLocked(b, out, now)
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
	defer runLater(&after)
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

// Image returns the leased job's image bytes, checked against the size and
// sha256 recorded at Enqueue. A mismatch or a missing image is ErrImageCorrupt.
func (q *Queue) Image(l *Lease) ([]byte, error) {
	if l == nil || l.rec == nil {
		return nil, ErrNotLeased
	}
	var data []byte
	if l.rec.Inline {
		err := q.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(idKey(pfxImage, l.Job.ID))
			if err != nil {
				return err
			}
			data, err = item.ValueCopy(nil)
			return err
		})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: job %q: inline image missing", ErrImageCorrupt, l.Job.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read image: %w", err)
		}
	} else {
		var err error
		data, err = os.ReadFile(filepath.Join(q.blobDir, l.rec.Blob))
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w: job %q: blob file missing", ErrImageCorrupt, l.Job.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read image: %w", err)
		}
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != l.rec.ImageSize || !bytes.Equal(sum[:], l.rec.SHA256[:]) {
		return nil, fmt.Errorf("%w: job %q: %d bytes with sha256 %x, want %d bytes with sha256 %x",
			ErrImageCorrupt, l.Job.ID, len(data), sum, l.rec.ImageSize, l.rec.SHA256)
	}
	return data, nil
}

// ImagePath returns the blob file holding the leased job's image, when the
// image is stored as a file. The file is valid until the job is settled.
func (q *Queue) ImagePath(l *Lease) (string, bool) {
	if l == nil || l.rec == nil || l.rec.Inline {
		return "", false
	}
	return filepath.Join(q.blobDir, l.rec.Blob), true
}
