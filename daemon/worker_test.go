package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
)

// fakeEngine is a unit-test stand-in for the supervised TFLite engine: it lets the test
// decide what each run returns. The real engine is exercised in e2e_test.go.
type fakeEngine struct {
	mu      sync.Mutex
	runs    int
	run     func(n int, img []byte) (*infer.Result, error)
	open    func() error
	reloads int
}

func (f *fakeEngine) Run(ctx context.Context, img []byte) (*infer.Result, error) {
	f.mu.Lock()
	f.runs++
	n := f.runs
	f.mu.Unlock()
	return f.run(n, img)
}

func (f *fakeEngine) Open(context.Context) error {
	if f.open != nil {
		return f.open()
	}
	return nil
}

func (f *fakeEngine) Info() infer.ModelInfo {
	return infer.ModelInfo{Name: "fake.tflite", SHA256: strings.Repeat("ab", 32)}
}

func (f *fakeEngine) Reload(context.Context, *infer.ModelConfig) error {
	f.mu.Lock()
	f.reloads++
	f.mu.Unlock()
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestQueue(t *testing.T, maxAttempts int) *queue.Queue {
	t.Helper()
	opts := queue.DefaultOptions(t.TempDir())
	opts.MaxAttempts = maxAttempts
	opts.BackoffBase = time.Millisecond
	opts.BackoffMax = 5 * time.Millisecond
	opts.Logger = quietLogger()
	q, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// drainOutbox collects outbox rows until want rows arrived or the time is up.
func drainOutbox(t *testing.T, q *queue.Queue, want int, timeout time.Duration) []queue.OutboxRow {
	t.Helper()
	var rows []queue.OutboxRow
	deadline := time.Now().Add(timeout)
	for len(rows) < want && time.Now().Before(deadline) {
		got, err := q.OutboxPeek(100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			rows = append(rows, r)
			if err := q.OutboxDelete(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return rows
}

func resultsOf(t *testing.T, rows []queue.OutboxRow) []ResultMessage {
	t.Helper()
	var out []ResultMessage
	for _, r := range rows {
		if !strings.HasPrefix(r.Topic, "results/") {
			continue
		}
		var m ResultMessage
		if err := json.Unmarshal(r.Payload, &m); err != nil {
			t.Fatalf("result row %s: %v: %s", r.Topic, err, r.Payload)
		}
		out = append(out, m)
	}
	return out
}

func TestWorkerOutcomes(t *testing.T) {
	okResult := &infer.Result{Kind: "classification", Classes: []infer.Class{{Index: 3, Label: "cat", Score: 0.9}}}
	tests := []struct {
		name        string
		maxAttempts int
		run         func(n int, img []byte) (*infer.Result, error)
		wantStatus  string
		wantAttempt int
		wantPerm    bool
		wantErr     string
	}{
		{"ok", 3, func(int, []byte) (*infer.Result, error) { return okResult, nil }, StatusOK, 1, false, ""},
		{"permanent error dead at once", 3,
			func(int, []byte) (*infer.Result, error) {
				return nil, fmt.Errorf("%w: cannot decode image: not a JPEG or PNG", infer.ErrPermanent)
			}, StatusFailed, 1, true, "not a JPEG or PNG"},
		{"transient then ok", 3,
			func(n int, _ []byte) (*infer.Result, error) {
				if n < 3 {
					return nil, errors.New("engine child crashed")
				}
				return okResult, nil
			}, StatusOK, 3, false, ""},
		{"transient until attempts run out", 2,
			func(int, []byte) (*infer.Result, error) { return nil, errors.New("engine child crashed") },
			StatusFailed, 2, false, "engine child crashed"},
		{"NaN output cannot be published", 3,
			func(int, []byte) (*infer.Result, error) {
				return &infer.Result{Kind: "raw", Raw: []infer.RawTensor{{Name: "out", Data: []float32{float32(math.NaN())}}}}, nil
			}, StatusFailed, 1, true, "cannot encode model output as JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openTestQueue(t, tt.maxAttempts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go q.Run(ctx)
			if _, err := q.Enqueue(ctx, queue.NewJob{ID: "job-1", Source: "cam1", Priority: 2, Image: []byte("img"), Meta: map[string]string{"k": "v"}}); err != nil {
				t.Fatal(err)
			}
			w := newWorker(q, &fakeEngine{run: tt.run}, nil, workerConfig{node: "node1", jobTimeout: time.Second, maxAttempts: tt.maxAttempts, log: quietLogger()})
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			res := resultsOf(t, drainOutbox(t, q, tt.wantAttempt+1, 10*time.Second))
			cancel()
			<-done
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1: %+v", len(res), res)
			}
			got := res[0]
			if got.JobID != "job-1" || got.Source != "cam1" || got.Node != "node1" || got.Metadata["k"] != "v" || got.Priority != 2 {
				t.Errorf("identity fields wrong: %+v", got)
			}
			if got.Status != tt.wantStatus || got.Attempt != tt.wantAttempt || got.Permanent != tt.wantPerm {
				t.Errorf("status %q attempt %d permanent %v; want %q %d %v (error %q)", got.Status, got.Attempt, got.Permanent, tt.wantStatus, tt.wantAttempt, tt.wantPerm, got.Error)
			}
			if !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", got.Error, tt.wantErr)
			}
			if tt.wantStatus == StatusOK && (got.Output == nil || got.Output.Classes[0].Label != "cat") {
				t.Errorf("output = %+v, want the engine's result", got.Output)
			}
			if got.Model == nil || got.Model.Name != "fake.tflite" {
				t.Errorf("model = %+v", got.Model)
			}
			st := q.Stats()
			wantDead := 0
			if tt.wantStatus == StatusFailed {
				wantDead = 1
			}
			if st.Dead != wantDead || st.ReadyTotal != 0 || st.Leased != 0 {
				t.Errorf("queue after: dead %d ready %d leased %d; want dead %d, nothing else", st.Dead, st.ReadyTotal, st.Leased, wantDead)
			}
		})
	}
}

// A job cut short by shutdown is not acked, retried or dead-lettered: it stays leased and
// the next Open releases it in its place.
func TestWorkerShutdownLeavesLease(t *testing.T) {
	q := openTestQueue(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := q.Enqueue(ctx, queue.NewJob{ID: "slow", Source: "s", Image: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	eng := &fakeEngine{run: func(int, []byte) (*infer.Result, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	w := newWorker(q, eng, nil, workerConfig{node: "n", jobTimeout: time.Minute, maxAttempts: 3, log: quietLogger()})
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	st := q.Stats()
	if st.Leased != 1 || st.Dead != 0 || st.Outbox != 0 {
		t.Errorf("after shutdown: leased %d dead %d outbox %d; want 1 leased, nothing else", st.Leased, st.Dead, st.Outbox)
	}
}

func TestWorkerAliveAndReload(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	eng := &fakeEngine{}
	w := newWorker(nil, eng, nil, workerConfig{node: "n", jobTimeout: 10 * time.Second, maxAttempts: 3, now: clock, log: quietLogger()})
	w.beat()
	if err := w.Alive(); err != nil {
		t.Fatalf("fresh worker not alive: %v", err)
	}
	now = now.Add(10*time.Second + leasePoll + 31*time.Second)
	if err := w.Alive(); err == nil || !strings.Contains(err.Error(), "worker loop silent") {
		t.Fatalf("stuck worker: Alive() = %v, want an error", err)
	}
	w.doReload(context.Background())
	if eng.reloads != 1 {
		t.Errorf("reloads = %d, want 1", eng.reloads)
	}
}
