package tflitegen

import (
	"math"
	"math/rand/v2"
)

// ClassifierNet is an image classifier:
//
//	input [1,H,W,3] → CONV_2D 3×3 stride 2 VALID (C1, ReLU6)
//	→ DEPTHWISE_CONV_2D 3×3 stride 1 VALID (ReLU6) → CONV_2D 1×1 (C2, ReLU6)
//	→ MEAN over H,W → FULLY_CONNECTED (Classes) → SOFTMAX
//
// With H=W=224, C1=16, C2=160 and 1000 classes it costs about 80 MFLOPs. Quantized I/O
// variants add DEQUANTIZE after a uint8 input and QUANTIZE after the softmax.
type ClassifierNet struct {
	H, W, C1, C2, Classes int
	Conv1W, Conv1B        []float32 // [C1][3][3][3], [C1]
	DWW, DWB              []float32 // [1][3][3][C1], [C1]
	PWW, PWB              []float32 // [C2][1][1][C1], [C2]
	FCW, FCB              []float32 // [Classes][C2], [Classes]
	// QuantIO: uint8 input (scale 1/255... set InputQuant) and uint8 output.
	InputQuant, OutputQuant *Quant
	// Metadata, when set, is written as the model's "TFLITE_METADATA" buffer
	// (ModelMetadata.Bytes).
	Metadata []byte
}

// NewClassifierNet makes a classifier with deterministic pseudo-random weights.
func NewClassifierNet(h, w, c1, c2, classes int, seed uint64) *ClassifierNet {
	r := rand.New(rand.NewPCG(seed, 0x696e66657271))
	fill := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = (r.Float32()*2 - 1) * scale
		}
		return v
	}
	return &ClassifierNet{
		H: h, W: w, C1: c1, C2: c2, Classes: classes,
		Conv1W: fill(c1*27, 0.5), Conv1B: fill(c1, 0.1),
		DWW: fill(9*c1, 0.4), DWB: fill(c1, 0.1),
		PWW: fill(c2*c1, 0.4), PWB: fill(c2, 0.1),
		FCW: fill(classes*c2, 2), FCB: fill(classes, 0.5),
	}
}

// FLOPs is the multiply-add count ×2 of one inference.
func (n *ClassifierNet) FLOPs() int64 {
	h1, w1 := (n.H-3)/2+1, (n.W-3)/2+1
	h2, w2 := h1-2, w1-2
	f := int64(h1*w1*n.C1) * 27 * 2
	f += int64(h2*w2*n.C1) * 9 * 2
	f += int64(h2*w2*n.C2*n.C1) * 2
	f += int64(n.C2*n.Classes) * 2
	return f
}

// Model serializes the network.
func (n *ClassifierNet) Model() []byte {
	g := NewGraph("inferq test classifier")
	h1, w1 := (n.H-3)/2+1, (n.W-3)/2+1
	h2, w2 := h1-2, w1-2
	var graphIn, x int32
	if n.InputQuant != nil {
		graphIn = g.Tensor("image", TypeUInt8, n.InputQuant, 1, n.H, n.W, 3)
		x = g.Tensor("image_f", TypeFloat32, nil, 1, n.H, n.W, 3)
		g.Unary(OpDequantize, graphIn, x)
	} else {
		graphIn = g.Tensor("image", TypeFloat32, nil, 1, n.H, n.W, 3)
		x = graphIn
	}
	c1 := g.Tensor("conv1", TypeFloat32, nil, 1, h1, w1, n.C1)
	g.Conv2D(x, g.ConstFloat("conv1/w", n.Conv1W, n.C1, 3, 3, 3), g.ConstFloat("conv1/b", n.Conv1B, n.C1), c1, 2, PadValid, ActRelu6)
	dw := g.Tensor("dw", TypeFloat32, nil, 1, h2, w2, n.C1)
	g.DepthwiseConv2D(c1, g.ConstFloat("dw/w", n.DWW, 1, 3, 3, n.C1), g.ConstFloat("dw/b", n.DWB, n.C1), dw, 1, PadValid, ActRelu6)
	pw := g.Tensor("pw", TypeFloat32, nil, 1, h2, w2, n.C2)
	g.Conv2D(dw, g.ConstFloat("pw/w", n.PWW, n.C2, 1, 1, n.C1), g.ConstFloat("pw/b", n.PWB, n.C2), pw, 1, PadValid, ActRelu6)
	mean := g.Tensor("mean", TypeFloat32, nil, 1, n.C2)
	g.Mean(pw, g.ConstInt32("mean/axes", []int32{1, 2}, 2), mean, false)
	logits := g.Tensor("logits", TypeFloat32, nil, 1, n.Classes)
	g.FullyConnected(mean, g.ConstFloat("fc/w", n.FCW, n.Classes, n.C2), g.ConstFloat("fc/b", n.FCB, n.Classes), logits, ActNone)
	probs := g.Tensor("probs", TypeFloat32, nil, 1, n.Classes)
	g.Softmax(logits, probs)
	out := probs
	if n.OutputQuant != nil {
		out = g.Tensor("probs_q", TypeUInt8, n.OutputQuant, 1, n.Classes)
		g.Unary(OpQuantize, probs, out)
	}
	g.SetIO([]int32{graphIn}, []int32{out})
	if n.Metadata != nil {
		g.AddMetadata("TFLITE_METADATA", n.Metadata)
	}
	return g.Bytes()
}

