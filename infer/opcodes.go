package infer

import (
	"fmt"
	"sort"
	"strings"

	flatbuffers "github.com/google/flatbuffers/go"
)

// builtinCustom is the schema's BuiltinOperator CUSTOM: the op is named by custom_code.
const builtinCustom = 32

// runtimeCustomOps are custom ops the TFLite C library registers itself (its builtin
// op resolver adds them): a model using them needs nothing more.
var runtimeCustomOps = map[string]bool{
	"TFLite_Detection_PostProcess": true,
	"Mfcc":                         true,
	"AudioSpectrogram":             true,
}

// mediapipeOps are custom ops of MediaPipe's own op resolver.
var mediapipeOps = map[string]bool{
	"Convolution2DTransposeBias":  true,
	"MaxPoolingWithArgmax2D":      true,
	"MaxUnpooling2D":              true,
	"TransformLandmarks":          true,
	"TransformTensorBilinear":     true,
	"Landmarks2TransformMatrix":   true,
	"Landmarks2TransformMatrixV2": true,
}

// customOps returns the custom op names in a .tflite FlatBuffer's operator codes,
// sorted and without repeats. A buffer that is not a readable model gives an error.
func customOps(model []byte) (ops []string, err error) {
	defer func() {
		// The FlatBuffers reader trusts offsets; a damaged file panics it.
		if r := recover(); r != nil {
			ops, err = nil, fmt.Errorf("cannot read the model's operator codes: damaged FlatBuffer")
		}
	}()
	if len(model) < 8 || string(model[4:8]) != "TFL3" {
		return nil, fmt.Errorf("cannot read the model's operator codes: not a TFLite FlatBuffer")
	}
	m := flatbuffers.Table{Bytes: model, Pos: flatbuffers.GetUOffsetT(model)}
	o := flatbuffers.UOffsetT(m.Offset(6)) // Model.operator_codes
	if o == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	vec, n := m.Vector(o), m.VectorLen(o)
	for i := range n {
		oc := flatbuffers.Table{Bytes: model, Pos: m.Indirect(vec + flatbuffers.UOffsetT(i)*4)}
		builtin := int32(0)
		if f := flatbuffers.UOffsetT(oc.Offset(10)); f != 0 { // builtin_code
			builtin = oc.GetInt32(oc.Pos + f)
		}
		if f := flatbuffers.UOffsetT(oc.Offset(4)); f != 0 { // deprecated_builtin_code
			builtin = max(builtin, int32(oc.GetInt8(oc.Pos+f)))
		}
		f := flatbuffers.UOffsetT(oc.Offset(6)) // custom_code
		if builtin != builtinCustom || f == 0 {
			continue
		}
		name := string(oc.ByteVector(oc.Pos + f))
		if !seen[name] {
			seen[name] = true
			ops = append(ops, name)
		}
	}
	sort.Strings(ops)
	return ops, nil
}

// missingOpsHint names the custom ops in model that the TFLite C library does not
// provide, and what does: the reason a model it accepts as a FlatBuffer fails to
// build an interpreter or allocate tensors. "" when there are none (or the file cannot
// be read).
func missingOpsHint(model []byte) string {
	ops, err := customOps(model)
	if err != nil {
		return ""
	}
	var parts []string
	for _, op := range ops {
		if runtimeCustomOps[op] {
			continue
		}
		parts = append(parts, fmt.Sprintf("%q (%s)", op, opProvider(op)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "the model uses custom ops this TFLite runtime does not provide: " + strings.Join(parts, ", ")
}

// opProvider says what provides a custom op.
func opProvider(op string) string {
	switch {
	case op == "edgetpu-custom-op":
		return "compiled for a Coral Edge TPU: it runs only through the Edge TPU delegate, model.delegate: libedgetpu.so.1, with an Edge TPU attached; use the model's CPU version otherwise"
	case mediapipeOps[op]:
		return "a MediaPipe op: it needs MediaPipe's op resolver, which the TFLite C library does not have"
	case strings.HasPrefix(op, "Flex"):
		return "a TensorFlow op: it needs the Select TF ops (Flex) delegate, which this runtime does not have"
	default:
		return "not part of the TFLite C library: it needs the library or delegate it was written for"
	}
}
