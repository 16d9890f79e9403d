package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/internal/textutil"
)

// ErrNotAuthorized is returned (wrapped) when the broker refuses the
// credentials. Retrying will not help until the configuration changes.
var ErrNotAuthorized = errors.New("broker refused the credentials")

// ErrClosed is returned by Open and Run after Close.
var ErrClosed = errors.New("mqtt client closed")

// Availability payloads on <prefix>/<node>/available.
const (
	Online  = "online"
	Offline = "offline"
	Stopped = "stopped"
)

// OutboxRow is one message waiting in the durable outbox.
type OutboxRow struct {
	Seq       uint64
	Topic     string // relative, e.g. "results/cam1"; "<prefix>/<node>/" is prepended
	Payload   []byte
	CreatedAt time.Time
}

// Outbox is the durable store of messages to publish. OutboxPeek returns
// the n oldest rows in Seq order; OutboxDelete removes rows once the broker
// has them; OutboxNotify signals that rows were added.
type Outbox interface {
	OutboxPeek(n int) ([]OutboxRow, error)
	OutboxDelete(seqs ...uint64) error
	OutboxNotify() <-chan struct{}
}

// Stats are counters since New. Strings that may quote untrusted input
// (topics, ids, sources) are cut (textutil).
type Stats struct {
	Connected      bool
	Subscribed     bool // ingest (and Config.Subscriptions) acknowledged on this connection
	ConnectedSince time.Time
	Connects       uint64 // successful connections
	Reconnects     uint64 // successful connections after the first
	Published      uint64 // outbox rows acknowledged by the broker and deleted
	Received       uint64 // ingest messages received (redeliveries included)
	Ingested       uint64 // ingest messages that became new jobs
	Duplicates     uint64 // ingest messages whose job already existed
	// Refused counts ingest messages refused for good (malformed, too large,
	// bad id or source, stale topic, refused by the sink): acked, dropped, a
	// "rejected" event with retry=false sent. LastRefused says why the last
	// one was (topic and reason).
	Refused       uint64
	LastRefused   string
	LastRefusedAt time.Time
	// Rejected counts ingest submits that failed transiently (queue full or
	// failing): the message is not acked and is retried, so one message may
	// count several times. Refusals are not counted here.
	Rejected      uint64
	OutboxErrors  uint64
	EventsDropped uint64 // events not sent because the client was offline
	// LastError is the current error: it is moved to PastError (with its
	// time) once the part that failed works again (a connection after a
	// connect or publish error, a SUBACK, an outbox read, a queued ingest
	// message).
	LastError   string
	LastErrorAt time.Time
	PastError   string
	PastErrorAt time.Time
}

// errKind says which part of the client an error belongs to, so that
// LastError is cleared when that part works again.
type errKind int

const (
	errConnect    errKind = iota + 1 // connecting (and whatever broke the last connection)
	errPublish                       // publishing outbox rows
	errSubscribe                     // ingest subscriptions
	errOutboxRead                    // reading the outbox
	errIngest                        // queueing ingest messages
)

// Client is inferq's connection to an MQTT broker: it publishes
// availability, health, events and the outbox, and feeds ingest messages
// to a Sink.
type Client struct {
	cfg     Config
	outbox  Outbox
	sink    Sink
	log     *slog.Logger
	base    string // "<prefix>/<node>/"
	now     func() time.Time
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	closeMu sync.Mutex
	closed  bool
	mu      sync.Mutex
	cur     *conn
	gen     uint64
	health  []byte
	stats   Stats
	errKind errKind // of stats.LastError
	running atomic.Bool
	runDone chan struct{}
	// handlers counts ingest handlers paho runs on its own goroutines; Close waits for
	// them, so none calls the sink after Close returned. handlersMu orders Add with Wait.
	handlers       sync.WaitGroup
	handlersMu     sync.Mutex
	handlersClosed bool
	closeErr       error
}

// conn is one network connection: a fresh paho client per connection, so
// nothing (tokens, stores, message ids) crosses a reconnect.
type conn struct {
	cl       paho.Client
	gen      uint64
	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error
	since    time.Time
	births   births // this connection's online, will and stopped payloads
}

func (cn *conn) markLost(err error) {
	cn.lostOnce.Do(func() {
		cn.lostErr = err
		close(cn.lost)
	})
}

func (cn *conn) isLost() bool {
	select {
	case <-cn.lost:
		return true
	default:
		return false
	}
}

