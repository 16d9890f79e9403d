package tflite_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/testenv"
)

// underLoaderEnv marks a test process that was re-executed under the runtime's loader.
const underLoaderEnv = "INFERQ_TEST_UNDER_LOADER"

// TestMain re-executes the test binary under the closure's dynamic loader when
// INFERQ_TFLITE_RUNTIME names a closure: on Debian 12 the library needs sid's glibc.
func TestMain(m *testing.M) {
	if dir := os.Getenv("INFERQ_TFLITE_RUNTIME"); dir != "" && os.Getenv(underLoaderEnv) == "" {
		if rt, err := tflite.FindRuntime(dir); err == nil {
			exe, err := os.Executable()
			if err == nil {
				argv := rt.Command(append([]string{exe}, os.Args[1:]...)...)
				env := append(os.Environ(), underLoaderEnv+"=1", "INFERQ_TEST_EXE="+exe)
				err = syscall.Exec(argv[0], argv, env)
			}
			fmt.Fprintf(os.Stderr, "cannot re-exec under the TFLite runtime loader: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// openLib loads the library for a test, or skips (fails with INFERQ_REQUIRE_EXTERNAL=1).
func openLib(t testing.TB) *tflite.Library {
	t.Helper()
	path := ""
	if dir := os.Getenv("INFERQ_TFLITE_RUNTIME"); dir != "" {
		rt, err := tflite.FindRuntime(dir)
		if err != nil {
			missing(t, err)
		}
		path = rt.Library
	}
	lib, err := tflite.Open(path)
	if err != nil {
		missing(t, err)
	}
	return lib
}

// missing skips t, or fails it under INFERQ_REQUIRE_EXTERNAL=1 (testenv.Need).
func missing(t testing.TB, err error) {
	t.Helper()
	testenv.Need(t, "the TFLite runtime (INFERQ_TFLITE_RUNTIME: a closure from packaging/fetch-tflite-runtime.sh)", err)
}
