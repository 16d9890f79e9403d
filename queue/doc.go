// Package queue is inferq's durable priority queue of inference jobs, kept in
// Badger on local disk, with the outbox of messages to publish.
//
// Durability: Enqueue, Lease, Ack, Nack, Dead, OutboxAppend and the dead-letter
// operations return only after their changes are on disk. Each group commit
// is first written to the queue's journal (Dir/journal, a zero-filled
// write-ahead log) with one synchronous write, and only then applied to
// Badger, whose own logs are not synced: nothing is visible to any reader
// (OutboxPeek included) before it is durable, so nothing is published that a
// power cut could undo. A checkpoint syncs Badger's files and empties the
// journal, and Open applies again whatever the journal holds; replay writes
// nothing to the journal, so an Open killed during replay (twice in a row,
// say) simply replays again. Journal records start on 4 KiB boundaries: a
// torn write can damage only the record being written. Concurrent
// callers share one journal write (group commit); no caller is told of
// success before its own change is on disk. Large images are files written to
// a temp name, fsynced, renamed, and the directory fsynced before the job's
// record is committed. An operation that returned an error may still have
// taken effect (its journal record may have reached the disk).
//
// Ordering: Lease hands out the highest priority first and, within a
// priority, the oldest job first. A job that comes back from a lease, a retry
// or the dead set keeps its original place.
//
// Leases: a leased job is invisible until Ack, Nack, Dead or its lease
// deadline passes. Its attempt count is stored before Lease returns, so a job
// that kills the process ends in the dead set after MaxAttempts instead of
// crash-looping. Open releases every lease of a previous process.
//
// A worker that calls AckNext instead of Ack then Lease gets its ack and the
// next job's lease in one commit: one synchronous write per job.
//
// Atomicity: Ack, Nack and Dead store the job's new state and its outbox rows
// in one transaction, so a result is never lost nor written for a job that
// will run again. Outbox rows keep their order and are removed only by
// OutboxDelete. Delivery is at-least-once: a job leased at a crash runs again.
//
// Dedupe and limits: enqueuing an id that is held (ready, delayed, leased or
// dead) or done within DedupeWindow stores nothing and says so. MaxJobs and
// MaxBytes count every held job, dead ones included; Enqueue beyond them
// returns a *FullError.
//
// Damage: a record that cannot be decoded is moved aside under a separate
// prefix, logged and counted in Stats.Damaged; it never stops the queue. A
// journal whose header is damaged is renamed aside and logged; a torn last
// journal record (the write a crash interrupted) is ignored.
// Open also removes the empty Badger log files that a kill during Badger's
// own file deletion leaves behind and that would otherwise stop Badger from
// opening.
//
// Disk space: Badger writes through memory maps of sparse files, where a
// full disk is SIGBUS rather than an error. The queue keeps DiskReserve free
// on its file system: below it Enqueue returns a *FullError (Limit
// "disk_reserve"), while leases, acks, the outbox and dead letters go on;
// below a quarter of it Lease hands out nothing more. The default reserve is
// what Badger may write without asking (Open's replay, two memtables, its
// compactions' outputs before their inputs go), so Badger's writes never meet
// a full disk by the queue's own doing. When something else fills the disk,
// a ballast file (a quarter of the reserve) is given back, while running and
// at Open; with no room even then Open returns a *DiskFullError before Badger
// maps a file. See disk.go.
//
// Memory: with SmallDevice, Badger uses 2 MB memtables and tables, and on
// Linux a page trimmer asks the kernel to page out this process's mapped
// pages of Badger's files as they accumulate (madvise MADV_PAGEOUT; contents
// never change). With a Go memory limit of about 42 MiB, which the daemon
// sets, a bulk fill of 100,000 jobs peaks near 56 MB resident.
//
// Files, one concept each: queue.go (the type, Open, Close), recovery.go
// (what Open does after any stop), commit.go (group commit: journal first,
// then Badger), journal.go (the write-ahead log), timers.go (Run), enqueue.go,
// lease.go, settle.go (Ack, Nack, Dead), outbox.go, dead.go (dead letters),
// blob.go (image files), disk.go (the free-space reserve), codec.go (keys and
// records), stats.go.
//
// Concurrency: all methods are safe for concurrent use. Open acquires and
// recovers, Run runs the timers (lease expiry, retry wake-ups, value-log GC)
// and Close commits what is pending and closes the database; Close may be
// called twice.
package queue
