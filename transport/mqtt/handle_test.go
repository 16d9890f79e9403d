package mqtt

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeMsg struct {
	topic   string
	payload []byte
	mu      sync.Mutex
	acks    int
}

func (m *fakeMsg) Duplicate() bool   { return false }
func (m *fakeMsg) Qos() byte         { return 1 }
func (m *fakeMsg) Retained() bool    { return false }
func (m *fakeMsg) Topic() string     { return m.topic }
func (m *fakeMsg) MessageID() uint16 { return 1 }
func (m *fakeMsg) Payload() []byte   { return m.payload }
func (m *fakeMsg) Ack() {
	m.mu.Lock()
	m.acks++
	m.mu.Unlock()
}

type recSink struct {
	mu    sync.Mutex
	items []IngestItem
	err   error
	acked func() int // acks seen when Submit runs
}

func (s *recSink) Submit(ctx context.Context, it IngestItem) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acked != nil && s.acked() != 0 {
		return false, fmt.Errorf("acked before the job was durable")
	}
	s.items = append(s.items, it)
	return false, s.err
}

// handleIngest resolves priorities (envelope, then source, then default),
// acks only after Submit returned, and acks refused messages.
func TestHandleIngest(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(jpeg)
	tests := []struct {
		name     string
		topic    string
		payload  string
		sinkErr  error
		wantPrio int
		wantSub  int
		wantAck  int
	}{
		{"default priority", "inferq/box1/ingest/cam1", string(jpeg), nil, 3, 1, 1},
		{"source priority", "inferq/box1/ingest/gate", string(jpeg), nil, 8, 1, 1},
		{"explicit zero beats source", "inferq/box1/ingest/gate", `{"priority":0,"image":"` + b64 + `"}`, nil, 0, 1, 1},
		{"envelope source priority", "inferq/box1/ingest/cam1", `{"source":"gate","image":"` + b64 + `"}`, nil, 8, 1, 1},
		{"malformed acked", "inferq/box1/ingest/cam1", `{"image":1}`, nil, 0, 0, 1},
		{"stale topic acked", "old/topic/cam1", string(jpeg), nil, 0, 0, 1},
		{"refused by sink acked", "inferq/box1/ingest/cam1", string(jpeg), fmt.Errorf("bad: %w", ErrRefused), 3, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.IngestEnabled, cfg.DefaultPriority, cfg.SourcePriority = true, 3, map[string]int{"gate": 8}
			m := &fakeMsg{topic: tt.topic, payload: []byte(tt.payload)}
			sink := &recSink{err: tt.sinkErr, acked: func() int { m.mu.Lock(); defer m.mu.Unlock(); return m.acks }}
			c, err := New(cfg, newMemOutbox(), sink, discard())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.handleIngest(&conn{lost: make(chan struct{})}, m)
			if len(sink.items) != tt.wantSub || m.acks != tt.wantAck {
				t.Fatalf("got %d submits %d acks, want %d and %d", len(sink.items), m.acks, tt.wantSub, tt.wantAck)
			}
			if tt.wantSub > 0 && sink.items[0].Priority != tt.wantPrio {
				t.Fatalf("got priority %d, want %d", sink.items[0].Priority, tt.wantPrio)
			}
		})
	}
}

// A transient failure is not acked; when the connection goes away the
// handler stops and leaves the redelivery to the broker.
func TestHandleIngestTransientNotAcked(t *testing.T) {
	cfg := validConfig()
	cfg.IngestEnabled = true
	sink := &recSink{err: fmt.Errorf("disk: %w", ErrQueueFull)}
	c, err := New(cfg, newMemOutbox(), sink, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cn := &conn{lost: make(chan struct{})}
	m := &fakeMsg{topic: "inferq/box1/ingest/cam1", payload: jpeg}
	done := make(chan struct{})
	go func() { c.handleIngest(cn, m); close(done) }()
	waitFor(t, "a rejected submit", 5*time.Second, func() bool { return c.Stats().Rejected >= 1 })
	cn.markLost(fmt.Errorf("test"))
	<-done
	if m.acks != 0 {
		t.Fatalf("got %d acks, want 0", m.acks)
	}
}
