package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/systemd"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/spool"
)

// Options are the daemon's dependencies that do not come from the configuration file.
type Options struct {
	Version string
	// EngineCommand starts the engine child, e.g. [os.Executable(), "engine-child"].
	EngineCommand []string
	// EngineEnv is added to the engine child's environment.
	EngineEnv []string
	// ConfigPath is the file the configuration was read from. When set, a reload
	// (control API, SIGHUP, systemctl reload) reads it again and applies its model
	// section; changes elsewhere in it are reported as needing a restart.
	ConfigPath string
	Logger     *slog.Logger
	// Notifier talks to systemd; nil means a notifier reading NOTIFY_SOCKET.
	Notifier *systemd.Notifier
	Now      func() time.Time
}

// Daemon wires the queue, the engine, the sources and the publisher together.
type Daemon struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	now  func() time.Time
	node string

	q       *queue.Queue
	eng     *infer.Supervisor
	watcher *spool.Watcher
	broker  *mqtt.EmbeddedBroker
	client  *mqtt.Client
	worker  *worker
	control *control.Server
	metrics *metricsServer // nil unless metrics.enabled
	notify  *systemd.Notifier
	ha      *homeAssistant // nil unless mqtt.homeassistant.enabled
	cmds    *commander     // nil unless mqtt.commands.enabled

	// mqttQueue is the queue as the MQTT client's adapters see it: nil while a full disk
	// keeps it from opening (the client may already run then); outNotify carries the
	// queue's outbox notifications to the client.
	mqttQueue atomic.Pointer[queue.Queue]
	outNotify chan struct{}
	paused    *pauses // operator's pause of intake and worker, kept in state_dir

	startedAt time.Time
	bseq      *bootSeq // boot id and sequence of availability and health
	poke      chan struct{}

	healthMu sync.Mutex
	health   Health

	// reloadMu serializes reloads; fileCfg is the configuration as its file said at
	// start, with the model section of the last reload that applied one.
	reloadMu sync.Mutex
	fileCfg  Config

	hub watchHub // inferq watch: lifecycle events and health changes

	closeOnce sync.Once
	closeErr  error
}

// New checks the configuration and prepares a daemon; nothing is opened yet.
func New(cfg Config, opts Options) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		return nil, errors.New("daemon: Options.Logger is required")
	}
	if len(opts.EngineCommand) == 0 {
		return nil, errors.New("daemon: Options.EngineCommand is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Notifier == nil {
		opts.Notifier = systemd.NewNotifier(opts.Logger)
	}
	node := cfg.Node
	if node == "" {
		node = hostNode()
	}
	fileCfg := cfg
	if opts.ConfigPath != "" {
		var err error
		if fileCfg, err = LoadConfig(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	return &Daemon{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, node: node, fileCfg: fileCfg,
		notify: opts.Notifier, poke: make(chan struct{}, 1), outNotify: make(chan struct{}, 1)}, nil
}

var notTopicChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func hostNode() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "inferq"
	}
	return notTopicChars.ReplaceAllString(h, "_")
}

// Node is the node id used in topics.
func (d *Daemon) Node() string { return d.node }

