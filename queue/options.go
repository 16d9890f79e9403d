package queue

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options configures a Queue. Start from DefaultOptions and change fields.
type Options struct {
	Dir          string        // badger lives in Dir/db, image blobs in Dir/blobs
	MaxJobs      int           // jobs held (ready, delayed, leased and dead); 0: no limit
	MaxBytes     int64         // image bytes held (all jobs, dead included); 0: no limit
	MaxAttempts  int           // attempts before a job is dead-lettered (default 5)
	LeaseTimeout time.Duration // a lease not settled by then returns the job (default 5m)
	BackoffBase  time.Duration // first retry delay (default 1s); doubles per attempt
	BackoffMax   time.Duration // retry delay cap (default 5m); jitter is +-20%
	DedupeWindow time.Duration // how long done ids are remembered (default 24h)
	// Done jobs' results (OutboxMsg.Keep) are kept for Get while they are among the
	// ResultsKept most recent (default 1000; 0 keeps none), within ResultsMaxBytes
	// (default 64 MiB) and younger than ResultMaxAge (default 24h, at most DedupeWindow).
	ResultsKept     int
	ResultsMaxBytes int64
	ResultMaxAge    time.Duration
	InlineMax       int           // images up to this many bytes are kept in Badger (default 4096)
	CommitWindow    time.Duration // longest a commit waits for more concurrent writers (default 2ms)
	GCInterval      time.Duration // value-log GC ticker in Run (default 5m)
	SmallDevice     bool          // Badger preset for small devices (see DESIGN.md)
	// DiskReserve is the free space kept on the state file system (disk.go):
	// below it Enqueue refuses new jobs. 0: what Badger may write unasked (64
	// MiB with SmallDevice); negative: no reserve.
	DiskReserve int64
	// OnExpired, when set, supplies outbox rows written in the same transaction
	// that moves an expired job to the dead set. It runs under the queue's lock:
	// it must be quick and must not call the queue.
	OnExpired func(Job) []OutboxMsg
	// OnExhausted, when set, supplies outbox rows (a dead event, a failed
	// result) written in the same transaction that moves a job whose attempts
	// are used up to the dead set at Lease (its process died or its lease
	// expired during the last attempt), with the reason. The Lease it gets
	// cannot be settled; Image and ImagePath read the job's image through it
	// while the job stays dead. Same constraints as OnExpired.
	OnExhausted func(l *Lease, reason string) []OutboxMsg
	Now         func() time.Time // clock, default time.Now
	Logger      *slog.Logger     // default slog.Default()

	// jitter returns a factor in [0.8, 1.2]; tests replace it.
	jitter func() float64
	// journalSize is the journal file's size; 0 means defaultJournalSize.
	journalSize int64
	// testCheckpoint, set by tests, runs at each checkpoint once Badger's
	// files are durable and before the journal is emptied.
	testCheckpoint func(*badger.DB)
	// testJournaled, set by tests, runs once a batch's journal record is
	// durable and before the batch is applied to Badger.
	testJournaled func()
	// testLater, set by tests, runs first in each of runLater's goroutines.
	testLater func()
	// testBallast, set by tests, runs in Run before each look at the ballast file.
	testBallast func()
}

// Limits on what a single job or message may carry, so that any one operation
// fits in one Badger transaction (with the small-device preset, ~300 KiB: an
// outbox of maxPayloadLen with up to ~24 topics of maxTopicLen; see
// TestSmallDeviceLargestOperation).
const (
	maxIDLen      = 256
	maxSourceLen  = 256
	maxMetaBytes  = 16 << 10
	maxInlineMax  = 64 << 10
	maxTopicLen   = 1024
	maxPayloadLen = 256 << 10
	maxErrorLen   = 4096
	// maxValueInLSM is Badger's ValueThreshold: values shorter stay in the LSM tree.
	maxValueInLSM = 1 << 20
)

// DefaultOptions returns the defaults for a queue stored under dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:             dir,
		MaxAttempts:     5,
		LeaseTimeout:    5 * time.Minute,
		BackoffBase:     time.Second,
		BackoffMax:      5 * time.Minute,
		DedupeWindow:    24 * time.Hour,
		ResultsKept:     1000,
		ResultsMaxBytes: 64 << 20,
		ResultMaxAge:    24 * time.Hour,
		InlineMax:       4096,
		CommitWindow:    2 * time.Millisecond,
		GCInterval:      5 * time.Minute,
		SmallDevice:     true,
	}
}

