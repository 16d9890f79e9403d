package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/spool"
	"gopkg.in/yaml.v3"
)

// Config is inferq's whole configuration. Start from DefaultConfig, overlay a YAML file
// with LoadConfig, then Validate. Every field has a working default except the model path.
type Config struct {
	// Node names this box in every MQTT topic; empty means the host name.
	Node string `yaml:"node"`
	// StateDir holds the queue (Badger), image blobs and claimed spool files.
	StateDir string `yaml:"state_dir"`
	// ControlSocket is the unix socket of the local control API used by the CLI.
	ControlSocket string `yaml:"control_socket"`
	// MemoryLimit is the soft limit of the daemon's Go memory (what GOMEMLIMIT
	// sets, which wins when present); 0 leaves Go's default. The engine child
	// is a separate process and is not counted.
	MemoryLimit ByteSize `yaml:"memory_limit"`

	Log     LogConfig     `yaml:"log"`
	Queue   QueueConfig   `yaml:"queue"`
	Worker  WorkerConfig  `yaml:"worker"`
	Model   ModelConfig   `yaml:"model"`
	Runtime RuntimeConfig `yaml:"runtime"`
	Spool   SpoolConfig   `yaml:"spool"`
	MQTT    MQTTConfig    `yaml:"mqtt"`
	Health  HealthConfig  `yaml:"health"`
	Metrics MetricsConfig `yaml:"metrics"`
}

// MetricsConfig configures the Prometheus endpoint (metrics.go).
type MetricsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Listen is host:port of GET /metrics; loopback by default.
	Listen string `yaml:"listen"`
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (JSON under systemd, text on a terminal), json, text
}

// QueueConfig bounds and tunes the durable queue.
type QueueConfig struct {
	MaxJobs      int           `yaml:"max_jobs"`
	MaxBytes     ByteSize      `yaml:"max_bytes"`
	MaxAttempts  int           `yaml:"max_attempts"`
	LeaseTimeout time.Duration `yaml:"lease_timeout"`
	BackoffBase  time.Duration `yaml:"backoff_base"`
	BackoffMax   time.Duration `yaml:"backoff_max"`
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// Done jobs' results are kept for `inferq job ID`: the newest ResultsKept (0: none),
	// within ResultsMaxBytes, for ResultMaxAge (at most dedupe_window).
	ResultsKept     int           `yaml:"results_kept"`
	ResultsMaxBytes ByteSize      `yaml:"results_max_bytes"`
	ResultMaxAge    time.Duration `yaml:"result_max_age"`
	// DefaultTTL is applied to jobs that carry no deadline of their own; 0 means none.
	DefaultTTL  time.Duration `yaml:"default_ttl"`
	SmallDevice bool          `yaml:"small_device"`
	// DiskReserve is the free space kept on state_dir's file system: below it new
	// input is refused while the backlog drains. 0: derived from the queue's
	// journal and memtable sizes (64 MiB with small_device).
	DiskReserve ByteSize `yaml:"disk_reserve"`
}

// WorkerConfig tunes the single inference worker.
type WorkerConfig struct {
	// JobTimeout bounds one inference run; a run past it kills the engine child.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// Overlap decodes and pre-processes the next job's image in the engine child while
	// the current job's model runs (one inference at a time all the same): the next job
	// is leased before the current one finishes, and a job that arrives meanwhile with a
	// higher priority still runs first.
	Overlap bool `yaml:"overlap"`
}

