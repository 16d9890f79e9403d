package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket standing in for systemd's notify socket and points
// NOTIFY_SOCKET at it. abstract selects an abstract-namespace name instead of a path.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "n.sock")
	if abstract {
		name = fmt.Sprintf("@inferq-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("cannot listen on %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return conn
}

// recv returns the next datagram. The deadline only keeps a broken test from hanging.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// pending reports a datagram already queued on conn, or "" if there is none. Datagrams
// on a local unix socket are queued by the time the sender's write returns, and a read
// with a future deadline tries the socket before it waits, so the short deadline below
// decides nothing about what was sent.
func pending(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestMessages(t *testing.T) {
	tests := []struct {
		name string
		send func(*Notifier) error
		want string
	}{
		{"ready", (*Notifier).Ready, "READY=1"},
		{"stopping", (*Notifier).Stopping, "STOPPING=1"},
		{"watchdog", (*Notifier).Watchdog, "WATCHDOG=1"},
		{"status", func(n *Notifier) error { return n.Status("queue depth 3, broker offline") }, "STATUS=queue depth 3, broker offline"},
		{"status empty", func(n *Notifier) error { return n.Status("") }, "STATUS="},
		{"status newlines", func(n *Notifier) error { return n.Status("a\nREADY=1\r\nb\rc") }, "STATUS=a READY=1 b c"},
		{"extend timeout", func(n *Notifier) error { return n.ExtendTimeout(90 * time.Second) }, "EXTEND_TIMEOUT_USEC=90000000"},
	}
	for _, abstract := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/abstract=%v", tt.name, abstract), func(t *testing.T) {
				conn := listen(t, abstract)
				n := NewNotifier(discard())
				if !n.Enabled() {
					t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
				}
				if err := tt.send(n); err != nil {
					t.Fatalf("send: %v", err)
				}
				if got := recv(t, conn); got != tt.want {
					t.Errorf("datagram = %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func TestReloading(t *testing.T) {
	conn := listen(t, false)
	n := NewNotifier(discard())
	if err := n.Reloading(); err != nil {
		t.Fatalf("Reloading: %v", err)
	}
	got := recv(t, conn)
	first, second, ok := strings.Cut(got, "\n")
	if !ok || first != "RELOADING=1" || !strings.HasPrefix(second, "MONOTONIC_USEC=") {
		t.Fatalf("datagram = %q, want RELOADING=1 then MONOTONIC_USEC=<n>", got)
	}
	if usec, err := strconv.ParseInt(strings.TrimPrefix(second, "MONOTONIC_USEC="), 10, 64); err != nil || usec <= 0 {
		t.Errorf("MONOTONIC_USEC = %q, want a positive integer", second)
	}
}

func TestDisabled(t *testing.T) {
	for _, socket := range []string{"", "vsock:2:1234", "@", "relative/path"} {
		t.Run(fmt.Sprintf("%q", socket), func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", socket)
			t.Setenv("WATCHDOG_USEC", "30000000")
			n := NewNotifier(discard())
			if n.Enabled() {
				t.Error("Enabled() = true")
			}
			if d, ok := n.WatchdogInterval(); ok {
				t.Errorf("WatchdogInterval() = %v, true; want disabled", d)
			}
			for name, f := range map[string]func() error{
				"Ready": n.Ready, "Stopping": n.Stopping, "Reloading": n.Reloading, "Watchdog": n.Watchdog,
				"Status":        func() error { return n.Status("x") },
				"ExtendTimeout": func() error { return n.ExtendTimeout(time.Second) },
			} {
				if err := f(); err != nil {
					t.Errorf("%s() = %v, want nil", name, err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			called := false
			if err := n.Run(ctx, func() error { called = true; return nil }); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			if called {
				t.Error("Run called alive without a watchdog")
			}
		})
	}
}

func TestSendError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	err := NewNotifier(discard()).Ready()
	if !errors.Is(err, ErrNotifyFailed) {
		t.Fatalf("Ready() = %v, want ErrNotifyFailed", err)
	}
	if !strings.HasPrefix(err.Error(), "cannot connect to NOTIFY_SOCKET") {
		t.Errorf("error = %q, want it to start with %q", err, "cannot connect to NOTIFY_SOCKET")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name   string
		usec   string
		pid    string
		want   time.Duration
		wantOK bool
	}{
		{"unset", "", "", 0, false},
		{"30s", "30000000", "", 15 * time.Second, true},
		{"30s our pid", "30000000", self, 15 * time.Second, true},
		{"other pid", "30000000", "1", 0, false},
		{"bad pid", "30000000", "init", 0, false},
		{"odd usec", "3", "", 1500 * time.Nanosecond, true},
		{"zero", "0", "", 0, false},
		{"negative", "-5", "", 0, false},
		{"not a number", "30s", "", 0, false},
		{"overflow", "99999999999999999999", "", 0, false},
		{"too large for Duration", "9223372036854776", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen(t, false)
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			got, gotOK := NewNotifier(discard()).WatchdogInterval()
			if got != tt.want || gotOK != tt.wantOK {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, %v", got, gotOK, tt.want, tt.wantOK)
			}
		})
	}
}

// TestRunWithholds drives Run's liveness check in lock-step: each call to alive blocks
// until the test answers it, and the next call proves the previous round (ping or no
// ping) is finished, so the exact datagrams can be checked without timing assumptions.
func TestRunWithholds(t *testing.T) {
	conn := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "2000") // 1ms interval keeps the test fast
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var logs bytes.Buffer
	n := NewNotifier(slog.New(slog.NewTextHandler(&logs, nil)))

	calls := make(chan chan error)
	alive := func() error {
		answer := make(chan error)
		calls <- answer
		return <-answer
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, alive) }()

	stuck := errors.New("worker heartbeat 2m ago")
	rounds := []struct {
		alive error
		want  string // datagram sent in that round, "" for none
	}{
		{nil, "WATCHDOG=1"},
		{nil, "WATCHDOG=1"},
		{stuck, ""},
		{stuck, ""},
		{nil, "WATCHDOG=1"},
	}
	answer := <-calls
	for i, r := range rounds {
		answer <- r.alive
		answer = <-calls // the next call: round i is complete
		if got := pending(t, conn); got != r.want {
			t.Errorf("round %d (alive=%v): datagram %q, want %q", i, r.alive, got, r.want)
		}
		if got := pending(t, conn); got != "" {
			t.Errorf("round %d: extra datagram %q", i, got)
		}
	}
	cancel()
	for running := true; running; {
		answer <- nil
		select {
		case answer = <-calls:
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			running = false
		}
	}
	for _, want := range []string{"withholding systemd watchdog ping", "worker heartbeat 2m ago", "resuming systemd watchdog pings"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// FuzzWatchdogEnv checks that any WATCHDOG_USEC/WATCHDOG_PID pair yields either no
// watchdog or a positive timeout equal to the decimal value, and never panics.
func FuzzWatchdogEnv(f *testing.F) {
	self := strconv.Itoa(os.Getpid())
	for _, seed := range [][2]string{
		{"30000000", ""}, {"30000000", self}, {"30000000", "1"}, {"0", ""}, {"-1", ""},
		{"", self}, {"1e6", ""}, {" 5", ""}, {"+5", ""}, {"9223372036854775807", ""},
		{"9223372036854775", ""}, {"5", "x"}, {"5", "-" + self},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, usec, pid string) {
		got := watchdogFromEnv(discard(), usec, pid)
		if got == 0 {
			return
		}
		want, err := strconv.ParseInt(usec, 10, 64)
		if err != nil || want <= 0 || got != time.Duration(want)*time.Microsecond {
			t.Errorf("watchdogFromEnv(%q, %q) = %v, want 0 or %s µs", usec, pid, got, usec)
		}
		if pid != "" && pid != self {
			if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
				t.Errorf("watchdogFromEnv(%q, %q) = %v for a foreign pid", usec, pid, got)
			}
		}
	})
}
