package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
	"github.com/inferq/inferq/transport/spool"
	"gopkg.in/yaml.v3"
)

// engineChildEnv makes the test binary act as the engine child (what `inferq
// engine-child` is in the real binary).
const engineChildEnv = "INFERQ_TEST_ENGINE_CHILD"

func TestMain(m *testing.M) {
	infer.ServeChildIf(engineChildEnv)
	os.Exit(m.Run())
}

// requireRuntime returns the TFLite runtime closure the tests use, gated as testenv.Need.
func requireRuntime(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("INFERQ_TFLITE_RUNTIME")
	_, err := tflite.FindRuntime(dir)
	testenv.Need(t, "the TFLite runtime (make tflite-runtime)", err)
	return dir
}

// writeModel writes a small generated classifier (10 classes, 64x64 input) and its labels.
func writeModel(t *testing.T, dir string) (model, labels string) {
	t.Helper()
	model, labels = filepath.Join(dir, "model.tflite"), filepath.Join(dir, "labels.txt")
	if err := os.WriteFile(model, tflitegen.NewClassifierNet(64, 64, 8, 16, 10, 7).Model(), 0o644); err != nil {
		t.Fatal(err)
	}
	var l strings.Builder
	for i := range 10 {
		fmt.Fprintf(&l, "class%d\n", i)
	}
	if err := os.WriteFile(labels, []byte(l.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return model, labels
}

func testJPEG(t testing.TB, seed int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 96, 72))
	for y := range 72 {
		for x := range 96 {
			img.Set(x, y, color.RGBA{uint8(x*3 + seed), uint8(y*5 + seed*7), uint8(seed * 13), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// replaceFile puts data at path the way a deploy should: written under a hidden name
// beside it, then renamed over it.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dropFile writes a file the way a camera should: under a temporary name, then renamed.
func dropFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// e2eConfig is a daemon configuration on temporary directories against broker b.
func e2eConfig(t *testing.T, b *mqtttest.Broker, runtimeDir string) Config {
	t.Helper()
	dir := t.TempDir()
	model, labels := writeModel(t, dir)
	cfg := DefaultConfig()
	cfg.Node = "e2e"
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.Model.Path, cfg.Model.Labels, cfg.Model.TopK, cfg.Model.Threads = model, labels, 2, 1
	cfg.Runtime.Dir = runtimeDir
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Spool.DoneDir = filepath.Join(dir, "done")
	cfg.Spool.FailedDir = filepath.Join(dir, "failed")
	cfg.Spool.SettleTime = 200 * time.Millisecond
	cfg.Spool.Sources = []SpoolSource{{Name: "door", Priority: 5}}
	cfg.Queue.BackoffBase = 10 * time.Millisecond
	cfg.Queue.BackoffMax = 50 * time.Millisecond
	cfg.MQTT.Brokers = []string{b.URL()}
	cfg.MQTT.ReconnectMax = time.Second
	cfg.Health.Interval = time.Second
	for _, d := range []string{cfg.Spool.Dir, cfg.Spool.FailedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// openTestDaemon opens a daemon in this process; the engine child is this test binary
// (see TestMain). The context is the one to run it with.
func openTestDaemon(t *testing.T, cfg Config) (*Daemon, context.Context, context.CancelFunc) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := New(cfg, Options{Version: "test", EngineCommand: []string{exe}, EngineEnv: []string{engineChildEnv + "=1"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Open(ctx); err != nil {
		cancel()
		d.Close()
		t.Fatalf("Open: %v", err)
	}
	return d, ctx, cancel
}

// startDaemon opens and runs a daemon in this process (openTestDaemon).
func startDaemon(t *testing.T, cfg Config) (*Daemon, context.CancelFunc, <-chan error) {
	t.Helper()
	d, ctx, cancel := openTestDaemon(t, cfg)
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx)
		close(done) // a test that waited for the stop itself does not block the cleanup
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	return d, cancel, done
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// collectResults reads result messages from sub until n distinct job ids have a result.
func collectResults(t *testing.T, sub *mqtttest.Sub, n int, timeout time.Duration) map[string]ResultMessage {
	t.Helper()
	got := map[string]ResultMessage{}
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		line, err := sub.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d of %d results: %v", len(got), n, err)
		}
		topic, payload, _ := strings.Cut(line, " ")
		if !strings.Contains(topic, "/results/") {
			continue
		}
		var m ResultMessage
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Fatalf("result on %s is not JSON: %v: %s", topic, err, payload)
		}
		got[m.JobID] = m
	}
	return got
}

// TestEndToEnd runs the whole daemon against a real Mosquitto, the real TFLite runtime
// and a real spool directory: camera files, MQTT ingest from Debian's mosquitto_pub and a
// corrupt file all end as result messages; the corrupt one is dead-lettered and filed in
// the failed directory with its reason; health and the control API agree.
func TestEndToEnd(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := b.Subscribe(t, "-t", "inferq/e2e/#", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	d, _, _ := startDaemon(t, cfg)

	dropFile(t, cfg.Spool.Dir, "a.jpg", testJPEG(t, 1))
	dropFile(t, filepath.Join(cfg.Spool.Dir, "door"), "b.jpg", testJPEG(t, 2))
	dropFile(t, cfg.Spool.Dir, "broken.jpg", []byte("\xff\xd8\xff\xe0 this is not really a jpeg"))
	img := filepath.Join(t.TempDir(), "c.jpg")
	if err := os.WriteFile(img, testJPEG(t, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/e2e/ingest/yard", "-q", "1", "-f", img)

	res := collectResults(t, sub, 4, 60*time.Second)
	bySource := map[string][]ResultMessage{}
	for _, r := range res {
		bySource[r.Source] = append(bySource[r.Source], r)
	}
	if len(bySource["spool"]) != 2 || len(bySource["door"]) != 1 || len(bySource["yard"]) != 1 {
		t.Fatalf("results by source: %v", bySource)
	}
	for _, r := range res {
		broken := r.Metadata[metaSpoolFile] == "broken.jpg"
		switch {
		case broken && (r.Status != StatusFailed || !r.Permanent || r.Error == ""):
			t.Errorf("broken.jpg: status %q permanent %v error %q; want a permanent failure with a reason", r.Status, r.Permanent, r.Error)
		case !broken && (r.Status != StatusOK || r.Output == nil || len(r.Output.Classes) != 2):
			t.Errorf("job %s (%s): status %q output %+v error %q", r.JobID, r.Source, r.Status, r.Output, r.Error)
		case !broken && !strings.HasPrefix(r.Output.Classes[0].Label, "class"):
			t.Errorf("job %s: label %q not from the labels file", r.JobID, r.Output.Classes[0].Label)
		}
		if r.Model == nil || r.Model.SHA256 == "" {
			t.Errorf("job %s: no model identity", r.JobID)
		}
	}
	// The failed directory holds the corrupt file and a sidecar saying why.
	sidecars, _ := filepath.Glob(filepath.Join(cfg.Spool.FailedDir, "spool", "*broken.jpg.json"))
	if len(sidecars) != 1 {
		t.Fatalf("sidecars for broken.jpg in the failed dir: %v, want one", sidecars)
	}
	if _, err := os.Stat(strings.TrimSuffix(sidecars[0], ".json")); err != nil {
		t.Errorf("the failed image itself is not beside its sidecar: %v", err)
	}
	sidecar, err := os.ReadFile(sidecars[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sidecar, []byte("bad image")) {
		t.Errorf("sidecar does not give the reason: %s", sidecar)
	}
	// The control API (what `inferq status` and `inferq dead` use) sees the same.
	c := control.NewClient(cfg.ControlSocket)
	var h Health
	if err := c.Health(context.Background(), &h); err != nil {
		t.Fatal(err)
	}
	if h.Jobs.Done != 3 || h.Jobs.Dead != 1 || h.Queue.Dead != 1 || h.Node != "e2e" || h.Model.SHA256 == "" {
		t.Errorf("health: done %d dead %d queue.dead %d node %q; want 3, 1, 1, e2e", h.Jobs.Done, h.Jobs.Dead, h.Queue.Dead, h.Node)
	}
	dead, err := c.Dead(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || !strings.Contains(dead[0].Reason, "bad image") {
		t.Fatalf("dead list = %+v, want broken.jpg with its reason", dead)
	}
	if pr, err := c.PurgeDead(context.Background(), control.DeadRequest{All: true}); err != nil || pr.Count != 1 {
		t.Fatalf("purge: %+v, %v", pr, err)
	}
	// A done job's result is kept: looked up by id after it was published, it is the
	// published document.
	for _, r := range res {
		if r.Status != StatusOK {
			continue
		}
		j, err := c.Job(context.Background(), r.JobID)
		if err != nil || j.State != "done" {
			t.Fatalf("job %s: %+v, %v", r.JobID, j, err)
		}
		got, _ := json.Marshal(j.Result)
		var kept ResultMessage
		if err := json.Unmarshal(got, &kept); err != nil || kept.JobID != r.JobID || kept.Status != StatusOK || kept.Output == nil ||
			len(kept.Output.Classes) == 0 || kept.Output.Classes[0] != r.Output.Classes[0] {
			t.Errorf("job %s kept result %s (%v), want the published one (top %+v)", r.JobID, got, err, r.Output.Classes[0])
		}
	}
	if st := d.q.Stats(); st.Dead != 0 {
		t.Errorf("dead after purge = %d", st.Dead)
	}
}

// TestResultsSurviveBrokerRestart stops the broker while results are being produced:
// they wait in the outbox and are all delivered once it is back.
func TestResultsSurviveBrokerRestart(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	d, _, _ := startDaemon(t, cfg)
	// A persistent QoS 1 subscriber: the broker keeps its messages across its restart.
	sub := b.Subscribe(t, "-t", "inferq/e2e/results/#", "-q", "1", "-c", "-i", "e2e-results")
	time.Sleep(300 * time.Millisecond)
	b.Stop()
	const n = 20
	for i := range n {
		dropFile(t, cfg.Spool.Dir, fmt.Sprintf("img%03d.jpg", i), testJPEG(t, i))
	}
	// Wait until every job ran while the broker was down: results are in the outbox.
	deadline := time.Now().Add(60 * time.Second)
	for d.worker.snapshot().Done < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d jobs done", d.worker.snapshot().Done, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.q.Stats(); st.Outbox < n {
		t.Fatalf("outbox = %d while the broker is down, want >= %d", st.Outbox, n)
	}
	b.Restart()
	res := collectResults(t, sub, n, 60*time.Second)
	for id, r := range res {
		if r.Status != StatusOK {
			t.Errorf("job %s: %s %s", id, r.Status, r.Error)
		}
	}
}

// TestKill9Daemon runs the real inferq binary, kills it with SIGKILL while it works
// through a burst of camera files, restarts it, and checks that every file got exactly
// one job and an "ok" result (duplicates of a result are allowed: delivery is
// at-least-once, deduplicated by job id).
func TestKill9Daemon(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	bin := buildInferq(t)
	cfgPath := filepath.Join(t.TempDir(), "inferq.yaml")
	writeYAML(t, cfgPath, cfg)
	sub := b.Subscribe(t, "-t", "inferq/e2e/#", "-q", "1")

	const n = 60
	for i := range n {
		dropFile(t, cfg.Spool.Dir, fmt.Sprintf("cam%03d.jpg", i), testJPEG(t, i))
	}
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	cmd, out := start()
	// Kill -9 (the whole process group: daemon and engine child) once some results are out.
	results := map[string]ResultMessage{}
	files := map[string]string{}
	recovered := 0 // the most recovered_commits any health message reported
	readUntil := func(want int, timeout time.Duration) {
		deadline := time.Now().Add(timeout)
		for len(results) < want {
			line, err := sub.Next(time.Until(deadline))
			if err != nil {
				t.Fatalf("after %d of %d results: %v\ndaemon output:\n%s", len(results), want, err, tail(out.String()))
			}
			topic, payload, _ := strings.Cut(line, " ")
			if a, _ := mqtt.ParseAvailability([]byte(payload)); strings.HasSuffix(topic, "/available") && a.State == mqtt.Offline {
				t.Log("broker announced offline (will)")
			}
			if strings.HasSuffix(topic, "/health") {
				var h Health
				if err := json.Unmarshal([]byte(payload), &h); err == nil {
					recovered = max(recovered, h.Queue.RecoveredCommits)
				}
			}
			if !strings.Contains(topic, "/results/") {
				continue
			}
			var m ResultMessage
			if err := json.Unmarshal([]byte(payload), &m); err != nil {
				t.Fatal(err)
			}
			f := m.Metadata[metaSpoolFile]
			if prev, ok := files[f]; ok && prev != m.JobID {
				t.Errorf("file %s became two jobs: %s and %s", f, prev, m.JobID)
			}
			files[f] = m.JobID
			results[m.JobID] = m
		}
	}
	readUntil(5, 60*time.Second)
	if recovered != 0 {
		t.Errorf("first run on a fresh state dir reported %d recovered commits", recovered)
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Logf("killed after %d results", len(results))
	cmd, out = start()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	readUntil(n, 120*time.Second)
	for i := range n {
		f := fmt.Sprintf("cam%03d.jpg", i)
		id, ok := files[f]
		if !ok {
			t.Errorf("%s: no result", f)
			continue
		}
		if r := results[id]; r.Status != StatusOK {
			t.Errorf("%s: status %s: %s", f, r.Status, r.Error)
		}
	}
	// The kill hit the overlapped worker (worker.overlap, on by default): jobs ran with
	// their image prepared while the previous one's model ran, and with a held lease.
	prepared := 0
	for _, r := range results {
		if r.Output != nil && r.Output.Timings.Prepared {
			prepared++
		}
	}
	if prepared == 0 {
		t.Errorf("no result had its image prepared during the previous run: overlap was not under test")
	}
	t.Logf("%d of %d results prepared while the previous job ran", prepared, len(results))
	// The restart applied the journal's commits again and health says so.
	if recovered == 0 {
		t.Errorf("no health message after the kill reported recovered commits")
	}
	// A clean stop says "stopped" on the availability topic.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, tail(out.String()))
	}
	waitAvailability(t, sub, "inferq/e2e/available", mqtt.Stopped, 10*time.Second)
}

// buildInferq builds the real binary into a temporary directory.
func buildInferq(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "inferq")
	build := exec.Command("go", "build", "-o", bin, "./cmd/inferq")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func tail(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func writeYAML(t *testing.T, path string, cfg Config) {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The sinks map the queue's refusals onto the transports' errors: a full queue is a
// retry-later (spool files stay, MQTT messages stay unacked), an invalid job is refused
// for good (the file goes to failed/ with the reason).
func TestSinksMapQueueErrors(t *testing.T) {
	opts := DefaultConfig()
	opts.Model.Path = "unused"
	d := &Daemon{cfg: opts, now: time.Now, poke: make(chan struct{}, 1)}
	q := openTestQueue(t, 3)
	d.setQueue(q)
	ss, is := &spoolSink{d: d}, &ingestSink{d: d}
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "a.jpg")
	if err := os.WriteFile(img, testJPEG(t, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if dup, err := ss.Submit(ctx, spool.Item{ID: "f1", Source: "cam", Name: "a.jpg", Path: img}); err != nil || dup {
		t.Fatalf("first submit: dup %v err %v", dup, err)
	}
	if dup, err := ss.Submit(ctx, spool.Item{ID: "f1", Source: "cam", Name: "a.jpg", Path: img}); err != nil || !dup {
		t.Fatalf("resubmit of a claimed file: dup %v err %v, want a duplicate", dup, err)
	}
	if _, err := is.Submit(ctx, mqtt.IngestItem{ID: "", Source: "cam", Image: []byte("x")}); !errors.Is(err, mqtt.ErrRefused) {
		t.Errorf("invalid ingest item: %v, want mqtt.ErrRefused", err)
	}
	if _, err := ss.Submit(ctx, spool.Item{ID: "", Source: "cam", Name: "b.jpg", Path: img}); !errors.Is(err, spool.ErrRefused) {
		t.Errorf("invalid spool item: %v, want spool.ErrRefused", err)
	}
	// Fill the queue to its job limit, then both sinks must say "full, try later".
	full := openFullQueue(t)
	d.setQueue(full)
	if _, err := ss.Submit(ctx, spool.Item{ID: "f2", Source: "cam", Name: "c.jpg", Path: img}); !errors.Is(err, spool.ErrQueueFull) {
		t.Errorf("spool into a full queue: %v, want spool.ErrQueueFull", err)
	}
	if _, err := is.Submit(ctx, mqtt.IngestItem{ID: "m2", Source: "cam", Image: []byte("x")}); !errors.Is(err, mqtt.ErrQueueFull) {
		t.Errorf("ingest into a full queue: %v, want mqtt.ErrQueueFull", err)
	}
}

func openFullQueue(t *testing.T) *queue.Queue {
	t.Helper()
	opts := queue.DefaultOptions(t.TempDir())
	opts.MaxJobs = 1
	opts.Logger = quietLogger()
	q, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if _, err := q.Enqueue(context.Background(), queue.NewJob{ID: "only", Source: "s", Image: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestBrokenModelAtStart: a model file that does not load does not stop the box. The
// daemon starts, queues camera input, says in health what is wrong, and runs the queued
// job once a good model file is put in place (picked up by the model watcher).
func TestBrokenModelAtStart(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := b.Subscribe(t, "-t", "inferq/e2e/results/#", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	good, err := os.ReadFile(cfg.Model.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Model.Path, []byte("TFL3 but not really a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, _, _ := startDaemon(t, cfg)
	h := d.Health()
	if h.Status != HealthFailing || len(h.Problems) == 0 || !strings.Contains(h.Problems[0], "no model loaded: ") {
		t.Fatalf("health with a broken model: %s %q, want failing with the load error", h.Status, h.Problems)
	}
	dropFile(t, cfg.Spool.Dir, "waiting.jpg", testJPEG(t, 4))
	deadline := time.Now().Add(30 * time.Second)
	for d.q.Stats().ReadyTotal != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the dropped file was not queued while the model is broken: %+v", d.q.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Replace the model the way an operator's deploy should: write aside, rename over.
	replaceFile(t, cfg.Model.Path, good)
	res := collectResults(t, sub, 1, 60*time.Second)
	for _, r := range res {
		if r.Status != StatusOK || r.Metadata[metaSpoolFile] != "waiting.jpg" {
			t.Fatalf("result %+v, want waiting.jpg ok", r)
		}
	}
	h = d.Health()
	if h.Status == HealthFailing {
		t.Errorf("health after the good model loaded: %s %q", h.Status, h.Problems)
	}
	// The engine works again: its load error is past, not current.
	if h.Engine.LastError != "" || h.Engine.PastError == "" || h.Engine.PastErrorAt == nil {
		t.Errorf("engine after the good model loaded: last error %q, past %q at %v; want the load error past", h.Engine.LastError, h.Engine.PastError, h.Engine.PastErrorAt)
	}
}
