package tflite_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/testenv"
)

// repoFile is a path relative to the repository's top (tests run in infer/tflite).
func repoFile(rel string) string { return filepath.Join("..", "..", rel) }

// sidLib opens Debian sid's 2.14.1 from the closure the tests run under.
func sidLib(t testing.TB) *tflite.Library {
	t.Helper()
	testenv.TFLiteRuntime(t)
	lib := openLib(t)
	if !strings.HasPrefix(lib.Version(), "2.14") {
		t.Fatalf("closure library is TFLite %s, want sid's 2.14.x", lib.Version())
	}
	return lib
}

func npmLib(t testing.TB) *tflite.Library {
	t.Helper()
	lib, err := tflite.Open(testenv.TFLiteNPM(t))
	if err != nil {
		t.Fatalf("the npm library must load (it lacks only optional symbols): %v", err)
	}
	return lib
}

func readModelFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// interp creates an interpreter for data; the test closes it.
func interp(t testing.TB, lib *tflite.Library, data []byte, opts tflite.Options) *tflite.Interpreter {
	t.Helper()
	m, err := lib.NewModel(data)
	if err != nil {
		t.Fatal(err)
	}
	it, err := lib.NewInterpreter(m, opts)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { it.Close(); m.Close() })
	return it
}

// TestLibraryFeatures: sid's 2.14.1 cancels and has no XNNPACK C API; Google's 2.9.0
// loads although it cannot cancel, and has XNNPACK. Each says why a part is missing.
func TestLibraryFeatures(t *testing.T) {
	sid, npm := sidLib(t), npmLib(t)
	if err := sid.CancelError(); err != nil {
		t.Errorf("sid CancelError: %v, want nil", err)
	}
	if err := sid.XNNPACKError(); err == nil || !strings.Contains(err.Error(), "TfLiteXNNPackDelegateOptionsDefault") {
		t.Errorf("sid XNNPACKError: %v, want it to name the missing TfLiteXNNPackDelegateOptionsDefault", err)
	}
	if got := npm.Version(); got != "2.9.0" {
		t.Errorf("npm library version %q, want 2.9.0", got)
	}
	if err := npm.CancelError(); err == nil || !errors.Is(err, tflite.ErrSymbol) ||
		!strings.Contains(err.Error(), "TfLiteInterpreterOptionsEnableCancellation") {
		t.Errorf("npm CancelError: %v, want ErrSymbol naming TfLiteInterpreterOptionsEnableCancellation", err)
	}
	if err := npm.XNNPACKError(); err != nil {
		t.Errorf("npm XNNPACKError: %v, want nil", err)
	}
}

// TestXNNPACKInUse: on the 2.9.0 library a float model runs with the XNNPACK delegate
// (it says so, with its threads), not without it when asked, and the delegate really
// runs the graph: interleaved invokes are several times faster than TFLite's own
// kernels (11-23x measured natively; the test wants 2x. Under qemu-user emulation the
// gain shrinks to ~1.7x: the timing part holds for native runs only).
func TestXNNPACKInUse(t *testing.T) {
	npm := npmLib(t)
	data := readModelFile(t, "testdata/models/demo.tflite")
	two := interp(t, npm, data, tflite.Options{Threads: 2})
	if two.XNNPACKError() != nil || !strings.HasPrefix(two.XNNPACK(), "xnnpack (TFLite 2.9.0, 2 threads") {
		t.Fatalf("XNNPACK %q (%v), want in use with 2 threads", two.XNNPACK(), two.XNNPACKError())
	}
	// Timed with one thread each: a thread pool's spinning makes timings on a shared
	// machine noisy.
	with := interp(t, npm, data, tflite.Options{Threads: 1})
	without := interp(t, npm, data, tflite.Options{Threads: 1, NoXNNPACK: true})
	if !strings.HasPrefix(with.XNNPACK(), "xnnpack (TFLite 2.9.0, 1 thread,") {
		t.Fatalf("threads 1: XNNPACK %q", with.XNNPACK())
	}
	if without.XNNPACK() != "" || without.XNNPACKError() == nil {
		t.Fatalf("NoXNNPACK: XNNPACK %q (%v), want not in use and a reason", without.XNNPACK(), without.XNNPACKError())
	}
	timeInvoke(t, with) // warm-up: XNNPACK packs the weights at the first invoke
	timeInvoke(t, without)
	var dw, dn []float64
	for range 7 {
		dw = append(dw, timeInvoke(t, with))
		dn = append(dn, timeInvoke(t, without))
	}
	slices.Sort(dw)
	slices.Sort(dn)
	mw, mn := tflite.Median(dw), tflite.Median(dn)
	t.Logf("demo model, 1 thread: with XNNPACK %.2f ms, without %.2f ms (x%.1f)", mw, mn, mn/mw)
	if mn < 2*mw {
		t.Fatalf("with XNNPACK %.2f ms, without %.2f ms: the delegate does not seem to run the graph", mw, mn)
	}
}

