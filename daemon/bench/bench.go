package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// Target is the model under test and how the daemon runs it, as Run and Latency both
// take it.
type Target struct {
	// Model is a .tflite file. Run generates the ~80 MFLOP 224×224 demo classifier when
	// it is empty (conv 3×3/2 → depthwise → conv 1×1 → mean → fully connected 1000 →
	// softmax); Latency requires it.
	Model  string
	Kind   string // classification (default), detection or raw
	Labels string // optional labels file
	// Threads are the inference threads (model.threads); 0 means 1.
	Threads int
	Runtime infer.RuntimeConfig
	// Sequential turns the daemon's worker.overlap off: each job's decode waits for the
	// previous job's inference (to compare with the default, overlapped).
	Sequential bool
}

// defaults fills in the kind and the threads.
func (t *Target) defaults() {
	if t.Threads <= 0 {
		t.Threads = 1
	}
	if t.Kind == "" {
		t.Kind = "classification"
	}
}

// daemonConfig is the daemon configuration both runs start from: node, its state and
// control socket in dir, the model and runtime under test (top 5, the model file not
// watched), worker.overlap unless Sequential.
func (t Target) daemonConfig(node, dir string) daemon.Config {
	c := daemon.DefaultConfig()
	c.Node = node
	c.StateDir = filepath.Join(dir, "state")
	c.ControlSocket = filepath.Join(dir, "control.sock")
	c.Model.Path, c.Model.Labels, c.Model.Kind = t.Model, t.Labels, t.Kind
	c.Model.Threads, c.Model.TopK, c.Model.Reload = t.Threads, 5, false
	c.Runtime.Dir, c.Runtime.Library = t.Runtime.RuntimeDir, t.Runtime.Library
	c.Worker.Overlap = !t.Sequential
	return c
}

// Config configures Run.
type Config struct {
	Target
	// EngineCommand starts the engine child (e.g. [inferq, "engine-child"]); EngineEnv is
	// added to its environment. The daemon's child is started the same way.
	EngineCommand []string
	EngineEnv     []string
	// Images are the inputs; nil: 16 generated 640×480 JPEGs (Images).
	Images [][]byte
	// Rounds is the number of measured rounds of each mode (default 15), after one
	// warm-up round of each that is not counted; Jobs the images per round (default 20).
	Rounds int
	Jobs   int
	// Dir is scratch space (the generated model, the daemon's state); it must exist.
	Dir    string
	Logger *slog.Logger
}

// Result holds the rates, in jobs per second, as medians over rounds with their spread.
type Result struct {
	Model   ModelDesc `json:"model"`
	Threads int       `json:"threads"`
	Rounds  int       `json:"rounds"`
	Jobs    int       `json:"jobs_per_round"`
	Images  ImageDesc `json:"images"`

	// InvokeOnly is the rate the model's invoke alone allows (the engine child's own
	// timing of the runtime's invoke, over the sequential rounds' runs): the limit.
	InvokeOnly Summary `json:"invoke_only"`
	// DecodePreprocess is the rate of the child's decode + preprocess alone.
	DecodePreprocess Summary `json:"decode_preprocess"`
	// Sequential is decode + invoke back to back through infer.Supervisor (wall time).
	Sequential Summary `json:"sequential"`
	// Daemon is the daemon's own rate from durable enqueue to acked result.
	Daemon Summary `json:"daemon"`
	// DaemonInvokeOnly is the invoke-only rate of the daemon's own engine child, from the
	// timings in the results of the daemon rounds' jobs (a check on InvokeOnly).
	DaemonInvokeOnly Summary `json:"daemon_invoke_only"`
	// Enqueue is durable enqueues per second through the control socket, one at a time.
	Enqueue Summary `json:"enqueue"`
	// ResumeToStartMS is the time from the resume request to the first job's start
	// (the paused worker's poll), excluded from Daemon.
	ResumeToStartMS Summary `json:"resume_to_start_ms"`
	// DaemonJobs counts the done jobs the daemon rounds saw (warm-up included); every
	// round checked it saw exactly its own jobs done, none retried or dead.
	DaemonJobs int `json:"daemon_jobs"`
	// SequentialJobs counts the sequential rounds' runs (warm-up included).
	SequentialJobs int    `json:"sequential_jobs"`
	EngineRestarts uint64 `json:"engine_restarts"`
	// Headline is Daemon.Median / InvokeOnly.Median.
	Headline float64 `json:"headline_daemon_invoke_only"`
	// DaemonSequential is Daemon.Median / Sequential.Median.
	DaemonSequential float64 `json:"daemon_sequential"`
	// The headline's two factors: DaemonOwnInvoke is Daemon.Median /
	// DaemonInvokeOnly.Median (what the daemon adds around its child's invokes: round
	// trips, commits, each round's first and last job); OwnInvokeIdle is
	// DaemonInvokeOnly.Median / InvokeOnly.Median (how fast the daemon's child invokes,
	// with the next image decoded beside it, against the bench's idle child).
	DaemonOwnInvoke float64 `json:"daemon_own_invoke"`
	OwnInvokeIdle   float64 `json:"own_invoke_idle"`
	// Latency is set when a latency run followed (Latency).
	Latency *LatencyResult `json:"latency,omitempty"`
}

