package mqtt

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

func brokerConfig(b *mqtttest.Broker, id string) Config {
	return Config{
		Brokers: []string{b.URL()}, ClientID: id, Prefix: "inferq", Node: "box1",
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 300 * time.Millisecond,
		ConnectTimeout: 5 * time.Second,
	}
}

// Results published from the outbox survive a broker stop and restart in
// the middle of a stream: every row reaches a subscriber, per-source order
// of first arrival is kept, and the outbox is empty afterwards.
func TestResultsSurviveBrokerRestart(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := subscribe(t, b.URL(), "results-reader", "inferq/box1/results/#")
	ob := newMemOutbox()
	const n = 600
	sources := []string{"cam1", "cam2", "cam3"}
	add := func(i int) { ob.Add("results/"+sources[i%3], []byte(fmt.Sprintf(`{"id":"job-%04d"}`, i))) }
	for i := 0; i < n/3; i++ {
		add(i)
	}
	c := startClient(t, brokerConfig(b, "inferq-box1"), ob, nil)
	waitFor(t, "first results", 10*time.Second, func() bool { return c.Stats().Published > 0 })
	b.Stop()
	for i := n / 3; i < n; i++ {
		add(i)
	}
	waitFor(t, "disconnect noticed", 10*time.Second, func() bool { return !c.Stats().Connected })
	if ob.Len() < n-n/3 {
		t.Fatalf("got %d rows waiting while the broker is down, want >= %d", ob.Len(), n-n/3)
	}
	b.Start()
	waitFor(t, "outbox drained", 30*time.Second, func() bool { return ob.Len() == 0 })
	seen := map[string]bool{}
	last := map[string]int{}
	waitFor(t, "all results at the subscriber", 30*time.Second, func() bool {
		for {
			select {
			case m := <-sub.ch:
				var p struct{ ID string }
				if err := json.Unmarshal(m.Payload(), &p); err != nil {
					t.Fatalf("bad payload %q", m.Payload())
				}
				if !seen[p.ID] {
					var i int
					fmt.Sscanf(p.ID, "job-%d", &i)
					src := m.Topic()[strings.LastIndexByte(m.Topic(), '/')+1:]
					if prev, ok := last[src]; ok && i < prev {
						t.Errorf("source %s: got job %d after %d", src, i, prev)
					}
					last[src] = i
				}
				seen[p.ID] = true
			default:
				return len(seen) == n
			}
		}
	})
	waitFor(t, "published counted", 10*time.Second, func() bool { return c.Stats().Published >= n })
	st := c.Stats()
	if st.Reconnects < 1 {
		t.Fatalf("got %d reconnects, want >= 1", st.Reconnects)
	}
	if st.Published < n {
		t.Fatalf("got %d published, want >= %d", st.Published, n)
	}
	t.Logf("published %d rows, %d unique at the subscriber, %d reconnects", st.Published, len(seen), st.Reconnects)
}

// The child process mode used by the kill -9 tests: it runs a Client whose
// sink makes the job durable and then blocks forever, and reports on
// stdout. It does nothing in a normal test run.
func TestHelperChildProcess(t *testing.T) {
	if os.Getenv("INFERQ_MQTT_CHILD") != "1" {
		return
	}
	cfg := Config{
		Brokers: []string{os.Getenv("INFERQ_MQTT_BROKER")}, ClientID: os.Getenv("INFERQ_MQTT_CLIENT_ID"),
		Prefix: "inferq", Node: "box1", IngestEnabled: true,
	}
	sink := newFileSink(os.Getenv("INFERQ_MQTT_JOBS"))
	sink.block = func(it IngestItem) {
		fmt.Printf("SUBMITTED %s\n", it.ID)
		select {}
	}
	c, err := New(cfg, newMemOutbox(), sink, discard())
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(2)
	}
	if err := c.Open(context.Background()); err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(2)
	}
	go c.Run(context.Background())
	for !c.Stats().Subscribed {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("READY\n")
	select {}
}

type child struct {
	cmd   *exec.Cmd
	lines chan string
}

func startChild(t *testing.T, b *mqtttest.Broker, clientID, jobs string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "INFERQ_MQTT_CHILD=1", "INFERQ_MQTT_BROKER="+b.URL(),
		"INFERQ_MQTT_CLIENT_ID="+clientID, "INFERQ_MQTT_JOBS="+jobs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	t.Cleanup(func() { ch.kill() })
	return ch
}

func (c *child) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before %q", prefix)
			}
			if strings.HasPrefix(l, "ERROR") {
				t.Fatalf("child: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		case <-timeout:
			t.Fatalf("child did not print %q", prefix)
		}
	}
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

