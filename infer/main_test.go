package infer

import (
	"context"
	"encoding/gob"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/testenv"
)

const (
	childEnv       = "INFERQ_TEST_ENGINE_CHILD" // this process is a supervised child
	underLoaderEnv = "INFERQ_TEST_UNDER_LOADER" // this process was re-executed under the loader
	testExeEnv     = "INFERQ_TEST_EXE"          // the test binary (os.Executable is the loader then)
	lateChildEnv   = "INFERQ_TEST_LATE_CHILD"   // this process answers twice, unasked (lateChild)
)

// lateChild is a child that writes two responses nobody asked for and exits: responses
// that arrive when no caller is waiting for them.
func lateChild() {
	enc := gob.NewEncoder(os.Stdout)
	for range 2 {
		if err := enc.Encode(&response{Err: &wireError{Kind: ErrEngine.Error(), Msg: "late"}}); err != nil {
			os.Exit(1)
		}
	}
	os.Exit(0)
}

// TestMain doubles as the engine child (like cmd/inferq's engine-child subcommand) and,
// when INFERQ_TFLITE_RUNTIME names a closure, re-executes the tests under the closure's
// loader so in-process engine tests can load the library.
func TestMain(m *testing.M) {
	if os.Getenv(lateChildEnv) == "1" {
		lateChild()
	}
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := ServeChild(ctx, os.Stdin, os.Stdout, logger); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv("INFERQ_TFLITE_RUNTIME"); dir != "" && os.Getenv(underLoaderEnv) == "" {
		if rt, err := tflite.FindRuntime(dir); err == nil {
			exe, err := os.Executable()
			if err == nil {
				argv := rt.Command(append([]string{exe}, os.Args[1:]...)...)
				env := append(os.Environ(), underLoaderEnv+"=1", testExeEnv+"="+exe)
				err = syscall.Exec(argv[0], argv, env)
			}
			fmt.Fprintf(os.Stderr, "cannot re-exec under the TFLite runtime loader: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// needRuntime returns the runtime config for tests that run TFLite, or skips (fails when
// INFERQ_REQUIRE_EXTERNAL=1).
func needRuntime(t testing.TB) RuntimeConfig {
	t.Helper()
	dir := os.Getenv("INFERQ_TFLITE_RUNTIME")
	if dir == "" {
		missing(t, fmt.Errorf("INFERQ_TFLITE_RUNTIME is not set"))
	}
	rt, err := tflite.FindRuntime(dir)
	if err != nil {
		missing(t, err)
	}
	if os.Getenv(underLoaderEnv) == "" {
		missing(t, fmt.Errorf("tests are not running under the runtime's loader"))
	}
	return RuntimeConfig{RuntimeDir: rt.Dir}
}

// missing skips t, or fails it under INFERQ_REQUIRE_EXTERNAL=1 (testenv.Need).
func missing(t testing.TB, err error) {
	t.Helper()
	testenv.Need(t, "the TFLite runtime (make tflite-runtime; INFERQ_TFLITE_RUNTIME=<closure>)", err)
}

func testExe(t testing.TB) string {
	if exe := os.Getenv(testExeEnv); exe != "" {
		return exe
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