// New checks the configuration, reads the password and TLS files once (so
// mistakes show at start-up) and returns a Client that is not connected.
// sink may be nil when ingest is disabled.
func New(cfg Config, outbox Outbox, sink Sink, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if outbox == nil {
		return nil, errors.New("mqtt: outbox is required")
	}
	if cfg.IngestEnabled && sink == nil {
		return nil, errors.New("mqtt: ingest_enabled needs a sink")
	}
	if logger == nil {
		return nil, errors.New("mqtt: logger is required")
	}
	if _, err := readPassword(cfg.PasswordFile); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if _, err := cfg.TLS.build(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg: cfg, outbox: outbox, sink: sink, log: logger,
		base: cfg.Prefix + "/" + cfg.Node + "/",
		now:  time.Now, ctx: ctx, cancel: cancel,
		runDone: make(chan struct{}),
	}, nil
}

// Topic returns the absolute topic for a relative one ("health" ->
// "<prefix>/<node>/health").
func (c *Client) Topic(rel string) string { return c.base + rel }

// Open makes the first connection attempt. A broker that cannot be reached
// is not an error (the box works offline; Run keeps trying), but refused
// credentials are: the error wraps ErrNotAuthorized.
func (c *Client) Open(ctx context.Context) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	cn, err := c.connect(ctx)
	if err != nil {
		c.setErr(errConnect, err)
		if errors.Is(err, ErrNotAuthorized) {
			return fmt.Errorf("mqtt: %w", err)
		}
		c.log.Warn("mqtt broker not reachable, will retry", logkey.Err, err)
		return nil
	}
	c.adopt(cn)
	return nil
}

// Run keeps the connection up (reconnecting with capped, jittered
// exponential backoff) and publishes the outbox until ctx is done or Close
// is called. It returns nil then.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("mqtt: Run called twice")
	}
	defer close(c.runDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	attempt := 0
	for ctx.Err() == nil {
		c.mu.Lock()
		cn := c.cur
		c.mu.Unlock()
		if cn == nil {
			var err error
			cn, err = c.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				c.setErr(errConnect, err)
				d := backoff(attempt, c.cfg.ReconnectMin, c.cfg.ReconnectMax)
				attempt++
				c.log.Warn("cannot connect to mqtt broker", logkey.Err, err, "retry_in", d.Round(time.Millisecond))
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
				continue
			}
			if !c.adopt(cn) {
				break
			}
		}
		c.serve(ctx, cn)
		if time.Since(cn.since) > 10*time.Second {
			attempt = 0
		}
		c.mu.Lock()
		if c.cur == cn {
			c.cur = nil
			c.stats.Connected = false
			c.stats.Subscribed = false
		}
		c.mu.Unlock()
		if ctx.Err() == nil {
			// A dropped connection: wait a jittered moment before the next
			// attempt so a fleet does not reconnect in lock-step.
			d := backoff(attempt, c.cfg.ReconnectMin, c.cfg.ReconnectMax)
			attempt++
			c.log.Warn("mqtt connection lost", logkey.Err, cn.lostErr, "retry_in", d.Round(time.Millisecond))
			cn.cl.Disconnect(0)
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	return nil
}

// backoff returns a duration in [d/2, d] where d = min(max, min*2^attempt).
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

// connect makes one connection attempt with a fresh paho client.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	pw, err := readPassword(c.cfg.PasswordFile)
	if err != nil {
		return nil, err
	}
	tc, err := c.cfg.TLS.build()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.gen++
	cn := &conn{gen: c.gen, lost: make(chan struct{}), births: newBirths(c.cfg.Birth)}
	c.mu.Unlock()

	o := paho.NewClientOptions()
	for _, b := range c.cfg.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(c.cfg.ClientID)
	o.SetProtocolVersion(4)
	o.SetCleanSession(false)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetOrderMatters(false)
	o.SetAutoAckDisabled(true)
	o.SetResumeSubs(false)
	o.SetKeepAlive(c.cfg.KeepAlive)
	o.SetPingTimeout(c.cfg.ConnectTimeout)
	o.SetConnectTimeout(c.cfg.ConnectTimeout)
	// paho's Publish waits up to WriteTimeout to hand a packet to its writer, and while
	// a lost connection is being torn down nobody takes it: keep that wait short so a
	// dropped connection is noticed in seconds, not after a batch of 30 s waits.
	o.SetWriteTimeout(min(c.cfg.PublishTimeout, writeWait))
	o.SetTLSConfig(tc)
	o.SetBinaryWill(c.base+"available", cn.births.offline, 1, true)
	if c.cfg.Username != "" {
		o.SetUsername(c.cfg.Username)
		o.SetPassword(pw)
	}
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { cn.markLost(err) })
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		c.handlersMu.Lock()
		if c.handlersClosed {
			c.handlersMu.Unlock()
			return // not acknowledged: the broker redelivers it
		}
		c.handlers.Add(1)
		c.handlersMu.Unlock()
		defer c.handlers.Done()
		c.handleIngest(cn, m)
	})
	cn.cl = paho.NewClient(o)
	// Routes before the connect: messages the persistent session kept arrive at once.
	for _, s := range c.cfg.Subscriptions {
		cn.cl.AddRoute(s.Filter, func(_ paho.Client, m paho.Message) {
			if c.tracked(func() { s.Handle(c.ctx, Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained()}) }) {
				m.Ack()
			}
		})
	}

	tok := cn.cl.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		go func() {
			<-tok.Done()
			cn.cl.Disconnect(0)
		}()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		cn.cl.Disconnect(0)
		if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			return nil, fmt.Errorf("cannot connect to %v as %q: %w: %w", c.cfg.Brokers, c.cfg.Username, ErrNotAuthorized, err)
		}
		return nil, fmt.Errorf("cannot connect to %v: %w", c.cfg.Brokers, err)
	}
	cn.since = time.Now()
	return cn, nil
}

