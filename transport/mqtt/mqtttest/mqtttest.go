// Package mqtttest starts a real Mosquitto broker for tests.
//
// Start writes a generated configuration into a per-test directory, runs
// /usr/sbin/mosquitto on a free 127.0.0.1 port, waits until the port accepts
// connections and registers a cleanup that stops the broker. Stop, Kill and
// Restart keep the port and the persistence directory, so a restarted broker
// still holds retained messages and persistent sessions saved at shutdown.
//
// When Mosquitto is not installed the test is skipped, or fails when the
// environment variable INFERQ_REQUIRE_EXTERNAL is "1" (make test and CI set it).
//
// Typical use:
//
//	b := mqtttest.Start(t, mqtttest.Options{})          // anonymous, tcp://127.0.0.1:<port>
//	cfg.Brokers = []string{b.URL()}
//	sub := b.Subscribe(t, "-t", "inferq/box1/#", "-q", "1") // Debian's mosquitto_sub -v
//	b.Publish(t, "-t", "inferq/box1/ingest/cam1", "-q", "1", "-f", "img.jpg")
//	sub.WaitFor(t, "inferq/box1/available online", 10*time.Second)
//	b.Stop(); b.Start()  // or b.Restart(); b.Kill() for kill -9
//
// With passwords: Options{Users: map[string]string{"inferq": "secret"}}.
// With TLS: certs := mqtttest.GenerateCerts(t) and
// Options{TLS: &mqtttest.TLS{CAFile: certs.CAFile, CertFile: certs.ServerCertFile,
// KeyFile: certs.ServerKeyFile, RequireClientCert: true}}, then b.TLSURL().
package mqtttest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

// Binary is the Mosquitto broker used by Start.
const Binary = "/usr/sbin/mosquitto"

// TLS configures an additional TLS listener.
type TLS struct {
	CAFile, CertFile, KeyFile string
	// RequireClientCert makes the listener demand a client certificate
	// signed by CAFile (mutual TLS).
	RequireClientCert bool
}

// Options configures the broker. The zero value gives an anonymous plain TCP
// listener with persistence.
type Options struct {
	// Users, when not empty, turns off anonymous access and writes a
	// password file (with mosquitto_passwd) holding these user names and
	// passwords.
	Users map[string]string
	// TLS, when not nil, adds a TLS listener on a second free port
	// (Broker.TLSAddr).
	TLS *TLS
	// Extra is appended verbatim to the generated configuration.
	Extra string
}

// Broker is a running (or stopped) Mosquitto process.
type Broker struct {
	t       testing.TB
	dir     string
	conf    string
	logPath string
	// Addr is host:port of the plain TCP listener.
	Addr string
	// TLSAddr is host:port of the TLS listener, "" without Options.TLS.
	TLSAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Require skips the test when the named external programs are missing, or
// fails it when INFERQ_REQUIRE_EXTERNAL=1 (testenv.Program).
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		testenv.Program(t, p)
	}
}

// Start starts a broker and registers its cleanup with t.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	Require(t, Binary)
	dir := t.TempDir()
	b := &Broker{t: t, dir: dir, conf: filepath.Join(dir, "mosquitto.conf"), logPath: filepath.Join(dir, "mosquitto.log")}
	b.Addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(FreePort(t)))
	if opts.TLS != nil {
		b.TLSAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(FreePort(t)))
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatalf("cannot create persistence dir: %v", err)
	}
	var c strings.Builder
	fmt.Fprintf(&c, "per_listener_settings false\n")
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", filepath.Join(dir, "data"))
	fmt.Fprintf(&c, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n")
	if os.Geteuid() == 0 {
		fmt.Fprintf(&c, "user root\n")
	}
	if len(opts.Users) > 0 {
		Require(t, "mosquitto_passwd")
		pw := filepath.Join(dir, "passwd")
		names := make([]string, 0, len(opts.Users))
		for u := range opts.Users {
			names = append(names, u)
		}
		sort.Strings(names)
		for i, u := range names {
			args := []string{"-b", pw, u, opts.Users[u]}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("cannot write password file: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		fmt.Fprintf(&c, "allow_anonymous true\n")
	}
	_, port, _ := net.SplitHostPort(b.Addr)
	fmt.Fprintf(&c, "listener %s 127.0.0.1\nset_tcp_nodelay true\n", port)
	if opts.TLS != nil {
		_, tport, _ := net.SplitHostPort(b.TLSAddr)
		fmt.Fprintf(&c, "listener %s 127.0.0.1\nset_tcp_nodelay true\ncafile %s\ncertfile %s\nkeyfile %s\n",
			tport, opts.TLS.CAFile, opts.TLS.CertFile, opts.TLS.KeyFile)
		if opts.TLS.RequireClientCert {
			fmt.Fprintf(&c, "require_certificate true\n")
		}
	}
	c.WriteString(opts.Extra)
	c.WriteString("\n")
	if err := os.WriteFile(b.conf, []byte(c.String()), 0o600); err != nil {
		t.Fatalf("cannot write mosquitto config: %v", err)
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			if out, err := os.ReadFile(b.logPath); err == nil {
				t.Logf("mosquitto log:\n%s", out)
			}
		}
	})
	b.start()
	return b
}

