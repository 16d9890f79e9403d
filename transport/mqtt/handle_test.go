package mqtt

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// Every refusal is counted with its last reason (health's mqtt.refused), and
// untrusted parts (ids, topics, field names) reach the log, the stats and
// the event cut to a bounded length.
func TestRefusalsCountedAndCut(t *testing.T) {
	long := strings.Repeat("x", 5000)
	b64 := base64.StdEncoding.EncodeToString(jpeg)
	tests := []struct {
		name, topic, payload, reason string
	}{
		{"not an image", "inferq/box1/ingest/cam1", "hello", "not an image"},
		{"too large", "inferq/box1/ingest/cam1", string(jpeg) + strings.Repeat("x", 9000), "too large"},
		{"long id", "inferq/box1/ingest/cam1", `{"id":"` + long + `","image":"` + b64 + `"}`, "…(5000 bytes)"},
		{"long unknown field", "inferq/box1/ingest/cam1", `{"` + long + `":1,"image":"` + b64 + `"}`, "unknown field"},
		{"long source", "inferq/box1/ingest/cam1", `{"source":"` + long + `","image":"` + b64 + `"}`, "…(5000 bytes)"},
		{"long stale topic", "old/" + long, string(jpeg), "matches no configured ingest filter"},
	}
	cfg := validConfig()
	cfg.IngestEnabled, cfg.MaxPayload = true, 8000
	rec := &recHandler{}
	c, err := New(cfg, newMemOutbox(), &recSink{}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMsg{topic: tt.topic, payload: []byte(tt.payload)}
			c.handleIngest(&conn{lost: make(chan struct{})}, m)
			st := c.Stats()
			if m.acks != 1 || st.Refused != uint64(i+1) || !strings.Contains(st.LastRefused, tt.reason) || len(st.LastRefused) > 1100 {
				t.Fatalf("acks %d, refused %d, last %d bytes %.300q: want acked, counted, with %q", m.acks, st.Refused, len(st.LastRefused), st.LastRefused, tt.reason)
			}
			ev, err := c.eventJSON(ingestEvent{ID: long, Source: long, Topic: tt.topic, Reason: st.LastRefused + long})
			if err != nil || len(ev) > 2000 {
				t.Fatalf("event of %d bytes (%v), want it cut", len(ev), err)
			}
		})
	}
	if n := rec.longest(); n > 2000 {
		t.Fatalf("a log line of %d bytes, want untrusted strings cut", n)
	}
}

// A transient ingest error is the current error until a message is queued
// again; then it is past, with its time.
func TestIngestErrorClearedOnSuccess(t *testing.T) {
	cfg := validConfig()
	cfg.IngestEnabled = true
	sink := newFileSink(t.TempDir())
	sink.fail = 1
	c, err := New(cfg, newMemOutbox(), sink, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &fakeMsg{topic: "inferq/box1/ingest/cam1", payload: jpeg}
	c.handleIngest(&conn{lost: make(chan struct{})}, m)
	st := c.Stats()
	if m.acks != 1 || st.Ingested != 1 || st.Rejected != 1 {
		t.Fatalf("acks %d stats %+v, want the retried message queued", m.acks, st)
	}
	if st.LastError != "" || !strings.Contains(st.PastError, "queue full") || st.PastErrorAt.IsZero() {
		t.Fatalf("last error %q past %q: want the queue-full error past", st.LastError, st.PastError)
	}
	// Another kind of error is not cleared by a queued message.
	c.setErr(errSubscribe, errors.New("cannot subscribe: broker refused"))
	c.handleIngest(&conn{lost: make(chan struct{})}, &fakeMsg{topic: "inferq/box1/ingest/cam2", payload: jpeg})
	if st := c.Stats(); st.LastError == "" {
		t.Fatalf("a queued message cleared a subscribe error")
	}
}

// recHandler is a slog handler that remembers the longest record.
type recHandler struct {
	mu  sync.Mutex
	max int
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recHandler) WithGroup(string) slog.Handler            { return h }
func (h *recHandler) Handle(_ context.Context, r slog.Record) error {
	n := len(r.Message)
	r.Attrs(func(a slog.Attr) bool { n += len(a.Key) + len(a.Value.String()); return true })
	h.mu.Lock()
	h.max = max(h.max, n)
	h.mu.Unlock()
	return nil
}

func (h *recHandler) longest() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