// An ingest message is acknowledged only after the job is durable: a
// client killed (-9) after the job reached disk but before Submit returned
// never acked it, the broker redelivers it to the next client with the same
// id, the derived job id is the same and exactly one job results. The image
// is published with Debian's mosquitto_pub; the "offline" will and the
// "online" state are read with mosquitto_sub.
func TestIngestAckAfterDurableKill9(t *testing.T) {
	mqtttest.Require(t, "mosquitto_pub", "mosquitto_sub")
	b := mqtttest.Start(t, mqtttest.Options{})
	jobs := t.TempDir()
	avail := b.Subscribe(t, "-t", "inferq/box1/available", "-q", "1")

	ch := startChild(t, b, "inferq-box1", jobs)
	ch.expect(t, "READY")
	avail.WaitFor(t, "inferq/box1/available online", 10*time.Second)

	img := filepath.Join(t.TempDir(), "img.jpg")
	if err := os.WriteFile(img, jpeg, 0o600); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/box1/ingest/cam7", "-q", "1", "-f", img)
	id := ch.expect(t, "SUBMITTED")
	ch.kill()
	avail.WaitFor(t, "inferq/box1/available offline", 10*time.Second)

	sink := newFileSink(jobs)
	cfg := brokerConfig(b, "inferq-box1")
	cfg.IngestEnabled = true
	c := startClient(t, cfg, nil, sink)
	avail.WaitFor(t, "inferq/box1/available online", 10*time.Second)
	got := sink.next(t, 20*time.Second)
	if got.ID != id || got.Source != "cam7" {
		t.Fatalf("got redelivered id %q source %q, want %q cam7", got.ID, got.Source, id)
	}
	waitFor(t, "duplicate counted", 10*time.Second, func() bool { return c.Stats().Duplicates == 1 })
	if ids := sink.jobs(t); len(ids) != 1 || ids[0] != id {
		t.Fatalf("got jobs %v, want exactly [%s]", ids, id)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	avail.WaitFor(t, "inferq/box1/available stopped", 10*time.Second)

	// The redelivered message was acked: after a marker is queued for the
	// session, a new client gets the marker and not the image again.
	marker := filepath.Join(t.TempDir(), "marker.png")
	if err := os.WriteFile(marker, []byte("\x89PNG\r\n\x1a\nmarker"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/box1/ingest/marker", "-q", "1", "-f", marker)
	sink2 := newFileSink(t.TempDir())
	startClient(t, cfg, nil, sink2)
	if got := sink2.next(t, 20*time.Second); got.Source != "marker" {
		t.Fatalf("got %q (%s) first, want the marker: the image was redelivered again", got.ID, got.Source)
	}
}

// A wrong password fails Open with an error wrapping ErrNotAuthorized; the
// right one connects.
func TestWrongPassword(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{Users: map[string]string{"inferq": "right"}})
	dir := t.TempDir()
	write := func(name, pw string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := brokerConfig(b, "pw-test")
	cfg.Username, cfg.PasswordFile = "inferq", write("wrong", "wrong")
	c, err := New(cfg, newMemOutbox(), nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Open(context.Background())
	if !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("got %v, want ErrNotAuthorized", err)
	}
	t.Logf("wrong password: %v", err)
	c.Close()

	cfg.PasswordFile = write("right", "right")
	c = startClient(t, cfg, nil, nil)
	if !c.Stats().Connected {
		t.Fatalf("not connected with the right password: %s", c.Stats().LastError)
	}
}

// Mutual TLS with a CA generated in the test: the client connects with the
// CA and its certificate, and fails with an unrelated CA.
func TestTLS(t *testing.T) {
	certs := mqtttest.GenerateCerts(t)
	b := mqtttest.Start(t, mqtttest.Options{TLS: &mqtttest.TLS{
		CAFile: certs.CAFile, CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile, RequireClientCert: true}})
	sub := subscribe(t, b.URL(), "tls-reader", "inferq/box1/results/#")

	cfg := brokerConfig(b, "tls-box")
	cfg.Brokers = []string{b.TLSURL()}
	cfg.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	ob := newMemOutbox()
	ob.Add("results/cam1", []byte(`{"id":"tls-1"}`))
	c := startClient(t, cfg, ob, nil)
	if !c.Stats().Connected {
		t.Fatalf("not connected over TLS: %s", c.Stats().LastError)
	}
	if m := sub.next(t, 10*time.Second); string(m.Payload()) != `{"id":"tls-1"}` {
		t.Fatalf("got %q", m.Payload())
	}

	tests := []struct {
		name string
		tls  TLSConfig
	}{
		{"unrelated CA", TLSConfig{CAFile: certs.OtherCAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}},
		{"no client certificate", TLSConfig{CAFile: certs.CAFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := cfg
			bad.ClientID = "tls-bad"
			bad.TLS = tt.tls
			c, err := New(bad, newMemOutbox(), nil, discard())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.connect(context.Background()); err == nil {
				t.Fatalf("got a connection, want a TLS failure")
			} else {
				t.Logf("%s: %v", tt.name, err)
			}
		})
	}
}

// Two boxes on one shared subscription split the messages: each message
// becomes exactly one job on exactly one box, and both boxes get work.
func TestSharedSubscription(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	var sinks []*fileSink
	jobs := t.TempDir()
	for i, node := range []string{"boxA", "boxB"} {
		cfg := brokerConfig(b, "shared-"+node)
		cfg.Node = node
		cfg.IngestEnabled = true
		cfg.IngestFilters = []string{"$share/inferq/cameras/+"}
		dir := filepath.Join(jobs, fmt.Sprint(i))
		os.Mkdir(dir, 0o700)
		s := newFileSink(dir)
		sinks = append(sinks, s)
		c := startClient(t, cfg, nil, s)
		waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })
	}
	pub := subscribe(t, b.URL(), "shared-pub", "unused/none")
	const n = 40
	for i := 0; i < n; i++ {
		payload := append(append([]byte(nil), jpeg...), fmt.Sprint(i)...)
		if tok := pub.cl.Publish(fmt.Sprintf("cameras/cam%d", i%4), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	waitFor(t, "all jobs", 20*time.Second, func() bool { return len(sinks[0].jobs(t))+len(sinks[1].jobs(t)) >= n })
	a, bb := sinks[0].jobs(t), sinks[1].jobs(t)
	if len(a) == 0 || len(bb) == 0 || len(a)+len(bb) != n {
		t.Fatalf("got %d + %d jobs, want both > 0 and %d in all", len(a), len(bb), n)
	}
	ids := map[string]bool{}
	for _, id := range append(a, bb...) {
		if ids[id] {
			t.Fatalf("job %s on both boxes", id)
		}
		ids[id] = true
	}
	t.Logf("split %d / %d", len(a), len(bb))
}

// Malformed payloads are acked and reported; a full queue is reported as
// "rejected" with retry=true, retried without a reconnect, and becomes
// exactly one job once there is room.
func TestIngestRefusedAndQueueFull(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	events := subscribe(t, b.URL(), "events-reader", "inferq/box1/events")
	sink := newFileSink(t.TempDir())
	sink.fail = 3
	cfg := brokerConfig(b, "refuse-box")
	cfg.IngestEnabled = true
	cfg.MaxPayload = 8000
	c := startClient(t, cfg, nil, sink)
	waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })

	readEvent := func() ingestEvent {
		var ev ingestEvent
		m := events.next(t, 10*time.Second)
		if err := json.Unmarshal(m.Payload(), &ev); err != nil {
			t.Fatalf("bad event %q: %v", m.Payload(), err)
		}
		return ev
	}
	b.Publish(t, "-t", "inferq/box1/ingest/cam1", "-q", "1", "-m", "not an image")
	if ev := readEvent(); ev.Event != "rejected" || ev.Retry || !strings.Contains(ev.Reason, "not an image") {
		t.Fatalf("got %+v, want a final rejection saying not an image", ev)
	}
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, append(append([]byte(nil), jpeg...), make([]byte, 9000)...), 0o600)
	b.Publish(t, "-t", "inferq/box1/ingest/cam1", "-q", "1", "-f", big)
	if ev := readEvent(); ev.Retry || !strings.Contains(ev.Reason, "too large") {
		t.Fatalf("got %+v, want a final rejection saying too large", ev)
	}
	// An id of 5,000 bytes is refused, and cut in the event and the stats.
	longID := strings.Repeat("i", 5000)
	env := filepath.Join(t.TempDir(), "env")
	os.WriteFile(env, []byte(`{"id":"`+longID+`","image":"`+base64.StdEncoding.EncodeToString(jpeg)+`"}`), 0o600)
	b.Publish(t, "-t", "inferq/box1/ingest/cam1", "-q", "1", "-f", env)
	if ev := readEvent(); ev.Retry || !strings.Contains(ev.Reason, "…(5000 bytes)") || len(ev.Reason) > 1100 || strings.Contains(ev.Reason, longID) {
		t.Fatalf("got a %d-byte reason %.300q, want the id cut with a marker", len(ev.Reason), ev.Reason)
	}
	if st := c.Stats(); st.Refused != 3 || !strings.Contains(st.LastRefused, "inferq/box1/ingest/cam1: ") ||
		!strings.Contains(st.LastRefused, "(5000 bytes)") || len(st.LastRefused) > 1100 {
		t.Fatalf("got %d refused, last %.300q, want 3 and the cut id", st.Refused, st.LastRefused)
	}

	img := filepath.Join(t.TempDir(), "img")
	os.WriteFile(img, jpeg, 0o600)
	b.Publish(t, "-t", "inferq/box1/ingest/cam2", "-q", "1", "-f", img)
	if ev := readEvent(); !ev.Retry || !strings.Contains(ev.Reason, "queue full") || ev.ID == "" {
		t.Fatalf("got %+v, want a retryable rejection saying queue full", ev)
	}
	it := sink.next(t, 20*time.Second)
	if it.Source != "cam2" {
		t.Fatalf("got source %q", it.Source)
	}
	waitFor(t, "ingest counted", 10*time.Second, func() bool { return c.Stats().Ingested == 1 })
	st := c.Stats()
	if st.Ingested != 1 || st.Rejected != 3 || st.Reconnects != 0 {
		t.Fatalf("got ingested %d rejected %d reconnects %d, want 1, 3, 0", st.Ingested, st.Rejected, st.Reconnects)
	}
	// The queue took the message: its error is past, not current.
	if st.LastError != "" || !strings.Contains(st.PastError, "queue full") || st.PastErrorAt.IsZero() {
		t.Fatalf("got last error %q, past %q at %v: want the queue-full error moved to past", st.LastError, st.PastError, st.PastErrorAt)
	}
}