// ModelDesc identifies the model measured.
type ModelDesc struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Kind    string `json:"kind"`
	FLOPs   int64  `json:"flops,omitempty"` // for the generated model
	Runtime string `json:"runtime"`
	Version string `json:"version"`
	Decoder string `json:"decoder"`
	Input   string `json:"input"`
}

// ImageDesc describes the inputs.
type ImageDesc struct {
	Count     int  `json:"count"`
	MeanBytes int  `json:"mean_bytes"`
	Generated bool `json:"generated"`
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("bench: Config.Dir is required")
	}
	if len(c.EngineCommand) == 0 {
		return errors.New("bench: Config.EngineCommand is required")
	}
	if c.Rounds <= 0 {
		c.Rounds = 15
	}
	if c.Jobs <= 0 {
		c.Jobs = 20
	}
	c.Target.defaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// DemoModel writes the generated demo classifier into dir and returns its path and
// FLOPs per inference.
func DemoModel(dir string) (string, int64, error) {
	net := tflitegen.NewClassifierNet(224, 224, 16, 160, 1000, 1)
	path := filepath.Join(dir, "demo-80mflop.tflite")
	if err := os.WriteFile(path, net.Model(), 0o644); err != nil {
		return "", 0, fmt.Errorf("cannot write bench model: %w", err)
	}
	return path, net.FLOPs(), nil
}

// modelConfig is the engine's model section for cfg (Model set).
func (c *Config) modelConfig() infer.ModelConfig {
	m := infer.ModelConfig{Path: c.Model, Labels: c.Labels, Kind: c.Kind, TopK: 5,
		Std: [3]float32{1, 1, 1}, Threads: c.Threads, MaxPixels: 50_000_000}
	return m
}

