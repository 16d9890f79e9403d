package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inferq/inferq/internal/logkey"
	"golang.org/x/sys/unix"
)

// sendTimeout bounds each datagram send; systemd reads its notify socket promptly, so
// hitting it means the service manager is stuck and waiting longer would not help.
const sendTimeout = time.Second

// ErrNotifyFailed is wrapped by every error from sending a notification, so callers can
// tell a failed notification (usually logged and ignored) from other errors.
var ErrNotifyFailed = errors.New("systemd notification failed")

// Notifier sends sd_notify(3) messages to the service manager. The zero value is not
// usable; create one with NewNotifier.
type Notifier struct {
	logger   *slog.Logger
	addr     *net.UnixAddr // nil: notification disabled
	watchdog time.Duration // WATCHDOG_USEC; 0: watchdog disabled
}

// NewNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment.
// It never fails: a missing or unusable NOTIFY_SOCKET yields a Notifier whose methods do
// nothing, and an unusable watchdog setting disables the watchdog. Problems are logged.
func NewNotifier(logger *slog.Logger) *Notifier {
	n := &Notifier{logger: logger}
	socket := os.Getenv("NOTIFY_SOCKET")
	switch {
	case socket == "":
		return n
	case strings.HasPrefix(socket, "/") || (strings.HasPrefix(socket, "@") && len(socket) > 1):
		// The net package maps a leading "@" to the abstract namespace.
		n.addr = &net.UnixAddr{Name: socket, Net: "unixgram"}
	default:
		logger.Warn("unsupported NOTIFY_SOCKET, systemd notification disabled", "notify_socket", socket)
		return n
	}
	n.watchdog = watchdogFromEnv(logger, os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"))
	logger.Debug("systemd notification enabled", "notify_socket", socket, "watchdog", n.watchdog)
	return n
}

func watchdogFromEnv(logger *slog.Logger, usec, pid string) time.Duration {
	if usec == "" {
		return 0
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			logger.Warn("invalid WATCHDOG_PID, watchdog disabled", "watchdog_pid", pid)
			return 0
		}
		if p != os.Getpid() {
			// The watchdog belongs to another process (our parent); not an error.
			return 0
		}
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || u <= 0 || u > int64(time.Duration(1<<63-1)/time.Microsecond) {
		logger.Warn("invalid WATCHDOG_USEC, watchdog disabled", "watchdog_usec", usec)
		return 0
	}
	return time.Duration(u) * time.Microsecond
}

// Enabled reports whether NOTIFY_SOCKET named a usable socket.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// WatchdogInterval returns how often to send WATCHDOG=1 (half of WATCHDOG_USEC) and
// whether systemd expects watchdog pings from this process at all.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n.addr == nil || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog / 2, true
}

// Ready sends READY=1: start-up is complete (or a reload finished).
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Status sends STATUS=text, shown by systemctl status. Line breaks become spaces.
func (n *Notifier) Status(text string) error {
	return n.send("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text))
}

// Stopping sends STOPPING=1: shutdown has begun.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Reloading sends RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload since
// systemd 253, ignored by older versions). Send Ready when the reload is done.
func (n *Notifier) Reloading() error {
	if n.addr == nil {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("cannot read monotonic clock: %w: %w", ErrNotifyFailed, err)
	}
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10))
}

// Watchdog sends WATCHDOG=1. Prefer Run, which sends it only while the daemon is alive.
func (n *Notifier) Watchdog() error { return n.send("WATCHDOG=1") }

// ExtendTimeout sends EXTEND_TIMEOUT_USEC: the current start-up or shutdown phase needs
// up to d more before systemd gives up (for example a long queue recovery at Open).
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return n.send("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

func (n *Notifier) send(msg string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("cannot connect to NOTIFY_SOCKET %q: %w: %w", n.addr.Name, ErrNotifyFailed, err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return fmt.Errorf("cannot set notify deadline: %w: %w", ErrNotifyFailed, err)
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("cannot send to NOTIFY_SOCKET %q: %w: %w", n.addr.Name, ErrNotifyFailed, err)
	}
	return nil
}

// Run sends WATCHDOG=1 every WatchdogInterval while alive returns nil, and blocks until
// ctx is done; it then returns nil. alive is the daemon's liveness check (its loops
// heartbeat); it is called from Run's goroutine only, once per interval. When alive
// returns an error the ping is withheld and the error logged, so that systemd restarts
// the daemon after WatchdogSec. Send errors are logged and do not stop Run. Without a
// watchdog Run only waits for ctx.
func (n *Notifier) Run(ctx context.Context, alive func() error) error {
	interval, ok := n.WatchdogInterval()
	if !ok {
		<-ctx.Done()
		return nil
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	withheld := false
	for ctx.Err() == nil {
		if err := alive(); err != nil {
			n.logger.Error("daemon not alive, withholding systemd watchdog ping", logkey.Err, err)
			withheld = true
		} else {
			if withheld {
				n.logger.Info("daemon alive again, resuming systemd watchdog pings")
				withheld = false
			}
			if err := n.Watchdog(); err != nil {
				n.logger.Warn("cannot send systemd watchdog ping", logkey.Err, err)
			}
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
	return nil
}
