package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// collector keeps the messages a tool session receives.
type collector struct {
	mu   sync.Mutex
	msgs []mqtt.Message
}

func (c *collector) add(m mqtt.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

// latest is the last message per topic among those received retained (or not).
func (c *collector) latest(retained bool) map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]byte{}
	for _, m := range c.msgs {
		if m.Retained == retained {
			out[m.Topic] = m.Payload
		}
	}
	return out
}

func dialCollector(t *testing.T, b *mqtttest.Broker, filters ...string) *collector {
	t.Helper()
	c := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := mqtt.Dial(ctx, mqtt.SessionConfig{Brokers: []string{b.URL()}}, filters, c.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return c
}

// Home Assistant discovery against a real Mosquitto and a real daemon: the retained
// configs read back from the broker follow the documented schema, their templates
// (rendered by Jinja2) read the box's real retained health and availability and a real
// result; when Home Assistant announces itself online on homeassistant/status, every
// config is published again.
func TestHomeAssistantDiscovery(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.MQTT.HomeAssistant.Enabled = true
	results := b.Subscribe(t, "-t", "inferq/e2e/results/door", "-q", "1")
	d, _, _ := startDaemon(t, cfg)
	sources := cfg.haSources()
	if fmt.Sprint(sources) != "[door spool]" {
		t.Fatalf("sources %v", sources)
	}
	want := 6 + 2*len(sources)
	testenv.WaitFor(t, "discovery published", 20*time.Second, func() bool { return d.ha.rounds.Load() == 1 })

	ha := dialCollector(t, b, "homeassistant/sensor/#")
	testenv.WaitFor(t, "the retained configs", 10*time.Second, func() bool { return len(ha.latest(true)) == want })
	configs := ha.latest(true)
	byObject := map[string]map[string]any{}
	for topic, payload := range configs {
		c := checkHADiscovery(t, "homeassistant", "e2e", topic, payload)
		byObject[strings.Split(topic, "/")[3]] = c
	}

	// The templates on the box's own retained messages and a real result.
	box := dialCollector(t, b, "inferq/e2e/available", "inferq/e2e/health")
	testenv.WaitFor(t, "retained availability and health", 10*time.Second, func() bool { return len(box.latest(true)) == 2 })
	own := box.latest(true)
	dropFile(t, cfg.Spool.Dir+"/door", "a.jpg", testJPEG(t, 1))
	line, err := results.Next(60 * time.Second)
	if err != nil {
		t.Fatalf("no result: %v", err)
	}
	_, payload, _ := strings.Cut(line, " ")
	var res ResultMessage
	if err := json.Unmarshal([]byte(payload), &res); err != nil || res.Output == nil || len(res.Output.Classes) == 0 {
		t.Fatalf("result %s: %v", payload, err)
	}
	tmpl := func(object, key string) string { s, _ := byObject[object][key].(string); return s }
	checkRendered(t, []jinjaCase{
		{Template: tmpl("status", "availability_template"), Value: string(own["inferq/e2e/available"]), want: "online"},
		{Template: tmpl("status", "value_template"), Value: string(own["inferq/e2e/health"]), want: d.lastHealth().Status},
		{Template: tmpl("queue_depth", "value_template"), Value: string(own["inferq/e2e/health"]), want: "0"},
		{Template: tmpl("last_label_door", "value_template"), Value: payload, want: res.Output.Classes[0].Label},
		{Template: tmpl("last_score_door", "value_template"), Value: payload,
			want: strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", res.Output.Classes[0].Score), "0"), ".")},
	})

	// Home Assistant's birth: everything again, live.
	if n := len(ha.latest(false)); n != 0 {
		t.Fatalf("%d configs published live before Home Assistant asked", n)
	}
	b.Publish(t, "-t", "homeassistant/status", "-m", "online")
	testenv.WaitFor(t, "the configs republished", 10*time.Second, func() bool { return len(ha.latest(false)) == want })
	for topic, p := range ha.latest(false) {
		if string(p) != string(configs[topic]) {
			t.Errorf("%s republished as\n%s\nwas\n%s", topic, p, configs[topic])
		}
	}
	// Its last will (offline) is not a birth.
	b.Publish(t, "-t", "homeassistant/status", "-m", "offline")
	time.Sleep(300 * time.Millisecond)
	if n := d.ha.rounds.Load(); n != 2 {
		t.Errorf("%d announcements, want 2 (connect, birth)", n)
	}
}
