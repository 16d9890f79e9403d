package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/internal/textutil"
)

// ErrQueueFull is what a Sink returns (wrapped) when the queue cannot take
// the job now. The file stays claimed and is submitted again later; no new
// files are claimed meanwhile.
var ErrQueueFull = errors.New("queue full")

// ErrRefused is what a Sink returns (wrapped) for a file that can never
// become a job, because of the file itself (see IsFileError); the file goes
// to the failed directory with the reason and the spool goes on with the
// next file.
var ErrRefused = errors.New("refused")

// Defaults for zero Config fields.
const (
	DefaultSettleTime     = 500 * time.Millisecond
	DefaultRescanInterval = time.Minute
	DefaultSource         = "spool"
	retryInterval         = time.Second
	claimBatch            = 256
	sep                   = "__"
)

// SourceConfig gives a source (a sub-directory of the spool) its priority.
type SourceConfig struct {
	Name     string
	Priority int
}

// Config configures a Watcher.
type Config struct {
	// Dir is the spool directory; ClaimDir is inferq's private directory
	// files are renamed into (same file system as Dir for atomic renames,
	// otherwise files are copied and fsynced); DoneDir ("" = delete done
	// files) and FailedDir receive finished images.
	Dir, ClaimDir, DoneDir, FailedDir string
	// DefaultSource and DefaultPriority apply to files directly in Dir and
	// to sub-directories not listed in Sources.
	DefaultSource   string
	DefaultPriority int
	Sources         []SourceConfig
	// MaxFileSize refuses larger files (0 = no limit).
	MaxFileSize int64
	// SettleTime is how long a file's size and mtime must stay unchanged
	// before it is taken.
	SettleTime time.Duration
	// RescanInterval is the period of the safety-net full rescan.
	RescanInterval time.Duration
	// Extensions is an optional allow-list (".jpg", ".png", case-insensitive);
	// other files go to FailedDir with the reason.
	Extensions []string
}

// Item is one claimed file handed to the Sink.
type Item struct {
	ID       string // minted at claim time, stable across restarts
	Source   string
	Name     string // the file's name in the spool
	Path     string // the claimed file (hard-link or copy it; it is removed after Submit)
	Priority int
	Size     int64
}

// Sink takes claimed files durably. Submit returns only when the job and
// its image are on disk (the queue hard-links Path into its store), or the
// id is already known (duplicate).
type Sink interface {
	Submit(ctx context.Context, it Item) (duplicate bool, err error)
}

// Admitter is implemented by a Sink that can tell, before a file is claimed,
// whether it would take a file of size bytes now (nil) or not (an error
// wrapping ErrQueueFull, say). The Watcher asks it before each claim, so a
// file the queue cannot take stays in the spool instead of being moved onto
// the queue's disk, and asks again before it resumes after a pause.
type Admitter interface {
	Admit(size int64) error
}

// Outcome is a finished job, as the daemon reports it to Archive.
type Outcome struct {
	ID, Source, Name string
	ImagePath        string // the image in the queue's store
	Failed           bool
	Reason           string
	Attempts         int
}

// Stats are counters since New, and the spool's current state. Strings that
// may quote untrusted names are cut (textutil.Clip).
type Stats struct {
	Taken      uint64 // files that became new jobs
	Duplicates uint64 // claimed files whose job already existed
	// Refused counts files refused for good before becoming jobs (too large,
	// wrong extension, refused by the sink, unreadable), each once, whether
	// or not it could be moved to FailedDir; LastRefused says why the last
	// one was.
	Refused       uint64
	LastRefused   string
	LastRefusedAt time.Time
	// Unmovable is how many refused files could not be moved to FailedDir
	// and stay where they are (in Dir or ClaimDir); the move is tried again
	// every RescanInterval.
	Unmovable int
	// Waiting is how many files in Dir have been unchanged for longer than
	// SettleTime without being taken (empty files, files behind a paused
	// spool, files whose claim failed and waits for a retry); WaitingEmpty
	// is how many of those are empty; OldestWaiting is the longest any of
	// them has been seen in the spool. Updated on every settle tick.
	Waiting       int
	WaitingEmpty  int
	OldestWaiting time.Duration
	// ArchiveFailures counts Archive calls that failed (a full or
	// read-only done/failed directory, a bad name); LastArchiveError is the
	// last reason.
	ArchiveFailures    uint64
	LastArchiveError   string
	LastArchiveErrorAt time.Time
	Rescans            uint64
	Overflows          uint64 // inotify queue overflows (each followed by a rescan)
	Pending            int    // claimed files waiting for the queue (full or failing)
	Paused             bool   // the queue is full or failing: no new files are claimed
	Full               bool   // the sink reported ErrQueueFull and has not accepted since
	Archived           uint64
	// LastError is the last error of the spool itself (scan, watch, claim,
	// the queue while Paused); a pause's error is cleared when the queue
	// takes files again.
	LastError   string
	LastErrorAt time.Time
}

