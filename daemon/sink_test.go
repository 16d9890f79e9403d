package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/spool"
)

const sinkChildEnv = "INFERQ_TEST_SINK_CHILD"

// sinkDaemon is a daemon with just a queue in dir, enough for the sinks.
func sinkDaemon(t *testing.T, dir string) *Daemon {
	t.Helper()
	opts := queue.DefaultOptions(dir)
	opts.Logger = quietLogger()
	q, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cfg := DefaultConfig()
	cfg.Model.Path = "unused"
	d := &Daemon{cfg: cfg, now: time.Now, poke: make(chan struct{}, 1)}
	d.setQueue(q)
	return d
}

// An error reading the claimed file itself is the file's own: the spool sink
// refuses it (the spool files it under failed/ and goes on) rather than
// reporting a queue that takes nothing. Here a real I/O error: /proc/self/mem
// is a regular, zero-sized file whose read fails with EIO.
func TestSpoolSinkFileErrorRefused(t *testing.T) {
	d := sinkDaemon(t, t.TempDir())
	_, err := (&spoolSink{d: d}).Submit(context.Background(), spool.Item{ID: "f-eio", Source: "cam", Name: "mem.jpg", Path: "/proc/self/mem"})
	if !errors.Is(err, spool.ErrRefused) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("got %v, want spool.ErrRefused wrapping EIO", err)
	}
	if _, err := (&spoolSink{d: d}).Submit(context.Background(), spool.Item{ID: "f-gone", Source: "cam", Name: "gone.jpg",
		Path: filepath.Join(t.TempDir(), "gone.jpg")}); !errors.Is(err, spool.ErrRefused) {
		t.Fatalf("vanished file: got %v, want spool.ErrRefused", err)
	}
}

// TestHelperSinkChild is the child of TestSpoolSinkUnreadableAsNobody: run as
// uid 65534, it opens a queue in $INFERQ_TEST_SINK_CHILD/queue and submits each
// file named in argv after "--" through the spool sink, printing one line
// per file: "<name> refused=<bool> err=<error>". It does nothing in a normal run.
func TestHelperSinkChild(t *testing.T) {
	dir := os.Getenv(sinkChildEnv)
	if dir == "" {
		return
	}
	d := sinkDaemon(t, filepath.Join(dir, "queue"))
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	for i, p := range args {
		_, err := (&spoolSink{d: d}).Submit(context.Background(), spool.Item{ID: fmt.Sprintf("f-%d", i), Source: "cam", Name: filepath.Base(p), Path: p})
		fmt.Printf("%s refused=%v err=%v\n", filepath.Base(p), errors.Is(err, spool.ErrRefused), err)
	}
}

// The case through the real queue: the daemon runs as another user
// and a root-owned mode-600 file was claimed. Whether the queue reads it
// (small image) or links and then copies it (large image), the spool sink
// refuses it as the file's own error, "permission denied", rather than
// pausing the spool.
func TestSpoolSinkUnreadableAsNobody(t *testing.T) {
	testenv.Root(t)
	const nobody = 65534
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	child := filepath.Join(root, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(child, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	files := map[string]int{"small.jpg": 100, "large.jpg": 1 << 20}
	var paths []string
	for name, size := range files {
		p := filepath.Join(child, name) // in a directory the child owns, like its claim dir
		if err := os.WriteFile(p, bytes.Repeat([]byte{0xff}, size), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "daemon.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-test.run=^TestHelperSinkChild$", "-test.timeout=2m", "--"}, paths...)...)
	cmd.Env = append(os.Environ(), sinkChildEnv+"="+child)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for name := range files {
		var line string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "refused=true") || !strings.Contains(line, "permission denied") {
			t.Errorf("%s: child says %q, want refused with permission denied; output:\n%s", name, line, out)
		}
	}
}
