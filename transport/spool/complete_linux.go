package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// completions reports files that are complete the moment it happens: renamed
// into a watched directory (IN_MOVED_TO) or closed after writing
// (IN_CLOSE_WRITE). fsnotify (v1.10) exposes neither, so this is a second,
// small inotify instance on the same directories, read on its own goroutine.
// It only speeds taking up: the settle rule still takes what it misses (an
// overflow, a writer that never closes).
type completions struct {
	f    *os.File
	C    chan string // paths of completed files
	mu   sync.Mutex
	dirs map[int32]string
	done chan struct{}
}

func newCompletions() (*completions, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	c := &completions{f: os.NewFile(uintptr(fd), "inotify"), C: make(chan string, 1024),
		dirs: map[int32]string{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// add watches dir for completed files.
func (c *completions) add(dir string) error {
	if c == nil {
		return nil
	}
	wd, err := unix.InotifyAddWatch(int(c.f.Fd()), dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
	if err != nil {
		return fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	c.mu.Lock()
	c.dirs[int32(wd)] = dir
	c.mu.Unlock()
	return nil
}

func (c *completions) read() {
	defer close(c.done)
	defer close(c.C)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				return
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameEnd := off + unix.SizeofInotifyEvent + int(ev.Len)
			if nameEnd > n {
				break
			}
			name := string(buf[off+unix.SizeofInotifyEvent : nameEnd])
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			off = nameEnd
			if ev.Mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) == 0 || ev.Mask&unix.IN_ISDIR != 0 || name == "" {
				continue
			}
			c.mu.Lock()
			dir, ok := c.dirs[ev.Wd]
			c.mu.Unlock()
			if !ok {
				continue
			}
			select {
			case c.C <- filepath.Join(dir, name):
			default: // full: the settle rule takes it
			}
		}
	}
}

func (c *completions) close() {
	if c == nil {
		return
	}
	c.f.Close()
	<-c.done
}
