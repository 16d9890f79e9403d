package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/queue"
)

// overlapEngine records each run and the next image it was handed, and holds a run
// until the test lets it go.
type overlapEngine struct {
	fakeEngine
	mu    sync.Mutex
	order []string // job images run, in order
	next  []string // the next image handed over with each run ("" when none)
	gate  chan struct{}
}

func (e *overlapEngine) RunNext(ctx context.Context, img []byte, key string, next []byte, nextKey string) (*infer.Result, error) {
	e.mu.Lock()
	e.order = append(e.order, string(img))
	e.next = append(e.next, string(next))
	e.mu.Unlock()
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &infer.Result{Kind: "classification", Classes: []infer.Class{{Label: string(img), Score: 1}}}, nil
}

func (e *overlapEngine) Run(ctx context.Context, img []byte) (*infer.Result, error) {
	return e.RunNext(ctx, img, "", nil, "")
}

func (e *overlapEngine) runs() (order, next []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.order...), append([]string(nil), e.next...)
}

// TestOverlapOrder: with overlap the job after the running one is held and its image
// handed to the engine to prepare; a job that arrives meanwhile with a higher priority
// still runs before the held one, and the held one's image is handed over again. With
// overlap off nothing is handed over and the order is the same.
func TestOverlapOrder(t *testing.T) {
	for _, overlap := range []bool{true, false} {
		t.Run(map[bool]string{true: "overlap", false: "sequential"}[overlap], func(t *testing.T) {
			q := openTestQueue(t, 3)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			eng := &overlapEngine{gate: make(chan struct{})}
			w := newWorker(q, eng, nil, workerConfig{node: "n", jobTimeout: time.Minute, maxAttempts: 3, overlap: overlap, log: quietLogger()})
			w.loaded.Store(true)
			for _, j := range []queue.NewJob{{ID: "a", Image: []byte("a")}, {ID: "b", Image: []byte("b")}} {
				if _, err := q.Enqueue(ctx, j); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			testenv.WaitFor(t, "a to start", 10*time.Second, func() bool { o, _ := eng.runs(); return len(o) == 1 })
			if _, err := q.Enqueue(ctx, queue.NewJob{ID: "c", Priority: 9, Image: []byte("c")}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				eng.gate <- struct{}{}
			}
			testenv.WaitFor(t, "three jobs done", 10*time.Second, func() bool { return w.snapshot().Done == 3 })
			cancel()
			<-done
			order, next := eng.runs()
			if got := order[0] + order[1] + order[2]; got != "acb" {
				t.Fatalf("run order %q, want a, then c (priority 9, arrived while b was held), then b", got)
			}
			want := []string{"b", "b", ""}
			if !overlap {
				want = []string{"", "", ""}
			}
			for i := range want {
				if next[i] != want[i] {
					t.Fatalf("next images handed over %q, want %q", next, want)
				}
			}
		})
	}
}

// TestOverlapStopReleasesHeld: stopping while a job runs and the next is held leaves the
// running one leased (it runs again after restart, as without overlap) and gives the
// held one back unrun: its attempt is not counted.
func TestOverlapStopReleasesHeld(t *testing.T) {
	q := openTestQueue(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	eng := &overlapEngine{gate: make(chan struct{})}
	w := newWorker(q, eng, nil, workerConfig{node: "n", jobTimeout: time.Minute, maxAttempts: 3, overlap: true, log: quietLogger()})
	w.loaded.Store(true)
	for _, id := range []string{"a", "b"} {
		if _, err := q.Enqueue(ctx, queue.NewJob{ID: id, Image: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testenv.WaitFor(t, "a to run with b held", 10*time.Second, func() bool { _, n := eng.runs(); return len(n) == 1 && n[0] == "b" })
	cancel()
	<-done
	a, err := q.Get("a")
	if err != nil || a.State != "leased" || a.Attempt != 1 {
		t.Errorf("a: %+v %v; want still leased at attempt 1", a, err)
	}
	b, err := q.Get("b")
	if err != nil || b.State != "ready" || b.Attempt != 0 {
		t.Errorf("b: %+v %v; want ready again, attempt 0", b, err)
	}
}
