package tflitegen

import (
	"encoding/binary"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"
)

// Tensor element types (schema TensorType).
const (
	TypeFloat32 int8 = 0
	TypeInt32   int8 = 2
	TypeUInt8   int8 = 3
	TypeInt8    int8 = 9
)

// Builtin operator codes (schema BuiltinOperator) used here.
const (
	OpAdd             int32 = 0
	OpConv2D          int32 = 3
	OpDepthwiseConv2D int32 = 4
	OpDequantize      int32 = 6
	OpFullyConnected  int32 = 9
	OpLogistic        int32 = 14
	OpReshape         int32 = 22
	OpSoftmax         int32 = 25
	OpCustom          int32 = 32
	OpMean            int32 = 40
	OpQuantize        int32 = 114
)

// Activations (schema ActivationFunctionType) and paddings (schema Padding).
const (
	ActNone  int8 = 0
	ActRelu  int8 = 1
	ActRelu6 int8 = 3

	PadSame  int8 = 0
	PadValid int8 = 1
)

// builtin options union indices (schema BuiltinOptions).
const (
	optConv2D         = 1
	optDepthwise      = 2
	optFullyConnected = 8
	optSoftmax        = 9
	optReshape        = 17
	optReducer        = 27
)

// Quant is per-tensor quantization.
type Quant struct {
	Scale     float32
	ZeroPoint int64
}

type tensorDef struct {
	name   string
	shape  []int32
	typ    int8
	buffer uint32
	quant  *Quant
}

type opDef struct {
	code          int
	inputs        []int32
	outputs       []int32
	optType       byte
	opts          func(b *flatbuffers.Builder) flatbuffers.UOffsetT
	customOptions []byte
}

type opCode struct {
	builtin int32
	custom  string
}

// Graph accumulates one subgraph; Bytes serializes it as a model.
type Graph struct {
	buffers [][]byte // buffers[0] is the empty sentinel
	tensors []tensorDef
	ops     []opDef
	codes   []opCode
	inputs  []int32
	outputs []int32
	desc    string
	meta    []metaEntry // Model.metadata
}

// metaEntry is a named metadata buffer (schema Metadata).
type metaEntry struct {
	name   string
	buffer uint32
}

// AddMetadata adds a named metadata buffer to the model, as the TFLite metadata
// populator adds "TFLITE_METADATA".
func (g *Graph) AddMetadata(name string, data []byte) {
	g.buffers = append(g.buffers, append([]byte(nil), data...))
	g.meta = append(g.meta, metaEntry{name: name, buffer: uint32(len(g.buffers) - 1)})
}

// NewGraph starts an empty model with a description.
func NewGraph(description string) *Graph {
	return &Graph{buffers: [][]byte{nil}, desc: description}
}

// Tensor adds an activation tensor (no data) and returns its index.
func (g *Graph) Tensor(name string, typ int8, q *Quant, shape ...int) int32 {
	return g.addTensor(name, typ, q, nil, shape)
}

// ConstFloat adds a float32 constant tensor.
func (g *Graph) ConstFloat(name string, data []float32, shape ...int) int32 {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return g.addTensor(name, TypeFloat32, nil, b, shape)
}

// ConstUint8 adds a quantized uint8 constant tensor.
func (g *Graph) ConstUint8(name string, data []uint8, q *Quant, shape ...int) int32 {
	return g.addTensor(name, TypeUInt8, q, append([]byte(nil), data...), shape)
}

// ConstInt32Q adds a quantized int32 constant tensor (a bias).
func (g *Graph) ConstInt32Q(name string, data []int32, q *Quant, shape ...int) int32 {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return g.addTensor(name, TypeInt32, q, b, shape)
}

// ConstInt32 adds an int32 constant tensor.
func (g *Graph) ConstInt32(name string, data []int32, shape ...int) int32 {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return g.addTensor(name, TypeInt32, nil, b, shape)
}

func (g *Graph) addTensor(name string, typ int8, q *Quant, data []byte, shape []int) int32 {
	var buf uint32
	if data != nil {
		g.buffers = append(g.buffers, data)
		buf = uint32(len(g.buffers) - 1)
	} else {
		// Each activation tensor gets its own empty buffer, as the converter does.
		g.buffers = append(g.buffers, nil)
		buf = uint32(len(g.buffers) - 1)
	}
	s := make([]int32, len(shape))
	for i, d := range shape {
		s[i] = int32(d)
	}
	g.tensors = append(g.tensors, tensorDef{name: name, shape: s, typ: typ, buffer: buf, quant: q})
	return int32(len(g.tensors) - 1)
}

// SetIO sets the subgraph's inputs and outputs.
func (g *Graph) SetIO(inputs, outputs []int32) { g.inputs, g.outputs = inputs, outputs }

func (g *Graph) code(builtin int32, custom string) int {
	for i, c := range g.codes {
		if c.builtin == builtin && c.custom == custom {
			return i
		}
	}
	g.codes = append(g.codes, opCode{builtin, custom})
	return len(g.codes) - 1
}