// Watcher watches a spool directory and submits its files as jobs.
type Watcher struct {
	cfg  Config
	sink Sink
	log  *slog.Logger
	prio map[string]int
	now  func() time.Time

	mu       sync.Mutex
	stats    Stats
	fsw      *fsnotify.Watcher
	complete *completions // nil where not supported
	closed   bool
	opened   bool
	pending  map[string]*seen      // spool path -> last observation
	stuck    map[string]*stuckFile // refused files that could not be moved to FailedDir
	blocked  bool                  // do not claim new files (queue full or sink failing)
	pauseErr string                // the error that paused the spool (LastError until resumed)
}

// seen is what the watcher knows about a file in the spool it has not taken.
type seen struct {
	size     int64
	mtime    time.Time
	changed  time.Time // last change of size or mtime (or an event)
	first    time.Time // first noted
	retryAt  time.Time // a claim failed for a reason outside the file: not before then
	claimErr string    // why, while retryAt is set
	reported bool      // logged as waiting
	// complete: renamed in or closed after writing with this size and mtime
	// (inotify): taken without waiting for SettleTime.
	complete bool
}

// stuckFile is a refused file that could not be moved to FailedDir: it
// stays where it is (spool or claim dir) and the move is retried at retryAt.
type stuckFile struct {
	it      Item
	reason  string
	size    int64
	mtime   time.Time
	retryAt time.Time
}

// Validate reports every invalid field, named as in inferq's configuration
// (spool.*; claim_dir is state_dir/claimed).
func (cfg Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("spool."+format, args...)) }
	for _, f := range []struct{ name, d string }{{"dir", cfg.Dir}, {"claim_dir", cfg.ClaimDir}, {"failed_dir", cfg.FailedDir}} {
		if f.d == "" {
			bad("%s: required", f.name)
		}
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return filepath.Clean(a) }
	for _, f := range []struct{ name, d string }{{"claim_dir", cfg.ClaimDir}, {"done_dir", cfg.DoneDir}, {"failed_dir", cfg.FailedDir}} {
		if f.d == "" || cfg.Dir == "" {
			continue
		}
		if rel, err := filepath.Rel(abs(cfg.Dir), abs(f.d)); err == nil && !strings.HasPrefix(rel, "..") {
			bad("%s %q: must not be inside spool.dir %q", f.name, f.d, cfg.Dir)
		}
	}
	if cfg.DefaultSource != "" {
		if err := validSource(cfg.DefaultSource); err != nil {
			bad("default_source %q: %w", cfg.DefaultSource, err)
		}
	}
	for i, s := range cfg.Sources {
		if err := validSource(s.Name); err != nil {
			bad("sources[%d].name %q: %w", i, s.Name, err)
		}
	}
	if cfg.MaxFileSize < 0 {
		bad("max_file_size %d: must not be negative", cfg.MaxFileSize)
	}
	if cfg.SettleTime < 0 {
		bad("settle_time %v: must not be negative", cfg.SettleTime)
	}
	if cfg.RescanInterval < 0 {
		bad("rescan_interval %v: must not be negative", cfg.RescanInterval)
	}
	for i, e := range cfg.Extensions {
		if !strings.HasPrefix(e, ".") || len(e) < 2 || strings.ContainsRune(e, '/') {
			bad("extensions[%d] %q: must look like .jpg", i, e)
		}
	}
	return errors.Join(errs...)
}

