// Package systemd tells systemd how inferq is doing, following the sd_notify(3)
// protocol, and holds the unit files that run inferq under systemd.
//
// Notification implements the small part of the protocol inferq needs instead of using
// github.com/coreos/go-systemd/v22/daemon so that every message is bounded by a write
// deadline (a stuck service manager cannot block the daemon: go-systemd's SdNotify
// writes with no deadline), a STATUS text cannot smuggle in other fields, and the
// process environment is never modified. Logging to the journal uses go-systemd's
// journal package (JournalHandler): under systemd, with stderr connected to journald,
// every record is sent natively with its PRIORITY and its attributes as fields, so
// `journalctl -p err` finds errors; a record journald refuses goes to stderr as JSON.
//
// Guarantees:
//
//   - Without NOTIFY_SOCKET every method is a no-op that returns nil: inferq run by hand,
//     in a container or in a test behaves exactly as under systemd, minus the messages.
//   - NOTIFY_SOCKET may name a file-system socket ("/run/systemd/notify") or an abstract
//     one ("@name"). Any other form (for example the "vsock:" addresses of newer systemd)
//     disables notification and is logged once by NewNotifier.
//   - Each message is one datagram sent on its own socket, so a Notifier is safe for
//     concurrent use and messages from one goroutine arrive in the order they were sent.
//     A message either arrives whole or the method returns an error; a send waits at most
//     one second.
//   - Status replaces line breaks with spaces: a status text is always exactly one
//     STATUS= field.
//   - The watchdog is enabled only when WATCHDOG_USEC is a positive integer and
//     WATCHDOG_PID, if set, is this process's id. WatchdogInterval is half of
//     WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends.
//   - Run sends WATCHDOG=1 once at start and then once per interval, each time only if
//     the liveness check passed at that moment. A failing check is logged and the ping is
//     withheld, so systemd restarts a daemon whose own loops stopped. A check that hangs
//     withholds every later ping as well, with the same effect.
//   - NOTIFY_SOCKET is left in the environment. Child processes inherit it, but the unit
//     sets NotifyAccess=main, so systemd ignores anything they might send.
package systemd
