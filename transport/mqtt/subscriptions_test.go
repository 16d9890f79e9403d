package mqtt

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// recorder is an extra subscription's handler that keeps what it got.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) handle(_ context.Context, m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) got() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func (r *recorder) find(payload string) (Message, bool) {
	for _, m := range r.got() {
		if string(m.Payload) == payload {
			return m, true
		}
	}
	return Message{}, false
}

// Extra subscriptions (Config.Subscriptions) on a real Mosquitto: a retained message is
// handed over marked Retained, a live one not; a message the persistent session kept
// while the client was away reaches the extra handler, not the ingest handler (routes
// are in place before the connect); OnConnect runs after every connect, a broker
// restart included.
func TestExtraSubscriptions(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	b.Publish(t, "-t", "inferq/box1/cmd/old", "-q", "1", "-r", "-m", "retained")
	rec := &recorder{}
	var connects atomic.Int32
	cfg := brokerConfig(b, "extra-box")
	cfg.Subscriptions = []Subscription{{Filter: "inferq/box1/cmd/+", QoS: 1, Handle: rec.handle}}
	cfg.OnConnect = func(context.Context) { connects.Add(1) }
	c, stop := runClient(t, cfg, nil, nil)
	waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })
	waitFor(t, "the retained message", 10*time.Second, func() bool { _, ok := rec.find("retained"); return ok })
	if m, _ := rec.find("retained"); !m.Retained || m.Topic != "inferq/box1/cmd/old" {
		t.Errorf("retained message handed over as %+v, want Retained", m)
	}
	b.Publish(t, "-t", "inferq/box1/cmd/new", "-q", "1", "-m", "live")
	waitFor(t, "the live message", 10*time.Second, func() bool { _, ok := rec.find("live"); return ok })
	if m, _ := rec.find("live"); m.Retained {
		t.Errorf("live message handed over as retained")
	}
	if n := connects.Load(); n != 1 {
		t.Errorf("OnConnect ran %d times after one connect", n)
	}
	b.Restart()
	waitFor(t, "OnConnect after the broker restart", 20*time.Second, func() bool { return connects.Load() == 2 })

	// Away: the broker keeps a QoS 1 message for the persistent session.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/box1/cmd/away", "-q", "1", "-m", "kept")
	rec2 := &recorder{}
	cfg.Subscriptions = []Subscription{{Filter: "inferq/box1/cmd/+", QoS: 1, Handle: rec2.handle}}
	cfg.OnConnect = nil
	c2 := startClient(t, cfg, nil, nil)
	waitFor(t, "the kept message", 10*time.Second, func() bool { _, ok := rec2.find("kept"); return ok })
	if st := c2.Stats(); st.Received != 0 || st.Refused != 0 {
		t.Errorf("the kept message reached the ingest handler too: %+v", st)
	}
}

// Config.Unsubscribe drops a subscription an earlier configuration left in the
// persistent session: its messages no longer arrive and are not refused as ingest.
func TestUnsubscribeStale(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := brokerConfig(b, "stale-box")
	cfg.Subscriptions = []Subscription{{Filter: "inferq/box1/cmd/+", QoS: 1, Handle: (&recorder{}).handle}}
	c, err := New(cfg, newMemOutbox(), nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })
	c.Close()

	// Commands turned off: the next start drops the subscription; a marker on a topic
	// it does subscribe to comes after the command in the broker's order.
	marker := &recorder{}
	cfg.Subscriptions = []Subscription{{Filter: "inferq/box1/marker", QoS: 1, Handle: marker.handle}}
	cfg.Unsubscribe = []string{"inferq/box1/cmd/+"}
	c2 := startClient(t, cfg, nil, nil)
	waitFor(t, "subscribed", 10*time.Second, func() bool { return c2.Stats().Subscribed })
	b.Publish(t, "-t", "inferq/box1/cmd/pause", "-q", "1", "-m", "{}")
	b.Publish(t, "-t", "inferq/box1/marker", "-q", "1", "-m", "m")
	waitFor(t, "the marker", 10*time.Second, func() bool { return len(marker.got()) == 1 })
	time.Sleep(200 * time.Millisecond) // handlers run concurrently: let a stray one finish
	if st := c2.Stats(); st.Received != 0 || st.Refused != 0 {
		t.Fatalf("a message of the dropped subscription still arrived: %+v", st)
	}
}

func TestSubscriptionsValidate(t *testing.T) {
	cfg := validConfig()
	h := (&recorder{}).handle
	cfg.Subscriptions = []Subscription{{Filter: "a/#/b", Handle: h}, {Filter: "a/+", QoS: 2, Handle: h}, {Filter: "a/c"}}
	cfg.Unsubscribe = []string{"x+/y"}
	err := cfg.Validate()
	for _, want := range []string{`subscription 0 "a/#/b": # must be the last level`, `subscription 1 "a/+": needs QoS 0 or 1`,
		`subscription 2 "a/c": needs QoS 0 or 1 and a handler`, `unsubscribe "x+/y"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	cfg.Subscriptions, cfg.Unsubscribe = []Subscription{{Filter: "homeassistant/status", Handle: h}}, []string{"inferq/box1/cmd/+"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
}