// New checks the configuration (Validate). Zero SettleTime and
// RescanInterval take the defaults; an empty DefaultSource is "spool".
func New(cfg Config, sink Sink, logger *slog.Logger) (*Watcher, error) {
	if sink == nil || logger == nil {
		return nil, errors.New("spool: sink and logger are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DefaultSource == "" {
		cfg.DefaultSource = DefaultSource
	}
	prio := map[string]int{}
	for _, s := range cfg.Sources {
		prio[s.Name] = s.Priority
	}
	if cfg.SettleTime == 0 {
		cfg.SettleTime = DefaultSettleTime
	}
	if cfg.RescanInterval == 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	exts := make([]string, len(cfg.Extensions))
	for i, e := range cfg.Extensions {
		exts[i] = strings.ToLower(e)
	}
	cfg.Extensions = exts
	return &Watcher{cfg: cfg, sink: sink, log: logger, prio: prio, now: time.Now,
		pending: map[string]*seen{}, stuck: map[string]*stuckFile{}}, nil
}

// validSource: a source name is a plain, non-hidden directory name without
// the claim separator "__".
func validSource(s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return errors.New("empty or dot name")
	case strings.HasPrefix(s, "."):
		return errors.New("hidden name")
	case strings.Contains(s, sep):
		return fmt.Errorf("contains %q", sep)
	case strings.ContainsAny(s, "/\\+#\x00"):
		return errors.New("contains / \\ + # or NUL")
	case len(s) > 64:
		return errors.New("longer than 64 bytes")
	}
	return nil
}

// ignored reports whether a name waits (hidden, *.tmp, *.part).
func ignored(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".part")
}

// Open creates the directories, submits files left in ClaimDir by a
// previous run (same ids: the queue reports duplicates) and starts
// watching. Files already in the spool are taken by Run's first scan.
func (w *Watcher) Open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("spool: closed")
	}
	if w.opened {
		return nil
	}
	for _, d := range []string{w.cfg.Dir, w.cfg.ClaimDir, w.cfg.DoneDir, w.cfg.FailedDir} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("cannot create %s: %w", d, err)
		}
	}
	if err := w.recoverJournals(); err != nil {
		return err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("cannot start fsnotify: %w", err)
	}
	if err := fsw.Add(w.cfg.Dir); err != nil {
		fsw.Close()
		return fmt.Errorf("cannot watch %s: %w", w.cfg.Dir, err)
	}
	w.fsw = fsw
	if c, err := newCompletions(); err != nil {
		w.log.Warn("spool: files are taken by the settle rule alone", logkey.Err, err)
	} else if err := c.add(w.cfg.Dir); err != nil {
		c.close()
		w.log.Warn("spool: files are taken by the settle rule alone", logkey.Err, err)
	} else {
		w.complete = c
	}
	w.opened = true
	w.mu.Unlock()
	w.submitClaimed(context.Background())
	w.mu.Lock()
	return nil
}

// Close stops watching. Safe to call twice and after a failed Open.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.complete.close()
	w.complete = nil
	if w.fsw != nil {
		err := w.fsw.Close()
		w.fsw = nil
		return err
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Paused = w.blocked
	st.Unmovable = len(w.stuck)
	return st
}

func (w *Watcher) setErr(err error) {
	msg := textutil.ClipMessage(err.Error())
	w.log.Error("spool", logkey.Err, msg)
	w.mu.Lock()
	w.stats.LastError, w.stats.LastErrorAt = msg, w.now()
	w.mu.Unlock()
}

