package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/queue"
	"github.com/inferq/inferq/transport/spool"
)

// workQueue is what the worker needs from the durable queue.
type workQueue interface {
	Lease(ctx context.Context) (*queue.Lease, error)
	Image(l *queue.Lease) ([]byte, error)
	ImagePath(l *queue.Lease) (string, bool)
	AckNext(ctx context.Context, l *queue.Lease, out ...queue.OutboxMsg) (*queue.Lease, error)
	Nack(ctx context.Context, l *queue.Lease, cause error, out ...queue.OutboxMsg) (bool, error)
	Dead(ctx context.Context, l *queue.Lease, cause error, out ...queue.OutboxMsg) error
	Release(ctx context.Context, l *queue.Lease) error
	// ReadyAbove reports whether a job of a priority above p is ready now.
	ReadyAbove(p int) bool
}

// engine runs the model; the worker is its only caller.
type engine interface {
	// Open starts the engine and loads the model; it may be called again after it failed.
	Open(ctx context.Context) error
	Run(ctx context.Context, image []byte) (*infer.Result, error)
	Info() infer.ModelInfo
	// Reload loads the model again; with m set, with those settings from then on (a
	// failed reload keeps the previous model and settings).
	Reload(ctx context.Context, m *infer.ModelConfig) error
}

// modelUpdate is a model section re-read from the configuration file, applied by the
// worker's next reload or load.
type modelUpdate struct {
	engine     infer.ModelConfig
	rawMax     int
	rawSummary bool
}

// preparingEngine is an engine that takes the next job's image ahead of its run, to
// decode and pre-process it while the current job's model runs (infer.Supervisor's
// Prepare and RunKey).
type preparingEngine interface {
	// Prepare hands over the image of the job key, expected to run next; it does not
	// wait for a run in flight.
	Prepare(key string, image []byte)
	// RunKey runs job key's image, prepared or not.
	RunKey(ctx context.Context, image []byte, key string) (*infer.Result, error)
}

// loadRetry is how often the worker tries again to load a model that would not load.
const loadRetry = 30 * time.Second

// archiver files a finished spool image into the done or failed directory.
type archiver interface {
	Archive(ctx context.Context, o spool.Outcome) error
}

// metaSpoolFile marks a job that came from the spool; its value is the original file name.
const metaSpoolFile = "spool.file"

// leasePoll bounds one blocking Lease call so the worker's heartbeat and pending model
// reloads are looked at even while the queue is empty.
const leasePoll = 2 * time.Second

// pausePoll is how often a paused worker looks whether it was resumed.
const pausePoll = 200 * time.Millisecond

// worker leases one job at a time, runs it through the engine, and commits the outcome
// (outbox rows included) in the queue's transaction.
type worker struct {
	workerConfig
	q    workQueue
	eng  engine
	arch archiver // nil without a spool

	reload atomic.Bool // set to swap in a changed model before the next job
	// update, when set, is a re-read model section the next reload or load applies.
	update atomic.Pointer[modelUpdate]
	// heldImg is the image of heldFor (the held job), read when it was handed to the
	// engine to prepare, so it is not read (and checked) again when that job runs. Only
	// the worker's loop uses them.
	heldFor *queue.Lease
	heldImg []byte
	// reloadWaiters get the outcome of the next reload (or load) attempt.
	reloadWaiters []chan error
	loaded        atomic.Bool  // the engine has a model; until then no job is leased
	heartbeat     atomic.Int64 // unix nanos of the loop's last sign of life
	busySince     atomic.Int64 // unix nanos the current job started; 0 when idle

	mu        sync.Mutex
	stats     WorkerStats
	recent    jobTimes
	reloadErr error
	loadErr   error     // why the model is not loaded, while it is not
	nextLoad  time.Time // when to try loading again
	// pendingDead are jobs the queue dead-lettered at Lease for exhausted attempts,
	// noted by exhausted and settled by settleExhausted.
	pendingDead []exhaustedJob
}

