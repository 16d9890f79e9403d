package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMin   = 500 * time.Millisecond
	DefaultReconnectMax   = 30 * time.Second
	DefaultPublishTimeout = 30 * time.Second
	DefaultMaxPayload     = 8 << 20
	DefaultOutboxBatch    = 64
	maxTopicLen           = 65535
	maxSourceLen          = 128
	maxIDLen              = 128
)

// TLSConfig configures TLS for ssl://, tls://, mqtts:// and wss:// brokers.
type TLSConfig struct {
	CAFile             string // PEM CA bundle; "" = system roots
	CertFile, KeyFile  string // client certificate for mutual TLS (both or neither)
	InsecureSkipVerify bool
	ServerName         string
}

// Config configures a Client. Zero durations and sizes take the Default*
// values.
type Config struct {
	// Brokers are URLs tried in order: tcp://h:p, ssl://h:p (or tls://,
	// mqtts://), ws://h:p/mqtt, wss://h:p/mqtt.
	Brokers []string
	// ClientID is fixed: the broker keeps the session (subscriptions and
	// unacknowledged ingest messages) under it across reconnects and crashes.
	ClientID string
	// Username and the file holding the password (read at every connect,
	// trailing newline removed).
	Username, PasswordFile string
	TLS                    TLSConfig
	// Prefix (e.g. "inferq") and Node (this box) build every topic:
	// <Prefix>/<Node>/available, .../health, .../events, .../ingest/+, .../results/...
	Prefix, Node string
	KeepAlive    time.Duration
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between connection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// PublishTimeout bounds the wait for a PUBACK; past it the connection is
	// considered broken and re-established.
	PublishTimeout time.Duration
	// IngestEnabled subscribes to <Prefix>/<Node>/ingest/+ at QoS 1.
	IngestEnabled bool
	// IngestFilters are extra QoS 1 subscriptions (only used with
	// IngestEnabled), e.g. "$share/inferq/cameras/+/image".
	IngestFilters []string
	// MaxPayload refuses larger ingest messages.
	MaxPayload int
	// DefaultPriority and SourcePriority give the priority of an ingest
	// message without an explicit one in its envelope.
	DefaultPriority int
	SourcePriority  map[string]int
	// OutboxBatch is how many outbox rows are in flight at once.
	OutboxBatch int
	// Birth, when set, is called before every connection attempt: its boot id and
	// sequence number go, as JSON (Availability), into that connection's online, offline
	// (will) and stopped payloads. Without it they are the bare words.
	Birth func() (bootID string, seq uint64)
	// Subscriptions are more subscriptions (remote commands, Home Assistant's status),
	// routed to their own handlers, made again after every connect like the ingest
	// ones; Stats.Subscribed covers them too.
	Subscriptions []Subscription
	// Unsubscribe lists filters an earlier configuration may have left in the
	// persistent session (a feature since turned off); they are dropped after every
	// connect, so their messages do not reach the ingest handler.
	Unsubscribe []string
	// OnConnect, when set, is called on a goroutine of its own after each connection
	// is announced (online, health and subscriptions sent). Close waits for it.
	OnConnect func(ctx context.Context)
}

// Subscription is an extra subscription and its handler. Handle runs on a goroutine
// of its own for each message (ctx ends when the Client closes); the message is
// acknowledged (QoS 1) when Handle returns, and Close waits for running handlers.
// Messages the persistent session kept while the client was away reach Handle too.
type Subscription struct {
	Filter string
	QoS    byte // 0 or 1
	Handle func(ctx context.Context, m Message)
}

func (c *Config) setDefaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMin > c.ReconnectMax {
		c.ReconnectMin = c.ReconnectMax
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.OutboxBatch == 0 {
		c.OutboxBatch = DefaultOutboxBatch
	}
}

