package queue

// Group commit: operations join the open batch under the queue lock; the
// first waiter leads it and commits it (journal first, then Badger) once the
// others that are arriving have joined.

import (
	"fmt"
	"os"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
)

// batch is one group commit: the operations of many callers in one Badger
// transaction, committed with one fsync.
type batch struct {
	txn     *badger.Txn
	n       int   // writes of operations that joined
	waiters int   // operations waiting for the commit
	led     bool  // a waiter leads (commits) the batch
	entries int64 // Badger entries written
	size    int64 // estimated bytes written
	dirSync bool  // blob files were renamed into the blob dir
	notify  bool  // outbox rows were added
	after   []func()
	rec     []byte // the batch's journal record: journalRecHead bytes, then its operations
	failed  error  // a write into txn failed: the batch must not be committed
	done    chan struct{}
	err     error
}

func (q *Queue) newBatch(rec []byte) *batch {
	if rec == nil {
		rec = make([]byte, journalRecHead, 4096)
	}
	return &batch{txn: q.db.NewTransaction(true), done: make(chan struct{}), rec: rec[:journalRecHead]}
}

// enter marks an operation about to join a batch; leave undoes it once the
// operation has joined (or given up). A batch leader commits early when nobody is
// arriving.
func (q *Queue) enter() { q.arriving.Add(1) }
func (q *Queue) leave() {
	q.arriving.Add(-1)
	q.signal()
}

func (q *Queue) signal() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// join returns the current batch, committing it first when an operation
// writing about entries/size more would not fit. The caller holds q.mu.
func (q *Queue) join(entries, size int64) (*batch, []func()) {
	var after []func()
	b := q.cur
	if b.entries > 0 && (b.entries+entries > q.maxBatchCount || b.size+size > q.maxBatchBytes) {
		after = q.commitLocked()
		b = q.cur
	}
	return b, after
}

func (b *batch) set(key, val []byte) error {
	return b.setEntry(badger.NewEntry(key, val))
}

func (b *batch) setEntry(e *badger.Entry) error {
	b.entries++
	b.size += int64(len(e.Key) + len(e.Value) + 32)
	b.rec = appendJournalOp(b.rec, jopSet, e.Key, e.Value, e.ExpiresAt)
	return b.txn.SetEntry(e)
}

func (b *batch) del(key []byte) error {
	b.entries++
	b.size += int64(len(key) + 32)
	b.rec = appendJournalOp(b.rec, jopDel, key, nil, 0)
	return b.txn.Delete(key)
}

// commitLocked commits the current batch and starts a new one. On failure the
// in-memory state is rebuilt from disk, since the batch's changes to it were
// not stored. The caller holds q.mu and runs the returned funcs after
// releasing it.
func (q *Queue) commitLocked() []func() {
	b := q.cur
	err := b.failed
	if err == nil && b.entries > 0 {
		if b.dirSync {
			err = syncDir(q.blobDir)
		}
		if err == nil {
			err = b.set(metaSeqKey, encodeDone(int64(q.st.seq)))
		}
		if err == nil {
			err = q.applyLocked(b)
		}
	}
	b.txn.Discard()
	q.prevN = b.waiters
	rec := b.rec
	if cap(rec) > 1<<20 {
		rec = nil // do not keep a large buffer for the next batch
	}
	q.cur = q.newBatch(rec)
	if err != nil {
		b.err = fmt.Errorf("cannot commit queue batch: %w", err)
		q.log.Error("queue commit failed, reloading state from disk", logkey.Err, err, "ops", b.n)
		if _, lerr := q.load(false); lerr != nil {
			q.log.Error("queue reload failed", logkey.Err, lerr)
		}
		q.broadcastLocked()
		b.after = nil
	}
	close(b.done)
	if b.notify && b.err == nil {
		select {
		case q.outNotify <- struct{}{}:
		default:
		}
	}
	return b.after
}

func runAll(fs []func()) {
	for _, f := range fs {
		f()
	}
}

