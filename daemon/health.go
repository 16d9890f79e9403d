package daemon

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/spool"
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
	Seq uint64 `json:"seq"`
	// BootID is new at every start; Seq grows across restarts (bootseq.go).
	BootID    string    `json:"boot_id,omitempty"`
	Node      string    `json:"node"`
	Version   string    `json:"version"`
	Status    string    `json:"status"`
	Problems  []string  `json:"problems,omitempty"`
	Time      time.Time `json:"time"`
	StartedAt time.Time `json:"started_at"`
	UptimeS   int64     `json:"uptime_s"`
	// IntervalS is health.interval: a document older than a few of them is stale.
	IntervalS float64 `json:"interval_s"`

	Model  HealthModel  `json:"model"`
	Engine HealthEngine `json:"engine"`
	Queue  HealthQueue  `json:"queue"`
	Jobs   HealthJobs   `json:"jobs"`
	Outbox HealthOutbox `json:"outbox"`
	MQTT   *HealthMQTT  `json:"mqtt,omitempty"`
	Spool  *HealthSpool `json:"spool,omitempty"`
	Disk   HealthDisk   `json:"disk"`
	// Paused is what an operator paused (inferq pause), kept across restarts.
	Paused *PauseState `json:"paused,omitempty"`

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
	// Input says how pixels become the input tensor (infer.ModelInfo.InputConvention);
	// LabelsFormat which labels file format was read (one_per_line or id_label).
	Input        string `json:"input,omitempty"`
	LabelsFormat string `json:"labels_format,omitempty"`
	// The model as the runtime sees it: tensors (shape, type, quantization), the labels
	// read, the runtime's version and the delegate in use or why not.
	Inputs         []infer.TensorInfo `json:"inputs,omitempty"`
	Outputs        []infer.TensorInfo `json:"outputs,omitempty"`
	Labels         int                `json:"labels,omitempty"`
	RuntimeVersion string             `json:"runtime_version,omitempty"`
	Delegate       string             `json:"delegate,omitempty"`
	DelegateError  string             `json:"delegate_error,omitempty"`
	// Decoder is the JPEG decoder in the engine (libjpeg-turbo, or Go's and why);
	// Detector how a detection model's outputs are decoded, with its thresholds;
	// LabelsSource where the labels came from (model.labels or the model's metadata).
	Decoder      string `json:"decoder,omitempty"`
	Detector     string `json:"detector,omitempty"`
	LabelsSource string `json:"labels_source,omitempty"`
	// TFLite is the TFLite library running the model, how it was chosen (with each
	// candidate's measured invokes), XNNPACK in use or why not, and whether a run past
	// its deadline is cancelled in the engine child.
	TFLite *infer.TFLiteInfo `json:"tflite,omitempty"`
}

// HealthEngine describes the supervised engine child. LastError is the
// engine's error while it is current; once the engine worked again (a run
// returned a result, a model loaded) it is shown as PastError instead.
type HealthEngine struct {
	Restarts    uint64     `json:"restarts"`
	Crashes     uint64     `json:"crashes"`
	Timeouts    uint64     `json:"timeouts"`
	BusyMS      int64      `json:"busy_ms"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	PastError   string     `json:"past_error,omitempty"`
	PastErrorAt *time.Time `json:"past_error_at,omitempty"`
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

// HealthMQTT is the broker connection and MQTT ingest. Refused counts
// ingest messages refused for good (malformed, too large, bad id or source:
// acked, dropped, a "rejected" event with retry=false), with the last
// reason; Rejected counts ingest submits that failed transiently (queue full
// or failing: not acked, retried; one message may count several times).
// LastError is the current error; once that part works again it moves to
// PastError.
type HealthMQTT struct {
	Connected     bool       `json:"connected"`
	Reconnects    uint64     `json:"reconnects"`
	Published     uint64     `json:"published"`
	Refused       uint64     `json:"refused"`
	LastRefused   string     `json:"last_refused,omitempty"`
	LastRefusedAt *time.Time `json:"last_refused_at,omitempty"`
	Rejected      uint64     `json:"rejected"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	PastError     string     `json:"past_error,omitempty"`
	PastErrorAt   *time.Time `json:"past_error_at,omitempty"`
}

