package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/inferq/inferq/infer"
)

// classifyLine is one line of `inferq classify`'s output.
type classifyLine struct {
	Image    string        `json:"image"`
	Model    string        `json:"model"`
	Runtime  string        `json:"runtime"`
	Version  string        `json:"version"`   // the runtime's version
	ChildPID int           `json:"child_pid"` // the engine child that ran it
	Result   *infer.Result `json:"result"`
}

// runClassify is the hidden `inferq classify`: the model is loaded in an engine child, as
// the daemon loads it (same child command, runtime closure and supervisor), each image is
// run once and one JSON line per image is printed. No queue, no broker, no config file: a
// check that a box's runtime and model work, and what the arm64 smoke test runs under
// emulation (see INFERQ_ENGINE_WRAPPER).
func runClassify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "the .tflite model (required)")
	labels := fs.String("labels", "", "labels file: line i names class i")
	topK := fs.Int("top-k", 3, "classes per result")
	threads := fs.Int("threads", 1, "inference threads")
	runtimeDir := fs.String("runtime-dir", os.Getenv("INFERQ_TFLITE_RUNTIME"), "TFLite runtime closure (packaging/fetch-tflite-runtime.sh)")
	library := fs.String("library", "", "TFLite C library to load instead")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on loading the model, and on each image")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *model == "" || fs.NArg() == 0 {
		return fmt.Errorf("%w: classify --model FILE [flags] IMAGE...", errUsage)
	}
	if _, err := os.Stat(*model); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own executable for the engine child: %w", err)
	}
	argv, rt, err := engineCommand(exe, []string{"engine-child"}, infer.RuntimeConfig{RuntimeDir: *runtimeDir, Library: *library})
	if err != nil {
		return err
	}
	sup, err := infer.NewSupervisor(infer.SupervisorConfig{
		Command: argv, Runtime: rt, StartTimeout: *timeout,
		Model:  infer.ModelConfig{Path: *model, Labels: *labels, TopK: *topK, Threads: *threads},
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer sup.Close()
	if err := sup.Open(ctx); err != nil {
		return err
	}
	info := sup.Info()
	enc := json.NewEncoder(stdout)
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		res, err := sup.Run(rctx, data)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		line := classifyLine{Image: path, Model: info.Name, Runtime: info.Runtime, Version: info.Version,
			ChildPID: sup.Stats().ChildPID, Result: res}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return sup.Close()
}
