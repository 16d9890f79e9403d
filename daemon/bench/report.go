package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// HeadlinePrefix starts the last line of WriteText, followed by the ratio daemon /
// invoke only: "headline daemon/invoke-only 0.912".
const HeadlinePrefix = "headline daemon/invoke-only "

// WriteText prints res as a table, with the headline line last.
func WriteText(w io.Writer, res *Result) error {
	var b strings.Builder
	m := res.Model
	fmt.Fprintf(&b, "model %s", m.Name)
	if m.FLOPs > 0 {
		fmt.Fprintf(&b, " (generated, %.0f MFLOPs)", float64(m.FLOPs)/1e6)
	}
	fmt.Fprintf(&b, ", %s, input %s, %s %s, decoder %s, threads %d\n", m.Kind, m.Input, m.Runtime, m.Version, m.Decoder, res.Threads)
	src := "given"
	if res.Images.Generated {
		src = "generated 640x480"
	}
	fmt.Fprintf(&b, "inputs: %d %s JPEGs, %.0f KB mean; %d rounds of each mode, interleaved, %d jobs per round\n",
		res.Images.Count, src, float64(res.Images.MeanBytes)/1024, res.Rounds, res.Jobs)
	fmt.Fprintf(&b, "%-48s %9s  %-19s %s\n", "jobs/s", "median", "p25-p75", "min-max")
	row := func(name string, s Summary) {
		fmt.Fprintf(&b, "%-48s %9.1f  %-19s %s\n", name, s.Median,
			fmt.Sprintf("[%.1f-%.1f]", s.P25, s.P75), fmt.Sprintf("(%.1f-%.1f)", s.Min, s.Max))
	}
	row("invoke only (the limit; child's invoke time)", res.InvokeOnly)
	row("decode + preprocess (child's times)", res.DecodePreprocess)
	row("sequential decode+invoke (infer.Supervisor)", res.Sequential)
	row("daemon: durable enqueue -> acked result", res.Daemon)
	row("daemon's own child, invoke only (its results)", res.DaemonInvokeOnly)
	row("durable enqueues (control socket, one at a time)", res.Enqueue)
	fmt.Fprintf(&b, "%-48s %9.1f  %-19s %s\n", "resume -> first start, ms (not in daemon rate)", res.ResumeToStartMS.Median,
		fmt.Sprintf("[%.1f-%.1f]", res.ResumeToStartMS.P25, res.ResumeToStartMS.P75),
		fmt.Sprintf("(%.1f-%.1f)", res.ResumeToStartMS.Min, res.ResumeToStartMS.Max))
	fmt.Fprintf(&b, "daemon jobs done %d (each round exactly its own), sequential runs %d, engine restarts %d\n",
		res.DaemonJobs, res.SequentialJobs, res.EngineRestarts)
	fmt.Fprintf(&b, "daemon/sequential %.3f\n", res.DaemonSequential)
	fmt.Fprintf(&b, "headline = daemon/its child's invoke %.3f x its child's invoke/idle invoke %.3f\n", res.DaemonOwnInvoke, res.OwnInvokeIdle)
	if l := res.Latency; l != nil {
		writeLatency(&b, l)
	}
	fmt.Fprintf(&b, "%s%.3f\n", HeadlinePrefix, res.Headline)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLatency(b *strings.Builder, l *LatencyResult) {
	fmt.Fprintf(b, "latency, real binary, %.1f images/s per source, %d per source, broker %s (ms):\n", l.Rate, l.Jobs, l.Broker)
	q := func(x Quantiles) string {
		return fmt.Sprintf("p50 %.1f  p90 %.1f  p99 %.1f  max %.1f", x.P50, x.P90, x.P99, x.Max)
	}
	for _, s := range l.Sources {
		fmt.Fprintf(b, "  %-5s from %-7s end to end   %s\n", s.Source, s.From, q(s.EndToEnd))
		fmt.Fprintf(b, "  %-5s engine (decode..post)   %s\n", s.Source, q(s.Engine))
		fmt.Fprintf(b, "  %-5s added (not engine)      %s\n", s.Source, q(s.Added))
		fmt.Fprintf(b, "  %-5s   of which p50/p99: intake %.1f/%.1f, wait %.1f/%.1f, run other %.1f/%.1f, publish %.1f/%.1f\n",
			s.Source, s.Intake.P50, s.Intake.P99, s.Wait.P50, s.Wait.P99, s.RunOther.P50, s.RunOther.P99, s.Publish.P50, s.Publish.P99)
	}
}

// WriteJSON prints res as one indented JSON document.
func WriteJSON(w io.Writer, res *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// ParseHeadline returns the ratio of a headline line.
func ParseHeadline(line string) (float64, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(HeadlinePrefix)+" ")
	if !ok {
		return 0, fmt.Errorf("not a headline line: %q", line)
	}
	return strconv.ParseFloat(rest, 64)
}