// ModelConfig describes the model and how to feed it and read it.
type ModelConfig struct {
	Path           string     `yaml:"path"`
	Labels         string     `yaml:"labels"`
	Kind           string     `yaml:"kind"` // classification, detection, raw
	TopK           int        `yaml:"top_k"`
	ScoreThreshold float32    `yaml:"score_threshold"`
	Normalize      string     `yaml:"normalize"` // "" (auto), 0_1, -1_1, mean_std, none
	Mean           [3]float32 `yaml:"mean"`
	Std            [3]float32 `yaml:"std"`
	Threads        int        `yaml:"threads"`
	Delegate       string     `yaml:"delegate"`
	// DelegateOptions are passed to the external delegate as key/value pairs.
	DelegateOptions map[string]string `yaml:"delegate_options"`
	MaxPixels       int64             `yaml:"max_pixels"`
	// Detection models: how the outputs are laid out (detector: "" auto, ssd_postprocess,
	// ssd_anchors, yolov5, yolov8), the anchor set of an ssd_anchors head (anchors: ""
	// auto, mediapipe_face_short, mediapipe_face_full), and the non-maximum suppression
	// inferq runs for ssd_anchors and YOLO (iou_threshold, 0: the detector's default;
	// nms: "" default, hard, weighted; max_detections, default 100).
	Detector      string  `yaml:"detector"`
	Anchors       string  `yaml:"anchors"`
	IoUThreshold  float32 `yaml:"iou_threshold"`
	NMS           string  `yaml:"nms"`
	MaxDetections int     `yaml:"max_detections"`
	// Reload watches the model file and swaps in a changed model between jobs.
	Reload bool `yaml:"reload"`
	// RawMaxBytes caps a raw result's JSON; 0: the outbox payload limit (256 KiB, with
	// the done event). Past it, RawOverLimit says what happens.
	RawMaxBytes ByteSize `yaml:"raw_max_bytes"`
	// RawOverLimit is "fail" (the job is dead-lettered with a failed result) or "summary"
	// (shapes, type and min/max/mean per output are published instead of the values).
	RawOverLimit string `yaml:"raw_over_limit"`
}

// engineConfig translates the model section for the engine (package infer).
func (m ModelConfig) engineConfig() infer.ModelConfig {
	return infer.ModelConfig{
		Path: m.Path, Labels: m.Labels, Kind: m.Kind, TopK: m.TopK,
		ScoreThreshold: m.ScoreThreshold, Normalize: m.Normalize,
		Mean: m.Mean, Std: m.Std, Threads: m.Threads,
		Delegate: m.Delegate, DelegateOptions: m.DelegateOptions, MaxPixels: m.MaxPixels,
		Detector: m.Detector, Anchors: m.Anchors, IoUThreshold: m.IoUThreshold, NMS: m.NMS, MaxDetections: m.MaxDetections,
	}
}

// update is the model section as the worker applies it at a reload.
func (m ModelConfig) update() modelUpdate {
	return modelUpdate{engine: m.engineConfig(), rawMax: int(m.RawMaxBytes), rawSummary: m.RawOverLimit == RawOverLimitSummary}
}

// What a raw result over model.raw_max_bytes becomes (ModelConfig.RawOverLimit).
const (
	RawOverLimitFail    = "fail"
	RawOverLimitSummary = "summary"
)

// RuntimeConfig says which runtime runs the model and where it is.
type RuntimeConfig struct {
	// Engine is tflite (a .tflite file) or tensorflow (a SavedModel directory; needs a
	// binary built with -tags tensorflow and libtensorflow).
	Engine string `yaml:"engine"`
	// Library is the TFLite C library to dlopen (for example libtensorflowlite_c.so).
	Library string `yaml:"library"`
	// Dir is a runtime closure made by packaging/fetch-tflite-runtime.sh: the engine child
	// runs under that closure's own dynamic loader.
	Dir string `yaml:"dir"`
	// Candidates are further TFLite C libraries (Google's 2.9.0 with XNNPACK from
	// packaging/fetch-tflite-npm.sh) that compete at load with the one above: each runs
	// MeasureInvokes timed invokes of the model and the fastest runs it; health says which
	// and the figures. Empty: the one library, unmeasured.
	Candidates     []string `yaml:"candidates"`
	MeasureInvokes int      `yaml:"measure_invokes"`
}

// SpoolSource gives a spool sub-directory (a camera) its priority.
type SpoolSource struct {
	Name     string `yaml:"name"`
	Priority int    `yaml:"priority"`
}

