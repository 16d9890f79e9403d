package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultMosquitto is Debian's Mosquitto broker.
const DefaultMosquitto = "/usr/sbin/mosquitto"

// mosquitto is a broker started for a latency run, on a free loopback port.
type mosquitto struct {
	cmd     *exec.Cmd
	done    chan struct{}
	url     string
	logPath string
}

// startMosquitto starts bin with a generated configuration in dir: anonymous access on
// 127.0.0.1, TCP_NODELAY (without it QoS 1 throughput drops about 60-fold), persistence
// in dir, and `user root` when run as root (Mosquitto otherwise drops to its own user
// and cannot write dir).
func startMosquitto(bin, dir string) (*mosquitto, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create mosquitto dir: %w", err)
	}
	var c strings.Builder
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", data)
	fmt.Fprintf(&c, "log_dest stderr\nlog_type error\nlog_type warning\n")
	if os.Geteuid() == 0 {
		c.WriteString("user root\n")
	}
	fmt.Fprintf(&c, "allow_anonymous true\nlistener %d 127.0.0.1\nset_tcp_nodelay true\n", port)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o600); err != nil {
		return nil, fmt.Errorf("cannot write mosquitto config: %w", err)
	}
	m := &mosquitto{done: make(chan struct{}), url: fmt.Sprintf("tcp://127.0.0.1:%d", port),
		logPath: filepath.Join(dir, "mosquitto.log")}
	lf, err := os.Create(m.logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create mosquitto log: %w", err)
	}
	defer lf.Close() // the child has its own descriptor
	m.cmd = exec.Command(bin, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = lf, lf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start mosquitto: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("mosquitto exited at start-up: %s", tailFile(m.logPath))
		default:
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("mosquitto does not accept on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the broker (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (m *mosquitto) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	a, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("cannot find a free port")
	}
	return a.Port, nil
}

// tailFile returns the last lines of a log file, for an error message.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
