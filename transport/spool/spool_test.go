package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

func discard() *slog.Logger {
	if os.Getenv("SPOOL_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// storeSink is a fast fake queue: it hard-links each claimed file into its
// store under the job id (like the real queue) and dedupes by id.
type storeSink struct {
	dir string
	// gate, when not nil, is received from before each Submit; entered,
	// when not nil, gets each item's name just before that.
	gate    chan struct{}
	entered chan string
	mu      sync.Mutex
	full    bool
	jobs    map[string]Item
	ch      chan Item
}

func newStoreSink(t *testing.T) *storeSink {
	return &storeSink{dir: t.TempDir(), jobs: map[string]Item{}, ch: make(chan Item, 20000)}
}

func (s *storeSink) Submit(ctx context.Context, it Item) (bool, error) {
	if s.entered != nil {
		s.entered <- it.Name
	}
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false, fmt.Errorf("cannot enqueue: %w", ErrQueueFull)
	}
	if _, ok := s.jobs[it.ID]; ok {
		return true, nil
	}
	if err := os.Link(it.Path, filepath.Join(s.dir, it.ID)); err != nil {
		// Across file systems (TestCrossDevice) the fake copies.
		b, rerr := os.ReadFile(it.Path)
		if rerr != nil {
			return false, err
		}
		if err := os.WriteFile(filepath.Join(s.dir, it.ID), b, 0o600); err != nil {
			return false, err
		}
	}
	s.jobs[it.ID] = it
	s.ch <- it
	return false, nil
}

func (s *storeSink) setFull(v bool) {
	s.mu.Lock()
	s.full = v
	s.mu.Unlock()
}

func (s *storeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

func (s *storeSink) byName() map[string]Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]Item{}
	for _, it := range s.jobs {
		m[it.Source+"/"+it.Name] = it
	}
	return m
}

type env struct {
	cfg  Config
	w    *Watcher
	sink *storeSink
}

func testConfig(t *testing.T) Config {
	root := t.TempDir()
	return Config{
		Dir: filepath.Join(root, "spool"), ClaimDir: filepath.Join(root, "state", "claim"),
		DoneDir: filepath.Join(root, "done"), FailedDir: filepath.Join(root, "failed"),
		DefaultSource: "top", DefaultPriority: 1, Sources: []SourceConfig{{Name: "gate", Priority: 9}},
		SettleTime: 50 * time.Millisecond, RescanInterval: time.Hour,
	}
}

