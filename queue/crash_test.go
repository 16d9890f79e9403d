package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The crash tests re-execute the test binary as a child process that drives
// a queue and reports every operation on stdout after the call returned; the
// parent kills it with SIGKILL at a random moment and checks the store.
const (
	envChild = "INFERQ_QUEUE_CHILD"
	envDir   = "INFERQ_QUEUE_DIR"
	envRound = "INFERQ_QUEUE_ROUND"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		code := m.Run()
		if bigDir != "" {
			os.RemoveAll(bigDir)
		}
		os.Exit(code)
	case "rss-fill", "rss-open":
		os.Exit(rssChildMain(os.Getenv(envChild)))
	case "crash":
		os.Exit(crashChild())
	case "poison":
		os.Exit(poisonChild())
	case "open":
		os.Exit(openChild())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

func crashOptions(dir string) Options {
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	o.MaxAttempts = 1000
	o.BackoffBase = time.Millisecond
	o.BackoffMax = 5 * time.Millisecond
	o.InlineMax = 64
	return o
}

// imageFor is the image bytes a child enqueues for id: 10..209 bytes, so
// some are inline and some blob files.
func imageFor(id string) []byte {
	h := fnv.New32a()
	h.Write([]byte(id))
	n := 10 + int(h.Sum32()%200)
	return bytes.Repeat([]byte(id), n/len(id)+1)[:n]
}

// reporter writes one line per completed operation; each line is one write
// on the pipe, so a kill never leaves half a line.
type reporter struct{ mu sync.Mutex }

func (r *reporter) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
}

func crashChild() int {
	dir, round := os.Getenv(envDir), os.Getenv(envRound)
	q, err := Open(crashOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	rep := &reporter{}
	rep.say("R")
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-p%d-%d", round, g, i)
				res, err := q.Enqueue(ctx, NewJob{ID: id, Priority: i % 3, Image: imageFor(id), Meta: map[string]string{"g": strconv.Itoa(g)}})
				if err != nil || res.Duplicate {
					rep.say("X enqueue %s: %v %+v", id, err, res)
					return
				}
				rep.say("E %s", id)
				time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
			}
		}()
	}
	wg.Add(1)
	go func() { // publisher
		defer wg.Done()
		for {
			select {
			case <-q.OutboxNotify():
			case <-time.After(5 * time.Millisecond):
			}
			rows, err := q.OutboxPeek(16)
			if err != nil {
				rep.say("X peek: %v", err)
				return
			}
			if len(rows) == 0 || rand.IntN(3) == 0 {
				continue // let some rows pile up
			}
			var seqs []uint64
			for _, r := range rows {
				seqs = append(seqs, r.Seq)
			}
			for _, r := range rows { // published; deleted next
				rep.say("P %s", r.Payload)
			}
			if err := q.OutboxDelete(seqs...); err != nil {
				rep.say("X delete: %v", err)
				return
			}
		}
	}()
	for { // the worker
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		l, err := q.Lease(lctx)
		cancel()
		if err != nil {
			rep.say("X lease: %v", err)
			return 1
		}
		rep.say("L %s %d", l.Job.ID, l.Job.Attempt)
		img, err := q.Image(l)
		if err != nil || !bytes.Equal(img, imageFor(l.Job.ID)) {
			rep.say("X image %s: %v", l.Job.ID, err)
			return 1
		}
		switch n := rand.IntN(20); {
		case n < 15:
			if err := q.Ack(ctx, l, OutboxMsg{Topic: "results/" + l.Job.Source, Payload: []byte(l.Job.ID)}); err != nil {
				rep.say("X ack: %v", err)
				return 1
			}
			rep.say("A %s", l.Job.ID)
		case n < 19:
			if _, err := q.Nack(ctx, l, errors.New("transient")); err != nil {
				rep.say("X nack: %v", err)
				return 1
			}
			rep.say("N %s", l.Job.ID)
		default:
			if err := q.Dead(ctx, l, errors.New("permanent")); err != nil {
				rep.say("X dead: %v", err)
				return 1
			}
			rep.say("D %s", l.Job.ID)
		}
	}
}

// allRecords returns every job record on disk by id.
func (q *Queue) allRecords() (map[string]*record, error) {
	recs := map[string]*record{}
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfxJob}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			id, _ := parseIDKey(pfxJob, it.Item().Key())
			recs[id] = r
		}
		return nil
	})
	return recs, err
}

// runChild starts the test binary as a child, kills it with SIGKILL after
// killAfter (counted from its "R" line when fromReady) and returns its lines.
func runChild(t *testing.T, mode, dir string, round int, killAfter time.Duration, fromReady bool) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir, envRound+"="+strconv.Itoa(round))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	var timer <-chan time.Time
	if !fromReady && killAfter > 0 {
		timer = time.After(killAfter)
	}
	for open := true; open; {
		select {
		case l, ok := <-lines:
			if !ok {
				open = false
				break
			}
			got = append(got, l)
			if l == "R" && fromReady && killAfter > 0 {
				timer = time.After(killAfter)
			}
		case <-timer:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			timer = nil
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			t.Fatalf("child %s round %d: no output for 20s", mode, round)
		}
	}
	_ = cmd.Wait()
	return got
}

