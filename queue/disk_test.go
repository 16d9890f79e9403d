package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

// TestDiskFullTmpfs fills a real 160 MiB tmpfs with jobs of camera-sized
// images: Enqueue refuses with the disk reserve's FullError before the file
// system is full (so Badger never writes into a page it cannot back: that
// would be SIGBUS and kill this test binary), leases and acks with results go
// on inside the reserve, and every job taken in gets its result.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := testenv.Mount(t, "tmpfs", 160<<20)
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
			t.Fatal("a 160 MiB file system took 300 MB of images")
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
		t.Fatalf("only %d jobs taken on a 160 MiB file system with a %s reserve", len(taken), mib(st.DiskReserve))
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
	mnt := testenv.Mount(t, "tmpfs", 96<<20)
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
	filler := testenv.FillFS(t, mnt)

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
	filler = testenv.FillFS(t, mnt)
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

// TestDiskFullBrokerDown is the worst case for the reserve: small images
// (inline in Badger, so acks free almost nothing until compaction) fill a
// real tmpfs, and the broker is away, so every ack adds a 1 KB result that
// stays in the outbox. The worker goes on inside the reserve until leasing
// is held at the floor; nothing faults, and every result acked is there.
// The log line gives how many jobs a full box still finishes that way.
func TestDiskFullBrokerDown(t *testing.T) {
	mnt := testenv.Mount(t, "tmpfs", 128<<20)
	o := testOptions(t, filepath.Join(mnt, "queue"), nil)
	q := mustOpen(t, o)
	q.keepBallast() // Run does this every 10 s
	ctx := context.Background()
	img := bytes.Repeat([]byte{7}, 3000)
	queued := 0
	for ; ; queued++ {
		_, err := q.Enqueue(ctx, NewJob{ID: fmt.Sprintf("s%06d", queued), Image: img})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("enqueue %d: %v", queued, err)
		}
	}
	st := q.Stats()
	t.Logf("queued %d jobs of 3,000 bytes; refused at %s free", queued, mib(st.DiskFree))
	// Something else takes the disk below the floor: the ballast is given back
	// and work goes on; it takes that too: nothing more is leased.
	filler := filepath.Join(mnt, "other")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	take := func(leave int64) { // leave about that much free
		d, err := statDisk(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if d.free > leave {
			if _, err := f.Write(make([]byte, d.free-leave)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * diskCacheFor) // the free space is read again
	}
	// (Badger frees and takes a few MiB as it flushes and compacts: aim well
	// below the floor for the first step, and top up in the second.)
	take(q.disk.floor() / 2)
	var leases []*Lease
	if l := poll(t, q); l == nil {
		t.Fatalf("below the floor with a ballast file: nothing leased (stats %+v)", q.Stats())
	} else {
		leases = append(leases, l)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, "ballast")); !os.IsNotExist(err) {
		t.Fatalf("below the floor: ballast file still there (%v)", err)
	}
	held := false
	for deadline := time.Now().Add(5 * time.Second); !held && time.Now().Before(deadline); {
		take(q.disk.floor() - 2<<20)
		if l := poll(t, q); l != nil {
			leases = append(leases, l)
			continue
		}
		held = q.Stats().LeasesHeld
	}
	if !held {
		t.Fatalf("below the floor, no ballast: leases not held (stats %+v)", q.Stats())
	}
	f.Close()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * diskCacheFor) // the free space is read again
	result := bytes.Repeat([]byte("r"), 1000)
	acked := 0
	for _, l := range leases {
		if err := q.Ack(ctx, l, OutboxMsg{Topic: "r", Payload: result}); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	for l := poll(t, q); l != nil; acked++ {
		next, err := q.AckNext(ctx, l, OutboxMsg{Topic: "r", Payload: result})
		if err != nil {
			t.Fatalf("ack %d: %v", acked, err)
		}
		l = next
		if l == nil {
			l = poll(t, q)
		}
	}
	st = q.Stats()
	t.Logf("broker away: %d jobs finished after the refusal, outbox %d rows; leasing held: %v at %s free",
		acked, st.Outbox, st.LeasesHeld, mib(st.DiskFree))
	if st.Outbox != acked {
		t.Fatalf("outbox %d rows for %d acks", st.Outbox, acked)
	}
	if acked < queued && !st.LeasesHeld {
		t.Fatalf("stopped after %d of %d jobs without holding leases", acked, queued)
	}
	// The broker returns: rows go out and are deleted, all of them.
	n := 0
	for {
		rows, err := q.OutboxPeek(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			if err := q.OutboxDelete(r.Seq); err != nil {
				t.Fatalf("outbox delete with a full disk: %v", err)
			}
			n++
		}
	}
	if n != acked {
		t.Fatalf("published %d rows, acked %d", n, acked)
	}
}

// TestCloseWaitsForRun: Run's own work (here a slow look at the ballast file) ends
// before Close returns, so nothing writes in the queue's directory after Close.
func TestCloseWaitsForRun(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	inRun := make(chan struct{}, 1)
	o.testBallast = func() {
		select {
		case inRun <- struct{}{}:
		default:
		}
		time.Sleep(500 * time.Millisecond)
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Run(context.Background()) }()
	<-inRun
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("Close returned while Run was still at work")
	}
}