// Open creates the state directories, recovers the queue, starts the engine child and
// loads the model, and opens the sources, the broker connection and the control socket.
// The broker may be unreachable: the box works offline and results wait in the outbox.
func (d *Daemon) Open(ctx context.Context) error {
	d.startedAt = d.now()
	cfg := d.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("cannot create state_dir: %w", err)
	}
	p, err := loadPauses(cfg.StateDir)
	if err != nil {
		return err
	}
	d.paused = p
	if d.bseq, err = openBootSeq(cfg.StateDir, d.log); err != nil {
		return err
	}
	if st := p.get(); st.Intake || st.Worker {
		d.log.Warn("paused by an operator before this start", "intake", st.Intake, "worker", st.Worker)
	}
	qopts := queue.DefaultOptions(filepath.Join(cfg.StateDir, "queue"))
	qopts.MaxJobs = cfg.Queue.MaxJobs
	qopts.MaxBytes = int64(cfg.Queue.MaxBytes)
	qopts.MaxAttempts = cfg.Queue.MaxAttempts
	qopts.LeaseTimeout = cfg.Queue.LeaseTimeout
	qopts.BackoffBase = cfg.Queue.BackoffBase
	qopts.BackoffMax = cfg.Queue.BackoffMax
	qopts.DedupeWindow = cfg.Queue.DedupeWindow
	qopts.ResultsKept = cfg.Queue.ResultsKept
	qopts.ResultsMaxBytes = int64(cfg.Queue.ResultsMaxBytes)
	qopts.ResultMaxAge = cfg.Queue.ResultMaxAge
	qopts.SmallDevice = cfg.Queue.SmallDevice
	qopts.DiskReserve = int64(cfg.Queue.DiskReserve)
	qopts.Now = d.now
	qopts.Logger = d.log.With(logkey.Component, "queue")
	qopts.OnExpired = d.expiredMessages
	// Only the worker leases, so the worker exists whenever the queue calls this.
	qopts.OnExhausted = func(l *queue.Lease, reason string) []queue.OutboxMsg { return d.worker.exhausted(l, reason) }
	// Opening replays the journal after an unclean stop and Badger may compact: more
	// start-up time from systemd than TimeoutStartSec if that takes long.
	_ = d.notify.ExtendTimeout(2 * time.Minute)
	q, err := d.openQueue(ctx, qopts)
	if err != nil {
		return fmt.Errorf("cannot open queue: %w", err)
	}
	d.setQueue(q)

	eng, err := infer.NewSupervisor(infer.SupervisorConfig{
		Command: d.opts.EngineCommand,
		Env:     d.opts.EngineEnv,
		Runtime: infer.RuntimeConfig{Library: cfg.Runtime.Library, RuntimeDir: cfg.Runtime.Dir,
			Candidates: cfg.Runtime.Candidates, MeasureInvokes: cfg.Runtime.MeasureInvokes},
		Model:  cfg.Model.engineConfig(),
		Logger: d.log.With(logkey.Component, "engine"),
	})
	if err != nil {
		return fmt.Errorf("cannot configure engine: %w", err)
	}
	d.eng = eng
	// A model that will not load (broken file, runtime missing) does not stop the box:
	// input is still taken into the queue, health says what is wrong, and the worker
	// tries again every 30 s and whenever the model file changes.
	engineErr := eng.Open(ctx)
	if engineErr != nil { // (a model that loads is logged by the supervisor)
		d.log.Error("cannot load model; input is queued until it loads", logkey.Err, engineErr)
	}

	if cfg.Spool.Enabled {
		if err := d.openSpool(); err != nil {
			return err
		}
	}
	if cfg.MQTT.Enabled && d.client == nil { // (waitForDisk may have opened it)
		if err := d.openMQTT(ctx); err != nil {
			return err
		}
	}
	var events func([]byte)
	var arch archiver
	if d.client != nil {
		events = d.client.PublishEvent
	}
	if d.watcher != nil {
		arch = d.watcher
	}
	if cfg.Metrics.Enabled {
		if d.metrics, err = listenMetrics(cfg.Metrics.Listen, d.lastHealth, d.log.With(logkey.Component, "metrics")); err != nil {
			return err
		}
	}
	mu := cfg.Model.update()
	d.worker = newWorker(q, &engineAdapter{eng}, arch, workerConfig{
		node: d.node, jobTimeout: cfg.Worker.JobTimeout, maxAttempts: cfg.Queue.MaxAttempts,
		tmpDir: filepath.Join(cfg.StateDir, "tmp"),
		rawMax: mu.rawMax, rawSummary: mu.rawSummary,
		events: events, watch: func(ev []byte) { d.hub.publish(control.WatchEvent, ev) },
		paused: func() bool { return d.paused.get().Worker }, overlap: cfg.Worker.Overlap,
		now: d.now, log: d.log.With(logkey.Component, "worker"), observe: d.observeRun,
	})
	if err := os.MkdirAll(d.worker.tmpDir, 0o750); err != nil {
		return fmt.Errorf("cannot create state_dir/tmp: %w", err)
	}
	d.worker.beat()
	if engineErr != nil {
		d.worker.setLoadError(engineErr)
	} else {
		d.worker.loaded.Store(true)
	}

	if cfg.ControlSocket != "" {
		c, err := control.Listen(cfg.ControlSocket, controlBackend{d}, d.log.With(logkey.Component, "control"))
		if err != nil {
			return err
		}
		d.control = c
	}
	return nil
}

// diskFullRetry is how often a queue that a full disk kept from opening is tried again.
var diskFullRetry = 2 * time.Second