// URL returns tcp://Addr.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// TLSURL returns ssl://TLSAddr.
func (b *Broker) TLSURL() string { return "ssl://" + b.TLSAddr }

// Dir returns the broker's working directory (config, log, persistence).
func (b *Broker) Dir() string { return b.dir }

// Log returns what the broker logged so far.
func (b *Broker) Log() string {
	out, _ := os.ReadFile(b.logPath)
	return string(out)
}

func (b *Broker) start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		b.t.Fatalf("mosquitto already running")
	}
	lf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.t.Fatalf("cannot open mosquitto log: %v", err)
	}
	cmd := exec.Command(Binary, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		b.t.Fatalf("cannot start mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.cmd, b.done, b.log = cmd, done, lf
	addrs := []string{b.Addr}
	if b.TLSAddr != "" {
		addrs = append(addrs, b.TLSAddr)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-done:
				out, _ := os.ReadFile(b.logPath)
				b.cmd = nil
				b.t.Fatalf("mosquitto exited at start-up: %v\n%s", cmd.ProcessState, out)
			default:
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("mosquitto does not accept on %s: %v\n%s", a, err, b.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop stops the broker with SIGTERM (it saves its persistence) and waits.
func (b *Broker) Stop() { b.stop(syscall.SIGTERM) }

// Kill stops the broker with SIGKILL (nothing saved since the last autosave).
func (b *Broker) Kill() { b.stop(syscall.SIGKILL) }

func (b *Broker) stop(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.log.Close()
	b.cmd, b.done, b.log = nil, nil, nil
}

// Start starts a stopped broker again on the same ports with the same
// persistence directory.
func (b *Broker) Start() {
	b.t.Helper()
	b.start()
}

// Restart stops the broker gracefully and starts it again on the same
// ports with the same persistence directory.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Running reports whether the broker process is running.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ErrTimeout is returned by Sub.Next when no message came in time.
var ErrTimeout = errors.New("timeout")

// Sub is a running mosquitto_sub process printing "topic payload" lines.
type Sub struct {
	cmd   *exec.Cmd
	lines chan string
	buf   *testenv.Buffer
}

// Subscribe runs Debian's mosquitto_sub -v on the broker's plain listener
// with extra arguments (e.g. "-t", "topic", "-q", "1") and returns its
// output lines. The process is killed at cleanup.
func (b *Broker) Subscribe(t testing.TB, args ...string) *Sub {
	t.Helper()
	Require(t, "mosquitto_sub")
	host, port, _ := net.SplitHostPort(b.Addr)
	all := append([]string{"-h", host, "-p", port, "-v"}, args...)
	cmd := exec.Command("mosquitto_sub", all...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("cannot pipe mosquitto_sub: %v", err)
	}
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start mosquitto_sub: %v", err)
	}
	s := &Sub{cmd: cmd, lines: make(chan string, 1024), buf: stderr}
	go func() {
		defer close(s.lines)
		var line []byte
		one := make([]byte, 4096)
		for {
			n, err := stdout.Read(one)
			for _, c := range one[:n] {
				if c == '\n' {
					s.lines <- string(line)
					line = line[:0]
					continue
				}
				line = append(line, c)
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return s
}

// Next returns the next output line ("topic payload") or ErrTimeout.
func (s *Sub) Next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return "", fmt.Errorf("mosquitto_sub exited: %s", s.buf.String())
		}
		return l, nil
	case <-time.After(timeout):
		return "", ErrTimeout
	}
}

// WaitFor reads lines until one equals want, or fails the test after timeout.
func (s *Sub) WaitFor(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("mosquitto_sub: %q not seen within %v; saw %q", want, timeout, seen)
		}
		l, err := s.Next(left)
		if err != nil {
			t.Fatalf("mosquitto_sub: %q not seen: %v; saw %q", want, err, seen)
		}
		if l == want {
			return
		}
		seen = append(seen, l)
	}
}

// Publish runs Debian's mosquitto_pub on the broker's plain listener with
// extra arguments (e.g. "-t", topic, "-q", "1", "-f", file).
func (b *Broker) Publish(t testing.TB, args ...string) {
	t.Helper()
	Require(t, "mosquitto_pub")
	host, port, _ := net.SplitHostPort(b.Addr)
	all := append([]string{"-h", host, "-p", port}, args...)
	if out, err := exec.Command("mosquitto_pub", all...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %q: %v: %s", args, err, out)
	}
}