// Validate checks the configuration; errors name the field and the value.
// It does not read files (see New).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Brokers) == 0 {
		bad("mqtt.brokers: at least one broker URL is required")
	}
	for i, b := range c.Brokers {
		u, err := url.Parse(b)
		if err != nil {
			bad("mqtt.brokers[%d] %q: %w", i, b, err)
			continue
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			bad("mqtt.brokers[%d] %q: scheme must be tcp, ssl, tls, mqtts, ws or wss", i, b)
			continue
		}
		if u.Hostname() == "" || u.Port() == "" {
			bad("mqtt.brokers[%d] %q: host and port are required", i, b)
		}
	}
	if c.ClientID == "" {
		bad("mqtt.client_id: a fixed client id is required (the broker keeps the session under it)")
	}
	if !utf8.ValidString(c.ClientID) || len(c.ClientID) > 65535 || strings.ContainsRune(c.ClientID, 0) {
		bad("mqtt.client_id %q: must be valid UTF-8 without NUL, at most 65535 bytes", c.ClientID)
	}
	if c.PasswordFile != "" && c.Username == "" {
		bad("mqtt.password_file %q: needs a username", c.PasswordFile)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("mqtt.tls: cert_file %q and key_file %q must be given together", c.TLS.CertFile, c.TLS.KeyFile)
	}
	if err := ValidateTopic(c.Prefix); err != nil {
		bad("mqtt.prefix %q: %w", c.Prefix, err)
	}
	if err := validateLevel(c.Node); err != nil {
		bad("node %q: %w", c.Node, err)
	}
	for i, f := range c.IngestFilters {
		if err := ValidateFilter(f); err != nil {
			bad("mqtt.ingest.filters[%d] %q: %w", i, f, err)
		}
	}
	for s := range c.SourcePriority {
		if err := validateSource(s); err != nil {
			bad("mqtt.ingest.source_priority %q: %w", s, err)
		}
	}
	for name, d := range map[string]time.Duration{"keep_alive": c.KeepAlive, "connect_timeout": c.ConnectTimeout,
		"reconnect_min": c.ReconnectMin, "reconnect_max": c.ReconnectMax, "publish_timeout": c.PublishTimeout} {
		if d < 0 {
			bad("mqtt.%s %v: must not be negative", name, d)
		}
	}
	if c.KeepAlive != 0 && c.KeepAlive < time.Second {
		bad("mqtt.keep_alive %v: must be at least 1s", c.KeepAlive)
	}
	if c.MaxPayload < 0 {
		bad("mqtt.ingest.max_payload %d: must not be negative", c.MaxPayload)
	}
	for i, s := range c.Subscriptions {
		if err := ValidateFilter(s.Filter); err != nil {
			bad("mqtt subscription %d %q: %w", i, s.Filter, err)
		}
		if s.QoS > 1 || s.Handle == nil {
			bad("mqtt subscription %d %q: needs QoS 0 or 1 and a handler", i, s.Filter)
		}
	}
	for _, f := range c.Unsubscribe {
		if err := ValidateFilter(f); err != nil {
			bad("mqtt unsubscribe %q: %w", f, err)
		}
	}
	if c.OutboxBatch < 0 || c.OutboxBatch > 65000 {
		bad("mqtt.outbox_batch %d: must be between 0 and 65000", c.OutboxBatch)
	}
	return errors.Join(errs...)
}

// ValidateTopic checks a topic name used for publishing: not empty, valid
// UTF-8 without NUL, no wildcards, no empty levels, not starting with '$',
// at most 65535 bytes.
func ValidateTopic(t string) error {
	if err := validateCommon(t); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return errors.New("wildcards + and # are not allowed")
	}
	if strings.HasPrefix(t, "$") {
		return errors.New("must not start with $")
	}
	for _, l := range strings.Split(t, "/") {
		if l == "" {
			return errors.New("empty topic level")
		}
	}
	return nil
}

func validateCommon(t string) error {
	switch {
	case t == "":
		return errors.New("must not be empty")
	case len(t) > maxTopicLen:
		return fmt.Errorf("longer than %d bytes", maxTopicLen)
	case !utf8.ValidString(t):
		return errors.New("not valid UTF-8")
	case strings.ContainsRune(t, 0):
		return errors.New("contains NUL")
	}
	return nil
}

func validateLevel(l string) error {
	if err := ValidateTopic(l); err != nil {
		return err
	}
	if strings.Contains(l, "/") {
		return errors.New("must be a single topic level (no /)")
	}
	return nil
}

// ValidateFilter checks a subscription filter: wildcards only as whole
// levels ('#' last), no empty levels, and for a shared subscription
// "$share/<group>/<filter>" a group without wildcards.
func ValidateFilter(f string) error {
	if err := validateCommon(f); err != nil {
		return err
	}
	if strings.HasPrefix(f, "$share/") {
		rest := strings.TrimPrefix(f, "$share/")
		group, filter, ok := strings.Cut(rest, "/")
		if !ok || group == "" || strings.ContainsAny(group, "+#") {
			return errors.New("shared subscription must be $share/<group>/<filter>")
		}
		f = filter
		if f == "" {
			return errors.New("shared subscription has an empty filter")
		}
	} else if strings.HasPrefix(f, "$") {
		return errors.New("must not start with $ (except $share/)")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "":
			return errors.New("empty topic level")
		case l == "#" && i != len(levels)-1:
			return errors.New("# must be the last level")
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return errors.New("wildcards must fill a whole level")
		}
	}
	return nil
}

func validateSource(s string) error {
	switch {
	case s == "":
		return errors.New("empty source")
	case len(s) > maxSourceLen:
		return fmt.Errorf("source longer than %d bytes", maxSourceLen)
	case !utf8.ValidString(s):
		return errors.New("source not valid UTF-8")
	case s == "." || s == "..":
		return errors.New("source must not be . or ..")
	case strings.HasPrefix(s, "$"):
		return errors.New("source must not start with $")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '/' || r == '+' || r == '#' || r == '\\' {
			return fmt.Errorf("source contains %q", r)
		}
	}
	return nil
}

func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read password_file %q: %w", path, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c TLSConfig) build() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read tls ca_file %q: %w", c.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %q: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load tls cert_file %q / key_file %q: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