func relu6(v float32) float32 { return min(max(v, 0), 6) }

// Forward computes the float network's output in pure Go (no TFLite), on an NHWC float
// input of H×W×3 values (already dequantized for quantized-input variants).
func (n *ClassifierNet) Forward(in []float32) []float32 {
	h1, w1 := (n.H-3)/2+1, (n.W-3)/2+1
	c1 := make([]float32, h1*w1*n.C1)
	for y := range h1 {
		for x := range w1 {
			for o := range n.C1 {
				s := n.Conv1B[o]
				for ky := range 3 {
					for kx := range 3 {
						for c := range 3 {
							s += in[((2*y+ky)*n.W+2*x+kx)*3+c] * n.Conv1W[((o*3+ky)*3+kx)*3+c]
						}
					}
				}
				c1[(y*w1+x)*n.C1+o] = relu6(s)
			}
		}
	}
	h2, w2 := h1-2, w1-2
	dw := make([]float32, h2*w2*n.C1)
	for y := range h2 {
		for x := range w2 {
			for c := range n.C1 {
				s := n.DWB[c]
				for ky := range 3 {
					for kx := range 3 {
						s += c1[((y+ky)*w1+x+kx)*n.C1+c] * n.DWW[(ky*3+kx)*n.C1+c]
					}
				}
				dw[(y*w2+x)*n.C1+c] = relu6(s)
			}
		}
	}
	mean := make([]float64, n.C2)
	for p := range h2 * w2 {
		for o := range n.C2 {
			s := n.PWB[o]
			for c := range n.C1 {
				s += dw[p*n.C1+c] * n.PWW[o*n.C1+c]
			}
			mean[o] += float64(relu6(s))
		}
	}
	logits := make([]float64, n.Classes)
	maxL := math.Inf(-1)
	for k := range n.Classes {
		s := float64(n.FCB[k])
		for o := range n.C2 {
			s += mean[o] / float64(h2*w2) * float64(n.FCW[k*n.C2+o])
		}
		logits[k] = s
		maxL = max(maxL, s)
	}
	var sum float64
	for k := range logits {
		logits[k] = math.Exp(logits[k] - maxL)
		sum += logits[k]
	}
	out := make([]float32, n.Classes)
	for k := range logits {
		out[k] = float32(logits[k] / sum)
	}
	return out
}

// Tiny is a hand-checkable model: input [1,2,2,3] float, output [1,3] float =
// mean over the 4 pixels of each channel (MEAN) times diag(1,2,3) plus (0.5,0,-1)
// (FULLY_CONNECTED). For an all-ones input the output is (1.5, 2, 2).
func Tiny() []byte {
	g := NewGraph("inferq tiny model")
	in := g.Tensor("input", TypeFloat32, nil, 1, 2, 2, 3)
	m := g.Tensor("mean", TypeFloat32, nil, 1, 3)
	g.Mean(in, g.ConstInt32("axes", []int32{1, 2}, 2), m, false)
	out := g.Tensor("output", TypeFloat32, nil, 1, 3)
	g.FullyConnected(m, g.ConstFloat("w", []float32{1, 0, 0, 0, 2, 0, 0, 0, 3}, 3, 3), g.ConstFloat("b", []float32{0.5, 0, -1}, 3), out, ActNone)
	g.SetIO([]int32{in}, []int32{out})
	return g.Bytes()
}
