// Command inferq is the edge inference daemon and its command-line client.
//
//	inferq run --config FILE        run the daemon (systemd: Type=notify)
//	inferq status                   the running daemon's health
//	inferq jobs [--state S]         the queued jobs
//	inferq job ID                   one job
//	inferq dead list|retry|purge    dead-lettered jobs
//	inferq reload                   reload the model file
//	inferq config check|print FILE  validate or show a configuration
//	inferq bench                    daemon rate vs the invoke-only limit (--latency: end to end)
//	inferq fleet [--watch] [--json] every box on the broker, worst first
//	inferq version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a wrong command line; main exits 2 for it.
var errUsage = errors.New("usage")

// buildVersion is the version stamped at build time (-X main.version=…, as make deb
// does), else the VCS revision Go recorded in the binary.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			return "dev-" + rev + dirty
		}
	}
	return version
}

// errHelpShown: the help a command was asked for is printed; main exits 0.
var errHelpShown = errors.New("help shown")

// parseFlags parses args with flags anywhere among the positional arguments (which
// it returns, in order; after "--" everything is positional). want is how many
// positional arguments the command takes (-1: any). -h or --help prints the flags
// and returns errHelpShown.
func parseFlags(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelpShown
			}
			return nil, fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if want >= 0 && len(pos) != want {
		return nil, fmt.Errorf("%w: %s takes %d argument(s), got %d: %q", errUsage, fs.Name(), want, len(pos), pos)
	}
	return pos, nil
}

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
	if errors.Is(err, errHelpShown) {
		os.Exit(0)
	}
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
  jobs     [--state S] [--source S] [--limit N] [--json]   the queued jobs, highest priority first
  job      ID [--json]            one job: state, attempts, times, last error (exit 1: unknown id)
  enqueue  FILE... [--priority N] [--source S] [--id ID]   queue images (reprocess)
  prioritize ID N                 give a queued job priority N (0..9)
  cancel   ID                     remove a queued, delayed or dead job
  pause    [intake|worker|all]    stop taking input / running jobs (kept across restarts)
  resume   [intake|worker|all]    undo pause
  dead     list|retry|purge [--all | ID...]   manage dead-lettered jobs
  reload   read the config file's model section again and swap in the model (waits for the outcome)
  watch    [--json]               live tail of job events and health changes (Ctrl-C to stop)
  config   check|print|defaults [--config FILE]
  bench    [--model F] [--threads N] [--latency] [--json]   the daemon's rate against the invoke-only limit, last line "headline daemon/invoke-only R"; --latency: end-to-end latency of this binary
  fleet    --broker URL | --config FILE [--watch] [--json] [--strict]   every box on the broker, worst first (exit 1: a box is not online and healthy)
  fleet cmd NODE VERB [ARG...] --broker URL | --config FILE   send a remote command, wait for the reply
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
	case "jobs":
		return runJobs(ctx, rest, stdout)
	case "job":
		return runJob(ctx, rest, stdout)
	case "prioritize":
		return runPrioritize(ctx, rest, stdout)
	case "cancel":
		return runCancel(ctx, rest, stdout)
	case "enqueue":
		return runEnqueue(ctx, rest, stdout)
	case "pause", "resume":
		return runPause(ctx, cmd, rest, stdout)
	case "reload":
		return runReload(ctx, rest, stdout)
	case "watch":
		return runWatch(ctx, rest, stdout)
	case "config":
		return runConfig(rest, stdout)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "fleet":
		return runFleet(ctx, rest, stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "inferq", buildVersion())
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
