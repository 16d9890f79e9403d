package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/queue"
)

// overlapEngine records each run and each image handed over to prepare, and holds a
// run until the test lets it go.
type overlapEngine struct {
	fakeEngine
	mu    sync.Mutex
	order []string // job images run, in order
	next  []string // the images handed over to prepare, in order
	gate  chan struct{}
}

func (e *overlapEngine) RunKey(ctx context.Context, img []byte, key string) (*infer.Result, error) {
	e.mu.Lock()
	e.order = append(e.order, string(img))
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

func (e *overlapEngine) Prepare(key string, img []byte) {
	e.mu.Lock()
	e.next = append(e.next, string(img))
	e.mu.Unlock()
}

func (e *overlapEngine) Run(ctx context.Context, img []byte) (*infer.Result, error) {
	return e.RunKey(ctx, img, "")
}

func (e *overlapEngine) runs() (order, next []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.order...), append([]string(nil), e.next...)
}

// startWorker runs a loaded worker on q and eng until the returned stop is called (it
// waits for Run to return); paused may be nil.
func startWorker(q workQueue, eng engine, overlap bool, paused func() bool) (w *worker, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w = newWorker(q, eng, nil, workerConfig{node: "n", jobTimeout: time.Minute, maxAttempts: 3, overlap: overlap, paused: paused, log: quietLogger()})
	w.loaded.Store(true)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, func() { cancel(); <-done }
}

