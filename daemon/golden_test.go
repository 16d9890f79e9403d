package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
)

var update = flag.Bool("update", false, "rewrite golden files")

// checkGolden compares v's indented JSON with testdata/golden/daemon/<name>.
func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("..", "testdata", "golden", "daemon", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./daemon -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed; got:\n%s\nwant:\n%s", path, got, want)
	}
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestGoldenResultMessages(t *testing.T) {
	started := t0.Add(1500 * time.Millisecond)
	ok := ResultMessage{
		JobID: "0f5c3a", Node: "box-7", Source: "door", Status: StatusOK, Attempt: 1, Priority: 5,
		Metadata: map[string]string{"spool.file": "IMG_0001.jpg"}, ReceivedAt: t0, StartedAt: &started,
		FinishedAt: started.Add(12 * time.Millisecond), Model: &ModelRef{Name: "mobilenet.tflite", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		Output: &infer.Result{Kind: "detection",
			Detections: []infer.Detection{{Class: 0, Label: "person", Score: 0.91, Box: infer.Box{XMin: 12, YMin: 40, XMax: 200, YMax: 460}}}},
		Timings: JobTimings{QueuedMS: 1500, RunMS: 12, TotalMS: 1512},
	}
	checkGolden(t, "result_ok.json", ok)
	failed := ResultMessage{
		JobID: "7d1e", Node: "box-7", Source: "spool", Status: StatusFailed, Attempt: 1, ReceivedAt: t0, StartedAt: &started,
		FinishedAt: started.Add(time.Millisecond), Error: "image: cannot decode: unexpected EOF (truncated JPEG)", Permanent: true,
		Timings: JobTimings{QueuedMS: 1500, RunMS: 1, TotalMS: 1501},
	}
	checkGolden(t, "result_failed.json", failed)
	checkGolden(t, "event_dead.json", EventMessage{Event: EventDead, JobID: "7d1e", Node: "box-7", Source: "spool", At: t0, Attempt: 1, Error: "image: cannot decode"})
}

func TestGoldenHealth(t *testing.T) {
	in := healthInputs{
		seq: 42, node: "box-7", version: "0.1.0", now: t0.Add(90 * time.Minute), startedAt: t0,
		model:  infer.ModelInfo{Name: "mobilenet.tflite", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", LoadedAt: t0, Runtime: "tflite", Kind: "classification"},
		engine: engineStats{Restarts: 1, Crashes: 1},
		queue: queue.Stats{Ready: map[int]int{0: 10, 5: 2}, ReadyTotal: 12, Leased: 1, Delayed: 3, Dead: 2, Outbox: 4,
			Bytes: 123456, OldestReady: 95 * time.Second, OutboxOldest: 30 * time.Second, Full: false, Expired: 1, Recovered: 7, MaxJobs: 100000, MaxBytes: 2 << 30},
		worker: workerSnapshot{WorkerStats: WorkerStats{Done: 1000, Retried: 3, Dead: 2, LastError: "job 7d1e attempt 1: image: cannot decode", LastErrorAt: t0.Add(80 * time.Minute)},
			P50: 6 * time.Millisecond, P90: 9 * time.Millisecond, P99: 15 * time.Millisecond, PerMinute: 120},
		mqtt:  &HealthMQTT{Connected: false, Reconnects: 2, Published: 1004, LastError: "connection refused"},
		spool: &HealthSpool{Taken: 900, Refused: 1},
		disk:  HealthDisk{Path: "/var/lib/inferq", FreeBytes: 10 << 30},
	}
	h := buildHealth(in)
	if h.Status != HealthDegraded {
		t.Errorf("status = %q, want degraded (broker away)", h.Status)
	}
	checkGolden(t, "health.json", h)
}

func TestHealthStatus(t *testing.T) {
	base := func() healthInputs {
		return healthInputs{now: t0, startedAt: t0, model: infer.ModelInfo{SHA256: "x"}, mqtt: &HealthMQTT{Connected: true}}
	}
	tests := []struct {
		name   string
		mutate func(*healthInputs)
		want   string
		prob   string
	}{
		{"all well", func(*healthInputs) {}, HealthOK, ""},
		{"queue full", func(in *healthInputs) { in.queue.Full = true }, HealthDegraded, "queue full"},
		{"broker away", func(in *healthInputs) { in.mqtt.Connected = false }, HealthDegraded, "broker not connected"},
		{"reload failed", func(in *healthInputs) { in.worker.ReloadErr = errors.New("bad model") }, HealthDegraded, "model reload failed: bad model"},
		{"damaged records", func(in *healthInputs) { in.queue.Damaged = 2 }, HealthDegraded, "2 damaged queue records"},
		{"stuck worker", func(in *healthInputs) { in.alive = errors.New("worker loop silent for 2m") }, HealthFailing, "worker loop silent"},
		{"no model", func(in *healthInputs) { in.model.SHA256 = "" }, HealthFailing, "no model loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.mutate(&in)
			h := buildHealth(in)
			if h.Status != tt.want {
				t.Errorf("status = %q, want %q (problems %q)", h.Status, tt.want, h.Problems)
			}
			if tt.prob != "" && (len(h.Problems) == 0 || !bytes.Contains([]byte(h.Problems[0]), []byte(tt.prob))) {
				t.Errorf("problems = %q, want one with %q", h.Problems, tt.prob)
			}
			if tt.prob == "" && len(h.Problems) != 0 {
				t.Errorf("problems = %q, want none", h.Problems)
			}
		})
	}
}