// Run takes files until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	fsw := w.fsw
	var completed <-chan string
	if w.complete != nil {
		completed = w.complete.C
	}
	w.mu.Unlock()
	if fsw == nil {
		return errors.New("spool: Run before Open")
	}
	settle := time.NewTicker(max(w.cfg.SettleTime/4, 10*time.Millisecond))
	defer settle.Stop()
	rescan := time.NewTicker(w.cfg.RescanInterval)
	defer rescan.Stop()
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()

	w.rescan(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return nil
			}
			w.event(ctx, ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.mu.Lock()
				w.stats.Overflows++
				w.mu.Unlock()
				w.log.Warn("inotify queue overflow, rescanning spool")
				w.rescan(ctx)
				continue
			}
			w.setErr(fmt.Errorf("fsnotify: %w", err))
		case path, ok := <-completed:
			if !ok {
				completed = nil
				continue
			}
			if w.completed(path) {
				w.takeSettled(ctx)
			}
		case <-settle.C:
			w.takeSettled(ctx)
		case <-rescan.C:
			w.rescan(ctx)
		case <-retry.C:
			w.mu.Lock()
			blocked := w.blocked
			w.mu.Unlock()
			if blocked {
				if a, ok := w.sink.(Admitter); ok && a.Admit(0) != nil {
					continue // still full: files stay where they are
				}
				if w.submitClaimed(ctx) {
					w.rescan(ctx)
				}
			}
		}
	}
}

// event notes a changed path; files are taken once settled.
func (w *Watcher) event(ctx context.Context, ev fsnotify.Event) {
	path := ev.Name
	rel, err := filepath.Rel(w.cfg.Dir, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	depth := strings.Count(rel, string(filepath.Separator))
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		w.mu.Lock()
		delete(w.pending, path)
		delete(w.stuck, path)
		w.mu.Unlock()
		return
	}
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Chmod) {
		return
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return
	}
	if fi.IsDir() && depth == 0 {
		// A new source directory: watch it, then scan what it already holds.
		w.watchSource(path)
		w.scanDir(ctx, path, false)
		return
	}
	if depth > 1 || !fi.Mode().IsRegular() || ignored(fi.Name()) {
		return
	}
	w.note(path, fi, false)
}

// completed notes a file that was just renamed into the spool or closed after
// writing: it counts as settled at once. It reports whether there is a file
// to take.
func (w *Watcher) completed(path string) bool {
	rel, err := filepath.Rel(w.cfg.Dir, path)
	if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) > 1 {
		return false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || ignored(fi.Name()) || fi.Size() == 0 {
		return false
	}
	w.note(path, fi, false)
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[path]
	if p == nil || p.size != fi.Size() || !p.mtime.Equal(fi.ModTime()) {
		return false
	}
	p.complete = true
	return true
}

func (w *Watcher) watchSource(dir string) {
	if err := validSource(filepath.Base(dir)); err != nil {
		w.log.Warn("spool sub-directory ignored", logkey.Dir, dir, logkey.Err, err)
		return
	}
	w.mu.Lock()
	fsw := w.fsw
	w.mu.Unlock()
	if fsw != nil {
		if err := fsw.Add(dir); err != nil {
			w.setErr(fmt.Errorf("cannot watch %s: %w", dir, err))
		}
	}
	w.mu.Lock()
	c := w.complete
	w.mu.Unlock()
	if err := c.add(dir); err != nil {
		w.log.Warn("spool: files in this source are taken by the settle rule alone", logkey.Dir, dir, logkey.Err, err)
	}
}

// note records an observation of a regular file. old files seen by a scan
// count as settled when their mtime is older than SettleTime. A refused file
// that could not be moved is left alone until it changes.
func (w *Watcher) note(path string, fi os.FileInfo, scan bool) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if st, ok := w.stuck[path]; ok {
		if st.size == fi.Size() && st.mtime.Equal(fi.ModTime()) {
			return
		}
		delete(w.stuck, path) // new content: a new file as far as we know
	}
	p, ok := w.pending[path]
	if !ok {
		changed := now
		if scan && now.Sub(fi.ModTime()) >= w.cfg.SettleTime {
			changed = now.Add(-w.cfg.SettleTime)
		}
		w.pending[path] = &seen{size: fi.Size(), mtime: fi.ModTime(), changed: changed, first: now}
		return
	}
	if p.size != fi.Size() || !p.mtime.Equal(fi.ModTime()) {
		p.size, p.mtime, p.changed = fi.Size(), fi.ModTime(), now
		p.retryAt, p.claimErr, p.reported, p.complete = time.Time{}, "", false, false
	} else if !scan {
		// An event without a visible change (e.g. a close or a write of
		// equal size within the mtime granularity): wait again.
		p.changed = now
	}
}