// openQueue opens the queue. On a disk too full to open it (queue.ErrDiskFull, which
// the queue reports before Badger writes anything), it waits for space instead of
// failing: under systemd a failed start is a restart loop that only an operator
// freeing space by hand ends. Meanwhile the box is visible: the broker connection is
// opened (availability online, ingest not acknowledged so the broker keeps it), a
// health document says why (status failing), systemd is told (STATUS=) and its start
// timeout extended.
func (d *Daemon) openQueue(ctx context.Context, o queue.Options) (*queue.Queue, error) {
	var logged time.Time
	for {
		q, err := queue.Open(o)
		if !errors.Is(err, queue.ErrDiskFull) {
			return q, err
		}
		if time.Since(logged) >= time.Minute {
			d.log.Error("cannot open the queue: waiting for disk space", logkey.Err, err, "retry", diskFullRetry.String())
			logged = time.Now()
		}
		if d.cfg.MQTT.Enabled && d.client == nil {
			if merr := d.openMQTT(ctx); merr != nil {
				return nil, merr
			}
		}
		if d.client != nil {
			d.client.SetHealth(mustHealthJSON(d.waitingHealth(err)))
		}
		_ = d.notify.Status(err.Error() + "; waiting for space")
		_ = d.notify.ExtendTimeout(diskFullRetry + 30*time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(diskFullRetry):
		}
	}
}

// Pause pauses (or with paused false resumes) intake, the worker or all, durably.
func (d *Daemon) Pause(what string, paused bool) (PauseState, error) {
	st, err := d.paused.set(what, paused)
	if err != nil {
		return st, err
	}
	d.log.Info("pause state changed by an operator", "intake", st.Intake, "worker", st.Worker)
	d.pokeHealth()
	return st, nil
}

// setQueue makes q the daemon's queue, for the MQTT adapters too.
func (d *Daemon) setQueue(q *queue.Queue) {
	d.q = q
	d.mqttQueue.Store(q)
}

// waitingHealth is the health document while the queue cannot open for lack of space.
func (d *Daemon) waitingHealth(cause error) Health {
	now := d.now()
	return Health{
		Seq: d.nextSeq(), BootID: d.bootID(), IntervalS: d.cfg.Health.Interval.Seconds(), Node: d.node, Version: d.opts.Version, Status: HealthFailing,
		Problems: []string{cause.Error() + ": input is not taken (spool files stay, MQTT ingest is not acknowledged) until space returns"},
		Time:     now.UTC(), StartedAt: d.startedAt.UTC(), UptimeS: int64(now.Sub(d.startedAt) / time.Second),
		Queue: HealthQueue{ByPriority: map[string]int{}, Full: true}, Disk: diskFree(d.cfg.StateDir),
	}
}

// forwardOutboxNotify passes the queue's outbox notifications to the MQTT client's
// channel until ctx is done.
func (d *Daemon) forwardOutboxNotify(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.q.OutboxNotify():
			select {
			case d.outNotify <- struct{}{}:
			default:
			}
		}
	}
}

func (d *Daemon) openSpool() error {
	w, err := spool.New(d.cfg.spoolConfig(), &spoolSink{d: d}, d.log.With(logkey.Component, "spool"))
	if err != nil {
		return fmt.Errorf("cannot configure spool: %w", err)
	}
	d.watcher = w
	if err := w.Open(); err != nil {
		return fmt.Errorf("cannot open spool: %w", err)
	}
	return nil
}

func (d *Daemon) openMQTT(ctx context.Context) error {
	mc := d.cfg.MQTT
	brokers := mc.Brokers
	if mc.Broker == "embedded" {
		b, err := mqtt.NewEmbeddedBroker(mqtt.BrokerConfig{Listen: mc.Embedded.Listen, Username: mc.Username, PasswordFile: mc.PasswordFile}, d.log.With(logkey.Component, "broker"))
		if err != nil {
			return fmt.Errorf("cannot configure embedded broker: %w", err)
		}
		d.broker = b
		if err := b.Open(); err != nil {
			return fmt.Errorf("cannot open embedded broker: %w", err)
		}
		brokers = []string{"tcp://" + b.Addr()}
	}
	clientID := d.cfg.clientID(d.node)
	mcfg := d.cfg.mqttConfig(d.node, brokers, clientID)
	mcfg.Birth = func() (string, uint64) { return d.bootID(), d.nextSeq() }
	d.addHomeAssistant(&mcfg)
	if err := d.addCommands(&mcfg); err != nil {
		return err
	}
	c, err := mqtt.New(mcfg,
		&outboxAdapter{d: d}, &ingestSink{d: d}, d.log.With(logkey.Component, "mqtt"))
	if err != nil {
		return fmt.Errorf("cannot configure mqtt: %w", err)
	}
	d.client = c
	if err := c.Open(ctx); err != nil {
		return fmt.Errorf("cannot open mqtt: %w", err)
	}
	return nil
}

