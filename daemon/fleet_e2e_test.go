package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// fleetJSONOut is what inferq fleet --json prints.
type fleetJSONOut struct {
	Boxes  []FleetRow `json:"boxes"`
	Unwell int        `json:"unwell"`
}

// Three daemons on one Mosquitto, as inferq fleet shows them: one stopped cleanly, one
// killed with SIGKILL (the broker's will says offline, numbered as its birth), one with
// a backlog (worker paused, files queued). Worst first; exit status 1 since not every
// box is online and healthy. The table (not --json) shows the same.
func TestFleetThreeDaemons(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	bin := buildInferq(t)
	avail := b.Subscribe(t, "-t", "inferq/+/available", "-q", "1")
	box := func(node string) Config {
		cfg := e2eConfig(t, b, rt)
		cfg.Node = node
		return cfg
	}

	// alpha: runs, then stops cleanly.
	alpha, cancelAlpha, doneAlpha := startDaemon(t, box("alpha"))
	waitAvailability(t, avail, "inferq/alpha/available", mqtt.Online, 20*time.Second)
	cancelAlpha()
	<-doneAlpha
	alpha.Close()
	waitAvailability(t, avail, "inferq/alpha/available", mqtt.Stopped, 20*time.Second)

	// bravo: the real binary, killed -9 with its engine child.
	bravoCfg := box("bravo")
	cfgPath := filepath.Join(t.TempDir(), "bravo.yaml")
	writeYAML(t, cfgPath, bravoCfg)
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	born := waitAvailability(t, avail, "inferq/bravo/available", mqtt.Online, 30*time.Second)
	if _, err := b.Subscribe(t, "-t", "inferq/bravo/health", "-C", "1").Next(20 * time.Second); err != nil {
		t.Fatalf("no health from bravo: %v\n%s", err, out.String())
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	will := waitAvailability(t, avail, "inferq/bravo/available", mqtt.Offline, 20*time.Second)
	if will.Seq != born.Seq || will.BootID != born.BootID {
		t.Errorf("will %+v does not end birth %+v", will, born)
	}

	// charlie: running, worker paused, a backlog of 4 files.
	charlieCfg := box("charlie")
	charlie, _, _ := startDaemon(t, charlieCfg)
	if _, err := charlie.Pause("worker", true); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		dropFile(t, charlieCfg.Spool.Dir, fmt.Sprintf("c%d.jpg", i), testJPEG(t, i))
	}
	testenv.WaitFor(t, "charlie's backlog", 30*time.Second, func() bool { return charlie.Health().Queue.Depth == 4 })
	time.Sleep(1500 * time.Millisecond) // a health interval: the backlog is published

	fleet := func(args ...string) (string, error) {
		c := exec.Command(bin, append([]string{"fleet", "--broker", b.URL(), "--wait", "1500ms"}, args...)...)
		var o, e bytes.Buffer
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		if e.Len() > 0 {
			t.Logf("fleet stderr: %s", e.String())
		}
		return o.String(), err
	}
	js, err := fleet("--json")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("inferq fleet: %v, want exit status 1\n%s", err, js)
	}
	var got fleetJSONOut
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatalf("fleet --json: %v\n%s", err, js)
	}
	byNode := map[string]FleetRow{}
	var order []string
	for _, r := range got.Boxes {
		byNode[r.Node] = r
		order = append(order, r.Node)
	}
	if fmt.Sprint(order) != "[bravo alpha charlie]" || got.Unwell != 2 {
		t.Errorf("order %v unwell %d, want [bravo alpha charlie] and 2\n%s", order, got.Unwell, js)
	}
	if r := byNode["bravo"]; r.Verdict != VerdictOffline || r.Availability != mqtt.Offline || r.AvailSeq != born.Seq || r.Healthy || r.Version == "" {
		t.Errorf("bravo (killed): %+v", r)
	}
	if r := byNode["alpha"]; r.Verdict != VerdictStopped || r.Availability != mqtt.Stopped || r.Healthy || r.Version != "test" {
		t.Errorf("alpha (stopped): %+v", r)
	}
	r := byNode["charlie"]
	if r.Verdict != VerdictDegraded || r.Availability != mqtt.Online || !r.Healthy || r.QueueDepth != 4 || r.OldestAgeS <= 0 ||
		r.Stale || r.Model == "" || len(r.ModelSHA256) != 64 || len(r.Problems) == 0 || !strings.Contains(r.Problems[0], "worker paused") {
		t.Errorf("charlie (backlog): %+v", r)
	}

	table, err := fleet()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("inferq fleet: %v, want exit status 1", err)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[1], "bravo ") || !strings.Contains(lines[1], "offline") ||
		!strings.Contains(lines[2], "stopped") || !strings.Contains(lines[3], "degraded") || !strings.Contains(lines[3], "worker paused") ||
		lines[4] != "3 boxes, 2 not online and healthy" {
		t.Errorf("table:\n%s", table)
	}
	t.Logf("inferq fleet:\n%s", table)
}
