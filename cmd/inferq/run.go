package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/systemd"
)

const defaultConfigPath = "/etc/inferq/inferq.yaml"

// runDaemon is `inferq run`: load and check the config, open every part, run until a
// signal, close. A config error exits before anything is touched.
func runDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg, err := daemon.LoadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config %s:\n%w", *path, err)
	}
	log := newLogger(cfg.Log, stderr)
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit from GOMEMLIMIT", "limit", env)
	} else if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
		log.Info("memory limit", "memory_limit_mib", int64(cfg.MemoryLimit)>>20)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own executable for the engine child: %w", err)
	}
	argv, rt, err := engineCommand(exe, []string{"engine-child", "--engine", cfg.Runtime.Engine},
		infer.RuntimeConfig{Library: cfg.Runtime.Library, RuntimeDir: cfg.Runtime.Dir})
	if err != nil {
		return err
	}
	cfg.Runtime.Library, cfg.Runtime.Dir = rt.Library, rt.RuntimeDir
	d, err := daemon.New(cfg, daemon.Options{
		Version:       buildVersion(),
		EngineCommand: argv,
		ConfigPath:    *path,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Open(ctx); err != nil {
		log.Error("cannot start", logkey.Err, err)
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() { // SIGHUP reloads the model, as `inferq reload` does
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := d.Reload(ctx); err != nil {
					log.Error("reload on SIGHUP refused; the previous model keeps serving", logkey.Err, err)
				}
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with error", logkey.Err, err)
		return err
	}
	if err := d.Close(); err != nil {
		log.Error("cannot close cleanly", logkey.Err, err)
		return err
	}
	log.Info("inferq stopped")
	return nil
}

// newLogger picks, with format auto, journald's native protocol when stderr is the
// journal (levels become PRIORITY, attributes journal fields, one timestamp: journald's),
// JSON when run by systemd without the journal, and text on a terminal.
func newLogger(c daemon.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" {
		format = "text"
		switch {
		case w == io.Writer(os.Stderr) && systemd.StderrIsJournal():
			return systemd.NewJournalLogger("inferq", opts)
		case os.Getenv("JOURNAL_STREAM") != "" || os.Getenv("INVOCATION_ID") != "":
			format = "json"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
