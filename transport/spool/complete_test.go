//go:build linux

package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTakenWhenComplete: with a settle time of a minute, a file renamed into the
// spool (the atomic-writer pattern) and a file closed after writing, in the top
// directory and in a source directory, are taken at once; a file still open for
// writing is not, until it is closed.
func TestTakenWhenComplete(t *testing.T) {
	cfg := testConfig(t)
	cfg.SettleTime = time.Minute
	sink := newStoreSink(t)
	start(t, cfg, sink)
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "gate"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the source directory watched", 5*time.Second, func() bool {
		// Until the watcher saw the new directory, a file closed in it is not reported.
		write(t, filepath.Join(cfg.Dir, "gate", "probe.jpg"), "probe")
		time.Sleep(20 * time.Millisecond)
		return len(sink.byName()) > 0
	})
	begin := time.Now()
	tmp := filepath.Join(cfg.Dir, ".a.jpg.part")
	write(t, tmp, "renamed in")
	if err := os.Rename(tmp, filepath.Join(cfg.Dir, "a.jpg")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(cfg.Dir, "gate", "b.jpg"), "closed after writing")
	open, err := os.Create(filepath.Join(cfg.Dir, "c.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.WriteString("still being written"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a.jpg and b.jpg taken", 10*time.Second, func() bool {
		m := sink.byName()
		_, a := m["top/a.jpg"]
		_, b := m["gate/b.jpg"]
		return a && b
	})
	took := time.Since(begin)
	if _, c := sink.byName()["top/c.jpg"]; c {
		t.Fatal("c.jpg taken while still open for writing")
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c.jpg taken once closed", 10*time.Second, func() bool { _, c := sink.byName()["top/c.jpg"]; return c })
	t.Logf("taken %v after the rename and the close (settle time %v)", took.Round(time.Millisecond), cfg.SettleTime)
}
