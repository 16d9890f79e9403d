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

// intake is what the two sources share: a new job from a source becomes durable, or the
// refusal is worded in the source's own sentinels (full: wait and try again; refused:
// this input can never be taken). Both sinks below go through it.
type intake struct {
	d       *Daemon
	full    error // the transport's queue-full sentinel
	refused error // the transport's permanent-refusal sentinel
}

// submit enqueues job on q (nil while a full disk keeps the queue from opening).
// fileError, when set, says whether an error is about the input itself (and so permanent).
func (in intake) submit(ctx context.Context, q *queue.Queue, job queue.NewJob, fileError func(error) bool) (bool, error) {
	if q == nil {
		return false, fullError{errQueueNotOpen, in.full}
	}
	if in.d.paused.get().Intake {
		return false, fullError{errIntakePaused, in.full}
	}
	res, err := q.Enqueue(ctx, job)
	switch {
	case errors.Is(err, queue.ErrFull):
		in.d.pokeHealth()
		return false, fullError{err, in.full}
	case errors.Is(err, queue.ErrInvalid), fileError != nil && fileError(err):
		// Retrying cannot help: the job is invalid (say, metadata too large), or the input
		// itself cannot be read. The source files or drops it with the reason and goes on;
		// any other error (queue closed, its own disk failing) is the source's to wait out.
		return false, fmt.Errorf("%w: %w", in.refused, err)
	case err != nil:
		return false, err
	}
	if !res.Duplicate {
		in.d.queued(job.ID, job.Source)
	}
	return res.Duplicate, nil
}

// admit says, before a source takes input of size bytes onto the state disk, whether
// the queue would take it now.
func (in intake) admit(q *queue.Queue, size int64) error {
	if q == nil {
		return fullError{errQueueNotOpen, in.full}
	}
	if in.d.paused.get().Intake {
		return fullError{errIntakePaused, in.full}
	}
	err := q.Admit(size)
	if errors.Is(err, queue.ErrFull) {
		in.d.pokeHealth()
		return fullError{err, in.full}
	}
	return err
}

// fullError is the queue's refusal (a *queue.FullError, whose text already says "queue
// full"), matching a transport's queue-full sentinel as well.
type fullError struct{ err, sentinel error }

func (e fullError) Error() string   { return e.err.Error() }
func (e fullError) Unwrap() []error { return []error{e.err, e.sentinel} }

// spoolSink turns a claimed spool file into a durable job.
type spoolSink struct{ d *Daemon }

func (s *spoolSink) intake() intake { return intake{s.d, spool.ErrQueueFull, spool.ErrRefused} }

func (s *spoolSink) Submit(ctx context.Context, it spool.Item) (bool, error) {
	return s.intake().submit(ctx, s.d.q, queue.NewJob{
		ID: it.ID, Priority: it.Priority, Source: it.Source,
		Meta:      map[string]string{metaSpoolFile: it.Name},
		ImageFile: it.Path, Deadline: s.d.deadline(time.Time{}),
	}, func(err error) bool { return spool.IsFileError(err, it.Path) })
}

// Admit tells the spool, before it claims a file onto the state disk, whether the queue
// would take it now (spool.Admitter).
func (s *spoolSink) Admit(size int64) error { return s.intake().admit(s.d.q, size) }

// ingestSink turns an MQTT ingest message into a durable job. The MQTT client runs
// before the queue opens when a full disk delays it, hence the queue's atomic pointer.
type ingestSink struct{ d *Daemon }

func (s *ingestSink) Submit(ctx context.Context, it mqtt.IngestItem) (bool, error) {
	return intake{s.d, mqtt.ErrQueueFull, mqtt.ErrRefused}.submit(ctx, s.d.mqttQueue.Load(), queue.NewJob{
		ID: it.ID, Priority: it.Priority, Source: it.Source, Meta: it.Meta,
		Image: it.Image, Deadline: s.d.deadline(it.Deadline),
	}, nil)
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
func (e *engineAdapter) RunKey(ctx context.Context, img []byte, key string) (*infer.Result, error) {
	return e.s.RunKey(ctx, img, key)
}
func (e *engineAdapter) Prepare(key string, img []byte) { e.s.Prepare(key, img) }
func (e *engineAdapter) Info() infer.ModelInfo          { return e.s.Info() }
func (e *engineAdapter) Reload(ctx context.Context, m *infer.ModelConfig) error {
	if m != nil {
		return e.s.UseModel(ctx, *m)
	}
	return e.s.Reload(ctx)
}
