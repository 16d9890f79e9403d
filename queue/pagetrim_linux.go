package queue

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/internal/logkey"
	"golang.org/x/sys/unix"
)

// Badger reads and writes its tables, memtable logs and value logs through
// memory maps, so every page of a table it writes or compacts stays in this
// process's resident set until the table is deleted: filling a queue with
// 100,000 jobs leaves ~60 MB of file-backed pages resident, on top of the Go
// heap. Those pages are reclaimable, but they count in RSS, and Badger v4 has
// no option to stop mapping tables. So with the small-device preset a
// pageTrimmer watches the process's file-backed resident memory
// (/proc/self/statm) and, each time it has grown by trimSlack, asks the
// kernel to reclaim this process's pages of Badger's mapped files (madvise
// MADV_PAGEOUT on the ranges listed in /proc/self/maps; Linux 5.4 and later,
// otherwise the trimmer stops). The advice never changes memory contents: a
// later access faults the page back in from the page cache, or from the disk
// when the kernel dropped a clean page. Even if a range read from
// /proc/self/maps was unmapped and reused before the call, the advice only
// pages out (anonymous memory goes to swap, or stays if there is none), so
// that race is harmless. The cost is the polling (every trimFastPoll while
// the file-backed memory changes, every trimIdlePoll after trimIdleAfter of
// quiet) and re-reading trimmed table pages: several hundred to about a
// thousand more major page faults while filling 100,000 jobs.
var (
	trimSlack     int64 = 2 << 20                // file-backed growth that triggers a trim
	trimFastPoll        = 10 * time.Millisecond  // poll interval while the database is busy
	trimIdlePoll        = 250 * time.Millisecond // poll interval once it has been quiet
	trimIdleAfter       = 5 * time.Second        // quiet time before slowing down
)

type pageTrimmer struct {
	prefix []byte // badger dir with a trailing slash
	log    *slog.Logger
	statm  *os.File
	maps   *os.File
	buf    []byte // for /proc/self/maps
	stop   chan struct{}
	done   chan struct{}
	trims  atomic.Int64 // trims done, for tests
}

// startPageTrimmer starts trimming the mapped files under dir; it returns nil
// (and trims nothing) where /proc/self is not readable.
func startPageTrimmer(dir string, log *slog.Logger) *pageTrimmer {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	statm, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		statm.Close()
		return nil
	}
	t := &pageTrimmer{prefix: []byte(abs + string(filepath.Separator)), log: log,
		statm: statm, maps: maps, buf: make([]byte, 16<<10),
		stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := t.fileRSS(); err != nil {
		statm.Close()
		maps.Close()
		return nil
	}
	go t.run()
	return t
}

// Stop stops the trimmer and waits for it to return.
func (t *pageTrimmer) Stop() {
	if t == nil {
		return
	}
	close(t.stop)
	<-t.done
}

func (t *pageTrimmer) run() {
	defer close(t.done)
	defer t.statm.Close()
	defer t.maps.Close()
	base, _ := t.fileRSS()
	prev, lastActive := base, time.Time{}
	timer := time.NewTimer(trimIdlePoll)
	defer timer.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-timer.C:
		}
		rss, err := t.fileRSS()
		if err != nil {
			return
		}
		if rss != prev {
			lastActive = time.Now()
		}
		base = min(base, rss)
		if rss-base >= trimSlack {
			if err := t.trim(); err != nil {
				t.log.Debug("queue: not trimming mapped database pages", logkey.Err, err)
				return
			}
			t.trims.Add(1)
			rss, _ = t.fileRSS()
			base = rss
		}
		prev = rss
		if time.Since(lastActive) < trimIdleAfter {
			timer.Reset(trimFastPoll)
		} else {
			timer.Reset(trimIdlePoll)
		}
	}
}

// fileRSS returns the process's resident file-backed (and shared) memory:
// the third field of /proc/self/statm, in pages.
func (t *pageTrimmer) fileRSS() (int64, error) {
	var buf [128]byte
	n, err := t.statm.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0, err
	}
	f := buf[:n]
	for range 2 {
		i := bytes.IndexByte(f, ' ')
		if i < 0 {
			return 0, errors.New("short /proc/self/statm")
		}
		f = f[i+1:]
	}
	var pages int64
	for _, c := range f {
		if c < '0' || c > '9' {
			break
		}
		pages = pages*10 + int64(c-'0')
	}
	return pages * int64(os.Getpagesize()), nil
}

// trim pages out the mappings of Badger's files. It returns an error only
// when the kernel does not support MADV_PAGEOUT or /proc/self/maps cannot be
// read.
func (t *pageTrimmer) trim() error {
	if _, err := t.maps.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n := 0
	for {
		if n == len(t.buf) {
			t.buf = append(t.buf, make([]byte, len(t.buf)+4096)...)
		}
		m, err := t.maps.Read(t.buf[n:])
		n += m
		if err == io.EOF || (m == 0 && err == nil) {
			break
		}
		if err != nil {
			return err
		}
	}
	maps := t.buf[:n]
	for len(maps) > 0 {
		line := maps
		if i := bytes.IndexByte(maps, '\n'); i >= 0 {
			line, maps = maps[:i], maps[i+1:]
		} else {
			maps = nil
		}
		lo, hi, ok := t.badgerMapping(line)
		if !ok {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_PAGEOUT)
		if errno == unix.EINVAL {
			return errno
		}
	}
	return nil
}

// badgerMapping parses one line of /proc/self/maps ("lo-hi perms offset dev
// inode path") and reports whether it maps one of Badger's files.
func (t *pageTrimmer) badgerMapping(line []byte) (lo, hi uintptr, ok bool) {
	i := bytes.Index(line, t.prefix)
	if i < 0 {
		return 0, 0, false
	}
	name := bytes.TrimSuffix(line[i+len(t.prefix):], []byte(" (deleted)"))
	if bytes.IndexByte(name, '/') >= 0 || !(bytes.HasSuffix(name, []byte(".sst")) ||
		bytes.HasSuffix(name, []byte(".mem")) || bytes.HasSuffix(name, []byte(".vlog"))) {
		return 0, 0, false
	}
	a, rest, ok1 := parseHex(line)
	if !ok1 || len(rest) == 0 || rest[0] != '-' {
		return 0, 0, false
	}
	b, rest, ok2 := parseHex(rest[1:])
	if !ok2 || len(rest) == 0 || rest[0] != ' ' || b <= a {
		return 0, 0, false
	}
	return a, b, true
}

// parseHex parses the hexadecimal number at the start of p.
func parseHex(p []byte) (v uintptr, rest []byte, ok bool) {
	i := 0
	for ; i < len(p) && i < 16; i++ {
		c := p[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return v, p[i:], i > 0
		}
	}
	return v, p[i:], i > 0
}
