package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/internal/textutil"
	"github.com/inferq/inferq/transport/mqtt"
)

// Remote commands (mqtt.commands): an operator publishes a request on
//
//	<prefix>/<node>/cmd/<verb>      QoS 1, never retained
//
// and the box answers on <prefix>/<node>/reply/<id>. A request is acted on only when
// it was not delivered as a retained message, its signature verifies (HMAC-SHA256 with
// the shared key over the exact bytes of "request"; unsigned requests only with
// allow_unsigned and no secret_file), it names this node and the topic's verb, the
// verb is allowed here (mqtt.commands.verbs), its time is within max_age of the box's
// clock, and its id was not seen before (a redelivery or a replay). A retained or
// repeated request is ignored (logged, no reply); any other failed check is refused
// with a reply saying why, and logged. Accepted requests call the same backend as the
// control socket (controlBackend), so a remote pause or reload is exactly a local one.

// CommandVerbs are the remote commands.
var CommandVerbs = []string{"reload", "pause", "resume", "retry", "purge"}

// CommandRequest is a remote command. What is for pause and resume (intake, worker or
// all; "" is all); IDs or All for retry and purge of dead jobs.
type CommandRequest struct {
	ID   string    `json:"id"`
	Node string    `json:"node"`
	Verb string    `json:"verb"`
	Time time.Time `json:"time"`
	What string    `json:"what,omitempty"`
	IDs  []string  `json:"ids,omitempty"`
	All  bool      `json:"all,omitempty"`
}

// CommandEnvelope is the payload on <prefix>/<node>/cmd/<verb>: the request, and the
// hex HMAC-SHA256 of its exact bytes as they stand in the payload.
type CommandEnvelope struct {
	Request json.RawMessage `json:"request"`
	HMAC    string          `json:"hmac_sha256,omitempty"`
}

// Reply statuses.
const (
	ReplyOK      = "ok"      // done; Result holds the backend's answer
	ReplyFailed  = "failed"  // accepted, but the backend said no (Error, Class)
	ReplyRefused = "refused" // not acted on: a check failed (Error says which)
)

