package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/transport/mqtt"
)

// LatencyConfig configures Latency.
type LatencyConfig struct {
	// Binary is the inferq executable, run as `Binary run --config FILE`.
	Binary string
	// Target.Model is required (Run's DemoModel writes the demo one).
	Target
	// Broker is the URL of a running broker; empty starts Mosquitto (at Mosquitto,
	// default DefaultMosquitto) on a free loopback port for the run.
	Broker    string
	Mosquitto string
	// Rate is the images per second sent, one source after the other (required): half
	// the measured capacity for the target.
	Rate float64
	// Jobs is the images measured per source (default 200), after Warmup images sent
	// over MQTT and not counted (default 5).
	Jobs   int
	Warmup int
	// Images are the inputs; nil: 16 generated 640×480 JPEGs.
	Images [][]byte
	Dir    string // scratch space; it must exist
	Logger *slog.Logger
}

// LatencyResult is the latency of each source at the given rate.
type LatencyResult struct {
	Rate    float64         `json:"rate"`
	Jobs    int             `json:"jobs_per_source"`
	Broker  string          `json:"broker"`
	Sources []SourceLatency `json:"sources"`
}

// SourceLatency is one source's latency distribution, in milliseconds. EndToEnd runs
// from the file's rename into the spool (or the PUBLISH) to the result's arrival at a
// subscriber; Engine is the engine child's own work on the job (decode, preprocess,
// invoke, postprocess, from the result's output timings); Added is EndToEnd − Engine,
// job by job. The breakdown of Added: Intake (to the durable enqueue, received_at),
// Wait (in the queue, to started_at), RunOther (the run without the engine's stages:
// image read, child round trip), Publish (finished_at to arrival: commit, outbox,
// broker, subscriber).
type SourceLatency struct {
	Source   string    `json:"source"` // spool or mqtt
	From     string    `json:"from"`   // rename or publish
	EndToEnd Quantiles `json:"end_to_end_ms"`
	Engine   Quantiles `json:"engine_ms"`
	Added    Quantiles `json:"added_ms"`
	Intake   Quantiles `json:"intake_ms"`
	Wait     Quantiles `json:"wait_ms"`
	RunOther Quantiles `json:"run_other_ms"`
	Publish  Quantiles `json:"publish_ms"`
}

const latencyNode = "latency"

