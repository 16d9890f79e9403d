package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Queue is a durable priority queue. Its methods are safe for concurrent use.
type Queue struct {
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	jitter    func() float64
	db        *badger.DB
	dbDir     string
	blobDir   string
	jrnl      *journal     // write-ahead log of every commit; Badger itself does not sync
	recovered int          // journal records applied at Open
	trimmer   *pageTrimmer // nil unless SmallDevice (and Linux)
	disk      *diskGuard
	volatile  string // name of the volatile file system the state is on, if it is

	arriving  atomic.Int64  // operations about to join the current batch
	kick      chan struct{} // wakes the leader of the current batch
	closing   chan struct{} // closed by Close
	outNotify chan struct{} // cap 1, signalled after outbox rows were committed
	closeOnce sync.Once
	closeErr  error

	maxBatchBytes, maxBatchCount int64

	mu     sync.Mutex
	closed bool
	// mustCheckpoint: a commit failed half-way (journal or Badger).
	mustCheckpoint bool
	cur            *batch
	prevN          int           // operations in the last committed batch
	readyCh        chan struct{} // closed and replaced when a job becomes ready
	st             memState
}

// memState is what the queue keeps in memory; it is rebuilt from disk at Open.
type memState struct {
	ready    [10]seqHeap
	delayed  dueHeap
	leases   map[string]*leaseEntry
	token    uint64
	seq      uint64 // last sequence number handed out
	jobs     int    // records held, dead included
	dead     int
	bytes    int64
	outbox   []outRef
	outHead  int
	outCount int
	expired  uint64
	damaged  uint64
}

type leaseEntry struct {
	id       string
	token    uint64
	deadline int64
	rec      *record
}

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

// Open opens (creating if needed) the queue under opts.Dir and recovers it:
// leases held by a previous process are released (the jobs keep their place),
// damaged records are set aside, and orphan blob and temp files are removed.
func Open(opts Options) (*Queue, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := &Queue{
		opts:      opts,
		log:       opts.Logger,
		now:       opts.Now,
		jitter:    opts.jitter,
		blobDir:   filepath.Join(opts.Dir, "blobs"),
		kick:      make(chan struct{}, 1),
		closing:   make(chan struct{}),
		outNotify: make(chan struct{}, 1),
		readyCh:   make(chan struct{}),
	}
	if q.jitter == nil {
		q.jitter = func() float64 { return 0.8 + 0.4*rand.Float64() }
	}
	if err := os.MkdirAll(q.blobDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create queue dir: %w", err)
	}
	if err := q.checkDiskAtOpen(); err != nil {
		return nil, err
	}
	bo := opts.badgerOptions()
	if err := q.removeEmptyLogFiles(bo.Dir); err != nil {
		return nil, err
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("cannot open queue database %s: %w", bo.Dir, err)
	}
	q.db = db
	q.dbDir = bo.Dir
	if err := q.openJournal(); err != nil {
		_ = db.Close()
		return nil, err
	}
	// Stay well inside Badger's transaction limits (15% of the memtable) and
	// the journal's size.
	q.maxBatchBytes = min(bo.MemTableSize*15/100/2, int64(q.jrnl.capacity()/2))
	q.maxBatchCount = q.maxBatchBytes / 128
	q.st.leases = make(map[string]*leaseEntry)
	blobs, err := q.load(true)
	if err != nil {
		_ = db.Close()
		_ = q.jrnl.close()
		return nil, err
	}
	if err := q.removeOrphans(blobs); err != nil {
		_ = db.Close()
		_ = q.jrnl.close()
		return nil, err
	}
	q.cur = q.newBatch(nil)
	if opts.SmallDevice {
		// Started after load so that Open's scan of the records is not slowed.
		q.trimmer = startPageTrimmer(bo.Dir, q.log)
	}
	q.log.Info("queue opened", "dir", opts.Dir, "jobs", q.st.jobs, "dead", q.st.dead,
		"outbox", q.st.outCount, "bytes", q.st.bytes, "damaged", q.st.damaged)
	return q, nil
}

