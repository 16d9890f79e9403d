package queue

// Lease: handing out the next job (priority, then FIFO), with expiry and
// exhausted attempts dead-lettered on the way, and reading its image.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
)

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
		st, err := q.tryLease()
		if err != nil {
			return nil, err
		}
		if st.batch != nil {
			if err := q.await(st.batch); err != nil {
				return nil, err
			}
			if st.lease != nil {
				return st.lease, nil
			}
			continue // only expired or exhausted jobs were moved: look again
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var tc <-chan time.Time
		if st.wake != 0 {
			d := time.Duration(st.wake - q.now().UnixNano())
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
		case <-st.wait:
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

// leaseStep is what one look for a job under the queue lock gives.
type leaseStep struct {
	lease *Lease          // the job leased, or nil
	batch *batch          // the batch to await when anything was written, or nil
	wait  <-chan struct{} // closed when a job may have become ready
	wake  int64           // when a delayed job or a lease falls due (Unix ns); 0: none
}

func (q *Queue) tryLease() (leaseStep, error) {
	q.enter()
	defer q.leave()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return leaseStep{}, ErrClosed
	}
	return q.leaseLocked(nil), nil
}

// leaseLocked leases the next ready job, writing into b (or the current
// batch when b is nil). Expired jobs and jobs whose attempts are used up
// are dead-lettered on the way. A failed read or write marks the batch
// failed, which its commit reports.
func (q *Queue) leaseLocked(b *batch) leaseStep {
	nowT := q.now()
	now := nowT.UnixNano()
	q.promoteLocked(now)
	if q.disk.holdLeases() {
		// Below the disk floor: keep what is left for settling and the outbox.
		return leaseStep{batch: b, wait: q.readyCh, wake: now + int64(time.Second)}
	}
	var after []func()
	defer q.runLater(&after)
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
				return leaseStep{batch: b}
			}
			if rec == nil {
				continue // gone (damaged and set aside)
			}
			b.n++ // from here on the batch carries a write of ours
			switch {
			case rec.Deadline != 0 && now > rec.Deadline:
				q.st.expired++
				q.log.Info("queue job expired", logkey.JobID, e.id, "deadline", time.Unix(0, rec.Deadline))
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
				q.log.Debug("queue job dead-lettered", logkey.JobID, e.id, "reason", reason) // the worker logs it
				var out []OutboxMsg
				if q.opts.OnExhausted != nil {
					out = q.opts.OnExhausted(&Lease{Job: jobOf(e.id, rec), rec: rec}, reason)
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
				return leaseStep{batch: b}
			}
			q.st.token++
			deadline := nowT.Add(q.opts.LeaseTimeout)
			le := &leaseEntry{id: e.id, token: q.st.token, deadline: deadline.UnixNano(), rec: rec}
			q.st.leases[e.id] = le
			return leaseStep{lease: &Lease{Job: jobOf(e.id, rec), Deadline: deadline, token: le.token, rec: rec}, batch: b}
		}
	}
	return leaseStep{batch: b, wait: q.readyCh, wake: q.nextWakeLocked()}
}

// readRecord reads id's record in b's transaction. A record that cannot be
// decoded is set aside (nil, nil).
func (q *Queue) readRecord(b *batch, id string) (*record, error) {
	key := idKey(pfxJob, id)
	item, err := b.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		q.log.Error("queue index names a missing job", logkey.JobID, id)
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
	q.log.Error("queue record damaged, set aside", logkey.JobID, id, logkey.Err, derr, "size", len(val))
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

// ReadyAbove reports whether a job of a priority above p is ready to be leased now. A
// worker that holds the next job (of priority p) asks it before starting that job, so
// that a job of a higher priority that arrived meanwhile still runs first.
func (q *Queue) ReadyAbove(p int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.promoteLocked(q.now().UnixNano())
	for i := max(p+1, MinPriority); i <= MaxPriority; i++ {
		if len(q.st.ready[i]) > 0 {
			return true
		}
	}
	return false
}