// start opens and runs a Watcher on sink until the test ends.
func start(t *testing.T, cfg Config, sink *storeSink) *Watcher {
	t.Helper()
	return startWith(t, cfg, sink, discard())
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, "dir: required"},
		{"no failed dir", func(c *Config) { c.FailedDir = "" }, "failed_dir"},
		{"claim inside spool", func(c *Config) { c.ClaimDir = filepath.Join(c.Dir, "claim") }, "claim_dir"},
		{"bad source", func(c *Config) { c.Sources = []SourceConfig{{Name: "a__b"}} }, `sources[0].name "a__b"`},
		{"hidden default source", func(c *Config) { c.DefaultSource = ".x" }, "default_source"},
		{"bad extension", func(c *Config) { c.Extensions = []string{"jpg"} }, `extensions[0] "jpg"`},
		{"negative size", func(c *Config) { c.MaxFileSize = -1 }, "max_file_size -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.mod(&cfg)
			_, err := New(cfg, newStoreSink(t), discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// Files at the top level and in source sub-directories are taken with the
// configured source and priority; the image reaches the store intact; the
// claimed copy is removed; hidden, .tmp and .part files wait until renamed.
func TestTakesFiles(t *testing.T) {
	cfg := testConfig(t)
	write(t, filepath.Join(cfg.Dir, "before.jpg"), "old") // present at start-up
	sink := newStoreSink(t)
	start(t, cfg, sink)
	write(t, filepath.Join(cfg.Dir, "gate", "a.jpg"), "gate image")
	write(t, filepath.Join(cfg.Dir, "yard", "b.jpg"), "yard image")
	write(t, filepath.Join(cfg.Dir, "c.jpg.part"), "partial")
	write(t, filepath.Join(cfg.Dir, "gate", ".hidden.jpg"), "hidden")
	write(t, filepath.Join(cfg.Dir, "d.tmp"), "tmp")
	waitFor(t, "three jobs", 10*time.Second, func() bool { return sink.count() == 3 })
	if err := os.Rename(filepath.Join(cfg.Dir, "c.jpg.part"), filepath.Join(cfg.Dir, "c.jpg")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "renamed file", 10*time.Second, func() bool { return sink.count() == 4 })

	got := sink.byName()
	want := map[string]struct {
		prio    int
		content string
	}{"top/before.jpg": {1, "old"}, "gate/a.jpg": {9, "gate image"}, "yard/b.jpg": {1, "yard image"}, "top/c.jpg": {1, "partial"}}
	for key, w := range want {
		it, ok := got[key]
		if !ok {
			t.Fatalf("got jobs %v, want %s", got, key)
		}
		b, err := os.ReadFile(filepath.Join(sink.dir, it.ID))
		if err != nil || string(b) != w.content || it.Priority != w.prio || it.Size != int64(len(w.content)) {
			t.Errorf("%s: got priority %d size %d content %q (%v), want %d %q", key, it.Priority, it.Size, b, err, w.prio, w.content)
		}
	}
	for _, p := range []string{filepath.Join(cfg.Dir, "gate", ".hidden.jpg"), filepath.Join(cfg.Dir, "d.tmp")} {
		if !exists(p) {
			t.Errorf("%s was taken, want it left alone", p)
		}
	}
	waitFor(t, "claim dir empty", 5*time.Second, func() bool { ents, _ := os.ReadDir(cfg.ClaimDir); return len(ents) == 0 })
}

// An empty file (created, not written yet) is left alone and taken once
// its content arrives, however long that takes.
func TestEmptyFileWaits(t *testing.T) {
	cfg := testConfig(t)
	sink := newStoreSink(t)
	w := start(t, cfg, sink)
	empty := filepath.Join(cfg.Dir, "slow.jpg")
	write(t, empty, "")
	write(t, filepath.Join(cfg.Dir, "marker.jpg"), "m")
	waitFor(t, "marker", 10*time.Second, func() bool { return sink.count() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.rescan(ctx)
	if !exists(empty) || sink.count() != 1 || w.Stats().Refused != 0 {
		t.Fatalf("empty file taken or refused")
	}
	write(t, empty, "finally")
	waitFor(t, "the written file", 10*time.Second, func() bool { return sink.count() == 2 })
}

// Symlinks, FIFOs and sockets are never taken, followed or opened (a FIFO
// opened for reading without O_NONBLOCK would hang the watcher).
func TestIgnoresNonRegularFiles(t *testing.T) {
	cfg := testConfig(t)
	sink := newStoreSink(t)
	outside := filepath.Join(t.TempDir(), "secret.jpg")
	write(t, outside, "secret")
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "gate"), 0o755); err != nil {
		t.Fatal(err)
	}
	special := []string{filepath.Join(cfg.Dir, "link.jpg"), filepath.Join(cfg.Dir, "fifo.jpg"), filepath.Join(cfg.Dir, "gate", "sock.jpg")}
	if err := os.Symlink(outside, special[0]); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(special[1], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(special[2], syscall.S_IFSOCK|0o644, 0); err != nil {
		t.Fatal(err)
	}
	// A symlinked "source directory" is not followed either.
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(cfg.Dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	w := start(t, cfg, sink)
	write(t, filepath.Join(cfg.Dir, "real.jpg"), "real")
	waitFor(t, "the regular file", 10*time.Second, func() bool { return sink.count() == 1 })
	before := w.Stats().Rescans
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.rescan(ctx) // a full rescan sees them all again
	if w.Stats().Rescans != before+1 {
		t.Fatalf("rescan not counted")
	}
	if got := sink.count(); got != 1 {
		t.Fatalf("got %d jobs, want 1 (only the regular file)", got)
	}
	for _, p := range append(special, outside) {
		if !exists(p) {
			t.Errorf("%s was moved, want it left alone", p)
		}
	}
}

// Files over the size limit and files with another extension
// go to the failed directory with a sidecar giving the reason.
func TestRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxFileSize = 10
	cfg.Extensions = []string{".jpg", ".PNG"}
	sink := newStoreSink(t)
	w := start(t, cfg, sink)
	write(t, filepath.Join(cfg.Dir, "gate", "big.jpg"), strings.Repeat("x", 11))
	write(t, filepath.Join(cfg.Dir, "notes.txt"), "hello")
	write(t, filepath.Join(cfg.Dir, "ok.png"), "png")
	tests := []struct{ source, name, reason string }{
		{"gate", "big.jpg", "file too large: 11 bytes > max_file_size 10"},
		{"top", "notes.txt", `extension ".txt"`},
	}
	// A refusal is counted when decided, the file filed just after: wait for both.
	waitFor(t, "refusals filed", 10*time.Second, func() bool {
		filed := 0
		for _, tt := range tests {
			m, _ := filepath.Glob(filepath.Join(cfg.FailedDir, tt.source, "f-*__"+tt.name+".json"))
			filed += len(m)
		}
		return w.Stats().Refused == 2 && sink.count() == 1 && filed == 2
	})
	for _, tt := range tests {
		matches, _ := filepath.Glob(filepath.Join(cfg.FailedDir, tt.source, "f-*__"+tt.name+".json"))
		if len(matches) != 1 {
			t.Fatalf("%s: got sidecars %v, want one", tt.name, matches)
		}
		var sc Sidecar
		b, _ := os.ReadFile(matches[0])
		if err := json.Unmarshal(b, &sc); err != nil || !strings.Contains(sc.Reason, tt.reason) || sc.Name != tt.name || sc.Source != tt.source {
			t.Errorf("%s: got sidecar %+v (%v), want reason %q", tt.name, sc, err, tt.reason)
		}
		if !exists(strings.TrimSuffix(matches[0], ".json")) {
			t.Errorf("%s: image missing next to its sidecar", tt.name)
		}
	}
}

// Files left in the claim directory by a crash are submitted again under
// their id at Open: a job the queue already has is a duplicate (one job in
// all), a job it lacks is created; either way the claimed file is removed.
func TestRecoversClaimed(t *testing.T) {
	cfg := testConfig(t)
	sink := newStoreSink(t)
	write(t, filepath.Join(cfg.ClaimDir, claimName("f-1-known", "gate", "a.jpg")), "a")
	write(t, filepath.Join(cfg.ClaimDir, claimName("f-2-new", "top", "b__c.jpg")), "b")
	write(t, filepath.Join(sink.dir, "f-1-known"), "a")
	sink.jobs["f-1-known"] = Item{ID: "f-1-known", Source: "gate", Name: "a.jpg"}
	w := start(t, cfg, sink)
	waitFor(t, "recovery", 10*time.Second, func() bool { return sink.count() == 2 })
	st := w.Stats()
	if st.Duplicates != 1 || st.Taken != 1 {
		t.Fatalf("got duplicates %d taken %d, want 1 and 1", st.Duplicates, st.Taken)
	}
	it := sink.jobs["f-2-new"]
	if it.Source != "top" || it.Name != "b__c.jpg" || it.Priority != 1 {
		t.Fatalf("got %+v", it)
	}
	if ents, _ := os.ReadDir(cfg.ClaimDir); len(ents) != 0 {
		t.Fatalf("claim dir still holds %d entries", len(ents))
	}
}

// While the queue is full nothing is lost and nothing is taken twice:
// files stay in the spool (or claimed, under a fixed id) and are all taken
// once the queue has room.
func TestQueueFull(t *testing.T) {
	cfg := testConfig(t)
	sink := newStoreSink(t)
	sink.setFull(true)
	w := start(t, cfg, sink)
	for i := 0; i < 20; i++ {
		write(t, filepath.Join(cfg.Dir, fmt.Sprintf("f%02d.jpg", i)), fmt.Sprint(i))
	}
	waitFor(t, "full reported", 10*time.Second, func() bool { return w.Stats().Full })
	spooled, _ := os.ReadDir(cfg.Dir)
	claimed, _ := os.ReadDir(cfg.ClaimDir)
	if len(spooled)+len(claimed) != 20 {
		t.Fatalf("got %d in spool + %d claimed, want 20", len(spooled), len(claimed))
	}
	sink.setFull(false)
	waitFor(t, "all taken", 10*time.Second, func() bool { return sink.count() == 20 })
	names := map[string]bool{}
	for _, it := range sink.byName() {
		names[it.Name] = true
	}
	if len(names) != 20 {
		t.Fatalf("got %d distinct names, want 20", len(names))
	}
	if w.Stats().Full {
		t.Fatalf("still reported full")
	}
}

// A burst of 10,000 files dropped at once is taken completely (inotify
// overflows, if any, end in a rescan, not in loss).
func TestBurst10000(t *testing.T) {
	const n = 10000
	cfg := testConfig(t)
	cfg.Sources = append(cfg.Sources, SourceConfig{Name: "cam1", Priority: 2})
	sink := newStoreSink(t)
	// Written beforehand on the same file system, then renamed into the
	// spool as fast as possible: a camera dumping its buffer.
	staging := filepath.Join(filepath.Dir(cfg.Dir), "staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(staging, fmt.Sprintf("img%05d.jpg", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "cam1"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := start(t, cfg, sink)
	began := time.Now()
	for i := 0; i < n; i++ {
		dir := cfg.Dir
		if i%2 == 1 {
			dir = filepath.Join(cfg.Dir, "cam1")
		}
		name := fmt.Sprintf("img%05d.jpg", i)
		if err := os.Rename(filepath.Join(staging, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	wrote := time.Since(began)
	waitFor(t, "all files", 120*time.Second, func() bool { return sink.count() == n })
	st := w.Stats()
	t.Logf("%d files: renamed into the spool within %v, all taken %v after the first write; overflows %d, rescans %d",
		n, wrote.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), st.Overflows, st.Rescans)
	if st.Taken != n {
		t.Fatalf("got %d taken, want %d", st.Taken, n)
	}
	left, _ := os.ReadDir(cfg.Dir)
	for _, e := range left {
		if !e.IsDir() {
			t.Fatalf("left in spool: %s", e.Name())
		}
	}
}

// An inotify queue overflow (the watcher's loop blocked in a slow Submit
// while 2 events per file pile up past fs.inotify.max_queued_events) ends
// in a rescan that takes every file.
func TestOverflowRescan(t *testing.T) {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(b), &limit)
	}
	n := limit/2 + 1000
	if n > 30000 {
		t.Skipf("max_queued_events %d too large to overflow cheaply", limit)
	}
	cfg := testConfig(t)
	sink := newStoreSink(t)
	sink.gate = make(chan struct{})
	sink.entered = make(chan string, n+10)
	w := start(t, cfg, sink)
	write(t, filepath.Join(cfg.Dir, "first.jpg"), "1")
	sink.gate <- struct{}{} // the loop is now in Submit; hold the next one
	write(t, filepath.Join(cfg.Dir, "second.jpg"), "2")
	waitFor(t, "first job", 10*time.Second, func() bool { return sink.count() == 1 })
	// Only once the loop is blocked in the second Submit do events pile up.
	for name := ""; name != "second.jpg"; {
		select {
		case name = <-sink.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop never reached the second Submit")
		}
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(cfg.Dir, fmt.Sprintf("img%05d.jpg", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.gate)
	waitFor(t, "all files", 120*time.Second, func() bool { return sink.count() == n+2 })
	st := w.Stats()
	t.Logf("%d files, overflows %d, rescans %d", n+2, st.Overflows, st.Rescans)
	if st.Overflows == 0 {
		t.Fatalf("got no overflow with %d events queued against a limit of %d", 2*n, limit)
	}
}

// Archive links a done job's image into the done directory (or does
// nothing without one), and a failed job's into the failed directory with a
// sidecar; archiving twice is harmless.
func TestArchive(t *testing.T) {
	cfg := testConfig(t)
	w, err := New(cfg, newStoreSink(t), discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	blob := filepath.Join(t.TempDir(), "blob")
	write(t, blob, "image")
	ctx := context.Background()
	done := Outcome{ID: "f-1", Source: "gate", Name: "a.jpg", ImagePath: blob}
	failed := Outcome{ID: "f-2", Source: "top", Name: "b.jpg", ImagePath: blob, Failed: true, Reason: "cannot decode image", Attempts: 3}
	for i := 0; i < 2; i++ {
		if err := w.Archive(ctx, done); err != nil {
			t.Fatal(err)
		}
		if err := w.Archive(ctx, failed); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DoneDir, "gate", "f-1__a.jpg")); err != nil || string(b) != "image" {
		t.Fatalf("done image: %q %v", b, err)
	}
	var sc Sidecar
	b, err := os.ReadFile(filepath.Join(cfg.FailedDir, "top", "f-2__b.jpg.json"))
	if err != nil || json.Unmarshal(b, &sc) != nil || sc.Reason != "cannot decode image" || sc.Attempts != 3 || sc.ID != "f-2" {
		t.Fatalf("sidecar %s: %v", b, err)
	}
	if !exists(filepath.Join(cfg.FailedDir, "top", "f-2__b.jpg")) || !exists(blob) {
		t.Fatalf("failed image missing or blob moved")
	}
	if err := w.Archive(ctx, Outcome{ID: "x", Source: "../etc", Name: "a"}); err == nil {
		t.Fatalf("got nil error for a bad source")
	}

	cfg.DoneDir = ""
	w2, _ := New(cfg, newStoreSink(t), discard())
	if err := w2.Archive(ctx, Outcome{ID: "f-3", Source: "gate", Name: "c.jpg", ImagePath: blob}); err != nil {
		t.Fatal(err)
	}
}

// With the claim directory on another file system (tmpfs /dev/shm), files
// are copied and fsynced, and a crash after the copy is completed at Open
// without a second job.
func TestCrossDevice(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "inferq-spool-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	cfg := testConfig(t)
	cfg.ClaimDir = filepath.Join(shm, "claim")
	var a, b syscall.Stat_t
	syscall.Stat(shm, &a)
	syscall.Stat(filepath.Dir(cfg.Dir), &b)
	if a.Dev == b.Dev {
		t.Skip("/dev/shm is on the same file system as the temp dir")
	}
	// A crash left: a complete copy, its journal, and the original.
	orig := filepath.Join(cfg.Dir, "gate", "crash.jpg")
	write(t, orig, "crash")
	fi, _ := os.Stat(orig)
	claimed := filepath.Join(cfg.ClaimDir, claimName("f-9-crash", "gate", "crash.jpg"))
	write(t, claimed, "crash")
	jb, _ := json.Marshal(journal{Src: orig, Claim: claimed, Ino: fi.Sys().(*syscall.Stat_t).Ino, Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
	write(t, filepath.Join(cfg.ClaimDir, ".f-9-crash"+journalExt), string(jb))

	sink := newStoreSink(t)
	start(t, cfg, sink)
	write(t, filepath.Join(cfg.Dir, "new.jpg"), "new")
	waitFor(t, "two jobs", 10*time.Second, func() bool { return sink.count() == 2 })
	got := sink.byName()
	if got["gate/crash.jpg"].ID != "f-9-crash" {
		t.Fatalf("got %v, want the crashed claim under its id", got)
	}
	if exists(orig) {
		t.Fatalf("original still in the spool: it would be taken twice")
	}
	if b, err := os.ReadFile(filepath.Join(sink.dir, got["top/new.jpg"].ID)); err != nil || string(b) != "new" {
		t.Fatalf("copied job content %q %v", b, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := sink.count(); n != 2 {
		t.Fatalf("got %d jobs, want 2", n)
	}
}

func TestClaimName(t *testing.T) {
	tests := []struct{ id, source, name string }{
		{"f-1", "gate", "a.jpg"},
		{"f-2", "top", "a__b__c.jpg"},
		{"f-3", "cam", strings.Repeat("n", 300) + ".jpeg"},
	}
	for _, tt := range tests {
		s := claimName(tt.id, tt.source, tt.name)
		if len(s) > 255 {
			t.Fatalf("claim name %d bytes", len(s))
		}
		id, source, name, ok := parseClaimName(s)
		if !ok || id != tt.id || source != tt.source {
			t.Fatalf("got %q %q %q %v", id, source, name, ok)
		}
		if len(tt.name) < 200 && name != tt.name {
			t.Fatalf("got name %q, want %q", name, tt.name)
		}
		if filepath.Ext(name) != filepath.Ext(tt.name) {
			t.Fatalf("extension lost: %q", name)
		}
	}
}

func FuzzParseClaimName(f *testing.F) {
	for _, s := range []string{"f-1__gate__a.jpg", "__x__y", "a__b", "a____b", "f__.x__n", "x__a/b__c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, source, name, ok := parseClaimName(s)
		if !ok {
			return
		}
		if id == "" || name == "" || validSource(source) != nil || strings.Contains(id, sep) {
			t.Fatalf("accepted %q as %q %q %q", s, id, source, name)
		}
		if id+sep+source+sep+name != s {
			t.Fatalf("does not round-trip: %q", s)
		}
	})
}
