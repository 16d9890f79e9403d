// Command inferq is the edge inference daemon and its command-line client.
//
//	inferq run --config FILE        run the daemon (systemd: Type=notify)
//	inferq status                   the running daemon's health
//	inferq dead list|retry|purge    dead-lettered jobs
//	inferq reload                   reload the model file
//	inferq config check|print FILE  validate or show a configuration
//	inferq bench                    pipeline against raw engine runs, one run
//	inferq version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a wrong command line; main exits 2 for it.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// A second signal forces the exit when a clean stop hangs.
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "inferq: second signal, exiting now")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inferq:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage: inferq <command> [flags]

commands:
  run      --config FILE   run the daemon
  status   [--socket PATH] [--json]   show the running daemon's health
  dead     list|retry|purge [--all | ID...]   manage dead-lettered jobs
  reload   swap in the model file's current content
  config   check|print|defaults [--config FILE]
  bench    the whole pipeline against raw engine runs, side by side
  version  print the version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runDaemon(ctx, rest, stderr)
	case "status":
		return runStatus(ctx, rest, stdout)
	case "dead":
		return runDead(ctx, rest, stdout)
	case "reload":
		return runReload(ctx, rest, stdout)
	case "config":
		return runConfig(rest, stdout)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "inferq", version)
		return nil
	case "engine-child":
		return runEngineChild(ctx, rest)
	case "classify": // hidden: a one-shot check through the engine child
		return runClassify(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}