// checkDiskAtOpen makes sure Open has room to write (see disk.go): when the
// state file system is fuller than that, the ballast file is given back; when
// that is not enough, Open stops here with a *DiskFullError before Badger
// maps anything. It also warns about a volatile file system.
func (q *Queue) checkDiskAtOpen() error {
	reserve := q.opts.DiskReserve
	if reserve == 0 {
		reserve = q.opts.defaultDiskReserve()
	}
	q.disk = &diskGuard{dir: q.opts.Dir, reserve: max(reserve, 0), openNeed: q.opts.openDiskNeed(),
		ballast: filepath.Join(q.opts.Dir, "ballast"), now: time.Now, log: q.log.Warn}
	d, err := q.disk.look(true)
	if err != nil {
		q.log.Warn("queue cannot tell free disk space; no reserve is kept", "err", err)
		return nil
	}
	if d.fsType != "" {
		q.volatile = d.fsType
		q.log.Error("queue state is on a volatile file system: nothing queued survives a reboot or power cut",
			"dir", q.opts.Dir, "fs", d.fsType)
	}
	need := q.disk.openNeed
	if q.disk.reserve == 0 {
		need = 0
	}
	if d.free >= need {
		return nil
	}
	if q.disk.releaseBallast() {
		q.log.Warn("queue disk nearly full at open: ballast file given back", "free", mib(d.free), "need", mib(need))
		if d, err = q.disk.look(true); err != nil || d.free >= need {
			return nil
		}
	}
	return &DiskFullError{Dir: q.opts.Dir, Free: d.free, Need: need}
}

// load rebuilds the in-memory state from disk. At Open (atOpen) every leased
// job is released; after a failed commit, leases this process still holds are
// kept. It returns the referenced blob names when atOpen.
func (q *Queue) load(atOpen bool) (map[string]struct{}, error) {
	now := q.now().UnixNano()
	old := q.st.leases
	st := memState{leases: make(map[string]*leaseEntry), token: q.st.token,
		expired: q.st.expired}
	var blobs map[string]struct{}
	if atOpen {
		blobs = make(map[string]struct{})
	}
	type bad struct{ key, val []byte }
	var damaged []bad
	err := q.db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(metaSeqKey); err == nil {
			_ = item.Value(func(v []byte) error {
				if s, ok := decodeDone(v); ok && s > 0 {
					st.seq = uint64(s)
				}
				return nil
			})
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxJob}})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id, _ := parseIDKey(pfxJob, item.Key())
			var rec *record
			err := item.Value(func(v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					damaged = append(damaged, bad{item.KeyCopy(nil), append([]byte(nil), v...)})
					return nil
				}
				rec = r
				return nil
			})
			if err != nil {
				it.Close()
				return err
			}
			if rec == nil || id == "" {
				continue
			}
			st.jobs++
			st.bytes += rec.ImageSize
			st.seq = max(st.seq, rec.Seq, rec.DeadSeq)
			if blobs != nil && !rec.Inline {
				blobs[rec.Blob] = struct{}{}
			}
			e := entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: id}
			switch rec.State {
			case stDead:
				st.dead++
			case stDelayed:
				if rec.Due > now {
					st.delayed.push(delayedEntry{due: rec.Due, prio: rec.Priority, e: e})
				} else {
					st.ready[rec.Priority].push(e)
				}
			case stLeased:
				if l, ok := old[id]; ok && !atOpen {
					st.leases[id] = l
				} else {
					st.ready[rec.Priority].push(e)
				}
			default:
				st.ready[rec.Priority].push(e)
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOutbox}})
		for it.Rewind(); it.Valid(); it.Next() {
			seq, created, ok := parseOutboxKey(it.Item().Key())
			if !ok {
				continue
			}
			st.outbox = append(st.outbox, outRef{seq: seq, created: created})
			st.outCount++
			st.seq = max(st.seq, seq)
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxDamaged}})
		for it.Rewind(); it.Valid(); it.Next() {
			st.damaged++
		}
		it.Close()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot load queue: %w", err)
	}
	q.st = st
	if len(damaged) > 0 {
		txn := q.db.NewTransaction(true)
		defer txn.Discard()
		for _, d := range damaged {
			q.st.seq++
			q.log.Error("queue record damaged, set aside", "key", fmt.Sprintf("%q", d.key), "size", len(d.val))
			if err := txn.Set(damagedKey(q.st.seq, d.key), d.val); err != nil {
				return nil, fmt.Errorf("cannot set damaged record aside: %w", err)
			}
			if err := txn.Delete(d.key); err != nil {
				return nil, fmt.Errorf("cannot set damaged record aside: %w", err)
			}
			q.st.damaged++
		}
		if err := txn.Commit(); err != nil {
			return nil, fmt.Errorf("cannot set damaged records aside: %w", err)
		}
	}
	return blobs, nil
}

