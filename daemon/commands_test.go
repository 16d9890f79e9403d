package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/transport/mqtt"
)

// fakeBackend records the control calls remote commands make.
type fakeBackend struct {
	control.Backend // the calls not made here panic
	mu              sync.Mutex
	calls           []string
	reloadErr       error
}

func (f *fakeBackend) called(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeBackend) Pause(_ context.Context, what string, paused bool) (control.PauseState, error) {
	f.called("pause " + what + map[bool]string{true: " on", false: " off"}[paused])
	return control.PauseState{Worker: paused}, nil
}

func (f *fakeBackend) Reload(context.Context) (control.ReloadResponse, error) {
	f.called("reload")
	return control.ReloadResponse{Model: "m"}, f.reloadErr
}

func (f *fakeBackend) RetryDead(_ context.Context, r control.DeadRequest) (control.DeadResponse, error) {
	f.called("retry " + strings.Join(r.IDs, ","))
	return control.DeadResponse{Count: len(r.IDs)}, nil
}

func (f *fakeBackend) PurgeDead(_ context.Context, r control.DeadRequest) (control.DeadResponse, error) {
	f.called("purge all")
	return control.DeadResponse{Count: 3}, nil
}

type sentReply struct {
	topic string
	reply CommandReply
}

var testKey = []byte("0123456789abcdef-test-key")

func testCommander(t *testing.T, b control.Backend, now time.Time) (*commander, *[]sentReply) {
	var mu sync.Mutex
	var sent []sentReply
	c := &commander{b: b, node: "box1", prefix: "inferq", key: testKey, verbs: CommandVerbs, maxAge: 5 * time.Minute,
		now: func() time.Time { return now }, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ready: make(chan struct{}), seen: map[string]time.Time{},
		publish: func(_ context.Context, topic string, payload []byte, retained bool) error {
			var r CommandReply
			if err := json.Unmarshal(payload, &r); err != nil || retained {
				t.Errorf("reply %s retained=%v: %v", payload, retained, err)
			}
			mu.Lock()
			sent = append(sent, sentReply{topic, r})
			mu.Unlock()
			return nil
		}}
	c.start()
	return c, &sent
}

func cmdMessage(t *testing.T, verb string, req CommandRequest, key []byte) mqtt.Message {
	t.Helper()
	p, err := EncodeCommand(req, key)
	if err != nil {
		t.Fatal(err)
	}
	return mqtt.Message{Topic: CommandTopic("inferq", "box1", verb), Payload: p}
}

// Every check a remote command goes through: each refusal is answered with why and
// calls nothing; retained and repeated requests are ignored without a reply; good
// requests call the control backend and are answered with its result.
func TestCommandChecks(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	req := func(id, verb string) CommandRequest {
		return CommandRequest{ID: id, Node: "box1", Verb: verb, Time: now.Add(-time.Second), What: "worker"}
	}
	tamper := func(m mqtt.Message) mqtt.Message {
		m.Payload = []byte(strings.Replace(string(m.Payload), `"what":"worker"`, `"what":"all"`, 1))
		return m
	}
	old := req("r-old", "pause")
	old.Time = now.Add(-6 * time.Minute)
	future := req("r-future", "pause")
	future.Time = now.Add(6 * time.Minute)
	noTime := req("r-notime", "pause")
	noTime.Time = time.Time{}
	other := req("r-node", "pause")
	other.Node = "box2"
	tests := []struct {
		name  string
		msg   mqtt.Message
		calls string // backend calls made
		reply string // status of the reply, "" for none
		why   string // in the reply's error
	}{
		{"good", cmdMessage(t, "pause", req("r1", "pause"), testKey), "pause worker on", ReplyOK, ""},
		{"same id again", cmdMessage(t, "pause", req("r1", "pause"), testKey), "", "", ""},
		{"retained", func() mqtt.Message {
			m := cmdMessage(t, "pause", req("r2", "pause"), testKey)
			m.Retained = true
			return m
		}(), "", "", ""},
		{"unsigned", cmdMessage(t, "pause", req("r3", "pause"), nil), "", ReplyRefused, "unsigned request"},
		{"wrong key", cmdMessage(t, "pause", req("r4", "pause"), []byte("another-key-of-16+bytes")), "", ReplyRefused, "bad signature"},
		{"tampered", tamper(cmdMessage(t, "pause", req("r5", "pause"), testKey)), "", ReplyRefused, "bad signature"},
		{"other node", cmdMessage(t, "pause", other, testKey), "", ReplyRefused, `for node "box2"`},
		{"verb of another topic", cmdMessage(t, "purge", req("r6", "pause"), testKey), "", ReplyRefused, `verb "pause" does not match`},
		{"unknown verb", cmdMessage(t, "reboot", req("r7", "reboot"), testKey), "", ReplyRefused, `unknown verb "reboot"`},
		{"too old", cmdMessage(t, "pause", old, testKey), "", ReplyRefused, "6m0s off"},
		{"from the future", cmdMessage(t, "pause", future, testKey), "", ReplyRefused, "-6m0s off"},
		{"no time", cmdMessage(t, "pause", noTime, testKey), "", ReplyRefused, "without a time"},
		{"bad id", cmdMessage(t, "pause", req("a/b", "pause"), testKey), "", "", ""},
		{"not JSON", mqtt.Message{Topic: "inferq/box1/cmd/pause", Payload: []byte("pause!")}, "", "", ""},
		{"retry ids", cmdMessage(t, "retry", CommandRequest{ID: "r8", Node: "box1", Verb: "retry", Time: now, IDs: []string{"j1", "j2"}}, testKey), "retry j1,j2", ReplyOK, ""},
		{"retry nothing", cmdMessage(t, "retry", CommandRequest{ID: "r9", Node: "box1", Verb: "retry", Time: now}, testKey), "", ReplyFailed, "give the ids"},
		{"purge all", cmdMessage(t, "purge", CommandRequest{ID: "r10", Node: "box1", Verb: "purge", Time: now, All: true}, testKey), "purge all", ReplyOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{}
			c, sent := testCommander(t, b, now)
			if tt.name == "same id again" {
				c.handle(context.Background(), cmdMessage(t, "pause", req("r1", "pause"), testKey))
				*sent, b.calls = nil, nil
			}
			c.handle(context.Background(), tt.msg)
			if got := strings.Join(b.calls, "; "); got != tt.calls {
				t.Errorf("backend calls %q, want %q", got, tt.calls)
			}
			if tt.reply == "" {
				if len(*sent) != 0 {
					t.Errorf("replied %+v, want no reply", *sent)
				}
				return
			}
			if len(*sent) != 1 {
				t.Fatalf("%d replies, want 1", len(*sent))
			}
			r := (*sent)[0]
			var id CommandRequest
			var env CommandEnvelope
			_ = json.Unmarshal(tt.msg.Payload, &env)
			_ = json.Unmarshal(env.Request, &id)
			if r.topic != "inferq/box1/reply/"+id.ID || r.reply.ID != id.ID || r.reply.Node != "box1" || r.reply.Status != tt.reply ||
				!strings.Contains(r.reply.Error, tt.why) || r.reply.Time.IsZero() {
				t.Errorf("reply on %s: %+v, want status %s with %q", r.topic, r.reply, tt.reply, tt.why)
			}
			if tt.reply == ReplyOK && len(r.reply.Result) == 0 {
				t.Errorf("ok reply without the backend's result")
			}
		})
	}
}

