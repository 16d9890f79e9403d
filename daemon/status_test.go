package daemon

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// TestStatusFollowsBrokerOutage: systemd's STATUS= (what `systemctl status` shows)
// says the broker is away within seconds of its going, not at the next health tick.
func TestStatusFollowsBrokerOutage(t *testing.T) {
	rt := requireRuntime(t)
	sockPath := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sockPath)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.Health.Interval = time.Hour // only state changes publish here
	startDaemon(t, cfg)
	next := func(want string, timeout time.Duration) string {
		t.Helper()
		buf := make([]byte, 4096)
		deadline := time.Now().Add(timeout)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no STATUS with %q within %v: %v", want, timeout, err)
			}
			if msg := string(buf[:n]); strings.Contains(msg, "STATUS=") && strings.Contains(msg, want) {
				return msg
			}
		}
	}
	next("ok:", 30*time.Second)
	b.Stop()
	start := time.Now()
	msg := next("broker not connected", 15*time.Second)
	t.Logf("%s after the broker stopped: %s", time.Since(start).Round(100*time.Millisecond), msg)
}
