package tflitegen

// YOLONet is a detector with a YOLO-shaped output whose every value the test chooses:
// one output [1, N, 5+Classes] (YOLOv5's layout: per candidate cx, cy, w, h, objectness,
// class scores) or, with V8, [1, 4+Classes, N] (YOLOv8's: attribute-major, no
// objectness). The output is Base + Gain·(r, g, b), where (r, g, b) is the image's mean
// color as fed to the model (MEAN, then one FULLY_CONNECTED layer, then RESHAPE), so a
// test can make candidates depend on the picture.
type YOLONet struct {
	H, W       int // input size
	N, Classes int // candidates, classes
	V8         bool
	Base       []float32 // the output for an all-zero input, in the output's layout
	Gain       []float32 // [len(Base)][3]: each output value's weight on mean r, g, b
}

// NewYOLONet makes a YOLONet with every output value 0.
func NewYOLONet(h, w, n, classes int, v8 bool) *YOLONet {
	y := &YOLONet{H: h, W: w, N: n, Classes: classes, V8: v8}
	y.Base = make([]float32, n*y.Attrs())
	y.Gain = make([]float32, 3*len(y.Base))
	return y
}

// Attrs is the number of values per candidate: 4 box values, objectness for YOLOv5,
// then one score per class.
func (y *YOLONet) Attrs() int {
	if y.V8 {
		return 4 + y.Classes
	}
	return 5 + y.Classes
}

// Shape is the output's shape.
func (y *YOLONet) Shape() []int {
	if y.V8 {
		return []int{1, y.Attrs(), y.N}
	}
	return []int{1, y.N, y.Attrs()}
}

// Index is the position of attribute k of candidate i in the output.
func (y *YOLONet) Index(i, k int) int {
	if y.V8 {
		return k*y.N + i
	}
	return i*y.Attrs() + k
}

// Candidate sets candidate i's base values: its box (cx, cy, w, h), its objectness
// (ignored for YOLOv8) and its class scores.
func (y *YOLONet) Candidate(i int, box [4]float32, obj float32, scores ...float32) {
	for k, v := range box {
		y.Base[y.Index(i, k)] = v
	}
	first := 4
	if !y.V8 {
		y.Base[y.Index(i, 4)] = obj
		first = 5
	}
	for c, s := range scores {
		y.Base[y.Index(i, first+c)] = s
	}
}

// ClassGain makes candidate i's score of class c grow by g times the mean of channel ch.
func (y *YOLONet) ClassGain(i, c, ch int, g float32) {
	first := 5
	if y.V8 {
		first = 4
	}
	y.Gain[3*y.Index(i, first+c)+ch] = g
}

// Forward is the output for an image of mean color rgb (as fed: after normalization).
func (y *YOLONet) Forward(rgb [3]float32) []float32 {
	out := make([]float32, len(y.Base))
	for j := range out {
		out[j] = y.Base[j] + y.Gain[3*j]*rgb[0] + y.Gain[3*j+1]*rgb[1] + y.Gain[3*j+2]*rgb[2]
	}
	return out
}

// Model serializes the detector.
func (y *YOLONet) Model() []byte {
	g := NewGraph("inferq test YOLO-shaped detector")
	l := len(y.Base)
	in := g.Tensor("images", TypeFloat32, nil, 1, y.H, y.W, 3)
	mean := g.Tensor("mean", TypeFloat32, nil, 1, 3)
	g.Mean(in, g.ConstInt32("mean/axes", []int32{1, 2}, 2), mean, false)
	flat := g.Tensor("head", TypeFloat32, nil, 1, l)
	g.FullyConnected(mean, g.ConstFloat("head/w", y.Gain, l, 3), g.ConstFloat("head/b", y.Base, l), flat, ActNone)
	s := y.Shape()
	out := g.Tensor("output0", TypeFloat32, nil, s...)
	g.Reshape(flat, out, s...)
	g.SetIO([]int32{in}, []int32{out})
	return g.Bytes()
}
