package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Listen is the TCP address, e.g. "127.0.0.1:1883" or ":1883".
	Listen string
	// WebsocketListen, when set, adds an MQTT-over-websocket listener
	// (ws://host:port/, any path).
	WebsocketListen string
	// Username and PasswordFile, when set, are the only credentials
	// accepted; otherwise anonymous clients are allowed.
	Username, PasswordFile string
}

// EmbeddedBroker is an MQTT broker inside the inferq process (mochi-mqtt),
// for a single box with no other software. Its sessions and retained
// messages live in memory: they are lost when inferq stops (results wait in
// inferq's durable outbox, not in the broker).
type EmbeddedBroker struct {
	cfg    BrokerConfig
	log    *slog.Logger
	mu     sync.Mutex
	srv    *mochi.Server
	tcp    *listeners.TCP
	closed bool
}

// NewEmbeddedBroker checks the configuration.
func NewEmbeddedBroker(cfg BrokerConfig, logger *slog.Logger) (*EmbeddedBroker, error) {
	if logger == nil {
		return nil, errors.New("mqtt broker: logger is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("mqtt broker: listen %q: %w", cfg.Listen, err)
	}
	if cfg.WebsocketListen != "" {
		if _, _, err := net.SplitHostPort(cfg.WebsocketListen); err != nil {
			return nil, fmt.Errorf("mqtt broker: websocket_listen %q: %w", cfg.WebsocketListen, err)
		}
	}
	if (cfg.Username == "") != (cfg.PasswordFile == "") {
		return nil, fmt.Errorf("mqtt broker: username %q and password_file %q must be given together", cfg.Username, cfg.PasswordFile)
	}
	return &EmbeddedBroker{cfg: cfg, log: logger}, nil
}

// Open starts listening.
func (b *EmbeddedBroker) Open() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("mqtt broker: closed")
	}
	if b.srv != nil {
		return nil
	}
	srv := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(quietClose{b.log.Handler()})})
	if b.cfg.Username != "" {
		pw, err := readPassword(b.cfg.PasswordFile)
		if err != nil {
			return fmt.Errorf("mqtt broker: %w", err)
		}
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{
			Auth: auth.AuthRules{{Username: auth.RString(b.cfg.Username), Password: auth.RString(pw), Allow: true}},
			ACL:  auth.ACLRules{{}},
		}})
		if err != nil {
			return fmt.Errorf("cannot add broker auth: %w", err)
		}
	} else if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("cannot add broker auth: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.cfg.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return fmt.Errorf("cannot listen on %s: %w", b.cfg.Listen, err)
	}
	if b.cfg.WebsocketListen != "" {
		ws := listeners.NewWebsocket(listeners.Config{ID: "ws", Address: b.cfg.WebsocketListen})
		if err := srv.AddListener(ws); err != nil {
			_ = srv.Close()
			return fmt.Errorf("cannot listen on %s: %w", b.cfg.WebsocketListen, err)
		}
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("cannot start embedded broker: %w", err)
	}
	b.srv, b.tcp = srv, tcp
	b.log.Info("embedded mqtt broker listening", "addr", tcp.Address())
	return nil
}

// Addr returns the address the broker listens on ("" before Open).
func (b *EmbeddedBroker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// Run blocks until ctx is done; the broker serves in its own goroutines.
func (b *EmbeddedBroker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close stops the broker and disconnects its clients. Safe to call twice.
func (b *EmbeddedBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.srv == nil {
		return nil
	}
	err := b.srv.Close()
	b.srv, b.tcp = nil, nil
	return err
}

// quietClose passes the embedded broker's log records on, except that a connection
// read ending because the listener closed (a clean stop) is debug, not a warning.
type quietClose struct{ slog.Handler }

func (h quietClose) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		closed := false
		r.Attrs(func(a slog.Attr) bool {
			if strings.Contains(a.Value.String(), "use of closed network connection") {
				closed = true
			}
			return !closed
		})
		if closed {
			if !h.Handler.Enabled(ctx, slog.LevelDebug) {
				return nil
			}
			d := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
			r.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
			r = d
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietClose) WithAttrs(as []slog.Attr) slog.Handler {
	return quietClose{h.Handler.WithAttrs(as)}
}
func (h quietClose) WithGroup(n string) slog.Handler { return quietClose{h.Handler.WithGroup(n)} }
