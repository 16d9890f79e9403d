package tflite

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Model is a TFLite model created from a FlatBuffer.
type Model struct {
	lib  *Library
	ptr  uintptr
	data []byte // TFLite keeps pointers into this buffer: it must outlive ptr.
}

// NewModel verifies data as a .tflite FlatBuffer and creates a model from a private copy.
func (l *Library) NewModel(data []byte) (*Model, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrBadModel)
	}
	// FlatBuffers need 8-byte (buffers: 16-byte) alignment: copy into aligned memory.
	words := make([]uint64, (len(data)+15)/8+1)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	off := int((16 - uintptr(unsafe.Pointer(&buf[0]))%16) % 16)
	buf = buf[off : off+len(data)]
	copy(buf, data)
	ptr := l.fModelCreate(unsafe.Pointer(&buf[0]), uintptr(len(buf)))
	if ptr == 0 {
		return nil, fmt.Errorf("%w: TFLite rejected the FlatBuffer (%d bytes; see the runtime's log for details)", ErrBadModel, len(data))
	}
	return &Model{lib: l, ptr: ptr, data: buf}, nil
}

// Close frees the model. Safe to call twice. Interpreters created from the model must be
// closed first.
func (m *Model) Close() error {
	if m == nil || m.ptr == 0 {
		return nil
	}
	m.lib.fModelDelete(m.ptr)
	m.ptr = 0
	m.data = nil
	return nil
}

// Options configure an interpreter.
type Options struct {
	// Threads is the number of CPU threads TFLite may use; 0 leaves TFLite's default.
	Threads int
	// Delegate is the path of an external delegate shared library (a TFLite external
	// delegate such as libedgetpu.so.1 or a GPU delegate); empty means CPU only.
	Delegate string
	// DelegateOptions are passed to the delegate as key/value options.
	DelegateOptions map[string]string
	// NoXNNPACK leaves out the XNNPACK delegate, which is otherwise created (with Threads
	// threads) wherever the library has one ([Library.XNNPACKError]).
	NoXNNPACK bool
}

// Interpreter runs a model. Not safe for concurrent use except Cancel.
type Interpreter struct {
	lib      *Library
	model    *Model
	ptr      uintptr
	opts     uintptr
	delegate uintptr // the plugin's TfLiteDelegate*, 0 when running on the CPU
	destroy  uintptr // the plugin's tflite_plugin_destroy_delegate
	delErr   error
	xnn      uintptr    // the XNNPACK delegate, 0 when not in use
	xnnWhat  string     // what xnn is (threads, flags)
	xnnErr   error      // why XNNPACK is not in use
	mu       sync.Mutex // guards ptr against Cancel racing Close
	inputs   []*Tensor
	outputs  []*Tensor
}

