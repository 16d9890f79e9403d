package queue

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPageTrimmerMappings(t *testing.T) {
	tr := &pageTrimmer{prefix: []byte("/var/lib/inferq/queue/db/")}
	for _, c := range []struct {
		line   string
		lo, hi uintptr
		ok     bool
	}{
		{"7f12a4000000-7f12a4200000 r--s 00000000 fd:01 1234                       /var/lib/inferq/queue/db/000012.sst", 0x7f12a4000000, 0x7f12a4200000, true},
		{"7f12a4000000-7f12a4200000 r--s 00000000 fd:01 1234                       /var/lib/inferq/queue/db/000012.sst (deleted)", 0x7f12a4000000, 0x7f12a4200000, true},
		{"7f12a5000000-7f12a5400000 rw-s 00000000 fd:01 1235                       /var/lib/inferq/queue/db/00003.mem", 0x7f12a5000000, 0x7f12a5400000, true},
		{"7f12a6000000-7f12ae000000 rw-s 00000000 fd:01 1236                       /var/lib/inferq/queue/db/000001.vlog", 0x7f12a6000000, 0x7f12ae000000, true},
		{"7f12a4000000-7f12a4200000 rw-s 00000000 fd:01 1237                       /var/lib/inferq/queue/db/DISCARD", 0, 0, false},
		{"7f12a4000000-7f12a4200000 r--s 00000000 fd:01 1238                       /var/lib/inferq/queue/db/old/000012.sst", 0, 0, false},
		{"7f12a4000000-7f12a4200000 r--s 00000000 fd:01 1239                       /var/lib/inferq/queue/dbx/000012.sst", 0, 0, false},
		{"7f12a4000000-7f12a4200000 rw-p 00000000 00:00 0 ", 0, 0, false},
		{"00400000-00c00000 r-xp 00000000 fd:01 99                         /usr/bin/inferq", 0, 0, false},
	} {
		lo, hi, ok := tr.badgerMapping([]byte(c.line))
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("badgerMapping(%q) = %#x, %#x, %v; want %#x, %#x, %v", c.line, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

// mappingRSS returns the resident bytes of this process's mappings of path.
func mappingRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) > 0 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			in = len(fs) >= 6 && fs[5] == path
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			rss += kb << 10
		}
	}
	return rss
}

// TestPageTrimmerTrim: trim takes the pages of a mapped table out of the
// resident set and leaves its contents as they were.
func TestPageTrimmerTrim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		t.Skip("tmpfs pages are not paged out without swap")
	}
	path := filepath.Join(dir, "000001.sst")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	sum := 0
	for i := 0; i < len(m); i += 4096 {
		sum += int(m[i])
	}
	t.Logf("checksum %d", sum)
	before := mappingRSS(t, path)
	if before < 2<<20 {
		t.Fatalf("mapping resident before trim: %d bytes; want the pages read", before)
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	defer maps.Close()
	tr := &pageTrimmer{prefix: []byte(dir + "/"), maps: maps, buf: make([]byte, 64)}
	if err := tr.trim(); err != nil {
		t.Skipf("MADV_PAGEOUT: %v", err)
	}
	if after := mappingRSS(t, path); after > before/4 {
		t.Errorf("mapping resident after trim: %d bytes (before: %d)", after, before)
	}
	for i := range m {
		if m[i] != byte(i*7) {
			t.Fatalf("byte %d changed by trim: %d", i, m[i])
		}
	}
}

// TestPageTrimmerRuns: a small-device queue trims while it is written to,
// and Close stops the trimmer.
func TestPageTrimmerRuns(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	if q.trimmer == nil {
		t.Skip("no /proc/self/statm")
	}
	img := make([]byte, 512)
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; q.trimmer.trims.Load() == 0 && time.Now().Before(deadline); i++ {
				if _, err := q.Enqueue(context.Background(), NewJob{ID: "j" + strconv.Itoa(g) + "-" + strconv.Itoa(i), Image: img}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if q.trimmer.trims.Load() == 0 {
		t.Fatalf("no trim after %d jobs", q.Stats().ReadyTotal)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.trimmer.done:
	default:
		t.Error("trimmer still running after Close")
	}
}
