package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inferq/inferq/internal/textutil"
	"github.com/inferq/inferq/transport/mqtt"
)

// inferq fleet reads every box's retained availability and health
// (<prefix>/+/available, <prefix>/+/health) and shows them as one table, worst first.
// Fleet folds the messages in; Rows is a pure function of what it holds and the time.

// Verdicts of a box in the fleet view, worst first by verdictRank.
const (
	VerdictOffline  = "offline"  // the broker published its will: the box died or lost its network
	VerdictFailing  = "failing"  // online, health failing: not processing jobs
	VerdictStale    = "stale"    // online, but no health for staleIntervals intervals
	VerdictUnknown  = "unknown"  // availability or health never seen
	VerdictStopped  = "stopped"  // stopped cleanly
	VerdictDegraded = "degraded" // online and working, something needs a look
	VerdictOK       = "ok"
)

var verdictRank = map[string]int{VerdictOK: 0, VerdictDegraded: 1, VerdictStopped: 2, VerdictUnknown: 3,
	VerdictStale: 4, VerdictFailing: 5, VerdictOffline: 6}

// staleIntervals is how many health intervals without a health document make a box stale.
const staleIntervals = 3

// defaultHealthInterval is assumed for health documents that do not say theirs.
const defaultHealthInterval = 30 * time.Second

// FleetRow is one box in the fleet view (and in inferq fleet --json).
type FleetRow struct {
	Node string `json:"node"`
	// Verdict sums the box up in one word (Verdict* constants); Healthy is true for ok
	// and degraded (working), false for the rest.
	Verdict string `json:"verdict"`
	Healthy bool   `json:"healthy"`
	// Availability is online, stopped, offline or "" (never seen), with the boot id and
	// sequence of the connection it belongs to.
	Availability string   `json:"availability"`
	BootID       string   `json:"boot_id,omitempty"`
	AvailSeq     uint64   `json:"availability_seq,omitempty"`
	Status       string   `json:"status,omitempty"` // of the last health document
	Problems     []string `json:"problems,omitempty"`
	Stale        bool     `json:"stale"`
	HealthSeq    uint64   `json:"health_seq,omitempty"`
	QueueDepth   int      `json:"queue_depth"`
	OldestAgeS   float64  `json:"oldest_age_s"`
	Dead         int      `json:"dead"`
	Outbox       int      `json:"outbox"`
	JobsPerMin   int      `json:"jobs_per_min"`
	P50MS        float64  `json:"p50_ms"`
	P99MS        float64  `json:"p99_ms"`
	Model        string   `json:"model,omitempty"`
	ModelSHA256  string   `json:"model_sha256,omitempty"`
	Version      string   `json:"version,omitempty"`
	// LastSeen is when the box last said something: the time in its last health
	// document when that came retained (kept by the broker, perhaps long ago), else when
	// it arrived.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// fleetBox is what Fleet knows of one box.
type fleetBox struct {
	avail    mqtt.Availability
	hasAvail bool
	health   *Health
	seen     time.Time // of the health document (see FleetRow.LastSeen)
}

// Fleet folds availability and health messages into a view of the fleet.
type Fleet struct {
	prefix string
	boxes  map[string]*fleetBox
}

// NewFleet makes an empty view of the boxes publishing under prefix.
func NewFleet(prefix string) *Fleet { return &Fleet{prefix: prefix, boxes: map[string]*fleetBox{}} }

// Filters are the subscriptions the view needs.
func (f *Fleet) Filters() []string {
	return []string{f.prefix + "/+/available", f.prefix + "/+/health"}
}

func (f *Fleet) box(node string) *fleetBox {
	b, ok := f.boxes[node]
	if !ok {
		b = &fleetBox{}
		f.boxes[node] = b
	}
	return b
}

// Apply takes one message received at now. Messages that are not availability or
// health, or do not parse, are ignored; so are messages older (by their sequence
// number) than what the view already holds for that box: a delayed will, a retained
// message of an earlier run.
func (f *Fleet) Apply(m mqtt.Message, now time.Time) {
	rest, ok := strings.CutPrefix(m.Topic, f.prefix+"/")
	if !ok {
		return
	}
	node, kind, ok := strings.Cut(rest, "/")
	if !ok || node == "" || len(m.Payload) == 0 {
		return
	}
	switch kind {
	case "available":
		a, ok := mqtt.ParseAvailability(m.Payload)
		if !ok {
			return
		}
		b := f.box(node)
		// With the same number, a death ends the birth it belongs to.
		if b.hasAvail && a.Seq != 0 && (a.Seq < b.avail.Seq || (a.Seq == b.avail.Seq && a.State == mqtt.Online)) {
			return
		}
		b.avail, b.hasAvail = a, true
	case "health":
		var h Health
		if err := json.Unmarshal(m.Payload, &h); err != nil {
			return
		}
		b := f.box(node)
		if b.health != nil && h.Seq != 0 && h.Seq <= b.health.Seq {
			return
		}
		b.health, b.seen = &h, now
		if m.Retained && !h.Time.IsZero() {
			b.seen = h.Time
		}
	}
}

// Rows is the view at now, worst first: by verdict, then the oldest backlog, then name.
func (f *Fleet) Rows(now time.Time) []FleetRow {
	rows := make([]FleetRow, 0, len(f.boxes))
	for node, b := range f.boxes {
		rows = append(rows, fleetRow(node, b, now))
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if ra, rb := verdictRank[a.Verdict], verdictRank[b.Verdict]; ra != rb {
			return ra > rb
		}
		if a.OldestAgeS != b.OldestAgeS {
			return a.OldestAgeS > b.OldestAgeS
		}
		return a.Node < b.Node
	})
	return rows
}