// Run runs every loop until ctx is cancelled or one of them fails, then stops them all.
// It tells systemd READY=1 once running, STATUS= with each health document, WATCHDOG=1
// while the daemon's own loops are alive, and STOPPING=1 on the way out.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The broker connection outlives the other loops on the way out, so that results of
	// the last job are still published and "stopped" replaces "online" in a clean
	// disconnect; it has its own context, cancelled last.
	netCtx, netCancel := context.WithCancel(context.Background())
	defer netCancel()
	var wg, netWG sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	start := func(wg *sync.WaitGroup, ctx context.Context, name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("%s stopped: %w", name, err) })
				d.log.Error("component stopped", logkey.Component, name, logkey.Err, err)
				cancel()
			}
		}()
	}
	if d.broker != nil {
		start(&netWG, netCtx, "broker", d.broker.Run)
	}
	if d.client != nil {
		start(&netWG, netCtx, "mqtt", d.client.Run)
		start(&netWG, netCtx, "outbox-notify", d.forwardOutboxNotify)
	}
	start(&wg, ctx, "queue", d.q.Run)
	start(&wg, ctx, "worker", d.worker.Run)
	if d.watcher != nil {
		start(&wg, ctx, "spool", d.watcher.Run)
	}
	if d.control != nil {
		start(&wg, ctx, "control", d.control.Run)
	}
	if d.metrics != nil {
		start(&wg, ctx, "metrics", d.metrics.Run)
	}
	if d.cfg.Model.Reload {
		start(&wg, ctx, "model-watch", d.watchModel)
	}
	start(&wg, ctx, "health", d.healthLoop)
	start(&wg, ctx, "watchdog", func(ctx context.Context) error { return d.notify.Run(ctx, d.alive) })
	if d.cmds != nil {
		d.cmds.start() // remote commands wait for the worker to run
	}

	if err := d.notify.Ready(); err != nil {
		d.log.Warn("cannot notify systemd", logkey.Err, err)
	}
	d.log.Info("inferq running", "node", d.node, "version", d.opts.Version)
	<-ctx.Done()
	_ = d.notify.Stopping()
	d.log.Info("inferq stopping")
	wg.Wait()
	if d.client != nil {
		d.flushOutbox(2 * time.Second)
		if err := d.client.Close(); err != nil {
			d.log.Warn("cannot close mqtt cleanly", logkey.Err, err)
		}
	}
	netCancel()
	netWG.Wait()
	return firstErr
}

// flushOutbox gives the publisher a moment to send what the last jobs wrote, while the
// broker is connected. Anything left is sent after the next start.
func (d *Daemon) flushOutbox(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && d.client.Stats().Connected && d.q.Stats().Outbox > 0 {
		time.Sleep(20 * time.Millisecond)
	}
}

// alive is the watchdog's check: the daemon's own loops, not the engine's runs.
func (d *Daemon) alive() error {
	return d.worker.Alive()
}