// adopt makes cn the current connection and announces it: retained
// "online", the latest health document, the ingest subscriptions.
func (c *Client) adopt(cn *conn) bool {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		cn.cl.Disconnect(0)
		return false
	}
	c.cur = cn
	c.stats.Connected = true
	c.stats.ConnectedSince = cn.since
	c.stats.Connects++
	if c.stats.Connects > 1 {
		c.stats.Reconnects++
	}
	health := c.health
	c.mu.Unlock()
	// The connection works again: errors of the last one are past.
	c.resolved(errConnect, errPublish)
	c.log.Info("mqtt connected", "client_id", c.cfg.ClientID, "generation", cn.gen)

	cn.cl.Publish(c.base+"available", 1, true, cn.births.online)
	if health != nil {
		cn.cl.Publish(c.base+"health", 1, true, health)
	}
	if !c.cfg.IngestEnabled {
		// The persistent session may still hold it from an earlier run.
		cn.cl.Unsubscribe(c.base + "ingest/+")
	}
	if len(c.cfg.Unsubscribe) > 0 {
		cn.cl.Unsubscribe(c.cfg.Unsubscribe...)
	}
	filters := map[string]byte{}
	if c.cfg.IngestEnabled {
		filters[c.base+"ingest/+"] = 1
		for _, f := range c.cfg.IngestFilters {
			filters[f] = 1
		}
	}
	for _, s := range c.cfg.Subscriptions {
		filters[s.Filter] = s.QoS
	}
	if len(filters) > 0 {
		tok := cn.cl.SubscribeMultiple(filters, nil)
		go func() {
			select {
			case <-tok.Done():
			case <-cn.lost:
				return
			case <-time.After(c.cfg.PublishTimeout):
				c.setErr(errSubscribe, errors.New("cannot subscribe: no SUBACK in time"))
				cn.cl.Disconnect(0)
				cn.markLost(errors.New("no SUBACK in time"))
				return
			}
			if err := tok.Error(); err != nil {
				c.setErr(errSubscribe, fmt.Errorf("cannot subscribe: %w", err))
				return
			}
			ok := true
			for f, code := range tok.(*paho.SubscribeToken).Result() {
				if code == 0x80 {
					ok = false
					c.setErr(errSubscribe, fmt.Errorf("cannot subscribe to %q: broker refused", textutil.Clip(f)))
				}
			}
			c.mu.Lock()
			if c.cur == cn {
				c.stats.Subscribed = ok
			}
			c.mu.Unlock()
			if ok {
				c.resolved(errSubscribe)
			}
		}()
	}
	if c.cfg.OnConnect != nil {
		go c.tracked(func() { c.cfg.OnConnect(c.ctx) })
	}
	return true
}

// tracked runs f unless Close is under way, counted so that Close waits for it; it
// reports whether f ran.
func (c *Client) tracked(f func()) bool {
	c.handlersMu.Lock()
	if c.handlersClosed {
		c.handlersMu.Unlock()
		return false
	}
	c.handlers.Add(1)
	c.handlersMu.Unlock()
	defer c.handlers.Done()
	f()
	return true
}

