package mqtt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/inferq/inferq/internal/textutil"
)

// ErrQueueFull is what a Sink returns (wrapped) when the queue cannot take
// the job now. The message is not acknowledged; the client retries it.
var ErrQueueFull = errors.New("queue full")

// ErrRefused is what a Sink returns (wrapped) when the item can never be
// accepted. The message is acknowledged and a "rejected" event says why.
var ErrRefused = errors.New("refused")

// ErrMalformed marks an ingest payload that cannot become a job.
var ErrMalformed = errors.New("malformed ingest payload")

// ErrTooLarge marks an ingest payload over Config.MaxPayload.
var ErrTooLarge = errors.New("ingest payload too large")

// IngestItem is a job made from one ingest message.
type IngestItem struct {
	// ID is the envelope's id, else "m-" and the first 32 hex digits of
	// sha256(topic, 0, payload): a redelivered message has the same ID.
	ID       string
	Source   string
	Priority int
	Meta     map[string]string
	Deadline time.Time // zero: none
	Image    []byte
}

// Sink takes ingest items durably. Submit returns only when the job is on
// disk (or was already known: duplicate). Errors matching ErrQueueFull or
// any other error are retried; ErrRefused is final.
type Sink interface {
	Submit(ctx context.Context, it IngestItem) (duplicate bool, err error)
}

// envelope is the JSON form of an ingest message.
type envelope struct {
	ID       string            `json:"id"`
	Priority *int              `json:"priority"`
	Source   string            `json:"source"`
	Metadata map[string]string `json:"metadata"`
	Deadline *time.Time        `json:"deadline"`
	TTL      json.RawMessage   `json:"ttl"`
	Image    string            `json:"image"`
}

// ParseIngest turns one message into an item. topic is the message's topic
// (the source is its last level unless the envelope names one), now is
// the time a "ttl" counts from. Errors wrap ErrMalformed or ErrTooLarge.
func ParseIngest(topic string, payload []byte, maxPayload int, now time.Time) (IngestItem, error) {
	it, _, err := parseIngest(topic, payload, maxPayload, now)
	if err != nil {
		return IngestItem{}, err
	}
	return it, nil
}

// parseIngest also reports whether the envelope set a priority. On error
// the item holds what was parsed so far (for the rejection event).
func parseIngest(topic string, payload []byte, maxPayload int, now time.Time) (IngestItem, bool, error) {
	var it IngestItem
	hasPriority := false
	if maxPayload > 0 && len(payload) > maxPayload {
		return it, false, fmt.Errorf("%w: %d bytes > max_payload %d", ErrTooLarge, len(payload), maxPayload)
	}
	if len(payload) == 0 {
		return it, false, fmt.Errorf("%w: empty payload", ErrMalformed)
	}
	it.Source = topic[strings.LastIndexByte(topic, '/')+1:]
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var env envelope
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			// encoding/json quotes unknown field names: cut them.
			return it, false, fmt.Errorf("%w: json envelope: %s", ErrMalformed, textutil.ClipMessage(err.Error()))
		}
		if dec.More() {
			return it, false, fmt.Errorf("%w: json envelope: trailing data", ErrMalformed)
		}
		if env.Image == "" {
			return it, false, fmt.Errorf("%w: json envelope: image is missing", ErrMalformed)
		}
		img, err := base64.StdEncoding.DecodeString(env.Image)
		if err != nil {
			return it, false, fmt.Errorf("%w: json envelope: image is not base64: %v", ErrMalformed, err)
		}
		it.Image = img
		if env.ID != "" {
			if err := validateID(env.ID); err != nil {
				return it, false, fmt.Errorf("%w: json envelope: id %q: %v", ErrMalformed, textutil.Clip(env.ID), err)
			}
			it.ID = env.ID
		}
		if env.Source != "" {
			it.Source = env.Source
		}
		if env.Priority != nil {
			it.Priority, hasPriority = *env.Priority, true
		}
		if len(env.Metadata) > 0 {
			it.Meta = env.Metadata
		}
		if env.Deadline != nil && len(env.TTL) > 0 {
			return it, false, fmt.Errorf("%w: json envelope: give deadline or ttl, not both", ErrMalformed)
		}
		if env.Deadline != nil {
			it.Deadline = *env.Deadline
		}
		if len(env.TTL) > 0 {
			ttl, err := parseTTL(env.TTL)
			if err != nil {
				return it, false, fmt.Errorf("%w: json envelope: ttl %s: %v", ErrMalformed, textutil.Clip(string(env.TTL)), err)
			}
			it.Deadline = now.Add(ttl)
		}
	} else {
		it.Image = payload
	}
	if len(it.Image) == 0 {
		return it, false, fmt.Errorf("%w: empty image", ErrMalformed)
	}
	if ct := http.DetectContentType(it.Image); !strings.HasPrefix(ct, "image/") {
		return it, false, fmt.Errorf("%w: not an image (detected %s)", ErrMalformed, ct)
	}
	if err := validateSource(it.Source); err != nil {
		return it, false, fmt.Errorf("%w: source %q: %v", ErrMalformed, textutil.Clip(it.Source), err)
	}
	if it.ID == "" {
		h := sha256.New()
		h.Write([]byte(topic))
		h.Write([]byte{0})
		h.Write(payload)
		it.ID = "m-" + hex.EncodeToString(h.Sum(nil))[:32]
	}
	return it, hasPriority, nil
}

func validateID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("longer than %d bytes", maxIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range id {
		if r <= 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return fmt.Errorf("contains %q", r)
		}
	}
	return nil
}

// parseTTL accepts a Go duration string ("90s", "5m") or a number of seconds.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	var d time.Duration
	var s string
	var f float64
	switch {
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	case json.Unmarshal(raw, &f) == nil:
		if f > float64(100*365*24*3600) {
			return 0, errors.New("too large")
		}
		d = time.Duration(f * float64(time.Second))
	default:
		return 0, errors.New("must be a duration string or seconds")
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}