func cstring(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// NewInterpreter creates an interpreter for m with cancellation enabled (where the library
// can cancel) and allocates its tensors. When opts.Delegate is set but the delegate cannot
// be created or applied, the interpreter runs on the CPU and DelegateError says why. The
// XNNPACK delegate is added after it unless opts.NoXNNPACK; when it cannot be created or
// applied the interpreter runs on TFLite's own kernels and XNNPACKError says why.
func (l *Library) NewInterpreter(m *Model, opts Options) (*Interpreter, error) {
	if m == nil || m.ptr == 0 {
		return nil, fmt.Errorf("%w: model is closed", ErrBadModel)
	}
	if len(opts.DelegateOptions) > 256 {
		return nil, fmt.Errorf("delegate options: %d entries, at most 256", len(opts.DelegateOptions))
	}
	it := &Interpreter{lib: l, model: m}
	if opts.Delegate != "" {
		it.delegate, it.destroy, it.delErr = l.newExternalDelegate(opts.Delegate, opts.DelegateOptions)
	}
	if opts.NoXNNPACK {
		it.xnnErr = fmt.Errorf("xnnpack disabled by the options")
	} else {
		it.xnn, it.xnnWhat, it.xnnErr = l.newXNNPACK(opts.Threads)
	}
	err := it.create(opts)
	if err != nil && it.delegate != 0 {
		// The external delegate was created but could not be applied: retry without it.
		it.delErr = fmt.Errorf("cannot apply delegate %s: %w", opts.Delegate, err)
		it.freeInterp()
		it.freeDelegate()
		err = it.create(opts)
	}
	if err != nil && it.xnn != 0 {
		// XNNPACK could not take the graph: retry on TFLite's own kernels.
		it.xnnErr = fmt.Errorf("cannot apply the XNNPACK delegate: %w", err)
		it.freeInterp()
		it.freeXNNPACK()
		err = it.create(opts)
	}
	if err != nil {
		it.Close()
		return nil, err
	}
	return it, nil
}

// newExternalDelegate loads a TFLite external delegate plugin (libedgetpu, a GPU
// delegate) and creates its delegate through the plugin's own entry points,
// tflite_plugin_create_delegate and tflite_plugin_destroy_delegate, as TFLite's Python
// load_delegate does. (TfLiteExternalDelegateCreate was tried first: when the plugin
// refuses to start, the delegate it returns carries an uninitialized Prepare pointer,
// and applying it jumped into the heap.) It returns the delegate and its destroy
// function, or an error that says why the CPU will be used instead.
func (l *Library) newExternalDelegate(path string, kv map[string]string) (d, destroy uintptr, err error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot load external delegate %s: %v; running on the CPU", path, err)
	}
	var fns [2]uintptr
	for i, sym := range []string{"tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"} {
		a, err := purego.Dlsym(h, sym)
		if err != nil || a == 0 {
			return 0, 0, fmt.Errorf("cannot use %s as an external delegate: it lacks %s (not a TFLite external delegate); running on the CPU", path, sym)
		}
		fns[i] = a
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// NULL-terminated arrays of C strings; the plugin copies what it keeps.
	ck := make([]*byte, len(keys)+1)
	cv := make([]*byte, len(keys)+1)
	for i, k := range keys {
		ck[i], cv[i] = cstring(k), cstring(kv[k])
	}
	r, _, _ := purego.SyscallN(fns[0], uintptr(unsafe.Pointer(&ck[0])), uintptr(unsafe.Pointer(&cv[0])),
		uintptr(len(keys)), l.delegateReporter())
	runtime.KeepAlive(ck)
	runtime.KeepAlive(cv)
	if r == 0 {
		why := ""
		if msg := l.takeDelegateReport(); msg != "" {
			why = ": " + msg
		}
		return 0, 0, fmt.Errorf("external delegate %s refused to start (no device, or bad options %v)%s; running on the CPU", path, keys, why)
	}
	return r, fns[1], nil
}

// freeDelegate destroys the plugin's delegate, if any.
func (it *Interpreter) freeDelegate() {
	if it.delegate != 0 {
		purego.SyscallN(it.destroy, it.delegate)
		it.delegate, it.destroy = 0, 0
	}
}

// freeXNNPACK deletes the XNNPACK delegate, if any.
func (it *Interpreter) freeXNNPACK() {
	if it.xnn != 0 {
		it.lib.freeXNNPACK(it.xnn)
		it.xnn, it.xnnWhat = 0, ""
	}
}

// create makes the interpreter with the delegates it holds (external first, then
// XNNPACK), which must outlive it.
func (it *Interpreter) create(opts Options) error {
	l := it.lib
	it.opts = l.fOptionsCreate()
	if it.opts == 0 {
		return fmt.Errorf("cannot create interpreter options")
	}
	if opts.Threads > 0 {
		l.fOptionsSetNumThreads(it.opts, int32(opts.Threads))
	}
	if l.cancelErr == nil {
		if st := l.fOptionsEnableCancellation(it.opts, true); st != statusOk {
			return fmt.Errorf("cannot enable cancellation: status %d", st)
		}
	}
	for _, d := range []uintptr{it.delegate, it.xnn} {
		if d != 0 {
			l.fOptionsAddDelegate(it.opts, d)
		}
	}
	ptr := l.fInterpreterCreate(it.model.ptr, it.opts)
	if ptr == 0 {
		return fmt.Errorf("%w: cannot create an interpreter (unsupported operator or bad graph; see the runtime's log)", ErrBadModel)
	}
	it.ptr = ptr
	if st := l.fAllocateTensors(ptr); st != statusOk {
		return fmt.Errorf("%w: cannot allocate tensors: status %d", ErrBadModel, st)
	}
	n := l.fInputCount(ptr)
	it.inputs = make([]*Tensor, n)
	for i := range n {
		it.inputs[i] = newTensor(l, l.fInputTensor(ptr, i))
	}
	n = l.fOutputCount(ptr)
	it.outputs = make([]*Tensor, n)
	for i := range n {
		it.outputs[i] = newTensor(l, l.fOutputTensor(ptr, i))
	}
	return nil
}

func (it *Interpreter) freeInterp() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.ptr != 0 {
		it.lib.fInterpreterDelete(it.ptr)
		it.ptr = 0
	}
	if it.opts != 0 {
		it.lib.fOptionsDelete(it.opts)
		it.opts = 0
	}
}

// DelegateError is non-nil when a delegate was requested but the interpreter fell back to
// the CPU; it says why.
func (it *Interpreter) DelegateError() error { return it.delErr }

// UsesDelegate reports whether the configured external delegate is in use.
func (it *Interpreter) UsesDelegate() bool { return it.delegate != 0 }

// XNNPACK describes the XNNPACK delegate in use (TFLite version, threads, flags), or is
// empty when the interpreter runs without it; XNNPACKError then says why.
func (it *Interpreter) XNNPACK() string { return it.xnnWhat }

// XNNPACKError is nil when the XNNPACK delegate is in use, else why not.
func (it *Interpreter) XNNPACKError() error {
	if it.xnn != 0 {
		return nil
	}
	return it.xnnErr
}

// CanCancel reports whether Cancel stops a running Invoke (see [Library.CancelError]).
func (it *Interpreter) CanCancel() bool { return it.lib.cancelErr == nil }

// Inputs are the model's input tensors in order.
func (it *Interpreter) Inputs() []*Tensor { return it.inputs }

// Outputs are the model's output tensors in order.
func (it *Interpreter) Outputs() []*Tensor { return it.outputs }

// Invoke runs the model on the current input tensors. It returns an error wrapping
// ErrCancelled when Cancel was called during the run.
func (it *Interpreter) Invoke() error {
	if it.ptr == 0 {
		return fmt.Errorf("%w: interpreter is closed", ErrInvoke)
	}
	switch st := it.lib.fInvoke(it.ptr); st {
	case statusOk:
		return nil
	case statusCancelled:
		return ErrCancelled
	default:
		return fmt.Errorf("%w: status %d", ErrInvoke, st)
	}
}

// Cancel asks a running Invoke to stop as soon as possible. Safe from any goroutine. It
// does nothing when the library cannot cancel (CanCancel): the Invoke then runs to its end.
func (it *Interpreter) Cancel() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.ptr != 0 && it.lib.cancelErr == nil {
		it.lib.fCancel(it.ptr)
	}
}

// Close frees the interpreter and its delegate. Safe to call twice. It does not close the
// model.
func (it *Interpreter) Close() error {
	if it == nil {
		return nil
	}
	it.freeInterp()
	it.freeDelegate()
	it.freeXNNPACK()
	it.inputs, it.outputs = nil, nil
	return nil
}