// HealthSpool is the directory watcher. Refused counts files refused before
// becoming jobs (to failed/ with a sidecar), with the last reason; Unmovable
// is how many of them could not be moved and stay where they are. Waiting
// is how many files have sat unchanged in the spool longer than settle_time
// without being taken (WaitingEmpty of them empty), the oldest for
// OldestWaitingS seconds. ArchiveFailures counts finished jobs whose image
// could not be filed into done/ or failed/. Paused: the queue is full or
// failing and no new files are claimed (Pending claimed files wait).
type HealthSpool struct {
	Taken              uint64     `json:"taken"`
	Refused            uint64     `json:"refused"`
	LastRefused        string     `json:"last_refused,omitempty"`
	LastRefusedAt      *time.Time `json:"last_refused_at,omitempty"`
	Unmovable          int        `json:"unmovable"`
	Waiting            int        `json:"waiting"`
	WaitingEmpty       int        `json:"waiting_empty"`
	OldestWaitingS     float64    `json:"oldest_waiting_s"`
	ArchiveFailures    uint64     `json:"archive_failures"`
	LastArchiveError   string     `json:"last_archive_error,omitempty"`
	LastArchiveErrorAt *time.Time `json:"last_archive_error_at,omitempty"`
	Paused             bool       `json:"paused"`
	Pending            int        `json:"pending"`
	Overflows          uint64     `json:"overflows"`
	LastError          string     `json:"last_error,omitempty"`
}

// HealthDisk is free space where the queue lives, and what the queue does about it:
// below ReserveBytes new input is refused (Full) while the backlog drains; below a
// quarter of it nothing more is leased either (LeasesHeld). Volatile names a tmpfs or
// ramfs under state_dir: nothing queued there survives a reboot.
type HealthDisk struct {
	Path         string `json:"path"`
	FreeBytes    uint64 `json:"free_bytes"`
	ReserveBytes int64  `json:"reserve_bytes"`
	Full         bool   `json:"full"`
	LeasesHeld   bool   `json:"leases_held,omitempty"`
	Refused      uint64 `json:"refused"`
	Volatile     string `json:"volatile,omitempty"`
}

// healthInputs is everything a health document is made from; gathering and shaping are
// split so the shaping is a pure function that golden files pin.
type healthInputs struct {
	seq       uint64
	bootID    string
	interval  time.Duration
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
	paused    PauseState
}

// engineStats is the engine's supervision counters.
type engineStats struct {
	Restarts, Crashes, Timeouts uint64
	LastError                   string
	LastErrorAt                 time.Time
}

// recentWindow is how long a refusal or an archive failure stays in
// problems after the last one: long enough to be seen, short enough that
// one bad file does not mark the box degraded for good (the counts stay).
const recentWindow = time.Hour

// timePtr is t in UTC, or nil for the zero time (omitted from the JSON).
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// mqttHealth shapes the MQTT client's stats for health.
func mqttHealth(s mqtt.Stats) *HealthMQTT {
	return &HealthMQTT{Connected: s.Connected, Reconnects: s.Reconnects, Published: s.Published,
		Refused: s.Refused, LastRefused: s.LastRefused, LastRefusedAt: timePtr(s.LastRefusedAt), Rejected: s.Rejected,
		LastError: s.LastError, LastErrorAt: timePtr(s.LastErrorAt), PastError: s.PastError, PastErrorAt: timePtr(s.PastErrorAt)}
}

// spoolHealth shapes the spool watcher's stats for health.
func spoolHealth(s spool.Stats) *HealthSpool {
	return &HealthSpool{Taken: s.Taken, Refused: s.Refused, LastRefused: s.LastRefused, LastRefusedAt: timePtr(s.LastRefusedAt),
		Unmovable: s.Unmovable, Waiting: s.Waiting, WaitingEmpty: s.WaitingEmpty, OldestWaitingS: s.OldestWaiting.Round(time.Second).Seconds(),
		ArchiveFailures: s.ArchiveFailures, LastArchiveError: s.LastArchiveError, LastArchiveErrorAt: timePtr(s.LastArchiveErrorAt),
		Paused: s.Paused, Pending: s.Pending, Overflows: s.Overflows, LastError: s.LastError}
}

// engineHealth shows the engine's last error as current until the engine
// worked after it (okAt: the last run with a result or model load).
func engineHealth(e engineStats, busy time.Duration, okAt time.Time) HealthEngine {
	h := HealthEngine{Restarts: e.Restarts, Crashes: e.Crashes, Timeouts: e.Timeouts, BusyMS: busy.Milliseconds()}
	if e.LastError == "" {
		return h
	}
	if !okAt.IsZero() && !e.LastErrorAt.IsZero() && okAt.After(e.LastErrorAt) {
		h.PastError, h.PastErrorAt = e.LastError, timePtr(e.LastErrorAt)
	} else {
		h.LastError, h.LastErrorAt = e.LastError, timePtr(e.LastErrorAt)
	}
	return h
}

