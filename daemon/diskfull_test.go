package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
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

// photoJPEG is a camera-like JPEG of a few hundred KB (noise does not compress).
func photoJPEG(t testing.TB, seed uint64) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			img.Set(x, y, color.RGBA{uint8(rng.Uint32()), uint8(x), uint8(y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// boxView follows what a box publishes: its latest health and its results.
type boxView struct {
	t       *testing.T
	sub     *mqtttest.Sub
	health  Health
	avail   string // the last availability
	results map[string]ResultMessage
	out     func() string // the daemon's output, for failures
}

func (v *boxView) until(what string, timeout time.Duration, cond func() bool) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		line, err := v.sub.Next(time.Until(deadline))
		if err != nil {
			v.t.Fatalf("waiting for %s: %v\nlast health: %+v\ndaemon output:\n%s", what, err, v.health, v.out())
		}
		topic, payload, _ := strings.Cut(line, " ")
		switch {
		case strings.HasSuffix(topic, "/available"):
			a, _ := mqtt.ParseAvailability([]byte(payload))
			v.avail = a.State
		case strings.HasSuffix(topic, "/health"):
			var h Health
			if err := json.Unmarshal([]byte(payload), &h); err != nil {
				v.t.Fatalf("health is not JSON: %v", err)
			}
			v.health = h
		case strings.Contains(topic, "/results/"):
			var m ResultMessage
			if err := json.Unmarshal([]byte(payload), &m); err != nil {
				v.t.Fatalf("result is not JSON: %v", err)
			}
			v.results[m.JobID] = m
		}
	}
}

func (v *boxView) problem(prefix string) bool {
	for _, p := range v.health.Problems {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// TestDiskFull runs the real binary with state_dir on a small real file system (a
// tmpfs, and ext4 on a loop device) and a burst of camera photos far larger than it:
//   - the queue fills up to its disk reserve and refuses more, the daemon does not
//     crash (Badger writes through memory maps: a full disk under them is SIGBUS),
//     health says "disk nearly full" and full while space is left, and the files not
//     taken stay in the spool;
//   - once the model is there, results flow, the spool is taken as space frees, and
//     every photo gets exactly one ok result;
//   - a restart on a disk something else filled to the last byte does not crash: the
//     ballast file is given back and the box starts, says "disk full", holds
//     processing, and finishes once space returns; with no ballast left, it waits for
//     space instead of failing its start.
func TestDiskFull(t *testing.T) {
	rt := requireRuntime(t)
	testenv.Root(t)
	bin := buildInferq(t)
	photos := make([][]byte, 8)
	for i := range photos {
		photos[i] = photoJPEG(t, uint64(i))
	}
	for _, kind := range []string{"tmpfs", "ext4"} {
		t.Run(kind, func(t *testing.T) { runDiskFull(t, bin, rt, testenv.Mount(t, kind, 160<<20), photos) })
	}
}

func runDiskFull(t *testing.T, bin, rt, mnt string, photos [][]byte) {
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.StateDir = filepath.Join(mnt, "state")
	cfg.Spool.RescanInterval = time.Second
	cfg.Spool.SettleTime = 100 * time.Millisecond
	// No model yet: input is queued and nothing is processed, so the disk fills.
	model, err := os.ReadFile(cfg.Model.Path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model.Path = filepath.Join(t.TempDir(), "model.tflite")
	cfgPath := filepath.Join(t.TempDir(), "inferq.yaml")
	writeYAML(t, cfgPath, cfg)
	sub := b.Subscribe(t, "-t", "inferq/e2e/#", "-q", "1")

	var out testenv.Buffer
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "run", "--config", cfgPath)
		out.Reset()
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	exited := func() bool {
		var ws syscall.WaitStatus
		pid, _ := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil)
		return pid == cmd.Process.Pid
	}
	stop := func() {
		t.Helper()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("stop: %v\n%s", err, tail(out.String()))
		}
	}
	v := &boxView{t: t, sub: sub, results: map[string]ResultMessage{}, out: func() string { return tail(out.String()) }}
	start()
	defer func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}()

	const n = 400 // ~170 MB of photos for a 160 MiB file system with a 64 MiB reserve
	for i := range n {
		dropFile(t, cfg.Spool.Dir, fmt.Sprintf("cam%03d.jpg", i), photos[i%len(photos)])
	}
	v.until("health saying the disk is nearly full", 90*time.Second, func() bool {
		return v.health.Disk.Full && v.problem("disk nearly full")
	})
	if exited() {
		t.Fatalf("daemon exited:\n%s", tail(out.String()))
	}
	h := v.health
	t.Logf("refusing at %d MiB free, reserve %d MiB; %d queued; problems %q", h.Disk.FreeBytes>>20, h.Disk.ReserveBytes>>20, h.Queue.Depth, h.Problems)
	if int64(h.Disk.FreeBytes) < h.Disk.ReserveBytes/4 {
		t.Errorf("health said full only at %d bytes free, below the floor", h.Disk.FreeBytes)
	}
	if h.Queue.Depth == 0 || h.Queue.Depth >= n {
		t.Fatalf("queue depth %d when full: want some but not all of %d photos", h.Queue.Depth, n)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "cam*.jpg"))
	if len(left) == 0 {
		t.Fatal("no photo left in the spool although the queue refused input")
	}

	// Stop with a backlog, fill the disk to the last byte, start again: the ballast
	// is given back and the box starts; it says the disk is full.
	stop()
	filler := testenv.FillFS(t, mnt)
	start()
	v.until("health after a restart on a full disk", 60*time.Second, func() bool {
		return v.health.StartedAt.After(h.StartedAt) && v.health.Disk.Full
	})
	if exited() {
		t.Fatalf("daemon exited on a full disk:\n%s", tail(out.String()))
	}
	t.Logf("restarted on a full disk: %d KiB free, problems %q", v.health.Disk.FreeBytes>>10, v.health.Problems)
	if !strings.Contains(out.String(), "ballast file given back") {
		t.Errorf("no log line about the ballast file:\n%s", tail(out.String()))
	}
	// Fill what the ballast gave back too, and restart once more: no ballast left,
	// so the daemon waits for space (it must not exit: under systemd that is a
	// restart loop), online and saying why.
	stop()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	filler = testenv.FillFS(t, mnt)
	start()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "waiting for disk space") {
		if exited() || time.Now().After(deadline) {
			t.Fatalf("no 'waiting for disk space' (exited: %v):\n%s", cmd.ProcessState != nil, tail(out.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := v.health.StartedAt
	v.until("health while waiting for space", 30*time.Second, func() bool {
		return v.health.StartedAt.After(before) && v.health.Status == HealthFailing && v.problem("disk full: ")
	})
	t.Logf("waiting for space: availability %q, problems %q", v.avail, v.health.Problems)
	if v.avail != "online" {
		t.Errorf("availability %q while waiting for space, want online", v.avail)
	}
	v.until("a few more health documents while waiting", 30*time.Second, func() bool { return v.health.Seq >= 3 })
	if exited() {
		t.Fatalf("daemon exited while waiting for space:\n%s", tail(out.String()))
	}

	// Space returns and the model arrives: everything gets its result.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, cfg.Model.Path, model)
	v.until("a result for every photo", 180*time.Second, func() bool { return len(v.results) >= n })
	files := map[string]string{}
	for id, r := range v.results {
		if r.Status != StatusOK {
			t.Errorf("job %s: %s %s", id, r.Status, r.Error)
		}
		f := r.Metadata[metaSpoolFile]
		if prev, ok := files[f]; ok {
			t.Errorf("%s became two jobs: %s and %s", f, prev, id)
		}
		files[f] = id
	}
	if len(files) != n {
		t.Errorf("%d distinct files got results, want %d", len(files), n)
	}
	v.until("health with the disk no longer full", 30*time.Second, func() bool { return !v.health.Disk.Full })
	stop()
}
