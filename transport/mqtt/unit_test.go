package mqtt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

// jpeg is the smallest prefix http.DetectContentType calls image/jpeg.
var jpeg = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00fake-jpeg-body")

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func validConfig() Config {
	return Config{Brokers: []string{"tcp://127.0.0.1:1883"}, ClientID: "inferq-test", Prefix: "inferq", Node: "box1"}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "brokers"},
		{"bad scheme", func(c *Config) { c.Brokers = []string{"http://h:1"} }, `brokers[0] "http://h:1"`},
		{"no port", func(c *Config) { c.Brokers = []string{"tcp://h"} }, "host and port"},
		{"ws ok", func(c *Config) { c.Brokers = []string{"ws://h:8080/mqtt", "ssl://h:8883"} }, ""},
		{"no client id", func(c *Config) { c.ClientID = "" }, "client_id"},
		{"prefix wildcard", func(c *Config) { c.Prefix = "a/+" }, `prefix "a/+"`},
		{"prefix empty level", func(c *Config) { c.Prefix = "a//b" }, "empty topic level"},
		{"prefix dollar", func(c *Config) { c.Prefix = "$SYS" }, "must not start with $"},
		{"prefix bad utf8", func(c *Config) { c.Prefix = "a\xff" }, "UTF-8"},
		{"prefix multi-level ok", func(c *Config) { c.Prefix = "site/a/inferq" }, ""},
		{"node slash", func(c *Config) { c.Node = "a/b" }, `node "a/b"`},
		{"node empty", func(c *Config) { c.Node = "" }, `node ""`},
		{"filter ok", func(c *Config) { c.IngestFilters = []string{"cams/+/img", "x/#", "$share/g/cams/#"} }, ""},
		{"filter hash middle", func(c *Config) { c.IngestFilters = []string{"a/#/b"} }, `mqtt.ingest.filters[0] "a/#/b"`},
		{"filter partial wildcard", func(c *Config) { c.IngestFilters = []string{"a/b+"} }, "whole level"},
		{"share no group", func(c *Config) { c.IngestFilters = []string{"$share//a"} }, "$share/<group>"},
		{"share no filter", func(c *Config) { c.IngestFilters = []string{"$share/g"} }, "$share/<group>"},
		{"password without user", func(c *Config) { c.PasswordFile = "/x" }, "password_file"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "/c" }, "key_file"},
		{"negative payload", func(c *Config) { c.MaxPayload = -1 }, "max_payload -1"},
		{"bad source priority", func(c *Config) { c.SourcePriority = map[string]int{"a/b": 1} }, `source_priority "a/b"`},
		{"keepalive tiny", func(c *Config) { c.KeepAlive = time.Millisecond }, "keep_alive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseIngest(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b64 := base64.StdEncoding.EncodeToString(jpeg)
	tests := []struct {
		name    string
		topic   string
		payload string
		want    IngestItem // ID "" = derived
		wantErr error
	}{
		{"raw", "inferq/n/ingest/cam1", string(jpeg), IngestItem{Source: "cam1", Image: jpeg}, nil},
		{"envelope", "inferq/n/ingest/cam1",
			`{"id":"job-1","priority":7,"source":"door","metadata":{"k":"v"},"deadline":"2026-01-02T04:00:00Z","image":"` + b64 + `"}`,
			IngestItem{ID: "job-1", Source: "door", Priority: 7, Meta: map[string]string{"k": "v"},
				Deadline: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC), Image: jpeg}, nil},
		{"ttl string", "t/cam", `{"ttl":"90s","image":"` + b64 + `"}`, IngestItem{Source: "cam", Deadline: now.Add(90 * time.Second), Image: jpeg}, nil},
		{"ttl seconds", "t/cam", ` {"ttl":30,"image":"` + b64 + `"}`, IngestItem{Source: "cam", Deadline: now.Add(30 * time.Second), Image: jpeg}, nil},
		{"empty", "t/cam", "", IngestItem{}, ErrMalformed},
		{"bad json", "t/cam", `{"image":`, IngestItem{}, ErrMalformed},
		{"unknown field", "t/cam", `{"img":"` + b64 + `"}`, IngestItem{}, ErrMalformed},
		{"no image", "t/cam", `{"id":"x"}`, IngestItem{}, ErrMalformed},
		{"bad base64", "t/cam", `{"image":"!!!"}`, IngestItem{}, ErrMalformed},
		{"not an image", "t/cam", "hello world", IngestItem{}, ErrMalformed},
		{"ttl and deadline", "t/cam", `{"ttl":"1s","deadline":"2026-01-02T04:00:00Z","image":"` + b64 + `"}`, IngestItem{}, ErrMalformed},
		{"negative ttl", "t/cam", `{"ttl":"-1s","image":"` + b64 + `"}`, IngestItem{}, ErrMalformed},
		{"bad id", "t/cam", `{"id":"a/b","image":"` + b64 + `"}`, IngestItem{}, ErrMalformed},
		{"bad source", "t/cam", `{"source":"a+b","image":"` + b64 + `"}`, IngestItem{}, ErrMalformed},
		{"too large", "t/cam", string(bytes.Repeat([]byte{0xff}, 5000)), IngestItem{}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIngest(tt.topic, []byte(tt.payload), 100+len(b64)*2, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got err %v", err)
			}
			if tt.want.ID == "" {
				if !strings.HasPrefix(got.ID, "m-") || len(got.ID) != 34 {
					t.Fatalf("got derived id %q, want m-<32 hex>", got.ID)
				}
				tt.want.ID = got.ID
			}
			if got.ID != tt.want.ID || got.Source != tt.want.Source || got.Priority != tt.want.Priority ||
				!got.Deadline.Equal(tt.want.Deadline) || !bytes.Equal(got.Image, tt.want.Image) || len(got.Meta) != len(tt.want.Meta) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for k, v := range tt.want.Meta {
				if got.Meta[k] != v {
					t.Fatalf("got meta %v, want %v", got.Meta, tt.want.Meta)
				}
			}
		})
	}
}