// Close stops and releases everything in reverse order of Open. It is safe after a
// partial Open and safe to call twice.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		if d.control != nil {
			errs = append(errs, d.control.Close())
		}
		if d.metrics != nil {
			errs = append(errs, d.metrics.Close())
		}
		if d.client != nil {
			errs = append(errs, d.client.Close())
		}
		if d.broker != nil {
			errs = append(errs, d.broker.Close())
		}
		if d.watcher != nil {
			errs = append(errs, d.watcher.Close())
		}
		if d.eng != nil {
			errs = append(errs, d.eng.Close())
		}
		if d.q != nil {
			errs = append(errs, d.q.Close())
		}
		if d.bseq != nil {
			errs = append(errs, d.bseq.Close())
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// pokeHealth asks for a health document now (a state changed).
func (d *Daemon) pokeHealth() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// problemsKey is what "health changed" compares: the problems without their figures
// (free space, ages, counts), which change all the time without news.
func problemsKey(problems []string) string {
	return figures.ReplaceAllString(strings.Join(problems, "|"), "#")
}

var figures = regexp.MustCompile(`[0-9][0-9.]*`)

func (d *Daemon) healthLoop(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Health.Interval)
	defer t.Stop()
	// State changes that nobody pokes for (a broker that went away, a disk filling up)
	// are looked for every second: health and systemd's STATUS= follow within a second.
	look := time.NewTicker(time.Second)
	defer look.Stop()
	var lastKey string
	publish := true
	for {
		h := d.refreshHealth()
		key := h.Status + problemsKey(h.Problems)
		if key != lastKey {
			publish = true
			if lastKey != "" {
				d.log.Info("health changed", "status", h.Status, "problems", strings.Join(h.Problems, "; "))
				d.hub.publish(control.WatchHealth, mustHealthJSON(h))
			}
		}
		if publish {
			if d.client != nil {
				d.client.SetHealth(mustHealthJSON(h))
			}
			status := fmt.Sprintf("%s: %d queued, %d leased, %d dead, outbox %d, %d done", h.Status, h.Queue.Depth, h.Queue.Leased, h.Queue.Dead, h.Outbox.Depth, h.Jobs.Done)
			if len(h.Problems) > 0 {
				status += "; " + h.Problems[0]
			}
			_ = d.notify.Status(status)
		}
		lastKey, publish = key, false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			publish = true
		case <-d.poke:
			publish = true
		case <-look.C:
		}
	}
}

func mustHealthJSON(h Health) []byte {
	b, _ := json.Marshal(h) // strings, numbers, times, maps of those
	return b
}

// refreshHealth builds a new health document and keeps it for the control API.
func (d *Daemon) refreshHealth() Health {
	es := d.eng.Stats()
	in := healthInputs{
		seq: d.nextSeq(), bootID: d.bootID(), interval: d.cfg.Health.Interval, node: d.node, version: d.opts.Version, now: d.now(), startedAt: d.startedAt,
		model:  d.eng.Info(),
		engine: engineStats{Restarts: es.Restarts, Crashes: es.Crashes, Timeouts: es.Timeouts, LastError: es.LastError, LastErrorAt: es.LastErrorAt},
		queue:  d.q.Stats(), worker: d.worker.snapshot(), disk: HealthDisk{Path: d.cfg.StateDir}, alive: d.alive(),
		paused: d.paused.get(),
	}
	if d.client != nil {
		in.mqtt = mqttHealth(d.client.Stats())
	}
	if d.watcher != nil {
		in.spool = spoolHealth(d.watcher.Stats())
	}
	h := buildHealth(in)
	d.healthMu.Lock()
	d.health = h
	d.healthMu.Unlock()
	return h
}

// Health returns a fresh health document.
func (d *Daemon) Health() Health { return d.refreshHealth() }

// requestReload asks the worker to swap in the model file's current content before its
// next job, without waiting (a change of the model file).
func (d *Daemon) requestReload() { d.worker.requestReload(nil); d.pokeHealth() }

// Reload swaps in the model file's current content before the next job and returns
// the outcome: nil once the new model serves, the reason when it was refused (the old
// model keeps serving). systemd hears RELOADING=1 before and READY=1 after.
func (d *Daemon) Reload(ctx context.Context) error {
	_, err := d.reload(ctx)
	return err
}

// reload is Reload that also says which changed settings wait for a restart. With
// Options.ConfigPath it reads the file again first: a file that does not load or
// validate refuses the reload (naming the fields), a changed model section is applied
// with the model, and other changed sections are returned (and logged) as needing a
// restart; they keep their running values.
func (d *Daemon) reload(ctx context.Context) (restart []string, err error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	_ = d.notify.Reloading()
	defer func() { _ = d.notify.Ready() }()
	d.log.Info("model reload requested")
	var u *modelUpdate
	var next ModelConfig
	if d.opts.ConfigPath != "" {
		cfg, err := LoadConfig(d.opts.ConfigPath)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			err = fmt.Errorf("reload refused, nothing changed: %s: %w", d.opts.ConfigPath, err)
			d.log.Error("cannot reload", logkey.Err, err)
			return nil, err
		}
		restart = restartNeeded(d.fileCfg, cfg)
		if len(restart) > 0 {
			d.log.Warn("configuration changes that take effect only after a restart", "settings", strings.Join(restart, ", "))
		}
		if !reflect.DeepEqual(cfg.Model, d.fileCfg.Model) {
			next = cfg.Model
			u = &modelUpdate{}
			*u = next.update()
		}
	}
	done := d.worker.requestReload(u)
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("reload: no outcome yet (it still happens before the next job): %w", ctx.Err())
	}
	if err == nil && u != nil {
		d.fileCfg.Model = next
	}
	d.pokeHealth()
	return restart, err
}