// CommandReply is the JSON on <prefix>/<node>/reply/<id>. Class names the control API
// class of a failure (invalid request, not found, conflict, unavailable, refused;
// internal for the rest).
type CommandReply struct {
	ID     string          `json:"id"`
	Node   string          `json:"node"`
	Verb   string          `json:"verb"`
	Status string          `json:"status"`
	Error  string          `json:"error,omitempty"`
	Class  string          `json:"class,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Time   time.Time       `json:"time"`
}

// maxCommandPayload bounds a request; larger ones are dropped unread.
const maxCommandPayload = 64 << 10

// minCommandKey is the shortest shared key taken.
const minCommandKey = 16

var commandID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// NewCommandID returns a random request id.
func NewCommandID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ReadCommandKey reads a shared key file: its content without trailing newlines, at
// least 16 bytes.
func ReadCommandKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read command secret: %w", err)
	}
	key := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(key) < minCommandKey {
		return nil, fmt.Errorf("command secret %s: %d bytes, want at least %d", path, len(key), minCommandKey)
	}
	return key, nil
}

// EncodeCommand makes the payload of req, signed with key (unsigned when key is nil).
func EncodeCommand(req CommandRequest, key []byte) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("cannot encode request: %w", err)
	}
	env := CommandEnvelope{Request: body}
	if key != nil {
		env.HMAC = commandMAC(key, body)
	}
	return json.Marshal(env)
}

func commandMAC(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// CommandTopic and ReplyTopic are where a request and its reply travel.
func CommandTopic(prefix, node, verb string) string { return prefix + "/" + node + "/cmd/" + verb }
func ReplyTopic(prefix, node, id string) string     { return prefix + "/" + node + "/reply/" + id }

// commander checks and runs remote commands.
type commander struct {
	b       control.Backend
	node    string
	prefix  string
	key     []byte // nil: unsigned requests (allow_unsigned)
	verbs   []string
	maxAge  time.Duration
	now     func() time.Time
	log     *slog.Logger
	publish func(ctx context.Context, topic string, payload []byte, retained bool) error

	ready     chan struct{} // closed once the worker runs
	readyOnce sync.Once

	mu   sync.Mutex
	seen map[string]time.Time // request ids taken, for replays and redeliveries

	ignored, refused, done, failed atomic.Uint64
}

// addCommands hooks remote commands into the MQTT client's configuration. Turned off,
// the command subscription an earlier run may have left in the persistent session is
// dropped.
func (d *Daemon) addCommands(mcfg *mqtt.Config) error {
	cc := d.cfg.MQTT.Commands
	filter := CommandTopic(mcfg.Prefix, d.node, "+")
	if !cc.Enabled {
		mcfg.Unsubscribe = append(mcfg.Unsubscribe, filter)
		return nil
	}
	var key []byte
	if cc.SecretFile != "" {
		var err error
		if key, err = ReadCommandKey(cc.SecretFile); err != nil {
			return fmt.Errorf("mqtt.commands.secret_file: %w", err)
		}
	}
	d.cmds = &commander{
		b: controlBackend{d}, node: d.node, prefix: mcfg.Prefix, key: key, verbs: cc.Verbs, maxAge: cc.MaxAge,
		now: d.now, log: d.log.With(logkey.Component, "commands"), ready: make(chan struct{}), seen: map[string]time.Time{},
		publish: func(ctx context.Context, topic string, payload []byte, retained bool) error {
			return d.client.Publish(ctx, topic, payload, retained)
		},
	}
	mcfg.Subscriptions = append(mcfg.Subscriptions, mqtt.Subscription{Filter: filter, QoS: 1, Handle: d.cmds.handle})
	return nil
}

// start lets accepted commands run (they wait until then).
func (c *commander) start() { c.readyOnce.Do(func() { close(c.ready) }) }

// handle is the subscription's handler: one message, on its own goroutine; the message
// is acknowledged when it returns.
func (c *commander) handle(ctx context.Context, m mqtt.Message) {
	verb := strings.TrimPrefix(m.Topic, CommandTopic(c.prefix, c.node, ""))
	if m.Retained {
		c.ignored.Add(1)
		c.log.Warn("retained remote command ignored; clear it with an empty retained message", "topic", textutil.Clip(m.Topic))
		return
	}
	req, err := c.check(verb, m.Payload)
	if errors.Is(err, errCommandSeen) {
		c.ignored.Add(1)
		c.log.Info("remote command seen before, ignored", "verb", textutil.Clip(verb), "request_id", req.ID)
		return
	}
	if err != nil {
		c.refused.Add(1)
		c.log.Warn("remote command refused", "topic", textutil.Clip(m.Topic), "request_id", textutil.Clip(req.ID), logkey.Err, err)
		if commandID.MatchString(req.ID) {
			c.reply(ctx, CommandReply{ID: req.ID, Verb: verb, Status: ReplyRefused, Error: err.Error()})
		}
		return
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		c.log.Warn("remote command dropped: the box is stopping", "verb", verb, "request_id", req.ID)
		return
	}
	r := CommandReply{ID: req.ID, Verb: verb, Status: ReplyOK}
	result, err := c.run(ctx, req)
	if err != nil {
		c.failed.Add(1)
		r.Status, r.Error, r.Class = ReplyFailed, err.Error(), errorClass(err)
		c.log.Warn("remote command failed", "verb", verb, "request_id", req.ID, logkey.Err, err)
	} else {
		c.done.Add(1)
		r.Result, _ = json.Marshal(result) // the control API's types
		c.log.Info("remote command done", "verb", verb, "request_id", req.ID)
	}
	c.reply(ctx, r)
}

var errCommandSeen = errors.New("request id seen before")

// check parses and verifies a request; the request is returned (as far as it parsed)
// with the error, so that a refusal can be answered.
func (c *commander) check(verb string, payload []byte) (CommandRequest, error) {
	var req CommandRequest
	if len(payload) > maxCommandPayload {
		return req, fmt.Errorf("request of %d bytes, at most %d", len(payload), maxCommandPayload)
	}
	var env CommandEnvelope
	if err := json.Unmarshal(payload, &env); err != nil || len(env.Request) == 0 {
		return req, fmt.Errorf("not a command envelope {\"request\":{…},\"hmac_sha256\":\"…\"}: %v", err)
	}
	if err := json.Unmarshal(env.Request, &req); err != nil {
		return req, fmt.Errorf("cannot parse request: %w", err)
	}
	if !commandID.MatchString(req.ID) {
		return req, fmt.Errorf("request id %q: want 1 to 64 of A-Z a-z 0-9 _ . -", textutil.Clip(req.ID))
	}
	switch {
	case c.key != nil && env.HMAC == "":
		return req, errors.New("unsigned request: this box takes only requests signed with its shared key (mqtt.commands.secret_file)")
	case c.key != nil && !hmac.Equal([]byte(env.HMAC), []byte(commandMAC(c.key, env.Request))):
		return req, errors.New("bad signature: hmac_sha256 does not match the request under this box's shared key")
	case req.Node != c.node:
		return req, fmt.Errorf("request is for node %q, this is %q", textutil.Clip(req.Node), c.node)
	case req.Verb != verb:
		return req, fmt.Errorf("request verb %q does not match the topic's %q", textutil.Clip(req.Verb), textutil.Clip(verb))
	case !slices.Contains(CommandVerbs, verb):
		return req, fmt.Errorf("unknown verb %q: want one of %s", textutil.Clip(verb), strings.Join(CommandVerbs, ", "))
	case !slices.Contains(c.verbs, verb):
		return req, fmt.Errorf("verb %q is not allowed on this box (mqtt.commands.verbs: %s)", verb, strings.Join(c.verbs, ", "))
	}
	if c.maxAge > 0 {
		if req.Time.IsZero() {
			return req, errors.New("request without a time")
		}
		if off := c.now().Sub(req.Time); off > c.maxAge || off < -c.maxAge {
			return req, fmt.Errorf("request time %s is %v off this box's clock, more than mqtt.commands.max_age %v",
				req.Time.UTC().Format(time.RFC3339), off.Round(time.Second), c.maxAge)
		}
	}
	if !c.remember(req.ID) {
		return req, errCommandSeen
	}
	return req, nil
}

// remember records id and reports whether it is new. Ids are kept for twice max_age
// (at least 10 minutes), at most 10,000 of them.
func (c *commander) remember(id string) bool {
	keep := max(2*c.maxAge, 10*time.Minute)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[id]; ok {
		return false
	}
	if len(c.seen) >= 10000 {
		for k, t := range c.seen {
			if now.Sub(t) > keep {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= 10000 {
			c.seen = map[string]time.Time{}
		}
	}
	c.seen[id] = now
	return true
}

// run calls the control backend for an accepted request.
func (c *commander) run(ctx context.Context, req CommandRequest) (any, error) {
	switch req.Verb {
	case "reload":
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return c.b.Reload(ctx)
	case "pause", "resume":
		return c.b.Pause(ctx, req.What, req.Verb == "pause")
	case "retry", "purge":
		if req.All == (len(req.IDs) > 0) {
			return nil, control.Errorf(control.ErrInvalid, "give the ids of dead jobs, or all")
		}
		dr := control.DeadRequest{IDs: req.IDs, All: req.All}
		if req.Verb == "retry" {
			return c.b.RetryDead(ctx, dr)
		}
		return c.b.PurgeDead(ctx, dr)
	}
	return nil, control.Errorf(control.ErrInvalid, "unknown verb %q", req.Verb)
}

// errorClass names the control API class of err.
func errorClass(err error) string {
	for _, class := range []error{control.ErrInvalid, control.ErrNotFound, control.ErrConflict, control.ErrUnavailable, control.ErrRefused, control.ErrTooLarge} {
		if errors.Is(err, class) {
			return class.Error()
		}
	}
	return "internal"
}

// reply publishes r on the reply topic of its id (QoS 1, not retained).
func (c *commander) reply(ctx context.Context, r CommandReply) {
	r.Node, r.Time = c.node, c.now().UTC()
	r.Error = textutil.ClipMessage(r.Error)
	b, _ := json.Marshal(r) // strings, a time, raw JSON of our own
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.publish(ctx, ReplyTopic(c.prefix, c.node, r.ID), b, false); err != nil {
		c.log.Warn("cannot publish command reply", "request_id", r.ID, logkey.Err, err)
	}
}

// check validates mqtt.commands.
func (cc CommandsConfig) check() []error {
	var errs fieldErrors
	bad := errs.bad
	if !cc.Enabled {
		return nil
	}
	if cc.SecretFile == "" && !cc.AllowUnsigned {
		bad("mqtt.commands.secret_file", `""`, "remote commands need a shared secret (or allow_unsigned: true, trusting the broker's ACL alone)")
	}
	for i, v := range cc.Verbs {
		if !slices.Contains(CommandVerbs, v) {
			bad(fmt.Sprintf("mqtt.commands.verbs[%d]", i), strconv.Quote(v), "must be one of "+strings.Join(CommandVerbs, ", "))
		}
	}
	if cc.MaxAge < 0 {
		bad("mqtt.commands.max_age", cc.MaxAge, "must not be negative (0 turns the check off)")
	}
	return errs
}