// removeEmptyLogFiles removes zero-length memtable (.mem) and value-log
// (.vlog) files. Badger deletes such a file by truncating it to zero and then
// unlinking it; a kill between the two leaves an empty file that makes the
// next badger.Open fail ("Create a new file"). An empty file holds no data.
func (q *Queue) removeEmptyLogFiles(dir string) error {
	logs, err := badgerLogFiles(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range logs {
		name := e.Name()
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("cannot remove empty log file: %w", err)
		}
		q.log.Warn("queue removed an empty log file left by an interrupted delete", "file", name)
	}
	return nil
}

// badgerLogFiles lists Badger's log files in dir: memtable write-ahead logs
// and value logs.
func badgerLogFiles(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list queue database dir: %w", err)
	}
	logs := ents[:0]
	for _, e := range ents {
		if name := e.Name(); strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog") {
			logs = append(logs, e)
		}
	}
	return logs, nil
}

// removeOrphans deletes blob files no record refers to and temp files left by
// an interrupted Enqueue.
func (q *Queue) removeOrphans(referenced map[string]struct{}) error {
	ents, err := os.ReadDir(q.blobDir)
	if err != nil {
		return fmt.Errorf("cannot list blob dir: %w", err)
	}
	removed := 0
	for _, e := range ents {
		name := e.Name()
		if _, ok := referenced[name]; ok {
			continue
		}
		if !strings.HasPrefix(name, "tmp-") && !validBlobName(name) {
			continue // not ours
		}
		if err := os.Remove(filepath.Join(q.blobDir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("cannot remove orphan blob: %w", err)
		}
		removed++
	}
	if removed > 0 {
		q.log.Info("queue removed orphan blob files", "count", removed)
	}
	return nil
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
		q.log.Error("queue commit failed, reloading state from disk", "err", err, "ops", b.n)
		if _, lerr := q.load(false); lerr != nil {
			q.log.Error("queue reload failed", "err", lerr)
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

// Close commits what is pending, stops the queue and closes the database. It
// may be called more than once.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		if q.db == nil {
			return
		}
		q.mu.Lock()
		q.closed = true
		after := q.commitLocked()
		q.cur.txn.Discard()
		q.mu.Unlock()
		runAll(after)
		close(q.closing)
		q.trimmer.Stop()
		if err := q.db.Close(); err != nil {
			// The journal keeps its records: the next Open applies them again.
			q.closeErr = fmt.Errorf("cannot close queue database: %w", err)
		} else if err := q.jrnl.reset(); err != nil {
			q.closeErr = err
		}
		if err := q.jrnl.close(); err != nil && q.closeErr == nil {
			q.closeErr = fmt.Errorf("cannot close queue journal: %w", err)
		}
	})
	return q.closeErr
}

// Run expires leases, wakes delayed jobs and runs value-log GC until ctx is
// done (it returns nil) or the queue is closed (ErrClosed).
func (q *Queue) Run(ctx context.Context) error {
	gc := time.NewTicker(q.opts.GCInterval)
	defer gc.Stop()
	tick := time.NewTicker(min(time.Second, q.opts.LeaseTimeout/4+time.Millisecond))
	defer tick.Stop()
	ballast := time.NewTicker(10 * time.Second)
	defer ballast.Stop()
	q.keepBallast()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.closing:
			return ErrClosed
		case <-tick.C:
			q.mu.Lock()
			if !q.closed {
				q.promoteLocked(q.now().UnixNano())
			}
			q.mu.Unlock()
		case <-gc.C:
			q.runGC()
		case <-ballast.C:
			q.keepBallast()
		}
	}
}