func fleetRow(node string, b *fleetBox, now time.Time) FleetRow {
	r := FleetRow{Node: node}
	if b.hasAvail {
		r.Availability, r.BootID, r.AvailSeq = b.avail.State, b.avail.BootID, b.avail.Seq
	}
	if h := b.health; h != nil {
		interval := time.Duration(h.IntervalS * float64(time.Second))
		if interval <= 0 {
			interval = defaultHealthInterval
		}
		seen := b.seen.UTC()
		r.LastSeen = &seen
		r.Stale = now.Sub(b.seen) > staleIntervals*interval
		r.Status, r.Problems, r.HealthSeq = h.Status, h.Problems, h.Seq
		r.QueueDepth, r.OldestAgeS, r.Dead, r.Outbox = h.Queue.Depth, h.Queue.OldestAgeS, h.Queue.Dead, h.Outbox.Depth
		r.JobsPerMin, r.P50MS, r.P99MS = h.Jobs.PerMinute, h.Jobs.P50MS, h.Jobs.P99MS
		r.Model, r.ModelSHA256, r.Version = h.Model.Name, h.Model.SHA256, h.Version
	}
	switch {
	case r.Availability == mqtt.Offline:
		r.Verdict = VerdictOffline
	case r.Availability == mqtt.Stopped:
		r.Verdict = VerdictStopped
	case b.health == nil || !b.hasAvail:
		r.Verdict = VerdictUnknown
	case r.Stale:
		r.Verdict = VerdictStale
	case r.Status == HealthFailing:
		r.Verdict = VerdictFailing
	case r.Status == HealthDegraded:
		r.Verdict = VerdictDegraded
	case r.Status == HealthOK:
		r.Verdict = VerdictOK
	default:
		r.Verdict = VerdictUnknown
	}
	r.Healthy = r.Verdict == VerdictOK || r.Verdict == VerdictDegraded
	return r
}

// FleetUnwell counts the boxes that are not online and healthy; with strict, degraded
// boxes count too.
func FleetUnwell(rows []FleetRow, strict bool) int {
	n := 0
	for _, r := range rows {
		if !r.Healthy || (strict && r.Verdict != VerdictOK) {
			n++
		}
	}
	return n
}

// WriteFleetTable writes rows as an aligned table, one line per box.
func WriteFleetTable(w io.Writer, rows []FleetRow, now time.Time) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERDICT\tAVAIL\tSTATUS\tQUEUE\tOLDEST\tDEAD\tOUTBOX\tJOBS/MIN\tP50\tP99\tMODEL\tVERSION\tLAST SEEN\tPROBLEMS")
	for _, r := range rows {
		seen := "never"
		if r.LastSeen != nil {
			seen = age(now.Sub(*r.LastSeen)) + " ago"
		}
		model := "-"
		if r.Model != "" {
			model = r.Model + "@" + short(r.ModelSHA256, 12)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(r.Node), r.Verdict, dash(cell(r.Availability)), dash(cell(r.Status)), r.QueueDepth,
			age(time.Duration(r.OldestAgeS*float64(time.Second))), r.Dead, r.Outbox, r.JobsPerMin,
			msString(r.P50MS), msString(r.P99MS), cell(model), dash(cell(r.Version)), seen,
			textutil.ClipMessage(printable(strings.Join(r.Problems, "; "))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line == "" {
			break
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// cell is an untrusted string (it came from the broker) fit for one table cell: cut,
// and without control characters (tabs would shift columns, escapes steer terminals).
func cell(s string) string { return textutil.Clip(printable(s)) }

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// age shows a duration the way people read ages: 0s, 42s, 3m, 5h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 100*time.Second:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 100*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func msString(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", v)
}