// Health is retained and republished after a reconnect; availability goes
// online -> stopped on a clean Close.
func TestHealthRetainedAcrossRestart(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	c := startClient(t, brokerConfig(b, "health-box"), nil, nil)
	c.SetHealth([]byte(`{"seq":1}`))
	b.Kill() // forgets the retained message (no save)
	b.Restart()
	waitFor(t, "reconnect", 20*time.Second, func() bool { return c.Stats().Reconnects >= 1 && c.Stats().Connected })
	s := b.Subscribe(t, "-t", "inferq/box1/health", "-t", "inferq/box1/available")
	got := map[string]bool{}
	for len(got) < 2 {
		l, err := s.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("got %v so far: %v", got, err)
		}
		got[l] = true
	}
	if !got[`inferq/box1/health {"seq":1}`] || !got["inferq/box1/available online"] {
		t.Fatalf("got %v", got)
	}
}

// An edge box starts while its broker is down: Open is not an error, rows
// wait in the outbox, and Run connects and drains them once the broker is
// up.
func TestStartsOffline(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	b.Stop()
	ob := newMemOutbox()
	for i := 0; i < 10; i++ {
		ob.Add("results/cam1", []byte(fmt.Sprintf(`{"id":"off-%d"}`, i)))
	}
	c := startClient(t, brokerConfig(b, "offline-box"), ob, nil)
	if st := c.Stats(); st.Connected || st.LastError == "" {
		t.Fatalf("got connected %v last error %q, want offline with an error", st.Connected, st.LastError)
	}
	c.PublishEvent([]byte(`{"event":"x"}`))
	if c.Stats().EventsDropped != 1 {
		t.Fatalf("event while offline not counted as dropped")
	}
	if ob.Len() != 10 {
		t.Fatalf("got %d rows, want 10 waiting", ob.Len())
	}
	b.Start()
	waitFor(t, "outbox drained", 20*time.Second, func() bool { return ob.Len() == 0 })
	// Connected again: the connect error is past, with its time.
	if st := c.Stats(); !st.Connected || st.LastError != "" || !strings.Contains(st.PastError, "cannot connect") || st.PastErrorAt.IsZero() {
		t.Fatalf("got connected %v last error %q past %q: want the connect error moved to past", st.Connected, st.LastError, st.PastError)
	}
}

