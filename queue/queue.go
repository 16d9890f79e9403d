package queue

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
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
	volatile  string  // name of the volatile file system the state is on, if it is
	blobDev   *uint64 // device of the blob directory

	arriving  atomic.Int64   // operations about to join the current batch
	kick      chan struct{}  // wakes the leader of the current batch
	closing   chan struct{}  // closed by Close
	outNotify chan struct{}  // cap 1, signalled after outbox rows were committed
	later     sync.WaitGroup // runLater's goroutines
	running   sync.WaitGroup // Run, which Close waits for
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
	// kept results of done jobs, oldest first (results.go)
	results     []keptResult
	resultBytes int64
	resultAt    map[string]int64 // id -> done time of its kept result
}

type leaseEntry struct {
	id       string
	token    uint64
	deadline int64
	rec      *record
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
	if fi, err := os.Stat(q.blobDir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			dev := uint64(st.Dev)
			q.blobDev = &dev
		}
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
	q.log.Info("queue opened", logkey.Dir, opts.Dir, "jobs", q.st.jobs, "dead", q.st.dead,
		"outbox", q.st.outCount, "bytes", q.st.bytes, "damaged", q.st.damaged)
	return q, nil
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
		q.later.Wait()
		q.running.Wait()
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
