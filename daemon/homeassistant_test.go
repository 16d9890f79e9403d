package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt"
)

var haTestInputs = haInputs{node: "gate.1", prefix: "inferq", discoveryPrefix: "homeassistant", version: "1.2.3",
	sources: []string{"door", "yard cam"}}

// The discovery configs as published, pinned.
func TestHADiscoveryGolden(t *testing.T) {
	var b bytes.Buffer
	for _, c := range haConfigs(haTestInputs) {
		fmt.Fprintf(&b, "%s\n%s\n\n", c.Topic, c.Payload)
	}
	testenv.Golden(t, filepath.Join("daemon", "homeassistant_discovery.txt"), b.Bytes())
}

var haIDChars = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// checkHADiscovery checks one discovery message against Home Assistant's documented
// schema for an MQTT sensor: the topic <prefix>/sensor/<node_id>/<object_id>/config with
// ids of [a-zA-Z0-9_-], a JSON object with name, unique_id, state_topic and
// value_template, availability through availability_topic with availability_template
// and payload_available/payload_not_available, a device with identifiers and a name,
// an origin with a name, and only documented sensor options. It returns the config.
func checkHADiscovery(t *testing.T, prefix, node, topic string, payload []byte) map[string]any {
	t.Helper()
	levels := strings.Split(topic, "/")
	if len(levels) != 5 || levels[0] != prefix || levels[1] != "sensor" || levels[4] != "config" ||
		!haIDChars.MatchString(levels[2]) || !haIDChars.MatchString(levels[3]) {
		t.Errorf("discovery topic %q: want %s/sensor/<node_id>/<object_id>/config with ids of [a-zA-Z0-9_-]", topic, prefix)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("%s: payload is not a JSON object: %v\n%s", topic, err, payload)
	}
	documented := map[string]bool{"name": true, "unique_id": true, "state_topic": true, "value_template": true,
		"json_attributes_topic": true, "json_attributes_template": true, "availability_topic": true,
		"availability_template": true, "payload_available": true, "payload_not_available": true,
		"device_class": true, "state_class": true, "unit_of_measurement": true, "options": true, "icon": true,
		"qos": true, "device": true, "origin": true}
	for k := range c {
		if !documented[k] {
			t.Errorf("%s: option %q is not a documented MQTT sensor option", topic, k)
		}
	}
	str := func(k string) string {
		s, ok := c[k].(string)
		if !ok || s == "" {
			t.Errorf("%s: %s missing or not a string: %v", topic, k, c[k])
		}
		return s
	}
	str("name")
	str("unique_id")
	if st := str("state_topic"); !strings.HasPrefix(st, "inferq/"+node+"/") {
		t.Errorf("%s: state_topic %q is not one of the box's topics", topic, st)
	}
	str("value_template")
	if at := str("availability_topic"); at != "inferq/"+node+"/available" {
		t.Errorf("%s: availability_topic %q", topic, at)
	}
	str("availability_template")
	if c["payload_available"] != "online" || c["payload_not_available"] != "offline" {
		t.Errorf("%s: payload_available %v, payload_not_available %v", topic, c["payload_available"], c["payload_not_available"])
	}
	if _, ok := c["json_attributes_template"]; ok {
		str("json_attributes_topic")
	}
	switch dc := c["device_class"]; dc {
	case nil, "duration":
	case "enum":
		if opts, ok := c["options"].([]any); !ok || len(opts) == 0 {
			t.Errorf("%s: device_class enum without options", topic)
		}
	default:
		t.Errorf("%s: unexpected device_class %v", topic, dc)
	}
	if sc := c["state_class"]; sc != nil && sc != "measurement" {
		t.Errorf("%s: state_class %v", topic, sc)
	}
	dev, _ := c["device"].(map[string]any)
	ids, _ := dev["identifiers"].([]any)
	if len(ids) == 0 || dev["name"] == nil || dev["name"] == "" {
		t.Errorf("%s: device %v: want identifiers and a name", topic, c["device"])
	}
	if o, _ := c["origin"].(map[string]any); o["name"] != "inferq" {
		t.Errorf("%s: origin %v", topic, c["origin"])
	}
	return c
}

func TestHADiscoverySchema(t *testing.T) {
	configs := haConfigs(haTestInputs)
	if got, want := len(configs), 6+2*len(haTestInputs.sources); got != want {
		t.Fatalf("%d configs, want %d", got, want)
	}
	unique, devices := map[string]bool{}, map[string]bool{}
	for _, cfg := range configs {
		c := checkHADiscovery(t, "homeassistant", "gate.1", cfg.Topic, cfg.Payload)
		id := c["unique_id"].(string)
		if unique[id] {
			t.Errorf("unique_id %q used twice", id)
		}
		unique[id] = true
		dev, _ := json.Marshal(c["device"])
		devices[string(dev)] = true
	}
	if len(devices) != 1 {
		t.Errorf("sensors name %d different devices, want one: %v", len(devices), devices)
	}
	if haID("a.b") == haID("a_b") || haID("door") != "door" {
		t.Errorf("haID: a.b→%s a_b→%s door→%s", haID("a.b"), haID("a_b"), haID("door"))
	}
}

