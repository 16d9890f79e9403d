package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/spool"
)

// fakeArchiver records what the worker files.
type fakeArchiver struct {
	mu       sync.Mutex
	outcomes []spool.Outcome
}

func (a *fakeArchiver) Archive(_ context.Context, o spool.Outcome) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outcomes = append(a.outcomes, o)
	return nil
}

func (a *fakeArchiver) got() []spool.Outcome {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]spool.Outcome(nil), a.outcomes...)
}

// rawResult is a raw result of n float values v.
func rawResult(n int, v float32) *infer.Result {
	data := make([]float32, n)
	for i := range data {
		data[i] = v + float32(i%7)*0.123456
	}
	return &infer.Result{Kind: "raw", Raw: []infer.RawTensor{{Name: "out", Type: "float32", Shape: []int{1, n}, Data: data}}}
}

// manyDetections is a detection result of n detections (about 140 bytes of JSON each).
func manyDetections(n int) *infer.Result {
	r := &infer.Result{Kind: "detection"}
	for i := range n {
		r.Detections = append(r.Detections, infer.Detection{Label: "person", Class: i % 90, Score: 0.123456, Box: infer.Box{XMin: 1.5, YMin: 2.5, XMax: 100.25, YMax: 200.125}})
	}
	return r
}

// TestWorkerUnpublishableResults: a result that cannot be stored whole (over the outbox
// payload limit, or NaN/Inf, which JSON cannot carry) is never lost quietly: the job is
// dead-lettered at once with its reason, a small failed result and a dead event are
// published, the spool image is filed as failed (not done), and the worker's dead count
// agrees with the queue's. A raw result over model.raw_max_bytes is a failure too, or a
// summary (shapes and statistics) when model.raw_over_limit is summary.
//
// Before the fix a 405 KB result made AckNext fail ("outbox payload: … limit 262144"),
// the spool file was already filed as done, and the job stayed leased.
func TestWorkerUnpublishableResults(t *testing.T) {
	tests := []struct {
		name       string
		res        *infer.Result
		rawMax     int
		summary    bool
		wantStatus string
		wantErr    string // in the failed result's error
	}{
		{"small result published", manyDetections(10), 0, false, StatusOK, ""},
		{"detections over the outbox limit", manyDetections(3000), 0, false, StatusFailed, "over the outbox payload limit"},
		{"raw over the outbox limit", rawResult(40000, 1), 0, false, StatusFailed, "over model.raw_max_bytes"},
		{"raw over raw_max_bytes", rawResult(2000, 1), 4096, false, StatusFailed, "raw_over_limit: summary"},
		{"raw over raw_max_bytes summarized", rawResult(2000, 1), 4096, true, StatusOK, ""},
		{"raw over the outbox limit summarized", rawResult(40000, 1), 0, true, StatusOK, ""},
		{"raw NaN", rawResult(3, float32(math.NaN())), 0, false, StatusFailed, "cannot encode model output as JSON"},
		{"raw Inf", rawResult(3, float32(math.Inf(1))), 0, false, StatusFailed, "cannot encode model output as JSON"},
		{"raw NaN summarized", rawResult(3, float32(math.NaN())), 0, true, StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openTestQueue(t, 5)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go q.Run(ctx)
			if _, err := q.Enqueue(ctx, queue.NewJob{ID: "job-1", Source: "cam1", Image: []byte("img"), Meta: map[string]string{metaSpoolFile: "a.jpg"}}); err != nil {
				t.Fatal(err)
			}
			arch := &fakeArchiver{}
			eng := &fakeEngine{run: func(int, []byte) (*infer.Result, error) { return tt.res, nil }}
			w := newWorker(q, eng, arch, workerConfig{node: "node1", jobTimeout: time.Second, maxAttempts: 5, log: quietLogger()})
			w.tmpDir = t.TempDir()
			w.rawMax, w.rawSummary = tt.rawMax, tt.summary
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			rows := drainOutbox(t, q, 2, 10*time.Second)
			cancel()
			<-done

			res := resultsOf(t, rows)
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1 (rows %d)", len(res), len(rows))
			}
			got := res[0]
			if got.Status != tt.wantStatus || got.Attempt != 1 || !strings.Contains(got.Error, tt.wantErr) {
				t.Fatalf("status %q attempt %d error %q; want %q, attempt 1, error with %q", got.Status, got.Attempt, got.Error, tt.wantStatus, tt.wantErr)
			}
			events := eventsOf(t, rows)
			st, ws, out := q.Stats(), w.snapshot(), arch.got()
			if len(out) != 1 {
				t.Fatalf("archived %d times, want once: %+v", len(out), out)
			}
			if tt.wantStatus == StatusFailed {
				if got.Output != nil || !got.Permanent {
					t.Errorf("failed result: output %v permanent %v; want no output, permanent", got.Output != nil, got.Permanent)
				}
				if len(events) != 1 || events[0].Event != EventDead || events[0].Error != got.Error {
					t.Errorf("events %+v, want one dead event with the reason", events)
				}
				if st.Dead != 1 || ws.Dead != 1 || st.Leased != 0 || st.ReadyTotal+st.Delayed != 0 {
					t.Errorf("queue dead %d leased %d ready %d delayed %d, jobs.dead %d; want 1 dead in both, nothing else", st.Dead, st.Leased, st.ReadyTotal, st.Delayed, ws.Dead)
				}
				if !out[0].Failed || out[0].Reason != got.Error {
					t.Errorf("archived %+v, want failed with the reason", out[0])
				}
				return
			}
			if len(events) != 1 || events[0].Event != EventDone || st.Dead != 0 || ws.Done != 1 || out[0].Failed {
				t.Errorf("events %+v, dead %d, done %d, archived %+v; want done", events, st.Dead, ws.Done, out[0])
			}
			if tt.summary {
				if got.Output == nil || len(got.Output.RawSummary) != 1 || got.Output.Raw != nil {
					t.Fatalf("output %+v, want a raw summary", got.Output)
				}
				if s := got.Output.RawSummary[0]; s.Count != s.Shape[1] || s.Count != s.Finite+s.NaN+s.Inf || s.Type != "float32" {
					t.Errorf("summary %+v: want count = shape[1] = finite + nan + inf", s)
				}
			}
		})
	}
}