func TestParseIngestDerivedIDStable(t *testing.T) {
	a, _ := ParseIngest("p/n/ingest/cam1", jpeg, 0, time.Now())
	b, _ := ParseIngest("p/n/ingest/cam1", jpeg, 0, time.Now().Add(time.Hour))
	c, _ := ParseIngest("p/n/ingest/cam2", jpeg, 0, time.Now())
	if a.ID != b.ID {
		t.Fatalf("got ids %q and %q for a redelivery, want equal", a.ID, b.ID)
	}
	if a.ID == c.ID {
		t.Fatalf("got equal ids %q for different topics, want different", a.ID)
	}
}

func FuzzParseIngest(f *testing.F) {
	b64 := base64.StdEncoding.EncodeToString(jpeg)
	for _, s := range []string{string(jpeg), `{"image":"` + b64 + `"}`, `{"id":"x","ttl":5,"image":"` + b64 + `"}`,
		`{"metadata":{"a":"b"},"priority":-3,"image":"` + b64 + `"}`, "{", "", "\x89PNG\r\n\x1a\n"} {
		f.Add("inferq/n/ingest/cam", []byte(s))
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		it, err := ParseIngest(topic, payload, 1<<20, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrTooLarge", err)
			}
			return
		}
		if it.ID == "" || len(it.Image) == 0 || validateSource(it.Source) != nil || validateID(it.ID) != nil {
			t.Fatalf("accepted an invalid item: id %q source %q image %d bytes", it.ID, it.Source, len(it.Image))
		}
		again, err := ParseIngest(topic, payload, 1<<20, now)
		if err != nil || again.ID != it.ID {
			t.Fatalf("not deterministic: %q vs %q (%v)", it.ID, again.ID, err)
		}
	})
}

func TestEventGolden(t *testing.T) {
	c, err := New(validConfig(), newMemOutbox(), nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }
	got, err := c.eventJSON(ingestEvent{ID: "m-0123", Source: "cam1", Topic: "inferq/box1/ingest/cam1", Size: 1234,
		Reason: "queue full", Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "mqtt/event_rejected.json", append(got, '\n'))
}

func TestBackoff(t *testing.T) {
	min, max := 100*time.Millisecond, 2*time.Second
	for attempt := 0; attempt < 20; attempt++ {
		d := backoff(attempt, min, max)
		hi := min << attempt
		if attempt > 10 || hi > max {
			hi = max
		}
		if d < hi/2 || d > hi {
			t.Fatalf("attempt %d: got %v, want within [%v, %v]", attempt, d, hi/2, hi)
		}
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"missing password file", func(c *Config) { c.Username, c.PasswordFile = "u", filepath.Join(dir, "nope") }, "password_file"},
		{"missing ca", func(c *Config) { c.TLS.CAFile = filepath.Join(dir, "nope.pem") }, "ca_file"},
		{"ingest without sink", func(c *Config) { c.IngestEnabled = true }, "sink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			_, err := New(c, newMemOutbox(), nil, discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"#", "$SYS/x", false},
		{"$share/g/cams/+", "cams/door", true},
		{"$share/g/cams/+", "cams/door/x", false},
		{"inferq/box1/ingest/+", "inferq/box1/ingest/cam1", true},
		{"inferq/box1/ingest/+", "inferq/box2/ingest/cam1", false},
	}
	for _, tt := range tests {
		if got := matchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}