// Run measures the four rates (see the package documentation), interleaving its rounds:
// one warm-up round of each mode, then Rounds rounds of each, the order of the two
// kinds of round alternating so that a drift of the machine's speed touches both alike.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Threads: cfg.Threads, Rounds: cfg.Rounds, Jobs: cfg.Jobs}
	if cfg.Model == "" {
		path, flops, err := DemoModel(cfg.Dir)
		if err != nil {
			return nil, err
		}
		cfg.Model, res.Model.FLOPs = path, flops
	}
	res.Images.Generated = cfg.Images == nil
	if cfg.Images == nil {
		imgs, err := Images(16)
		if err != nil {
			return nil, err
		}
		cfg.Images = imgs
	}
	res.Images.Count, res.Images.MeanBytes = len(cfg.Images), meanSize(cfg.Images)

	eng, err := infer.NewSupervisor(infer.SupervisorConfig{
		Command: cfg.EngineCommand, Env: cfg.EngineEnv, Runtime: cfg.Runtime,
		Model: cfg.modelConfig(), Logger: cfg.Logger.With("component", "bench-engine"),
	})
	if err != nil {
		return nil, err
	}
	if err := eng.Open(ctx); err != nil {
		return nil, fmt.Errorf("cannot start engine: %w", err)
	}
	defer eng.Close()
	info := eng.Info()
	res.Model.Name, res.Model.Path, res.Model.SHA256, res.Model.Kind = info.Name, cfg.Model, info.SHA256, info.Kind
	res.Model.Runtime, res.Model.Version, res.Model.Decoder = info.Runtime, info.Version, info.Decoder
	if len(info.Inputs) > 0 {
		res.Model.Input = info.Inputs[0].String()
	}

	h, err := startDaemon(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer h.close()

	var seq []seqSample
	var dmn []daemonSample
	for r := range cfg.Rounds + 1 { // round 0 warms up
		runSeq := func() error {
			s, err := seqRound(ctx, eng, cfg.Images, cfg.Jobs, r)
			if err != nil {
				return err
			}
			res.SequentialJobs += cfg.Jobs
			if r > 0 {
				seq = append(seq, s)
			}
			return nil
		}
		runDaemon := func() error {
			s, err := h.round(ctx, r, cfg.Images, cfg.Jobs)
			if err != nil {
				return fmt.Errorf("daemon round %d: %w", r, err)
			}
			res.DaemonJobs += s.done
			if r > 0 {
				dmn = append(dmn, s)
			}
			return nil
		}
		first, second := runSeq, runDaemon
		if r%2 == 1 {
			first, second = runDaemon, runSeq
		}
		if err := first(); err != nil {
			return nil, err
		}
		if err := second(); err != nil {
			return nil, err
		}
	}
	res.summarize(seq, dmn)
	res.EngineRestarts = eng.Stats().Restarts
	return res, nil
}

func (res *Result) summarize(seq []seqSample, dmn []daemonSample) {
	var inv, dec, wall, d, dinv, enq, rts []float64
	for _, s := range seq {
		inv = append(inv, s.invokeRate)
		dec = append(dec, s.decodeRate)
		wall = append(wall, s.rate)
	}
	for _, s := range dmn {
		d = append(d, s.rate)
		if s.invokeRate > 0 {
			dinv = append(dinv, s.invokeRate)
		}
		enq = append(enq, s.enqueueRate)
		rts = append(rts, ms(s.resumeToStart))
	}
	res.InvokeOnly, res.DecodePreprocess, res.Sequential = summarize(inv), summarize(dec), summarize(wall)
	res.Daemon, res.DaemonInvokeOnly, res.Enqueue, res.ResumeToStartMS = summarize(d), summarize(dinv), summarize(enq), summarize(rts)
	if res.InvokeOnly.Median > 0 {
		res.Headline = res.Daemon.Median / res.InvokeOnly.Median
	}
	if res.Sequential.Median > 0 {
		res.DaemonSequential = res.Daemon.Median / res.Sequential.Median
	}
	if res.DaemonInvokeOnly.Median > 0 {
		res.DaemonOwnInvoke = res.Daemon.Median / res.DaemonInvokeOnly.Median
	}
	if res.InvokeOnly.Median > 0 {
		res.OwnInvokeIdle = res.DaemonInvokeOnly.Median / res.InvokeOnly.Median
	}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// seqSample is one sequential round: its wall-time rate and the rates its runs' invoke
// and decode + preprocess times alone allow.
type seqSample struct {
	rate, invokeRate, decodeRate float64
}

// seqRound runs n images back to back through the supervisor.
func seqRound(ctx context.Context, eng *infer.Supervisor, imgs [][]byte, n, round int) (seqSample, error) {
	var invoke, decode float64 // ms
	start := time.Now()
	for i := range n {
		r, err := eng.Run(ctx, imgs[(round*n+i)%len(imgs)])
		if err != nil {
			return seqSample{}, fmt.Errorf("sequential round %d, run %d: %w", round, i, err)
		}
		invoke += r.Timings.InvokeMS
		decode += r.Timings.DecodeMS + r.Timings.PreprocessMS
	}
	wall := time.Since(start)
	s := seqSample{rate: float64(n) / wall.Seconds()}
	if invoke > 0 {
		s.invokeRate = float64(n) / (invoke / 1000)
	}
	if decode > 0 {
		s.decodeRate = float64(n) / (decode / 1000)
	}
	return s, nil
}