// Conv2D adds a CONV_2D (weights OHWI, bias per output channel).
func (g *Graph) Conv2D(in, w, bias, out int32, stride int, pad, act int8) {
	g.ops = append(g.ops, opDef{code: g.code(OpConv2D, ""), inputs: []int32{in, w, bias}, outputs: []int32{out},
		optType: optConv2D, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(7)
			b.PrependInt8Slot(0, pad, 0)
			b.PrependInt32Slot(1, int32(stride), 0)
			b.PrependInt32Slot(2, int32(stride), 0)
			b.PrependInt8Slot(3, act, 0)
			b.PrependInt32Slot(4, 1, 0) // dilation_w_factor (schema default 1)
			b.PrependInt32Slot(5, 1, 0)
			return b.EndObject()
		}})
}

// DepthwiseConv2D adds a DEPTHWISE_CONV_2D with depth multiplier 1 (weights 1HWC).
func (g *Graph) DepthwiseConv2D(in, w, bias, out int32, stride int, pad, act int8) {
	g.ops = append(g.ops, opDef{code: g.code(OpDepthwiseConv2D, ""), inputs: []int32{in, w, bias}, outputs: []int32{out},
		optType: optDepthwise, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(7)
			b.PrependInt8Slot(0, pad, 0)
			b.PrependInt32Slot(1, int32(stride), 0)
			b.PrependInt32Slot(2, int32(stride), 0)
			b.PrependInt32Slot(3, 1, 0)
			b.PrependInt8Slot(4, act, 0)
			b.PrependInt32Slot(5, 1, 0)
			b.PrependInt32Slot(6, 1, 0)
			return b.EndObject()
		}})
}

// FullyConnected adds a FULLY_CONNECTED (weights [out, in]).
func (g *Graph) FullyConnected(in, w, bias, out int32, act int8) {
	g.ops = append(g.ops, opDef{code: g.code(OpFullyConnected, ""), inputs: []int32{in, w, bias}, outputs: []int32{out},
		optType: optFullyConnected, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(4)
			b.PrependInt8Slot(0, act, 0)
			return b.EndObject()
		}})
}

// Mean adds a MEAN over the constant int32 axes tensor.
func (g *Graph) Mean(in, axes, out int32, keepDims bool) {
	g.ops = append(g.ops, opDef{code: g.code(OpMean, ""), inputs: []int32{in, axes}, outputs: []int32{out},
		optType: optReducer, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(1)
			b.PrependBoolSlot(0, keepDims, false)
			return b.EndObject()
		}})
}

// Softmax adds a SOFTMAX with beta 1.
func (g *Graph) Softmax(in, out int32) {
	g.ops = append(g.ops, opDef{code: g.code(OpSoftmax, ""), inputs: []int32{in}, outputs: []int32{out},
		optType: optSoftmax, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(1)
			b.PrependFloat32Slot(0, 1, 0) // beta (schema default 0 would be wrong here)
			return b.EndObject()
		}})
}

// Reshape adds a RESHAPE to newShape (also given as a constant shape input).
func (g *Graph) Reshape(in, out int32, newShape ...int) {
	s := make([]int32, len(newShape))
	for i, d := range newShape {
		s[i] = int32(d)
	}
	shapeT := g.ConstInt32(g.tensors[out].name+"/shape", s, len(s))
	g.ops = append(g.ops, opDef{code: g.code(OpReshape, ""), inputs: []int32{in, shapeT}, outputs: []int32{out},
		optType: optReshape, opts: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			vec := int32Vector(b, s)
			b.StartObject(1)
			b.PrependUOffsetTSlot(0, vec, 0)
			return b.EndObject()
		}})
}

// Unary adds an operator without options (LOGISTIC, DEQUANTIZE, QUANTIZE, ...).
func (g *Graph) Unary(op int32, in, out int32) {
	g.ops = append(g.ops, opDef{code: g.code(op, ""), inputs: []int32{in}, outputs: []int32{out}})
}

// Custom adds a custom operator with FlexBuffer options.
func (g *Graph) Custom(name string, inputs, outputs []int32, options []byte) {
	g.ops = append(g.ops, opDef{code: g.code(OpCustom, name), inputs: inputs, outputs: outputs, customOptions: options})
}

func int32Vector(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func offsetVector(b *flatbuffers.Builder, v []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependUOffsetT(v[i])
	}
	return b.EndVector(len(v))
}

