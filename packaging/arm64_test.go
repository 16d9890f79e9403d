package packaging

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

// arm64Runtime returns sid's arm64 TFLite closure, as fetch-tflite-runtime.sh DIR arm64
// leaves it (make tflite-runtime-arm64): INFERQ_TFLITE_RUNTIME_ARM64, by default
// .cache/tflite-arm64. It is also the emulator's sysroot (qemu -L): its lib -> usr/lib
// link gives /lib/ld-linux-aarch64.so.1, the interpreter arm64 programs name.
func arm64Runtime(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("INFERQ_TFLITE_RUNTIME_ARM64")
	if dir == "" {
		dir = "../.cache/tflite-arm64"
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		for _, p := range []string{"lib/ld-linux-aarch64.so.1", "usr/lib/aarch64-linux-gnu/libtensorflow-lite.so.2.14.1"} {
			if _, err = os.Stat(filepath.Join(abs, p)); err != nil {
				break
			}
		}
	}
	testenv.Need(t, "the arm64 TFLite runtime (make tflite-runtime-arm64)", err)
	return abs
}

// classified is the part of a line of `inferq classify` output the smoke test reads.
type classified struct {
	Image    string `json:"image"`
	Runtime  string `json:"runtime"`
	Version  string `json:"version"`
	ChildPID int    `json:"child_pid"`
	Result   struct {
		Classes []struct {
			Label string  `json:"label"`
			Score float32 `json:"score"`
		} `json:"classes"`
	} `json:"result"`
}

// goBuild builds ./cmd/inferq for goarch into dir and returns the binary's path.
func goBuild(t *testing.T, dir, goarch string) string {
	t.Helper()
	bin := filepath.Join(dir, "inferq-"+goarch)
	cmd := exec.Command(testenv.Program(t, "go"), "build", "-o", bin, "./cmd/inferq")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOARCH="+goarch)
	if goarch != runtime.GOARCH {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOARCH=%s go build ./cmd/inferq: %v\n%s", goarch, err, out)
	}
	return bin
}

var smokeImages = []struct{ path, label string }{
	{"../testdata/images/red.jpg", "red"},
	{"../testdata/images/green.jpg", "green"},
	{"../testdata/images/blue.jpg", "blue"},
}

// emulatedRun is what runBounded saw of one command.
type emulatedRun struct {
	stdout, stderr []byte
	pid            int
	took           time.Duration
}

// runBounded runs args with env added, killing its whole process group when it still
// runs after timeout, and then tries again, up to three times in all. qemu-user can
// deadlock in the child of a fork of a multithreaded program before that child reaches
// exec (seen here once in many runs: the emulated classify's forked child waiting on a
// futex for ten minutes, its pipes set up, exec never called); that is the emulator's
// hang, not inferq's. A command that hangs three times, or fails, is the test's failure.
func runBounded(t *testing.T, timeout time.Duration, env []string, args ...string) (emulatedRun, error) {
	t.Helper()
	const attempts = 3
	for i := 1; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		start := time.Now()
		err := cmd.Run()
		hung := ctx.Err() != nil
		cancel()
		r := emulatedRun{stdout: stdout.Bytes(), stderr: stderr.Bytes(), took: time.Since(start)}
		if cmd.Process != nil {
			r.pid = cmd.Process.Pid
		}
		if !hung {
			return r, err
		}
		if i == attempts {
			return r, fmt.Errorf("still running after %s, %d times in a row: %w", timeout, attempts, err)
		}
		t.Logf("%s: still running after %s (attempt %d); killed its process group, trying again", strings.Join(args, " "), timeout, i)
	}
}