// jinjaRender renders each template with value (and value_json when value is JSON),
// as Home Assistant does, with Python's Jinja2 (Home Assistant's template engine),
// strict about undefined names.
func jinjaRender(t *testing.T, cases []jinjaCase) []string {
	t.Helper()
	py := testenv.Program(t, "python3")
	if err := exec.Command(py, "-c", "import jinja2").Run(); err != nil {
		testenv.Need(t, "python3 with jinja2 (Debian: python3-jinja2)", err)
	}
	const script = `
import json, sys, jinja2
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
out = []
for c in json.load(sys.stdin):
    v = {"value": c["value"]}
    try:
        v["value_json"] = json.loads(c["value"])
    except ValueError:
        pass
    try:
        out.append(env.from_string(c["template"]).render(**v))
    except Exception as e:
        out.append("ERROR: %s: %s" % (type(e).__name__, e))
json.dump(out, sys.stdout)
`
	in, _ := json.Marshal(cases)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type jinjaCase struct {
	Template string `json:"template"`
	Value    string `json:"value"`
	want     string
}

func checkRendered(t *testing.T, cases []jinjaCase) {
	t.Helper()
	got := jinjaRender(t, cases)
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("template %s\non %s\n got %q, want %q", c.Template, c.Value, got[i], c.want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The templates in the discovery configs, rendered by Jinja2 on the payloads inferq
// publishes: availability online → online, stopped and offline → offline (JSON with a
// boot sequence, or a bare word); health figures; the last result's label and score
// for a classifier, a detector, an empty detection and a failed job.
func TestHATemplates(t *testing.T) {
	avail := func(state string) string {
		return mustJSON(t, mqtt.Availability{State: state, BootID: "5f0c8a1e", Seq: 2049})
	}
	var cases []jinjaCase
	for _, tc := range []struct{ payload, want string }{
		{avail(mqtt.Online), "online"}, {avail(mqtt.Stopped), "offline"}, {avail(mqtt.Offline), "offline"},
		{"online", "online"}, {"stopped", "offline"}, {"offline", "offline"},
	} {
		cases = append(cases, jinjaCase{Template: haAvailabilityTemplate, Value: tc.payload, want: tc.want})
	}
	h := Health{Status: HealthDegraded, Problems: []string{"worker paused by an operator"}, Version: "1.2.3",
		Model: HealthModel{Name: "mobilenet"}, Queue: HealthQueue{Depth: 4, OldestAgeS: 12.5, Dead: 2},
		Jobs: HealthJobs{PerMinute: 30, P99MS: 8.25}}
	health := mustJSON(t, h)
	want := map[string]string{"status": "degraded", "queue_depth": "4", "oldest_age": "12.5", "dead": "2",
		"jobs_per_minute": "30", "p99": "8.25"}
	for _, s := range haSensors(haTestInputs) {
		if w, ok := want[s.object]; ok {
			cases = append(cases, jinjaCase{Template: s.template, Value: health, want: w})
		}
	}
	cases = append(cases, jinjaCase{Template: haStatusAttributes, Value: health,
		want: `{"model": "mobilenet", "problems": ["worker paused by an operator"], "version": "1.2.3"}`})

	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	result := func(status string, out *infer.Result) string {
		return mustJSON(t, ResultMessage{JobID: "j1", Node: "gate.1", Source: "door", Status: status, Output: out, FinishedAt: now})
	}
	classes := result(StatusOK, &infer.Result{Kind: "classification", Classes: []infer.Class{{Index: 3, Label: "cat", Score: 0.91234}, {Index: 1, Label: "dog", Score: 0.05}}})
	unlabelled := result(StatusOK, &infer.Result{Kind: "classification", Classes: []infer.Class{{Index: 7, Score: 0.5}}})
	detections := result(StatusOK, &infer.Result{Kind: "detection", Detections: []infer.Detection{{Label: "person", Class: 0, Score: 0.8}}})
	noLabelDet := result(StatusOK, &infer.Result{Kind: "detection", Detections: []infer.Detection{{Class: 31, Score: 0.75}}})
	nothing := result(StatusOK, &infer.Result{Kind: "detection"})
	failed := result(StatusFailed, nil)
	for _, tc := range []struct{ payload, label, score string }{
		{classes, "cat", "0.9123"}, {unlabelled, "class 7", "0.5"}, {detections, "person", "0.8"},
		{noLabelDet, "class 31", "0.75"}, {nothing, "none", "None"}, {failed, "failed", "None"},
	} {
		cases = append(cases, jinjaCase{Template: haLabelTemplate, Value: tc.payload, want: tc.label},
			jinjaCase{Template: haScoreTemplate, Value: tc.payload, want: tc.score})
	}
	cases = append(cases, jinjaCase{Template: haResultAttrs, Value: classes,
		want: `{"finished_at": "2026-12-01T10:00:00Z", "job_id": "j1", "status": "ok"}`})
	checkRendered(t, cases)
}

func TestHAConfigChecks(t *testing.T) {
	c := DefaultConfig()
	c.Model.Path = "/models/m.tflite"
	c.MQTT.HomeAssistant = HomeAssistantConfig{Enabled: true, DiscoveryPrefix: "home/+", Sources: []string{"ok", "a/b"}}
	err := c.Validate()
	for _, want := range []string{`mqtt.homeassistant.discovery_prefix = "home/+"`, `mqtt.homeassistant.sources[1] = "a/b"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	c.MQTT.HomeAssistant = HomeAssistantConfig{Enabled: true, DiscoveryPrefix: "homeassistant"}
	if err := c.Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	c.Spool.Sources = []SpoolSource{{Name: "door"}}
	c.MQTT.Ingest.SourcePriority = map[string]int{"gate": 1, "door": 2}
	c.MQTT.HomeAssistant.Sources = []string{"yard"}
	if got := fmt.Sprint(c.haSources()); got != "[door gate spool yard]" {
		t.Errorf("haSources = %s", got)
	}
}
