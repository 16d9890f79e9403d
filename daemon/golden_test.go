package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/spool"
)

// checkGolden compares v's indented JSON with testdata/golden/daemon/<name>.
func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("daemon", name), append(got, '\n'))
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

// at is t0+d as a health timestamp.
func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

func TestGoldenHealth(t *testing.T) {
	in := healthInputs{
		seq: 42, bootID: "5f0c8a1e9b7d4c3a2e1f0a9b8c7d6e5f", interval: 30 * time.Second, node: "box-7", version: "0.1.0", now: t0.Add(90 * time.Minute), startedAt: t0,
		model: infer.ModelInfo{Name: "mobilenet.tflite", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", LoadedAt: t0, Runtime: "tflite", Kind: "classification",
			Version: "2.14.1", Inputs: []infer.TensorInfo{{Name: "input", Type: "uint8", Shape: []int{1, 224, 224, 3}, Scale: 0.0078125, ZeroPoint: 128}},
			Outputs: []infer.TensorInfo{{Name: "scores", Type: "uint8", Shape: []int{1, 1001}, Scale: 0.00390625}}, Labels: 1001,
			InputConvention: "raw pixels 0..255 (uint8 input, scale 0.0078125, zero point 128; auto)", LabelsFormat: "one_per_line",
			DelegateError: "no delegate configured", Decoder: "libjpeg-turbo 2.1.5 (/usr/lib/x86_64-linux-gnu/libturbojpeg.so.0.2.0)",
			LabelsSource: "model.labels",
			TFLite: &infer.TFLiteInfo{Library: "/var/lib/inferq/tflite/usr/lib/x86_64-linux-gnu/libtensorflow-lite.so.2.14.1", Version: "2.14.1",
				Choice: "configured", XNNPACKError: "TFLite 2.14.1: the XNNPACK delegate is created only for TFLite 2.9.x", Cancel: true}},
		// The crash is past: the engine ran a job after it.
		engine: engineStats{Restarts: 1, Crashes: 1, LastError: "engine child crashed: signal: segmentation fault", LastErrorAt: t0.Add(30 * time.Minute)},
		queue: queue.Stats{Ready: map[int]int{0: 10, 5: 2}, ReadyTotal: 12, Leased: 1, Delayed: 3, Dead: 2, Outbox: 4,
			Bytes: 123456, OldestReady: 95 * time.Second, OutboxOldest: 30 * time.Second, Full: false, Expired: 1, Recovered: 7, MaxJobs: 100000, MaxBytes: 2 << 30,
			DiskFree: 10 << 30, DiskReserve: 24 << 20, DiskRefused: 0},
		worker: workerSnapshot{WorkerStats: WorkerStats{Done: 1000, Retried: 3, Dead: 2, LastError: "job 7d1e attempt 1: image: cannot decode", LastErrorAt: t0.Add(80 * time.Minute),
			EngineOKAt: t0.Add(89 * time.Minute)},
			jobTimesSummary: jobTimesSummary{P50: 6 * time.Millisecond, P90: 9 * time.Millisecond, P99: 15 * time.Millisecond, PerMinute: 120}},
		mqtt: &HealthMQTT{Connected: false, Reconnects: 2, Published: 1004, Refused: 19, Rejected: 3,
			LastRefused:   `inferq/box-7/ingest/cam1: malformed ingest payload: json envelope: id "xxxx…(5000 bytes)": longer than 128 bytes`,
			LastRefusedAt: at(85 * time.Minute), LastError: "cannot connect to [tcp://broker:1883]: connection refused", LastErrorAt: at(88 * time.Minute),
			PastError: "cannot enqueue: queue full", PastErrorAt: at(20 * time.Minute)},
		// The archive failure is older than an hour: counted, no longer a problem.
		spool: &HealthSpool{Taken: 900, Refused: 3, Unmovable: 1, Waiting: 2, WaitingEmpty: 1, OldestWaitingS: 42,
			LastRefused:     "door/IMG_0042.jpg: cannot read image file: open /var/lib/inferq/claimed/f-1__door__IMG_0042.jpg: permission denied",
			LastRefusedAt:   at(70 * time.Minute),
			ArchiveFailures: 1, LastArchiveError: "cannot archive job f-9: write /srv/failed/door/.partial-f-9__x.jpg: no space left on device",
			LastArchiveErrorAt: at(10 * time.Minute)},
		disk: HealthDisk{Path: "/var/lib/inferq", FreeBytes: 10 << 30},
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
		{"disk nearly full", func(in *healthInputs) {
			in.queue.Full, in.queue.DiskFull, in.queue.DiskFree, in.queue.DiskReserve = true, true, 20<<20, 24<<20
		}, HealthDegraded, "disk nearly full: 20.0 MiB free, reserve 24.0 MiB: new input is refused"},
		{"disk full, leases held", func(in *healthInputs) {
			in.queue.Full, in.queue.DiskFull, in.queue.LeasesHeld, in.queue.DiskFree, in.queue.DiskReserve = true, true, true, 1<<20, 24<<20
		}, HealthFailing, "disk full: 1.0 MiB free, reserve 24.0 MiB"},
		{"state on tmpfs", func(in *healthInputs) { in.queue.Volatile = "tmpfs" }, HealthDegraded, "state_dir is on tmpfs"},
		{"spool file refused", func(in *healthInputs) {
			in.spool = &HealthSpool{Refused: 3, LastRefused: "cam/a.jpg: permission denied", LastRefusedAt: at(-time.Minute)}
		}, HealthDegraded, "spool: 3 files refused, last: cam/a.jpg: permission denied"},
		{"spool refusal long ago", func(in *healthInputs) {
			in.spool = &HealthSpool{Refused: 3, LastRefused: "cam/a.jpg: permission denied", LastRefusedAt: at(-2 * time.Hour)}
		}, HealthOK, ""},
		{"spool files waiting", func(in *healthInputs) { in.spool = &HealthSpool{Waiting: 2, WaitingEmpty: 1, OldestWaitingS: 42} },
			HealthDegraded, "spool: 2 files waiting longer than settle_time (1 empty), oldest 42 s"},
		{"spool paused", func(in *healthInputs) { in.spool = &HealthSpool{Paused: true, Pending: 4, LastError: "queue closed"} },
			HealthDegraded, "spool paused: the queue takes no files, 4 claimed files wait: queue closed"},
		{"spool file unmovable", func(in *healthInputs) { in.spool = &HealthSpool{Unmovable: 1} },
			HealthDegraded, "spool: 1 refused files could not be moved"},
		{"archive failing", func(in *healthInputs) {
			in.spool = &HealthSpool{ArchiveFailures: 2, LastArchiveError: "no space left on device", LastArchiveErrorAt: at(-time.Minute)}
		}, HealthDegraded, "spool: 2 finished images could not be archived, last: no space left on device"},
		{"mqtt refusals", func(in *healthInputs) {
			in.mqtt.Refused, in.mqtt.LastRefused, in.mqtt.LastRefusedAt = 19, "t: not an image", at(-time.Minute)
		}, HealthDegraded, "mqtt: 19 ingest messages refused, last: t: not an image"},
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

// The engine's last error is current until the engine works after it, then past.
func TestEngineErrorPast(t *testing.T) {
	crash := engineStats{Crashes: 1, LastError: "crashed", LastErrorAt: t0}
	tests := []struct {
		name      string
		okAt      time.Time
		last, old string
	}{
		{"never worked since", time.Time{}, "crashed", ""},
		{"worked before the error", t0.Add(-time.Minute), "crashed", ""},
		{"worked after the error", t0.Add(time.Second), "", "crashed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := engineHealth(crash, 0, tt.okAt)
			if h.LastError != tt.last || h.PastError != tt.old || (h.LastError != "") != (h.LastErrorAt != nil) || (h.PastError != "") != (h.PastErrorAt != nil) {
				t.Errorf("got last %q at %v, past %q at %v; want last %q, past %q", h.LastError, h.LastErrorAt, h.PastError, h.PastErrorAt, tt.last, tt.old)
			}
		})
	}
}

// The transports' stats reach health whole: every refusal, stall and error field.
func TestTransportStatsInHealth(t *testing.T) {
	ss := spool.Stats{Taken: 5, Refused: 2, LastRefused: "r", LastRefusedAt: t0, Unmovable: 1, Waiting: 3, WaitingEmpty: 1,
		OldestWaiting: 41600 * time.Millisecond, ArchiveFailures: 4, LastArchiveError: "a", LastArchiveErrorAt: t0, Paused: true, Pending: 6, Overflows: 7, LastError: "e"}
	want := HealthSpool{Taken: 5, Refused: 2, LastRefused: "r", LastRefusedAt: at(0), Unmovable: 1, Waiting: 3, WaitingEmpty: 1,
		OldestWaitingS: 42, ArchiveFailures: 4, LastArchiveError: "a", LastArchiveErrorAt: at(0), Paused: true, Pending: 6, Overflows: 7, LastError: "e"}
	if got := spoolHealth(ss); !reflect.DeepEqual(*got, want) {
		t.Errorf("spool: got %+v, want %+v", *got, want)
	}
	ms := mqtt.Stats{Connected: true, Reconnects: 1, Published: 2, Refused: 19, LastRefused: "r", LastRefusedAt: t0, Rejected: 3,
		PastError: "p", PastErrorAt: t0}
	wantM := HealthMQTT{Connected: true, Reconnects: 1, Published: 2, Refused: 19, LastRefused: "r", LastRefusedAt: at(0), Rejected: 3,
		PastError: "p", PastErrorAt: at(0)}
	if got := mqttHealth(ms); !reflect.DeepEqual(*got, wantM) {
		t.Errorf("mqtt: got %+v, want %+v", *got, wantM)
	}
}
