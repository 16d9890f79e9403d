package tflite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/internal/testenv"
)

// TestXNNPACKCannotApply: when the XNNPACK delegate cannot take the graph (2.9.0's QU8
// flag fails at AllocateTensors on the uint8 SSD MobileNet), the interpreter runs on TFLite's own
// kernels and says why.
func TestXNNPACKCannotApply(t *testing.T) {
	dir, set := os.LookupEnv("INFERQ_TFLITE_NPM")
	if !set {
		dir = filepath.Join("..", "..", ".cache", "tflite-npm")
	}
	path, err := FindNPMLibrary(dir)
	testenv.Need(t, "the npm TFLite 2.9.0 library (make tflite-npm)", err)
	lib, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(testmodels.FetchSSD(t).Model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lib.NewModel(data)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lib.xnnTestFlags = 0x2 // TFLITE_XNNPACK_DELEGATE_FLAG_QU8
	defer func() { lib.xnnTestFlags = 0 }()
	it, err := lib.NewInterpreter(m, Options{Threads: 1})
	if err != nil {
		t.Fatalf("got %v, want a fallback to TFLite's kernels", err)
	}
	defer it.Close()
	if it.XNNPACK() != "" || it.XNNPACKError() == nil || !strings.Contains(it.XNNPACKError().Error(), "cannot apply the XNNPACK delegate") {
		t.Fatalf("XNNPACK %q, error %v: want not in use, and why", it.XNNPACK(), it.XNNPACKError())
	}
	if err := it.Invoke(); err != nil {
		t.Fatal(err)
	}
}
