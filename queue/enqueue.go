package queue

// Enqueue: validation, limits (jobs, bytes, disk reserve), dedupe and the
// durable write of a new job and its image.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
)

// The priority range: a job's priority is MinPriority..MaxPriority, higher first.
const (
	MinPriority = 0
	MaxPriority = 9
)

// CheckPriority says whether p is in the priority range, in words an operator can act on.
func CheckPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return invalidf("priority %d: must be %d..%d", p, MinPriority, MaxPriority)
	}
	return nil
}

// NewJob is a job to enqueue. Exactly one of Image and ImageFile is set.
type NewJob struct {
	ID       string // stable id, 1..256 bytes of UTF-8 without control characters
	Priority int    // MinPriority..MaxPriority, higher first
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
	if err := CheckPriority(j.Priority); err != nil {
		return err
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
		if fi, err := os.Stat(j.ImageFile); err == nil && !q.onBlobDevice(fi) {
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
	defer q.runLater(&after)
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
