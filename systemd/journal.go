package systemd

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// JournalHandler is a slog.Handler that writes each record to journald with
// its native protocol (go-systemd's journal package): MESSAGE, PRIORITY from
// the level (error 3, warn 4, info 6, debug 7, so `journalctl -p err` finds
// errors), SYSLOG_IDENTIFIER, and every attribute as a field of its own
// (upper-cased, characters journald refuses as '_', groups joined with '_'),
// so `journalctl -o verbose` and `journalctl JOB_ID=…` see them. No timestamp
// is added: journald stamps every entry. A record journald refuses goes to
// the fallback handler instead, so nothing is lost silently.
type JournalHandler struct {
	level    slog.Leveler
	ident    string
	prefix   string            // group prefix for the next attributes
	fields   map[string]string // attributes given by WithAttrs
	send     func(msg string, p journal.Priority, vars map[string]string) error
	fallback slog.Handler
}

// StderrIsJournal reports whether stderr is connected to journald (systemd
// sets JOURNAL_STREAM for that) and journald's socket is there: then the
// native protocol keeps levels and fields that a text stream would lose.
func StderrIsJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok && journal.Enabled()
}

// NewJournalHandler returns a handler that sends to journald as ident, and to
// fallback what journald refuses.
func NewJournalHandler(ident string, opts *slog.HandlerOptions, fallback slog.Handler) *JournalHandler {
	h := &JournalHandler{ident: ident, send: journal.Send, fallback: fallback, fields: map[string]string{}}
	if opts != nil && opts.Level != nil {
		h.level = opts.Level
	} else {
		h.level = slog.LevelInfo
	}
	return h
}

// Enabled reports whether level is logged.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle sends one record.
func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.fields)+r.NumAttrs()+1)
	for k, v := range h.fields {
		vars[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(vars, h.prefix, a)
		return true
	})
	vars["SYSLOG_IDENTIFIER"] = h.ident
	if err := h.send(r.Message, journalPriority(r.Level), vars); err != nil {
		if h.fallback == nil {
			return err
		}
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := h.clone()
	for _, a := range attrs {
		addField(n.fields, n.prefix, a)
	}
	if n.fallback != nil {
		n.fallback = n.fallback.WithAttrs(attrs)
	}
	return n
}

// WithGroup returns a handler whose later attributes are prefixed by name.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := h.clone()
	n.prefix += fieldName(name) + "_"
	if n.fallback != nil {
		n.fallback = n.fallback.WithGroup(name)
	}
	return n
}

func (h *JournalHandler) clone() *JournalHandler {
	n := *h
	n.fields = make(map[string]string, len(h.fields))
	for k, v := range h.fields {
		n.fields[k] = v
	}
	return &n
}

func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// addField adds attribute a (groups flattened) to vars.
func addField(vars map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		for _, g := range v.Group() {
			addField(vars, p, g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	var s string
	switch v.Kind() {
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	default:
		s = v.String()
	}
	name := prefix + fieldName(a.Key)
	if reservedField(name) {
		name = "ATTR_" + name // MESSAGE, PRIORITY… stay ours
	}
	vars[name] = s
}

// fieldName maps a key to a journal field name: upper case letters, digits
// and '_', not starting with '_' or a digit, at most 64 bytes.
func fieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "F" + s
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func reservedField(name string) bool {
	switch name {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "MESSAGE_ID", "CODE_FILE", "CODE_LINE", "CODE_FUNC":
		return true
	}
	return false
}

// journalFallback is the handler for what journald refuses: JSON on stderr.
func journalFallback(opts *slog.HandlerOptions) slog.Handler {
	return slog.NewJSONHandler(os.Stderr, opts)
}

// NewJournalLogger is the daemon's logger under systemd: native journald, with
// JSON on stderr for what journald refuses.
func NewJournalLogger(ident string, opts *slog.HandlerOptions) *slog.Logger {
	return slog.New(NewJournalHandler(ident, opts, journalFallback(opts)))
}