// SpoolConfig configures the directory watcher.
type SpoolConfig struct {
	Enabled         bool          `yaml:"enabled"`
	Dir             string        `yaml:"dir"`
	DoneDir         string        `yaml:"done_dir"` // empty: delete processed files
	FailedDir       string        `yaml:"failed_dir"`
	DefaultSource   string        `yaml:"default_source"`
	DefaultPriority int           `yaml:"default_priority"`
	Sources         []SpoolSource `yaml:"sources"`
	MaxFileSize     ByteSize      `yaml:"max_file_size"`
	SettleTime      time.Duration `yaml:"settle_time"`
	RescanInterval  time.Duration `yaml:"rescan_interval"`
	Extensions      []string      `yaml:"extensions"`
}

// MQTTConfig configures the broker connection, ingest, and the embedded broker.
type MQTTConfig struct {
	Enabled bool `yaml:"enabled"`
	// Broker is "external" (connect to Brokers) or "embedded" (run one on Embedded.Listen
	// and connect to it).
	Broker         string        `yaml:"broker"`
	Brokers        []string      `yaml:"brokers"`
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	PasswordFile   string        `yaml:"password_file"`
	TLS            MQTTTLSConfig `yaml:"tls"`
	Prefix         string        `yaml:"prefix"`
	KeepAlive      time.Duration `yaml:"keepalive"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	ReconnectMax   time.Duration `yaml:"reconnect_max"`
	Ingest         IngestConfig  `yaml:"ingest"`
	Embedded       EmbeddedMQTT  `yaml:"embedded"`
	// HomeAssistant announces the box to Home Assistant (homeassistant.go); Commands
	// takes remote commands on <prefix>/<node>/cmd/<verb> (commands.go). Both off by default.
	HomeAssistant HomeAssistantConfig `yaml:"homeassistant"`
	Commands      CommandsConfig      `yaml:"commands"`
}

// HomeAssistantConfig configures Home Assistant MQTT discovery.
type HomeAssistantConfig struct {
	Enabled bool `yaml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix; its status (birth) topic
	// is <DiscoveryPrefix>/status.
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// Sources get last-result sensors besides the spool's and ingest's configured ones.
	Sources []string `yaml:"sources"`
}

// CommandsConfig configures remote commands.
type CommandsConfig struct {
	Enabled bool `yaml:"enabled"`
	// SecretFile holds the shared key (trailing newlines removed, at least 16 bytes)
	// every request must be signed with (HMAC-SHA256).
	SecretFile string `yaml:"secret_file"`
	// AllowUnsigned takes unsigned requests when no secret_file is set: the broker's
	// ACL and Verbs are then the only checks. It must be said explicitly.
	AllowUnsigned bool `yaml:"allow_unsigned"`
	// Verbs are the commands this box takes (CommandVerbs by default).
	Verbs []string `yaml:"verbs"`
	// MaxAge refuses requests whose time is further than this from the box's clock
	// (a late redelivery, a replay); 0 turns the check off.
	MaxAge time.Duration `yaml:"max_age"`
}

// MQTTTLSConfig holds TLS material paths.
type MQTTTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// IngestConfig configures MQTT image ingest.
type IngestConfig struct {
	Enabled         bool           `yaml:"enabled"`
	Filters         []string       `yaml:"filters"`
	MaxPayload      ByteSize       `yaml:"max_payload"`
	DefaultPriority int            `yaml:"default_priority"`
	SourcePriority  map[string]int `yaml:"source_priority"`
}

// EmbeddedMQTT configures the broker inferq can run itself.
type EmbeddedMQTT struct {
	Listen string `yaml:"listen"`
}

// HealthConfig configures the health document.
type HealthConfig struct {
	Interval time.Duration `yaml:"interval"`
}

