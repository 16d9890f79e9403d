package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/inferq/inferq/internal/logkey"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The optional Prometheus endpoint (metrics.enabled, on metrics.listen, loopback by
// default) serves GET /metrics: the health document's figures in base units (seconds,
// bytes) under Prometheus names, counters of job outcomes since start, a histogram of
// run durations, and the Go runtime's and the process's standard metrics. The figures
// are read from the last health document (at most a second old, see healthLoop), so a
// scrape never waits for the queue or the engine. The node is not a label: that is the
// scrape target's (instance); inferq_info carries it.

// metricsServer serves /metrics.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
	// runSeconds is the histogram the worker observes every run into.
	runSeconds prometheus.Histogram
}

// runBuckets cover one run from a millisecond to a minute.
var runBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// newMetrics prepares the registry; health gives the current health document.
func newMetrics(health func() Health, log *slog.Logger) (*metricsServer, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m := &metricsServer{log: log, runSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "inferq_job_run_seconds", Help: "Duration of one job attempt, image read to result (each attempt counted, retried ones too).",
		Buckets: runBuckets,
	})}
	reg.MustRegister(m.runSeconds, healthCollector{health: health},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m, reg
}

// listenMetrics opens the endpoint; a listen address that cannot be had stops the start.
func listenMetrics(addr string, health func() Health, log *slog.Logger) (*metricsServer, error) {
	m, reg := newMetrics(health, log)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics (metrics.listen %q): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogErrorLog{log}}))
	m.ln = ln
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	return m, nil
}

// Addr is the address the endpoint listens on (the port chosen, for :0).
func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

// Run serves until ctx is done.
func (m *metricsServer) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = m.srv.Shutdown(sctx)
	})
	defer stop()
	m.log.Info("metrics endpoint", "addr", m.Addr())
	if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops serving; safe after Run and twice.
