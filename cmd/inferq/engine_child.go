package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/inferq/inferq/infer"
)

// runEngineChild is the hidden `engine-child` subcommand: the supervised process that
// loads the TFLite library and runs the model for the daemon (infer.Supervisor), talking
// over stdin/stdout. The protocol gets a private copy of stdout and fd 1 is pointed at
// stderr, so anything a native library prints cannot corrupt the protocol stream.
func runEngineChild(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("engine-child takes no arguments (it is started by inferq itself)")
	}
	protoFD, err := syscall.Dup(1)
	if err != nil {
		return fmt.Errorf("cannot duplicate stdout: %w", err)
	}
	syscall.CloseOnExec(protoFD)
	if err := syscall.Dup2(2, 1); err != nil {
		return fmt.Errorf("cannot redirect stdout to stderr: %w", err)
	}
	out := os.NewFile(uintptr(protoFD), "engine-protocol")
	defer out.Close()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("process", "engine-child")
	return infer.ServeChild(ctx, os.Stdin, out, logger)
}
