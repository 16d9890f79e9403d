package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrQueueFull is what a Sink returns (wrapped) when the queue cannot take
// the job now. The file stays claimed and is submitted again later; no new
// files are claimed meanwhile.
var ErrQueueFull = errors.New("queue full")

// ErrRefused is what a Sink returns (wrapped) for a file that can never
// become a job; the file goes to the failed directory with the reason.
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

// Outcome is a finished job, as the daemon reports it to Archive.
type Outcome struct {
	ID, Source, Name string
	ImagePath        string // the image in the queue's store
	Failed           bool
	Reason           string
	Attempts         int
}

// Stats are counters since New.
type Stats struct {
	Taken      uint64 // files that became new jobs
	Duplicates uint64 // claimed files whose job already existed
	Refused    uint64 // files moved to FailedDir before becoming jobs
	Rescans    uint64
	Overflows  uint64 // inotify queue overflows (each followed by a rescan)
	Pending    int    // claimed files waiting for the queue (full or failing)
	Full       bool   // the sink reported ErrQueueFull and has not accepted since
	Archived   uint64
	LastError  string
}

// Watcher watches a spool directory and submits its files as jobs.
type Watcher struct {
	cfg  Config
	sink Sink
	log  *slog.Logger
	prio map[string]int
	now  func() time.Time

	mu      sync.Mutex
	stats   Stats
	fsw     *fsnotify.Watcher
	closed  bool
	opened  bool
	pending map[string]*seen // spool path -> last observation
	blocked bool             // do not claim new files (queue full or sink failing)
}

type seen struct {
	size    int64
	mtime   time.Time
	changed time.Time
}

// New checks the configuration. Zero SettleTime and RescanInterval take the
// defaults; an empty DefaultSource is "spool".
func New(cfg Config, sink Sink, logger *slog.Logger) (*Watcher, error) {
	if sink == nil || logger == nil {
		return nil, errors.New("spool: sink and logger are required")
	}
	for name, d := range map[string]string{"dir": cfg.Dir, "claim_dir": cfg.ClaimDir, "failed_dir": cfg.FailedDir} {
		if d == "" {
			return nil, fmt.Errorf("spool: %s: required", name)
		}
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return filepath.Clean(a) }
	for name, d := range map[string]string{"claim_dir": cfg.ClaimDir, "done_dir": cfg.DoneDir, "failed_dir": cfg.FailedDir} {
		if d == "" {
			continue
		}
		if rel, err := filepath.Rel(abs(cfg.Dir), abs(d)); err == nil && !strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("spool: %s %q: must not be inside dir %q", name, d, cfg.Dir)
		}
	}
	if cfg.DefaultSource == "" {
		cfg.DefaultSource = DefaultSource
	}
	if err := validSource(cfg.DefaultSource); err != nil {
		return nil, fmt.Errorf("spool: default_source %q: %w", cfg.DefaultSource, err)
	}
	prio := map[string]int{}
	for i, s := range cfg.Sources {
		if err := validSource(s.Name); err != nil {
			return nil, fmt.Errorf("spool: sources[%d].name %q: %w", i, s.Name, err)
		}
		prio[s.Name] = s.Priority
	}
	if cfg.MaxFileSize < 0 {
		return nil, fmt.Errorf("spool: max_file_size %d: must not be negative", cfg.MaxFileSize)
	}
	if cfg.SettleTime < 0 || cfg.RescanInterval < 0 {
		return nil, fmt.Errorf("spool: settle_time %v / rescan_interval %v: must not be negative", cfg.SettleTime, cfg.RescanInterval)
	}
	if cfg.SettleTime == 0 {
		cfg.SettleTime = DefaultSettleTime
	}
	if cfg.RescanInterval == 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	for i, e := range cfg.Extensions {
		if !strings.HasPrefix(e, ".") || len(e) < 2 || strings.ContainsRune(e, '/') {
			return nil, fmt.Errorf("spool: extensions[%d] %q: must look like .jpg", i, e)
		}
		cfg.Extensions[i] = strings.ToLower(e)
	}
	return &Watcher{cfg: cfg, sink: sink, log: logger, prio: prio, now: time.Now, pending: map[string]*seen{}}, nil
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
	return w.stats
}

func (w *Watcher) setErr(err error) {
	w.log.Error("spool", "err", err)
	w.mu.Lock()
	w.stats.LastError = err.Error()
	w.mu.Unlock()
}