// ErrNotConnected is returned by Publish while no connection is up.
var ErrNotConnected = errors.New("mqtt: not connected")

// Publish sends payload to the absolute topic at QoS 1 over the current connection and
// waits for the broker's PUBACK (at most PublishTimeout). It is for messages that are
// not worth the outbox (discovery configs, command replies): while no connection is
// up it fails with ErrNotConnected, and nothing is kept for later.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("mqtt: topic %q: %w", textutil.Clip(topic), err)
	}
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil || cn.isLost() {
		return ErrNotConnected
	}
	tok := cn.cl.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("cannot publish to %s: %w", textutil.Clip(topic), err)
		}
		return nil
	case <-cn.lost:
		return fmt.Errorf("cannot publish to %s: %w", textutil.Clip(topic), ErrNotConnected)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.cfg.PublishTimeout):
		return fmt.Errorf("cannot publish to %s: no PUBACK within %v", textutil.Clip(topic), c.cfg.PublishTimeout)
	}
}

// serve publishes the outbox over cn until it is lost or ctx is done.
func (c *Client) serve(ctx context.Context, cn *conn) {
	notify := c.outbox.OutboxNotify()
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	for {
		if ctx.Err() != nil || cn.isLost() {
			return
		}
		rows, err := c.outbox.OutboxPeek(c.cfg.OutboxBatch)
		if err != nil {
			c.outboxErr(errOutboxRead, fmt.Errorf("cannot read outbox: %w", err))
			select {
			case <-ctx.Done():
			case <-cn.lost:
			case <-time.After(time.Second):
			}
			continue
		}
		c.resolved(errOutboxRead)
		if len(rows) == 0 {
			select {
			case <-ctx.Done():
			case <-cn.lost:
			case <-notify:
			case <-poll.C:
			}
			continue
		}
		if !c.publishBatch(cn, rows) {
			// A failed publish means a broken connection; make sure it is
			// torn down and wait for it.
			cn.cl.Disconnect(0)
			cn.markLost(errors.New("publish failed"))
			return
		}
	}
}

// writeWait bounds how long one Publish may wait for paho's writer.
const writeWait = 3 * time.Second

// publishBatch sends rows at QoS 1 and deletes the prefix of rows whose
// PUBACK came on this very connection. It reports whether all went well.
func (c *Client) publishBatch(cn *conn, rows []OutboxRow) bool {
	toks := make([]paho.Token, 0, len(rows))
send:
	for i, r := range rows {
		if cn.isLost() {
			// The rest waits for the next connection. Only rows[:len(toks)] are
			// looked at below: a nil token there means a dropped row, not an unsent one.
			break
		}
		toks = append(toks, nil)
		if err := ValidateTopic(r.Topic); err != nil {
			// A bad row would block the outbox forever: drop it loudly.
			c.outboxErr(errPublish, fmt.Errorf("outbox row %d has invalid topic %q: %w (dropped)", r.Seq, textutil.Clip(r.Topic), err))
			toks[i] = nil
			continue
		}
		toks[i] = cn.cl.Publish(c.base+r.Topic, 1, false, r.Payload)
		select {
		case <-toks[i].Done():
			if toks[i].Error() != nil {
				// Not handed to the writer (connection going down): stop sending; the
				// loop below sees the error and nothing from here on is deleted.
				break send
			}
		default:
		}
	}
	timeout := time.NewTimer(c.cfg.PublishTimeout)
	defer timeout.Stop()
	done := make([]uint64, 0, len(rows))
	ok := true
	for i, tok := range toks {
		if tok != nil {
			select {
			case <-tok.Done():
			case <-cn.lost:
				ok = false
			case <-timeout.C:
				c.setErr(errPublish, fmt.Errorf("no PUBACK within %v", c.cfg.PublishTimeout))
				ok = false
			}
			if !ok {
				break
			}
			if err := tok.Error(); err != nil {
				c.setErr(errPublish, fmt.Errorf("cannot publish outbox row %d: %w", rows[i].Seq, err))
				ok = false
				break
			}
			// The PUBACK must belong to this connection.
			c.mu.Lock()
			same := c.cur == cn && !cn.isLost()
			c.mu.Unlock()
			if !same {
				ok = false
				break
			}
		}
		done = append(done, rows[i].Seq)
	}
	if len(done) > 0 {
		if err := c.outbox.OutboxDelete(done...); err != nil {
			c.outboxErr(errPublish, fmt.Errorf("cannot delete outbox rows: %w", err))
			return ok
		}
		c.mu.Lock()
		c.stats.Published += uint64(len(done))
		c.mu.Unlock()
		if ok && len(done) == len(rows) {
			c.resolved(errPublish)
		}
	}
	return ok
}