// rescan walks the spool (one level of sub-directories), notes every
// candidate (files untouched for SettleTime count as settled), forgets
// files that are gone (their events may have been lost in an overflow) and
// takes the settled ones.
func (w *Watcher) rescan(ctx context.Context) {
	w.mu.Lock()
	w.stats.Rescans++
	w.mu.Unlock()
	ents, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		w.setErr(fmt.Errorf("cannot scan %s: %w", w.cfg.Dir, err))
		return
	}
	present := map[string]bool{}
	complete := true
	w.scanEntries(w.cfg.Dir, ents, present)
	for _, e := range ents {
		if e.Type().IsDir() { // DirEntry type comes from lstat: symlinks are not dirs
			dir := filepath.Join(w.cfg.Dir, e.Name())
			if validSource(e.Name()) != nil {
				continue
			}
			w.watchSource(dir)
			sub, err := os.ReadDir(dir)
			if err != nil {
				w.setErr(fmt.Errorf("cannot scan %s: %w", dir, err))
				complete = false
				continue
			}
			w.scanEntries(dir, sub, present)
		}
	}
	if complete {
		w.mu.Lock()
		for path := range w.pending {
			if !present[path] {
				delete(w.pending, path)
			}
		}
		w.mu.Unlock()
	}
	w.takeSettled(ctx)
}

func (w *Watcher) scanDir(ctx context.Context, dir string, take bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		w.setErr(fmt.Errorf("cannot scan %s: %w", dir, err))
		return
	}
	w.scanEntries(dir, ents, nil)
	if take {
		w.takeSettled(ctx)
	}
}

