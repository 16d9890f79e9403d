package queue

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// openChild opens the queue in envDir and says "O" once Open returned; a
// parent kills it while Open is still replaying the journal.
func openChild() int {
	o := crashOptions(os.Getenv(envDir))
	o.journalSize, _ = strconv.ParseInt(os.Getenv(envRound), 10, 64)
	q, err := Open(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	os.Stdout.WriteString("O\n")
	_ = q
	select {} // until killed: a clean Close would not be a crash
}

// recoveryState is what a crash left: Badger as of the last checkpoint and a
// journal full of the commits after it, with what those commits did.
type recoveryState struct {
	dir       string
	acked     []string // jobs acked after the checkpoint: must never come back
	ready     []string // jobs enqueued and not settled: must all be there
	published []string // outbox rows deleted after the checkpoint: must stay deleted
	pending   []string // outbox rows still held
}

// makeRecoveryState fills a queue with a large journal (enqueues from 8
// producers, then acks with results and deletions of published results),
// then leaves it as a power cut would: Badger holds only what the last
// checkpoint made durable, the journal every commit since.
func makeRecoveryState(t *testing.T, journalSize int64) recoveryState {
	t.Helper()
	st := recoveryState{dir: t.TempDir()}
	o := crashOptions(st.dir)
	o.journalSize = journalSize
	var checkpoint bytes.Buffer
	o.testCheckpoint = func(db *badger.DB) {
		checkpoint.Reset()
		if _, err := db.Backup(&checkpoint, 0); err != nil {
			t.Errorf("backup at checkpoint: %v", err)
		}
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				id := fmt.Sprintf("g%d-%03d", g, i)
				if _, err := q.Enqueue(ctx, NewJob{ID: id, Priority: i % 3, Image: []byte(id)}); err != nil {
					t.Errorf("enqueue %s: %v", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	acked := map[string]bool{}
	var l *Lease
	for i := 0; i < 1200; i++ {
		if l == nil {
			l = poll(t, q)
		}
		id := l.Job.ID
		// A result of about 1 KB, as a detector's JSON, makes a long replay.
		// Kept as the job's result too, as the daemon's worker does.
		next, err := q.AckNext(ctx, l, OutboxMsg{Topic: "results", Payload: fmt.Appendf(nil, "%s:%0900d", id, i), Keep: true})
		if err != nil {
			t.Fatal(err)
		}
		acked[id] = true
		st.acked = append(st.acked, id)
		l = next
		if i%2 == 1 { // publish the two oldest rows
			rows, err := q.OutboxPeek(2)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if err := q.OutboxDelete(r.Seq); err != nil {
					t.Fatal(err)
				}
				st.published = append(st.published, string(r.Payload[:bytes.IndexByte(r.Payload, ':')]))
			}
		}
	}
	for g := 0; g < 8; g++ {
		for i := 0; i < 250; i++ {
			if id := fmt.Sprintf("g%d-%03d", g, i); !acked[id] {
				st.ready = append(st.ready, id)
			}
		}
	}
	done := map[string]bool{}
	for _, p := range st.published {
		done[p] = true
	}
	for _, id := range st.acked {
		if !done[id] {
			st.pending = append(st.pending, id)
		}
	}
	recs := q.jrnl.seq
	crash(t, q)
	if recs < 1000 {
		t.Fatalf("only %d journal records since the last checkpoint: the state does not test a long replay", recs)
	}
	// Badger as of the last checkpoint only.
	if err := os.RemoveAll(filepath.Join(st.dir, "db")); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(o.badgerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Load(bytes.NewReader(checkpoint.Bytes()), 16); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return st
}

// check opens the queue in dir and compares it with what the crash state
// promised.
func (st recoveryState) check(t *testing.T, dir string, journalSize int64) {
	t.Helper()
	o := crashOptions(dir)
	o.journalSize = journalSize
	q := mustOpen(t, o)
	recs, err := q.allRecords()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range st.acked {
		if r, ok := recs[id]; ok {
			t.Errorf("acked job %s came back (state %d, attempt %d)", id, r.State, r.Attempt)
		}
	}
	// Every acked job is remembered as done; the newest ResultsKept keep their result,
	// the older ones were evicted in the commits that the replay brought back.
	kept := o.ResultsKept
	for i, id := range st.acked {
		info, err := q.Get(id)
		if err != nil || info.State != "done" {
			t.Errorf("acked job %s: %+v, %v; want done", id, info, err)
			continue
		}
		want := ""
		if i >= len(st.acked)-kept {
			want = fmt.Sprintf("%s:%0900d", id, i)
		}
		if string(info.Result) != want {
			t.Errorf("acked job %s (%d of %d): kept result %.20q, want %.20q", id, i, len(st.acked), info.Result, want)
		}
	}
	for _, id := range st.ready { // the job leased at the crash is released by Open
		if r, ok := recs[id]; !ok || r.State != stReady && r.State != stLeased {
			t.Errorf("job %s: %+v, want ready", id, r)
		}
	}
	if s := q.Stats(); s.ReadyTotal != len(st.ready) || s.Dead != 0 {
		t.Errorf("after recovery: %d ready, %d dead; want %d ready", s.ReadyTotal, s.Dead, len(st.ready))
	}
	rows, err := q.OutboxPeek(len(st.acked) + 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, string(r.Payload[:bytes.IndexByte(r.Payload, ':')]))
	}
	if !slices.Equal(got, st.pending) {
		t.Errorf("outbox after recovery: %d rows, want %d (published rows back or results lost)", len(got), len(st.pending))
	}
}

// copyTree copies the state directory a crash left, for one round.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startOpen starts a child that opens the queue in dir; it returns when the
// child said "O" (true) or was killed after killAfter (false).
func startOpen(t *testing.T, dir string, journalSize int64, killAfter time.Duration) (opened bool, took time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=open", envDir+"="+dir, envRound+"="+strconv.FormatInt(journalSize, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	said := make(chan bool, 1)
	go func() {
		b := make([]byte, 2)
		n, _ := out.Read(b)
		said <- n > 0 && b[0] == 'O'
	}()
	var timer <-chan time.Time
	if killAfter > 0 {
		timer = time.After(killAfter)
	}
	select {
	case opened = <-said:
		took = time.Since(start)
	case <-timer:
	case <-time.After(60 * time.Second):
		t.Errorf("child did not open within 60 s")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	return opened, took
}

// TestKillDuringRecovery: after a power cut that left a long journal, Open
// is killed with SIGKILL at random moments of its replay, twice in a row,
// before an Open completes. No acked job comes back, no published (deleted)
// outbox row returns, no result is lost, no queued job is lost.
func TestKillDuringRecovery(t *testing.T) {
	const journalSize = 16 << 20
	st := makeRecoveryState(t, journalSize)
	// How long a whole Open takes here, replay included.
	probe := t.TempDir()
	copyTree(t, st.dir, probe)
	ok, took := startOpen(t, probe, journalSize, 0)
	if !ok {
		t.Fatal("child could not open the crash state")
	}
	st.check(t, probe, journalSize)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	rounds, cut := 8, 0
	if testing.Short() {
		rounds = 3
	}
	for r := 0; r < rounds; r++ {
		dir := t.TempDir()
		copyTree(t, st.dir, dir)
		for k := 0; k < 2; k++ { // two crashes in a row
			after := time.Duration(rng.Int64N(int64(took))) + time.Millisecond
			if opened, _ := startOpen(t, dir, journalSize, after); !opened {
				cut++
			}
		}
		st.check(t, dir, journalSize)
		if t.Failed() {
			t.Fatalf("round %d", r)
		}
	}
	t.Logf("a whole Open took %s; %d of %d opens were killed before they finished", took, cut, 2*rounds)
	if cut < rounds {
		t.Fatalf("only %d of %d opens were killed before they finished: the test hardly hit the replay", cut, 2*rounds)
	}
}

// TestNothingVisibleBeforeDurable: a commit is applied to Badger only after
// its journal record is on disk. Checked two ways: while the record is being
// made durable (between the journal write and Badger's apply) nothing of the
// batch can be read, and a batch whose journal write fails never becomes
// readable at all, so a publisher can never send a result that a power cut
// would then undo.
func TestNothingVisibleBeforeDurable(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	var seen []int
	var q *Queue
	o.testJournaled = func() {
		// The committing caller holds q.mu: read Badger as OutboxPeek does.
		n := 0
		err := q.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOutbox}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		if err != nil {
			t.Errorf("read outbox: %v", err)
		}
		seen = append(seen, n)
	}
	q = mustOpen(t, o)
	ctx := context.Background()
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "t", Payload: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{0}) {
		t.Fatalf("rows readable when the record was durable but not yet applied: %v, want [0]", seen)
	}

	// A journal write that fails: the row must never be readable.
	q.mu.Lock()
	good := q.jrnl.f
	ro, err := os.Open(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	q.jrnl.f = ro
	q.mu.Unlock()
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "t", Payload: []byte("lost")}); err == nil {
		t.Fatal("append with a failing journal write: no error")
	}
	rows, err := q.OutboxPeek(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || string(rows[0].Payload) != "one" {
		t.Fatalf("after a failed journal write: %d rows readable, want only the first", len(rows))
	}
	q.mu.Lock()
	q.jrnl.f = good
	ro.Close()
	q.mu.Unlock()
	// The queue goes on, and after a crash neither the failed row nor anything
	// else wrong comes back.
	if err := q.OutboxAppend(ctx, OutboxMsg{Topic: "t", Payload: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	crash(t, q)
	o.testJournaled = nil
	q = mustOpen(t, o)
	rows, err = q.OutboxPeek(10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, string(r.Payload))
	}
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("outbox after crash: %q, want [one two]", got)
	}
}
