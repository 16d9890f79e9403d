package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/internal/textutil"
)

const journalExt = ".xdev.json"

// errClaimedNotRegular: what a claim's rename moved into ClaimDir is not a
// regular file (something was swapped in after Lstat); it is refused.
var errClaimedNotRegular = errors.New("not a regular file when claimed")

// journal records a cross-file-system claim in progress, so that a crash
// between the copy and the removal of the original neither loses the image
// nor takes it twice.
type journal struct {
	Src   string `json:"src"`
	Claim string `json:"claim"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
}

// claim moves path into ClaimDir as <id>__<source>__<name> and sets
// it.Path. Same file system: one rename. Otherwise: journal, copy, fsync,
// rename into place, remove the original, drop the journal.
func (w *Watcher) claim(path string, it *Item) error {
	dst := filepath.Join(w.cfg.ClaimDir, claimName(it.ID, it.Source, it.Name))
	err := os.Rename(path, dst)
	if err == nil {
		// The rename could have moved something swapped in after Lstat:
		// check what arrived in our private directory.
		fi, err := os.Lstat(dst)
		if err != nil || !fi.Mode().IsRegular() {
			it.Path = dst
			return fmt.Errorf("cannot claim %s: %w", path, errClaimedNotRegular)
		}
		it.Path, it.Size = dst, fi.Size()
		return nil
	}
	if !isXDev(err) {
		return fmt.Errorf("cannot claim %s: %w", path, err)
	}
	return w.claimCopy(path, dst, it)
}

func (w *Watcher) claimCopy(path, dst string, it *Item) error {
	src, err := openRegular(path)
	if err != nil {
		return fmt.Errorf("cannot claim %s: %w", path, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("cannot claim %s: %w", path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	j := journal{Src: path, Claim: dst, Ino: st.Ino, Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	jpath := filepath.Join(w.cfg.ClaimDir, "."+it.ID+journalExt)
	jb, _ := json.Marshal(j)
	if err := writeFileSync(jpath, jb); err != nil {
		return fmt.Errorf("cannot claim %s: %w", path, err)
	}
	if err := syncDir(w.cfg.ClaimDir); err != nil {
		return err
	}
	if err := copyInto(src, dst); err != nil {
		os.Remove(jpath)
		return fmt.Errorf("cannot claim %s: %w", path, err)
	}
	if err := syncDir(w.cfg.ClaimDir); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove %s after copying it: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	if err := os.Remove(jpath); err != nil {
		return fmt.Errorf("cannot remove claim journal: %w", err)
	}
	it.Path, it.Size = dst, fi.Size()
	return nil
}

// recoverJournals finishes or undoes cross-file-system claims cut short by
// a crash: with the copy complete the original (if still the same file)
// is removed; without it the partial copy is removed and the original
// stays in the spool.
func (w *Watcher) recoverJournals() error {
	ents, err := os.ReadDir(w.cfg.ClaimDir)
	if err != nil {
		return fmt.Errorf("cannot read claim dir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(w.cfg.ClaimDir, name)
		if strings.HasPrefix(name, ".partial-") {
			os.Remove(p)
			continue
		}
		if !strings.HasSuffix(name, journalExt) {
			continue
		}
		b, err := os.ReadFile(p)
		var j journal
		if err != nil || json.Unmarshal(b, &j) != nil {
			w.log.Warn("unreadable claim journal removed", logkey.Path, p)
			os.Remove(p)
			continue
		}
		if _, err := os.Lstat(j.Claim); err == nil {
			if fi, err := os.Lstat(j.Src); err == nil {
				st := fi.Sys().(*syscall.Stat_t)
				if st.Ino == j.Ino && fi.Size() == j.Size && fi.ModTime().UnixNano() == j.Mtime {
					if err := os.Remove(j.Src); err != nil {
						return fmt.Errorf("cannot remove copied original %s: %w", j.Src, err)
					}
					syncDir(filepath.Dir(j.Src))
				}
			}
		}
		os.Remove(p)
	}
	return syncDir(w.cfg.ClaimDir)
}

// openRegular opens a file for reading without following a symlink and
// without blocking on a FIFO, and checks that it is a regular file.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	return f, nil
}

// copyInto copies src to dst through a hidden temporary file in dst's
// directory, fsyncs it and renames it into place.
func copyInto(src io.Reader, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), ".partial-"+filepath.Base(dst))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// placeFile puts src at dst: a hard link (or rename when move) on the same
// file system, a copy otherwise. It never overwrites dst.
func placeFile(src, dst string, move bool) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s already exists", dst)
	}
	var err error
	if move {
		err = os.Rename(src, dst)
	} else {
		err = os.Link(src, dst)
	}
	if err == nil {
		return nil
	}
	var le *os.LinkError
	if !errors.As(err, &le) || !(errors.Is(le.Err, syscall.EXDEV) || errors.Is(le.Err, syscall.EPERM)) {
		return err
	}
	f, err := openRegular(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := copyInto(f, dst); err != nil {
		return err
	}
	if move {
		// A source that cannot be removed (say, in a sticky directory) was not
		// moved: drop the copy, or every retry would leave another one.
		if err := os.Remove(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
			os.Remove(dst)
			return err
		}
	}
	return nil
}

// Sidecar is the JSON written next to a file in the failed directory.
type Sidecar struct {
	ID       string    `json:"id"`
	Source   string    `json:"source"`
	Name     string    `json:"name"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts,omitempty"`
	Time     time.Time `json:"time"`
}