// Run takes files until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	fsw := w.fsw
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
		case <-settle.C:
			w.takeSettled(ctx)
		case <-rescan.C:
			w.rescan(ctx)
		case <-retry.C:
			w.mu.Lock()
			blocked := w.blocked
			w.mu.Unlock()
			if blocked {
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

func (w *Watcher) watchSource(dir string) {
	if err := validSource(filepath.Base(dir)); err != nil {
		w.log.Warn("spool sub-directory ignored", "dir", dir, "err", err)
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
}

// note records an observation of a regular file. old files seen by a scan
// count as settled when their mtime is older than SettleTime.
func (w *Watcher) note(path string, fi os.FileInfo, scan bool) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.pending[path]
	if !ok {
		changed := now
		if scan && now.Sub(fi.ModTime()) >= w.cfg.SettleTime {
			changed = now.Add(-w.cfg.SettleTime)
		}
		w.pending[path] = &seen{size: fi.Size(), mtime: fi.ModTime(), changed: changed}
		return
	}
	if p.size != fi.Size() || !p.mtime.Equal(fi.ModTime()) {
		p.size, p.mtime, p.changed = fi.Size(), fi.ModTime(), now
	} else if !scan {
		// An event without a visible change (e.g. a close or a write of
		// equal size within the mtime granularity): wait again.
		p.changed = now
	}
}

// rescan walks the spool (one level of sub-directories) and notes every
// candidate (files untouched for SettleTime count as settled) and takes
// the settled ones.
func (w *Watcher) rescan(ctx context.Context) {
	w.mu.Lock()
	w.stats.Rescans++
	w.mu.Unlock()
	ents, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		w.setErr(fmt.Errorf("cannot scan %s: %w", w.cfg.Dir, err))
		return
	}
	w.scanEntries(w.cfg.Dir, ents)
	for _, e := range ents {
		if e.Type().IsDir() { // DirEntry type comes from lstat: symlinks are not dirs
			dir := filepath.Join(w.cfg.Dir, e.Name())
			if validSource(e.Name()) != nil {
				continue
			}
			w.watchSource(dir)
			w.scanDir(ctx, dir, false)
		}
	}
	w.takeSettled(ctx)
}

func (w *Watcher) scanDir(ctx context.Context, dir string, take bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		w.setErr(fmt.Errorf("cannot scan %s: %w", dir, err))
		return
	}
	w.scanEntries(dir, ents)
	if take {
		w.takeSettled(ctx)
	}
}

func (w *Watcher) scanEntries(dir string, ents []os.DirEntry) {
	for _, e := range ents {
		if !e.Type().IsRegular() || ignored(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		w.note(path, fi, true)
	}
}

// takeSettled claims and submits files whose size and mtime have not
// changed for SettleTime.
func (w *Watcher) takeSettled(ctx context.Context) {
	w.mu.Lock()
	if w.blocked || len(w.pending) == 0 {
		w.mu.Unlock()
		return
	}
	now := w.now()
	var ready []string
	for path, p := range w.pending {
		if now.Sub(p.changed) >= w.cfg.SettleTime {
			ready = append(ready, path)
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
			return
		}
	}
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
			w.mu.Unlock()
			continue
		}
		delete(w.pending, path)
		w.mu.Unlock()
		if fi.Size() == 0 {
			// Created but not written yet (or a writer slower than
			// SettleTime): its next write event or a rescan brings it back.
			continue
		}
		source, prio := w.sourceOf(path)
		it := Item{ID: newID(), Source: source, Name: fi.Name(), Priority: prio, Size: fi.Size()}
		if reason := w.check(fi); reason != "" {
			w.refuse(path, it, reason)
			continue
		}
		if err := w.claim(path, &it); err != nil {
			w.setErr(err)
			continue
		}
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
// sink is blocked (queue full or failing); the file then stays claimed.
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
		w.blocked, w.stats.Full = false, false
		w.mu.Unlock()
		return true
	case errors.Is(err, ErrRefused):
		w.refuse(it.Path, it, err.Error())
		return true
	default:
		full := errors.Is(err, ErrQueueFull)
		w.mu.Lock()
		if !w.blocked {
			w.log.Warn("spool paused: queue not taking files", "err", err, "id", it.ID)
		}
		w.blocked, w.stats.Full = true, full
		w.stats.LastError = err.Error()
		w.mu.Unlock()
		return false
	}
}

// submitClaimed submits every file in ClaimDir (left by a crash or by a
// full queue) under its recorded id. It reports whether all went in.
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
		id, source, name, ok := parseClaimName(e.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		it := Item{ID: id, Source: source, Name: name, Path: path, Priority: w.priority(source), Size: fi.Size()}
		if !ok || !fi.Mode().IsRegular() {
			it = Item{ID: newID(), Source: w.cfg.DefaultSource, Name: e.Name(), Path: path}
			w.refuse(path, it, "unexpected entry in claim dir")
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
