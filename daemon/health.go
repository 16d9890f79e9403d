package daemon

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
)

// Health states, worst last.
const (
	HealthOK       = "ok"       // working, nothing to report
	HealthDegraded = "degraded" // working, but something needs a look (broker away, queue full, reload failed)
	HealthFailing  = "failing"  // not processing jobs (engine down, worker stuck)
)

// Health is the retained JSON document on <prefix>/<node>/health and the answer of
// `inferq status`. Ages and durations are in seconds or milliseconds as their names say.
type Health struct {
	Seq       uint64    `json:"seq"`
	Node      string    `json:"node"`
	Version   string    `json:"version"`
	Status    string    `json:"status"`
	Problems  []string  `json:"problems,omitempty"`
	Time      time.Time `json:"time"`
	StartedAt time.Time `json:"started_at"`
	UptimeS   int64     `json:"uptime_s"`

	Model  HealthModel  `json:"model"`
	Engine HealthEngine `json:"engine"`
	Queue  HealthQueue  `json:"queue"`
	Jobs   HealthJobs   `json:"jobs"`
	Outbox HealthOutbox `json:"outbox"`
	MQTT   *HealthMQTT  `json:"mqtt,omitempty"`
	Spool  *HealthSpool `json:"spool,omitempty"`
	Disk   HealthDisk   `json:"disk"`

	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// HealthModel identifies the loaded model.
type HealthModel struct {
	Name        string    `json:"name"`
	SHA256      string    `json:"sha256"`
	Kind        string    `json:"kind,omitempty"`
	Runtime     string    `json:"runtime,omitempty"`
	LoadedAt    time.Time `json:"loaded_at"`
	ReloadError string    `json:"reload_error,omitempty"`
}

// HealthEngine describes the supervised engine child.
type HealthEngine struct {
	Restarts  uint64 `json:"restarts"`
	Crashes   uint64 `json:"crashes"`
	Timeouts  uint64 `json:"timeouts"`
	BusyMS    int64  `json:"busy_ms"`
	LastError string `json:"last_error,omitempty"`
}

// HealthQueue is the backlog at a glance.
type HealthQueue struct {
	Depth      int            `json:"depth"`
	ByPriority map[string]int `json:"by_priority"`
	Leased     int            `json:"leased"`
	Delayed    int            `json:"delayed"`
	Dead       int            `json:"dead"`
	OldestAgeS float64        `json:"oldest_age_s"`
	Bytes      int64          `json:"bytes"`
	MaxJobs    int            `json:"max_jobs"`
	MaxBytes   int64          `json:"max_bytes"`
	Full       bool           `json:"full"`
	Expired    uint64         `json:"expired"`
	Damaged    uint64         `json:"damaged"`
	// RecoveredCommits > 0: the previous run did not close the queue (crash,
	// kill or power cut) and this many commits were applied again at start.
	RecoveredCommits int `json:"recovered_commits"`
}

// HealthJobs are outcomes since start, the recent rate and run latency.
type HealthJobs struct {
	Done      uint64  `json:"done"`
	Retried   uint64  `json:"retried"`
	Dead      uint64  `json:"dead"`
	PerMinute int     `json:"per_minute"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
}

// HealthOutbox is what waits to be published.
type HealthOutbox struct {
	Depth      int     `json:"depth"`
	OldestAgeS float64 `json:"oldest_age_s"`
}

// HealthMQTT is the broker connection.
type HealthMQTT struct {
	Connected  bool   `json:"connected"`
	Reconnects uint64 `json:"reconnects"`
	Published  uint64 `json:"published"`
	Rejected   uint64 `json:"rejected"`
	LastError  string `json:"last_error,omitempty"`
}

// HealthSpool is the directory watcher.
type HealthSpool struct {
	Taken     uint64 `json:"taken"`
	Refused   uint64 `json:"refused"`
	Pending   int    `json:"pending"`
	Overflows uint64 `json:"overflows"`
	LastError string `json:"last_error,omitempty"`
}

// HealthDisk is free space where the queue lives.
type HealthDisk struct {
	Path      string `json:"path"`
	FreeBytes uint64 `json:"free_bytes"`
}

// healthInputs is everything a health document is made from; gathering and shaping are
// split so the shaping is a pure function that golden files pin.
type healthInputs struct {
	seq       uint64
	node      string
	version   string
	now       time.Time
	startedAt time.Time
	model     infer.ModelInfo
	engine    engineStats
	queue     queue.Stats
	worker    workerSnapshot
	mqtt      *HealthMQTT
	spool     *HealthSpool
	disk      HealthDisk
	alive     error
}

// engineStats is the engine's supervision counters.
type engineStats struct {
	Restarts, Crashes, Timeouts uint64
	LastError                   string
}

func buildHealth(in healthInputs) Health {
	h := Health{
		Seq: in.seq, Node: in.node, Version: in.version, Time: in.now.UTC(),
		StartedAt: in.startedAt.UTC(), UptimeS: int64(in.now.Sub(in.startedAt) / time.Second),
		Model: HealthModel{Name: in.model.Name, SHA256: in.model.SHA256, Kind: in.model.Kind, Runtime: in.model.Runtime, LoadedAt: in.model.LoadedAt.UTC()},
		Engine: HealthEngine{Restarts: in.engine.Restarts, Crashes: in.engine.Crashes, Timeouts: in.engine.Timeouts,
			BusyMS: in.worker.Busy.Milliseconds(), LastError: in.engine.LastError},
		Queue: HealthQueue{
			Depth: in.queue.ReadyTotal, ByPriority: map[string]int{}, Leased: in.queue.Leased,
			Delayed: in.queue.Delayed, Dead: in.queue.Dead, OldestAgeS: in.queue.OldestReady.Seconds(),
			Bytes: in.queue.Bytes, MaxJobs: in.queue.MaxJobs, MaxBytes: in.queue.MaxBytes, Full: in.queue.Full,
			Expired: in.queue.Expired, Damaged: in.queue.Damaged, RecoveredCommits: in.queue.Recovered,
		},
		Jobs: HealthJobs{Done: in.worker.Done, Retried: in.worker.Retried, Dead: in.worker.Dead, PerMinute: in.worker.PerMinute,
			P50MS: ms(in.worker.P50), P90MS: ms(in.worker.P90), P99MS: ms(in.worker.P99)},
		Outbox: HealthOutbox{Depth: in.queue.Outbox, OldestAgeS: in.queue.OutboxOldest.Seconds()},
		MQTT:   in.mqtt, Spool: in.spool, Disk: in.disk,
	}
	for p, n := range in.queue.Ready {
		h.Queue.ByPriority[strconv.Itoa(p)] = n
	}
	if in.worker.ReloadErr != nil {
		h.Model.ReloadError = in.worker.ReloadErr.Error()
	}
	if in.worker.LastError != "" {
		t := in.worker.LastErrorAt.UTC()
		h.LastError, h.LastErrorAt = in.worker.LastError, &t
	}
	var failing, degraded []string
	if in.alive != nil {
		failing = append(failing, in.alive.Error())
	}
	if in.model.SHA256 == "" {
		p := "no model loaded"
		if in.worker.LoadErr != nil {
			p += ": " + in.worker.LoadErr.Error() + " (input is queued; retried every 30 s and on change)"
		}
		failing = append(failing, p)
	}
	if h.Queue.Full {
		degraded = append(degraded, fmt.Sprintf("queue full (%d jobs, %d bytes): new input is refused", in.queue.ReadyTotal+in.queue.Leased+in.queue.Delayed, in.queue.Bytes))
	}
	if h.Model.ReloadError != "" {
		degraded = append(degraded, "model reload failed: "+h.Model.ReloadError)
	}
	if in.mqtt != nil && !in.mqtt.Connected {
		degraded = append(degraded, "broker not connected: results wait in the outbox")
	}
	if in.queue.Damaged > 0 {
		degraded = append(degraded, fmt.Sprintf("%d damaged queue records set aside", in.queue.Damaged))
	}
	h.Status = HealthOK
	switch {
	case len(failing) > 0:
		h.Status = HealthFailing
	case len(degraded) > 0:
		h.Status = HealthDegraded
	}
	h.Problems = append(failing, degraded...)
	return h
}

func diskFree(path string) HealthDisk {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return HealthDisk{Path: path}
	}
	return HealthDisk{Path: path, FreeBytes: st.Bavail * uint64(st.Bsize)}
}
