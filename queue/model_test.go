package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// model is a plain in-memory implementation of the queue's rules, driven with
// the same operations as the real queue.
type model struct {
	maxAttempts int
	base, cap   time.Duration
	leaseTO     time.Duration
	window      time.Duration
	seq         int
	jobs        map[string]*mjob
	done        map[string]time.Time
	outbox      []string
}

type mjob struct {
	id       string
	prio     int
	seq      int
	state    string // ready, delayed, leased, dead
	due      time.Time
	leaseEnd time.Time
	attempt  int
	deadline time.Time
}

func (m *model) promote(now time.Time) {
	for _, j := range m.jobs {
		if j.state == "delayed" && !j.due.After(now) || j.state == "leased" && !j.leaseEnd.After(now) {
			j.state = "ready"
		}
	}
}

func (m *model) enqueue(id string, prio int, deadline, now time.Time) (dup string) {
	m.promote(now)
	if j, ok := m.jobs[id]; ok {
		return j.state
	}
	if at, ok := m.done[id]; ok && now.Sub(at) < m.window {
		return "done"
	}
	m.seq++
	m.jobs[id] = &mjob{id: id, prio: prio, seq: m.seq, state: "ready", deadline: deadline}
	return ""
}

func (m *model) lease(now time.Time) *mjob {
	m.promote(now)
	for {
		var best *mjob
		for _, j := range m.jobs {
			if j.state != "ready" {
				continue
			}
			if best == nil || j.prio > best.prio || j.prio == best.prio && j.seq < best.seq {
				best = j
			}
		}
		if best == nil {
			return nil
		}
		if !best.deadline.IsZero() && now.After(best.deadline) {
			best.state = "dead"
			m.outbox = append(m.outbox, "expired "+best.id)
			continue
		}
		if best.attempt >= m.maxAttempts {
			best.state = "dead"
			continue
		}
		best.attempt++
		best.state = "leased"
		best.leaseEnd = now.Add(m.leaseTO)
		return best
	}
}

func (m *model) counts(now time.Time) (ready, leased, delayed, dead int) {
	m.promote(now)
	for _, j := range m.jobs {
		switch j.state {
		case "ready":
			ready++
		case "leased":
			leased++
		case "delayed":
			delayed++
		case "dead":
			dead++
		}
	}
	return
}

func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, 400, false) })
	}
}

// TestModelPowerCut is TestModel where half of the restarts are power cuts:
// Badger keeps only what the last checkpoint made durable plus a random
// subset of the commits after it (its logs are not synced), and the journal
// must bring back every operation that returned. A small journal makes
// checkpoints happen in the middle of the run too.
func TestModelPowerCut(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, 600, true) })
	}
}