// runClassify runs `inferq classify` on the demo model and smokeImages, prefixed by
// prefix (the emulator), checks the answers and returns the lines.
func runClassify(t *testing.T, env []string, prefix []string, bin, runtimeDir string) []classified {
	t.Helper()
	args := append(prefix, bin, "classify", "--runtime-dir", runtimeDir,
		"--model", "../testdata/models/demo.tflite", "--labels", "../testdata/models/demo.labels")
	for _, img := range smokeImages {
		args = append(args, img.path)
	}
	r, err := runBounded(t, 3*time.Minute, env, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, r.stderr)
	}
	t.Logf("%s: %v", strings.Join(args, " "), r.took.Round(time.Millisecond))
	var lines []classified
	dec := json.NewDecoder(bytes.NewReader(r.stdout))
	for dec.More() {
		var l classified
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("output is not JSON lines: %v\n%s", err, r.stdout)
		}
		lines = append(lines, l)
	}
	if len(lines) != len(smokeImages) {
		t.Fatalf("%d result lines for %d images:\n%s", len(lines), len(smokeImages), r.stdout)
	}
	for i, l := range lines {
		if len(l.Result.Classes) == 0 || l.Result.Classes[0].Label != smokeImages[i].label {
			t.Errorf("%s: classes %+v, want %q first", l.Image, l.Result.Classes, smokeImages[i].label)
		}
		if l.Runtime != "tflite" || l.Version != "2.14.1" {
			t.Errorf("%s: runtime %q %q, want tflite 2.14.1 (sid's)", l.Image, l.Runtime, l.Version)
		}
		// The model ran in a child process, not in the process that was started.
		if l.ChildPID <= 0 || l.ChildPID == r.pid {
			t.Errorf("%s: child pid %d (classify's own: %d)", l.Image, l.ChildPID, r.pid)
		}
	}
	return lines
}

// TestARM64Smoke cross-builds inferq for arm64 and runs it under qemu-aarch64-static, invoked
// explicitly (no binfmt_misc here), with sid's arm64 TFLite closure as its C library: the
// demo model classifies the demo images through the engine child, which is started as on a
// real arm64 box (closure loader, library path, the same binary) but prefixed by the emulator
// (INFERQ_ENGINE_WRAPPER), since the emulated parent's exec goes to the host's kernel. The
// scores are compared with the native build's on this machine's runtime.
func TestARM64Smoke(t *testing.T) {
	qemu := testenv.Program(t, "qemu-aarch64-static")
	rt := arm64Runtime(t)
	bin := goBuild(t, t.TempDir(), "arm64")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Fatalf("GOARCH=arm64 built a %v binary", f.Machine)
	}
	emulated := []string{qemu, "-L", rt}

	if out := strings.TrimSpace(run(t, qemu, "-L", rt, bin, "version")); out != "inferq dev" {
		t.Errorf("inferq version under qemu = %q", out)
	}

	t.Run("child needs the emulator", func(t *testing.T) {
		// Without the wrapper the engine child (an arm64 program) goes to the host's
		// kernel, which refuses it: proof that the child is a process of its own.
		r, err := runBounded(t, 3*time.Minute, []string{"INFERQ_ENGINE_WRAPPER="}, qemu, "-L", rt, bin, "classify", "--runtime-dir", rt,
			"--model", "../testdata/models/demo.tflite", smokeImages[0].path)
		out := append(r.stdout, r.stderr...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), "exec format error") {
			t.Errorf("classify without INFERQ_ENGINE_WRAPPER: %v\n%s\nwant exec format error from the child", err, out)
		}
	})

	arm := runClassify(t, []string{"INFERQ_ENGINE_WRAPPER=" + qemu}, emulated, bin, rt)

	t.Run("same as native", func(t *testing.T) {
		hostRT := testenv.TFLiteRuntime(t)
		native := runClassify(t, []string{"INFERQ_ENGINE_WRAPPER="}, nil, goBuild(t, t.TempDir(), runtime.GOARCH), hostRT)
		for i := range native {
			a, n := arm[i].Result.Classes, native[i].Result.Classes
			if len(a) != len(n) {
				t.Errorf("%s: %d classes on arm64, %d native", native[i].Image, len(a), len(n))
				continue
			}
			for j := range n {
				if a[j].Label != n[j].Label || math.Abs(float64(a[j].Score-n[j].Score)) > 1e-4 {
					t.Errorf("%s class %d: arm64 %+v, native %+v", native[i].Image, j, a[j], n[j])
				}
			}
		}
	})
}