// WorkerStats counts outcomes since start.
type WorkerStats struct {
	Done, Retried, Dead uint64
	LastError           string
	LastErrorAt         time.Time
	// EngineOKAt is when the engine last worked: a run returned a result, or
	// a model loaded. Health shows the engine's last error as past after it.
	EngineOKAt time.Time
}

// workerConfig is the worker's settings; zero fields take the defaults newWorker names.
type workerConfig struct {
	node        string
	jobTimeout  time.Duration
	maxAttempts int
	tmpDir      string // for staging inline images handed to the archiver (default: os.TempDir)
	// rawMax caps a raw result's JSON (model.raw_max_bytes; 0: the outbox limit);
	// rawSummary publishes a summary instead of failing the job past it.
	rawMax     int
	rawSummary bool
	events     func([]byte) // the started event, sent as it happens (default: dropped)
	// watch gets every lifecycle event once it is committed (inferq watch; default: dropped).
	watch func([]byte)
	// paused, when set, says whether an operator paused the worker: no job is leased.
	paused func() bool
	// overlap (worker.overlap) holds the next job's lease while the current one runs and
	// has the engine prepare its image meanwhile, when the engine can (preparingEngine);
	// the next job then starts as soon as the current one's model is done, while the
	// current one is settled.
	overlap bool
	now     func() time.Time // default time.Now
	log     *slog.Logger     // default: discarded
	// observe is told every attempt's run duration (the metrics' histogram; default: none).
	observe func(run time.Duration)
}

