package daemon

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// scrape GETs /metrics from addr and parses it with Prometheus' own text parser, with
// the strict (legacy) name rules.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the Prometheus text parser refuses /metrics: %v", err)
	}
	return mf
}

// value is the value of the sample of family name whose labels include want ("k=v").
func value(mf map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f, ok := mf[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// A running daemon with metrics.enabled serves the health figures, the job outcome
// counters and the run-time histogram on a live /metrics, in Prometheus' format and
// naming; the histogram counts every attempt the worker ran.
func TestMetricsEndpoint(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.Metrics = MetricsConfig{Enabled: true, Listen: "127.0.0.1:0"}
	d, _, _ := startDaemon(t, cfg)
	addr := d.MetricsAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("metrics address %q", addr)
	}
	dropFile(t, cfg.Spool.Dir, "a.jpg", testJPEG(t, 1))
	dropFile(t, cfg.Spool.Dir, "b.jpg", testJPEG(t, 2))
	dropFile(t, cfg.Spool.Dir, "broken.jpg", []byte("\xff\xd8\xff\xe0 not a jpeg"))

	var mf map[string]*dto.MetricFamily
	deadline := time.Now().Add(60 * time.Second)
	for {
		mf = scrape(t, addr)
		done, _ := value(mf, "inferq_jobs_total", "outcome=done")
		dead, _ := value(mf, "inferq_jobs_total", "outcome=dead")
		if done == 2 && dead == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs done %v dead %v, want 2 and 1", done, dead)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, _ := value(mf, "inferq_job_run_seconds"); n != 3 {
		t.Errorf("inferq_job_run_seconds counts %v runs, want 3", n)
	}
	if f := mf["inferq_job_run_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("inferq_job_run_seconds is a %v", f.GetType())
	}
	checks := []struct {
		name   string
		labels []string
		ok     func(float64) bool
	}{
		{"inferq_info", []string{"node=e2e", "version=test"}, func(v float64) bool { return v == 1 }},
		{"inferq_queue_jobs", []string{"state=dead"}, func(v float64) bool { return v == 1 }},
		{"inferq_queue_jobs", []string{"state=ready"}, func(v float64) bool { return v == 0 }},
		{"inferq_health_status", []string{"status=failing"}, func(v float64) bool { return v == 0 }},
		{"inferq_mqtt_connected", nil, func(v float64) bool { return v == 1 }},
		{"inferq_disk_free_bytes", nil, func(v float64) bool { return v > 0 }},
		{"inferq_start_timestamp_seconds", nil, func(v float64) bool { return v > 1e9 }},
		{"inferq_model_info", nil, func(v float64) bool { return v == 1 }},
		{"inferq_spool_taken_files_total", nil, func(v float64) bool { return v == 3 }},
		{"inferq_queue_oldest_age_seconds", nil, func(v float64) bool { return v >= 0 }},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }},
	}
	for _, c := range checks {
		if v, ok := value(mf, c.name, c.labels...); !ok || !c.ok(v) {
			t.Errorf("%s%v = %v (present %v)", c.name, c.labels, v, ok)
		}
	}
	// Prometheus naming: counters end in _total, sizes in _bytes, times in _seconds.
	for name, f := range mf {
		if !strings.HasPrefix(name, "inferq_") {
			continue
		}
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %v; only counters end in _total", name, f.GetType())
		}
		if strings.Contains(name, "_ms") || strings.HasSuffix(name, "_age") || strings.Contains(name, "_mib") {
			t.Errorf("%s: not in base units", name)
		}
	}
}

// The endpoint is off by default and loopback when turned on without an address; a bad
// address names the field.
func TestMetricsConfig(t *testing.T) {
	def := DefaultConfig()
	if def.Metrics.Enabled || !strings.HasPrefix(def.Metrics.Listen, "127.0.0.1:") {
		t.Errorf("default metrics %+v, want off on loopback", def.Metrics)
	}
	cfg := def
	cfg.Model.Path = "m.tflite"
	cfg.Metrics = MetricsConfig{Enabled: true, Listen: "nine-four-six-four"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("bad listen: %v", err)
	}
}
