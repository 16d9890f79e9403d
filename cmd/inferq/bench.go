package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/inferq/inferq/daemon/bench"
	"github.com/inferq/inferq/infer"
)

// runBench is `inferq bench`: what limits throughput (the model's invoke alone), what
// the daemon achieves (durable enqueue to acked result, measured through its control
// socket), and, with --latency, the latency of the real binary at half that rate. Many
// short rounds of each mode are interleaved; medians are printed with their spread, and
// the last line is `headline daemon/invoke-only <ratio>`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.Int("jobs", 20, "jobs per round")
	rounds := fs.Int("rounds", 15, "measured rounds of each mode (after one warm-up round each)")
	model := fs.String("model", "", "a .tflite model (default: the generated ~80 MFLOP 224x224 demo classifier)")
	kind := fs.String("kind", "classification", "model kind: classification, detection or raw")
	labels := fs.String("labels", "", "labels file of --model")
	threads := fs.Int("threads", 1, "inference threads")
	images := fs.String("images", "", "a directory of JPEGs to use (default: 16 generated 640x480 JPEGs)")
	runtimeDir := fs.String("runtime-dir", os.Getenv("INFERQ_TFLITE_RUNTIME"), "TFLite runtime closure (packaging/fetch-tflite-runtime.sh)")
	library := fs.String("library", "", "TFLite C library to load instead")
	overlap := fs.Bool("overlap", true, "the daemon's worker.overlap (false: decode after the previous job's inference)")
	asJSON := fs.Bool("json", false, "print every figure as JSON (the headline is its headline_daemon_invoke_only)")
	latency := fs.Bool("latency", false, "then run this binary (inferq run) with spool and MQTT ingest and measure end-to-end latency")
	rate := fs.Float64("rate", 0, "latency run: images per second per source (default: half the measured daemon rate)")
	latencyJobs := fs.Int("latency-jobs", 200, "latency run: images per source")
	broker := fs.String("broker", "", "latency run: URL of a running MQTT broker (default: start Mosquitto on a free port)")
	mosquitto := fs.String("mosquitto", bench.DefaultMosquitto, "latency run: the Mosquitto binary to start")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	// The latency run starts the daemon in a scratch directory: relative paths given
	// here are made absolute first.
	for _, p := range []*string{runtimeDir, library, model, labels, images} {
		if *p == "" || filepath.IsAbs(*p) {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("cannot resolve %s: %w", *p, err)
		}
		*p = abs
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "inferq-bench-")
	if err != nil {
		return fmt.Errorf("cannot create scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	argv, rt, err := engineCommand(exe, []string{"engine-child"}, infer.RuntimeConfig{RuntimeDir: *runtimeDir, Library: *library})
	if err != nil {
		return err
	}
	var imgs [][]byte
	if *images != "" {
		if imgs, err = bench.LoadImages(*images); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	target := bench.Target{Model: *model, Kind: *kind, Labels: *labels, Threads: *threads, Runtime: rt, Sequential: !*overlap}
	res, err := bench.Run(ctx, bench.Config{Target: target,
		EngineCommand: argv, Images: imgs, Rounds: *rounds, Jobs: *jobs, Dir: dir, Logger: log,
	})
	if err != nil {
		return err
	}
	if *latency {
		r := *rate
		if r <= 0 {
			r = res.Daemon.Median / 2
		}
		// The real binary is started as it is installed: it finds its runtime itself.
		target.Model = res.Model.Path
		target.Runtime = infer.RuntimeConfig{RuntimeDir: *runtimeDir, Library: *library}
		lat, err := bench.Latency(ctx, bench.LatencyConfig{Binary: exe, Target: target,
			Broker: *broker, Mosquitto: *mosquitto, Rate: r, Jobs: *latencyJobs, Images: imgs, Dir: dir, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("latency run: %w", err)
		}
		res.Latency = lat
	}
	if *asJSON {
		return bench.WriteJSON(stdout, res)
	}
	return bench.WriteText(stdout, res)
}
