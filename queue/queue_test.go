package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"defaults", func(*Options) {}, ""},
		{"dir", func(o *Options) { o.Dir = "" }, "dir"},
		{"max_jobs", func(o *Options) { o.MaxJobs = -1 }, "max_jobs: -1"},
		{"max_bytes", func(o *Options) { o.MaxBytes = -5 }, "max_bytes: -5"},
		{"max_attempts", func(o *Options) { o.MaxAttempts = 0 }, "max_attempts: 0"},
		{"lease_timeout", func(o *Options) { o.LeaseTimeout = 0 }, "lease_timeout: 0s"},
		{"backoff_base", func(o *Options) { o.BackoffBase = -time.Second }, "backoff_base: -1s"},
		{"backoff_max", func(o *Options) { o.BackoffMax = time.Millisecond }, "backoff_max: 1ms"},
		{"dedupe_window", func(o *Options) { o.DedupeWindow = 0 }, "dedupe_window: 0s"},
		{"inline_max", func(o *Options) { o.InlineMax = 1 << 20 }, "inline_max: 1048576"},
		{"commit_window", func(o *Options) { o.CommitWindow = time.Minute }, "commit_window: 1m0s"},
		{"gc_interval", func(o *Options) { o.GCInterval = 0 }, "gc_interval: 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions("/x")
			tt.edit(&o)
			err := o.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate: got %v, want an error naming %q", err, tt.field)
			}
		})
	}
}

func TestNewJobInvalid(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	tests := []struct {
		name string
		job  NewJob
	}{
		{"empty id", NewJob{Image: []byte("x")}},
		{"control char", NewJob{ID: "a\nb", Image: []byte("x")}},
		{"long id", NewJob{ID: strings.Repeat("a", maxIDLen+1), Image: []byte("x")}},
		{"priority high", NewJob{ID: "a", Priority: 10, Image: []byte("x")}},
		{"priority low", NewJob{ID: "a", Priority: -1, Image: []byte("x")}},
		{"no image", NewJob{ID: "a"}},
		{"both images", NewJob{ID: "a", Image: []byte("x"), ImageFile: "/etc/hostname"}},
		{"big meta", NewJob{ID: "a", Image: []byte("x"), Meta: map[string]string{"k": strings.Repeat("v", maxMetaBytes)}}},
		{"image file missing", NewJob{ID: "a", ImageFile: "/nonexistent/file"}},
		{"image file dir", NewJob{ID: "a", ImageFile: t.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := q.Enqueue(context.Background(), tt.job)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Enqueue: got %v, want ErrInvalid", err)
			}
		})
	}
	if got := q.Stats().ReadyTotal; got != 0 {
		t.Fatalf("ReadyTotal: got %d, want 0", got)
	}
}

