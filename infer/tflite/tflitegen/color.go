package tflitegen

// ColorLabels are the classes of NewColorClassifier and NewQuantColorNet, in order.
func ColorLabels() []string {
	return []string{"red", "green", "blue", "yellow", "cyan", "magenta", "white", "black", "gray"}
}

var colorProtos = [][3]float32{
	{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 1}, {0, 0, 0}, {0.5, 0.5, 0.5},
}

// NewColorClassifier is a ClassifierNet of the usual shape and cost (with h=w=224, c1=16,
// c2=160: about 80 MFLOPs) whose weights make it useful for a demo: the convolutions
// pass the (0_1-normalized) colors through as local averages, MEAN gives the image's
// mean color m, and the FULLY_CONNECTED layer scores each class k of ColorLabels by
// gain·(2·m·p_k − |p_k|²), i.e. −gain·|m − p_k|² up to a constant: the softmax favours
// the prototype color nearest to the mean color.
func NewColorClassifier(h, w, c1, c2 int) *ClassifierNet {
	n := &ClassifierNet{H: h, W: w, C1: c1, C2: c2, Classes: len(colorProtos)}
	n.Conv1W = make([]float32, c1*27)
	n.Conv1B = make([]float32, c1)
	n.DWW = make([]float32, 9*c1)
	n.DWB = make([]float32, c1)
	n.PWW = make([]float32, c2*c1)
	n.PWB = make([]float32, c2)
	n.FCW = make([]float32, n.Classes*c2)
	n.FCB = make([]float32, n.Classes)
	for c := range 3 {
		for k := range 9 {
			n.Conv1W[(c*9+k)*3+c] = 1.0 / 9 // OHWI: output c reads input channel c
			n.DWW[k*c1+c] = 1.0 / 9
		}
		n.PWW[c*c1+c] = 1
	}
	const gain = 12
	for k, p := range colorProtos {
		var pp float32
		for c := range 3 {
			n.FCW[k*c2+c] = 2 * gain * p[c]
			pp += p[c] * p[c]
		}
		n.FCB[k] = -gain * pp
	}
	return n
}
