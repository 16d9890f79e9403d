package mqtt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/inferq/inferq/internal/testenv"
)

// memOutbox is an in-memory Outbox for tests (the durable one is the
// queue's; the daemon adapts it).
type memOutbox struct {
	mu     sync.Mutex
	seq    uint64
	rows   []OutboxRow
	notify chan struct{}
}

func newMemOutbox() *memOutbox { return &memOutbox{notify: make(chan struct{}, 1)} }

func (o *memOutbox) Add(topic string, payload []byte) uint64 {
	o.mu.Lock()
	o.seq++
	o.rows = append(o.rows, OutboxRow{Seq: o.seq, Topic: topic, Payload: payload, CreatedAt: time.Now()})
	s := o.seq
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return s
}

func (o *memOutbox) OutboxPeek(n int) ([]OutboxRow, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n > len(o.rows) {
		n = len(o.rows)
	}
	return append([]OutboxRow(nil), o.rows[:n]...), nil
}

func (o *memOutbox) OutboxDelete(seqs ...uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	del := map[uint64]bool{}
	for _, s := range seqs {
		del[s] = true
	}
	kept := o.rows[:0]
	for _, r := range o.rows {
		if !del[r.Seq] {
			kept = append(kept, r)
		}
	}
	o.rows = kept
	return nil
}

func (o *memOutbox) OutboxNotify() <-chan struct{} { return o.notify }

func (o *memOutbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.rows)
}

// fileSink keeps one file per job id in dir (written and fsynced before
// Submit returns), like the queue's dedupe by id.
type fileSink struct {
	dir string
	// block, when set, is called after the job is durable and before
	// Submit returns.
	block func(IngestItem)
	// fail makes the first fail calls return ErrQueueFull.
	mu    sync.Mutex
	fail  int
	calls int
	seen  chan IngestItem
}

func newFileSink(dir string) *fileSink {
	return &fileSink{dir: dir, seen: make(chan IngestItem, 1000)}
}

func (s *fileSink) Submit(ctx context.Context, it IngestItem) (bool, error) {
	s.mu.Lock()
	s.calls++
	if s.fail > 0 {
		s.fail--
		s.mu.Unlock()
		return false, fmt.Errorf("cannot enqueue: %w", ErrQueueFull)
	}
	s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, it.ID), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		s.seen <- it
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.Write(it.Image); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	f.Close()
	if s.block != nil {
		s.block(it)
	}
	s.seen <- it
	return false, nil
}

func (s *fileSink) jobs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

func (s *fileSink) next(t *testing.T, timeout time.Duration) IngestItem {
	t.Helper()
	select {
	case it := <-s.seen:
		return it
	case <-time.After(timeout):
		t.Fatalf("no ingest item within %v", timeout)
		return IngestItem{}
	}
}

// startClient opens a Client and runs it until the test ends.
func startClient(t *testing.T, cfg Config, ob Outbox, sink Sink) *Client {
	t.Helper()
	c, _ := runClient(t, cfg, ob, sink)
	return c
}

// runClient opens a Client and runs it until stop (or the test's end): stop closes it,
// waits for Run to return and gives Close's error.
func runClient(t *testing.T, cfg Config, ob Outbox, sink Sink) (c *Client, stop func() error) {
	t.Helper()
	if ob == nil {
		ob = newMemOutbox()
	}
	c, err := New(cfg, ob, sink, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var closeErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			closeErr = c.Close()
			<-done
		})
		return closeErr
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

// testSubscriber is a plain paho client with a persistent session that
// records every message.
type testSubscriber struct {
	cl   paho.Client
	mu   sync.Mutex
	msgs []paho.Message
	ch   chan paho.Message
}

func subscribe(t *testing.T, url, id, filter string) *testSubscriber {
	t.Helper()
	s := &testSubscriber{ch: make(chan paho.Message, 10000)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetOrderMatters(true)
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
		s.ch <- m
	})
	s.cl = paho.NewClient(o)
	if tok := s.cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cannot connect subscriber: %v", tok.Error())
	}
	if tok := s.cl.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cannot subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.cl.Disconnect(0) })
	return s
}

func (s *testSubscriber) next(t *testing.T, timeout time.Duration) paho.Message {
	t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
		return nil
	}
}

func (s *testSubscriber) all() []paho.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]paho.Message(nil), s.msgs...)
}