func (m *metricsServer) Close() error {
	if err := m.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// slogErrorLog gives promhttp's errors to slog.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Warn("metrics", logkey.Err, fmt.Sprint(v...)) }

// healthCollector turns a health document into metrics at every scrape.
type healthCollector struct{ health func() Health }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mInfo          = desc("inferq_info", "Always 1: the node, version and boot id of this daemon.", "node", "version", "boot_id")
	mModelInfo     = desc("inferq_model_info", "Always 1 while a model is loaded: its name and sha256.", "name", "sha256")
	mModelLoaded   = desc("inferq_model_loaded_timestamp_seconds", "When the model serving now was loaded (Unix time).")
	mStart         = desc("inferq_start_timestamp_seconds", "When this daemon started (Unix time).")
	mStatus        = desc("inferq_health_status", "1 for the current health status (ok, degraded, failing), 0 for the others.", "status")
	mProblems      = desc("inferq_health_problems", "Number of problems the health document lists.")
	mSeq           = desc("inferq_health_sequence", "Sequence number of the health document the figures come from (grows across restarts).")
	mQueueJobs     = desc("inferq_queue_jobs", "Jobs held by the queue, by state.", "state")
	mQueueReady    = desc("inferq_queue_ready_jobs", "Jobs ready to run, by priority.", "priority")
	mQueueOldest   = desc("inferq_queue_oldest_age_seconds", "Age of the oldest ready job.")
	mQueueBytes    = desc("inferq_queue_bytes", "Bytes of queued images.")
	mQueueMaxJobs  = desc("inferq_queue_max_jobs", "Queue limit in jobs (queue.max_jobs).")
	mQueueMaxBytes = desc("inferq_queue_max_bytes", "Queue limit in bytes (queue.max_bytes).")
	mQueueFull     = desc("inferq_queue_full", "1 while new input is refused (queue or disk full).")
	mDamaged       = desc("inferq_queue_damaged_records_total", "Damaged queue records set aside since start.")
	mJobs          = desc("inferq_jobs_total", "Job outcomes since start: done, retried (an attempt failed, another follows), dead, expired.", "outcome")
	mOutbox        = desc("inferq_outbox_messages", "Messages waiting to be published.")
	mOutboxOldest  = desc("inferq_outbox_oldest_age_seconds", "Age of the oldest message waiting to be published.")
	mEngine        = desc("inferq_engine_events_total", "Engine child events since start: restarts, crashes, timeouts.", "event")
	mEngineBusy    = desc("inferq_engine_busy_seconds", "How long the job running now has run (0 when idle).")
	mMQTTConnected = desc("inferq_mqtt_connected", "1 while connected to the broker.")
	mMQTTReconn    = desc("inferq_mqtt_reconnects_total", "Broker reconnections since start.")
	mMQTTPublished = desc("inferq_mqtt_published_messages_total", "Outbox messages the broker acknowledged since start.")
	mMQTTIngest    = desc("inferq_mqtt_ingest_failures_total", "Ingest messages refused for good (refused) or not queued for now (rejected, retried).", "kind")
	mSpoolTaken    = desc("inferq_spool_taken_files_total", "Spool files taken since start.")
	mSpoolRefused  = desc("inferq_spool_refused_files_total", "Spool files refused since start.")
	mSpoolWaiting  = desc("inferq_spool_waiting_files", "Spool files waiting longer than settle_time.")
	mDiskFree      = desc("inferq_disk_free_bytes", "Free space on the state directory's file system, as the queue may use it.")
	mDiskReserve   = desc("inferq_disk_reserve_bytes", "Free space kept in reserve (queue.disk_reserve).")
	mPaused        = desc("inferq_paused", "1 while an operator paused intake or the worker.", "what")
	allDescs       = []*prometheus.Desc{mInfo, mModelInfo, mModelLoaded, mStart, mStatus, mProblems, mSeq, mQueueJobs, mQueueReady,
		mQueueOldest, mQueueBytes, mQueueMaxJobs, mQueueMaxBytes, mQueueFull, mDamaged, mJobs, mOutbox, mOutboxOldest, mEngine,
		mEngineBusy, mMQTTConnected, mMQTTReconn, mMQTTPublished, mMQTTIngest, mSpoolTaken, mSpoolRefused, mSpoolWaiting,
		mDiskFree, mDiskReserve, mPaused}
)

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.health()
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge(mInfo, 1, h.Node, h.Version, h.BootID)
	if h.Model.SHA256 != "" {
		gauge(mModelInfo, 1, h.Model.Name, h.Model.SHA256)
		gauge(mModelLoaded, float64(h.Model.LoadedAt.UnixMilli())/1000)
	}
	gauge(mStart, float64(h.StartedAt.UnixMilli())/1000)
	for _, s := range []string{HealthOK, HealthDegraded, HealthFailing} {
		gauge(mStatus, b2f(h.Status == s), s)
	}
	gauge(mProblems, float64(len(h.Problems)))
	gauge(mSeq, float64(h.Seq))
	q := h.Queue
	gauge(mQueueJobs, float64(q.Depth), "ready")
	gauge(mQueueJobs, float64(q.Leased), "leased")
	gauge(mQueueJobs, float64(q.Delayed), "delayed")
	gauge(mQueueJobs, float64(q.Dead), "dead")
	for p := range 10 {
		gauge(mQueueReady, float64(q.ByPriority[strconv.Itoa(p)]), strconv.Itoa(p))
	}
	gauge(mQueueOldest, q.OldestAgeS)
	gauge(mQueueBytes, float64(q.Bytes))
	gauge(mQueueMaxJobs, float64(q.MaxJobs))
	gauge(mQueueMaxBytes, float64(q.MaxBytes))
	gauge(mQueueFull, b2f(q.Full))
	counter(mDamaged, q.Damaged)
	counter(mJobs, h.Jobs.Done, "done")
	counter(mJobs, h.Jobs.Retried, "retried")
	counter(mJobs, h.Jobs.Dead, "dead")
	counter(mJobs, q.Expired, "expired")
	gauge(mOutbox, float64(h.Outbox.Depth))
	gauge(mOutboxOldest, h.Outbox.OldestAgeS)
	counter(mEngine, h.Engine.Restarts, "restart")
	counter(mEngine, h.Engine.Crashes, "crash")
	counter(mEngine, h.Engine.Timeouts, "timeout")
	gauge(mEngineBusy, float64(h.Engine.BusyMS)/1000)
	if m := h.MQTT; m != nil {
		gauge(mMQTTConnected, b2f(m.Connected))
		counter(mMQTTReconn, m.Reconnects)
		counter(mMQTTPublished, m.Published)
		counter(mMQTTIngest, m.Refused, "refused")
		counter(mMQTTIngest, m.Rejected, "rejected")
	}
	if s := h.Spool; s != nil {
		counter(mSpoolTaken, s.Taken)
		counter(mSpoolRefused, s.Refused)
		gauge(mSpoolWaiting, float64(s.Waiting))
	}
	gauge(mDiskFree, float64(h.Disk.FreeBytes))
	gauge(mDiskReserve, float64(h.Disk.ReserveBytes))
	var p PauseState
	if h.Paused != nil {
		p = *h.Paused
	}
	gauge(mPaused, b2f(p.Intake), "intake")
	gauge(mPaused, b2f(p.Worker), "worker")
}

// lastHealth is the last health document built (by healthLoop, every second), or a
// new one before the first.
func (d *Daemon) lastHealth() Health {
	d.healthMu.Lock()
	h := d.health
	d.healthMu.Unlock()
	if h.Time.IsZero() {
		return d.refreshHealth()
	}
	return h
}

// MetricsAddr is the address of the metrics endpoint, "" when it is off.
func (d *Daemon) MetricsAddr() string {
	if d.metrics == nil {
		return ""
	}
	return d.metrics.Addr()
}

// observeRun puts one attempt's run duration into the histogram (nothing with metrics off).
func (d *Daemon) observeRun(run time.Duration) {
	if d.metrics != nil {
		d.metrics.runSeconds.Observe(run.Seconds())
	}
}
