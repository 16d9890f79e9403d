package mqtt

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// One client's publish reaches another through the embedded broker, and
// inferq's own Client works against it (availability, outbox, ingest).
func TestEmbeddedBroker(t *testing.T) {
	tests := []struct {
		name string
		auth bool
	}{{"anonymous", false}, {"password", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bc := BrokerConfig{Listen: "127.0.0.1:0"}
			pwFile := filepath.Join(dir, "pw")
			if tt.auth {
				os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
				bc.Username, bc.PasswordFile = "box", pwFile
			}
			b, err := NewEmbeddedBroker(bc, discard())
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Open(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				<-done
				b.Close()
				b.Close()
			})
			url := "tcp://" + b.Addr()

			cfg := Config{Brokers: []string{url}, ClientID: "emb-box", Prefix: "inferq", Node: "box1", IngestEnabled: true,
				ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
			if tt.auth {
				cfg.Username, cfg.PasswordFile = "box", pwFile
				bad := cfg
				bad.ClientID, bad.IngestEnabled = "emb-bad", false
				bad.PasswordFile = filepath.Join(dir, "wrong")
				os.WriteFile(bad.PasswordFile, []byte("nope"), 0o600)
				c, err := New(bad, newMemOutbox(), nil, discard())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Open(context.Background()); err == nil {
					t.Fatalf("got nil error with a wrong password")
				}
				c.Close()
			}
			// A plain paho subscriber, with the credentials in the URL when needed.
			var subURL = url
			if tt.auth {
				subURL = "tcp://box:s3cret@" + b.Addr()
			}
			sub := subscribe(t, subURL, "emb-reader", "inferq/box1/#")
			ob := newMemOutbox()
			sink := newFileSink(t.TempDir())
			c := startClient(t, cfg, ob, sink)
			waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })
			ob.Add("results/cam1", []byte(`{"id":"e1"}`))
			for {
				m := sub.next(t, 10*time.Second)
				if m.Topic() == "inferq/box1/results/cam1" && string(m.Payload()) == `{"id":"e1"}` {
					break
				}
			}
			if tok := sub.cl.Publish("inferq/box1/ingest/cam9", 1, false, jpeg); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			if it := sink.next(t, 10*time.Second); it.Source != "cam9" {
				t.Fatalf("got source %q, want cam9", it.Source)
			}
		})
	}
}

// inferq's Client connects over MQTT-over-websocket (ws://) too.
func TestWebsocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wsAddr := l.Addr().String()
	l.Close()
	b, err := NewEmbeddedBroker(BrokerConfig{Listen: "127.0.0.1:0", WebsocketListen: wsAddr}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	sub := subscribe(t, "tcp://"+b.Addr(), "ws-reader", "inferq/box1/results/#")
	ob := newMemOutbox()
	ob.Add("results/cam1", []byte(`{"id":"ws-1"}`))
	cfg := Config{Brokers: []string{"ws://" + wsAddr + "/mqtt"}, ClientID: "ws-box", Prefix: "inferq", Node: "box1",
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	var c *Client
	waitFor(t, "websocket listener", 10*time.Second, func() bool {
		conn, err := net.Dial("tcp", wsAddr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	c = startClient(t, cfg, ob, nil)
	if !c.Stats().Connected {
		t.Fatalf("not connected over websocket: %s", c.Stats().LastError)
	}
	if m := sub.next(t, 10*time.Second); string(m.Payload()) != `{"id":"ws-1"}` {
		t.Fatalf("got %q", m.Payload())
	}
}

func TestEmbeddedBrokerConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  BrokerConfig
	}{
		{"no port", BrokerConfig{Listen: "127.0.0.1"}},
		{"user without password", BrokerConfig{Listen: ":1883", Username: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEmbeddedBroker(tt.cfg, discard()); err == nil {
				t.Fatalf("got nil error for %+v", tt.cfg)
			}
		})
	}
}
