package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/daemon/control"
)

// clientFlag adds --socket and --config; the returned func gives a client for the
// control socket: --socket, else the control_socket of --config (a config that cannot
// be read is an error, not a silent fallback), else that of the packaged config, else
// the default.
func clientFlag(fs *flag.FlagSet) func() (*control.Client, error) {
	path := socketFlag(fs)
	return func() (*control.Client, error) {
		p, err := path()
		if err != nil {
			return nil, err
		}
		return control.NewClient(p), nil
	}
}

// socketFlag adds --socket and --config; the returned func gives the control socket
// path as clientFlag describes.
func socketFlag(fs *flag.FlagSet) func() (string, error) {
	sock := fs.String("socket", "", "control socket (default: from --config, else /run/inferq/control.sock)")
	cfgPath := fs.String("config", "", "configuration file to read control_socket from")
	return func() (string, error) {
		if *sock != "" {
			return *sock, nil
		}
		if *cfgPath != "" {
			cfg, err := daemon.LoadConfig(*cfgPath)
			if err != nil {
				return "", err
			}
			return cfg.ControlSocket, nil
		}
		if _, err := os.Stat(defaultConfigPath); err == nil {
			if cfg, err := daemon.LoadConfig(defaultConfigPath); err == nil {
				return cfg.ControlSocket, nil
			}
		}
		return daemon.DefaultConfig().ControlSocket, nil
	}
}

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	client := clientFlag(fs)
	asJSON := fs.Bool("json", false, "print the health document as JSON")
	if _, err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var h daemon.Health
	if err := c.Health(ctx, &h); err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdout, h)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s (inferq %s, up %s)\n", h.Node, h.Version, (time.Duration(h.UptimeS) * time.Second).String())
	fmt.Fprintf(tw, "status\t%s\n", h.Status)
	for _, p := range h.Problems {
		fmt.Fprintf(tw, "  problem\t%s\n", p)
	}
	fmt.Fprintf(tw, "model\t%s sha256:%.12s loaded %s\n", h.Model.Name, h.Model.SHA256, h.Model.LoadedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "queue\t%d ready%s, %d leased, %d delayed, %d dead, oldest %.1fs, %d bytes, full=%v\n",
		h.Queue.Depth, byPriority(h.Queue.ByPriority), h.Queue.Leased, h.Queue.Delayed, h.Queue.Dead, h.Queue.OldestAgeS, h.Queue.Bytes, h.Queue.Full)
	if h.Queue.RecoveredCommits > 0 {
		fmt.Fprintf(tw, "  start	the last run did not stop cleanly (crash, kill or power cut): %d commits applied again from the journal\n", h.Queue.RecoveredCommits)
	}
	fmt.Fprintf(tw, "jobs\t%d done, %d retried, %d dead, %d/min, p50 %.1fms p99 %.1fms\n",
		h.Jobs.Done, h.Jobs.Retried, h.Jobs.Dead, h.Jobs.PerMinute, h.Jobs.P50MS, h.Jobs.P99MS)
	fmt.Fprintf(tw, "engine\t%d restarts, %d crashes, %d timeouts\n", h.Engine.Restarts, h.Engine.Crashes, h.Engine.Timeouts)
	fmt.Fprintf(tw, "outbox\t%d waiting, oldest %.1fs\n", h.Outbox.Depth, h.Outbox.OldestAgeS)
	if h.MQTT != nil {
		fmt.Fprintf(tw, "mqtt\tconnected=%v, %d reconnects, %d published\n", h.MQTT.Connected, h.MQTT.Reconnects, h.MQTT.Published)
	}
	if h.Spool != nil {
		fmt.Fprintf(tw, "spool\t%d taken, %d refused, %d pending\n", h.Spool.Taken, h.Spool.Refused, h.Spool.Pending)
	}
	fmt.Fprintf(tw, "disk\t%d MiB free at %s\n", h.Disk.FreeBytes>>20, h.Disk.Path)
	if h.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", h.LastError)
	}
	return tw.Flush()
}

