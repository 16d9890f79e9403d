package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/inferq/inferq/internal/testenv"
)

// mountTmpfs mounts a tmpfs of size bytes (as root) and unmounts it at the end.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	testenv.Root(t)
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	testenv.Need(t, "mounting a tmpfs", wrapOut(err, out))
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func wrapOut(err error, out []byte) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
}

// fillDisk writes a file in dir until the file system is full (ENOSPC) and
// returns its path; removing it gives the space back.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for { // the last partial chunk
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	return path
}

// TestDiskFullTmpfs fills a real 64 MiB tmpfs with jobs of camera-sized
// images: Enqueue refuses with the disk reserve's FullError before the file
// system is full (so Badger never writes into a page it cannot back: that
// would be SIGBUS and kill this test binary), leases and acks with results go
// on inside the reserve, and every job taken in gets its result.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	dir := filepath.Join(mnt, "queue")
	o := testOptions(t, dir, nil)
	q := mustOpen(t, o)
	ctx := context.Background()
	img := bytes.Repeat([]byte("camera"), 300<<10/6) // 300 KB
	var taken []string
	var full *FullError
	for i := 0; ; i++ {
		id := fmt.Sprintf("cam-%04d", i)
		_, err := q.Enqueue(ctx, NewJob{ID: id, Image: img})
		if errors.As(err, &full) {
			break
		}
		if err != nil {
			t.Fatalf("enqueue %d: %v (want a FullError for the disk reserve before any other error)", i, err)
		}
		taken = append(taken, id)
		if i > 1000 {
			t.Fatal("a 64 MiB file system took 300 MB of images")
		}
	}
	st := q.Stats()
	t.Logf("took %d jobs; refused at %s free, reserve %s", len(taken), mib(st.DiskFree), mib(st.DiskReserve))
	if full.Limit != "disk_reserve" || !st.DiskFull || !st.Full || st.DiskRefused != 1 {
		t.Fatalf("refusal %v, stats %+v: want the disk reserve named and DiskFull", full, st)
	}
	if st.Volatile != "tmpfs" {
		t.Fatalf("Stats.Volatile = %q, want tmpfs", st.Volatile)
	}
	if len(taken) < 40 {
		t.Fatalf("only %d jobs taken on a 64 MiB file system with a %s reserve", len(taken), mib(st.DiskReserve))
	}
	// Drain inside the reserve: every job is leased and acked with a result
	// of detector size; the publisher deletes rows as it goes.
	got := map[string]bool{}
	result := bytes.Repeat([]byte("{}"), 2000)
	for range taken {
		l := poll(t, q)
		if l == nil {
			t.Fatalf("no lease after %d of %d jobs (stats %+v)", len(got), len(taken), q.Stats())
		}
		if err := q.Ack(ctx, l, OutboxMsg{Topic: "r", Payload: append([]byte(l.Job.ID+" "), result...)}); err != nil {
			t.Fatalf("ack inside the reserve: %v", err)
		}
		rows, err := q.OutboxPeek(10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			got[string(r.Payload[:bytes.IndexByte(r.Payload, ' ')])] = true
			if err := q.OutboxDelete(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got) != len(taken) {
		t.Fatalf("%d results for %d jobs", len(got), len(taken))
	}
	// With the backlog gone, input is taken again.
	if _, err := q.Enqueue(ctx, NewJob{ID: "after", Image: img}); err != nil {
		t.Fatalf("enqueue after draining: %v", err)
	}
}

// TestOpenOnFullDisk: a state file system that something else filled to the
// last byte. Open gives back the ballast and starts (refusing input, holding
// leases); with no ballast it refuses with a DiskFullError instead of letting
// Badger fault; once space returns, everything acknowledged is there.
func TestOpenOnFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	dir := filepath.Join(mnt, "queue")
	o := testOptions(t, dir, nil)
	q := mustOpen(t, o)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		mustEnqueue(t, q, NewJob{ID: fmt.Sprintf("j%d", i), Image: bytes.Repeat([]byte{byte(i)}, 100<<10)})
	}
	q.keepBallast()
	if fi, err := os.Stat(filepath.Join(dir, "ballast")); err != nil || fi.Size() != q.disk.ballastSize() {
		t.Fatalf("ballast file: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	filler := fillDisk(t, mnt)

	// Full: the ballast is given back and the queue opens.
	q, err := Open(o)
	if err != nil {
		t.Fatalf("open on a full disk with a ballast: %v", err)
	}
	st := q.Stats()
	if st.ReadyTotal != 20 || !st.DiskFull {
		t.Fatalf("after open on a full disk: %+v, want 20 ready and DiskFull", st)
	}
	if _, err := q.Enqueue(ctx, NewJob{ID: "new", Image: []byte("x")}); !errors.Is(err, ErrFull) {
		t.Fatalf("enqueue on a full disk: %v, want ErrFull", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// Full again, and no ballast left: Open refuses before Badger maps anything.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	filler = fillDisk(t, mnt)
	_, err = Open(o)
	var dfe *DiskFullError
	if !errors.As(err, &dfe) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("open on a full disk without ballast: %v, want a DiskFullError", err)
	}
	t.Logf("refused: %v", err)
	// Space comes back: everything is there.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	if st := q.Stats(); st.ReadyTotal != 20 || st.DiskFull {
		t.Fatalf("after space returned: %+v, want 20 ready and not full", st)
	}
	for i := 0; i < 20; i++ {
		l := poll(t, q)
		img, err := q.Image(l)
		if err != nil || len(img) != 100<<10 {
			t.Fatalf("image of %s: %d bytes, %v", l.Job.ID, len(img), err)
		}
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
}
