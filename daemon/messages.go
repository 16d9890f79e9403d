package daemon

import (
	"encoding/json"
	"time"

	"github.com/inferq/inferq/infer"
)

// OutboxPayloadLimit is the most payload one queue operation may write to the outbox
// (the queue's maxPayloadLen: the rows of one job's outcome must fit in one Badger
// transaction on a small device). A job's result message and its done event share it.
// A result larger than that is not stored at all: the job is dead-lettered with a small
// failed result instead (raw results may be summarized first: model.raw_over_limit).
const OutboxPayloadLimit = 256 << 10

// Job statuses carried in result messages.
const (
	StatusOK      = "ok"      // the model ran; Output holds what it said
	StatusFailed  = "failed"  // the job is dead: Error says why, Permanent whether retrying could help
	StatusExpired = "expired" // the job passed its deadline before it could run
)

// Lifecycle events published on <prefix>/<node>/events.
const (
	EventQueued   = "queued"
	EventStarted  = "started"
	EventDone     = "done"
	EventRetry    = "retry"
	EventDead     = "dead"
	EventExpired  = "expired"
	EventRejected = "rejected"
)

// ResultMessage is the JSON published on <prefix>/<node>/results/<source>, once per job
// that finished (done, dead or expired). Delivery is at-least-once: consumers drop
// duplicates by JobID.
type ResultMessage struct {
	JobID      string            `json:"job_id"`
	Node       string            `json:"node"`
	Source     string            `json:"source"`
	Status     string            `json:"status"`
	Attempt    int               `json:"attempt"`
	Priority   int               `json:"priority"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
	StartedAt  *time.Time        `json:"started_at,omitempty"`
	FinishedAt time.Time         `json:"finished_at"`
	Model      *ModelRef         `json:"model,omitempty"`
	Output     *infer.Result     `json:"output,omitempty"`
	Error      string            `json:"error,omitempty"`
	// Permanent is true when the error is one retrying cannot cure (a corrupt image).
	Permanent bool       `json:"permanent,omitempty"`
	Timings   JobTimings `json:"timings"`
}

// ModelRef identifies the model that produced a result.
type ModelRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// JobTimings are the job's durations in milliseconds.
type JobTimings struct {
	QueuedMS float64 `json:"queued_ms"` // from enqueue to the start of this attempt
	RunMS    float64 `json:"run_ms"`    // this attempt, image read to result
	TotalMS  float64 `json:"total_ms"`  // from enqueue to finish
}

// EventMessage is the JSON published on <prefix>/<node>/events.
type EventMessage struct {
	Event   string    `json:"event"`
	JobID   string    `json:"job_id,omitempty"`
	Node    string    `json:"node"`
	Source  string    `json:"source,omitempty"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt,omitempty"`
	Error   string    `json:"error,omitempty"`
	// RetryIn is the backoff before the next attempt, for retry events.
	RetryIn string `json:"retry_in,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// eventJSON encodes an event; events hold only strings, numbers and times, so this
// cannot fail.
func eventJSON(e EventMessage) []byte {
	b, _ := json.Marshal(e)
	return b
}