// scanEntries notes the regular files among ents and adds their paths to
// present (when not nil).
func (w *Watcher) scanEntries(dir string, ents []os.DirEntry, present map[string]bool) {
	for _, e := range ents {
		if !e.Type().IsRegular() || ignored(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if present != nil {
			present[path] = true
		}
		w.note(path, fi, true)
	}
}

// takeSettled claims and submits files whose size and mtime have not
// changed for SettleTime (empty files wait for content, files whose claim
// failed for a reason outside the file wait for their retry time), tries
// again to move refused files that could not be moved, and updates the
// waiting files' stats.
func (w *Watcher) takeSettled(ctx context.Context) {
	now := w.now()
	var ready []string
	w.mu.Lock()
	if !w.blocked {
		for path, p := range w.pending {
			if p.size > 0 && (p.complete || now.Sub(p.changed) >= w.cfg.SettleTime) && !now.Before(p.retryAt) {
				ready = append(ready, path)
			}
		}
	}
	w.mu.Unlock()
	sort.Strings(ready)
	for len(ready) > 0 && ctx.Err() == nil {
		n := min(len(ready), claimBatch)
		w.takeBatch(ctx, ready[:n])
		ready = ready[n:]
		w.mu.Lock()
		blocked := w.blocked
		w.mu.Unlock()
		if blocked {
			break
		}
	}
	w.retryStuck(now)
	w.noteWaiting(now)
}

// takeBatch re-checks each file, claims the good ones with one fsync per
// directory, then submits them.
func (w *Watcher) takeBatch(ctx context.Context, paths []string) {
	var claimed []Item
	dirs := map[string]bool{}
	for _, path := range paths {
		fi, err := os.Lstat(path)
		w.mu.Lock()
		p := w.pending[path]
		if err != nil || !fi.Mode().IsRegular() {
			delete(w.pending, path)
			w.mu.Unlock()
			continue
		}
		if p != nil && (p.size != fi.Size() || !p.mtime.Equal(fi.ModTime())) {
			p.size, p.mtime, p.changed = fi.Size(), fi.ModTime(), w.now()
			p.retryAt, p.claimErr, p.reported = time.Time{}, "", false
			w.mu.Unlock()
			continue
		}
		w.mu.Unlock()
		if fi.Size() == 0 {
			continue // truncated since it was noted: it waits for content again
		}
		source, prio := w.sourceOf(path)
		it := Item{ID: newID(), Source: source, Name: fi.Name(), Priority: prio, Size: fi.Size()}
		if reason := w.check(fi); reason != "" {
			w.forget(path)
			w.refuse(path, it, reason, fi)
			continue
		}
		if a, ok := w.sink.(Admitter); ok {
			if err := a.Admit(fi.Size()); err != nil {
				w.pause(err, it.ID)
				break // this file and the rest stay in the spool
			}
		}
		if err := w.claim(path, &it); err != nil {
			w.claimFailed(path, it, fi, err)
			continue
		}
		w.forget(path)
		dirs[filepath.Dir(path)] = true
		claimed = append(claimed, it)
	}
	if len(claimed) == 0 {
		return
	}
	dirs[w.cfg.ClaimDir] = true
	for d := range dirs {
		if err := syncDir(d); err != nil {
			w.setErr(err)
		}
	}
	for i, it := range claimed {
		if !w.submit(ctx, it) {
			// Blocked: the rest stay claimed and are retried from ClaimDir.
			w.mu.Lock()
			w.stats.Pending = len(claimed) - i
			w.mu.Unlock()
			return
		}
	}
}

func (w *Watcher) forget(path string) {
	w.mu.Lock()
	delete(w.pending, path)
	w.mu.Unlock()
}

// claimFailed decides what a failed claim means. A file that vanished is
// forgotten. A failure of the file itself (IsFileError, or a rename the
// file or its directory refuses while ClaimDir is writable) refuses it: to
// FailedDir, or left in place if it cannot be moved either. Anything else
// (the claim directory or its file system) leaves the file in the spool,
// claimed again after RescanInterval.
func (w *Watcher) claimFailed(path string, it Item, fi os.FileInfo, err error) {
	switch {
	case errors.Is(err, errClaimedNotRegular):
		w.forget(path)
		w.refuse(it.Path, it, "not a regular file when claimed", nil)
	case errors.Is(err, fs.ErrNotExist) && gone(path):
		w.forget(path)
		w.log.Info("spool file vanished before it was taken", logkey.Path, textutil.Clip(path))
	case w.claimFileError(err, path):
		w.forget(path)
		w.refuse(path, it, err.Error(), fi)
	default:
		w.setErr(err)
		w.mu.Lock()
		if p := w.pending[path]; p != nil {
			p.retryAt, p.claimErr = w.now().Add(w.cfg.RescanInterval), textutil.ClipMessage(err.Error())
		}
		w.mu.Unlock()
	}
}

// claimFileError reports whether a claim of path failed because of the
// file: IsFileError, or a rename of path refused with a per-file errno. A
// permission error counts only while ClaimDir itself is writable (else
// every file would be refused for a mistake in the set-up).
func (w *Watcher) claimFileError(err error, path string) bool {
	if IsFileError(err, path) {
		return true
	}
	var le *os.LinkError
	if !errors.As(err, &le) || le.Old != path || !fileErrno(le.Err) || errors.Is(le.Err, fs.ErrNotExist) {
		return false
	}
	const wOK, xOK = 2, 1 // access(2) modes
	return !errors.Is(le.Err, fs.ErrPermission) || syscall.Access(w.cfg.ClaimDir, wOK|xOK) == nil
}

// IsFileError reports whether err is about the file at path itself rather
// than about the queue or its disk: an *fs.PathError naming exactly path
// whose cause belongs to that file — permission denied (EACCES, EPERM), the
// file vanished (ENOENT), an I/O error reading it (EIO), a name or link
// problem (ENAMETOOLONG, ELOOP, EISDIR), a device behind it (ENXIO, ENODEV,
// EBUSY). Errors such as ENOSPC, EROFS, EDQUOT or EMFILE, and errors naming
// another path (the queue's own files), are not file errors. A Sink uses it
// to return such errors wrapped in ErrRefused; the Watcher applies it as
// well to what a Sink returns unclassified.
func IsFileError(err error, path string) bool {
	var pe *fs.PathError
	return path != "" && errors.As(err, &pe) && pe.Path == path && fileErrno(pe.Err)
}

// fileErrno reports whether err is an errno that describes one file.
func fileErrno(err error) bool {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EIO, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EISDIR, syscall.ENXIO, syscall.ENODEV, syscall.EBUSY} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func gone(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// retryStuck tries again, once due, to move refused files that could not
// be moved. A file that is gone (an operator removed it) or changed (it is
// noted afresh) is dropped from the list.
func (w *Watcher) retryStuck(now time.Time) {
	var due []string
	w.mu.Lock()
	for path, st := range w.stuck {
		if !now.Before(st.retryAt) {
			due = append(due, path)
		}
	}
	w.mu.Unlock()
	for _, path := range due {
		w.mu.Lock()
		st := w.stuck[path]
		w.mu.Unlock()
		if st == nil {
			continue
		}
		fi, err := os.Lstat(path)
		inSpool := filepath.Dir(path) != filepath.Clean(w.cfg.ClaimDir)
		drop := err != nil || (inSpool && (fi.Size() != st.size || !fi.ModTime().Equal(st.mtime)))
		if !drop {
			if err := w.toFailed(path, true, st.it.ID, st.it.Source, st.it.Name, st.reason, 0); err != nil {
				w.mu.Lock()
				st.retryAt = w.now().Add(w.cfg.RescanInterval)
				w.mu.Unlock()
				continue
			}
			w.log.Info("refused spool file moved to the failed directory", logkey.Path, textutil.Clip(path), logkey.JobID, st.it.ID)
		}
		w.mu.Lock()
		if w.stuck[path] == st {
			delete(w.stuck, path)
		}
		w.mu.Unlock()
	}
}

// noteWaiting counts the files that have sat unchanged in the spool for
// longer than SettleTime without being taken, and logs each once (not
// while the spool is paused: the pause itself is logged, and the files are
// logged if they still wait after it).
func (w *Watcher) noteWaiting(now time.Time) {
	type waiting struct {
		path, why string
		size      int64
		age       time.Duration
	}
	var fresh []waiting
	n, empty, oldest := 0, 0, time.Duration(0)
	w.mu.Lock()
	for path, p := range w.pending {
		if now.Sub(p.changed) < w.cfg.SettleTime {
			continue
		}
		age := now.Sub(p.first)
		n, oldest = n+1, max(oldest, age)
		if p.size == 0 {
			empty++
		}
		if p.reported || w.blocked {
			continue
		}
		p.reported = true
		why := "not taken yet"
		switch {
		case p.size == 0:
			why = "empty file: taken once it has content"
		case p.claimErr != "":
			why = "cannot claim it, retried later: " + p.claimErr
		}
		fresh = append(fresh, waiting{path: path, why: why, size: p.size, age: age})
	}
	w.stats.Waiting, w.stats.WaitingEmpty, w.stats.OldestWaiting = n, empty, oldest
	w.mu.Unlock()
	for _, f := range fresh {
		w.log.Warn("spool file waiting longer than settle_time", logkey.Path, textutil.Clip(f.path), "size", f.size, "age", f.age.Round(time.Millisecond), "why", f.why)
	}
}

func (w *Watcher) sourceOf(path string) (string, int) {
	dir := filepath.Dir(path)
	if filepath.Clean(dir) == filepath.Clean(w.cfg.Dir) {
		return w.cfg.DefaultSource, w.priority(w.cfg.DefaultSource)
	}
	s := filepath.Base(dir)
	return s, w.priority(s)
}

func (w *Watcher) priority(source string) int {
	if p, ok := w.prio[source]; ok {
		return p
	}
	return w.cfg.DefaultPriority
}

// check returns why a file is refused, or "".
func (w *Watcher) check(fi os.FileInfo) string {
	if w.cfg.MaxFileSize > 0 && fi.Size() > w.cfg.MaxFileSize {
		return fmt.Sprintf("file too large: %d bytes > max_file_size %d", fi.Size(), w.cfg.MaxFileSize)
	}
	if len(w.cfg.Extensions) > 0 {
		ext := strings.ToLower(filepath.Ext(fi.Name()))
		ok := false
		for _, e := range w.cfg.Extensions {
			ok = ok || e == ext
		}
		if !ok {
			return fmt.Sprintf("extension %q not in %v", ext, w.cfg.Extensions)
		}
	}
	return ""
}

// submit hands one claimed item to the sink. It reports false when the
// sink is blocked (queue full or failing); the file then stays claimed. A
// refusal (ErrRefused, or an error about the claimed file itself:
// IsFileError) is the file's own: it goes to FailedDir and the spool goes on.
func (w *Watcher) submit(ctx context.Context, it Item) bool {
	dup, err := w.sink.Submit(ctx, it)
	switch {
	case err == nil:
		if rerr := os.Remove(it.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			w.setErr(fmt.Errorf("cannot remove claimed file: %w", rerr))
		}
		w.mu.Lock()
		if dup {
			w.stats.Duplicates++
		} else {
			w.stats.Taken++
		}
		resumed := w.blocked
		if resumed && w.stats.LastError == w.pauseErr {
			w.stats.LastError, w.stats.LastErrorAt = "", time.Time{}
		}
		w.blocked, w.stats.Full = false, false
		w.mu.Unlock()
		if resumed {
			w.log.Info("spool resumed: the queue takes files again")
		}
		return true
	case errors.Is(err, ErrRefused) || IsFileError(err, it.Path):
		w.refuse(it.Path, it, err.Error(), nil)
		return true
	default:
		w.pause(err, it.ID)
		return false
	}
}

// pause stops taking files because the queue cannot take them (err); the
// retry tick tries again.
func (w *Watcher) pause(err error, id string) {
	full := errors.Is(err, ErrQueueFull)
	msg := textutil.ClipMessage(err.Error())
	w.mu.Lock()
	if !w.blocked {
		w.log.Warn("spool paused: queue not taking files", logkey.Err, msg, logkey.JobID, id)
	}
	w.blocked, w.stats.Full = true, full
	w.stats.LastError, w.stats.LastErrorAt, w.pauseErr = msg, w.now(), msg
	w.mu.Unlock()
}

// submitClaimed submits every file in ClaimDir (left by a crash or by a
// full queue) under its recorded id, except refused files that could not
// be moved (retryStuck's business). It reports whether all went in.
func (w *Watcher) submitClaimed(ctx context.Context) bool {
	ents, err := os.ReadDir(w.cfg.ClaimDir)
	if err != nil {
		w.setErr(fmt.Errorf("cannot read claim dir: %w", err))
		return false
	}
	var items []Item
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), journalExt) {
			continue
		}
		path := filepath.Join(w.cfg.ClaimDir, e.Name())
		w.mu.Lock()
		_, stuck := w.stuck[path]
		w.mu.Unlock()
		if stuck {
			continue
		}
		id, source, name, ok := parseClaimName(e.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		it := Item{ID: id, Source: source, Name: name, Path: path, Priority: w.priority(source), Size: fi.Size()}
		if !ok || !fi.Mode().IsRegular() {
			it = Item{ID: newID(), Source: w.cfg.DefaultSource, Name: e.Name(), Path: path}
			w.refuse(path, it, "unexpected entry in claim dir", nil)
			continue
		}
		items = append(items, it)
	}
	w.mu.Lock()
	w.stats.Pending = len(items)
	w.mu.Unlock()
	for i, it := range items {
		if ctx.Err() != nil || !w.submit(ctx, it) {
			w.mu.Lock()
			w.stats.Pending = len(items) - i
			w.mu.Unlock()
			return false
		}
	}
	w.mu.Lock()
	w.stats.Pending = 0
	w.blocked = false
	w.mu.Unlock()
	return true
}

// claimName is "<id>__<source>__<name>", the name cut (keeping its
// extension) so the whole fits in 255 bytes.
func claimName(id, source, name string) string {
	room := 255 - len(id) - len(source) - 2*len(sep)
	if len(name) > room {
		ext := filepath.Ext(name)
		if len(ext) > room/2 {
			ext = ""
		}
		name = name[:room-len(ext)] + ext
	}
	return id + sep + source + sep + name
}

func parseClaimName(s string) (id, source, name string, ok bool) {
	id, rest, ok1 := strings.Cut(s, sep)
	source, name, ok2 := strings.Cut(rest, sep)
	if !ok1 || !ok2 || id == "" || name == "" || validSource(source) != nil || strings.ContainsRune(s, '/') {
		return "", "", "", false
	}
	return id, source, name, true
}

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("f-%x-%s", time.Now().UnixMilli(), hex.EncodeToString(b[:]))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open dir %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync dir %s: %w", dir, err)
	}
	return nil
}

func isXDev(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && errors.Is(le.Err, syscall.EXDEV)
}