// restartNeeded lists the settings that differ between the configuration the daemon
// runs (old, as read from its file) and the file now (new) and that only a restart
// applies: every section but model, and in model its path's directory and reload (the
// file watcher is set up at start).
func restartNeeded(old, new Config) []string {
	var out []string
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(new)
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "model" || name == "" || name == "-" {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	if filepath.Dir(old.Model.Path) != filepath.Dir(new.Model.Path) {
		out = append(out, "model.path (its directory is watched for changes from the next start)")
	}
	if old.Model.Reload != new.Model.Reload {
		out = append(out, "model.reload")
	}
	return out
}

// modelDirRetry is how often watchModel looks again for a model directory that is
// missing.
var modelDirRetry = 2 * time.Second

// watchModel asks for a reload when the model file is written or replaced. A missing
// model directory is waited for like a missing file (it may be mounted or deployed
// later): looked for again every modelDirRetry, then watched, with a reload at once.
func (d *Daemon) watchModel(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("cannot watch model: %w", err)
	}
	defer w.Close()
	dir, name := filepath.Split(d.cfg.Model.Path)
	dir = filepath.Clean(dir)
	var retry, debounce <-chan time.Time
	missing := false
	arm := func() {
		retry = nil
		if err := w.Add(dir); err != nil {
			if !missing {
				d.log.Warn("cannot watch the model directory; looking for it again", logkey.Dir, dir, "retry", modelDirRetry.String(), logkey.Err, err)
			}
			missing, retry = true, time.After(modelDirRetry)
			return
		}
		if missing {
			missing = false
			d.log.Info("model directory is there; loading the model", logkey.Dir, dir)
			d.requestReload()
		}
	}
	arm()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry:
			arm()
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == dir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				_ = w.Remove(dir)
				missing = true
				d.log.Warn("model directory removed; looking for it again", logkey.Dir, dir)
				retry = time.After(modelDirRetry)
				continue
			}
			if filepath.Base(ev.Name) == name && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(500 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("model watch", logkey.Err, err)
		case <-debounce:
			debounce = nil
			d.log.Info("model file changed; reloading before the next job", logkey.Path, d.cfg.Model.Path)
			d.requestReload()
		}
	}
}

// expiredMessages are the outbox rows written when a job passes its deadline unrun.
func (d *Daemon) expiredMessages(j queue.Job) []queue.OutboxMsg {
	now := d.now()
	msg := ResultMessage{JobID: j.ID, Node: d.node, Source: j.Source, Status: StatusExpired, Attempt: j.Attempt,
		Priority: j.Priority, Metadata: j.Meta, ReceivedAt: j.EnqueuedAt, FinishedAt: now,
		Error:   fmt.Sprintf("deadline %s passed before the job could run", j.Deadline.UTC().Format(time.RFC3339)),
		Timings: JobTimings{QueuedMS: ms(now.Sub(j.EnqueuedAt)), TotalMS: ms(now.Sub(j.EnqueuedAt))}}
	payload, _ := json.Marshal(msg)
	ev := EventMessage{Event: EventExpired, JobID: j.ID, Node: d.node, Source: j.Source, At: now}
	d.hub.publish(control.WatchEvent, eventJSON(ev)) // (runs as the expiry is committed)
	return []queue.OutboxMsg{{Topic: "results/" + j.Source, Payload: payload}, {Topic: "events", Payload: eventJSON(ev)}}
}

// queued announces a new durable job on the events topic (best effort: events about
// results that matter are in the outbox).
func (d *Daemon) queued(id, source string) {
	if d.client == nil && !d.hub.watched() {
		return
	}
	ev := eventJSON(EventMessage{Event: EventQueued, JobID: id, Node: d.node, Source: source, At: d.now()})
	d.hub.publish(control.WatchEvent, ev)
	if d.client != nil {
		d.client.PublishEvent(ev)
	}
}

// deadline applies queue.default_ttl to a job that has no deadline of its own.
func (d *Daemon) deadline(own time.Time) time.Time {
	if own.IsZero() && d.cfg.Queue.DefaultTTL > 0 {
		return d.now().Add(d.cfg.Queue.DefaultTTL)
	}
	return own
}