func (c *LatencyConfig) defaults() error {
	switch {
	case c.Binary == "":
		return errors.New("latency: LatencyConfig.Binary is required")
	case c.Model == "":
		return errors.New("latency: LatencyConfig.Model is required")
	case c.Rate <= 0:
		return errors.New("latency: LatencyConfig.Rate must be positive")
	case c.Dir == "":
		return errors.New("latency: LatencyConfig.Dir is required")
	}
	c.Target.defaults()
	if c.Jobs <= 0 {
		c.Jobs = 200
	}
	if c.Warmup <= 0 {
		c.Warmup = 5
	}
	if c.Mosquitto == "" {
		c.Mosquitto = DefaultMosquitto
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Images == nil {
		imgs, err := Images(16)
		if err != nil {
			return err
		}
		c.Images = imgs
	}
	return nil
}

// latencyRun is one latency run's moving parts.
type latencyRun struct {
	cfg     LatencyConfig
	spool   string // the daemon's spool directory
	staging string // where files are written before their rename into the spool
	sub     *resultSub
	pub     paho.Client
	topic   string // ingest topic
}

// Latency runs the real inferq binary with its spool and MQTT ingest on, against a
// broker, and measures each source at cfg.Rate: images renamed into the spool at a
// fixed pace, then images published at the same pace.
func Latency(ctx context.Context, cfg LatencyConfig) (*LatencyResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.Dir, "latency")
	lr := &latencyRun{cfg: cfg, spool: filepath.Join(dir, "spool"), staging: filepath.Join(dir, "staging"),
		topic: "inferq/" + latencyNode + "/ingest/cam"}
	for _, d := range []string{lr.spool, lr.staging, filepath.Join(dir, "failed"), filepath.Join(dir, "mosquitto")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create %s: %w", d, err)
		}
	}
	res := &LatencyResult{Rate: cfg.Rate, Jobs: cfg.Jobs, Broker: cfg.Broker}
	if cfg.Broker == "" {
		m, err := startMosquitto(cfg.Mosquitto, filepath.Join(dir, "mosquitto"))
		if err != nil {
			return nil, err
		}
		defer m.stop()
		cfg.Broker, res.Broker = m.url, "mosquitto "+m.url+" (started for the run)"
	}
	sub, err := subscribeResults(cfg.Broker, "inferq/"+latencyNode+"/")
	if err != nil {
		return nil, err
	}
	defer sub.close()
	lr.sub = sub
	stop, err := lr.startDaemon(dir, cfg.Broker)
	if err != nil {
		return nil, err
	}
	defer stop()
	if lr.pub, err = connectMQTT(cfg.Broker, "inferq-bench-pub"); err != nil {
		return nil, err
	}
	defer lr.pub.Disconnect(250)
	if err := sub.waitOnline(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	if err := lr.probe(ctx, time.Minute); err != nil {
		return nil, err
	}
	if _, err := lr.sendMQTT(ctx, "warmup", cfg.Warmup, 0); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for _, src := range []string{"spool", "mqtt"} {
		var s SourceLatency
		var err error
		if src == "spool" {
			s, err = lr.spoolPhase(ctx)
		} else {
			var samples []sample
			samples, err = lr.sendMQTT(ctx, "mqtt", cfg.Jobs, cfg.Rate)
			s = summarizeLatency("mqtt", "publish", samples)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		res.Sources = append(res.Sources, s)
	}
	return res, nil
}

// startDaemon writes the daemon's configuration and starts `inferq run`; the returned
// function stops it (SIGTERM, then SIGKILL after 15 s).
func (lr *latencyRun) startDaemon(dir, broker string) (func(), error) {
	c := lr.cfg.daemonConfig(latencyNode, dir)
	c.Log.Format = "text" // at the default level, as installed
	c.Spool.Dir, c.Spool.FailedDir, c.Spool.DoneDir = lr.spool, filepath.Join(dir, "failed"), ""
	c.MQTT.Broker, c.MQTT.Brokers = "external", []string{broker}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("cannot encode config: %w", err)
	}
	path := filepath.Join(dir, "inferq.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("cannot write config: %w", err)
	}
	logPath := filepath.Join(dir, "inferq.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create daemon log: %w", err)
	}
	defer lf.Close()
	cmd := exec.Command(lr.cfg.Binary, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s run: %w", lr.cfg.Binary, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	lr.sub.exited = done
	lr.sub.logPath = logPath
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}, nil
}

// sample is one job's send time and its result's arrival.
type sample struct {
	sent, arrived time.Time
	msg           daemon.ResultMessage
}

