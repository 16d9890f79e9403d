package tflite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Sentinel errors callers branch on.
var (
	// ErrLibraryNotFound: no TFLite C library could be loaded.
	ErrLibraryNotFound = errors.New("tensorflow lite library not found")
	// ErrSymbol: the library lacks a function this package needs.
	ErrSymbol = errors.New("tensorflow lite library lacks a required symbol")
	// ErrBadModel: the model bytes were rejected by TFLite (not a valid .tflite file,
	// unsupported operator, tensors that cannot be allocated).
	ErrBadModel = errors.New("invalid tensorflow lite model")
	// ErrCancelled: Invoke was cancelled through Interpreter.Cancel.
	ErrCancelled = errors.New("tensorflow lite invoke cancelled")
	// ErrInvoke: Invoke failed for another reason.
	ErrInvoke = errors.New("tensorflow lite invoke failed")
)

// DefaultNames are the library names tried, in order, when Open is given no path.
func DefaultNames() []string {
	return []string{
		"libtensorflowlite_c.so",
		"libtensorflowlite_c.so.2",
		"libtensorflow-lite.so.2.14.1",
		"libtensorflow-lite.so",
	}
}

// status values of TfLiteStatus.
const (
	statusOk        = 0
	statusCancelled = 8
)

type quantParams struct {
	Scale     float32
	ZeroPoint int32
}

// Library is a loaded TFLite C library. It is safe for concurrent use; the library stays
// mapped for the life of the process (dlclose of TFLite is not reliable).
type Library struct {
	path    string
	handle  uintptr
	version string

	fVersion                       func() string
	fModelCreate                   func(data unsafe.Pointer, size uintptr) uintptr
	fModelDelete                   func(m uintptr)
	fOptionsCreate                 func() uintptr
	fOptionsDelete                 func(o uintptr)
	fOptionsSetNumThreads          func(o uintptr, n int32)
	fOptionsAddDelegate            func(o uintptr, d uintptr)
	fOptionsEnableCancellation     func(o uintptr, enable bool) int32 // nil: no cancellation API
	fOptionsSetEnableDelegFallback func(o uintptr, enable bool)
	fInterpreterCreate             func(m, o uintptr) uintptr
	fInterpreterDelete             func(i uintptr)
	fAllocateTensors               func(i uintptr) int32
	fInvoke                        func(i uintptr) int32
	fCancel                        func(i uintptr) int32 // nil: no cancellation API
	fInputCount                    func(i uintptr) int32
	fInputTensor                   func(i uintptr, n int32) uintptr
	fOutputCount                   func(i uintptr) int32
	fOutputTensor                  func(i uintptr, n int32) uintptr
	fTensorType                    func(t uintptr) int32
	fTensorNumDims                 func(t uintptr) int32
	fTensorDim                     func(t uintptr, n int32) int32
	fTensorByteSize                func(t uintptr) uintptr
	fTensorData                    func(t uintptr) unsafe.Pointer
	fTensorName                    func(t uintptr) string
	fTensorQuant                   func(t uintptr) quantParams

	// Optional parts of the C API, bound when the library has them: cancelErr and
	// xnnErr are nil when the part is usable and otherwise say why not.
	cancelErr error
	xnnErr    error
	xnn       xnnpackAPI
	// xnnTestFlags are added to the XNNPACK flags (tests force a delegate that fails).
	xnnTestFlags uint32

	// The error-report callback handed to delegate plugins, made once per Library
	// (purego callbacks are never freed), and the last message it received.
	reporterOnce sync.Once
	reporter     uintptr
	reportMu     sync.Mutex
	report       string
}

// delegateReporter is a C function pointer, void (*)(const char*), that keeps the last
// message a delegate plugin reports.
func (l *Library) delegateReporter() uintptr {
	l.reporterOnce.Do(func() {
		l.reporter = purego.NewCallback(func(msg *byte) {
			var b []byte
			for p := unsafe.Pointer(msg); p != nil && *(*byte)(p) != 0 && len(b) < 1024; p = unsafe.Add(p, 1) {
				b = append(b, *(*byte)(p))
			}
			l.reportMu.Lock()
			l.report = string(b)
			l.reportMu.Unlock()
		})
	})
	return l.reporter
}

func (l *Library) takeDelegateReport() string {
	l.reportMu.Lock()
	defer l.reportMu.Unlock()
	msg := l.report
	l.report = ""
	return msg
}