// SetHealth stores the retained health document and publishes it now if
// connected; it is published again after every reconnect.
func (c *Client) SetHealth(payload []byte) {
	p := append([]byte(nil), payload...)
	c.mu.Lock()
	c.health = p
	cn := c.cur
	c.mu.Unlock()
	if cn != nil && !cn.isLost() {
		cn.cl.Publish(c.base+"health", 1, true, p)
	}
}

// PublishEvent publishes payload on <prefix>/<node>/events at QoS 1
// without waiting. Events are best-effort: while offline they are dropped
// (counted in Stats.EventsDropped).
func (c *Client) PublishEvent(payload []byte) {
	c.mu.Lock()
	cn := c.cur
	if cn == nil || cn.isLost() {
		c.stats.EventsDropped++
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	cn.cl.Publish(c.base+"events", 1, false, payload)
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// setErr makes err the current error, of the given kind.
func (c *Client) setErr(kind errKind, err error) {
	msg := textutil.ClipMessage(err.Error())
	c.mu.Lock()
	c.stats.LastError, c.stats.LastErrorAt, c.errKind = msg, c.now(), kind
	c.mu.Unlock()
}

// resolved moves the current error to PastError when it is of one of
// kinds: that part works again.
func (c *Client) resolved(kinds ...errKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats.LastError == "" || !slices.Contains(kinds, c.errKind) {
		return
	}
	c.stats.PastError, c.stats.PastErrorAt = c.stats.LastError, c.stats.LastErrorAt
	c.stats.LastError, c.stats.LastErrorAt, c.errKind = "", time.Time{}, 0
}

func (c *Client) outboxErr(kind errKind, err error) {
	c.log.Error("mqtt outbox", logkey.Err, textutil.ClipMessage(err.Error()))
	c.mu.Lock()
	c.stats.OutboxErrors++
	c.mu.Unlock()
	c.setErr(kind, err)
}

// Close publishes a retained "stopped", disconnects cleanly (so the broker
// does not send the "offline" will) and stops Run. Unacknowledged ingest
// messages stay with the broker. Close may be called more than once.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return c.closeErr
	}
	c.closed = true
	c.mu.Lock()
	cn := c.cur
	c.cur = nil
	c.stats.Connected, c.stats.Subscribed = false, false
	c.mu.Unlock()
	c.cancel()
	if cn != nil && !cn.isLost() {
		tok := cn.cl.Publish(c.base+"available", 1, true, cn.births.stopped)
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				c.closeErr = fmt.Errorf("cannot publish %q: %w", Stopped, err)
			}
		case <-cn.lost:
		case <-time.After(c.cfg.ConnectTimeout):
			c.closeErr = fmt.Errorf("cannot publish %q: no PUBACK in %v", Stopped, c.cfg.ConnectTimeout)
		}
		cn.cl.Disconnect(250)
		cn.markLost(ErrClosed)
	}
	if c.running.Load() {
		<-c.runDone
	}
	c.handlersMu.Lock()
	c.handlersClosed = true
	c.handlersMu.Unlock()
	c.handlers.Wait() // handlers end at once: c.ctx is cancelled

	return c.closeErr
}

// ingestEvent is the JSON published on <prefix>/<node>/events about an
// ingest message that was refused or could not be queued.
type ingestEvent struct {
	Event  string    `json:"event"`
	Node   string    `json:"node"`
	ID     string    `json:"id,omitempty"`
	Source string    `json:"source,omitempty"`
	Topic  string    `json:"topic"`
	Size   int       `json:"size"`
	Reason string    `json:"reason"`
	Retry  bool      `json:"retry"`
	Time   time.Time `json:"time"`
}

func (c *Client) event(ev ingestEvent) {
	b, err := c.eventJSON(ev)
	if err != nil {
		c.log.Error("cannot encode event", logkey.Err, err)
		return
	}
	c.PublishEvent(b)
}

