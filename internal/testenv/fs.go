package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Mount mounts a real file system of size bytes on a new directory and
// unmounts it when the test ends: kind "tmpfs", or "ext4" (an image file
// made with mkfs.ext4 and loop-mounted). It needs root, gated as Need.
func Mount(t testing.TB, kind string, size int64) string {
	t.Helper()
	Root(t)
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		Need(t, "mounting a "+kind, err)
	}
	switch kind {
	case "tmpfs":
		run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir)
	case "ext4":
		img := filepath.Join(t.TempDir(), "fs.img")
		run("truncate", "-s", fmt.Sprint(size), img)
		run(Program(t, "mkfs.ext4"), "-q", "-F", img)
		run("mount", "-o", "loop", img, dir)
	default:
		t.Fatalf("testenv.Mount: unknown file system %q", kind)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// FillFS writes a file in dir until its file system has no byte left and
// returns the file's path; removing it gives the space back.
func FillFS(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{1 << 20, 4096, 1} {
		chunk := make([]byte, n)
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
	}
	return path
}

// Buffer is a bytes.Buffer safe for one writer (a child process's output
// copier) and readers (the test) at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset empties the buffer.
func (l *Buffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
