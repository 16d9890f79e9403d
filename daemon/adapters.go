package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/spool"
)

// The adapters below connect packages that never import each other: each declares the
// small interface it needs, and the daemon maps one to the other here.

// spoolSink turns a claimed spool file into a durable job.
type spoolSink struct{ d *Daemon }

func (s *spoolSink) Submit(ctx context.Context, it spool.Item) (bool, error) {
	res, err := s.d.q.Enqueue(ctx, queue.NewJob{
		ID: it.ID, Priority: it.Priority, Source: it.Source,
		Meta:      map[string]string{metaSpoolFile: it.Name},
		ImageFile: it.Path, Deadline: s.d.deadline(time.Time{}),
	})
	switch {
	case errors.Is(err, queue.ErrFull):
		s.d.pokeHealth()
		return false, fullError{err, spool.ErrQueueFull}
	case errors.Is(err, queue.ErrInvalid), spool.IsFileError(err, it.Path):
		// Retrying cannot help: the job is invalid (say, metadata too large), or the claimed
		// file itself cannot be read (permission denied, vanished, an I/O error on it: the
		// error names it.Path). File it as failed, with the reason; the spool goes on. Any
		// other error (queue closed, its own disk failing) pauses the spool.
		return false, fmt.Errorf("%w: %w", spool.ErrRefused, err)
	}
	if err == nil && !res.Duplicate {
		s.d.queued(it.ID, it.Source)
	}
	return res.Duplicate, err
}

// Admit tells the spool, before it claims a file onto the state disk, whether the queue
// would take it now (spool.Admitter).
func (s *spoolSink) Admit(size int64) error {
	if s.d.paused.get().Intake {
		return fullError{errIntakePaused, spool.ErrQueueFull}
	}
	err := s.d.q.Admit(size)
	if errors.Is(err, queue.ErrFull) {
		s.d.pokeHealth()
		return fullError{err, spool.ErrQueueFull}
	}
	return err
}

// fullError is the queue's refusal (a *queue.FullError, whose text already says "queue
// full"), matching a transport's queue-full sentinel as well.
type fullError struct{ err, sentinel error }

func (e fullError) Error() string   { return e.err.Error() }
func (e fullError) Unwrap() []error { return []error{e.err, e.sentinel} }

// ingestSink turns an MQTT ingest message into a durable job.
type ingestSink struct{ d *Daemon }

func (s *ingestSink) Submit(ctx context.Context, it mqtt.IngestItem) (bool, error) {
	q := s.d.mqttQueue.Load()
	if q == nil {
		return false, fullError{errQueueNotOpen, mqtt.ErrQueueFull}
	}
	if s.d.paused.get().Intake {
		return false, fullError{errIntakePaused, mqtt.ErrQueueFull}
	}
	res, err := q.Enqueue(ctx, queue.NewJob{
		ID: it.ID, Priority: it.Priority, Source: it.Source, Meta: it.Meta,
		Image: it.Image, Deadline: s.d.deadline(it.Deadline),
	})
	switch {
	case errors.Is(err, queue.ErrFull):
		s.d.pokeHealth()
		return false, fullError{err, mqtt.ErrQueueFull}
	case errors.Is(err, queue.ErrInvalid):
		return false, fmt.Errorf("%w: %w", mqtt.ErrRefused, err)
	}
	if err == nil && !res.Duplicate {
		s.d.queued(it.ID, it.Source)
	}
	return res.Duplicate, err
}

// errQueueNotOpen is what the MQTT side meets while a full disk keeps the queue from
// opening (Daemon.waitForDisk): ingest is not acknowledged, so the broker redelivers.
var errQueueNotOpen = errors.New("queue not open yet: disk full")

// outboxAdapter lets the MQTT publisher drain the queue's outbox. The client may run
// before the queue is open (a full disk at start): the outbox is empty until it is.
type outboxAdapter struct{ d *Daemon }

func (o *outboxAdapter) OutboxPeek(n int) ([]mqtt.OutboxRow, error) {
	q := o.d.mqttQueue.Load()
	if q == nil {
		return nil, nil
	}
	rows, err := q.OutboxPeek(n)
	if err != nil {
		return nil, err
	}
	out := make([]mqtt.OutboxRow, len(rows))
	for i, r := range rows {
		out[i] = mqtt.OutboxRow{Seq: r.Seq, Topic: r.Topic, Payload: r.Payload, CreatedAt: r.CreatedAt}
	}
	return out, nil
}

func (o *outboxAdapter) OutboxDelete(seqs ...uint64) error {
	q := o.d.mqttQueue.Load()
	if q == nil {
		return errQueueNotOpen
	}
	return q.OutboxDelete(seqs...)
}

// OutboxNotify is the daemon's own channel, fed from the queue's once it is open
// (Daemon.forwardOutboxNotify), so that a client started before the queue hears it.
func (o *outboxAdapter) OutboxNotify() <-chan struct{} { return o.d.outNotify }

// engineAdapter narrows the supervisor to what the worker uses.
type engineAdapter struct{ s *infer.Supervisor }

func (e *engineAdapter) Open(ctx context.Context) error { return e.s.Open(ctx) }
func (e *engineAdapter) Run(ctx context.Context, img []byte) (*infer.Result, error) {
	return e.s.Run(ctx, img)
}
func (e *engineAdapter) Info() infer.ModelInfo            { return e.s.Info() }
func (e *engineAdapter) Reload(ctx context.Context) error { return e.s.Reload(ctx) }