// Validate reports the first invalid field, naming it and its value.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return fmt.Errorf("queue option dir: must not be empty")
	case o.MaxJobs < 0:
		return fmt.Errorf("queue option max_jobs: %d must not be negative", o.MaxJobs)
	case o.MaxBytes < 0:
		return fmt.Errorf("queue option max_bytes: %d must not be negative", o.MaxBytes)
	case o.MaxAttempts < 1:
		return fmt.Errorf("queue option max_attempts: %d must be at least 1", o.MaxAttempts)
	case o.LeaseTimeout <= 0:
		return fmt.Errorf("queue option lease_timeout: %s must be positive", o.LeaseTimeout)
	case o.BackoffBase <= 0:
		return fmt.Errorf("queue option backoff_base: %s must be positive", o.BackoffBase)
	case o.BackoffMax < o.BackoffBase:
		return fmt.Errorf("queue option backoff_max: %s must be at least backoff_base %s", o.BackoffMax, o.BackoffBase)
	case o.DedupeWindow <= 0:
		return fmt.Errorf("queue option dedupe_window: %s must be positive", o.DedupeWindow)
	case o.ResultsKept < 0:
		return fmt.Errorf("queue option results_kept: %d must not be negative", o.ResultsKept)
	case o.ResultsKept > 0 && o.ResultsMaxBytes <= 0:
		return fmt.Errorf("queue option results_max_bytes: %d must be positive", o.ResultsMaxBytes)
	case o.ResultsKept > 0 && o.ResultMaxAge <= 0:
		return fmt.Errorf("queue option result_max_age: %s must be positive", o.ResultMaxAge)
	case o.InlineMax < 0 || o.InlineMax > maxInlineMax:
		return fmt.Errorf("queue option inline_max: %d must be between 0 and %d", o.InlineMax, maxInlineMax)
	case o.CommitWindow < 0 || o.CommitWindow > time.Second:
		return fmt.Errorf("queue option commit_window: %s must be between 0 and 1s", o.CommitWindow)
	case o.GCInterval <= 0:
		return fmt.Errorf("queue option gc_interval: %s must be positive", o.GCInterval)
	}
	return nil
}

// badgerOptions builds the Badger options: no syncs of Badger's own logs (the
// queue's journal makes each group commit durable with one synchronous write,
// and a checkpoint syncs Badger's files), every value in the LSM tree, no
// conflict detection (one writer at a time), and the small-device preset when
// asked for.
//
// ValueThreshold is the largest Badger accepts (1 MB, or 15% of the memtable:
// 307 KiB with the preset), above every value the queue writes (at most an
// outbox row with maxPayloadLen of payload), so the value log holds nothing
// that would need syncing or GC. The same 15% bounds one Badger transaction:
// one operation must stay under it (see TestSmallDeviceLargestOperation).
//
// The small-device preset, with the page trimmer (pagetrim_linux.go) and a
// Go memory limit of about 42 MiB (GOMEMLIMIT), keeps the peak resident
// memory of a bulk fill (100,000 jobs from 16 producers, BenchmarkRSS100k)
// near 56 MB; see BENCHMARKS.md. Besides mapped table pages (the trimmer's
// job), what holds memory while Badger writes is its table builders: each
// takes a buffer of 2×BaseTableSize from a pool that keeps up to 8 of them,
// compactions finish up to 8 tables at a time, and a buffer grows (and stays
// grown) when a memtable flush does not fit in it. Hence:
//   - MemTableSize = BaseTableSize = 2 MB, so a flushed memtable fits in one
//     builder buffer and every buffer is 4 MB;
//   - TableSizeMultiplier 1, so deeper levels do not ask for bigger buffers;
//   - one memtable waiting for flush (NumMemtables 1);
//   - no index cache: Badger uses it only for encrypted tables.
func (o Options) badgerOptions() badger.Options {
	bo := badger.DefaultOptions(filepath.Join(o.Dir, "db")).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithLogger(badgerLogger{o.Logger}).
		WithMetricsEnabled(false)
	if o.SmallDevice {
		const memTable = 2 << 20
		bo = bo.
			WithMemTableSize(memTable).
			WithBaseTableSize(memTable).
			WithNumMemtables(1).
			WithNumLevelZeroTables(2).
			WithNumLevelZeroTablesStall(4).
			WithNumCompactors(2).
			WithValueLogFileSize(64 << 20).
			WithIndexCacheSize(0).
			WithCompression(options.None).
			WithBlockCacheSize(0)
		bo.TableSizeMultiplier = 1
	}
	return bo.WithValueThreshold(min(maxValueInLSM, bo.MemTableSize*15/100))
}

// badgerLogger forwards Badger's log lines to slog; Badger's info lines are
// routine and go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) { b.debug(f, a) }

// Debugf is called on every Badger write: format only when debug is on.
func (b badgerLogger) Debugf(f string, a ...any) { b.debug(f, a) }

func (b badgerLogger) debug(f string, a []any) {
	if b.l.Enabled(context.Background(), slog.LevelDebug) {
		b.l.Debug("badger", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
	}
}