// DefaultConfig returns the configuration inferq runs with when a file sets nothing.
func DefaultConfig() Config {
	q := queue.DefaultOptions("") // the queue's own defaults, named once (in package queue)
	return Config{
		StateDir:      "/var/lib/inferq",
		ControlSocket: "/run/inferq/control.sock",
		MemoryLimit:   42 << 20,
		Log:           LogConfig{Level: "info", Format: "auto"},
		Queue: QueueConfig{
			MaxJobs:     100000,  // the queue itself has no limit by default; a box has one
			MaxBytes:    2 << 30, // (likewise)
			MaxAttempts: q.MaxAttempts, LeaseTimeout: q.LeaseTimeout,
			BackoffBase: q.BackoffBase, BackoffMax: q.BackoffMax, DedupeWindow: q.DedupeWindow,
			ResultsKept: q.ResultsKept, ResultsMaxBytes: ByteSize(q.ResultsMaxBytes), ResultMaxAge: q.ResultMaxAge,
			SmallDevice: q.SmallDevice,
		},
		Worker:  WorkerConfig{JobTimeout: 30 * time.Second, Overlap: true},
		Runtime: RuntimeConfig{Engine: "tflite", Candidates: []string{}, MeasureInvokes: 5},
		Model: ModelConfig{
			Kind:           "classification",
			TopK:           5,
			ScoreThreshold: 0,
			Normalize:      "", // auto
			Std:            [3]float32{1, 1, 1},
			Threads:        2,
			MaxPixels:      50_000_000,
			MaxDetections:  infer.DefaultMaxDetections,
			Reload:         true,
			RawOverLimit:   RawOverLimitFail,
		},
		Spool: SpoolConfig{
			Enabled:        true,
			Dir:            "/var/spool/inferq/incoming",
			FailedDir:      "/var/spool/inferq/failed",
			DefaultSource:  "spool",
			MaxFileSize:    64 << 20,
			SettleTime:     2 * time.Second,
			RescanInterval: time.Minute,
			Extensions:     []string{".jpg", ".jpeg", ".png"},
		},
		MQTT: MQTTConfig{
			Enabled:        true,
			Broker:         "external",
			Brokers:        []string{"tcp://127.0.0.1:1883"},
			Prefix:         "inferq",
			KeepAlive:      30 * time.Second,
			ConnectTimeout: 10 * time.Second,
			ReconnectMax:   time.Minute,
			Ingest:         IngestConfig{Enabled: true, MaxPayload: 16 << 20},
			Embedded:       EmbeddedMQTT{Listen: "127.0.0.1:1883"},
			HomeAssistant:  HomeAssistantConfig{DiscoveryPrefix: "homeassistant", Sources: []string{}},
			Commands:       CommandsConfig{Verbs: slices.Clone(CommandVerbs), MaxAge: 5 * time.Minute},
		},
		Health:  HealthConfig{Interval: 30 * time.Second},
		Metrics: MetricsConfig{Listen: "127.0.0.1:9464"},
	}
}

// LoadConfig reads a YAML file over DefaultConfig. Unknown fields are errors, so a typo
// is reported instead of silently ignored. Relative paths in the file are resolved
// against the file's directory. The result is not yet validated.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("cannot read config: %w", err)
	}
	if err := decodeConfig(data, &cfg); err != nil {
		return cfg, fmt.Errorf("cannot parse config %s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return cfg, fmt.Errorf("cannot resolve config directory: %w", err)
	}
	cfg.resolvePaths(base)
	return cfg, nil
}

