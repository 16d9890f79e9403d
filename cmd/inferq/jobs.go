package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/queue"
)

// runJobs is `inferq jobs`: the held jobs, highest priority first.
func runJobs(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	client := clientFlag(fs)
	state := fs.String("state", "", "only jobs in this state: ready, leased, delayed or dead")
	source := fs.String("source", "", "only jobs from this source")
	limit := fs.Int("limit", 100, "at most this many")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	jobs, err := c.Jobs(ctx, control.JobsQuery{State: *state, Source: *source, Limit: *limit})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdout, jobs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPRIO\tSOURCE\tATTEMPTS\tAGE\tLAST ERROR")
	for _, j := range jobs {
		age := ""
		if j.EnqueuedAt != nil {
			age = time.Since(*j.EnqueuedAt).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", j.ID, j.State, j.Priority, j.Source, j.Attempts, age, cut(j.LastError, 60))
	}
	return tw.Flush()
}

// runJob is `inferq job ID`: one job, or an error (exit 1) for an unknown id.
func runJob(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	client := clientFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	j, err := c.Job(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdout, j)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	line("id", j.ID)
	line("state", j.State)
	if j.State != "done" {
		line("priority", strconv.Itoa(j.Priority))
		line("source", j.Source)
		line("attempts", strconv.Itoa(j.Attempts))
		line("image", fmt.Sprintf("%d bytes, sha256 %s", j.ImageBytes, j.ImageSHA))
	}
	line("enqueued", ts(j.EnqueuedAt))
	line("deadline", ts(j.Deadline))
	line("due", ts(j.Due))
	line("lease until", ts(j.LeaseUntil))
	line("last error", j.LastError)
	line("dead reason", j.DeadReason)
	line("died", ts(j.DiedAt))
	line("done", ts(j.DoneAt))
	for k, v := range j.Metadata {
		line("meta "+k, v)
	}
	if j.Result != nil {
		line("result", resultLine(j.Result))
	} else if j.State == "done" {
		line("result", "no longer kept (queue.results_kept, result_max_age)")
	}
	return tw.Flush()
}

// resultLine is a kept result document in one line: its status and the model's top answers.
func resultLine(doc any) string {
	b, err := json.Marshal(doc)
	var r daemon.ResultMessage
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return fmt.Sprintf("cannot read: %v", err)
	}
	parts := []string{r.Status}
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	if o := r.Output; o != nil {
		for i, c := range o.Classes {
			if i == 3 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", cmp.Or(c.Label, strconv.Itoa(c.Index)), c.Score))
		}
		for i, d := range o.Detections {
			if i == 3 {
				parts = append(parts, fmt.Sprintf("(%d detections)", len(o.Detections)))
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.2f at %.0f,%.0f", cmp.Or(d.Label, strconv.Itoa(d.Class)), d.Score, d.Box.XMin, d.Box.YMin))
		}
	}
	parts = append(parts, fmt.Sprintf("(run %.1f ms; --json for the whole document)", r.Timings.RunMS))
	return strings.Join(parts, ", ")
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cut shortens s to n runes for a table cell.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// runPrioritize is `inferq prioritize ID N`.
func runPrioritize(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("prioritize", flag.ContinueOnError)
	client := clientFlag(fs)
	pos, err := parseFlags(fs, args, 2)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[1])
	if err == nil {
		err = queue.CheckPriority(n)
	}
	if err != nil {
		return fmt.Errorf("%w: prioritize ID N: priority %q: want %d..%d", errUsage, pos[1], queue.MinPriority, queue.MaxPriority)
	}
	c, err := client()
	if err != nil {
		return err
	}
	if err := c.SetPriority(ctx, pos[0], n); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: priority %d\n", pos[0], n)
	return nil
}

// runCancel is `inferq cancel ID`.
func runCancel(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	client := clientFlag(fs)
	pos, err := parseFlags(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	if err := c.Cancel(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: cancelled\n", pos[0])
	return nil
}

// runEnqueue is `inferq enqueue FILE...`: each file becomes a job (durable when this
// returns), the "reprocess" action.
func runEnqueue(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	client := clientFlag(fs)
	prio := fs.Int("priority", 0, "priority 0..9")
	source := fs.String("source", "cli", "source name")
	id := fs.String("id", "", "job id (one file only; default: generated)")
	asJSON := fs.Bool("json", false, "print JSON")
	files, err := parseFlags(fs, args, -1)
	if err != nil {
		return err
	}
	if len(files) == 0 || *id != "" && len(files) > 1 {
		return fmt.Errorf("%w: enqueue FILE... [--priority N] [--source S] [--id ID (one file)]", errUsage)
	}
	c, err := client()
	if err != nil {
		return err
	}
	var out []control.EnqueueResponse
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		resp, err := c.Enqueue(ctx, control.EnqueueRequest{ID: *id, Source: *source, Priority: *prio}, fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, resp)
		if !*asJSON {
			if resp.Duplicate {
				fmt.Fprintf(stdout, "%s: already held as %s (%s)\n", f, resp.ID, resp.State)
			} else {
				fmt.Fprintf(stdout, "%s: queued as %s\n", f, resp.ID)
			}
		}
	}
	if *asJSON {
		return writeJSONOut(stdout, out)
	}
	return nil
}

// runPause is `inferq pause|resume [intake|worker|all]`.
func runPause(ctx context.Context, op string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	client := clientFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args, -1)
	if err != nil {
		return err
	}
	what := "all"
	switch len(pos) {
	case 0:
	case 1:
		what = pos[0]
	default:
		return fmt.Errorf("%w: %s [intake|worker|all]", errUsage, op)
	}
	c, err := client()
	if err != nil {
		return err
	}
	st, err := c.Pause(ctx, what, op == "pause")
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdout, st)
	}
	fmt.Fprintf(stdout, "intake %s, worker %s\n", pausedWord(st.Intake), pausedWord(st.Worker))
	return nil
}

func pausedWord(p bool) string {
	if p {
		return "paused"
	}
	return "running"
}
