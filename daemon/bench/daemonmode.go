package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/daemon/control"
)

// daemonHarness is a daemon.Daemon running in this process, driven only through its
// control socket, as an operator's tools would.
type daemonHarness struct {
	d        *daemon.Daemon
	cl       *control.Client
	events   chan watched
	watchErr chan error // the watch stream's end
	cancel   context.CancelFunc
	runDone  chan error
}

// watched is one item of the watch stream and when it arrived here.
type watched struct {
	at   time.Time
	item control.WatchItem
}

// daemonConfig is the daemon's configuration for the bench: state in dir, the control
// socket on, spool, MQTT, metrics and model-file watching off.
func daemonConfig(cfg Config, dir string) daemon.Config {
	c := cfg.daemonConfig("bench", dir)
	c.Spool.Enabled = false
	c.MQTT.Enabled = false
	c.Metrics.Enabled = false
	return c
}

// startDaemon opens and runs the daemon, subscribes to its watch stream and pauses its
// worker.
func startDaemon(ctx context.Context, cfg Config) (*daemonHarness, error) {
	dir := filepath.Join(cfg.Dir, "daemon")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create daemon dir: %w", err)
	}
	dcfg := daemonConfig(cfg, dir)
	d, err := daemon.New(dcfg, daemon.Options{Version: "bench", EngineCommand: cfg.EngineCommand,
		EngineEnv: cfg.EngineEnv, Logger: cfg.Logger.With("component", "bench-daemon")})
	if err != nil {
		return nil, fmt.Errorf("cannot configure daemon: %w", err)
	}
	if err := d.Open(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("cannot open daemon: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	h := &daemonHarness{d: d, cl: control.NewClient(dcfg.ControlSocket), events: make(chan watched, 1<<14),
		watchErr: make(chan error, 1), cancel: cancel, runDone: make(chan error, 1)}
	go func() { h.runDone <- d.Run(rctx) }()
	go func() { // ends when rctx ends (nil) or the daemon stops
		h.watchErr <- h.cl.Watch(rctx, func(it control.WatchItem) error {
			select {
			case h.events <- watched{time.Now(), it}:
				return nil
			default:
				return errors.New("bench fell behind the watch stream")
			}
		})
	}()
	if err := h.start(ctx); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// start waits for the watch stream's first item (the current health: the stream is
// subscribed from then on), checks that the model loaded and pauses the worker.
func (h *daemonHarness) start(ctx context.Context) error {
	if _, err := h.next(ctx, time.Now().Add(30*time.Second)); err != nil {
		return fmt.Errorf("cannot watch the daemon: %w", err)
	}
	var hl daemon.Health
	if err := h.cl.Health(ctx, &hl); err != nil {
		return err
	}
	if hl.Model.SHA256 == "" {
		return fmt.Errorf("the daemon has no model loaded: %s", hl.LastError)
	}
	_, err := h.cl.Pause(ctx, "worker", true)
	return err
}

// next returns the next watch item, or an error at deadline or when the stream ended.
func (h *daemonHarness) next(ctx context.Context, deadline time.Time) (watched, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case w := <-h.events:
		if w.item.Type == control.WatchDropped {
			return w, fmt.Errorf("the watch stream dropped %d items", w.item.Dropped)
		}
		return w, nil
	case err := <-h.watchErr:
		h.watchErr <- err
		return watched{}, fmt.Errorf("watch stream ended: %v", err)
	case <-t.C:
		return watched{}, errors.New("timed out waiting for the daemon's events")
	case <-ctx.Done():
		return watched{}, ctx.Err()
	}
}

func (h *daemonHarness) close() {
	h.cancel()
	<-h.runDone
	<-h.watchErr
	h.d.Close()
}

// daemonSample is one daemon round.
type daemonSample struct {
	done          int // done events of the round's jobs
	rate          float64
	invokeRate    float64 // from the daemon's results; 0 when they were not kept
	enqueueRate   float64
	resumeToStart time.Duration
}

