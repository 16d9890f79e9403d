package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// The refusals and stalls users ran into, through the real daemon: refused
// MQTT ingest messages are counted in health (mqtt.rejected stayed 0 after
// 19 refusals: health showed the client's transient-retry counter, never
// its refusal counter), a 5,000-byte id is cut wherever it is echoed, and a
// zero-byte spool file is counted as waiting with its age. Each is a problem.
func TestHealthShowsRefusalsAndWaitingFiles(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	events := b.Subscribe(t, "-t", "inferq/e2e/events", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	d, _, _ := startDaemon(t, cfg)
	deadline := time.Now().Add(20 * time.Second)
	for !d.Health().MQTT.Connected || !d.client.Stats().Subscribed {
		if time.Now().After(deadline) {
			t.Fatal("daemon not connected and subscribed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	longID := strings.Repeat("i", 5000)
	env := filepath.Join(t.TempDir(), "env.json")
	if err := os.WriteFile(env, []byte(`{"id":"`+longID+`","image":"/9j/4AAQ"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/e2e/ingest/cam1", "-q", "1", "-m", "not an image")
	b.Publish(t, "-t", "inferq/e2e/ingest/cam1", "-q", "1", "-m", "{")
	b.Publish(t, "-t", "inferq/e2e/ingest/cam1", "-q", "1", "-f", env)
	if err := os.WriteFile(filepath.Join(cfg.Spool.Dir, "empty.jpg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	var h Health
	for deadline := time.Now().Add(20 * time.Second); ; {
		h = d.Health()
		if h.MQTT.Refused == 3 && h.Spool.Waiting == 1 && h.Spool.OldestWaitingS >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: mqtt %+v spool %+v, want 3 refused and 1 waiting file", *h.MQTT, *h.Spool)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(h.MQTT.LastRefused, "…(5000 bytes)") || strings.Contains(h.MQTT.LastRefused, longID) || h.MQTT.LastRefusedAt == nil {
		t.Errorf("mqtt.last_refused = %.300q, want the id cut with a marker", h.MQTT.LastRefused)
	}
	if h.Spool.WaitingEmpty != 1 {
		t.Errorf("spool.waiting_empty = %d, want 1", h.Spool.WaitingEmpty)
	}
	problems := strings.Join(h.Problems, "\n")
	for _, want := range []string{"mqtt: 3 ingest messages refused, last: inferq/e2e/ingest/cam1: ", "spool: 1 files waiting longer than settle_time (1 empty), oldest "} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q, want one with %q", h.Problems, want)
		}
	}
	// The rejected events went out with the id cut too.
	for i := 0; i < 3; i++ {
		l, err := events.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("rejected event %d: %v", i, err)
		}
		if strings.Contains(l, longID) || len(l) > 2000 {
			t.Fatalf("event of %d bytes carries the whole id", len(l))
		}
	}
}