func TestCrashKill9(t *testing.T) {
	dir := t.TempDir()
	rounds := 16
	if testing.Short() {
		rounds = 5
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	enqueued := map[string]bool{}
	acked := map[string]bool{}     // Ack returned
	published := map[string]bool{} // outbox row published (then deleted)
	history := map[string][]string{}
	leases := map[string]int{} // leases reported per job
	var ackOrder []string      // ids in the order their Ack returned
	totalOps := 0
	for round := 0; round < rounds; round++ {
		fromReady := rng.IntN(5) != 0
		kill := time.Duration(20+rng.IntN(300)) * time.Millisecond
		lines := runChild(t, "crash", dir, round, kill, fromReady)
		totalOps += len(lines)
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 1 {
				history[f[1]] = append(history[f[1]], fmt.Sprintf("round %d: %s", round, l))
			}
			switch f[0] {
			case "R":
			case "X":
				t.Fatalf("round %d: child reported %q", round, l)
			case "E":
				enqueued[f[1]] = true
			case "L":
				leases[f[1]]++
			case "A":
				acked[f[1]] = true
				ackOrder = append(ackOrder, f[1])
			case "P": // a row may be published again when the kill came before its delete
				published[f[1]] = true
			}
		}

		q, err := Open(crashOptions(dir))
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		recs, err := q.allRecords()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		rows, err := q.OutboxPeek(1 << 30)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		inOutbox := map[string]uint64{}
		for _, r := range rows {
			id := string(r.Payload)
			if _, dup := inOutbox[id]; dup {
				t.Fatalf("round %d: job %s has two results", round, id)
			}
			inOutbox[id] = r.Seq
			if _, held := recs[id]; held {
				t.Fatalf("round %d: job %s has a result and is still queued", round, id)
			}
		}
		for id := range enqueued {
			_, held := recs[id]
			_, result := inOutbox[id]
			if !held && !result && !published[id] {
				t.Fatalf("round %d: job %s lost: enqueued, not held, no result; history %q", round, id, history[id])
			}
		}
		for id := range acked {
			if _, ok := inOutbox[id]; !ok && !published[id] {
				t.Fatalf("round %d: outbox row of acked job %s lost", round, id)
			}
		}
		for id, r := range recs {
			if n := leases[id]; int(r.Attempt) < n || int(r.Attempt) > n+1 {
				t.Fatalf("round %d: job %s: attempt %d on disk, %d leases reported", round, id, r.Attempt, n)
			}
			l := &Lease{Job: Job{ID: id}, rec: r}
			img, err := q.Image(l)
			if err != nil || !bytes.Equal(img, imageFor(id)) {
				t.Fatalf("round %d: job %s image: %v", round, id, err)
			}
		}
		// Results keep the order of their acks.
		var last uint64
		for _, id := range ackOrder {
			if s, ok := inOutbox[id]; ok {
				if s < last {
					t.Fatalf("round %d: outbox out of ack order at %s", round, id)
				}
				last = s
			}
		}
		if st := q.Stats(); st.Damaged != 0 {
			t.Fatalf("round %d: %d damaged records", round, st.Damaged)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(enqueued) == 0 || len(acked) == 0 {
		t.Fatalf("children did no work: %d enqueued, %d acked", len(enqueued), len(acked))
	}
	t.Logf("%d rounds, %d operations reported: %d enqueued, %d acked, %d results published",
		rounds, totalOps, len(enqueued), len(acked), len(published))
}

func poisonChild() int {
	o := crashOptions(os.Getenv(envDir))
	o.MaxAttempts = 3
	q, err := Open(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		ents, _ := os.ReadDir(o.Dir + "/db")
		for _, e := range ents {
			fi, _ := e.Info()
			fmt.Fprintln(os.Stderr, e.Name(), fi.Size())
		}
		return 1
	}
	rep := &reporter{}
	if q.Stats().ReadyTotal == 0 {
		rep.say("EMPTY")
		q.Close()
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := q.Lease(ctx)
	if err != nil {
		rep.say("X lease: %v", err)
		return 1
	}
	rep.say("L %s %d", l.Job.ID, l.Job.Attempt)
	if l.Job.ID == "poison" {
		syscall.Kill(os.Getpid(), syscall.SIGKILL) // the engine takes the process down
	}
	q.Ack(context.Background(), l)
	q.Close()
	return 0
}

func TestPoisonJobDeadLetters(t *testing.T) {
	dir := t.TempDir()
	o := crashOptions(dir)
	o.MaxAttempts = 3
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, q, NewJob{ID: "poison", Priority: 9})
	mustEnqueue(t, q, NewJob{ID: "fine", Priority: 1})
	q.Close()
	var got []string
	for run := 0; run < 6; run++ {
		lines := runChild(t, "poison", dir, run, 0, false)
		got = append(got, strings.Join(lines, ","))
	}
	want := "L poison 1|L poison 2|L poison 3|L fine 1|EMPTY|EMPTY"
	if strings.Join(got, "|") != want {
		t.Fatalf("child runs: got %q, want %q", strings.Join(got, "|"), want)
	}
	q = mustOpen(t, o)
	dl, err := q.ListDead(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Job.ID != "poison" || dl[0].Job.Attempt != 3 || !strings.Contains(dl[0].Reason, "attempts exhausted") {
		t.Fatalf("dead set: got %+v, want poison after 3 attempts", dl)
	}
}
