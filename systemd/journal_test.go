package systemd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

func captureHandler(level slog.Level, fail bool, fallback slog.Handler) (*JournalHandler, *[]sent) {
	var got []sent
	h := NewJournalHandler("inferq", &slog.HandlerOptions{Level: level}, fallback)
	h.send = func(msg string, p journal.Priority, vars map[string]string) error {
		if fail {
			return errors.New("journald refused")
		}
		got = append(got, sent{msg, p, vars})
		return nil
	}
	return h, &got
}

func TestJournalHandlerPriorities(t *testing.T) {
	h, got := captureHandler(slog.LevelDebug, false, nil)
	log := slog.New(h)
	for _, tt := range []struct {
		log  func(string, ...any)
		want journal.Priority
	}{
		{log.Debug, journal.PriDebug},
		{log.Info, journal.PriInfo},
		{log.Warn, journal.PriWarning},
		{log.Error, journal.PriErr},
	} {
		*got = nil
		tt.log("m")
		if len(*got) != 1 || (*got)[0].prio != tt.want {
			t.Errorf("sent %+v, want priority %d", *got, tt.want)
		}
	}
	*got = nil
	h2, got2 := captureHandler(slog.LevelWarn, false, nil)
	slog.New(h2).Info("dropped")
	if len(*got2) != 0 {
		t.Errorf("info below a warn level was sent: %+v", *got2)
	}
}

func TestJournalHandlerFields(t *testing.T) {
	h, got := captureHandler(slog.LevelInfo, false, nil)
	log := slog.New(h).With("component", "queue").WithGroup("disk")
	log.Error("disk nearly full", "free-bytes", 42, slog.Group("ballast", "size", 7), "err", errors.New("boom"),
		"message", "shadow", "9lives", true, "", "x")
	if len(*got) != 1 {
		t.Fatalf("sent %d records", len(*got))
	}
	s := (*got)[0]
	want := map[string]string{
		"COMPONENT": "queue", "DISK_FREE_BYTES": "42", "DISK_BALLAST_SIZE": "7", "DISK_ERR": "boom",
		"DISK_MESSAGE": "shadow", "DISK_F9LIVES": "true", "SYSLOG_IDENTIFIER": "inferq",
	}
	for k, v := range want {
		if s.vars[k] != v {
			t.Errorf("field %s = %q, want %q (all: %v)", k, s.vars[k], v, s.vars)
		}
	}
	if s.msg != "disk nearly full" || s.prio != journal.PriErr {
		t.Errorf("message %q priority %d", s.msg, s.prio)
	}
	h3, got3 := captureHandler(slog.LevelInfo, false, nil)
	slog.New(h3).Info("m", "message", "x", "9", "y")
	if v := (*got3)[0].vars; v["ATTR_MESSAGE"] != "x" || v["F9"] != "y" {
		t.Errorf("reserved and digit-led keys: %v", v)
	}
}

// A record journald refuses goes to the fallback handler.
func TestJournalHandlerFallback(t *testing.T) {
	var buf bytes.Buffer
	h, _ := captureHandler(slog.LevelInfo, true, slog.NewJSONHandler(&buf, nil))
	slog.New(h).With("job_id", "j1").Error("cannot ack")
	if !strings.Contains(buf.String(), `"msg":"cannot ack"`) || !strings.Contains(buf.String(), `"job_id":"j1"`) {
		t.Fatalf("fallback got %q", buf.String())
	}
	if err := h.Handle(context.Background(), slog.Record{}); err != nil {
		t.Fatalf("with a fallback Handle returns its result: %v", err)
	}
}
