package spool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperSpoolChild is the child process of TestCrashKill9: it runs a
// Watcher whose sink links each claimed file into a store directory and
// prints a line per job. It does nothing in a normal test run.
func TestHelperSpoolChild(t *testing.T) {
	root := os.Getenv("INFERQ_SPOOL_CHILD")
	if root == "" {
		return
	}
	cfg := crashConfig(root)
	sink := &storeSink{dir: filepath.Join(root, "store"), jobs: map[string]Item{}, ch: make(chan Item, 100000)}
	w, err := New(cfg, sink, discard())
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	if err := w.Open(); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	go func() {
		for it := range sink.ch {
			fmt.Println("SUBMITTED", it.ID)
		}
	}()
	w.Run(context.Background())
}

func crashConfig(root string) Config {
	return Config{Dir: filepath.Join(root, "spool"), ClaimDir: filepath.Join(root, "claim"),
		FailedDir: filepath.Join(root, "failed"), SettleTime: 20 * time.Millisecond, RescanInterval: time.Hour}
}

// A kill -9 of the process at an arbitrary point while it takes a burst of
// files loses no file and makes no second job: after a restart on the same
// directories every file is exactly one job in the store.
func TestCrashKill9(t *testing.T) {
	const n = 300
	root := t.TempDir()
	cfg := crashConfig(root)
	store := filepath.Join(root, "store")
	for _, d := range []string{store, filepath.Join(cfg.Dir, "cam")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		dir := cfg.Dir
		if i%3 == 0 {
			dir = filepath.Join(cfg.Dir, "cam")
		}
		name := fmt.Sprintf("img%03d.jpg", i)
		write(t, filepath.Join(dir, name), filepath.Base(dir)+"/"+name)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSpoolChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "INFERQ_SPOOL_CHILD="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen := 0
	for seen < n/3 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatalf("child: %s", sc.Text())
		}
		seen++
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	claimed, _ := os.ReadDir(cfg.ClaimDir)
	before, _ := os.ReadDir(store)
	t.Logf("killed after %d jobs reported: %d in the store, %d claimed", seen, len(before), len(claimed))

	sink := newStoreSink(t)
	sink.dir = store
	for _, e := range before {
		sink.jobs[e.Name()] = Item{ID: e.Name()}
	}
	start(t, cfg, sink)
	waitFor(t, "all files", 60*time.Second, func() bool { return sink.count() >= n })
	ents, err := os.ReadDir(store)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(store, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		contents[string(b)]++
	}
	if len(ents) != n || len(contents) != n {
		t.Fatalf("got %d jobs with %d distinct images, want %d and %d", len(ents), len(contents), n, n)
	}
	for c, k := range contents {
		if k != 1 {
			t.Fatalf("image %s is %d jobs", c, k)
		}
	}
	waitFor(t, "claim dir empty", 10*time.Second, func() bool { e, _ := os.ReadDir(cfg.ClaimDir); return len(e) == 0 })
}