// blockingSink holds every Submit until the client's context ends, then takes a
// moment more, as a queue busy with a commit would.
type blockingSink struct {
	entered  chan struct{}
	returned atomic.Bool
}

func (s *blockingSink) Submit(ctx context.Context, it IngestItem) (bool, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	time.Sleep(200 * time.Millisecond)
	s.returned.Store(true)
	return false, ctx.Err()
}

// TestCloseWaitsForIngestHandlers: paho runs ingest handlers on goroutines of its
// own; Close returns only once they are done, so none calls the sink (the queue)
// after the daemon closed it.
func TestCloseWaitsForIngestHandlers(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.Options{})
	sink := &blockingSink{entered: make(chan struct{}, 1)}
	cfg := brokerConfig(b, "close-box")
	cfg.IngestEnabled = true
	c, err := New(cfg, newMemOutbox(), sink, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "subscribed", 10*time.Second, func() bool { return c.Stats().Subscribed })
	img := filepath.Join(t.TempDir(), "a.jpg")
	if err := os.WriteFile(img, jpeg, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, "-t", "inferq/box1/ingest/cam1", "-q", "1", "-f", img)
	select {
	case <-sink.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the ingest handler never reached the sink")
	}
	if err := c.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if !sink.returned.Load() {
		t.Fatal("Close returned while an ingest handler was still in the sink")
	}
	<-done
}
