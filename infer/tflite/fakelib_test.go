package tflite_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/tflite"
)

// fakeLibC is a stand-in TFLite C library: every function tflite.Open requires, no
// cancellation API, and the XNNPACK entry points, which abort the process when called.
// VERSION is TfLiteVersion(); with BADDEFAULT the options default carries a weights cache
// pointer, as a later layout read with the 2.9 struct would.
const fakeLibC = `
#include <stdint.h>
#include <stdlib.h>
const char* TfLiteVersion(void) { return VERSION; }
#define STUB(name) void* name(void) { return 0; }
STUB(TfLiteModelCreate) STUB(TfLiteModelDelete) STUB(TfLiteInterpreterOptionsCreate)
STUB(TfLiteInterpreterOptionsDelete) STUB(TfLiteInterpreterOptionsSetNumThreads)
STUB(TfLiteInterpreterOptionsAddDelegate) STUB(TfLiteInterpreterOptionsSetEnableDelegateFallback)
STUB(TfLiteInterpreterCreate) STUB(TfLiteInterpreterDelete) STUB(TfLiteInterpreterAllocateTensors)
STUB(TfLiteInterpreterInvoke) STUB(TfLiteInterpreterGetInputTensorCount)
STUB(TfLiteInterpreterGetInputTensor) STUB(TfLiteInterpreterGetOutputTensorCount)
STUB(TfLiteInterpreterGetOutputTensor) STUB(TfLiteTensorType) STUB(TfLiteTensorNumDims)
STUB(TfLiteTensorDim) STUB(TfLiteTensorByteSize) STUB(TfLiteTensorData) STUB(TfLiteTensorName)
STUB(TfLiteTensorQuantizationParams)
typedef struct { int32_t num_threads; uint32_t flags; void* weights_cache; } Options29;
Options29 TfLiteXNNPackDelegateOptionsDefault(void) {
#ifdef BADDEFAULT
  Options29 o = {0, 0, (void*)0x1234};
  return o;
#else
#ifdef NODEFAULT
  abort();
#endif
  Options29 o = {0, 0, 0};
  return o;
#endif
}
void* TfLiteXNNPackDelegateCreate(const Options29* o) { abort(); }
void TfLiteXNNPackDelegateDelete(void* d) { abort(); }
`

func buildFakeLib(t *testing.T, defs ...string) string {
	t.Helper()
	return buildSharedC(t, "the fake library", fakeLibC, "libtensorflowlite_c.so", defs...)
}

// buildSharedC compiles the C source src into a shared library named name in a temporary
// directory, with each of defs as a -D definition, and returns its path.
func buildSharedC(t *testing.T, what, src, name string, defs ...string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatalf("a C compiler is needed to build %s (cgo needs one too): %v", what, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "fake.c")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, name)
	args := []string{"-shared", "-fPIC", "-o", lib, file}
	for _, d := range defs {
		args = append(args, "-D"+d)
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("cannot build %s: %v\n%s", what, err, out)
	}
	return lib
}

// TestOptionalParts: a library without the cancellation API loads and says so; the
// XNNPACK options struct is only used with the version whose layout is known (2.9): for
// another version TfLiteXNNPackDelegateOptionsDefault is never called (the fake aborts),
// and options that do not look like 2.9's refuse the delegate.
func TestOptionalParts(t *testing.T) {
	tests := []struct {
		name    string
		defs    []string
		xnnWant string // "" : XNNPACK usable
	}{
		{"2.9 layout", []string{`VERSION="2.9.0"`}, ""},
		{"unknown layout", []string{`VERSION="2.15.0"`, "NODEFAULT"}, "knows the layout of its options (TfLiteXNNPackDelegateOptions) only for TFLite 2.9"},
		{"odd default", []string{`VERSION="2.9.1"`, "BADDEFAULT"}, "returned unexpected options"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lib, err := tflite.Open(buildFakeLib(t, tc.defs...))
			if err != nil {
				t.Fatalf("a library without the cancellation API must load: %v", err)
			}
			if err := lib.CancelError(); err == nil || !strings.Contains(err.Error(), "cannot cancel a running invoke") {
				t.Fatalf("CancelError %v, want a reason", err)
			}
			err = lib.XNNPACKError()
			switch {
			case tc.xnnWant == "" && err != nil:
				t.Fatalf("XNNPACKError %v, want nil", err)
			case tc.xnnWant != "" && (err == nil || !strings.Contains(err.Error(), tc.xnnWant)):
				t.Fatalf("XNNPACKError %v, want %q", err, tc.xnnWant)
			}
		})
	}
}
