// Package testenv holds the gates tests use for what they need from the machine
// (an external program, root, a loop device). A missing prerequisite skips the
// test on a developer's machine and fails it when INFERQ_REQUIRE_EXTERNAL=1, as
// make test and CI set: nothing passes there by skipping.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Required reports whether missing prerequisites must fail tests.
func Required() bool { return os.Getenv("INFERQ_REQUIRE_EXTERNAL") == "1" }

// Need skips t (or fails it under INFERQ_REQUIRE_EXTERNAL=1) when err, which
// says why what is not available, is not nil.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Required() {
		t.Fatalf("%s is required (INFERQ_REQUIRE_EXTERNAL=1) but not available: %v (make test-deps installs what the tests need)", what, err)
	}
	t.Skipf("%s not available: %v", what, err)
}

// Program returns the path of an external program, gated as Need.
func Program(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, name, err)
	return p
}

// Root gates a test that must run as root (mounting file systems, changing owners).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, "root", os.ErrPermission)
	}
}

// WaitFor polls cond until it holds, failing t with what after timeout: the
// proof is the condition, never the time slept.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TFLiteNPM returns Google's TFLite 2.9.0 C library (with XNNPACK) for this
// architecture as packaging/fetch-tflite-npm.sh leaves it (INFERQ_TFLITE_NPM, by default
// .cache/tflite-npm at the top of the repository; set but empty, as make unit sets it:
// none), gated as Need.
func TFLiteNPM(t testing.TB) string {
	t.Helper()
	dir, set := os.LookupEnv("INFERQ_TFLITE_NPM")
	if !set {
		dir = filepath.Join(repoRoot(), ".cache", "tflite-npm")
	}
	lib := ""
	err := errors.New("INFERQ_TFLITE_NPM is empty")
	if dir != "" {
		if lib, err = filepath.Abs(filepath.Join(dir, "linux_"+runtime.GOARCH, "libtensorflowlite_c.so")); err == nil {
			_, err = os.Stat(lib)
		}
	}
	Need(t, "the npm TFLite 2.9.0 library (make tflite-npm)", err)
	return lib
}

// TFLiteRuntime returns the directory of this machine's TFLite runtime closure as
// packaging/fetch-tflite-runtime.sh leaves it (INFERQ_TFLITE_RUNTIME, by default
// .cache/tflite at the top of the repository), gated as Need.
func TFLiteRuntime(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("INFERQ_TFLITE_RUNTIME")
	if dir == "" {
		dir = filepath.Join(repoRoot(), ".cache", "tflite")
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		_, err = os.Stat(filepath.Join(abs, "MANIFEST"))
	}
	Need(t, "the TFLite runtime (make tflite-runtime)", err)
	return abs
}
