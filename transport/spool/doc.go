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
// they are renamed. fsnotify v1.10 keeps inotify's IN_CLOSE_WRITE
// unexported, so a file is taken once its size and mtime have not changed
// for SettleTime after its last event; writers that pause longer than
// that mid-file should write to *.tmp and rename. At start-up, after an
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
// Backpressure. When Submit fails (ErrQueueFull or any error but
// ErrRefused) the file stays claimed under its id, no new files are
// claimed, and the claimed ones are retried every second; files still in
// the spool wait there. Nothing is dropped.
//
// Empty files are left alone until they have content. Refusals. Files
// over MaxFileSize, files outside the
// Extensions allow-list and files the sink refuses (ErrRefused) go to
// FailedDir/<source>/<id>__<name> with a <...>.json Sidecar giving the
// reason. Archive does the same for dead jobs and links done jobs into
// DoneDir (or does nothing when DoneDir is "").
//
// Concurrency. One goroutine (Run) watches and claims; files are submitted
// one at a time in name order per batch. Stats and Archive are safe to call
// from other goroutines.
package spool