func timeInvoke(t testing.TB, it *tflite.Interpreter) float64 {
	t.Helper()
	t0 := time.Now()
	if err := it.Invoke(); err != nil {
		t.Fatal(err)
	}
	return float64(time.Since(t0).Microseconds()) / 1000
}

// TestRuntimesAgree runs the demo models on both libraries (2.9.0 with XNNPACK) with the
// same input: float outputs agree within 1e-4 and the top class is the same; the
// quantized ones within one quantization step.
func TestRuntimesAgree(t *testing.T) {
	sid, npm := sidLib(t), npmLib(t)
	for _, name := range []string{"demo.tflite", "demo_uint8.tflite", "demo_quant.tflite"} {
		t.Run(name, func(t *testing.T) {
			data := readModelFile(t, "testdata/models/"+name)
			a := interp(t, sid, data, tflite.Options{Threads: 1})
			b := interp(t, npm, data, tflite.Options{Threads: 1})
			for trial := range 3 {
				in := patternInput(a.Inputs()[0], trial)
				if err := a.Inputs()[0].CopyFrom(in); err != nil {
					t.Fatal(err)
				}
				if err := b.Inputs()[0].CopyFrom(in); err != nil {
					t.Fatal(err)
				}
				if err := a.Invoke(); err != nil {
					t.Fatal(err)
				}
				if err := b.Invoke(); err != nil {
					t.Fatal(err)
				}
				compareOutputs(t, a.Outputs(), b.Outputs())
			}
		})
	}
}

// patternInput is a smooth image-like input for t (float in [0,1], or bytes).
func patternInput(t *tflite.Tensor, seed int) []byte {
	n := t.ByteSize
	if t.Type == tflite.Float32 {
		v := make([]float32, n/4)
		for i := range v {
			v[i] = float32(0.5 + 0.5*math.Sin(float64(i*(seed+1))/97+float64(i%3)))
		}
		return floatBytes(v)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(128 + 127*math.Sin(float64(i*(seed+1))/97+float64(i%3)))
	}
	return b
}

