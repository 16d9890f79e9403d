package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/testenv"
)

// fakeRuntime lays out the two files tflite.FindRuntime looks for, for this architecture.
func fakeRuntime(t *testing.T) tflite.Runtime {
	t.Helper()
	dir := t.TempDir()
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	if triplet == "" {
		t.Skipf("no runtime closure layout for %s", runtime.GOARCH)
	}
	loader := map[string]string{"amd64": "usr/lib64/ld-linux-x86-64.so.2", "arm64": "usr/lib/ld-linux-aarch64.so.1"}[runtime.GOARCH]
	for _, p := range []string{loader, "usr/lib/" + triplet + "/libtensorflow-lite.so.2.14.1"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := tflite.FindRuntime(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestEngineCommand(t *testing.T) {
	rt := fakeRuntime(t)
	child := []string{"engine-child"}
	tests := []struct {
		name     string
		wrapper  string
		in       infer.RuntimeConfig
		wantArgv []string
		wantRT   infer.RuntimeConfig
		wantErr  string
	}{
		{"no wrapper keeps the runtime dir for the supervisor", "", infer.RuntimeConfig{RuntimeDir: rt.Dir},
			[]string{"/bin/inferq", "engine-child"}, infer.RuntimeConfig{RuntimeDir: rt.Dir}, ""},
		{"wrapper without runtime dir", "qemu-aarch64-static -L /sys/root", infer.RuntimeConfig{Library: "/x/libtflite.so"},
			[]string{"qemu-aarch64-static", "-L", "/sys/root", "/bin/inferq", "engine-child"}, infer.RuntimeConfig{Library: "/x/libtflite.so"}, ""},
		{"wrapper goes before the closure's loader", " qemu-aarch64-static ", infer.RuntimeConfig{RuntimeDir: rt.Dir},
			[]string{"qemu-aarch64-static", rt.Loader, "--library-path", rt.LibDir, "/bin/inferq", "engine-child"},
			infer.RuntimeConfig{Library: rt.Library}, ""},
		{"a library named explicitly stays", "wrap", infer.RuntimeConfig{RuntimeDir: rt.Dir, Library: "/x/libtflite.so"},
			[]string{"wrap", rt.Loader, "--library-path", rt.LibDir, "/bin/inferq", "engine-child"},
			infer.RuntimeConfig{Library: "/x/libtflite.so"}, ""},
		{"missing closure", "wrap", infer.RuntimeConfig{RuntimeDir: filepath.Join(rt.Dir, "nope")}, nil, infer.RuntimeConfig{},
			"INFERQ_ENGINE_WRAPPER: no tensorflow lite runtime closure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(engineWrapperEnv, tt.wrapper)
			argv, got, err := engineCommand("/bin/inferq", child, tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(argv, tt.wantArgv) || !reflect.DeepEqual(got, tt.wantRT) {
				t.Errorf("got %q %+v, want %q %+v", argv, got, tt.wantArgv, tt.wantRT)
			}
		})
	}
}

// TestClassify runs the real binary's `classify` on the demo model and images through the
// engine child, under the TFLite runtime closure (make test fetches it):
// INFERQ_TFLITE_RUNTIME, by default .cache/tflite.
func TestClassify(t *testing.T) {
	dir := os.Getenv("INFERQ_TFLITE_RUNTIME")
	if dir == "" {
		dir = "../../.cache/tflite"
	}
	_, err := tflite.FindRuntime(dir)
	testenv.Need(t, "the TFLite runtime (make tflite-runtime; INFERQ_TFLITE_RUNTIME)", err)
	goTool := testenv.Program(t, "go")
	bin := filepath.Join(t.TempDir(), "inferq")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lines := classify(t, exec.Command(bin, "classify", "--runtime-dir", dir,
		"--model", "../../testdata/models/demo.tflite", "--labels", "../../testdata/models/demo.labels",
		"../../testdata/images/red.jpg", "../../testdata/images/green.jpg", "../../testdata/images/blue.jpg"))
	if len(lines) != 3 {
		t.Fatalf("%d result lines for 3 images", len(lines))
	}
	for i, want := range []string{"red", "green", "blue"} {
		l := lines[i]
		if got := l.Result.Classes[0].Label; got != want {
			t.Errorf("%s: %q (%+v), want %q", l.Image, got, l.Result.Classes, want)
		}
		if l.Runtime != "tflite" || l.Version == "" || l.Model != "demo" || l.ChildPID <= 0 {
			t.Errorf("%s: runtime %q %q, model %q, child %d", l.Image, l.Runtime, l.Version, l.Model, l.ChildPID)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "classify", "--runtime-dir", dir, "--model", "../../testdata/models/demo.tflite",
		"../../testdata/images/not-an-image.jpg")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "not-an-image.jpg") {
		t.Errorf("classify of a bad image: %v, stderr %q; want an error naming the file", err, stderr.String())
	}
}

// classify runs cmd and decodes its JSON lines.
func classify(t *testing.T, cmd *exec.Cmd) []classifyLine {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	var lines []classifyLine
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var l classifyLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("output is not JSON lines: %v\n%s", err, out)
		}
		if l.Result == nil || len(l.Result.Classes) == 0 {
			t.Fatalf("%s: no classes in %s", l.Image, out)
		}
		lines = append(lines, l)
	}
	return lines
}