// round enqueues n images durably while the worker is paused, resumes it, and times
// the n jobs from the first one's start to the last one's done event. It pauses the
// worker again and checks with the daemon's health that exactly n jobs were done.
func (h *daemonHarness) round(ctx context.Context, r int, imgs [][]byte, n int) (daemonSample, error) {
	var s daemonSample
	for len(h.events) > 0 { // items of the pause and earlier rounds
		<-h.events
	}
	var before daemon.Health
	if err := h.cl.Health(ctx, &before); err != nil {
		return s, err
	}
	ids := make(map[string]bool, n)
	start := time.Now()
	for i := range n {
		id := fmt.Sprintf("bench-r%d-%d", r, i)
		resp, err := h.cl.Enqueue(ctx, control.EnqueueRequest{ID: id, Source: "bench"}, bytes.NewReader(imgs[(r*n+i)%len(imgs)]))
		if err != nil {
			return s, fmt.Errorf("enqueue: %w", err)
		}
		if resp.Duplicate {
			return s, fmt.Errorf("enqueue %s: a duplicate", id)
		}
		ids[id] = false
	}
	s.enqueueRate = float64(n) / time.Since(start).Seconds()
	resumed := time.Now()
	if _, err := h.cl.Pause(ctx, "worker", false); err != nil {
		return s, err
	}
	first, last, err := h.await(ctx, ids, time.Now().Add(2*time.Minute+time.Duration(n)*5*time.Second))
	if _, perr := h.cl.Pause(ctx, "worker", true); err == nil {
		err = perr
	}
	if err != nil {
		return s, err
	}
	s.done = n
	s.rate = float64(n) / last.Sub(first).Seconds()
	s.resumeToStart = first.Sub(resumed)
	if err := h.checkDone(ctx, before, n); err != nil {
		return s, err
	}
	s.invokeRate = h.invokeRate(ctx, ids)
	return s, nil
}

// await reads events until every job of ids is done and returns the arrival of the
// first job's "started" and of the last "done". Any other outcome of a job of the
// round (retry, dead, expired) or a done seen twice is an error.
func (h *daemonHarness) await(ctx context.Context, ids map[string]bool, deadline time.Time) (first, last time.Time, err error) {
	left := len(ids)
	for left > 0 {
		w, err := h.next(ctx, deadline)
		if err != nil {
			return first, last, fmt.Errorf("%w (%d of %d jobs done)", err, len(ids)-left, len(ids))
		}
		if w.item.Type != control.WatchEvent {
			continue
		}
		var ev daemon.EventMessage
		if err := json.Unmarshal(w.item.Data, &ev); err != nil {
			return first, last, fmt.Errorf("cannot decode event: %w", err)
		}
		seen, ours := ids[ev.JobID]
		if !ours {
			continue
		}
		switch ev.Event {
		case daemon.EventStarted:
			if first.IsZero() {
				first = w.at
			}
		case daemon.EventDone:
			if seen {
				return first, last, fmt.Errorf("job %s done twice", ev.JobID)
			}
			ids[ev.JobID] = true
			left--
			last = w.at
		case daemon.EventRetry, daemon.EventDead, daemon.EventExpired:
			return first, last, fmt.Errorf("job %s: %s: %s", ev.JobID, ev.Event, ev.Error)
		}
	}
	if first.IsZero() {
		return first, last, errors.New("no started event before the done events")
	}
	return first, last, nil
}

// checkDone asks the daemon's health until it counts n more done jobs than before
// (its counters are updated right after the events), and fails on more, on retries,
// dead jobs or anything left in the queue.
func (h *daemonHarness) checkDone(ctx context.Context, before daemon.Health, n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var after daemon.Health
		if err := h.cl.Health(ctx, &after); err != nil {
			return err
		}
		done := int(after.Jobs.Done - before.Jobs.Done)
		switch {
		case done > n:
			return fmt.Errorf("the daemon counted %d done jobs, want %d", done, n)
		case after.Jobs.Retried != before.Jobs.Retried || after.Jobs.Dead != before.Jobs.Dead:
			return fmt.Errorf("jobs retried (%d) or dead (%d) during the round: %s",
				after.Jobs.Retried-before.Jobs.Retried, after.Jobs.Dead-before.Jobs.Dead, after.LastError)
		case done == n && after.Queue.Depth == 0 && after.Queue.Leased == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the daemon counted %d done jobs (want %d), queue depth %d, leased %d",
				done, n, after.Queue.Depth, after.Queue.Leased)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// invokeRate is the rate the daemon's own invoke times allow, from the results it kept
// for the round's jobs; 0 when it kept none.
func (h *daemonHarness) invokeRate(ctx context.Context, ids map[string]bool) float64 {
	var total float64
	for id := range ids {
		j, err := h.cl.Job(ctx, id)
		if err != nil || j.Result == nil {
			return 0
		}
		b, err := json.Marshal(j.Result)
		var msg daemon.ResultMessage
		if err != nil || json.Unmarshal(b, &msg) != nil || msg.Output == nil {
			return 0
		}
		total += msg.Output.Timings.InvokeMS
	}
	if total <= 0 {
		return 0
	}
	return float64(len(ids)) / (total / 1000)
}