// Open loads the TFLite C library at path, or, when path is empty, the first of
// DefaultNames that the dynamic loader finds. Opening a library again is cheap (the
// loader keeps it mapped once). The error says every place tried and how to get the
// library.
func Open(path string) (*Library, error) {
	candidates := []string{path}
	if path == "" {
		candidates = DefaultNames()
	}
	var tried []string
	var handle uintptr
	var used string
	for _, c := range candidates {
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil {
			handle, used = h, c
			break
		}
		tried = append(tried, fmt.Sprintf("%s (%v)", c, err))
	}
	if handle == 0 {
		where := "the dynamic loader's search path"
		if lp := os.Getenv("LD_LIBRARY_PATH"); lp != "" {
			where += " and LD_LIBRARY_PATH=" + lp
		}
		return nil, fmt.Errorf("%w: tried %s in %s; install the TensorFlow Lite C library "+
			"(on Debian 12 run packaging/fetch-tflite-runtime.sh DIR and set the runtime dir to DIR; "+
			"elsewhere build libtensorflowlite_c.so from tensorflow/lite/c and set the library path)",
			ErrLibraryNotFound, strings.Join(tried, "; "), where)
	}
	l := &Library{path: used, handle: handle}
	if err := l.bind(); err != nil {
		return nil, err
	}
	l.version = l.fVersion()
	l.xnnErr = l.bindXNNPACK()
	if abs, err := filepath.Abs(used); err == nil && strings.Contains(used, "/") {
		l.path = abs
	}
	return l, nil
}

func (l *Library) bind() error {
	syms := []struct {
		fn   any
		name string
	}{
		{&l.fVersion, "TfLiteVersion"},
		{&l.fModelCreate, "TfLiteModelCreate"},
		{&l.fModelDelete, "TfLiteModelDelete"},
		{&l.fOptionsCreate, "TfLiteInterpreterOptionsCreate"},
		{&l.fOptionsDelete, "TfLiteInterpreterOptionsDelete"},
		{&l.fOptionsSetNumThreads, "TfLiteInterpreterOptionsSetNumThreads"},
		{&l.fOptionsAddDelegate, "TfLiteInterpreterOptionsAddDelegate"},
		{&l.fOptionsSetEnableDelegFallback, "TfLiteInterpreterOptionsSetEnableDelegateFallback"},
		{&l.fInterpreterCreate, "TfLiteInterpreterCreate"},
		{&l.fInterpreterDelete, "TfLiteInterpreterDelete"},
		{&l.fAllocateTensors, "TfLiteInterpreterAllocateTensors"},
		{&l.fInvoke, "TfLiteInterpreterInvoke"},
		{&l.fInputCount, "TfLiteInterpreterGetInputTensorCount"},
		{&l.fInputTensor, "TfLiteInterpreterGetInputTensor"},
		{&l.fOutputCount, "TfLiteInterpreterGetOutputTensorCount"},
		{&l.fOutputTensor, "TfLiteInterpreterGetOutputTensor"},
		{&l.fTensorType, "TfLiteTensorType"},
		{&l.fTensorNumDims, "TfLiteTensorNumDims"},
		{&l.fTensorDim, "TfLiteTensorDim"},
		{&l.fTensorByteSize, "TfLiteTensorByteSize"},
		{&l.fTensorData, "TfLiteTensorData"},
		{&l.fTensorName, "TfLiteTensorName"},
		{&l.fTensorQuant, "TfLiteTensorQuantizationParams"},
	}
	for _, s := range syms {
		addr, err := purego.Dlsym(l.handle, s.name)
		if err != nil || addr == 0 {
			return fmt.Errorf("%w: %s in %s", ErrSymbol, s.name, l.path)
		}
		purego.RegisterFunc(s.fn, addr)
	}
	l.cancelErr = l.bindOptional([]optionalSym{
		{&l.fOptionsEnableCancellation, "TfLiteInterpreterOptionsEnableCancellation"},
		{&l.fCancel, "TfLiteInterpreterCancel"},
	})
	return nil
}

type optionalSym struct {
	fn   any
	name string
}

// bindOptional binds all of syms or none: the error names the first symbol missing.
func (l *Library) bindOptional(syms []optionalSym) error {
	addrs := make([]uintptr, len(syms))
	for i, s := range syms {
		addr, err := purego.Dlsym(l.handle, s.name)
		if err != nil || addr == 0 {
			return fmt.Errorf("%w: %s", ErrSymbol, s.name)
		}
		addrs[i] = addr
	}
	for i, s := range syms {
		purego.RegisterFunc(s.fn, addrs[i])
	}
	return nil
}

// CancelError is nil when the library can cancel a running Invoke
// (TfLiteInterpreterOptionsEnableCancellation and TfLiteInterpreterCancel; Debian's 2.14.1
// has them, Google's 2.9.0 C library does not); otherwise it says what is missing,
// [Interpreter.Cancel] does nothing and an Invoke runs to its end.
func (l *Library) CancelError() error {
	if l.cancelErr == nil {
		return nil
	}
	return fmt.Errorf("TFLite %s (%s) cannot cancel a running invoke: %w", l.version, l.path, l.cancelErr)
}

// XNNPACKError is nil when the library has an XNNPACK delegate this package can create
// (TfLiteXNNPackDelegateCreate with an options layout it knows); otherwise it says why
// not, and interpreters run on TFLite's built-in CPU kernels.
func (l *Library) XNNPACKError() error { return l.xnnErr }

// Path is the library that was loaded (absolute when it was given as a path).
func (l *Library) Path() string { return l.path }

// Version is TfLiteVersion(), e.g. "2.14.1".
func (l *Library) Version() string { return l.version }