// archivePath is <dir>/<source>/<id>__<name>.
func archivePath(dir, source, id, name string) string {
	return filepath.Join(dir, source, id+sep+cutName(id, name))
}

func cutName(id, name string) string {
	room := 240 - len(id) - len(sep) - len(".json") // and ".partial-" while written
	if len(name) > room {
		name = name[:room]
	}
	return name
}

// refuse moves a file to FailedDir with a sidecar saying why, and counts
// it (Stats.Refused, LastRefused). A file that cannot be moved stays where
// it is: it is logged, counted in Stats.Unmovable and the move is tried
// again every RescanInterval (see retryStuck); fi, for a file in the spool,
// lets a changed file start afresh. It reports whether the file was moved.
func (w *Watcher) refuse(path string, it Item, reason string, fi os.FileInfo) bool {
	reason = textutil.ClipMessage(reason)
	w.log.Warn("spool file refused", logkey.Path, textutil.Clip(path), logkey.JobID, it.ID, "reason", reason)
	w.mu.Lock()
	w.stats.Refused++
	w.stats.LastRefused = textutil.Clip(it.Source+"/"+it.Name) + ": " + reason
	w.stats.LastRefusedAt = w.now()
	w.mu.Unlock()
	err := w.toFailed(path, true, it.ID, it.Source, it.Name, reason, 0)
	if err == nil {
		return true
	}
	st := &stuckFile{it: it, reason: reason, retryAt: w.now().Add(w.cfg.RescanInterval)}
	if fi != nil {
		st.size, st.mtime = fi.Size(), fi.ModTime()
	}
	w.mu.Lock()
	w.stuck[path] = st
	w.mu.Unlock()
	w.setErr(fmt.Errorf("cannot move refused file %s to the failed directory, it stays where it is (tried again every %v): %w",
		textutil.Clip(path), w.cfg.RescanInterval, err))
	return false
}

func (w *Watcher) toFailed(src string, move bool, id, source, name, reason string, attempts int) error {
	dst := archivePath(w.cfg.FailedDir, source, id, name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err != nil {
		if err := placeFile(src, dst, move); err != nil {
			if !errors.Is(err, fs.ErrNotExist) || !gone(src) {
				return err
			}
			// The file itself is gone: the sidecar alone still says what happened.
			reason += " (the file is gone; only this sidecar is kept)"
		}
	} else if move {
		os.Remove(src)
	}
	sc := Sidecar{ID: id, Source: source, Name: name, Reason: reason, Attempts: attempts, Time: w.now().UTC()}
	b, _ := json.MarshalIndent(sc, "", "  ")
	// Through a temporary file: a reader (or Archive's "already done" check
	// after a crash) never sees half a sidecar.
	if err := copyInto(bytes.NewReader(append(b, '\n')), dst+".json"); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// Archive keeps a finished job's image: failed ones go to FailedDir with a
// JSON sidecar, done ones to DoneDir (nothing when DoneDir is ""). The
// image is hard-linked from the queue's store (copied across file systems)
// as <dir>/<source>/<id>__<name>; archiving twice is harmless. A failure
// (a full or read-only file system, a bad name) is returned, logged and
// counted in Stats.ArchiveFailures; it does not affect taking files.
func (w *Watcher) Archive(ctx context.Context, o Outcome) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := w.archive(o)
	if err != nil {
		msg := textutil.ClipMessage(err.Error())
		w.mu.Lock()
		w.stats.ArchiveFailures++
		w.stats.LastArchiveError, w.stats.LastArchiveErrorAt = msg, w.now()
		n := w.stats.ArchiveFailures
		w.mu.Unlock()
		w.log.Warn("cannot archive spool file", logkey.JobID, textutil.Clip(o.ID), "failed", o.Failed, "archive_failures", n, logkey.Err, msg)
		return err
	}
	return nil
}

func (w *Watcher) archive(o Outcome) error {
	if validSource(o.Source) != nil || o.ID == "" || strings.ContainsAny(o.ID, "/\x00") || strings.ContainsAny(o.Name, "/\x00") || o.Name == "" {
		return fmt.Errorf("cannot archive job %q: bad source %q or name %q", textutil.Clip(o.ID), textutil.Clip(o.Source), textutil.Clip(o.Name))
	}
	if !o.Failed && w.cfg.DoneDir == "" {
		return nil
	}
	dir := w.cfg.DoneDir
	if o.Failed {
		dir = w.cfg.FailedDir
	}
	dst := archivePath(dir, o.Source, o.ID, o.Name)
	done := dst
	if o.Failed {
		done = dst + ".json"
	}
	if _, err := os.Lstat(done); err == nil {
		return nil
	}
	var err error
	if o.Failed {
		err = w.toFailed(o.ImagePath, false, o.ID, o.Source, o.Name, o.Reason, o.Attempts)
	} else {
		if err = os.MkdirAll(filepath.Dir(dst), 0o750); err == nil {
			if err = placeFile(o.ImagePath, dst, false); err == nil {
				err = syncDir(filepath.Dir(dst))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cannot archive job %s: %w", textutil.Clip(o.ID), err)
	}
	w.mu.Lock()
	w.stats.Archived++
	w.mu.Unlock()
	return nil
}
