package tflite_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// TestClassifierMatchesReference checks TFLite's output of a generated classifier against
// the pure-Go forward pass.
func TestClassifierMatchesReference(t *testing.T) {
	lib := openLib(t)
	net := tflitegen.NewClassifierNet(64, 48, 8, 16, 10, 1)
	m, err := lib.NewModel(net.Model())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	it, err := lib.NewInterpreter(m, tflite.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	r := rand.New(rand.NewPCG(7, 7))
	in := make([]float32, 64*48*3)
	for i := range in {
		in[i] = r.Float32()
	}
	if err := it.Inputs()[0].CopyFrom(floatBytes(in)); err != nil {
		t.Fatal(err)
	}
	if err := it.Invoke(); err != nil {
		t.Fatal(err)
	}
	got, want := floats(it.Outputs()[0].Bytes()), net.Forward(in)
	if len(got) != len(want) {
		t.Fatalf("got %d outputs, want %d", len(got), len(want))
	}
	var sum float64
	for i := range want {
		sum += float64(got[i])
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Errorf("class %d: got %.6f want %.6f", i, got[i], want[i])
		}
	}
	if math.Abs(sum-1) > 1e-4 {
		t.Errorf("softmax sum got %v want 1", sum)
	}
}

// TestCancel cancels a long invoke from another goroutine.
func TestCancel(t *testing.T) {
	lib := openLib(t)
	net := tflitegen.NewClassifierNet(640, 640, 32, 256, 10, 2) // ~ seconds per invoke
	m, err := lib.NewModel(net.Model())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	it, err := lib.NewInterpreter(m, tflite.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(20 * time.Millisecond)
		it.Cancel()
	}()
	err = it.Invoke()
	wg.Wait()
	if !errors.Is(err, tflite.ErrCancelled) {
		t.Fatalf("got %v, want ErrCancelled", err)
	}
	// The interpreter stays usable after a cancelled run.
	if err := it.Invoke(); err != nil {
		t.Fatalf("invoke after cancel: %v", err)
	}
}

// TestDelegateFallback names delegates that cannot load; the interpreter must run on the
// CPU and say why.
func TestDelegateFallback(t *testing.T) {
	lib := openLib(t)
	notDelegate := lib.Path() // a real shared library that is not a TFLite delegate
	garbage := t.TempDir() + "/libgarbage.so"
	if err := os.WriteFile(garbage, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/nonexistent/libedgetpu.so.1", garbage, notDelegate} {
		t.Run(path, func(t *testing.T) {
			m, err := lib.NewModel(tflitegen.Tiny())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			it, err := lib.NewInterpreter(m, tflite.Options{Delegate: path, DelegateOptions: map[string]string{"device": "usb"}})
			if err != nil {
				t.Fatalf("got %v, want a CPU fallback", err)
			}
			defer it.Close()
			if it.UsesDelegate() || it.DelegateError() == nil {
				t.Fatalf("UsesDelegate %v DelegateError %v, want false and an error", it.UsesDelegate(), it.DelegateError())
			}
			if err := it.Invoke(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
