package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tensorflow"
)

// runEngineChild is the hidden `engine-child` subcommand: the supervised process that
// loads the runtime (TFLite, or TensorFlow in a -tags tensorflow build) and runs the model for the daemon (infer.Supervisor), talking
// over stdin/stdout. The protocol gets a private copy of stdout and fd 1 is pointed at
// stderr, so anything a native library prints cannot corrupt the protocol stream.
func runEngineChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("engine-child", flag.ContinueOnError)
	engine := fs.String("engine", "tflite", "tflite or tensorflow")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return fmt.Errorf("%w: engine-child [--engine tflite|tensorflow] is started by inferq itself", errUsage)
	}
	var open infer.Opener
	switch *engine {
	case "tflite":
		open = infer.OpenTFLite
	case "tensorflow":
		open = tensorflow.Open
	default:
		return fmt.Errorf("%w: engine-child --engine %q: want tflite or tensorflow", errUsage, *engine)
	}
	protoFD, err := unix.Dup(1)
	if err != nil {
		return fmt.Errorf("cannot duplicate stdout: %w", err)
	}
	unix.CloseOnExec(protoFD)
	// unix.Dup2, not syscall.Dup2: linux/arm64 (and riscv64) have only dup3, which
	// x/sys/unix uses there.
	if err := unix.Dup2(2, 1); err != nil {
		return fmt.Errorf("cannot redirect stdout to stderr: %w", err)
	}
	out := os.NewFile(uintptr(protoFD), "engine-protocol")
	defer out.Close()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("process", "engine-child")
	return infer.ServeChildWith(ctx, os.Stdin, out, logger, open)
}