func compareOutputs(t *testing.T, a, b []*tflite.Tensor) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d outputs against %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Type != b[i].Type || !slices.Equal(a[i].Shape, b[i].Shape) {
			t.Fatalf("output %d: %s%v against %s%v", i, a[i].Type, a[i].Shape, b[i].Type, b[i].Shape)
		}
		switch a[i].Type {
		case tflite.Float32:
			fa, fb := floats(a[i].Bytes()), floats(b[i].Bytes())
			for j := range fa {
				if math.Abs(float64(fa[j]-fb[j])) > 1e-4 {
					t.Fatalf("output %d[%d]: sid %v, npm %v", i, j, fa[j], fb[j])
				}
			}
			if argmax(fa) != argmax(fb) {
				t.Fatalf("output %d: top class %d on sid, %d on npm", i, argmax(fa), argmax(fb))
			}
		default:
			ba, bb := a[i].Bytes(), b[i].Bytes()
			for j := range ba {
				if d := int(ba[j]) - int(bb[j]); d < -1 || d > 1 {
					t.Fatalf("output %d[%d]: sid %d, npm %d (more than one step apart)", i, j, ba[j], bb[j])
				}
			}
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// TestCancelUnavailable: on a library without the cancellation API, Cancel is harmless
// and the run completes (the engine child's deadline is then the supervisor's kill).
func TestCancelUnavailable(t *testing.T) {
	npm := npmLib(t)
	it := interp(t, npm, readModelFile(t, "testdata/models/demo.tflite"), tflite.Options{Threads: 1})
	if it.CanCancel() {
		t.Fatal("CanCancel true on TFLite 2.9.0")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			it.Cancel()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for range 5 {
		if err := it.Invoke(); err != nil {
			t.Fatalf("invoke with Cancel calls: %v, want it to run to its end", err)
		}
	}
	<-done
}

// TestChoose: with two working libraries each gets n timed invokes and the lowest
// median wins; a library that cannot load is skipped with its reason; with none the
// error says why.
func TestChoose(t *testing.T) {
	sidPath, npmPath := sidLib(t).Path(), testenv.TFLiteNPM(t)
	data := readModelFile(t, "testdata/models/demo.tflite")
	c, err := tflite.Choose([]string{sidPath, "/nonexistent/libtensorflowlite_c.so", npmPath}, data, tflite.Options{Threads: 1}, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.It.Close(); c.Model.Close() }()
	if len(c.Trials) != 3 || c.Trials[1].Err == "" || c.Trials[1].Invokes != 0 {
		t.Fatalf("trials %+v, want 3 with the missing library's error", c.Trials)
	}
	for _, i := range []int{0, 2} {
		tr := c.Trials[i]
		if tr.Err != "" || tr.Invokes != 5 || !(tr.Min > 0 && tr.Min <= tr.Median && tr.Median <= tr.Max) {
			t.Fatalf("trial %d %+v, want 5 timed invokes with min <= median <= max", i, tr)
		}
		if other := c.Trials[2-i]; i != c.Index && tr.Median < other.Median {
			t.Fatalf("chose %d (median %.2f ms) over %d (%.2f ms)", c.Index, other.Median, i, tr.Median)
		}
	}
	if c.Trials[2].XNNPACK == "" || c.Trials[0].XNNPACK != "" {
		t.Fatalf("XNNPACK in trials: sid %q npm %q, want only npm", c.Trials[0].XNNPACK, c.Trials[2].XNNPACK)
	}
	if c.Lib.Path() != c.Trials[c.Index].Library {
		t.Fatalf("chosen library %s, trial %d is %s", c.Lib.Path(), c.Index, c.Trials[c.Index].Library)
	}
	t.Logf("demo, 1 thread: sid %s %.2f ms, npm %s %.2f ms (%s): chose %s",
		c.Trials[0].Version, c.Trials[0].Median, c.Trials[2].Version, c.Trials[2].Median, c.Trials[2].XNNPACK, c.Trials[c.Index].Version)
	if err := c.It.Invoke(); err != nil {
		t.Fatalf("the chosen interpreter must run: %v", err)
	}

	// One working library: nothing is timed.
	one, err := tflite.Choose([]string{npmPath}, data, tflite.Options{Threads: 1}, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { one.It.Close(); one.Model.Close() }()
	if one.Index != 0 || one.Trials[0].Invokes != 0 {
		t.Fatalf("single candidate %+v: want it chosen untimed", one.Trials)
	}

	_, err = tflite.Choose([]string{"/nonexistent/a.so", "/nonexistent/b.so"}, data, tflite.Options{}, 5)
	if !errors.Is(err, tflite.ErrLibraryNotFound) || !strings.Contains(err.Error(), "/nonexistent/a.so") {
		t.Fatalf("no library: %v, want ErrLibraryNotFound naming the first", err)
	}
	_, err = tflite.Choose([]string{sidPath, npmPath}, []byte("not a model"), tflite.Options{}, 5)
	if !errors.Is(err, tflite.ErrBadModel) {
		t.Fatalf("bad model: %v, want ErrBadModel", err)
	}
}

// TestExternalDelegateFailsXNNPACKStays: an external delegate that cannot be applied is
// dropped, and the XNNPACK delegate still runs the model.
func TestExternalDelegateFailsXNNPACKStays(t *testing.T) {
	npm := npmLib(t)
	it := interp(t, npm, readModelFile(t, "testdata/models/demo.tflite"), tflite.Options{Threads: 1, Delegate: buildFakeDelegate(t, "1")})
	if it.UsesDelegate() || it.DelegateError() == nil || !strings.Contains(it.DelegateError().Error(), "cannot apply delegate") {
		t.Fatalf("external delegate: in use %v, error %v; want dropped with the reason", it.UsesDelegate(), it.DelegateError())
	}
	if it.XNNPACK() == "" {
		t.Fatalf("XNNPACK not in use after the external delegate was dropped: %v", it.XNNPACKError())
	}
	if err := it.Invoke(); err != nil {
		t.Fatal(err)
	}
}
