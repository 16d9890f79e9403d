package queue

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOptions are small-device options with a fake clock and no jitter.
func testOptions(t testing.TB, dir string, clk *fakeClock) Options {
	t.Helper()
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	o.CommitWindow = 0
	if clk != nil {
		o.Now = clk.Now
	}
	o.jitter = func() float64 { return 1 }
	return o
}

func mustOpen(t testing.TB, o Options) *Queue {
	t.Helper()
	q, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func mustEnqueue(t testing.TB, q *Queue, j NewJob) {
	t.Helper()
	if j.Image == nil && j.ImageFile == "" {
		j.Image = []byte("img-" + j.ID)
	}
	res, err := q.Enqueue(context.Background(), j)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", j.ID, err)
	}
	if res.Duplicate {
		t.Fatalf("Enqueue(%s): duplicate (%s)", j.ID, res.State)
	}
}

// poll leases without blocking: nil when no job is ready.
func poll(t testing.TB, q *Queue) *Lease {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l, err := q.Lease(ctx)
	if err == context.Canceled {
		return nil
	}
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return l
}
