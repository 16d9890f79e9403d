// Package logkey names the attribute keys every inferq component logs with, so that one
// thing is always called one name in the journal and in JSON logs (journalctl
// JOB_ID=…, jq 'select(.job_id == …)').
package logkey

// Keys of log attributes.
const (
	Err       = "err"       // an error
	JobID     = "job_id"    // a job's id
	Source    = "source"    // a job's source (spool directory or MQTT topic level)
	Attempt   = "attempt"   // a job's attempt number, from 1
	Component = "component" // the part of the daemon that logs (queue, worker, engine, mqtt, spool, …)
	Path      = "path"      // a file
	Dir       = "dir"       // a directory
	Model     = "model"     // a model's name
	SHA256    = "sha256"    // a model file's sha256
	ChildPID  = "child_pid" // the engine child's process id
)
