package tflite

import (
	"fmt"
	"strings"
	"unsafe"
)

// xnnpackOptions29 is TfLiteXNNPackDelegateOptions as TFLite 2.9 declares it
// (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h at v2.9.0):
//
//	typedef struct {
//	  int32_t num_threads;
//	  uint32_t flags;
//	  struct TfLiteXNNPackDelegateWeightsCache* weights_cache;
//	} TfLiteXNNPackDelegateOptions;
//
// The struct grew in later releases (2.10 and after add fields), and
// TfLiteXNNPackDelegateOptionsDefault returns it by value: a wrong size is a wrong calling
// convention, not just a wrong field. So the delegate is created only for versions whose
// layout is listed in xnnpackLayouts.
type xnnpackOptions29 struct {
	NumThreads   int32
	Flags        uint32
	WeightsCache uintptr
}

// The C struct is 16 bytes on every 64-bit target (amd64, arm64): 4 + 4 + an 8-byte pointer.
var _ [16]byte = [unsafe.Sizeof(xnnpackOptions29{})]byte{}

// xnnpackLayouts are the TFLite versions (major.minor) whose options layout is known.
var xnnpackLayouts = map[string]bool{"2.9": true}

// Flags of TfLiteXNNPackDelegateOptions in 2.9 (QS8, QU8, FORCE_FP16).
const xnnpackKnownFlags = 0x7

// xnnpackAPI holds the XNNPACK entry points of a library that has them.
type xnnpackAPI struct {
	optionsDefault func() xnnpackOptions29
	create         func(o *xnnpackOptions29) uintptr
	delete         func(d uintptr)
}

// majorMinor is "2.9" for "2.9.0", "2.14" for "2.14.1".
func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}

// bindXNNPACK binds the XNNPACK delegate's C functions when the library exports them and
// its version has a known options layout; the error says why not otherwise.
func (l *Library) bindXNNPACK() error {
	var a xnnpackAPI
	err := l.bindOptional([]optionalSym{
		{&a.optionsDefault, "TfLiteXNNPackDelegateOptionsDefault"},
		{&a.create, "TfLiteXNNPackDelegateCreate"},
		{&a.delete, "TfLiteXNNPackDelegateDelete"},
	})
	if err != nil {
		return fmt.Errorf("TFLite %s (%s) has no XNNPACK delegate: %w", l.version, l.path, err)
	}
	if !xnnpackLayouts[majorMinor(l.version)] {
		return fmt.Errorf("TFLite %s (%s) has an XNNPACK delegate, but inferq knows the layout of its options "+
			"(TfLiteXNNPackDelegateOptions) only for TFLite 2.9; not created", l.version, l.path)
	}
	d := a.optionsDefault()
	if d.Flags&^xnnpackKnownFlags != 0 || d.WeightsCache != 0 {
		return fmt.Errorf("TFLite %s (%s): TfLiteXNNPackDelegateOptionsDefault returned unexpected options "+
			"(flags %#x, weights cache %#x): not the 2.9 layout; XNNPACK not created", l.version, l.path, d.Flags, d.WeightsCache)
	}
	l.xnn = a
	return nil
}

// newXNNPACK creates an XNNPACK delegate using threads threads (TFLite's own rule: no
// thread pool for 1 thread or fewer). It returns the delegate and a description.
func (l *Library) newXNNPACK(threads int) (uintptr, string, error) {
	if l.xnnErr != nil {
		return 0, "", l.xnnErr
	}
	o := l.xnn.optionsDefault()
	o.Flags |= l.xnnTestFlags
	o.NumThreads = 0
	if threads > 1 {
		o.NumThreads = int32(threads)
	}
	d := l.xnn.create(&o)
	if d == 0 {
		return 0, "", fmt.Errorf("TfLiteXNNPackDelegateCreate returned NULL (TFLite %s)", l.version)
	}
	n, unit := max(o.NumThreads, 1), "threads"
	if n == 1 {
		unit = "thread"
	}
	what := fmt.Sprintf("xnnpack (TFLite %s, %d %s, flags %#x", l.version, n, unit, o.Flags)
	if o.Flags&0x3 == 0 {
		what += ": float operators only; quantized ones stay on TFLite's kernels"
	}
	return d, what + ")", nil
}

// freeXNNPACK deletes a delegate made by newXNNPACK.
func (l *Library) freeXNNPACK(d uintptr) {
	if d != 0 {
		l.xnn.delete(d)
	}
}
