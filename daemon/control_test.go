package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/queue"
)

// TestControlJobs: the control API lists jobs and looks one up by id over the real
// unix socket; an unknown id is a 404 whose message names it.
func TestControlJobs(t *testing.T) {
	q := openTestQueue(t, 3)
	d := &Daemon{now: time.Now, poke: make(chan struct{}, 1)}
	d.setQueue(q)
	ctx := context.Background()
	for _, j := range []queue.NewJob{
		{ID: "a", Priority: 1, Source: "door", Image: []byte("x")},
		{ID: "b", Priority: 7, Source: "yard", Image: []byte("y"), Meta: map[string]string{"spool.file": "b.jpg"}},
	} {
		if _, err := q.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv, err := control.Listen(sock, controlBackend{d}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(cctx) }()
	defer func() { cancel(); <-done }()
	c := control.NewClient(sock)

	jobs, err := c.Jobs(ctx, control.JobsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != "b" || jobs[1].ID != "a" || jobs[0].State != "ready" || jobs[0].EnqueuedAt == nil {
		t.Fatalf("jobs: %+v, want b then a, ready", jobs)
	}
	if jobs, err = c.Jobs(ctx, control.JobsQuery{Source: "door"}); err != nil || len(jobs) != 1 || jobs[0].ID != "a" {
		t.Fatalf("jobs from door: %+v, %v", jobs, err)
	}
	if _, err := c.Jobs(ctx, control.JobsQuery{State: "sleeping"}); !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), "sleeping") {
		t.Fatalf("bad state: %v, want an error naming it", err)
	}
	if j, err := c.Job(ctx, "b"); err != nil || j.Metadata["spool.file"] != "b.jpg" || j.Priority != 7 || j.ImageBytes != 1 {
		t.Fatalf("job b: %+v, %v", j, err)
	}
	_, err = c.Job(ctx, "nope")
	if !errors.Is(err, control.ErrNotFound) || !strings.Contains(err.Error(), `job "nope": not found`) {
		t.Fatalf("unknown job: %v", err)
	}

	// Reprocess: an image sent as the body is a durable job when the answer comes.
	d.cfg.Spool.MaxFileSize = 1 << 20
	if er, err := c.Enqueue(ctx, control.EnqueueRequest{Priority: 9, Source: "ops", ID: "again"}, strings.NewReader("jpeg bytes")); err != nil || er.ID != "again" || er.Duplicate {
		t.Fatalf("enqueue: %+v, %v", er, err)
	}
	if er, err := c.Enqueue(ctx, control.EnqueueRequest{ID: "again"}, strings.NewReader("jpeg bytes")); err != nil || !er.Duplicate || er.State != "ready" {
		t.Fatalf("enqueue again: %+v, %v; want a duplicate", er, err)
	}
	// a is prioritized above b, then b is cancelled: again (9), a (8) remain.
	if err := c.SetPriority(ctx, "a", 8); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, "b"); !errors.Is(err, control.ErrNotFound) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("second cancel: %v", err)
	}
	if err := c.SetPriority(ctx, "a", 12); !errors.Is(err, control.ErrInvalid) || !strings.Contains(err.Error(), "0..9") {
		t.Fatalf("priority 12: %v", err)
	}
	if jobs, err = c.Jobs(ctx, control.JobsQuery{}); err != nil || len(jobs) != 2 || jobs[0].ID != "again" || jobs[1].ID != "a" || jobs[1].Priority != 8 {
		t.Fatalf("jobs after: %+v, %v", jobs, err)
	}
	l, err := q.Lease(ctx)
	if err != nil || l.Job.ID != "again" {
		t.Fatalf("lease: %v %v", l, err)
	}
	if err := c.Cancel(ctx, "again"); !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("cancel of a running job: %v", err)
	}
}