func TestOrderPriorityThenFIFO(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	in := []struct {
		id   string
		prio int
	}{{"a", 1}, {"b", 5}, {"c", 1}, {"d", 9}, {"e", 5}, {"f", 0}, {"g", 9}}
	for _, j := range in {
		mustEnqueue(t, q, NewJob{ID: j.id, Priority: j.prio})
	}
	var got []string
	for l := poll(t, q); l != nil; l = poll(t, q) {
		got = append(got, l.Job.ID)
		if err := q.Ack(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	if want := "d g b e a c f"; strings.Join(got, " ") != want {
		t.Fatalf("order: got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestDedupe(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.DedupeWindow = time.Hour
	q := mustOpen(t, o)
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	check := func(id, want string) {
		t.Helper()
		res, err := q.Enqueue(ctx, NewJob{ID: id, Image: []byte("other")})
		if err != nil {
			t.Fatal(err)
		}
		if want == "" {
			if res.Duplicate {
				t.Fatalf("Enqueue(%s): got duplicate %q, want new", id, res.State)
			}
			return
		}
		if !res.Duplicate || res.State != want {
			t.Fatalf("Enqueue(%s): got %+v, want duplicate in state %q", id, res, want)
		}
	}
	check("a", "ready")
	l := poll(t, q)
	check("a", "leased")
	if err := q.Ack(ctx, l); err != nil {
		t.Fatal(err)
	}
	check("a", "done")
	clk.Advance(59 * time.Minute)
	check("a", "done")
	clk.Advance(2 * time.Minute)
	check("a", "") // window passed: a new job
	mustEnqueue(t, q, NewJob{ID: "b"})
	l = poll(t, q) // a again (older)
	if err := q.Dead(ctx, l, errors.New("bad")); err != nil {
		t.Fatal(err)
	}
	check("a", "dead")
	if got, want := q.Stats().ReadyTotal, 1; got != want {
		t.Fatalf("ReadyTotal: got %d, want %d", got, want)
	}
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name     string
		maxJobs  int
		maxBytes int64
		limit    string
	}{
		{"jobs", 3, 0, "max_jobs"},
		{"bytes", 0, 25, "max_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, t.TempDir(), nil)
			o.MaxJobs, o.MaxBytes = tt.maxJobs, tt.maxBytes
			q := mustOpen(t, o)
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				mustEnqueue(t, q, NewJob{ID: fmt.Sprint(i), Image: make([]byte, 8)})
			}
			_, err := q.Enqueue(ctx, NewJob{ID: "x", Image: make([]byte, 8)})
			var fe *FullError
			if !errors.Is(err, ErrFull) || !errors.As(err, &fe) || fe.Limit != tt.limit {
				t.Fatalf("Enqueue: got %v, want FullError on %s", err, tt.limit)
			}
			if !q.Stats().Full {
				t.Fatalf("Stats.Full: got false, want true")
			}
			l := poll(t, q)
			if err := q.Ack(ctx, l); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Enqueue(ctx, NewJob{ID: "x", Image: make([]byte, 8)}); err != nil {
				t.Fatalf("Enqueue after ack: %v", err)
			}
		})
	}
}

func TestNackBackoffAndDead(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.MaxAttempts = 3
	o.BackoffBase = time.Second
	o.BackoffMax = 10 * time.Second
	q := mustOpen(t, o)
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	for attempt := 1; attempt <= 3; attempt++ {
		l := poll(t, q)
		if l == nil {
			t.Fatalf("attempt %d: no job ready", attempt)
		}
		if l.Job.Attempt != attempt {
			t.Fatalf("Attempt: got %d, want %d", l.Job.Attempt, attempt)
		}
		dead, err := q.Nack(ctx, l, fmt.Errorf("fail %d", attempt))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := dead, attempt == 3; got != want {
			t.Fatalf("dead after attempt %d: got %v, want %v", attempt, got, want)
		}
		if dead {
			break
		}
		backoff := time.Second << (attempt - 1)
		if st := q.Stats(); st.Delayed != 1 || st.ReadyTotal != 0 {
			t.Fatalf("after nack: got %+v, want one delayed", st)
		}
		clk.Advance(backoff - time.Millisecond)
		if l := poll(t, q); l != nil {
			t.Fatalf("job ready %v before its backoff %v", backoff-time.Millisecond, backoff)
		}
		clk.Advance(time.Millisecond)
	}
	dl, err := q.ListDead(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Job.ID != "a" || !strings.Contains(dl[0].Reason, "fail 3") {
		t.Fatalf("ListDead: got %+v", dl)
	}
	n, err := q.RetryDead(ctx, "a", "unknown")
	if err != nil || n != 1 {
		t.Fatalf("RetryDead: got %d, %v, want 1", n, err)
	}
	l := poll(t, q)
	if l == nil || l.Job.Attempt != 1 {
		t.Fatalf("after RetryDead: got %+v, want attempt 1", l)
	}
	if err := q.Dead(ctx, l, errors.New("permanent")); err != nil {
		t.Fatal(err)
	}
	if n, err := q.PurgeDead(); n != 0 || err != nil {
		t.Fatalf("PurgeDead with no ids: %d, %v; want nothing deleted", n, err)
	}
	n, err = q.PurgeAllDead()
	if err != nil || n != 1 {
		t.Fatalf("PurgeDead: got %d, %v, want 1", n, err)
	}
	if st := q.Stats(); st.Dead != 0 || st.Bytes != 0 {
		t.Fatalf("after purge: got %+v", st)
	}
}

func TestBackoffCapped(t *testing.T) {
	q := &Queue{opts: Options{BackoffBase: time.Second, BackoffMax: 5 * time.Second}, jitter: func() float64 { return 1.2 }}
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{{1, 1200 * time.Millisecond}, {2, 2400 * time.Millisecond}, {3, 4800 * time.Millisecond}, {4, 6 * time.Second}, {60, 6 * time.Second}} {
		if got := q.backoff(tt.attempt); got != tt.want {
			t.Errorf("backoff(%d): got %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestExpired(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.OnExpired = func(j Job) []OutboxMsg {
		return []OutboxMsg{{Topic: "events", Payload: []byte("expired " + j.ID)}}
	}
	q := mustOpen(t, o)
	mustEnqueue(t, q, NewJob{ID: "old", Priority: 5, Deadline: clk.Now().Add(time.Second)})
	mustEnqueue(t, q, NewJob{ID: "new", Priority: 1})
	clk.Advance(2 * time.Second)
	l := poll(t, q)
	if l == nil || l.Job.ID != "new" {
		t.Fatalf("Lease: got %+v, want job new", l)
	}
	st := q.Stats()
	if st.Expired != 1 || st.Dead != 1 || st.Outbox != 1 {
		t.Fatalf("Stats: got %+v, want 1 expired, 1 dead, 1 outbox", st)
	}
	rows, err := q.OutboxPeek(10)
	if err != nil || len(rows) != 1 || string(rows[0].Payload) != "expired old" {
		t.Fatalf("OutboxPeek: got %+v, %v", rows, err)
	}
	dl, _ := q.ListDead(0)
	if len(dl) != 1 || dl[0].Reason != "expired" {
		t.Fatalf("ListDead: got %+v", dl)
	}
}

func TestLeaseTimeoutReturnsJob(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.LeaseTimeout = time.Minute
	q := mustOpen(t, o)
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	mustEnqueue(t, q, NewJob{ID: "b"})
	l := poll(t, q)
	if l.Job.ID != "a" {
		t.Fatalf("got %s, want a", l.Job.ID)
	}
	clk.Advance(2 * time.Minute)
	if err := q.Ack(ctx, l); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("Ack after lease timeout: got %v, want ErrNotLeased", err)
	}
	l2 := poll(t, q)
	if l2.Job.ID != "a" || l2.Job.Attempt != 2 || !strings.Contains(l2.Job.LastError, "interrupted") {
		t.Fatalf("after timeout: got %+v, want a again, attempt 2", l2.Job)
	}
	if err := q.Ack(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, l2); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("second Ack: got %v, want ErrNotLeased", err)
	}
}

func TestLeaseBlocksUntilEnqueue(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	got := make(chan string, 1)
	go func() {
		l, err := q.Lease(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- l.Job.ID
	}()
	mustEnqueue(t, q, NewJob{ID: "late"})
	if id := <-got; id != "late" {
		t.Fatalf("Lease: got %q, want late", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Lease(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lease on empty queue: got %v, want deadline exceeded", err)
	}
	done := make(chan error, 1)
	go func() { _, err := q.Lease(context.Background()); done <- err }()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Lease during Close: got %v, want ErrClosed", err)
	}
}

func TestReopenReleasesLeasesInPlace(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		mustEnqueue(t, q, NewJob{ID: id, Priority: 3})
	}
	if l := poll(t, q); l.Job.ID != "a" {
		t.Fatalf("got %s, want a", l.Job.ID)
	}
	if l := poll(t, q); l.Job.ID != "b" {
		t.Fatalf("got %s, want b", l.Job.ID)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	q = mustOpen(t, o)
	if st := q.Stats(); st.ReadyTotal != 3 || st.Leased != 0 {
		t.Fatalf("after reopen: got %+v, want 3 ready", st)
	}
	var got []string
	for l := poll(t, q); l != nil; l = poll(t, q) {
		got = append(got, fmt.Sprintf("%s%d", l.Job.ID, l.Job.Attempt))
	}
	if want := "a2 b2 c1"; strings.Join(got, " ") != want {
		t.Fatalf("after reopen: got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestImages(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	o.InlineMax = 16
	q := mustOpen(t, o)
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789"), 100)
	src := filepath.Join(t.TempDir(), "cam.jpg")
	if err := os.WriteFile(src, big[:500], 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "s.jpg")
	if err := os.WriteFile(small, []byte("tiny"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		job      NewJob
		want     []byte
		wantFile bool
	}{
		{NewJob{ID: "inline", Image: []byte("small")}, []byte("small"), false},
		{NewJob{ID: "blob", Image: big}, big, true},
		{NewJob{ID: "adopt", ImageFile: src}, big[:500], true},
		{NewJob{ID: "adopt-small", ImageFile: small}, []byte("tiny"), false},
	}
	for _, tt := range tests {
		mustEnqueue(t, q, tt.job)
	}
	os.Remove(src) // the caller deletes its original after Enqueue
	for _, tt := range tests {
		l := poll(t, q)
		if l.Job.ID != tt.job.ID {
			t.Fatalf("got %s, want %s", l.Job.ID, tt.job.ID)
		}
		got, err := q.Image(l)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Fatalf("Image(%s): got %d bytes, %v, want %d bytes", tt.job.ID, len(got), err, len(tt.want))
		}
		if l.Job.ImageSize != int64(len(tt.want)) {
			t.Fatalf("ImageSize: got %d, want %d", l.Job.ImageSize, len(tt.want))
		}
		path, ok := q.ImagePath(l)
		if ok != tt.wantFile {
			t.Fatalf("ImagePath(%s): got %v, want %v", tt.job.ID, ok, tt.wantFile)
		}
		if ok {
			if err := os.WriteFile(path, []byte("tampered"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Image(l); !errors.Is(err, ErrImageCorrupt) {
				t.Fatalf("Image of tampered blob: got %v, want ErrImageCorrupt", err)
			}
		}
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// Blob files are removed after the commit, possibly on another goroutine.
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		ents, _ := os.ReadDir(filepath.Join(dir, "blobs"))
		if len(ents) == 0 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("blob dir after acks: got %d files, want 0", len(ents))
		}
	}
}

func TestOrphanBlobsRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	o.InlineMax = 0
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, q, NewJob{ID: "keep"})
	q.Close()
	blobs := filepath.Join(dir, "blobs")
	for _, name := range []string{"tmp-0123", strings.Repeat("ab", 16), "notours.txt"} {
		if err := os.WriteFile(filepath.Join(blobs, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q = mustOpen(t, o)
	ents, _ := os.ReadDir(blobs)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || !strings.Contains(strings.Join(names, " "), "notours.txt") {
		t.Fatalf("blob dir: got %v, want the kept blob and notours.txt", names)
	}
	l := poll(t, q)
	if _, err := q.Image(l); err != nil {
		t.Fatalf("Image: %v", err)
	}
}

func TestDamagedRecordSetAside(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		mustEnqueue(t, q, NewJob{ID: id})
	}
	if err := q.OutboxAppend(context.Background(), OutboxMsg{Topic: "t", Payload: []byte("1")}, OutboxMsg{Topic: "t", Payload: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	// Damage job b and the first outbox row directly in Badger.
	db, err := badger.Open(o.badgerOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(idKey(pfxJob, "b"), []byte("garbage")); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOutbox}})
		it.Rewind()
		k := it.Item().KeyCopy(nil)
		it.Close()
		return txn.Set(k, []byte{1, 2, 3, 4, 5, 6})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	if st := q.Stats(); st.Damaged != 1 || st.ReadyTotal != 2 {
		t.Fatalf("after reopen: got %+v, want 1 damaged, 2 ready", st)
	}
	rows, err := q.OutboxPeek(10)
	if err != nil || len(rows) != 1 || string(rows[0].Payload) != "2" {
		t.Fatalf("OutboxPeek: got %+v, %v, want row 2 only", rows, err)
	}
	if st := q.Stats(); st.Damaged != 2 || st.Outbox != 1 {
		t.Fatalf("after peek: got %+v, want 2 damaged, 1 outbox", st)
	}
	var got []string
	for l := poll(t, q); l != nil; l = poll(t, q) {
		got = append(got, l.Job.ID)
	}
	if strings.Join(got, " ") != "a c" {
		t.Fatalf("leased: got %v, want a c", got)
	}
}

func TestOutbox(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	o := testOptions(t, dir, clk)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	l := poll(t, q)
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "events", Payload: []byte("started")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.OutboxNotify():
	default:
		t.Fatalf("OutboxNotify not signalled")
	}
	if err := q.Ack(ctx, l, OutboxMsg{Topic: "results/cam", Payload: []byte("r1")}, OutboxMsg{Topic: "events", Payload: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	q.Close()
	q = mustOpen(t, o)
	st := q.Stats()
	if st.Outbox != 3 || st.OutboxOldest != time.Minute {
		t.Fatalf("Stats after reopen: got outbox %d oldest %v, want 3 and 1m", st.Outbox, st.OutboxOldest)
	}
	rows, err := q.OutboxPeek(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || string(rows[0].Payload) != "started" || string(rows[1].Payload) != "r1" || rows[0].Seq >= rows[1].Seq {
		t.Fatalf("OutboxPeek(2): got %+v", rows)
	}
	if err := q.OutboxDelete(rows[1].Seq, 999999); err != nil {
		t.Fatal(err)
	}
	rows2, _ := q.OutboxPeek(10)
	if len(rows2) != 2 || string(rows2[0].Payload) != "started" || string(rows2[1].Payload) != "done" {
		t.Fatalf("after deleting the middle row: got %+v", rows2)
	}
	if err := q.OutboxDelete(rows2[0].Seq, rows2[1].Seq); err != nil {
		t.Fatal(err)
	}
	if rows, _ := q.OutboxPeek(10); len(rows) != 0 || q.Stats().Outbox != 0 {
		t.Fatalf("after deleting all: got %d rows", len(rows))
	}
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "", Payload: nil}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty topic: got %v, want ErrInvalid", err)
	}
}

func TestClosed(t *testing.T) {
	q, err := Open(testOptions(t, t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, NewJob{ID: "a", Image: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue: got %v, want ErrClosed", err)
	}
	if _, err := q.Lease(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Lease: got %v, want ErrClosed", err)
	}
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "t"}); !errors.Is(err, ErrClosed) {
		t.Errorf("OutboxAppend: got %v, want ErrClosed", err)
	}
	if err := q.Run(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Run: got %v, want ErrClosed", err)
	}
}

func TestOpenFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	q := mustOpen(t, testOptions(t, dir, nil))
	_ = q
	// A second Open of the same dir fails (Badger's directory lock) and its
	// partial queue may still be closed.
	q2, err := Open(testOptions(t, dir, nil))
	if err == nil {
		q2.Close()
		t.Fatalf("second Open of %s: got nil error", dir)
	}
	if _, err := Open(Options{}); err == nil || !strings.Contains(err.Error(), "dir") {
		t.Fatalf("Open with empty options: got %v, want an error naming dir", err)
	}
}

func TestOpenAfterInterruptedLogDelete(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, q, NewJob{ID: "a"})
	q.Close()
	// Badger deletes a log file by truncating it, then unlinking it; a kill
	// in between leaves empty files like these.
	for _, name := range []string{"00007.mem", "000009.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, "db", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q = mustOpen(t, o)
	if l := poll(t, q); l == nil || l.Job.ID != "a" {
		t.Fatalf("after reopen: got %+v, want job a", l)
	}
}

func TestAckNext(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		mustEnqueue(t, q, NewJob{ID: id})
	}
	l := poll(t, q)
	var got []string
	for l != nil {
		got = append(got, l.Job.ID)
		next, err := q.AckNext(ctx, l, OutboxMsg{Topic: "results", Payload: []byte(l.Job.ID)})
		if err != nil {
			t.Fatal(err)
		}
		l = next
	}
	if strings.Join(got, " ") != "a b c" {
		t.Fatalf("AckNext chain: got %v, want a b c", got)
	}
	if st := q.Stats(); st.Outbox != 3 || st.ReadyTotal != 0 || st.Leased != 0 {
		t.Fatalf("Stats: got %+v", st)
	}
	if _, err := q.AckNext(ctx, &Lease{Job: Job{ID: "a"}}); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("AckNext of a settled job: got %v, want ErrNotLeased", err)
	}
}

func TestConcurrentProducersWorkerPublisher(t *testing.T) {
	o := testOptions(t, t.TempDir(), nil)
	o.CommitWindow = 2 * time.Millisecond
	o.InlineMax = 100
	q := mustOpen(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	const producers, perProducer = 8, 150
	total := producers * perProducer
	errc := make(chan error, producers+2)
	for p := 0; p < producers; p++ {
		go func() {
			for i := 0; i < perProducer; i++ {
				id := fmt.Sprintf("p%d-%d", p, i)
				img := bytes.Repeat([]byte{byte(i)}, 50+i) // inline and blob files
				if _, err := q.Enqueue(ctx, NewJob{ID: id, Priority: i % 10, Image: img}); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	published := make(map[string]int)
	pubDone := make(chan struct{})
	go func() { // publisher
		defer close(pubDone)
		for n := 0; n < total; {
			select {
			case <-q.OutboxNotify():
			case <-time.After(5 * time.Millisecond):
			}
			rows, err := q.OutboxPeek(50)
			if err != nil {
				errc <- err
				return
			}
			var seqs []uint64
			for _, r := range rows {
				published[string(r.Payload)]++
				seqs = append(seqs, r.Seq)
			}
			if err := q.OutboxDelete(seqs...); err != nil {
				errc <- err
				return
			}
			n += len(rows)
		}
	}()
	var l *Lease
	var err error
	for done := 0; done < total; done++ { // the worker
		if l == nil {
			if l, err = q.Lease(ctx); err != nil {
				t.Fatal(err)
			}
		}
		img, err := q.Image(l)
		if err != nil || int64(len(img)) != l.Job.ImageSize {
			t.Fatalf("Image(%s): %d bytes, %v", l.Job.ID, len(img), err)
		}
		if l, err = q.AckNext(ctx, l, OutboxMsg{Topic: "results", Payload: []byte(l.Job.ID)}); err != nil {
			t.Fatal(err)
		}
	}
	for p := 0; p < producers; p++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	<-pubDone
	if len(published) != total {
		t.Fatalf("published: got %d distinct results, want %d", len(published), total)
	}
	for id, n := range published {
		if n != 1 {
			t.Fatalf("result of %s published %d times", id, n)
		}
	}
	if st := q.Stats(); st.ReadyTotal != 0 || st.Leased != 0 || st.Outbox != 0 || st.Bytes != 0 {
		t.Fatalf("Stats at the end: got %+v", st)
	}
}

func TestRunPromotesAndStops(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.GCInterval = time.Millisecond
	o.LeaseTimeout = time.Minute
	q := mustOpen(t, o)
	mustEnqueue(t, q, NewJob{ID: "a"})
	if l := poll(t, q); l == nil {
		t.Fatal("no job")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	clk.Advance(2 * time.Minute)
	// Only Run's ticker looks at the lease now (Lease and Stats would too).
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		q.mu.Lock()
		leased, ready := len(q.st.leases), len(q.st.ready[0])
		q.mu.Unlock()
		if leased == 0 && ready == 1 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Run did not return the expired lease: %d leased, %d ready", leased, ready)
		}
	}
	if l := poll(t, q); l == nil || l.Job.ID != "a" || l.Job.Attempt != 2 {
		t.Fatalf("after lease expiry: got %+v", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: got %v, want nil after cancel", err)
	}
}

func TestFailedCommitReloadsState(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	// An enqueue whose commit fails (as on a full disk): the batch's changes
	// to memory must be undone by reloading from disk.
	rec := &record{State: stReady, Priority: 5, Inline: true, ImageSize: 1}
	_, b, err := q.enqueue("x", rec, []byte("1"))
	if err != nil || b == nil {
		t.Fatalf("enqueue: %v, %v", b, err)
	}
	q.mu.Lock()
	b.failed = errors.New("injected write failure")
	q.mu.Unlock()
	if err := q.await(b); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("await: got %v, want the injected failure", err)
	}
	if st := q.Stats(); st.ReadyTotal != 1 || st.Ready[5] != 0 {
		t.Fatalf("Stats after failed commit: got %+v, want only job a", st)
	}
	if res, err := q.Enqueue(ctx, NewJob{ID: "x", Image: []byte("1")}); err != nil || res.Duplicate {
		t.Fatalf("Enqueue(x) after failed commit: %+v, %v", res, err)
	}
	var got []string
	for l := poll(t, q); l != nil; l = poll(t, q) {
		got = append(got, l.Job.ID)
	}
	if strings.Join(got, " ") != "a x" {
		t.Fatalf("leased: got %v, want a x", got)
	}
}

// TestOnExhausted: a job whose last attempt was interrupted (its lease
// expired) is dead-lettered at the next Lease with the rows OnExhausted
// gives, in the same commit.
func TestOnExhausted(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.MaxAttempts = 1
	var got []string
	o.OnExhausted = func(l *Lease, reason string) []OutboxMsg {
		j := l.Job
		got = append(got, j.ID+": "+reason)
		return []OutboxMsg{{Topic: "events", Payload: []byte("dead " + j.ID)}}
	}
	q := mustOpen(t, o)
	mustEnqueue(t, q, NewJob{ID: "a"})
	if l := poll(t, q); l == nil {
		t.Fatal("no lease")
	}
	clk.Advance(o.LeaseTimeout + time.Second) // the attempt never settles
	if l := poll(t, q); l != nil {
		t.Fatalf("leased %s again after its last attempt", l.Job.ID)
	}
	if len(got) != 1 || !strings.Contains(got[0], "attempts exhausted (1)") {
		t.Fatalf("OnExhausted calls: %q", got)
	}
	rows, err := q.OutboxPeek(10)
	if err != nil || len(rows) != 1 || string(rows[0].Payload) != "dead a" {
		t.Fatalf("outbox: %v %v", rows, err)
	}
	if st := q.Stats(); st.Dead != 1 {
		t.Fatalf("stats: %+v, want 1 dead", st)
	}
}

// TestCloseWaitsForFollowUps: the image files of jobs settled in a batch are
// removed on another goroutine once the batch commits (runLater); Close
// returns only after those removals, so no goroutine of the queue outlives it.
func TestCloseWaitsForFollowUps(t *testing.T) {
	o := testOptions(t, t.TempDir(), nil)
	o.InlineMax = 8
	var later atomic.Int32
	o.testLater = func() {
		later.Add(1)
		time.Sleep(time.Second) // longer than Close takes by itself
	}
	o.CommitWindow = 500 * time.Millisecond // acks pile up in one batch ...
	q := mustOpen(t, o)
	ctx := context.Background()
	const n = 40
	for i := 0; i < n; i++ {
		mustEnqueue(t, q, NewJob{ID: fmt.Sprintf("j%d", i), Image: bytes.Repeat([]byte{1}, 100)})
	}
	var leases []*Lease
	for i := 0; i < n; i++ {
		leases = append(leases, poll(t, q))
	}
	var wg sync.WaitGroup
	// "Someone is arriving": the batch's leader waits for the others.
	q.enter()
	for _, l := range leases { // concurrent acks: batches fill up and commit from inside join
		wg.Add(1)
		go func() {
			defer wg.Done()
			// ... until one with a large result does not fit and commits it from inside join.
			if err := q.Ack(ctx, l, OutboxMsg{Topic: "r", Payload: make([]byte, 60<<10)}); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them join (the check below proves they did)
	q.leave()
	wg.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if later.Load() == 0 {
		t.Fatal("no batch was committed from inside join: the test did not test runLater")
	}
	left, _ := filepath.Glob(filepath.Join(o.Dir, "blobs", "*"))
	if len(left) != 0 {
		t.Fatalf("%d image files of acked jobs still there after Close", len(left))
	}
}

// TestRelease: a released lease puts the job back in its place with its attempt
// not counted.
func TestRelease(t *testing.T) {
	q := mustOpen(t, testOptions(t, t.TempDir(), nil))
	ctx := context.Background()
	mustEnqueue(t, q, NewJob{ID: "a"})
	mustEnqueue(t, q, NewJob{ID: "b"})
	l := poll(t, q)
	if err := q.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := q.Release(ctx, l); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("second release: %v, want ErrNotLeased", err)
	}
	l = poll(t, q)
	if l.Job.ID != "a" || l.Job.Attempt != 1 {
		t.Fatalf("after release: %s attempt %d, want a attempt 1", l.Job.ID, l.Job.Attempt)
	}
}

// TestReadyAbove: only a ready job of a higher priority counts; a leased one, one of the
// same priority, and a retry still in its backoff do not, until the backoff ends.
func TestReadyAbove(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(t, t.TempDir(), clk)
	o.BackoffBase = time.Second
	q := mustOpen(t, o)
	check := func(stage string, want map[int]bool) {
		t.Helper()
		for p, w := range want {
			if got := q.ReadyAbove(p); got != w {
				t.Fatalf("%s: ReadyAbove(%d) = %v, want %v", stage, p, got, w)
			}
		}
	}
	mustEnqueue(t, q, NewJob{ID: "a", Priority: 5})
	l := poll(t, q)
	check("a leased", map[int]bool{MinPriority - 1: false, 4: false, 5: false, MaxPriority: false})
	if _, err := q.Nack(context.Background(), l, errors.New("again")); err != nil {
		t.Fatal(err)
	}
	check("a in its backoff", map[int]bool{4: false})
	clk.Advance(2 * time.Second)
	mustEnqueue(t, q, NewJob{ID: "b", Priority: 5})
	check("a and b ready", map[int]bool{3: true, 4: true, 5: false, MaxPriority: false})
	q.Close()
	check("closed", map[int]bool{0: false})
}