// keepBallast writes the ballast file when it is missing and there is room.
func (q *Queue) keepBallast() {
	if err := q.disk.keepBallast(); err != nil {
		q.log.Warn("queue ballast file", "err", err)
	}
}

// runGC rewrites value-log files while Badger finds enough garbage.
func (q *Queue) runGC() {
	n := 0
	for n < 16 {
		select {
		case <-q.closing:
			return
		default:
		}
		if err := q.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				q.log.Warn("queue value-log GC failed", "err", err)
			}
			break
		}
		n++
		// GC's rewrites bypass the journal: make them durable now.
		q.mu.Lock()
		if !q.closed {
			if err := q.checkpointLocked(); err != nil {
				q.log.Error("queue checkpoint after value-log GC failed", "err", err)
			}
		}
		q.mu.Unlock()
	}
	if n > 0 {
		q.log.Debug("queue value-log GC", "rewritten", n)
	}
}

// promoteLocked returns expired leases' jobs to their place and moves delayed
// jobs whose time has come to ready.
func (q *Queue) promoteLocked(now int64) {
	woke := false
	for id, l := range q.st.leases {
		if l.deadline <= now {
			delete(q.st.leases, id)
			q.st.ready[l.rec.Priority].push(entry{seq: l.rec.Seq, enq: l.rec.EnqueuedAt, id: id})
			q.log.Warn("queue lease expired, job returned", "job_id", id, "attempt", l.rec.Attempt)
			woke = true
		}
	}
	for len(q.st.delayed) > 0 && q.st.delayed[0].due <= now {
		d := q.st.delayed.pop()
		q.st.ready[d.prio].push(d.e)
		woke = true
	}
	if woke {
		q.broadcastLocked()
	}
}

// nextWakeLocked is when the next delayed job or lease deadline falls due
// (Unix ns), or 0 when nothing is pending.
func (q *Queue) nextWakeLocked() int64 {
	var t int64
	if len(q.st.delayed) > 0 {
		t = q.st.delayed[0].due
	}
	for _, l := range q.st.leases {
		if t == 0 || l.deadline < t {
			t = l.deadline
		}
	}
	return t
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

// runLater runs the funcs in *fs on another goroutine, if there are any.
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
		defer runLater(&after)
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

func runLater(fs *[]func()) {
	if len(*fs) > 0 {
		go runAll(*fs)
	}
}

// openJournal opens the journal, applies the records a previous process
// wrote after its last checkpoint, and checkpoints (always: Badger's files
// are then durable and the journal starts a new generation). A journal with a damaged
// header is renamed aside (it is logged) and a new one started.
func (q *Queue) openJournal() error {
	path := filepath.Join(q.opts.Dir, "journal")
	j, recs, err := openJournal(path, q.opts.journalSize)
	if errors.Is(err, ErrDamaged) {
		aside := fmt.Sprintf("%s.damaged-%d", path, q.now().Unix())
		q.log.Error("queue journal damaged, set aside; commits since the last checkpoint may be missing",
			"path", path, "aside", aside, "err", err)
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("cannot set damaged queue journal aside: %w", rerr)
		}
		j, recs, err = openJournal(path, q.opts.journalSize)
	}
	if err != nil {
		return err
	}
	q.jrnl = j
	if err := replayJournal(q.db, recs); err != nil {
		_ = j.close()
		return err
	}
	if err := q.checkpointLocked(); err != nil {
		_ = j.close()
		return err
	}
	if q.recovered = len(recs); q.recovered > 0 {
		q.log.Warn("queue was not closed by the previous process (crash, kill or power cut): journal applied again",
			"records", len(recs))
	}
	return nil
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