// eventJSON fills in the event's name, node and time and cuts the
// untrusted fields (id, source, topic, reason).
func (c *Client) eventJSON(ev ingestEvent) ([]byte, error) {
	ev.Event, ev.Node, ev.Time = "rejected", c.cfg.Node, c.now().UTC()
	ev.ID, ev.Source, ev.Topic = textutil.Clip(ev.ID), textutil.Clip(ev.Source), textutil.Clip(ev.Topic)
	ev.Reason = textutil.ClipMessage(ev.Reason)
	return json.Marshal(ev)
}

// handleIngest runs in its own goroutine per message (SetOrderMatters(false)).
// The message is acknowledged only after Sink.Submit returned without error
// (the job is durable), or when the payload is refused for good.
func (c *Client) handleIngest(cn *conn, m paho.Message) {
	c.mu.Lock()
	c.stats.Received++
	c.mu.Unlock()
	payload := m.Payload()
	if c.sink == nil || !c.ingestTopic(m.Topic()) {
		// A subscription left in the persistent session by an earlier
		// configuration: say so loudly rather than hold it forever.
		c.refuse(m, IngestItem{}, fmt.Errorf("topic %q matches no configured ingest filter (stale subscription of the persistent session %q?)", textutil.Clip(m.Topic()), c.cfg.ClientID))
		return
	}
	it, hasPriority, err := parseIngest(m.Topic(), payload, c.cfg.MaxPayload, c.now())
	if err == nil && !hasPriority {
		if p, ok := c.cfg.SourcePriority[it.Source]; ok {
			it.Priority = p
		} else {
			it.Priority = c.cfg.DefaultPriority
		}
	}
	if err != nil {
		c.refuse(m, it, err)
		return
	}
	delay := 200 * time.Millisecond
	announced := false
	for {
		dup, err := c.sink.Submit(c.ctx, it)
		if err == nil {
			m.Ack()
			c.mu.Lock()
			if dup {
				c.stats.Duplicates++
			} else {
				c.stats.Ingested++
			}
			c.mu.Unlock()
			c.resolved(errIngest)
			return
		}
		if errors.Is(err, ErrRefused) {
			c.refuse(m, it, err)
			return
		}
		// Transient: keep the message unacknowledged (the broker holds it
		// and redelivers it after a crash or reconnect) and retry in place.
		c.mu.Lock()
		c.stats.Rejected++
		c.mu.Unlock()
		c.setErr(errIngest, err)
		if !announced {
			announced = true
			c.log.Warn("ingest message not queued, retrying", logkey.JobID, textutil.Clip(it.ID), logkey.Source, textutil.Clip(it.Source), logkey.Err, textutil.ClipMessage(err.Error()))
			c.event(ingestEvent{ID: it.ID, Source: it.Source, Topic: m.Topic(), Size: len(payload), Reason: err.Error(), Retry: true})
		}
		select {
		case <-c.ctx.Done():
			return
		case <-cn.lost:
			// The broker redelivers on the next connection.
			return
		case <-time.After(delay):
		}
		if delay *= 2; delay > 5*time.Second {
			delay = 5 * time.Second
		}
	}
}

// ingestTopic reports whether topic matches one of the ingest filters.
func (c *Client) ingestTopic(topic string) bool {
	if !c.cfg.IngestEnabled {
		return false
	}
	if matchFilter(c.base+"ingest/+", topic) {
		return true
	}
	for _, f := range c.cfg.IngestFilters {
		if matchFilter(f, topic) {
			return true
		}
	}
	return false
}

// matchFilter reports whether topic matches an MQTT filter; a shared
// subscription "$share/<group>/<filter>" matches like <filter>.
func matchFilter(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, _ = strings.Cut(rest, "/")
	}
	if strings.HasPrefix(topic, "$") != strings.HasPrefix(filter, "$") {
		return false
	}
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

// refuse acks a message that can never become a job, counts it with its
// reason and says why in a "rejected" event.
func (c *Client) refuse(m paho.Message, it IngestItem, err error) {
	topic, reason := textutil.Clip(m.Topic()), textutil.ClipMessage(err.Error())
	c.log.Warn("ingest message refused", "topic", topic, "size", len(m.Payload()), logkey.JobID, textutil.Clip(it.ID), logkey.Err, reason)
	c.mu.Lock()
	c.stats.Refused++
	c.stats.LastRefused, c.stats.LastRefusedAt = textutil.ClipMessage(topic+": "+reason), c.now()
	c.mu.Unlock()
	c.event(ingestEvent{ID: it.ID, Source: it.Source, Topic: m.Topic(), Size: len(m.Payload()), Reason: err.Error(), Retry: false})
	m.Ack()
}