func decodeConfig(data []byte, cfg *Config) error {
	var root yaml.Node
	// An empty file (io.EOF) means "no overrides".
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if root.Kind == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	// yaml says "line 7: cannot unmarshal !!str `lots` into int"; name the field too.
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		te = &yaml.TypeError{Errors: []string{err.Error()}}
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = m
		var line int
		if _, serr := fmt.Sscanf(m, "line %d:", &line); serr == nil {
			if field := fieldAtLine(&root, line, ""); field != "" {
				msgs[i] = "field " + field + ": " + m
				if um := unknownField.FindStringSubmatch(m); um != nil {
					if j := strings.LastIndex(field, "."+um[1]); j >= 0 {
						field = field[:j+1+len(um[1])] // the key, not an element of its value
					}
					msgs[i] = fmt.Sprintf("line %d: %s: unknown key%s", line, field, didYouMean(field, um[1]))
				}
			}
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type`)

// didYouMean suggests the known key nearest to key among those of the section that
// holds path ("model.topk" → " (did you mean top_k?)"), or lists them.
func didYouMean(path, key string) string {
	t := reflect.TypeOf(Config{})
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		if i := strings.IndexByte(p, '['); i >= 0 {
			p = p[:i]
		}
		f, ok := yamlField(t, p)
		if !ok {
			return ""
		}
		t = f.Type
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
	}
	var keys []string
	best, bestD := "", 3
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "") }
	for i := range t.NumField() {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, name)
		if d := editDistance(norm(key), norm(name)); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	return " (known keys: " + strings.Join(keys, ", ") + ")"
}

func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0] == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// editDistance is the edit distance of a and b, a swap of two neighbours counting
// as one edit (optimal string alignment).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// fieldAtLine returns the dotted path of the mapping key on (or whose value is on) line.
func fieldAtLine(n *yaml.Node, line int, path string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if f := fieldAtLine(c, line, path); f != "" {
				return f
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if f := fieldAtLine(v, line, p); f != "" {
				return f
			}
			if k.Line == line || (v.Kind == yaml.ScalarNode && v.Line == line) {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if f := fieldAtLine(c, line, fmt.Sprintf("%s[%d]", path, i)); f != "" {
				return f
			}
			if c.Kind == yaml.ScalarNode && c.Line == line {
				return fmt.Sprintf("%s[%d]", path, i)
			}
		}
	}
	return ""
}

func (c *Config) resolvePaths(base string) {
	for _, p := range []*string{
		&c.StateDir, &c.ControlSocket, &c.Model.Path, &c.Model.Labels, &c.Model.Delegate,
		&c.Runtime.Library, &c.Runtime.Dir, &c.Spool.Dir, &c.Spool.DoneDir, &c.Spool.FailedDir,
		&c.MQTT.PasswordFile, &c.MQTT.TLS.CAFile, &c.MQTT.TLS.CertFile, &c.MQTT.TLS.KeyFile,
		&c.MQTT.Commands.SecretFile,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i, p := range c.Runtime.Candidates {
		if p != "" && !filepath.IsAbs(p) {
			c.Runtime.Candidates[i] = filepath.Join(base, p)
		}
	}
}

// FieldError names the configuration field and the value that is wrong with it.
type FieldError struct {
	Field string
	Value any
	Why   string
}

// fieldErrors collects FieldErrors: bad adds one.
type fieldErrors []error

func (e *fieldErrors) bad(field string, value any, why string) {
	*e = append(*e, &FieldError{Field: field, Value: value, Why: why})
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("config field %s = %v: %s", e.Field, e.Value, e.Why)
}

var topicLevel = regexp.MustCompile(`^[^/#+\x00]+$`)

// Validate reports every invalid field, each naming the field and its value.
func (c *Config) Validate() error {
	var errs fieldErrors
	bad := errs.bad
	if c.Node != "" && !topicLevel.MatchString(c.Node) {
		bad("node", strconv.Quote(c.Node), "must be one MQTT topic level (no '/', '+', '#')")
	}
	if c.StateDir == "" {
		bad("state_dir", `""`, "must be set")
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 16<<20 {
		bad("memory_limit", c.MemoryLimit, "must be 0 (no limit) or at least 16MiB")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", strconv.Quote(c.Log.Level), "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		bad("log.format", strconv.Quote(c.Log.Format), "must be auto, json or text")
	}
	q := c.Queue
	positive := func(field string, v int64) {
		if v <= 0 {
			bad(field, v, "must be greater than 0")
		}
	}
	checkPriority := func(field string, p int) {
		if queue.CheckPriority(p) != nil {
			bad(field, p, fmt.Sprintf("must be between %d and %d", queue.MinPriority, queue.MaxPriority))
		}
	}
	positive("queue.max_jobs", int64(q.MaxJobs))
	if q.ResultsKept < 0 {
		bad("queue.results_kept", q.ResultsKept, "must be 0 (keep no results) or more")
	} else if q.ResultsKept > 0 {
		positive("queue.results_max_bytes", int64(q.ResultsMaxBytes))
		positive("queue.result_max_age", int64(q.ResultMaxAge))
		if q.ResultMaxAge > q.DedupeWindow {
			bad("queue.result_max_age", q.ResultMaxAge, "must not be longer than queue.dedupe_window: a result is shown only for a job still remembered as done")
		}
	}
	positive("queue.max_bytes", int64(q.MaxBytes))
	positive("queue.max_attempts", int64(q.MaxAttempts))
	positive("queue.lease_timeout", int64(q.LeaseTimeout))
	positive("queue.backoff_base", int64(q.BackoffBase))
	if q.BackoffMax < q.BackoffBase {
		bad("queue.backoff_max", q.BackoffMax, "must be at least queue.backoff_base")
	}
	if q.DiskReserve < 0 {
		bad("queue.disk_reserve", q.DiskReserve, "must not be negative (0: the default)")
	}
	if q.DefaultTTL < 0 {
		bad("queue.default_ttl", q.DefaultTTL, "must not be negative")
	}
	positive("worker.job_timeout", int64(c.Worker.JobTimeout))
	if c.Worker.JobTimeout >= q.LeaseTimeout {
		bad("worker.job_timeout", c.Worker.JobTimeout, "must be shorter than queue.lease_timeout")
	} else if c.Worker.Overlap && 2*c.Worker.JobTimeout >= q.LeaseTimeout {
		bad("worker.job_timeout", c.Worker.JobTimeout, "must be shorter than half of queue.lease_timeout with worker.overlap: the next job's lease is held while the current one runs")
	}
	switch c.Runtime.Engine {
	case "tflite", "tensorflow":
	default:
		bad("runtime.engine", strconv.Quote(c.Runtime.Engine), "must be tflite or tensorflow")
	}
	if n := c.Runtime.MeasureInvokes; n < 1 || n > 100 {
		bad("runtime.measure_invokes", n, "must be between 1 and 100")
	}
	for i, p := range c.Runtime.Candidates {
		if p == "" {
			bad(fmt.Sprintf("runtime.candidates[%d]", i), `""`, "must name a TFLite C library file")
		}
	}
	m := c.Model
	modelErrs := len(errs)
	if m.Path == "" {
		bad("model.path", `""`, "must name a .tflite model file (or a SavedModel directory with runtime.engine tensorflow)")
	}
	if !slices.Contains(infer.Kinds, m.Kind) {
		bad("model.kind", strconv.Quote(m.Kind), "must be one of "+strings.Join(infer.Kinds, ", "))
	}
	if m.TopK < 1 {
		bad("model.top_k", m.TopK, "must be at least 1")
	}
	if m.ScoreThreshold < 0 || m.ScoreThreshold > 1 {
		bad("model.score_threshold", m.ScoreThreshold, "must be between 0 and 1")
	}
	switch m.Normalize {
	case "", "0_1", "-1_1", "none":
	case "mean_std":
		for i, s := range m.Std {
			if s == 0 {
				bad(fmt.Sprintf("model.std[%d]", i), s, "must not be 0 with normalize mean_std")
			}
		}
	default:
		bad("model.normalize", strconv.Quote(m.Normalize), `must be 0_1, -1_1, mean_std, none or "" (auto)`)
	}
	if m.RawMaxBytes < 0 || m.RawMaxBytes > OutboxPayloadLimit {
		bad("model.raw_max_bytes", int64(m.RawMaxBytes), fmt.Sprintf("must be between 0 (the outbox limit) and %d", OutboxPayloadLimit))
	}
	if m.RawOverLimit != RawOverLimitFail && m.RawOverLimit != RawOverLimitSummary {
		bad("model.raw_over_limit", strconv.Quote(m.RawOverLimit), "must be fail or summary")
	}
	if m.Threads < 1 || m.Threads > 64 {
		bad("model.threads", m.Threads, "must be between 1 and 64")
	}
	positive("model.max_pixels", m.MaxPixels)
	if len(errs) == modelErrs {
		// What only the engine knows how to check (detector, anchors, NMS), as loading
		// the model would: once the fields above are right, so nothing is said twice.
		if err := m.engineConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	s := c.Spool
	if s.Enabled {
		if s.Dir == "" {
			bad("spool.dir", `""`, "must be set when spool.enabled")
		}
		if s.FailedDir == "" {
			bad("spool.failed_dir", `""`, "must be set when spool.enabled")
		}
		if !topicLevel.MatchString(s.DefaultSource) {
			bad("spool.default_source", strconv.Quote(s.DefaultSource), "must be one MQTT topic level")
		}
		checkPriority("spool.default_priority", s.DefaultPriority)
		seen := map[string]bool{}
		for i, src := range s.Sources {
			f := fmt.Sprintf("spool.sources[%d]", i)
			if !topicLevel.MatchString(src.Name) || strings.HasPrefix(src.Name, ".") {
				bad(f+".name", strconv.Quote(src.Name), "must be a plain directory name and one MQTT topic level")
			}
			if seen[src.Name] {
				bad(f+".name", strconv.Quote(src.Name), "is listed twice")
			}
			seen[src.Name] = true
			checkPriority(f+".priority", src.Priority)
		}
		positive("spool.max_file_size", int64(s.MaxFileSize))
		positive("spool.settle_time", int64(s.SettleTime))
		positive("spool.rescan_interval", int64(s.RescanInterval))
	}
	mq := c.MQTT
	if mq.Enabled {
		switch mq.Broker {
		case "external":
			if len(mq.Brokers) == 0 {
				bad("mqtt.brokers", "[]", "must list at least one broker URL with mqtt.broker external")
			}
			for i, b := range mq.Brokers {
				if !strings.Contains(b, "://") {
					bad(fmt.Sprintf("mqtt.brokers[%d]", i), strconv.Quote(b), "must be a URL such as tcp://host:1883, ssl://host:8883 or ws://host/mqtt")
				}
			}
		case "embedded":
			if mq.Embedded.Listen == "" {
				bad("mqtt.embedded.listen", `""`, "must be host:port with mqtt.broker embedded")
			}
		default:
			bad("mqtt.broker", strconv.Quote(mq.Broker), "must be external or embedded")
		}
		if !topicLevel.MatchString(mq.Prefix) {
			bad("mqtt.prefix", strconv.Quote(mq.Prefix), "must be one MQTT topic level")
		}
		positive("mqtt.keepalive", int64(mq.KeepAlive))
		positive("mqtt.connect_timeout", int64(mq.ConnectTimeout))
		positive("mqtt.reconnect_max", int64(mq.ReconnectMax))
		if (mq.TLS.CertFile == "") != (mq.TLS.KeyFile == "") {
			bad("mqtt.tls.cert_file", strconv.Quote(mq.TLS.CertFile), "cert_file and key_file go together")
		}
		if mq.Ingest.Enabled {
			positive("mqtt.ingest.max_payload", int64(mq.Ingest.MaxPayload))
			checkPriority("mqtt.ingest.default_priority", mq.Ingest.DefaultPriority)
			for src, p := range mq.Ingest.SourcePriority {
				checkPriority("mqtt.ingest.source_priority."+src, p)
			}
		}
		errs = append(errs, mq.HomeAssistant.check()...)
		errs = append(errs, mq.Commands.check()...)
	}
	if c.Health.Interval < time.Second {
		bad("health.interval", c.Health.Interval, "must be at least 1s")
	}
	if c.Metrics.Enabled {
		if err := checkListen(c.Metrics.Listen); err != nil {
			bad("metrics.listen", strconv.Quote(c.Metrics.Listen), err.Error())
		}
	}
	for _, f := range []struct{ field, path string }{
		{"model.labels", m.Labels}, {"mqtt.password_file", mq.PasswordFile},
		{"mqtt.tls.ca_file", mq.TLS.CAFile}, {"mqtt.tls.cert_file", mq.TLS.CertFile},
		{"mqtt.tls.key_file", mq.TLS.KeyFile}, {"mqtt.commands.secret_file", mq.Commands.SecretFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad(f.field, strconv.Quote(f.path), "cannot be read: "+unwrapPathError(err))
		}
	}
	if len(errs) == 0 {
		// The components' own checks, on what they would be given: only once the
		// fields above hold, so that one mistake is not reported twice.
		errs = append(errs, c.componentErrors()...)
	}
	return errors.Join(errs...)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ByteSize is a size in bytes that YAML may give as a number or as "64MiB", "2GB", "512k".
type ByteSize int64

// UnmarshalYAML accepts plain integers and integers with a unit suffix.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the size as it would be written by hand: "42MiB", "2GiB", or a plain
// number of bytes when no unit divides it.
func (b ByteSize) MarshalYAML() (any, error) {
	n := int64(b)
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name), nil
		}
	}
	return n, nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
}

// ParseByteSize parses "1048576", "64MiB", "2 GB" and the like.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cannot parse size %q: want a number with an optional unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("cannot parse size %q: unknown unit %q", s, strings.TrimSpace(t[i:]))
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("cannot parse size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// The components' own configurations, translated from this one in one place each, so
// that `inferq config check` runs the very checks `inferq run` does.

// spoolConfig is the spool watcher's configuration.
func (c Config) spoolConfig() spool.Config {
	sc := c.Spool
	src := make([]spool.SourceConfig, 0, len(sc.Sources))
	for _, s := range sc.Sources {
		src = append(src, spool.SourceConfig{Name: s.Name, Priority: s.Priority})
	}
	return spool.Config{
		Dir: sc.Dir, ClaimDir: filepath.Join(c.StateDir, "claimed"), DoneDir: sc.DoneDir, FailedDir: sc.FailedDir,
		DefaultSource: sc.DefaultSource, DefaultPriority: sc.DefaultPriority, Sources: src,
		MaxFileSize: int64(sc.MaxFileSize), SettleTime: sc.SettleTime, RescanInterval: sc.RescanInterval,
		Extensions: sc.Extensions,
	}
}

// clientID is the MQTT client id: mqtt.client_id, else "inferq-<node>".
func (c Config) clientID(node string) string {
	if c.MQTT.ClientID != "" {
		return c.MQTT.ClientID
	}
	return "inferq-" + node
}

// mqttConfig is the MQTT client's configuration for node, connecting to brokers.
func (c Config) mqttConfig(node string, brokers []string, clientID string) mqtt.Config {
	mc := c.MQTT
	return mqtt.Config{
		Brokers: brokers, ClientID: clientID, Username: mc.Username, PasswordFile: mc.PasswordFile,
		TLS: mqtt.TLSConfig{CAFile: mc.TLS.CAFile, CertFile: mc.TLS.CertFile, KeyFile: mc.TLS.KeyFile,
			ServerName: mc.TLS.ServerName, InsecureSkipVerify: mc.TLS.InsecureSkipVerify},
		Prefix: mc.Prefix, Node: node, KeepAlive: mc.KeepAlive, ConnectTimeout: mc.ConnectTimeout,
		ReconnectMax: mc.ReconnectMax, IngestEnabled: mc.Ingest.Enabled, IngestFilters: mc.Ingest.Filters,
		MaxPayload: int(mc.Ingest.MaxPayload), DefaultPriority: mc.Ingest.DefaultPriority,
		SourcePriority: mc.Ingest.SourcePriority,
	}
}

// componentErrors runs the components' own checks on their translated configurations
// (what `inferq run` would refuse only once it got there).
func (c Config) componentErrors() []error {
	var errs []error
	if c.MQTT.Enabled {
		node := c.Node
		if node == "" {
			node = "node" // the host name at run time: any valid level checks the rest
		}
		brokers := c.MQTT.Brokers
		if c.MQTT.Broker == "embedded" {
			brokers = []string{"tcp://" + c.MQTT.Embedded.Listen}
		}
		if err := c.mqttConfig(node, brokers, c.clientID(node)).Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Spool.Enabled {
		if err := c.spoolConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