// Bytes serializes the model.
func (g *Graph) Bytes() []byte {
	b := flatbuffers.NewBuilder(1 << 16)
	// Buffers: data vectors aligned to 16 bytes (force_align: 16).
	bufs := make([]flatbuffers.UOffsetT, len(g.buffers))
	for i, d := range g.buffers {
		var data flatbuffers.UOffsetT
		if len(d) > 0 {
			b.StartVector(1, len(d), 16)
			for j := len(d) - 1; j >= 0; j-- {
				b.PrependByte(d[j])
			}
			data = b.EndVector(len(d))
		}
		b.StartObject(3)
		if len(d) > 0 {
			b.PrependUOffsetTSlot(0, data, 0)
		}
		bufs[i] = b.EndObject()
	}
	tensors := make([]flatbuffers.UOffsetT, len(g.tensors))
	for i, t := range g.tensors {
		name := b.CreateString(t.name)
		shape := int32Vector(b, t.shape)
		var q flatbuffers.UOffsetT
		if t.quant != nil {
			b.StartVector(4, 1, 4)
			b.PrependFloat32(t.quant.Scale)
			scale := b.EndVector(1)
			b.StartVector(8, 1, 8)
			b.PrependInt64(t.quant.ZeroPoint)
			zp := b.EndVector(1)
			b.StartObject(7)
			b.PrependUOffsetTSlot(2, scale, 0)
			b.PrependUOffsetTSlot(3, zp, 0)
			q = b.EndObject()
		}
		b.StartObject(10)
		b.PrependUOffsetTSlot(0, shape, 0)
		b.PrependInt8Slot(1, t.typ, 0)
		b.PrependUint32Slot(2, t.buffer, 0)
		b.PrependUOffsetTSlot(3, name, 0)
		if q != 0 {
			b.PrependUOffsetTSlot(4, q, 0)
		}
		tensors[i] = b.EndObject()
	}
	ops := make([]flatbuffers.UOffsetT, len(g.ops))
	for i, o := range g.ops {
		in := int32Vector(b, o.inputs)
		out := int32Vector(b, o.outputs)
		var opts, custom flatbuffers.UOffsetT
		if o.opts != nil {
			opts = o.opts(b)
		}
		if o.customOptions != nil {
			custom = b.CreateByteVector(o.customOptions)
		}
		b.StartObject(9)
		b.PrependUint32Slot(0, uint32(o.code), 0)
		b.PrependUOffsetTSlot(1, in, 0)
		b.PrependUOffsetTSlot(2, out, 0)
		if o.opts != nil {
			b.PrependByteSlot(3, o.optType, 0)
			b.PrependUOffsetTSlot(4, opts, 0)
		}
		if custom != 0 {
			b.PrependUOffsetTSlot(5, custom, 0)
		}
		ops[i] = b.EndObject()
	}
	codes := make([]flatbuffers.UOffsetT, len(g.codes))
	for i, c := range g.codes {
		var custom flatbuffers.UOffsetT
		if c.custom != "" {
			custom = b.CreateString(c.custom)
		}
		b.StartObject(4)
		dep := c.builtin
		if dep > 127 {
			dep = 127 // PLACEHOLDER_FOR_GREATER_OP_CODES
		}
		b.PrependInt8Slot(0, int8(dep), 0)
		if custom != 0 {
			b.PrependUOffsetTSlot(1, custom, 0)
		}
		b.PrependInt32Slot(2, 1, 0) // version (schema default 1)
		b.PrependInt32Slot(3, c.builtin, 0)
		codes[i] = b.EndObject()
	}
	tv := offsetVector(b, tensors)
	inv := int32Vector(b, g.inputs)
	outv := int32Vector(b, g.outputs)
	opv := offsetVector(b, ops)
	sgName := b.CreateString("main")
	b.StartObject(5)
	b.PrependUOffsetTSlot(0, tv, 0)
	b.PrependUOffsetTSlot(1, inv, 0)
	b.PrependUOffsetTSlot(2, outv, 0)
	b.PrependUOffsetTSlot(3, opv, 0)
	b.PrependUOffsetTSlot(4, sgName, 0)
	sg := b.EndObject()

	codev := offsetVector(b, codes)
	sgv := offsetVector(b, []flatbuffers.UOffsetT{sg})
	desc := b.CreateString(g.desc)
	bufv := offsetVector(b, bufs)
	var metav flatbuffers.UOffsetT
	if len(g.meta) > 0 {
		metas := make([]flatbuffers.UOffsetT, len(g.meta))
		for i, m := range g.meta {
			name := b.CreateString(m.name)
			b.StartObject(2)
			b.PrependUOffsetTSlot(0, name, 0)
			b.PrependUint32Slot(1, m.buffer, 0)
			metas[i] = b.EndObject()
		}
		metav = offsetVector(b, metas)
	}
	b.StartObject(8)
	b.PrependUint32Slot(0, 3, 0) // schema version 3
	b.PrependUOffsetTSlot(1, codev, 0)
	b.PrependUOffsetTSlot(2, sgv, 0)
	b.PrependUOffsetTSlot(3, desc, 0)
	b.PrependUOffsetTSlot(4, bufv, 0)
	if metav != 0 {
		b.PrependUOffsetTSlot(6, metav, 0) // Model.metadata
	}
	model := b.EndObject()
	b.FinishWithFileIdentifier(model, []byte("TFL3"))
	return b.FinishedBytes()
}
