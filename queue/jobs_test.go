package queue

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGetAndJobs(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.MaxAttempts = 3
	q := mustOpen(t, o)
	ctx := context.Background()
	for _, j := range []NewJob{
		{ID: "low1", Priority: 1, Source: "door"},
		{ID: "high", Priority: 9, Source: "yard"},
		{ID: "low2", Priority: 1, Source: "door"},
		{ID: "mid", Priority: 5, Source: "door"},
		{ID: "done", Priority: 0, Source: "yard"},
		{ID: "retry", Priority: 3, Source: "yard"},
	} {
		mustEnqueue(t, q, j)
	}
	lease := func(want string) *Lease {
		t.Helper()
		l := poll(t, q)
		if l == nil || l.Job.ID != want {
			t.Fatalf("leased %v, want %s", l, want)
		}
		return l
	}
	running := lease("high")
	l := lease("mid")
	if err := q.Dead(ctx, l, errors.New("bad image")); err != nil {
		t.Fatal(err)
	}
	l = lease("retry")
	if _, err := q.Nack(ctx, l, errors.New("engine busy")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"low1", "low2"} {
		l = lease(id)
		if _, err := q.Nack(ctx, l, errors.New("x")); err != nil { // back to delayed...
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Second) // ... and due again (1 s backoff): ready
	l = lease("retry")
	if err := q.Dead(ctx, l, errors.New("corrupt")); err != nil { // second attempt: dead
		t.Fatal(err)
	}
	// Ack "done" after the others got in its way.
	for {
		l = poll(t, q)
		if l.Job.ID == "done" {
			break
		}
		if _, err := q.Nack(ctx, l, errors.New("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Ack(ctx, l); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		id, state string
	}{
		{"high", "leased"}, {"mid", "dead"}, {"retry", "dead"}, {"done", "done"},
	} {
		info, err := q.Get(tt.id)
		if err != nil || info.State != tt.state {
			t.Errorf("Get(%s): %+v, %v; want state %s", tt.id, info, err, tt.state)
		}
	}
	if info, _ := q.Get("high"); !info.LeaseUntil.Equal(running.Deadline) || info.Source != "yard" || info.Attempt != 1 {
		t.Errorf("Get(high): %+v", info)
	}
	if info, _ := q.Get("mid"); info.DeadReason == "" || info.DiedAt.IsZero() {
		t.Errorf("Get(mid): %+v, want the dead reason and time", info)
	}
	if _, err := q.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope): %v, want ErrNotFound", err)
	}

	ids := func(f JobFilter) []string {
		t.Helper()
		js, err := q.Jobs(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range js {
			out = append(out, j.ID+":"+j.State)
		}
		return out
	}
	for _, tt := range []struct {
		f    JobFilter
		want []string
	}{
		{JobFilter{}, []string{"high:leased", "mid:dead", "retry:dead", "low1:delayed", "low2:delayed"}},
		{JobFilter{State: "dead"}, []string{"mid:dead", "retry:dead"}},
		{JobFilter{Source: "door"}, []string{"mid:dead", "low1:delayed", "low2:delayed"}},
		{JobFilter{Limit: 2}, []string{"high:leased", "mid:dead"}},
	} {
		if got := ids(tt.f); !slices.Equal(got, tt.want) {
			t.Errorf("Jobs(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
	if _, err := q.Jobs(JobFilter{State: "sleeping"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Jobs with a bad state: %v, want ErrInvalid", err)
	}
}

func TestSetPriorityAndCancel(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.InlineMax = 4
	q := mustOpen(t, o)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		mustEnqueue(t, q, NewJob{ID: id, Priority: 2, Image: []byte("image-" + id)}) // blobs
	}
	// b jumps the queue; its place among priority 8 is its original one.
	if err := q.SetPriority(ctx, "b", 8); err != nil {
		t.Fatal(err)
	}
	if err := q.SetPriority(ctx, "d", 8); err != nil {
		t.Fatal(err)
	}
	// c is cancelled: gone with its image, never leased.
	if err := q.Cancel(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get("c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(c) after cancel: %v", err)
	}
	var order []string
	for {
		l := poll(t, q)
		if l == nil {
			break
		}
		order = append(order, l.Job.ID)
		if l.Job.ID == "b" {
			if err := q.Cancel(ctx, "b"); !errors.Is(err, ErrRunning) {
				t.Fatalf("cancel of a running job: %v, want ErrRunning", err)
			}
		}
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"b", "d", "a", "e"}; !slices.Equal(order, want) {
		t.Fatalf("lease order %v, want %v", order, want)
	}
	if st := q.Stats(); st.ReadyTotal != 0 || st.Bytes != 0 {
		t.Fatalf("stats after draining: %+v", st)
	}
	for _, tt := range []struct {
		err  error
		want error
	}{
		{q.SetPriority(ctx, "nope", 3), ErrNotFound},
		{q.SetPriority(ctx, "a", 10), ErrInvalid},
		{q.Cancel(ctx, "nope"), ErrNotFound},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("got %v, want %v", tt.err, tt.want)
		}
	}
	// A dead job can be cancelled (purged) and re-prioritized; it survives a reopen.
	mustEnqueue(t, q, NewJob{ID: "x", Priority: 1})
	mustEnqueue(t, q, NewJob{ID: "y", Priority: 1})
	for _, id := range []string{"x", "y"} {
		l := poll(t, q)
		if err := q.Dead(ctx, l, errors.New("bad")); err != nil || l.Job.ID != id {
			t.Fatal(err)
		}
	}
	if err := q.SetPriority(ctx, "y", 6); err != nil {
		t.Fatal(err)
	}
	if err := q.Cancel(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	dl, err := q.ListDead(0)
	if err != nil || len(dl) != 1 || dl[0].Job.ID != "y" || dl[0].Job.Priority != 6 || q.Stats().Dead != 1 {
		t.Fatalf("dead after reopen: %+v, %v", dl, err)
	}
	if left, _ := filepath.Glob(filepath.Join(o.Dir, "blobs", "*")); len(left) != 1 {
		t.Fatalf("image files: %v, want only y's", left)
	}
}
