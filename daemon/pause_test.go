package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// TestPauseResume: an operator's pause of intake leaves spool files in the spool and
// says so in health; a pause of the worker leaves queued jobs waiting, and holds across
// a restart; resuming lets everything through, each with one result.
func TestPauseResume(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := b.Subscribe(t, "-t", "inferq/e2e/results/#", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	d, cancel, done := startDaemon(t, cfg)
	ctx := context.Background()
	c := control.NewClient(cfg.ControlSocket)
	pause := func(op, what string) PauseState {
		t.Helper()
		st, err := c.Pause(ctx, what, op == "pause")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := pause("pause", "intake"); !st.Intake || st.Worker {
		t.Fatalf("after pause intake: %+v", st)
	}
	dropFile(t, cfg.Spool.Dir, "held.jpg", testJPEG(t, 1))
	testenv.WaitFor(t, "health saying intake is paused", 10*time.Second, func() bool {
		h := d.Health()
		return h.Paused != nil && h.Paused.Intake && strings.Contains(strings.Join(h.Problems, ";"), "intake paused")
	})
	time.Sleep(time.Second) // the spool had its chance to take it (it takes files within ms)
	if _, err := os.Stat(filepath.Join(cfg.Spool.Dir, "held.jpg")); err != nil {
		t.Fatalf("held.jpg was taken while intake was paused: %v", err)
	}
	// Worker paused too, intake resumed: the file becomes a job that waits.
	pause("pause", "worker")
	pause("resume", "intake")
	testenv.WaitFor(t, "held.jpg queued", 10*time.Second, func() bool { return d.Health().Queue.Depth == 1 })
	// Restart: the worker's pause holds.
	cancel()
	<-done
	d.Close()
	d, _, _ = startDaemon(t, cfg)
	if h := d.Health(); h.Paused == nil || !h.Paused.Worker || h.Queue.Depth != 1 {
		t.Fatalf("after restart: paused %+v, depth %d; want the worker still paused and the job waiting", h.Paused, h.Queue.Depth)
	}
	time.Sleep(time.Second)
	if h := d.Health(); h.Jobs.Done != 0 {
		t.Fatalf("a job ran while the worker was paused: %+v", h.Jobs)
	}
	pause("resume", "all")
	got := collectResults(t, sub, 1, 30*time.Second)
	for _, r := range got {
		if r.Status != StatusOK || r.Metadata[metaSpoolFile] != "held.jpg" {
			t.Fatalf("result %+v", r)
		}
	}
	if h := d.Health(); h.Paused != nil {
		t.Fatalf("after resume all: paused %+v", h.Paused)
	}
}