// A verb left out of mqtt.commands.verbs is refused; a refused reload is answered as
// failed with the daemon's reason and class.
func TestCommandVerbsAndFailures(t *testing.T) {
	now := time.Now()
	b := &fakeBackend{reloadErr: control.Errorf(control.ErrRefused, "reload refused, nothing changed: model.kind")}
	c, sent := testCommander(t, b, now)
	c.verbs = []string{"reload", "pause", "resume"}
	c.handle(context.Background(), cmdMessage(t, "purge", CommandRequest{ID: "p", Node: "box1", Verb: "purge", Time: now, All: true}, testKey))
	c.handle(context.Background(), cmdMessage(t, "reload", CommandRequest{ID: "r", Node: "box1", Verb: "reload", Time: now}, testKey))
	if len(*sent) != 2 {
		t.Fatalf("replies %+v", *sent)
	}
	if r := (*sent)[0].reply; r.Status != ReplyRefused || !strings.Contains(r.Error, `verb "purge" is not allowed`) {
		t.Errorf("purge: %+v", r)
	}
	if r := (*sent)[1].reply; r.Status != ReplyFailed || r.Class != "refused" || !strings.Contains(r.Error, "model.kind") {
		t.Errorf("reload: %+v", r)
	}
	if got := strings.Join(b.calls, ";"); got != "reload" {
		t.Errorf("backend calls %q", got)
	}
}

// Accepted commands wait until the daemon runs (start), or until the client closes.
func TestCommandWaitsForStart(t *testing.T) {
	now := time.Now()
	b := &fakeBackend{}
	c, sent := testCommander(t, b, now)
	c.ready, c.readyOnce = make(chan struct{}), sync.Once{}
	done := make(chan struct{})
	go func() {
		c.handle(context.Background(), cmdMessage(t, "resume", CommandRequest{ID: "w", Node: "box1", Verb: "resume", Time: now}, testKey))
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("ran before start")
	case <-time.After(100 * time.Millisecond):
	}
	c.start()
	<-done
	if len(*sent) != 1 || (*sent)[0].reply.Status != ReplyOK {
		t.Fatalf("replies %+v", *sent)
	}
}

func TestCommandConfigChecks(t *testing.T) {
	c := DefaultConfig()
	c.Model.Path = "/models/m.tflite"
	c.MQTT.Commands.Enabled = true
	c.MQTT.Commands.Verbs = []string{"reload", "reboot"}
	c.MQTT.Commands.MaxAge = -time.Second
	err := c.Validate()
	for _, want := range []string{`mqtt.commands.secret_file = ""`, `mqtt.commands.verbs[1] = "reboot"`, "mqtt.commands.max_age = -1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	c.MQTT.Commands = CommandsConfig{Enabled: true, AllowUnsigned: true, Verbs: CommandVerbs}
	if err := c.Validate(); err != nil {
		t.Errorf("unsigned, said explicitly: %v", err)
	}
	c.MQTT.Commands = CommandsConfig{Enabled: true, SecretFile: "/nonexistent/key", Verbs: CommandVerbs}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `mqtt.commands.secret_file = "/nonexistent/key": cannot be read`) {
		t.Errorf("missing secret file: %v", err)
	}
	short := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCommandKey(short); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short key: %v", err)
	}
}
