package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/transport/mqtt"
)

// errFleetUnwell: some box is not online and healthy; main exits 1.
var errFleetUnwell = errors.New("not online and healthy")

// fleetConn holds the connection flags every fleet subcommand takes.
type fleetConn struct {
	broker, config, prefix, user, pwFile, caFile *string
	timeout                                      *time.Duration
}

func fleetFlags(fs *flag.FlagSet) fleetConn {
	return fleetConn{
		broker:  fs.String("broker", "", "broker URL (tcp://host:1883, ssl://host:8883, ws://host/mqtt)"),
		config:  fs.String("config", "", "take broker, credentials, TLS and prefix from this inferq configuration's mqtt section"),
		prefix:  fs.String("prefix", "", "topic prefix (default: the config's mqtt.prefix, else inferq)"),
		user:    fs.String("username", "", "broker user name (with --broker)"),
		pwFile:  fs.String("password-file", "", "file holding the broker password (with --broker)"),
		caFile:  fs.String("ca-file", "", "PEM CA bundle for a TLS broker (with --broker)"),
		timeout: fs.Duration("timeout", 10*time.Second, "connect and publish timeout"),
	}
}

// session is the connection the flags describe, and the topic prefix; cfg is the
// configuration read with --config (the default one otherwise).
func (f fleetConn) session() (sc mqtt.SessionConfig, prefix string, cfg daemon.Config, err error) {
	cfg = daemon.DefaultConfig()
	switch {
	case (*f.broker == "") == (*f.config == ""):
		return sc, "", cfg, fmt.Errorf("%w: give --broker URL or --config FILE", errUsage)
	case *f.config != "":
		if cfg, err = daemon.LoadConfig(*f.config); err != nil {
			return sc, "", cfg, err
		}
		sc = cfg.ToolSession()
	default:
		sc = mqtt.SessionConfig{Brokers: []string{*f.broker}, Username: *f.user, PasswordFile: *f.pwFile,
			TLS: mqtt.TLSConfig{CAFile: *f.caFile}}
	}
	sc.Timeout, sc.ClientIDPrefix = *f.timeout, "inferq-fleet"
	prefix = cfg.MQTT.Prefix
	if *f.prefix != "" {
		prefix = *f.prefix
	}
	return sc, prefix, cfg, nil
}

// runFleet is `inferq fleet`: every box's availability and health as one table, worst
// first. Exit 1 when a box is not online and healthy (stopped, offline, failing, stale
// or never fully seen; with --strict degraded too), so a cron job or a monitoring check
// can call it.
func runFleet(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "cmd" {
		return runFleetCmd(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	conn := fleetFlags(fs)
	wait := fs.Duration("wait", 2*time.Second, "how long to collect retained and live messages before showing them")
	watch := fs.Bool("watch", false, "redraw in place every --every until interrupted")
	every := fs.Duration("every", 2*time.Second, "redraw interval with --watch")
	asJSON := fs.Bool("json", false, "print JSON (one document per redraw with --watch)")
	strict := fs.Bool("strict", false, "count degraded boxes as unwell too")
	if _, err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	sc, prefix, _, err := conn.session()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	fleet := daemon.NewFleet(prefix)
	sess, err := mqtt.Dial(ctx, sc, fleet.Filters(), func(m mqtt.Message) {
		mu.Lock()
		fleet.Apply(m, time.Now())
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer sess.Close()
	show := func(clear bool) (int, error) {
		mu.Lock()
		now := time.Now()
		rows := fleet.Rows(now)
		mu.Unlock()
		unwell := daemon.FleetUnwell(rows, *strict)
		if *asJSON {
			return unwell, writeJSONOut(stdout, fleetJSON{Time: now.UTC(), Boxes: rows, Unwell: unwell})
		}
		if clear {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
			fmt.Fprintf(stdout, "inferq fleet on %v under %s/ at %s\n\n", sc.Brokers, prefix, now.Format(time.TimeOnly))
		}
		if err := daemon.WriteFleetTable(stdout, rows, now); err != nil {
			return unwell, err
		}
		fmt.Fprintf(stdout, "%d boxes, %d not online and healthy\n", len(rows), unwell)
		return unwell, nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(*wait):
	}
	if !*watch {
		unwell, err := show(false)
		if err != nil {
			return err
		}
		if unwell > 0 {
			return fmt.Errorf("%d boxes %w", unwell, errFleetUnwell)
		}
		return nil
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		if _, err := show(!*asJSON); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fleetJSON is inferq fleet --json.
type fleetJSON struct {
	Time   time.Time         `json:"time"`
	Boxes  []daemon.FleetRow `json:"boxes"`
	Unwell int               `json:"unwell"`
}
