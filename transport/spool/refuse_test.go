package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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

// logRec is a slog handler that keeps every record's message and attributes.
type logRec struct {
	mu   sync.Mutex
	recs []string // "msg key=value key=value"
}

func (l *logRec) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRec) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRec) WithGroup(string) slog.Handler            { return l }
func (l *logRec) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

// count returns how many records contain every one of parts.
func (l *logRec) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, r := range l.recs {
		for _, p := range parts {
			if !strings.Contains(r, p) {
				continue next
			}
		}
		n++
	}
	return n
}

// funcSink fails the items fail picks with the error it returns and
// stores the others like storeSink.
type funcSink struct {
	*storeSink
	fail func(Item) error
}

func (s *funcSink) Submit(ctx context.Context, it Item) (bool, error) {
	if err := s.fail(it); err != nil {
		return false, err
	}
	return s.storeSink.Submit(ctx, it)
}

// startWith is start with any sink and logger.
func startWith(t *testing.T, cfg Config, sink Sink, log *slog.Logger) *Watcher {
	t.Helper()
	w, err := New(cfg, sink, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		w.Close()
		w.Close() // Close is safe to call twice
	})
	return w
}

func TestIsFileError(t *testing.T) {
	const p = "/state/claimed/f-1__cam__a.jpg"
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"permission denied reading it", fmt.Errorf("cannot read image file: %w", &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}), true},
		{"operation not permitted", &fs.PathError{Op: "open", Path: p, Err: syscall.EPERM}, true},
		{"vanished", &fs.PathError{Op: "open", Path: p, Err: syscall.ENOENT}, true},
		{"i/o error reading it", fmt.Errorf("cannot adopt image file: %w", &fs.PathError{Op: "read", Path: p, Err: syscall.EIO}), true},
		{"symlink loop", &fs.PathError{Op: "open", Path: p, Err: syscall.ELOOP}, true},
		{"disk full is not the file's", &fs.PathError{Op: "write", Path: p, Err: syscall.ENOSPC}, false},
		{"read-only fs is not the file's", &fs.PathError{Op: "open", Path: p, Err: syscall.EROFS}, false},
		{"too many open files", &fs.PathError{Op: "open", Path: p, Err: syscall.EMFILE}, false},
		{"another path (the queue's blob)", &fs.PathError{Op: "open", Path: "/state/queue/blobs/tmp-1", Err: syscall.EACCES}, false},
		{"i/o error on the queue's disk", &fs.PathError{Op: "write", Path: "/state/queue/000001.vlog", Err: syscall.EIO}, false},
		{"no path error", errors.New("queue closed"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsFileError(tt.err, p); got != tt.want {
				t.Errorf("IsFileError(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// What the sink returns for one file decides between "refuse this file and
// go on" and "pause the spool": only a full or failing queue pauses it.
func TestSinkErrorsPerFile(t *testing.T) {
	pathErr := func(errno syscall.Errno) func(Item) error {
		return func(it Item) error {
			return fmt.Errorf("cannot read image file: %w", &fs.PathError{Op: "open", Path: it.Path, Err: errno})
		}
	}
	tests := []struct {
		name    string
		err     func(Item) error
		refused bool // else paused
		reason  string
	}{
		{"refused by the sink", func(Item) error { return fmt.Errorf("meta too large: %w", ErrRefused) }, true, "meta too large"},
		{"permission denied on the file", pathErr(syscall.EACCES), true, "permission denied"},
		{"i/o error on the file", pathErr(syscall.EIO), true, "input/output error"},
		{"file vanished", pathErr(syscall.ENOENT), true, "no such file"},
		{"queue full", func(Item) error { return fmt.Errorf("max_jobs: %w", ErrQueueFull) }, false, "queue full"},
		{"queue closed", func(Item) error { return errors.New("queue closed") }, false, "queue closed"},
		{"queue disk full", pathErr(syscall.ENOSPC), false, "no space left"},
		{"queue's own file", func(Item) error {
			return &fs.PathError{Op: "open", Path: "/state/queue/blob", Err: syscall.EACCES}
		}, false, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			sink := &funcSink{storeSink: newStoreSink(t), fail: func(it Item) error {
				if it.Name == "a.jpg" {
					return tt.err(it)
				}
				return nil
			}}
			write(t, filepath.Join(cfg.Dir, "a.jpg"), "bad")
			write(t, filepath.Join(cfg.Dir, "b.jpg"), "good")
			write(t, filepath.Join(cfg.Dir, "c.jpg"), "good")
			w := startWith(t, cfg, sink, discard())
			if tt.refused {
				waitFor(t, "the good files", 10*time.Second, func() bool { return sink.count() == 2 })
				st := w.Stats()
				if st.Refused != 1 || st.Paused || st.Pending != 0 || !strings.Contains(st.LastRefused, "top/a.jpg: ") || !strings.Contains(st.LastRefused, tt.reason) {
					t.Fatalf("stats %+v, want 1 refused (%q), not paused", st, tt.reason)
				}
				var sc Sidecar
				matches, _ := filepath.Glob(filepath.Join(cfg.FailedDir, "top", "f-*__a.jpg.json"))
				if len(matches) != 1 {
					t.Fatalf("sidecars %v, want one for a.jpg", matches)
				}
				b, _ := os.ReadFile(matches[0])
				if err := json.Unmarshal(b, &sc); err != nil || !strings.Contains(sc.Reason, tt.reason) {
					t.Fatalf("sidecar %s (%v), want reason with %q", b, err, tt.reason)
				}
				return
			}
			waitFor(t, "the pause", 10*time.Second, func() bool { return w.Stats().Paused })
			st := w.Stats()
			if st.Refused != 0 || sink.count() != 0 || st.Pending == 0 || !strings.Contains(st.LastError, tt.reason) {
				t.Fatalf("stats %+v with %d jobs, want paused with nothing refused or taken", st, sink.count())
			}
			if ents, _ := os.ReadDir(cfg.FailedDir); len(ents) != 0 {
				t.Fatalf("failed dir has %d entries, want none", len(ents))
			}
		})
	}
}

// A file that sits in the spool longer than settle_time without being taken
// (an empty one, or one behind a paused spool) is counted with the age of
// the oldest and logged once.
func TestWaitingFiles(t *testing.T) {
	cfg := testConfig(t)
	rec := &logRec{}
	sink := newStoreSink(t)
	w := startWith(t, cfg, sink, slog.New(rec))
	empty := filepath.Join(cfg.Dir, "empty.jpg")
	write(t, empty, "")
	waitFor(t, "the empty file counted", 10*time.Second, func() bool {
		st := w.Stats()
		return st.Waiting == 1 && st.WaitingEmpty == 1 && st.OldestWaiting >= 4*cfg.SettleTime
	})
	if n := rec.count("spool file waiting longer than settle_time", "empty.jpg", "empty file"); n != 1 {
		t.Fatalf("logged %d times, want once", n)
	}
	write(t, empty, "now with content")
	waitFor(t, "the file taken", 10*time.Second, func() bool { return sink.count() == 1 && w.Stats().Waiting == 0 })

	// Behind a paused spool: counted, not logged one by one while paused.
	sink.setFull(true)
	write(t, filepath.Join(cfg.Dir, "a.jpg"), "a")
	waitFor(t, "the pause", 10*time.Second, func() bool { return w.Stats().Paused })
	write(t, filepath.Join(cfg.Dir, "b.jpg"), "b")
	waitFor(t, "b waiting", 10*time.Second, func() bool { return w.Stats().Waiting == 1 })
	if n := rec.count("spool file waiting", "b.jpg"); n != 0 {
		t.Fatalf("b.jpg logged %d times while paused, want 0", n)
	}
	sink.setFull(false)
	waitFor(t, "resumed", 10*time.Second, func() bool { st := w.Stats(); return sink.count() == 3 && !st.Paused && st.Waiting == 0 })
	if st := w.Stats(); st.LastError != "" {
		t.Fatalf("last error %q after the queue took files again, want it cleared", st.LastError)
	}
}

// A removed empty file stops counting at once; a forgotten one at the next rescan.
func TestWaitingFileRemoved(t *testing.T) {
	cfg := testConfig(t)
	w := startWith(t, cfg, newStoreSink(t), discard())
	empty := filepath.Join(cfg.Dir, "gate", "empty.jpg")
	write(t, empty, "")
	waitFor(t, "counted", 10*time.Second, func() bool { return w.Stats().Waiting == 1 })
	if err := os.Remove(empty); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no longer counted", 10*time.Second, func() bool { return w.Stats().Waiting == 0 })
}

// mountFull mounts a tiny tmpfs at dir and fills it, so that any file
// written there fails with ENOSPC. free releases the space.
func mountFull(t *testing.T, dir string) (free func()) {
	t.Helper()
	testenv.Root(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Need(t, "a tmpfs mount", syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"))
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	fill := filepath.Join(dir, ".fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(fill); err != nil {
			t.Fatal(err)
		}
	}
}

// failed/ (and done/) on a full file system: a refused file that cannot be
// moved stays in the spool, counted and logged once, and is moved once
// there is room; archive failures are counted with the last reason; the
// spool takes the other files all along.
func TestFailedDirFull(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxFileSize = 10
	cfg.RescanInterval = 300 * time.Millisecond // the retry period of an unmovable file
	free := mountFull(t, filepath.Join(filepath.Dir(cfg.FailedDir), "full"))
	cfg.FailedDir = filepath.Join(filepath.Dir(cfg.FailedDir), "full", "failed")
	cfg.DoneDir = filepath.Join(filepath.Dir(cfg.FailedDir), "done")
	rec := &logRec{}
	sink := newStoreSink(t)
	w := startWith(t, cfg, sink, slog.New(rec))

	big := filepath.Join(cfg.Dir, "big.jpg")
	write(t, big, strings.Repeat("x", 11))
	write(t, filepath.Join(cfg.Dir, "ok1.jpg"), "ok")
	waitFor(t, "the refusal", 10*time.Second, func() bool { return w.Stats().Unmovable == 1 && sink.count() == 1 })
	// Several retry periods pass; the file stays, logged once, counted once.
	deadline := time.Now().Add(10 * time.Second)
	for rescans := w.Stats().Rescans; w.Stats().Rescans < rescans+3; {
		if time.Now().After(deadline) {
			t.Fatal("no rescans")
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(t, filepath.Join(cfg.Dir, "ok2.jpg"), "ok")
	waitFor(t, "the next file", 10*time.Second, func() bool { return sink.count() == 2 })
	st := w.Stats()
	if !exists(big) || st.Refused != 1 || st.Unmovable != 1 || !strings.Contains(st.LastError, "no space left") {
		t.Fatalf("stats %+v, big.jpg in the spool %v: want it left in place, counted once", st, exists(big))
	}
	if n := rec.count("spool file refused", "big.jpg"); n != 1 {
		t.Fatalf("refusal logged %d times, want once", n)
	}

	// Archiving into the full file system fails, counted, and taking goes on.
	img := filepath.Join(t.TempDir(), "img.jpg")
	write(t, img, "image")
	for i, failed := range []bool{true, false} {
		err := w.Archive(context.Background(), Outcome{ID: fmt.Sprintf("j%d", i), Source: "top", Name: "x.jpg", ImagePath: img, Failed: failed, Reason: "dead"})
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("archive failed=%v: %v, want ENOSPC", failed, err)
		}
	}
	if st := w.Stats(); st.ArchiveFailures != 2 || !strings.Contains(st.LastArchiveError, "no space left") || st.Archived != 0 {
		t.Fatalf("stats %+v, want 2 archive failures", st)
	}
	write(t, filepath.Join(cfg.Dir, "ok3.jpg"), "ok")
	waitFor(t, "a file after the archive failures", 10*time.Second, func() bool { return sink.count() == 3 })

	free()
	waitFor(t, "the unmovable file moved", 10*time.Second, func() bool { return w.Stats().Unmovable == 0 && !exists(big) })
	if m, _ := filepath.Glob(filepath.Join(cfg.FailedDir, "top", "f-*__big.jpg.json")); len(m) != 1 {
		t.Fatalf("sidecars %v, want one for big.jpg", m)
	}
	if st := w.Stats(); st.Refused != 1 {
		t.Fatalf("refused %d, want 1 (counted once)", st.Refused)
	}
}

// Names reaching logs and stats are cut; the sidecar keeps the full name.
func TestLongNamesCut(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxFileSize = 1
	rec := &logRec{}
	w := startWith(t, cfg, newStoreSink(t), slog.New(rec))
	name := strings.Repeat("n", 250) + ".jpg"
	write(t, filepath.Join(cfg.Dir, name), "too big")
	waitFor(t, "refusal", 10*time.Second, func() bool { return w.Stats().Refused == 1 })
	st := w.Stats()
	if len(st.LastRefused) > 600 || !strings.Contains(st.LastRefused, "bytes)") {
		t.Fatalf("last refused is %d bytes: %q", len(st.LastRefused), st.LastRefused)
	}
	if n := rec.count(strings.Repeat("n", 250)); n != 0 {
		t.Fatalf("%d log lines carry the whole name, want 0", n)
	}
	var m []string
	waitFor(t, "the sidecar", 10*time.Second, func() bool {
		m, _ = filepath.Glob(filepath.Join(cfg.FailedDir, "top", "f-*.json"))
		return len(m) == 1
	})
	var sc Sidecar
	b, _ := os.ReadFile(m[0])
	if err := json.Unmarshal(b, &sc); err != nil || sc.Name != name {
		t.Fatalf("sidecar name %q (%v), want the full name", sc.Name, err)
	}
}