func buildHealth(in healthInputs) Health {
	h := Health{
		Seq: in.seq, BootID: in.bootID, IntervalS: in.interval.Seconds(), Node: in.node, Version: in.version, Time: in.now.UTC(),
		StartedAt: in.startedAt.UTC(), UptimeS: int64(in.now.Sub(in.startedAt) / time.Second),
		Model: HealthModel{Name: in.model.Name, SHA256: in.model.SHA256, Kind: in.model.Kind, Runtime: in.model.Runtime, LoadedAt: in.model.LoadedAt.UTC(),
			Input: in.model.InputConvention, LabelsFormat: in.model.LabelsFormat,
			Inputs: in.model.Inputs, Outputs: in.model.Outputs, Labels: in.model.Labels, RuntimeVersion: in.model.Version,
			Delegate: in.model.Delegate, DelegateError: in.model.DelegateError,
			Decoder: in.model.Decoder, Detector: in.model.Detector, LabelsSource: in.model.LabelsSource, TFLite: in.model.TFLite},
		Engine: engineHealth(in.engine, in.worker.Busy, in.worker.EngineOKAt),
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
	h.Disk.ReserveBytes, h.Disk.Full, h.Disk.LeasesHeld = in.queue.DiskReserve, in.queue.DiskFull, in.queue.LeasesHeld
	h.Disk.Refused, h.Disk.Volatile = in.queue.DiskRefused, in.queue.Volatile
	if in.queue.DiskFree >= 0 { // the queue's own look: what it can use (root may use ext4's reserved blocks)
		h.Disk.FreeBytes = uint64(in.queue.DiskFree)
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
	free := func() string {
		return fmt.Sprintf("%s free, reserve %s", mibString(in.queue.DiskFree), mibString(in.queue.DiskReserve))
	}
	switch {
	case in.queue.LeasesHeld:
		failing = append(failing, "disk full: "+free()+": new input refused and processing paused until space returns; results still go out")
	case in.queue.DiskFull:
		degraded = append(degraded, "disk nearly full: "+free()+": new input is refused while the backlog drains")
	case h.Queue.Full:
		degraded = append(degraded, fmt.Sprintf("queue full (%d jobs, %d bytes): new input is refused", in.queue.ReadyTotal+in.queue.Leased+in.queue.Delayed, in.queue.Bytes))
	}
	if in.paused.Intake || in.paused.Worker {
		p := in.paused
		h.Paused = &p
	}
	if in.paused.Intake {
		degraded = append(degraded, "intake paused by an operator: new input waits (inferq resume intake)")
	}
	if in.paused.Worker {
		degraded = append(degraded, "worker paused by an operator: queued jobs wait (inferq resume worker)")
	}
	if in.queue.Volatile != "" {
		degraded = append(degraded, fmt.Sprintf("state_dir is on %s: nothing queued survives a reboot or power cut", in.queue.Volatile))
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
	degraded = append(degraded, spoolProblems(in.spool, in.now)...)
	degraded = append(degraded, mqttProblems(in.mqtt, in.now)...)
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

// mibString shows a byte count in MiB with one decimal.
func mibString(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// recent reports whether t is set and within recentWindow before now.
func recent(t *time.Time, now time.Time) bool {
	return t != nil && now.Sub(*t) < recentWindow
}

// spoolProblems are the spool's entries in problems: a pause, files that
// cannot be moved, files waiting, and recent refusals and archive failures.
func spoolProblems(s *HealthSpool, now time.Time) []string {
	if s == nil {
		return nil
	}
	var p []string
	if s.Paused {
		msg := fmt.Sprintf("spool paused: the queue takes no files, %d claimed files wait", s.Pending)
		if s.LastError != "" {
			msg += ": " + s.LastError
		}
		p = append(p, msg)
	}
	if s.Unmovable > 0 {
		p = append(p, fmt.Sprintf("spool: %d refused files could not be moved to the failed directory and stay where they are (retried)", s.Unmovable))
	}
	if s.Waiting > 0 {
		p = append(p, fmt.Sprintf("spool: %d files waiting longer than settle_time (%d empty), oldest %.0f s", s.Waiting, s.WaitingEmpty, s.OldestWaitingS))
	}
	if s.Refused > 0 && recent(s.LastRefusedAt, now) {
		p = append(p, fmt.Sprintf("spool: %d files refused, last: %s", s.Refused, s.LastRefused))
	}
	if s.ArchiveFailures > 0 && recent(s.LastArchiveErrorAt, now) {
		p = append(p, fmt.Sprintf("spool: %d finished images could not be archived, last: %s", s.ArchiveFailures, s.LastArchiveError))
	}
	return p
}

// mqttProblems are MQTT ingest's entries in problems: recent refusals.
func mqttProblems(m *HealthMQTT, now time.Time) []string {
	if m == nil || m.Refused == 0 || !recent(m.LastRefusedAt, now) {
		return nil
	}
	return []string{fmt.Sprintf("mqtt: %d ingest messages refused, last: %s", m.Refused, m.LastRefused)}
}

func diskFree(path string) HealthDisk {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return HealthDisk{Path: path}
	}
	return HealthDisk{Path: path, FreeBytes: st.Bavail * uint64(st.Bsize)}
}
