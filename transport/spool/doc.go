// Package spool takes image files dropped into a spool directory and
// submits them as jobs.
//
// Layout. Files directly in Dir belong to DefaultSource; files in a
// sub-directory (one level, not hidden, no "__" in its name) belong to the
// source named after it. Per-source priorities come from Config.Sources.
//
// What is taken. Only regular files: symlinks, FIFOs, devices, sockets and
// symlinked directories are never followed or opened (entries are checked
// with Lstat, what arrives in the claim directory is checked again, and a
// cross-file-system copy opens the file with O_NOFOLLOW|O_NONBLOCK and
// checks it with fstat). Hidden files and *.tmp / *.part files wait until
// they are renamed. On Linux a file is taken at once when it is complete:
// renamed into the spool (IN_MOVED_TO) or closed after writing
// (IN_CLOSE_WRITE), from a second inotify instance (complete_linux.go:
// fsnotify v1.10 keeps both unexported); a writer that closes and reopens a
// file must use the rename pattern. Otherwise (start-up scans, overflows,
// other platforms, a writer that never closes) a file is taken once its
// size and mtime have not changed for SettleTime after its last event;
// writers that pause longer than that mid-file should write to *.tmp and
// rename. At start-up, after an
// inotify queue overflow and every RescanInterval, a full rescan notes all
// files (those untouched for SettleTime are taken at once).
//
// Durability. Taking is atomic: the file is renamed into ClaimDir as
// <id>__<source>__<name>, with the job id minted at that moment; the
// directories are fsynced (once per batch of up to 256 files); then
// Sink.Submit makes the job durable (the queue hard-links the claimed file
// into its store) and the claimed file is removed. At Open, files left in
// ClaimDir are submitted again under their recorded id, so a crash at any
// step neither loses an image nor makes two jobs (the queue reports the
// duplicate). When ClaimDir is on another file system the file is copied
// and fsynced under a journal; Open completes or undoes a copy cut short.
//
// Backpressure. Only the queue pauses the spool. When Submit fails with
// ErrQueueFull, or with any error that is neither a refusal nor about the
// file (the queue is closed or failing: queue.ErrClosed, its disk), the file
// stays claimed under its id, no new files are claimed, and the claimed ones
// are retried every second; files still in the spool wait there
// (Stats.Paused, Pending, Waiting). Nothing is dropped.
//
// Per-file errors are per-file. What is wrong with one file never pauses
// the spool: the file is refused and the next one is taken. How the Sink
// tells the two apart: an error about the file itself is one that
// IsFileError(err, it.Path) accepts — an *fs.PathError naming exactly the
// claimed file with a per-file errno: permission denied (EACCES, EPERM;
// e.g. a root-owned mode-600 file dropped for a daemon running as another
// user: "cannot read image file: open …: permission denied"), vanished
// (ENOENT), an I/O error reading it (EIO), ELOOP, ENAMETOOLONG, EISDIR,
// ENXIO, ENODEV, EBUSY. The Sink returns those, and items that can never
// become a job (an invalid job), wrapped in ErrRefused; it returns a full
// queue (*queue.FullError) as ErrQueueFull and anything else (a closed
// queue, ENOSPC or EIO on the queue's own files, which name another path)
// as is, which pauses. The Watcher applies IsFileError to unclassified Sink
// errors too. Its own steps follow the same rule: a claim (rename or copy
// out of the spool) that fails because of the file (IsFileError on the
// spool path, or a rename refused with such an errno while ClaimDir is
// writable) refuses the file; a file that vanished is forgotten; a claim
// failing for another reason (the claim directory's file system) leaves
// the file in the spool, counted as waiting, and is tried again after
// RescanInterval.
//
// Refusals. Files over MaxFileSize, files outside the Extensions
// allow-list, and files refused as above go to
// FailedDir/<source>/<id>__<name> with a <...>.json Sidecar giving the
// reason (only the sidecar when the file itself is gone); Stats.Refused and
// LastRefused count them. A refused file that cannot even be moved (the
// failed directory's file system is full or read-only, the file cannot be
// renamed or read) stays where it is, is logged once and counted in
// Stats.Unmovable, and the move is tried again every RescanInterval — never
// in a loop; a file that changes in the meantime is taken afresh.
//
// Waiting files. Empty files wait until they have content. A file that has
// been unchanged for SettleTime and is still not taken (empty, behind a
// paused spool, or waiting for a claim retry) counts in Stats.Waiting (with
// WaitingEmpty and the age of the oldest, OldestWaiting) and is logged once
// (files behind a pause are logged if they still wait after it).
//
// Archive. Archive does the same as a refusal for dead jobs and links done
// jobs into DoneDir (or does nothing when DoneDir is ""). A failure (e.g. a
// full file system) is returned, logged and counted in
// Stats.ArchiveFailures with the last reason; taking files goes on.
//
// Untrusted strings. File names, paths and reasons quoting them are cut
// (internal/textutil) before they reach a log line or Stats.
//
// Concurrency. One goroutine (Run) watches and claims; files are submitted
// one at a time in name order per batch. Stats and Archive are safe to call
// from other goroutines.
package spool
