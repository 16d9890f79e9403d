package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Session is a short-lived connection for tools (inferq fleet): a clean session under a
// random client id, subscriptions made again after every reconnect, and QoS 1 publishes
// that wait for the broker's PUBACK. It is not the daemon's Client: nothing durable
// hangs on it.
type Session struct {
	cl     paho.Client
	cfg    SessionConfig
	filter []string
}

// SessionConfig configures a Session. Brokers, credentials and TLS are as in Config.
type SessionConfig struct {
	Brokers                []string
	Username, PasswordFile string
	TLS                    TLSConfig
	// ClientIDPrefix starts the random client id (default "inferq-tool").
	ClientIDPrefix string
	// Timeout bounds connecting, subscribing and publishing (default 10 s).
	Timeout time.Duration
}

// Message is a message a Session received. Retained is set for a message the broker
// had kept and sent because of the subscription: it may be old.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// Dial connects and subscribes to filters at QoS 1; handle gets every message in the
// order the broker sent it and must not block (it runs on the connection's goroutine).
func Dial(ctx context.Context, cfg SessionConfig, filters []string, handle func(Message)) (*Session, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("mqtt: no broker given")
	}
	for _, f := range filters {
		if err := ValidateFilter(f); err != nil {
			return nil, fmt.Errorf("mqtt: filter %q: %w", f, err)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultConnectTimeout
	}
	if cfg.ClientIDPrefix == "" {
		cfg.ClientIDPrefix = "inferq-tool"
	}
	pw, err := readPassword(cfg.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	tc, err := cfg.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	s := &Session{cfg: cfg, filter: filters}
	o := paho.NewClientOptions()
	for _, b := range cfg.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(cfg.ClientIDPrefix + "-" + hex.EncodeToString(rnd))
	o.SetProtocolVersion(4)
	o.SetCleanSession(true)
	o.SetAutoReconnect(true)
	o.SetMaxReconnectInterval(5 * time.Second)
	o.SetOrderMatters(true)
	o.SetConnectTimeout(cfg.Timeout)
	o.SetWriteTimeout(cfg.Timeout)
	o.SetTLSConfig(tc)
	if cfg.Username != "" {
		o.SetUsername(cfg.Username)
		o.SetPassword(pw)
	}
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		handle(Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained()})
	})
	subscribed := make(chan error, 1)
	o.SetOnConnectHandler(func(cl paho.Client) {
		// A clean session forgets subscriptions: make them on every connection.
		err := s.subscribe(cl)
		select {
		case subscribed <- err:
		default:
		}
	})
	s.cl = paho.NewClient(o)
	tok := s.cl.Connect()
	if err := wait(ctx, tok, cfg.Timeout); err != nil {
		s.cl.Disconnect(0)
		if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			err = fmt.Errorf("%w: %w", ErrNotAuthorized, err)
		}
		return nil, fmt.Errorf("cannot connect to %v: %w", cfg.Brokers, err)
	}
	select {
	case err = <-subscribed:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.cl.Disconnect(0)
		return nil, err
	}
	return s, nil
}

func (s *Session) subscribe(cl paho.Client) error {
	if len(s.filter) == 0 {
		return nil
	}
	m := make(map[string]byte, len(s.filter))
	for _, f := range s.filter {
		m[f] = 1
	}
	tok := cl.SubscribeMultiple(m, nil)
	if err := wait(context.Background(), tok, s.cfg.Timeout); err != nil {
		return fmt.Errorf("cannot subscribe: %w", err)
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code == 0x80 {
			return fmt.Errorf("cannot subscribe to %q: the broker refused (ACL?)", f)
		}
	}
	return nil
}

// Publish sends payload at QoS 1 and waits for the broker's PUBACK.
func (s *Session) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("mqtt: topic %q: %w", topic, err)
	}
	if err := wait(ctx, s.cl.Publish(topic, 1, retained, payload), s.cfg.Timeout); err != nil {
		return fmt.Errorf("cannot publish to %s: %w", topic, err)
	}
	return nil
}

// Close disconnects.
func (s *Session) Close() { s.cl.Disconnect(250) }

// wait waits for tok, ctx or timeout.
func wait(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return errors.New("no answer from the broker in time")
	}
}
