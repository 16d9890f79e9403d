package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/queue"
)

// controlBackend serves the control API (package control) and the MQTT commands from
// the daemon: the one place that turns the daemon's and the queue's errors into the
// control API's classes.
type controlBackend struct{ d *Daemon }

var _ control.Backend = controlBackend{}

func (b controlBackend) Health() any { return b.d.Health() }

// Watch streams lifecycle events and health changes, the current health first.
func (b controlBackend) Watch(ctx context.Context) <-chan control.WatchItem {
	first := control.WatchItem{Type: control.WatchHealth, Data: mustHealthJSON(b.d.Health())}
	return b.d.hub.subscribe(ctx, &first)
}

func (b controlBackend) MaxImageBytes() int64 { return int64(b.d.cfg.Spool.MaxFileSize) }

func (b controlBackend) Jobs(_ context.Context, q control.JobsQuery) ([]control.Job, error) {
	jobs, err := b.d.q.Jobs(queue.JobFilter{State: q.State, Source: q.Source, Limit: q.Limit})
	if err != nil {
		return nil, classify(err)
	}
	out := make([]control.Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, jobView(j))
	}
	return out, nil
}

func (b controlBackend) Job(_ context.Context, id string) (control.Job, error) {
	j, err := b.d.q.Get(id)
	if errors.Is(err, queue.ErrNotFound) {
		return control.Job{}, control.Errorf(control.ErrNotFound, "job %q: not found (not queued, and not done within the dedupe window)", id)
	}
	if err != nil {
		return control.Job{}, classify(err)
	}
	return jobView(j), nil
}

// Enqueue queues an image (the "reprocess" action); it answers once the job is durable.
func (b controlBackend) Enqueue(ctx context.Context, req control.EnqueueRequest, img []byte) (control.EnqueueResponse, error) {
	d := b.d
	job := queue.NewJob{ID: req.ID, Source: req.Source, Priority: req.Priority, Image: img, Deadline: d.deadline(time.Time{})}
	if job.ID == "" {
		job.ID = "cli-" + strconv.FormatInt(d.now().UnixNano(), 36)
	}
	if job.Source == "" {
		job.Source = "cli"
	}
	res, err := d.q.Enqueue(ctx, job)
	if err != nil {
		return control.EnqueueResponse{}, classify(err)
	}
	if !res.Duplicate {
		d.queued(job.ID, job.Source)
	}
	d.pokeHealth()
	return control.EnqueueResponse{ID: job.ID, Duplicate: res.Duplicate, State: res.State}, nil
}

func (b controlBackend) SetPriority(ctx context.Context, id string, prio int) error {
	defer b.d.pokeHealth()
	return jobOpError(id, b.d.q.SetPriority(ctx, id, prio))
}

func (b controlBackend) Cancel(ctx context.Context, id string) error {
	defer b.d.pokeHealth()
	return jobOpError(id, b.d.q.Cancel(ctx, id))
}

func (b controlBackend) Dead(_ context.Context, limit int) ([]control.DeadJob, error) {
	dead, err := b.d.q.ListDead(limit)
	if err != nil {
		return nil, classify(err)
	}
	out := make([]control.DeadJob, 0, len(dead))
	for _, j := range dead {
		out = append(out, control.DeadJob{ID: j.Job.ID, Source: j.Job.Source, Priority: j.Job.Priority, Attempts: j.Job.Attempt,
			Reason: j.Reason, EnqueuedAt: j.Job.EnqueuedAt, DiedAt: j.DiedAt, Metadata: j.Job.Meta})
	}
	return out, nil
}

func (b controlBackend) RetryDead(ctx context.Context, req control.DeadRequest) (control.DeadResponse, error) {
	var n int
	var err error
	if req.All {
		n, err = b.d.q.RetryAllDead(ctx)
	} else {
		n, err = b.d.q.RetryDead(ctx, req.IDs...)
	}
	return b.deadDone(n, err)
}

func (b controlBackend) PurgeDead(_ context.Context, req control.DeadRequest) (control.DeadResponse, error) {
	var n int
	var err error
	if req.All {
		n, err = b.d.q.PurgeAllDead()
	} else {
		n, err = b.d.q.PurgeDead(req.IDs...)
	}
	return b.deadDone(n, err)
}

func (b controlBackend) deadDone(n int, err error) (control.DeadResponse, error) {
	if err != nil {
		return control.DeadResponse{}, classify(err)
	}
	b.d.pokeHealth()
	return control.DeadResponse{Count: n}, nil
}

func (b controlBackend) Pause(_ context.Context, what string, paused bool) (control.PauseState, error) {
	st, err := b.d.Pause(what, paused)
	if errors.Is(err, errPauseWhat) {
		return st, control.Errorf(control.ErrInvalid, "%v", err)
	}
	return st, err
}

func (b controlBackend) Reload(ctx context.Context) (control.ReloadResponse, error) {
	restart, err := b.d.reload(ctx)
	if err != nil {
		return control.ReloadResponse{}, control.Errorf(control.ErrRefused, "%v", err)
	}
	info := b.d.eng.Info()
	return control.ReloadResponse{Model: info.Name, SHA256: info.SHA256, RestartNeeded: restart}, nil
}

// jobOpError words an operation on one job's failure for the operator.
func jobOpError(id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, queue.ErrNotFound):
		return control.Errorf(control.ErrNotFound, "job %q: not found (not queued)", id)
	case errors.Is(err, queue.ErrRunning):
		return control.Errorf(control.ErrConflict, "job %q is running now; it can be changed only while queued", id)
	}
	return classify(err)
}

// classify gives a queue error its control API class, keeping its message.
func classify(err error) error {
	switch {
	case errors.Is(err, queue.ErrInvalid):
		return control.Errorf(control.ErrInvalid, "%v", err)
	case errors.Is(err, queue.ErrFull), errors.Is(err, queue.ErrDiskFull), errors.Is(err, errIntakePaused):
		return control.Errorf(control.ErrUnavailable, "%v", err)
	case errors.Is(err, queue.ErrNotFound):
		return control.Errorf(control.ErrNotFound, "%v", err)
	}
	return err
}

func jobView(j queue.JobInfo) control.Job {
	e := control.Job{ID: j.ID, State: j.State, Priority: j.Priority, Source: j.Source, Attempts: j.Attempt,
		LastError: j.LastError, EnqueuedAt: timePtr(j.EnqueuedAt), Deadline: timePtr(j.Deadline), Due: timePtr(j.Due),
		LeaseUntil: timePtr(j.LeaseUntil), DeadReason: j.DeadReason, DiedAt: timePtr(j.DiedAt), DoneAt: timePtr(j.DoneAt),
		ImageBytes: j.ImageSize, Metadata: j.Meta}
	if j.State != "done" {
		e.ImageSHA = j.ImageSHA256
	}
	if len(j.Result) > 0 && json.Valid(j.Result) {
		e.Result = json.RawMessage(j.Result)
	}
	return e
}