// pace calls send(i) for i in [0, n) at rate per second (at once when rate is 0), each
// at its scheduled time rather than after the previous one, so a slow send does not
// shift the ones after it.
func pace(ctx context.Context, n int, rate float64, send func(i int) error) error {
	start := time.Now()
	for i := range n {
		if rate > 0 {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// spoolPhase writes the images outside the spool first, then renames them in one by
// one at the configured rate; the rename is the moment measured from.
func (lr *latencyRun) spoolPhase(ctx context.Context) (SourceLatency, error) {
	n := lr.cfg.Jobs
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("lat-%05d.jpg", i)
		img := uniqueJPEG(lr.cfg.Images[i%len(lr.cfg.Images)], "inferq bench spool "+names[i])
		if err := os.WriteFile(filepath.Join(lr.staging, names[i]), img, 0o644); err != nil {
			return SourceLatency{}, fmt.Errorf("cannot stage image: %w", err)
		}
	}
	key := func(m daemon.ResultMessage) string { return m.Metadata["spool.file"] }
	sent := make([]time.Time, n)
	lr.sub.expect(key, names)
	err := pace(ctx, n, lr.cfg.Rate, func(i int) error {
		sent[i] = time.Now()
		return os.Rename(filepath.Join(lr.staging, names[i]), filepath.Join(lr.spool, names[i]))
	})
	if err != nil {
		return SourceLatency{}, err
	}
	samples, err := lr.sub.collect(ctx, sent, resultTimeout(n, lr.cfg.Rate))
	if err != nil {
		return SourceLatency{}, err
	}
	return summarizeLatency("spool", "rename", samples), nil
}

// sendMQTT publishes n images on the ingest topic at rate (0: at once) and waits for
// their results. Ids are those the daemon derives from topic and payload.
func (lr *latencyRun) sendMQTT(ctx context.Context, tag string, n int, rate float64) ([]sample, error) {
	return lr.sendMQTTWithin(ctx, tag, n, rate, resultTimeout(n, rate))
}

func (lr *latencyRun) sendMQTTWithin(ctx context.Context, tag string, n int, rate float64, timeout time.Duration) ([]sample, error) {
	payloads := make([][]byte, n)
	ids := make([]string, n)
	for i := range n {
		payloads[i] = uniqueJPEG(lr.cfg.Images[i%len(lr.cfg.Images)], fmt.Sprintf("inferq bench %s %d %d", tag, i, time.Now().UnixNano()))
		it, err := mqtt.ParseIngest(lr.topic, payloads[i], 0, time.Now())
		if err != nil {
			return nil, fmt.Errorf("cannot derive the job id: %w", err)
		}
		ids[i] = it.ID
	}
	lr.sub.expect(func(m daemon.ResultMessage) string { return m.JobID }, ids)
	sent := make([]time.Time, n)
	tokens := make([]paho.Token, n)
	err := pace(ctx, n, rate, func(i int) error {
		sent[i] = time.Now()
		tokens[i] = lr.pub.Publish(lr.topic, 1, false, payloads[i])
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range tokens {
		if t.WaitTimeout(30*time.Second) && t.Error() != nil {
			return nil, fmt.Errorf("publish: %w", t.Error())
		}
	}
	return lr.sub.collect(ctx, sent, timeout)
}

// probe publishes an image every half second until one's result arrives: "online" is
// published when the daemon connects, its ingest subscription follows, and a message
// published between the two is not delivered to it.
func (lr *latencyRun) probe(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		_, err := lr.sendMQTTWithin(ctx, fmt.Sprintf("probe-%d", i), 1, 0, 500*time.Millisecond)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNoResult) || time.Now().After(deadline) {
			return fmt.Errorf("no result for a probe image within %s: %w", timeout, err)
		}
	}
}

func resultTimeout(n int, rate float64) time.Duration {
	return 2*time.Minute + time.Duration(float64(n)/max(rate, 1)*float64(time.Second))
}

func summarizeLatency(source, from string, samples []sample) SourceLatency {
	var e2e, eng, added, intake, wait, runOther, publish []float64
	for _, s := range samples {
		m := s.msg
		t := m.Output.Timings
		engine := t.DecodeMS + t.PreprocessMS + t.InvokeMS + t.PostprocessMS
		total := ms(s.arrived.Sub(s.sent))
		e2e = append(e2e, total)
		eng = append(eng, engine)
		added = append(added, total-engine)
		intake = append(intake, ms(m.ReceivedAt.Sub(s.sent)))
		if m.StartedAt != nil {
			wait = append(wait, ms(m.StartedAt.Sub(m.ReceivedAt)))
		}
		runOther = append(runOther, m.Timings.RunMS-engine)
		publish = append(publish, ms(s.arrived.Sub(m.FinishedAt)))
	}
	return SourceLatency{Source: source, From: from, EndToEnd: quantiles(e2e), Engine: quantiles(eng),
		Added: quantiles(added), Intake: quantiles(intake), Wait: quantiles(wait),
		RunOther: quantiles(runOther), Publish: quantiles(publish)}
}

// errNoResult is collect's error when results did not arrive in time.
var errNoResult = errors.New("results did not arrive")

// resultSub subscribes to the daemon's results and availability.
type resultSub struct {
	cl     paho.Client
	online chan struct{}
	once   sync.Once

	mu      sync.Mutex
	key     func(daemon.ResultMessage) string
	want    map[string]int // key → index of the expected job
	got     []sample
	left    int
	bad     error
	arrived chan struct{} // poked on each expected result

	exited  <-chan struct{} // the daemon process ended
	logPath string
}

func connectMQTT(broker, id string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("%s-%d", id, os.Getpid())).
		SetCleanSession(true).SetOrderMatters(false).SetConnectTimeout(10 * time.Second).SetAutoReconnect(false)
	cl := paho.NewClient(o)
	if t := cl.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("cannot connect to %s: %v", broker, t.Error())
	}
	return cl, nil
}

