package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/infer"
)

// runBench is `inferq bench`: the whole pipeline (durable enqueue, lease, inference in the
// engine child, ack with outbox) against raw engine runs, side by side in one run.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.Int("jobs", 300, "jobs per round")
	model := fs.String("model", "", "a .tflite model (default: a generated ~80 MFLOP 224x224 classifier)")
	threads := fs.Int("threads", 2, "inference threads")
	runtimeDir := fs.String("runtime-dir", os.Getenv("INFERQ_TFLITE_RUNTIME"), "TFLite runtime closure (packaging/fetch-tflite-runtime.sh)")
	library := fs.String("library", "", "TFLite C library to load instead")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := daemon.Bench(ctx, daemon.BenchConfig{
		Jobs: *jobs, Model: *model, Threads: *threads, Runtime: rt,
		EngineCommand: argv, Dir: dir, Logger: log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "model %s", res.ModelName)
	if res.ModelFLOPs > 0 {
		fmt.Fprintf(stdout, " (generated, %.0f MFLOPs)", float64(res.ModelFLOPs)/1e6)
	}
	fmt.Fprintf(stdout, ", %d jobs per round, 640x480 JPEG inputs, %d threads\n", res.Jobs, *threads)
	fmt.Fprintf(stdout, "raw engine runs:      %8.1f jobs/s (p50 %.2f ms)\n", res.RawPerSec, float64(res.RawP50.Microseconds())/1000)
	fmt.Fprintf(stdout, "queue drain (worker): %8.1f jobs/s\n", res.PipelinePerSec)
	fmt.Fprintf(stdout, "pipeline/raw time:    %8.3f  (queue and durability overhead %+.1f%%)\n", 1+res.Overhead, res.Overhead*100)
	fmt.Fprintf(stdout, "durable enqueues:     %8.0f /s (4 producers, 640x480 JPEGs, before the drain)\n", res.EnqueuePerSec)
	return nil
}