func runDead(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dead", flag.ContinueOnError)
	client := clientFlag(fs)
	all := fs.Bool("all", false, "every dead job (retry, purge)")
	limit := fs.Int("limit", 100, "list at most this many")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: dead list|retry|purge [--all | ID...]", errUsage)
	}
	op, ids := pos[0], pos[1:]
	c, err := client()
	if err != nil {
		return err
	}
	switch op {
	case "list":
		dead, err := c.Dead(ctx, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSONOut(stdout, dead)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSOURCE\tATTEMPTS\tDIED\tREASON")
		for _, d := range dead {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", d.ID, d.Source, d.Attempts, d.DiedAt.Format(time.RFC3339), d.Reason)
		}
		return tw.Flush()
	case "retry", "purge":
		if *all == (len(ids) > 0) {
			return fmt.Errorf("%w: dead %s: give the ids of dead jobs, or --all", errUsage, op)
		}
		req := control.DeadRequest{IDs: ids, All: *all}
		send := c.RetryDead
		if op == "purge" {
			send = c.PurgeDead
		}
		resp, err := send(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSONOut(stdout, resp)
		}
		fmt.Fprintf(stdout, "%s: %d jobs\n", op, resp.Count)
		if len(ids) > 0 && resp.Count < len(ids) {
			return fmt.Errorf("%s: %d of the %d ids given are not dead jobs", op, len(ids)-resp.Count, len(ids))
		}
		return nil
	default:
		return fmt.Errorf("%w: dead %q: want list, retry or purge", errUsage, op)
	}
}

func runReload(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	client := clientFlag(fs)
	if _, err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	resp, err := c.Reload(ctx)
	if errors.Is(err, control.ErrRefused) {
		return fmt.Errorf("reload refused, the previous model keeps serving: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reloaded: %s sha256:%.12s\n", resp.Model, resp.SHA256)
	for _, s := range resp.RestartNeeded {
		fmt.Fprintf(stdout, "changed, applies after a restart: %s\n", s)
	}
	return nil
}

// runWatch is `inferq watch`: job lifecycle events and health changes as they happen,
// the current health first, until interrupted or the daemon stops.
func runWatch(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	client := clientFlag(fs)
	asJSON := fs.Bool("json", false, "print each item as a JSON line")
	if _, err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	err = c.Watch(ctx, func(it control.WatchItem) error {
		if *asJSON {
			return writeJSONLine(stdout, it)
		}
		_, err := fmt.Fprintln(stdout, watchLine(it))
		return err
	})
	if errors.Is(err, io.EOF) {
		return errors.New("the daemon closed the stream (stopping)")
	}
	return err
}

// watchLine renders one watched item for a terminal.
func watchLine(it control.WatchItem) string {
	switch it.Type {
	case control.WatchEvent:
		var ev daemon.EventMessage
		if err := json.Unmarshal(it.Data, &ev); err != nil {
			return "event (unreadable): " + string(it.Data)
		}
		line := fmt.Sprintf("%s  %-8s %s", ev.At.Local().Format("15:04:05.000"), ev.Event, ev.JobID)
		if ev.Source != "" {
			line += " (" + ev.Source + ")"
		}
		if ev.Attempt > 1 {
			line += fmt.Sprintf(" attempt %d", ev.Attempt)
		}
		if ev.Error != "" {
			line += ": " + ev.Error
		}
		return line
	case control.WatchHealth:
		var h daemon.Health
		if err := json.Unmarshal(it.Data, &h); err != nil {
			return "health (unreadable): " + string(it.Data)
		}
		line := fmt.Sprintf("%s  health   %s: %d queued, %d dead, outbox %d", time.Now().Format("15:04:05.000"), h.Status, h.Queue.Depth, h.Queue.Dead, h.Outbox.Depth)
		if len(h.Problems) > 0 {
			line += "; " + strings.Join(h.Problems, "; ")
		}
		return line
	case control.WatchDropped:
		return fmt.Sprintf("%s  (%d items dropped: this watcher fell behind)", time.Now().Format("15:04:05.000"), it.Dropped)
	}
	return it.Type + " " + string(it.Data)
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// byPriority renders {"5":2,"0":10} as " (p5:2 p0:10)", highest priority first.
func byPriority(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] > keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("p%s:%d", k, m[k])
	}
	return " (" + strings.Join(parts, " ") + ")"
}