func subscribeResults(broker, prefix string) (*resultSub, error) {
	cl, err := connectMQTT(broker, "inferq-bench-sub")
	if err != nil {
		return nil, err
	}
	s := &resultSub{cl: cl, online: make(chan struct{}), arrived: make(chan struct{}, 1)}
	t := cl.SubscribeMultiple(map[string]byte{prefix + "results/#": 1, prefix + "available": 1}, s.handle)
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		cl.Disconnect(250)
		return nil, fmt.Errorf("cannot subscribe: %v", t.Error())
	}
	return s, nil
}

func (s *resultSub) close() { s.cl.Disconnect(250) }

func (s *resultSub) handle(_ paho.Client, m paho.Message) {
	now := time.Now()
	if strings.HasSuffix(m.Topic(), "/available") {
		if a, ok := mqtt.ParseAvailability(m.Payload()); ok && a.State == mqtt.Online {
			s.once.Do(func() { close(s.online) })
		}
		return
	}
	var msg daemon.ResultMessage
	err := json.Unmarshal(m.Payload(), &msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == nil {
		return
	}
	if err != nil {
		s.bad = fmt.Errorf("cannot decode result: %w", err)
		return
	}
	i, ok := s.want[s.key(msg)]
	if !ok || !s.got[i].arrived.IsZero() { // another job's, or a duplicate delivery
		return
	}
	if msg.Status != daemon.StatusOK || msg.Output == nil {
		s.bad = fmt.Errorf("job %s: status %s: %s", msg.JobID, msg.Status, msg.Error)
	}
	s.got[i].arrived, s.got[i].msg = now, msg
	s.left--
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

// expect starts a phase: results are matched by key(result) against keys.
func (s *resultSub) expect(key func(daemon.ResultMessage) string, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.want, s.got, s.left, s.bad = key, make(map[string]int, len(keys)), make([]sample, len(keys)), len(keys), nil
	for i, k := range keys {
		s.want[k] = i
	}
}

// collect waits for every expected result and returns the samples with their send
// times.
func (s *resultSub) collect(ctx context.Context, sent []time.Time, timeout time.Duration) ([]sample, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		left, bad := s.left, s.bad
		s.mu.Unlock()
		if bad != nil {
			return nil, bad
		}
		if left == 0 {
			break
		}
		select {
		case <-s.arrived:
		case <-s.exited:
			return nil, fmt.Errorf("inferq exited: %s", tailFile(s.logPath))
		case <-deadline.C:
			return nil, fmt.Errorf("%w: %d of %d within %s; inferq log: %s", errNoResult, left, len(sent), timeout, tailFile(s.logPath))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sample, len(s.got))
	for i, g := range s.got {
		out[i] = sample{sent: sent[i], arrived: g.arrived, msg: g.msg}
	}
	s.key = nil
	return out, nil
}

// waitOnline waits for the daemon's retained "online".
func (s *resultSub) waitOnline(ctx context.Context, timeout time.Duration) error {
	select {
	case <-s.online:
		return nil
	case <-s.exited:
		return fmt.Errorf("inferq exited at start-up: %s", tailFile(s.logPath))
	case <-time.After(timeout):
		return fmt.Errorf("inferq did not come online within %s: %s", timeout, tailFile(s.logPath))
	case <-ctx.Done():
		return ctx.Err()
	}
}
