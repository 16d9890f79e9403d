package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// TestMissingModelDirectory: a model directory that does not exist yet (a volume not
// mounted, a deploy not done) does not stop the daemon, as a missing model file does
// not: input is queued, health says what is wrong, and once the directory and the model
// appear the queued job runs. Before the fix Run ended with "model-watch stopped: cannot
// watch model directory".
func TestMissingModelDirectory(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := b.Subscribe(t, "-t", "inferq/e2e/results/#", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	good, err := os.ReadFile(cfg.Model.Path)
	if err != nil {
		t.Fatal(err)
	}
	modelDir := filepath.Join(t.TempDir(), "models", "v1")
	cfg.Model.Path = filepath.Join(modelDir, "model.tflite")
	old := modelDirRetry
	modelDirRetry = 100 * time.Millisecond
	t.Cleanup(func() { modelDirRetry = old })

	d, stopped := startWatchedDaemon(t, cfg)
	if h := d.Health(); h.Status != HealthFailing || len(h.Problems) == 0 || !strings.Contains(h.Problems[0], "no model loaded: ") {
		t.Fatalf("health with no model directory: %s %q, want failing with the load error", h.Status, h.Problems)
	}
	dropFile(t, cfg.Spool.Dir, "waiting.jpg", testJPEG(t, 5))
	deadline := time.Now().Add(30 * time.Second)
	for d.q.Stats().ReadyTotal != 1 {
		if err := stopped(); err != nil {
			t.Fatalf("the daemon stopped while the model directory is missing: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dropped file was not queued: %+v", d.q.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The directory appears with the model in it (written aside, renamed in).
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, cfg.Model.Path, good)
	res := collectResults(t, sub, 1, 60*time.Second)
	for _, r := range res {
		if r.Status != StatusOK || r.Metadata[metaSpoolFile] != "waiting.jpg" {
			t.Fatalf("result %+v, want waiting.jpg ok", r)
		}
	}
	if err := stopped(); err != nil {
		t.Fatalf("the daemon stopped: %v", err)
	}
}

// startWatchedDaemon is startDaemon whose stopped reports, without waiting, why Run
// ended (nil while it runs).
func startWatchedDaemon(t *testing.T, cfg Config) (*Daemon, func() error) {
	t.Helper()
	d, ctx, cancel := openTestDaemon(t, cfg)
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = d.Run(ctx)
		if runErr == nil && ctx.Err() == nil {
			runErr = errors.New("Run returned")
		}
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	return d, func() error {
		select {
		case <-done:
			return runErr
		default:
			return nil
		}
	}
}