// await waits for b's commit and returns its outcome. The first waiter
// leads: it commits b once as many operations have joined as joined the
// previous batch and nobody else is about to join, or when the commit window
// has passed. Concurrent callers thus share one fsync.
func (q *Queue) await(b *batch) error {
	q.mu.Lock()
	lead := q.cur == b && !b.led
	b.led = true
	b.waiters++
	q.mu.Unlock()
	q.signal()
	if lead {
		q.lead(b)
	}
	<-b.done
	return b.err
}

func (q *Queue) lead(b *batch) {
	deadline := time.Now().Add(q.opts.CommitWindow)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		if q.cur != b {
			q.mu.Unlock() // committed by Close or by an operation that did not fit
			return
		}
		wait := time.Until(deadline)
		if wait <= 0 || q.arriving.Load() <= 0 && b.waiters >= q.prevN {
			after := q.commitLocked()
			q.mu.Unlock()
			runAll(after)
			return
		}
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-q.kick:
		case <-timer.C:
		}
	}
}

// broadcastLocked wakes every Lease waiting for a ready job.
func (q *Queue) broadcastLocked() {
	close(q.readyCh)
	q.readyCh = make(chan struct{})
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// write runs fill on the open group-commit batch under the queue lock, then waits until
// that batch is durable. fill reports whether it changed anything; when it did not (or
// failed) there is nothing to wait for.
func (q *Queue) write(entries, size int64, fill func(b *batch) (bool, error)) error {
	b, err := func() (*batch, error) {
		q.enter()
		defer q.leave()
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.closed {
			return nil, ErrClosed
		}
		b, after := q.join(entries, size)
		defer q.runLater(&after)
		changed, err := fill(b)
		if err != nil || !changed {
			return nil, err
		}
		return b, nil
	}()
	if err != nil || b == nil {
		return err
	}
	return q.await(b)
}

// runLater runs the funcs in *fs (a batch's follow-ups: removing the image
// files of settled jobs) on another goroutine, if there are any; Close waits
// for it.
func (q *Queue) runLater(fs *[]func()) {
	if len(*fs) > 0 {
		fns := *fs
		q.later.Add(1)
		go func() {
			defer q.later.Done()
			if q.opts.testLater != nil {
				q.opts.testLater()
			}
			runAll(fns)
		}()
	}
}

// applyLocked makes batch b durable, then applies it: its journal record is
// written (one synchronous write) and only then is the batch committed to
// Badger, so nothing is visible (to OutboxPeek, say) before it is durable.
// When either step fails, the next commit checkpoints first: that makes
// Badger's state the durable one and drops a record Badger lacks (or half a
// record the failed write may have left). The caller holds q.mu.
func (q *Queue) applyLocked(b *batch) error {
	if q.mustCheckpoint || !q.jrnl.fits(len(b.rec)-journalRecHead) {
		if err := q.checkpointLocked(); err != nil {
			return err
		}
		q.mustCheckpoint = false
	}
	if err := q.jrnl.append(b.rec); err != nil {
		q.mustCheckpoint = true
		return err
	}
	if q.opts.testJournaled != nil {
		q.opts.testJournaled()
	}
	if err := b.txn.Commit(); err != nil {
		q.mustCheckpoint = true
		return fmt.Errorf("cannot apply batch: %w", err)
	}
	return nil
}

// checkpointLocked makes Badger's files durable and empties the journal. The
// caller holds q.mu (or is Open), so no commit runs meanwhile.
func (q *Queue) checkpointLocked() error {
	if err := syncBadgerFiles(q.db, q.dbDir); err != nil {
		return fmt.Errorf("queue checkpoint: %w", err)
	}
	if q.opts.testCheckpoint != nil {
		q.opts.testCheckpoint(q.db)
	}
	if err := q.jrnl.reset(); err != nil {
		return fmt.Errorf("queue checkpoint: %w", err)
	}
	return nil
}