// newWorker makes a worker that leases from q, runs jobs on eng and files spool images
// with arch (nil without a spool).
func newWorker(q workQueue, eng engine, arch archiver, cfg workerConfig) *worker {
	if cfg.events == nil {
		cfg.events = func([]byte) {}
	}
	if cfg.watch == nil {
		cfg.watch = func([]byte) {}
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.jobTimeout <= 0 {
		cfg.jobTimeout = time.Minute
	}
	if cfg.maxAttempts < 1 {
		cfg.maxAttempts = 1
	}
	return &worker{workerConfig: cfg, q: q, eng: eng, arch: arch}
}

// Run processes jobs until ctx is cancelled. A job interrupted by shutdown is left leased:
// the queue releases it at the next Open, keeping its place.
func (w *worker) Run(ctx context.Context) error {
	for {
		w.beat()
		if ctx.Err() != nil {
			return nil
		}
		if !w.loaded.Load() {
			// No model: jobs stay queued (nothing is lost) until one loads.
			w.tryLoad(ctx)
			if !w.loaded.Load() {
				select {
				case <-ctx.Done():
				case <-time.After(leasePoll):
				}
				continue
			}
		}
		if w.reload.Swap(false) {
			w.doReload(ctx)
		}
		if w.paused != nil && w.paused() {
			select { // jobs wait in the queue until resumed
			case <-ctx.Done():
			case <-time.After(pausePoll):
			}
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, leasePoll)
		l, err := w.q.Lease(lctx)
		cancel()
		w.settleExhausted(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				continue
			}
			if errors.Is(err, queue.ErrClosed) {
				return nil
			}
			w.noteError(fmt.Errorf("cannot lease: %w", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		w.runJobs(ctx, l)
		w.busySince.Store(0)
	}
}

// runJobs runs l and the jobs after it while work is waiting, then returns (to block in
// Lease). A finished job's ack and the next job's lease share one commit (one fsync per
// job); a pending reload or a pause goes between two jobs. With overlap, the job after
// the running one is held too (pre), its image prepared while the running one's model
// runs, and it starts as soon as that model is done, while the finished job is settled
// (unless a job of a higher priority is ready, a reload is pending or the worker was
// paused: then it waits for the settling, and the queue's order decides).
func (w *worker) runJobs(ctx context.Context, l *queue.Lease) {
	if w.isPaused() {
		// Paused while Lease waited: the job goes back to its place, unrun.
		w.release(ctx, l)
		return
	}
	pe, _ := w.eng.(preparingEngine)
	early := w.overlap && pe != nil
	var pre *queue.Lease
	if w.overlap {
		pre = w.tryLease(ctx)
	}
	cur := w.begin(ctx, l)
	w.prepare(pre)
	for {
		out := <-cur.done
		w.beat()
		if ctx.Err() != nil {
			// Stopping: the interrupted job stays leased (it runs again after restart);
			// the held one never started and keeps its place and attempt.
			cur.log.Info("job interrupted by shutdown; it runs again after restart")
			w.release(context.WithoutCancel(ctx), pre)
			return
		}
		var nextRun *running
		if early && pre != nil && !w.reload.Load() && !w.isPaused() && !w.q.ReadyAbove(pre.Job.Priority) {
			nextRun, pre = w.begin(ctx, pre), nil
		}
		next := w.settle(ctx, cur, out)
		if nextRun == nil {
			if ctx.Err() != nil {
				w.release(context.WithoutCancel(ctx), pre, next)
				return
			}
			if w.isPaused() {
				// Paused between jobs: the next ones go back to their place, unrun.
				w.release(ctx, pre, next)
				return
			}
			if w.reload.Swap(false) {
				w.doReload(ctx)
			}
			var run *queue.Lease
			run, pre = runOrder(pre, next)
			if run == nil {
				return
			}
			nextRun = w.begin(ctx, run)
		} else {
			pre = next
		}
		if pre == nil && w.overlap {
			pre = w.tryLease(ctx)
		}
		w.prepare(pre)
		cur = nextRun
	}
}

func (w *worker) isPaused() bool { return w.paused != nil && w.paused() }

func (w *worker) beat() { w.heartbeat.Store(w.now().UnixNano()) }

// runOrder picks, of the held job (pre) and the one the last ack leased (next), the one
// to run now and the one to hold: the higher priority first, the earlier lease on a tie
// (the queue's own order), so a job that arrived while pre was held still runs before it
// when its priority is higher.
func runOrder(pre, next *queue.Lease) (run, hold *queue.Lease) {
	switch {
	case pre == nil:
		return next, nil
	case next == nil:
		return pre, nil
	case next.Job.Priority > pre.Job.Priority:
		return next, pre
	default:
		return pre, next
	}
}

// tryLease leases the next ready job without waiting; nil when none is ready.
func (w *worker) tryLease(ctx context.Context) *queue.Lease {
	lctx, cancel := context.WithCancel(ctx)
	cancel() // a cancelled Lease polls: a ready job, or an error at once
	l, err := w.q.Lease(lctx)
	w.settleExhausted(ctx)
	if err != nil {
		return nil
	}
	return l
}

// release gives held jobs back unrun: each keeps its place, its attempt not counted.
func (w *worker) release(ctx context.Context, ls ...*queue.Lease) {
	w.heldFor, w.heldImg = nil, nil
	for _, l := range ls {
		if l == nil {
			continue
		}
		if err := w.q.Release(ctx, l); err != nil {
			w.noteError(fmt.Errorf("cannot return job %s: %w", l.Job.ID, err))
		}
	}
}

// Alive reports an error when the loop has not shown life for longer than a job may
// take, which means the daemon itself (not the engine child) is stuck.
func (w *worker) Alive() error {
	limit := w.jobTimeout + leasePoll + 30*time.Second
	last := time.Unix(0, w.heartbeat.Load())
	if age := w.now().Sub(last); age > limit {
		return fmt.Errorf("worker loop silent for %s (limit %s)", age.Round(time.Second), limit)
	}
	return nil
}

// setLoadError records that the model could not be loaded (at start-up); the worker then
// retries every loadRetry, and at once when a reload is asked for.
func (w *worker) setLoadError(err error) {
	w.mu.Lock()
	w.loadErr, w.nextLoad = err, w.now().Add(loadRetry)
	w.mu.Unlock()
	w.loaded.Store(false)
	w.noteError(fmt.Errorf("no model loaded, input is queued until one loads: %w", err))
}

func (w *worker) tryLoad(ctx context.Context) {
	w.mu.Lock()
	due := !w.now().Before(w.nextLoad)
	w.mu.Unlock()
	if !due && !w.reload.Swap(false) {
		return
	}
	var err error
	if u := w.update.Swap(nil); u != nil {
		if err = w.eng.Reload(ctx, &u.engine); err == nil {
			w.rawMax, w.rawSummary = u.rawMax, u.rawSummary
		}
	} else {
		err = w.eng.Open(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.setLoadError(err)
		}
		w.reloaded(err)
		return
	}
	defer w.reloaded(nil)
	w.mu.Lock()
	w.loadErr = nil
	w.stats.EngineOKAt = w.now()
	w.mu.Unlock()
	w.loaded.Store(true) // the supervisor logs "model loaded"
}

func (w *worker) doReload(ctx context.Context) {
	u := w.update.Swap(nil)
	var m *infer.ModelConfig
	if u != nil {
		m = &u.engine
	}
	err := w.eng.Reload(ctx, m)
	if err == nil && u != nil {
		w.rawMax, w.rawSummary = u.rawMax, u.rawSummary
	}
	defer w.reloaded(err)
	w.mu.Lock()
	w.reloadErr = err
	if err == nil {
		w.stats.EngineOKAt = w.now()
	}
	w.mu.Unlock()
	if err != nil {
		w.noteError(fmt.Errorf("cannot reload model, keeping the loaded one: %w", err))
		return
	}
	info := w.eng.Info()
	w.log.Info("model reloaded", logkey.Model, info.Name, logkey.SHA256, info.SHA256)
}

// requestReload asks for a reload before the next job, with u's settings when u is not
// nil; the returned channel gets its outcome (nil: the new model serves; an error: the
// old one still does, or none loaded).
func (w *worker) requestReload(u *modelUpdate) <-chan error {
	if u != nil {
		w.update.Store(u)
	}
	ch := make(chan error, 1)
	w.mu.Lock()
	w.reloadWaiters = append(w.reloadWaiters, ch)
	w.mu.Unlock()
	w.reload.Store(true)
	return ch
}

// reloaded hands a reload's outcome to those waiting for it.
func (w *worker) reloaded(err error) {
	w.mu.Lock()
	waiters := w.reloadWaiters
	w.reloadWaiters = nil
	w.mu.Unlock()
	for _, ch := range waiters {
		ch <- err
	}
}

// running is a job whose engine run was started (begin); done gets its outcome.
type running struct {
	l     *queue.Lease
	start time.Time
	log   *slog.Logger
	done  chan runOutcome
}

type runOutcome struct {
	res *infer.Result
	err error
	end time.Time
}

// begin starts l's run on its own goroutine and returns at once; the caller receives
// its outcome from done (always: the run ends by itself, at the job timeout or when ctx
// is done). The started event goes out once the run is under way.
func (w *worker) begin(ctx context.Context, l *queue.Lease) *running {
	job := l.Job
	r := &running{l: l, start: w.now(), done: make(chan runOutcome, 1)}
	w.busySince.Store(r.start.UnixNano())
	if img, err := w.image(l); err != nil {
		r.done <- runOutcome{err: fmt.Errorf("cannot read job image: %w", err), end: w.now()}
	} else {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, w.jobTimeout)
			defer cancel()
			var o runOutcome
			if pe, ok := w.eng.(preparingEngine); ok && w.overlap {
				o.res, o.err = pe.RunKey(rctx, img, job.ID) // its image may have been prepared
			} else {
				o.res, o.err = w.eng.Run(rctx, img)
			}
			o.end = w.now()
			r.done <- o
		}()
		// Let the run's goroutine send its request to the engine now, rather than when
		// this one next blocks (after the previous job's commit): the engine waits for it.
		runtime.Gosched()
	}
	r.log = w.log.With(logkey.JobID, job.ID, logkey.Source, job.Source, logkey.Attempt, job.Attempt)
	started := eventJSON(EventMessage{Event: EventStarted, JobID: job.ID, Node: w.node, Source: job.Source, At: r.start, Attempt: job.Attempt})
	w.events(started)
	w.watch(started)
	return r
}

// prepare hands l's image (when l is set) to the engine to prepare ahead of l's run,
// when overlap is on and the engine can; the image is kept for l's run, so it is read
// (and checked) once. An unreadable image is left for l's own run to report.
func (w *worker) prepare(l *queue.Lease) {
	pe, ok := w.eng.(preparingEngine)
	if l == nil || !ok || !w.overlap || w.heldFor == l {
		return
	}
	img, err := w.q.Image(l)
	if err != nil {
		return
	}
	w.heldFor, w.heldImg = l, img
	pe.Prepare(l.Job.ID, img)
}

// settle files a finished run's outcome: a success is acked with its result, which
// returns the next job's lease when one was ready; a failure is retried or
// dead-lettered. When the worker is stopping, the job is left leased (it runs again
// after restart).
func (w *worker) settle(ctx context.Context, r *running, out runOutcome) *queue.Lease {
	l, log, start, end := r.l, r.log, r.start, out.end
	res, err := out.res, out.err
	if ctx.Err() != nil {
		log.Info("job interrupted by shutdown; it runs again after restart")
		return nil
	}
	if err == nil {
		w.mu.Lock()
		w.stats.EngineOKAt = end
		w.mu.Unlock()
	}
	msg := w.resultMessage(l.Job, start, end)
	if err == nil {
		var payload, done []byte
		payload, done, err = w.encodeResult(&msg, res)
		if err == nil {
			var next *queue.Lease
			next, err = w.ack(ctx, l, log, payload, done)
			if err == nil {
				w.record(end.Sub(start), end, func(s *WorkerStats) { s.Done++ })
				log.Info("job done", "run_ms", msg.Timings.RunMS, "top", topOf(res))
				return next
			}
			if !infer.IsPermanent(err) {
				return nil // the queue is failing; the lease returns at its timeout
			}
		}
	}
	w.settleFailed(ctx, l, log, msg, err, start, end)
	return nil
}

// image reads l's image, or takes it from when l was held.
func (w *worker) image(l *queue.Lease) ([]byte, error) {
	if w.heldFor == l {
		img := w.heldImg
		w.heldFor, w.heldImg = nil, nil
		return img, nil
	}
	return w.q.Image(l)
}

// resultMessage is the result message's common part for a job that ran from start to end.
func (w *worker) resultMessage(job queue.Job, start, end time.Time) ResultMessage {
	msg := ResultMessage{
		JobID: job.ID, Node: w.node, Source: job.Source, Attempt: job.Attempt,
		Priority: job.Priority, Metadata: job.Meta, ReceivedAt: job.EnqueuedAt,
		StartedAt: &start, FinishedAt: end,
		Timings: JobTimings{QueuedMS: ms(start.Sub(job.EnqueuedAt)), RunMS: ms(end.Sub(start)), TotalMS: ms(end.Sub(job.EnqueuedAt))},
	}
	if info := w.eng.Info(); info.SHA256 != "" {
		msg.Model = &ModelRef{Name: info.Name, SHA256: info.SHA256}
	}
	return msg
}

// errResultTooLarge is the cause of a job whose result cannot be stored whole.
var errResultTooLarge = errors.New("result too large to publish")

// encodeResult encodes a successful run's result message and its done event. A result
// that cannot be published whole is a permanent error (never a silent loss): NaN or Inf
// values (JSON cannot carry them), or a message over the outbox payload limit. A raw
// result over rawMax is summarized (shapes and statistics) when rawSummary is set, and a
// permanent error otherwise.
func (w *worker) encodeResult(msg *ResultMessage, res *infer.Result) (payload, done []byte, err error) {
	msg.Status, msg.Output = StatusOK, res
	done = eventJSON(EventMessage{Event: EventDone, JobID: msg.JobID, Node: w.node, Source: msg.Source, At: msg.FinishedAt, Attempt: msg.Attempt})
	payload, err = json.Marshal(msg)
	if err != nil && !(w.rawSummary && res != nil && len(res.Raw) > 0) {
		msg.Output = nil
		return nil, nil, fmt.Errorf("%w: cannot encode model output as JSON: %v", infer.ErrPermanent, err)
	}
	limit := OutboxPayloadLimit - len(done) // the queue bounds the sum of an operation's payloads
	rawMax := limit
	if w.rawMax > 0 && w.rawMax < rawMax {
		rawMax = w.rawMax
	}
	if res != nil && len(res.Raw) > 0 && (err != nil || len(payload) > rawMax) {
		if !w.rawSummary {
			msg.Output = nil
			return nil, nil, fmt.Errorf("%w: %w: raw output is %d bytes of JSON, over model.raw_max_bytes (%d); set model.raw_over_limit: summary to publish shapes and statistics instead", infer.ErrPermanent, errResultTooLarge, len(payload), rawMax)
		}
		n := len(payload)
		infer.SummarizeRaw(res)
		w.log.Info("raw output summarized", logkey.JobID, msg.JobID, "bytes", n, "raw_max_bytes", rawMax)
		if payload, err = json.Marshal(msg); err != nil {
			msg.Output = nil
			return nil, nil, fmt.Errorf("%w: cannot encode model output as JSON: %v", infer.ErrPermanent, err)
		}
	}
	if len(payload) > limit {
		msg.Output = nil
		return nil, nil, fmt.Errorf("%w: %w: the result is %d bytes of JSON, over the outbox payload limit (%d bytes with its done event)", infer.ErrPermanent, errResultTooLarge, len(payload), OutboxPayloadLimit)
	}
	return payload, done, nil
}

// ack files the spool image as done and acks the job with its result, leasing the next
// job in the same commit. When the queue refuses the rows themselves (queue.ErrInvalid),
// retrying cannot help: the error is then permanent.
func (w *worker) ack(ctx context.Context, l *queue.Lease, log *slog.Logger, payload, done []byte) (*queue.Lease, error) {
	w.finish(ctx, l, log, false, "")
	next, err := w.q.AckNext(ctx, l, queue.OutboxMsg{Topic: "results/" + l.Job.Source, Payload: payload, Keep: true},
		queue.OutboxMsg{Topic: "events", Payload: done})
	w.settleExhausted(ctx)
	if err == nil {
		w.watch(done)
	}
	if err != nil {
		err = fmt.Errorf("cannot ack job %s: %w", l.Job.ID, err)
		w.noteError(err)
		if errors.Is(err, queue.ErrInvalid) {
			return nil, fmt.Errorf("%w: cannot store the result: %w", infer.ErrPermanent, err)
		}
		return nil, err
	}
	return next, nil
}

// settleFailed retries a failed job (a transient error with attempts left) or
// dead-letters it with a small failed result and a dead event.
func (w *worker) settleFailed(ctx context.Context, l *queue.Lease, log *slog.Logger, msg ResultMessage, err error, start, end time.Time) {
	job := l.Job
	permanent := infer.IsPermanent(err) || errors.Is(err, queue.ErrImageCorrupt)
	w.noteError(fmt.Errorf("job %s attempt %d: %w", job.ID, job.Attempt, err))
	if !permanent && job.Attempt < w.maxAttempts {
		ev := EventMessage{Event: EventRetry, JobID: job.ID, Node: w.node, Source: job.Source, At: end, Attempt: job.Attempt, Error: err.Error()}
		if _, nerr := w.q.Nack(ctx, l, err, queue.OutboxMsg{Topic: "events", Payload: eventJSON(ev)}); nerr != nil {
			w.noteError(fmt.Errorf("cannot nack job %s: %w", job.ID, nerr))
			return
		}
		w.watch(eventJSON(ev))
		w.record(end.Sub(start), end, func(s *WorkerStats) { s.Retried++ })
		log.Warn("job failed, will retry", logkey.Err, err)
		return
	}
	msg.Status, msg.Output, msg.Error, msg.Permanent = StatusFailed, nil, err.Error(), permanent
	w.finish(ctx, l, log, true, err.Error())
	out := w.deadMessages(msg, end)
	if derr := w.q.Dead(ctx, l, err, out...); derr != nil {
		w.noteError(fmt.Errorf("cannot dead-letter job %s: %w", job.ID, derr))
		return
	}
	w.watch(out[1].Payload)
	w.record(end.Sub(start), end, func(s *WorkerStats) { s.Dead++ })
	log.Error("job dead", logkey.Err, err, "permanent", permanent)
}

// deadMessages are the outbox rows of a dead job: its failed result (no output: strings,
// numbers and times only, so it always encodes) and its dead event.
func (w *worker) deadMessages(msg ResultMessage, at time.Time) []queue.OutboxMsg {
	payload, _ := json.Marshal(msg)
	ev := EventMessage{Event: EventDead, JobID: msg.JobID, Node: w.node, Source: msg.Source, At: at, Attempt: msg.Attempt, Error: msg.Error}
	return []queue.OutboxMsg{{Topic: "results/" + msg.Source, Payload: payload}, {Topic: "events", Payload: eventJSON(ev)}}
}

// exhausted is the queue's OnExhausted hook: a job whose attempts were used up without
// being settled (the process stopped, or the lease expired, during its last attempt) is
// being moved to the dead set at Lease. It returns the job's failed result and dead
// event, committed with the move, and notes the job so that settleExhausted files its
// spool image (read through l) and counts it once Lease returns. It runs under the
// queue's lock: it does not call the queue.
func (w *worker) exhausted(l *queue.Lease, reason string) []queue.OutboxMsg {
	job := l.Job
	now := w.now()
	msg := ResultMessage{
		JobID: job.ID, Node: w.node, Source: job.Source, Status: StatusFailed, Attempt: job.Attempt,
		Priority: job.Priority, Metadata: job.Meta, ReceivedAt: job.EnqueuedAt, FinishedAt: now,
		Error:   reason,
		Timings: JobTimings{TotalMS: ms(now.Sub(job.EnqueuedAt))},
	}
	w.mu.Lock()
	w.pendingDead = append(w.pendingDead, exhaustedJob{l: l, reason: reason})
	w.mu.Unlock()
	return w.deadMessages(msg, now)
}

// canReadImage reports whether the worker can read l's image through the queue.
func (w *worker) canReadImage(l *queue.Lease) bool {
	if _, ok := w.q.ImagePath(l); ok {
		return true
	}
	_, err := w.q.Image(l)
	return err == nil
}

// exhaustedJob is a job the queue dead-lettered at Lease because its attempts ran out.
type exhaustedJob struct {
	l      *queue.Lease // not a lease anyone holds: only its image can be read
	reason string
}

// settleExhausted files the spool images of jobs the queue dead-lettered for exhausted
// attempts (exhausted) into the failed directory and counts them as dead.
func (w *worker) settleExhausted(ctx context.Context) {
	w.mu.Lock()
	jobs := w.pendingDead
	w.pendingDead = nil
	w.mu.Unlock()
	for _, e := range jobs {
		log := w.log.With(logkey.JobID, e.l.Job.ID, logkey.Source, e.l.Job.Source, logkey.Attempt, e.l.Job.Attempt)
		if w.canReadImage(e.l) {
			w.finish(ctx, e.l, log, true, e.reason)
		} else if _, ok := e.l.Job.Meta[metaSpoolFile]; ok && w.arch != nil {
			// The queue's hook hands over the job without access to its image.
			log.Warn("spool image of a job dead-lettered at lease is kept in the queue's dead set, not filed in the failed directory")
		}
		w.mu.Lock()
		w.stats.Dead++
		w.mu.Unlock()
		w.noteError(fmt.Errorf("job %s: %s", e.l.Job.ID, e.reason))
		w.watch(eventJSON(EventMessage{Event: EventDead, JobID: e.l.Job.ID, Node: w.node, Source: e.l.Job.Source, At: w.now(), Attempt: e.l.Job.Attempt, Error: e.reason}))
		log.Error("job dead", logkey.Err, e.reason, "permanent", false)
	}
}

// finish files a spool job's image into the done or failed directory before the queue
// forgets the job. A crash in between only repeats the filing.
func (w *worker) finish(ctx context.Context, l *queue.Lease, log *slog.Logger, failed bool, reason string) {
	name, ok := l.Job.Meta[metaSpoolFile]
	if !ok || w.arch == nil {
		return
	}
	o := spool.Outcome{ID: l.Job.ID, Source: l.Job.Source, Name: name, Failed: failed, Reason: reason, Attempts: l.Job.Attempt}
	if p, ok := w.q.ImagePath(l); ok {
		o.ImagePath = p
	} else {
		// Small images live inside the queue's records; hand the archiver a file.
		p, err := w.inlineToFile(l)
		if err != nil {
			log.Warn("cannot archive spool file", logkey.Err, err)
			return
		}
		defer os.Remove(p)
		o.ImagePath = p
	}
	// A failure is the archiver's to log and count (health: spool.archive_failures).
	_ = w.arch.Archive(ctx, o)
}

func (w *worker) inlineToFile(l *queue.Lease) (string, error) {
	img, err := w.q.Image(l)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(w.tmpDir, "archive-*")
	if err != nil {
		return "", fmt.Errorf("cannot stage image for archive: %w", err)
	}
	_, err = f.Write(img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot stage image for archive: %w", err)
	}
	return f.Name(), nil
}

func (w *worker) record(run time.Duration, end time.Time, f func(*WorkerStats)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.stats)
	w.recent.observe(run, end)
	if w.observe != nil {
		w.observe(run)
	}
}