// enqueue queues jobs whose image is their id.
func enqueue(t *testing.T, q *queue.Queue, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := q.Enqueue(context.Background(), queue.NewJob{ID: id, Image: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOverlapOrder: with overlap the job after the running one is held and its image
// handed to the engine to prepare; a job that arrives meanwhile with a higher priority
// still runs before the held one (which is not handed over twice). With overlap off
// nothing is handed over and the order is the same.
func TestOverlapOrder(t *testing.T) {
	for _, overlap := range []bool{true, false} {
		t.Run(map[bool]string{true: "overlap", false: "sequential"}[overlap], func(t *testing.T) {
			q := openTestQueue(t, 3)
			eng := &overlapEngine{gate: make(chan struct{})}
			enqueue(t, q, "a", "b")
			w, stop := startWorker(q, eng, overlap, nil)
			testenv.WaitFor(t, "a to start", 10*time.Second, func() bool { o, _ := eng.runs(); return len(o) == 1 })
			if _, err := q.Enqueue(context.Background(), queue.NewJob{ID: "c", Priority: 9, Image: []byte("c")}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				eng.gate <- struct{}{}
			}
			testenv.WaitFor(t, "three jobs done", 10*time.Second, func() bool { return w.snapshot().Done == 3 })
			stop()
			order, next := eng.runs()
			if got := order[0] + order[1] + order[2]; got != "acb" {
				t.Fatalf("run order %q, want a, then c (priority 9, arrived while b was held), then b", got)
			}
			// b is handed over once, while a runs, and kept while c runs before it.
			want := "b"
			if !overlap {
				want = ""
			}
			if strings.Join(next, ",") != want {
				t.Fatalf("images handed over to prepare %q, want %q", next, want)
			}
		})
	}
}

// TestOverlapStopReleasesHeld: stopping while a job runs and the next is held leaves the
// running one leased (it runs again after restart, as without overlap) and gives the
// held one back unrun: its attempt is not counted.
func TestOverlapStopReleasesHeld(t *testing.T) {
	q := openTestQueue(t, 3)
	eng := &overlapEngine{gate: make(chan struct{})}
	enqueue(t, q, "a", "b")
	_, stop := startWorker(q, eng, true, nil)
	testenv.WaitFor(t, "a to run with b held", 10*time.Second, func() bool { o, n := eng.runs(); return len(o) == 1 && len(n) == 1 && n[0] == "b" })
	stop()
	a, err := q.Get("a")
	if err != nil || a.State != "leased" || a.Attempt != 1 {
		t.Errorf("a: %+v %v; want still leased at attempt 1", a, err)
	}
	b, err := q.Get("b")
	if err != nil || b.State != "ready" || b.Attempt != 0 {
		t.Errorf("b: %+v %v; want ready again, attempt 0", b, err)
	}
}

// ackGate is the queue with the ack of one job held until the test lets it go.
type ackGate struct {
	*queue.Queue
	id      string
	entered chan struct{}
	release chan struct{}
}

func (g *ackGate) AckNext(ctx context.Context, l *queue.Lease, out ...queue.OutboxMsg) (*queue.Lease, error) {
	if l.Job.ID == g.id {
		close(g.entered)
		<-g.release
	}
	return g.Queue.AckNext(ctx, l, out...)
}

// TestOverlapStartsBeforeSettle: with overlap the held job's model starts as soon as the
// running one's is done, while that one's ack is still being committed; the acks stay in
// order and each job is done once. With overlap off the next job waits for the ack.
func TestOverlapStartsBeforeSettle(t *testing.T) {
	for _, overlap := range []bool{true, false} {
		t.Run(map[bool]string{true: "overlap", false: "sequential"}[overlap], func(t *testing.T) {
			q := openTestQueue(t, 3)
			g := &ackGate{Queue: q, id: "a", entered: make(chan struct{}), release: make(chan struct{})}
			eng := &overlapEngine{}
			enqueue(t, q, "a", "b", "c")
			w, stop := startWorker(g, eng, overlap, nil)
			<-g.entered // a's model is done; its ack waits
			if overlap {
				testenv.WaitFor(t, "b to start while a's ack waits", 10*time.Second, func() bool { o, _ := eng.runs(); return len(o) == 2 })
			} else {
				time.Sleep(50 * time.Millisecond)
				if o, _ := eng.runs(); len(o) != 1 {
					t.Fatalf("sequential: runs %q before a's ack committed", o)
				}
			}
			if a, _ := q.Get("a"); a.State != "leased" {
				t.Fatalf("a is %s before its ack, want leased", a.State)
			}
			close(g.release)
			testenv.WaitFor(t, "three jobs done", 10*time.Second, func() bool { return w.snapshot().Done == 3 })
			stop()
			if o, _ := eng.runs(); strings.Join(o, "") != "abc" {
				t.Fatalf("runs %q, want a, b, c once each", o)
			}
			for _, id := range []string{"a", "b", "c"} {
				if j, err := q.Get(id); err != nil || j.State != "done" {
					t.Errorf("%s: state %q, %v; want done", id, j.State, err)
				}
			}
		})
	}
}

// TestPausedWhileWaiting: a worker paused while it waits for a job does not run the job
// that then arrives; it runs after resume, once.
func TestPausedWhileWaiting(t *testing.T) {
	for _, overlap := range []bool{true, false} {
		t.Run(map[bool]string{true: "overlap", false: "sequential"}[overlap], func(t *testing.T) {
			q := openTestQueue(t, 3)
			eng := &overlapEngine{}
			var paused atomic.Bool
			w, stop := startWorker(q, eng, overlap, paused.Load)
			defer stop()
			time.Sleep(100 * time.Millisecond) // the worker waits in Lease (up to leasePoll)
			paused.Store(true)
			enqueue(t, q, "a")
			time.Sleep(300 * time.Millisecond)
			if o, _ := eng.runs(); len(o) != 0 {
				t.Fatalf("ran %q while paused", o)
			}
			if a, err := q.Get("a"); err != nil || a.State != "ready" {
				t.Fatalf("a: state %q, %v; want ready again", a.State, err)
			}
			paused.Store(false)
			testenv.WaitFor(t, "a done after resume", 10*time.Second, func() bool { return w.snapshot().Done == 1 })
			if o, _ := eng.runs(); strings.Join(o, "") != "a" {
				t.Fatalf("runs %q, want a once", o)
			}
		})
	}
}

// crashQueue is the queue until crash is set: from then on every call the worker makes
// fails without touching the store, as if the process had died at that moment.
type crashQueue struct {
	*queue.Queue
	ackEntered chan struct{} // closed when the ack of job "a" is called
	crashed    atomic.Bool
	gate       chan struct{} // a's ack waits here
}

var errCrashed = errors.New("process died")

func (c *crashQueue) AckNext(ctx context.Context, l *queue.Lease, out ...queue.OutboxMsg) (*queue.Lease, error) {
	if l.Job.ID == "a" {
		close(c.ackEntered)
		<-c.gate
	}
	if c.crashed.Load() {
		return nil, errCrashed
	}
	return c.Queue.AckNext(ctx, l, out...)
}

func (c *crashQueue) Lease(ctx context.Context) (*queue.Lease, error) {
	if c.crashed.Load() {
		return nil, errCrashed
	}
	return c.Queue.Lease(ctx)
}

func (c *crashQueue) Dead(ctx context.Context, l *queue.Lease, cause error, out ...queue.OutboxMsg) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Queue.Dead(ctx, l, cause, out...)
}

func (c *crashQueue) Release(ctx context.Context, l *queue.Lease) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Queue.Release(ctx, l)
}

func (c *crashQueue) Nack(ctx context.Context, l *queue.Lease, cause error, out ...queue.OutboxMsg) (bool, error) {
	if c.crashed.Load() {
		return false, errCrashed
	}
	return c.Queue.Nack(ctx, l, cause, out...)
}

// TestOverlapCrashWithAckInFlight: the worst moment for a crash with overlap: job a's
// model is done and its ack (which would also lease c) not yet committed, while b's model
// runs. After the crash and a reopen a and b are back with their attempt counted and c
// untouched (none lost, none done without its result), and a new worker gives each
// exactly one result.
func TestOverlapCrashWithAckInFlight(t *testing.T) {
	dir := t.TempDir()
	opts := queue.DefaultOptions(dir)
	opts.MaxAttempts = 3
	opts.Logger = quietLogger()
	q, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "a", "b", "c")
	cq := &crashQueue{Queue: q, ackEntered: make(chan struct{}), gate: make(chan struct{})}
	eng := &overlapEngine{gate: make(chan struct{})}
	_, stop := startWorker(cq, eng, true, nil)
	eng.gate <- struct{}{} // a's model finishes
	<-cq.ackEntered
	testenv.WaitFor(t, "b running while a's ack waits", 10*time.Second, func() bool {
		o, _ := eng.runs()
		return strings.Join(o, "") == "ab"
	})
	for id, want := range map[string]string{"a": "leased", "b": "leased", "c": "ready"} {
		if j, _ := q.Get(id); j.State != want {
			t.Fatalf("%s is %s at the crash, want %s", id, j.State, want)
		}
	}
	cq.crashed.Store(true)
	close(cq.gate)
	stop()
	q.Close()

	q, err = queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for id, attempt := range map[string]int{"a": 1, "b": 1, "c": 0} {
		if j, err := q.Get(id); err != nil || j.State != "ready" || j.Attempt != attempt {
			t.Fatalf("%s after the crash: state %q attempt %d, %v; want ready at attempt %d", id, j.State, j.Attempt, err, attempt)
		}
	}
	if rows, _ := q.OutboxPeek(10); len(rows) != 0 {
		t.Fatalf("outbox after the crash: %d rows, want none (no ack was committed)", len(rows))
	}
	w2, stop2 := startWorker(q, &overlapEngine{}, true, nil)
	testenv.WaitFor(t, "three jobs done after the restart", 10*time.Second, func() bool { return w2.snapshot().Done == 3 })
	stop2()
	results := map[string]int{}
	for _, r := range drainOutbox(t, q, 6, 5*time.Second) {
		if strings.HasPrefix(r.Topic, "results/") {
			var m ResultMessage
			if err := json.Unmarshal(r.Payload, &m); err != nil {
				t.Fatal(err)
			}
			results[m.JobID]++
			if want := map[string]int{"a": 2, "b": 2, "c": 1}[m.JobID]; m.Status != StatusOK || m.Attempt != want {
				t.Errorf("result %s: status %s attempt %d, want ok at attempt %d", m.JobID, m.Status, m.Attempt, want)
			}
		}
	}
	if results["a"] != 1 || results["b"] != 1 || results["c"] != 1 || len(results) != 3 {
		t.Fatalf("results per job %v, want exactly one each for a, b, c", results)
	}
}