// eventsOf decodes the event rows.
func eventsOf(t *testing.T, rows []queue.OutboxRow) []EventMessage {
	t.Helper()
	var out []EventMessage
	for _, r := range rows {
		if r.Topic != "events" {
			continue
		}
		var e EventMessage
		if err := json.Unmarshal(r.Payload, &e); err != nil {
			t.Fatalf("event row: %v: %s", err, r.Payload)
		}
		out = append(out, e)
	}
	return out
}

// TestOutboxPayloadLimitIsTheQueues: OutboxPayloadLimit is what the queue takes in one
// operation: exactly the limit is stored, one byte more refused as invalid.
func TestOutboxPayloadLimitIsTheQueues(t *testing.T) {
	q := openTestQueue(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	for i, size := range []int{OutboxPayloadLimit + 1, OutboxPayloadLimit} {
		id := []string{"over", "at"}[i]
		if _, err := q.Enqueue(ctx, queue.NewJob{ID: id, Source: "s", Image: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		l, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = q.Ack(ctx, l, queue.OutboxMsg{Topic: "results/s", Payload: make([]byte, size-10)}, queue.OutboxMsg{Topic: "events", Payload: make([]byte, 10)})
		if over := size > OutboxPayloadLimit; over != errors.Is(err, queue.ErrInvalid) {
			t.Fatalf("ack with %d bytes of payload: %v", size, err)
		}
		if err != nil {
			if err := q.Dead(ctx, l, err); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestWorkerExhaustedAtLease: a job whose last attempt never settled (the process died
// with it) is dead-lettered by the queue at the next Lease; it too publishes a failed
// result and a dead event, counts in jobs.dead as in queue.dead, and its spool image is
// filed as failed. Before the fix such a job went to the dead set with nothing published
// and health said jobs.dead 0, queue.dead 1.
func TestWorkerExhaustedAtLease(t *testing.T) {
	dir := t.TempDir()
	open := func(w *worker) *queue.Queue {
		opts := queue.DefaultOptions(dir)
		opts.MaxAttempts = 2
		opts.Logger = quietLogger()
		if w != nil {
			opts.OnExhausted = w.exhausted
		}
		q, err := queue.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A previous process leased the job twice and died both times during the run.
	q := open(nil)
	if _, err := q.Enqueue(ctx, queue.NewJob{ID: "job-1", Source: "cam1", Image: []byte("img"), Meta: map[string]string{metaSpoolFile: "a.jpg"}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := q.Lease(ctx); err != nil {
			t.Fatal(err)
		}
		q.Close()
		q = open(nil)
	}
	q.Close()

	arch := &fakeArchiver{}
	eng := &fakeEngine{run: func(int, []byte) (*infer.Result, error) {
		t.Error("an exhausted job ran")
		return nil, errors.New("ran")
	}}
	w := newWorker(nil, eng, arch, workerConfig{node: "node1", jobTimeout: time.Second, maxAttempts: 2, log: quietLogger()})
	w.tmpDir = t.TempDir()
	q = open(w)
	defer q.Close()
	w.q = q
	go q.Run(ctx)
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	rows := drainOutbox(t, q, 2, 10*time.Second)
	cancel()
	<-done

	res, events := resultsOf(t, rows), eventsOf(t, rows)
	if len(res) != 1 || res[0].Status != StatusFailed || res[0].JobID != "job-1" || res[0].Attempt != 2 || !strings.Contains(res[0].Error, "attempts exhausted (2)") {
		t.Fatalf("results %+v, want one failed result for job-1, attempt 2, attempts exhausted", res)
	}
	if len(events) != 1 || events[0].Event != EventDead || events[0].Error != res[0].Error {
		t.Fatalf("events %+v, want one dead event with the reason", events)
	}
	if st, ws := q.Stats(), w.snapshot(); st.Dead != 1 || ws.Dead != 1 {
		t.Errorf("queue.dead %d jobs.dead %d, want 1 and 1", st.Dead, ws.Dead)
	}
	// The image is filed as failed, with the reason, never as done.
	if got := arch.got(); len(got) != 1 || !got[0].Failed {
		t.Errorf("archived %+v, want the job's image filed as failed once", got)
	}
}

// TestWorkerExhaustedFilesImage: when the dead-lettered job comes with access to its
// image (a Lease), its spool image is filed as failed with the reason, once.
func TestWorkerExhaustedFilesImage(t *testing.T) {
	for _, size := range []int{3, 10000} { // inline in the queue, and a blob file
		q := openTestQueue(t, 1)
		ctx, cancel := context.WithCancel(context.Background())
		go q.Run(ctx)
		if _, err := q.Enqueue(ctx, queue.NewJob{ID: "job-1", Source: "cam1", Image: make([]byte, size), Meta: map[string]string{metaSpoolFile: "a.jpg"}}); err != nil {
			t.Fatal(err)
		}
		l, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		arch := &fakeArchiver{}
		w := newWorker(q, &fakeEngine{}, arch, workerConfig{node: "node1", jobTimeout: time.Second, maxAttempts: 1, log: quietLogger()})
		w.tmpDir = t.TempDir()
		const reason = "attempts exhausted (1): the process stopped or the lease expired during the last attempt"
		out := w.exhausted(l, reason)
		if err := q.Dead(ctx, l, errors.New(reason), out...); err != nil {
			t.Fatal(err)
		}
		w.settleExhausted(ctx)
		got := arch.got()
		if len(got) != 1 || !got[0].Failed || got[0].Name != "a.jpg" || got[0].Reason != reason || got[0].ImagePath == "" {
			t.Errorf("%d-byte image: archived %+v, want a.jpg filed as failed with the reason", size, got)
		}
		if ws := w.snapshot(); ws.Dead != 1 {
			t.Errorf("jobs.dead %d, want 1", ws.Dead)
		}
		cancel()
	}
}