func (w *worker) noteError(err error) {
	w.mu.Lock()
	w.stats.LastError = err.Error()
	w.stats.LastErrorAt = w.now()
	w.mu.Unlock()
	w.log.Warn("worker", logkey.Err, err)
}

// workerSnapshot is what health reads from the worker.
type workerSnapshot struct {
	WorkerStats
	jobTimesSummary
	Busy      time.Duration
	ReloadErr error
	LoadErr   error // the model is not loaded, and why
}

func (w *worker) snapshot() workerSnapshot {
	w.mu.Lock()
	s := workerSnapshot{WorkerStats: w.stats, ReloadErr: w.reloadErr, LoadErr: w.loadErr}
	now := w.now()
	s.jobTimesSummary = w.recent.summary(now)
	w.mu.Unlock()
	if b := w.busySince.Load(); b != 0 {
		s.Busy = now.Sub(time.Unix(0, b))
	}
	return s
}

// topOf is a short human summary of a result for the log line of a finished job.
func topOf(r *infer.Result) string {
	switch {
	case r == nil:
		return ""
	case len(r.Classes) > 0:
		return fmt.Sprintf("%s %.2f", r.Classes[0].Label, r.Classes[0].Score)
	case len(r.Detections) > 0:
		return fmt.Sprintf("%d detections, best %s %.2f", len(r.Detections), r.Detections[0].Label, r.Detections[0].Score)
	default:
		return r.Kind
	}
}
