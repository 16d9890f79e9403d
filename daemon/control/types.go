package control

import (
	"encoding/json"
	"time"
)

// Job is one job as the control API shows it. Times are omitted when they do not apply
// to the job's state.
type Job struct {
	ID         string            `json:"id"`
	State      string            `json:"state"`
	Priority   int               `json:"priority"`
	Source     string            `json:"source,omitempty"`
	Attempts   int               `json:"attempts"`
	LastError  string            `json:"last_error,omitempty"`
	EnqueuedAt *time.Time        `json:"enqueued_at,omitempty"`
	Deadline   *time.Time        `json:"deadline,omitempty"`
	Due        *time.Time        `json:"due,omitempty"`
	LeaseUntil *time.Time        `json:"lease_until,omitempty"`
	DeadReason string            `json:"dead_reason,omitempty"`
	DiedAt     *time.Time        `json:"died_at,omitempty"`
	DoneAt     *time.Time        `json:"done_at,omitempty"`
	ImageBytes int64             `json:"image_bytes,omitempty"`
	ImageSHA   string            `json:"image_sha256,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Result is the published result document of a done job, while it is retained.
	Result any `json:"result,omitempty"`
}

// JobsQuery selects jobs for listing. Empty fields select everything; Limit 0 means
// the server's default (100).
type JobsQuery struct {
	State  string
	Source string
	Limit  int
}

// DeadJob is one dead-lettered job.
type DeadJob struct {
	ID         string            `json:"id"`
	Source     string            `json:"source"`
	Priority   int               `json:"priority"`
	Attempts   int               `json:"attempts"`
	Reason     string            `json:"reason"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	DiedAt     time.Time         `json:"died_at"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// DeadRequest selects dead jobs for retry or purge: either IDs or All, never both,
// never neither.
type DeadRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// DeadResponse says how many jobs a retry or purge touched.
type DeadResponse struct {
	Count int `json:"count"`
}

// PauseState is what is paused.
type PauseState struct {
	Intake bool `json:"intake"`
	Worker bool `json:"worker"`
}

// PauseRequest says what to pause or resume: intake, worker or all.
type PauseRequest struct {
	What string `json:"what"`
}

// ReloadResponse answers a reload that succeeded: the model now serving.
type ReloadResponse struct {
	Model  string `json:"model"`
	SHA256 string `json:"sha256"`
	// RestartNeeded lists changed settings of the configuration file that only a
	// restart applies; they keep their running values until then.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// PriorityRequest is the body of POST /v1/jobs/{id}/priority.
type PriorityRequest struct {
	Priority int `json:"priority"`
}

// EnqueueRequest describes a job to queue; the image travels as the request body.
// Empty ID and Source are chosen by the daemon.
type EnqueueRequest struct {
	ID       string
	Source   string
	Priority int
}

// EnqueueResponse answers POST /v1/jobs.
type EnqueueResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
	State     string `json:"state,omitempty"` // of the job already held, when Duplicate
}

// JobOpResponse answers an operation on one job (priority, cancel).
type JobOpResponse struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// The types of WatchItem.
const (
	WatchEvent   = "event"   // Data: a lifecycle event (queued, started, done, retry, dead, expired)
	WatchHealth  = "health"  // Data: the health document, first and whenever status or problems change
	WatchDropped = "dropped" // the watcher fell behind: Dropped items were lost for it
)

// WatchItem is one line of GET /v1/watch.
type WatchItem struct {
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data,omitempty"`
	Dropped int             `json:"dropped,omitempty"`
}
