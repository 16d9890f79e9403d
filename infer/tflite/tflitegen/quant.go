package tflitegen

import "math"

// QuantColorNet is a fully quantized (uint8) color classifier: every kernel runs on
// 8-bit data, unlike ClassifierNet's quantized-I/O variant.
//
//	image uint8 [1,H,W,3] (scale 1/255) → MEAN over H,W (uint8, same scale)
//	→ FULLY_CONNECTED uint8 weights, int32 bias → logits uint8 → SOFTMAX uint8 (scale 1/256)
//
// The classes are ColorLabels, scored like NewColorClassifier's.
type QuantColorNet struct {
	H, W        int
	Weights     []uint8 // [classes][3], scale WeightScale, zero point 0
	Bias        []int32 // [classes], scale 1/255·WeightScale
	WeightScale float32
	LogitScale  float32
	LogitZero   int64
}

// NewQuantColorNet makes the network for h×w images.
func NewQuantColorNet(h, w int) *QuantColorNet {
	const gain = 12
	n := &QuantColorNet{H: h, W: w, WeightScale: 2 * gain / 255.0}
	k := len(colorProtos)
	n.Weights = make([]uint8, k*3)
	n.Bias = make([]int32, k)
	biasScale := float64(n.WeightScale) / 255
	lo, hi := 0.0, 0.0
	for i, p := range colorProtos {
		var pp float64
		for c := range 3 {
			n.Weights[i*3+c] = uint8(math.Round(float64(p[c]) * 255)) // 2·gain·p / WeightScale
			pp += float64(p[c] * p[c])
		}
		n.Bias[i] = int32(math.Round(-gain * pp / biasScale))
		lo = min(lo, -gain*pp)
		hi = max(hi, 2*gain*3-gain*pp)
	}
	n.LogitScale = float32((hi - lo) / 255)
	n.LogitZero = int64(math.Round(-lo / float64(n.LogitScale)))
	return n
}

// Model serializes the network.
func (n *QuantColorNet) Model() []byte {
	g := NewGraph("inferq quantized color classifier")
	k := len(colorProtos)
	px := &Quant{Scale: 1.0 / 255}
	in := g.Tensor("image", TypeUInt8, px, 1, n.H, n.W, 3)
	mean := g.Tensor("mean", TypeUInt8, px, 1, 3)
	g.Mean(in, g.ConstInt32("mean/axes", []int32{1, 2}, 2), mean, false)
	logits := g.Tensor("logits", TypeUInt8, &Quant{Scale: n.LogitScale, ZeroPoint: n.LogitZero}, 1, k)
	g.FullyConnected(mean,
		g.ConstUint8("fc/w", n.Weights, &Quant{Scale: n.WeightScale}, k, 3),
		g.ConstInt32Q("fc/b", n.Bias, &Quant{Scale: n.WeightScale / 255}, k),
		logits, ActNone)
	probs := g.Tensor("probs", TypeUInt8, &Quant{Scale: 1.0 / 256}, 1, k)
	g.Softmax(logits, probs)
	g.SetIO([]int32{in}, []int32{probs})
	return g.Bytes()
}

// Forward computes the class probabilities in float from the dequantized weights, for
// comparison with the quantized kernels (expect differences of a few 1/256 steps).
func (n *QuantColorNet) Forward(pixels []uint8) []float32 {
	var mean [3]float64
	for i, p := range pixels {
		mean[i%3] += float64(p)
	}
	for c := range mean {
		mean[c] /= float64(len(pixels) / 3)
		mean[c] = math.Round(mean[c]) / 255 // MEAN's uint8 output
	}
	k := len(colorProtos)
	logits := make([]float64, k)
	maxL := math.Inf(-1)
	for i := range k {
		s := float64(n.Bias[i]) * float64(n.WeightScale) / 255
		for c := range 3 {
			s += mean[c] * float64(n.Weights[i*3+c]) * float64(n.WeightScale)
		}
		logits[i] = s
		maxL = max(maxL, s)
	}
	var sum float64
	for i := range logits {
		logits[i] = math.Exp(logits[i] - maxL)
		sum += logits[i]
	}
	out := make([]float32, k)
	for i := range out {
		out[i] = float32(logits[i] / sum)
	}
	return out
}