func runModel(t *testing.T, seed uint64, steps int, cuts bool) {
	rng := rand.New(rand.NewPCG(seed, 99))
	clk := newFakeClock()
	dir := t.TempDir()
	o := testOptions(t, dir, clk)
	o.MaxAttempts = 3
	o.BackoffBase = 10 * time.Second
	o.BackoffMax = 30 * time.Second
	o.LeaseTimeout = 2 * time.Minute
	o.DedupeWindow = 5 * time.Minute
	o.InlineMax = 8
	o.OnExpired = func(j Job) []OutboxMsg { return []OutboxMsg{{Topic: "events", Payload: []byte("expired " + j.ID)}} }
	var checkpoint bytes.Buffer // Badger's durable state at the last checkpoint
	checkpoints, opens := 0, 1
	if cuts {
		o.journalSize = 6 << 10
		o.testCheckpoint = func(db *badger.DB) {
			checkpoints++
			checkpoint.Reset()
			if _, err := db.Backup(&checkpoint, 0); err != nil {
				t.Errorf("backup at checkpoint: %v", err)
			}
		}
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { q.Close() }()
	m := &model{maxAttempts: 3, base: o.BackoffBase, cap: o.BackoffMax, leaseTO: o.LeaseTimeout,
		window: o.DedupeWindow, jobs: map[string]*mjob{}, done: map[string]time.Time{}}
	leases := map[string]*Lease{}
	ctx := context.Background()
	pickLease := func() (string, *Lease) {
		ids := make([]string, 0, len(leases))
		for id := range leases {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			return "", nil
		}
		sort.Strings(ids)
		id := ids[rng.IntN(len(ids))]
		return id, leases[id]
	}
	for step := 0; step < steps; step++ {
		now := clk.Now()
		op := rng.IntN(100)
		switch {
		case op < 35: // enqueue
			id := fmt.Sprintf("j%d", rng.IntN(60))
			prio := rng.IntN(4) * 3
			var deadline time.Time
			if rng.IntN(5) == 0 {
				deadline = now.Add(time.Duration(rng.IntN(60)) * time.Second)
			}
			img := make([]byte, rng.IntN(16))
			res, err := q.Enqueue(ctx, NewJob{ID: id, Priority: prio, Deadline: deadline, Image: img})
			if err != nil {
				t.Fatalf("step %d Enqueue: %v", step, err)
			}
			want := m.enqueue(id, prio, deadline, now)
			if got := res.State; res.Duplicate != (want != "") || got != want {
				t.Fatalf("step %d Enqueue(%s): got %+v, model says %q", step, id, res, want)
			}
		case op < 60: // lease
			l := poll(t, q)
			mj := m.lease(now)
			switch {
			case l == nil && mj == nil:
			case l == nil || mj == nil:
				t.Fatalf("step %d Lease: got %v, model %v", step, l, mj)
			case l.Job.ID != mj.id || l.Job.Attempt != mj.attempt:
				t.Fatalf("step %d Lease: got %s attempt %d, model %s attempt %d", step, l.Job.ID, l.Job.Attempt, mj.id, mj.attempt)
			default:
				leases[l.Job.ID] = l
			}
		case op < 72: // ack
			id, l := pickLease()
			if l == nil {
				continue
			}
			delete(leases, id)
			err := q.Ack(ctx, l, OutboxMsg{Topic: "results", Payload: []byte("done " + id)})
			m.promote(now)
			mj := m.jobs[id]
			if mj.state != "leased" || mj.attempt != l.Job.Attempt {
				if !errors.Is(err, ErrNotLeased) {
					t.Fatalf("step %d Ack of a stale lease: got %v, want ErrNotLeased", step, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("step %d Ack: %v", step, err)
			}
			delete(m.jobs, id)
			m.done[id] = now
			m.outbox = append(m.outbox, "done "+id)
		case op < 82: // nack or dead
			id, l := pickLease()
			if l == nil {
				continue
			}
			delete(leases, id)
			permanent := rng.IntN(4) == 0
			var dead bool
			var err error
			if permanent {
				err = q.Dead(ctx, l, errors.New("bad image"))
			} else {
				dead, err = q.Nack(ctx, l, errors.New("engine failed"))
			}
			m.promote(now)
			mj := m.jobs[id]
			if mj.state != "leased" || mj.attempt != l.Job.Attempt {
				if !errors.Is(err, ErrNotLeased) {
					t.Fatalf("step %d settle of a stale lease: got %v, want ErrNotLeased", step, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("step %d Nack/Dead: %v", step, err)
			}
			switch {
			case permanent || mj.attempt >= m.maxAttempts:
				mj.state = "dead"
			default:
				mj.state = "delayed"
				mj.due = now.Add(min(m.base<<(mj.attempt-1), m.cap))
			}
			if !permanent && dead != (mj.state == "dead") {
				t.Fatalf("step %d Nack: got dead=%v, model %s", step, dead, mj.state)
			}
		case op < 90: // time passes
			clk.Advance(time.Duration(rng.IntN(40)) * time.Second)
		case op < 93: // retry or purge a dead job
			dl, err := q.ListDead(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(dl) == 0 {
				continue
			}
			id := dl[rng.IntN(len(dl))].Job.ID
			if rng.IntN(2) == 0 {
				if n, err := q.RetryDead(ctx, id); err != nil || n != 1 {
					t.Fatalf("step %d RetryDead: %d, %v", step, n, err)
				}
				m.jobs[id].state = "ready"
				m.jobs[id].attempt = 0
			} else {
				if n, err := q.PurgeDead(id); err != nil || n != 1 {
					t.Fatalf("step %d PurgeDead: %d, %v", step, n, err)
				}
				delete(m.jobs, id)
			}
		case op < 96: // publish some outbox rows
			rows, err := q.OutboxPeek(3)
			if err != nil {
				t.Fatal(err)
			}
			n := min(len(rows), len(m.outbox))
			var seqs []uint64
			for i := 0; i < n; i++ {
				if string(rows[i].Payload) != m.outbox[i] {
					t.Fatalf("step %d outbox row %d: got %q, model %q", step, i, rows[i].Payload, m.outbox[i])
				}
				seqs = append(seqs, rows[i].Seq)
			}
			if err := q.OutboxDelete(seqs...); err != nil {
				t.Fatal(err)
			}
			m.outbox = m.outbox[n:]
		default: // restart, or a power cut
			if cuts && rng.IntN(2) == 0 {
				powerCut(t, q, o, checkpoint.Bytes(), rng)
			} else if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			opens++
			if q, err = Open(o); err != nil {
				t.Fatal(err)
			}
			for _, j := range m.jobs {
				if j.state == "leased" {
					j.state = "ready"
				}
			}
			clear(leases)
		}
		st := q.Stats()
		r, l, d, dd := m.counts(clk.Now())
		if st.ReadyTotal != r || st.Leased != l || st.Delayed != d || st.Dead != dd || st.Outbox != len(m.outbox) {
			t.Fatalf("step %d Stats: got ready %d leased %d delayed %d dead %d outbox %d, model %d %d %d %d %d",
				step, st.ReadyTotal, st.Leased, st.Delayed, st.Dead, st.Outbox, r, l, d, dd, len(m.outbox))
		}
	}
	// Drain: everything left comes out in the model's order.
	clk.Advance(time.Hour)
	for {
		l := poll(t, q)
		mj := m.lease(clk.Now())
		if l == nil || mj == nil {
			if l != nil || mj != nil {
				t.Fatalf("drain: got %v, model %v", l, mj)
			}
			break
		}
		if l.Job.ID != mj.id {
			t.Fatalf("drain: got %s, model %s", l.Job.ID, mj.id)
		}
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		delete(m.jobs, mj.id)
	}
	dl, _ := q.ListDead(0)
	var got, want []string
	for _, d := range dl {
		got = append(got, d.Job.ID)
	}
	for id, j := range m.jobs {
		if j.state == "dead" {
			want = append(want, id)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dead set: got %v, model %v", got, want)
	}
	if cuts {
		// Open checkpoints once; the others happened because the journal was full.
		t.Logf("%d opens, %d checkpoints", opens, checkpoints)
		if checkpoints-opens < 2 {
			t.Fatalf("%d checkpoints in %d opens: the journal hardly filled, so the run did not test checkpoints", checkpoints, opens)
		}
	}
}

// powerCut stops q the way a power cut would: nothing more is written, the
// journal keeps its records, and Badger is left with what the last checkpoint
// made durable (checkpoint, a backup taken then) plus a random subset, in
// order, of the commits made after it. (A commit reaches Badger only after
// its journal record is durable, so Badger never holds one the journal lacks.)
func powerCut(t *testing.T, q *Queue, o Options, checkpoint []byte, rng *rand.Rand) {
	t.Helper()
	crash(t, q)
	if err := os.RemoveAll(filepath.Join(o.Dir, "db")); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(o.badgerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Load(bytes.NewReader(checkpoint), 16); err != nil {
		t.Fatal(err)
	}
	j, recs, err := openJournal(filepath.Join(o.Dir, "journal"), o.journalSize)
	if err != nil {
		t.Fatal(err)
	}
	j.close()
	var kept [][]byte
	for _, r := range recs {
		if rng.IntN(2) == 0 {
			kept = append(kept, r)
		}
	}
	if err := replayJournal(db, kept); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
