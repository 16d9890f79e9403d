package tflitegen

import "math"

// DetectorNet is an SSD-style detector ending in the TFLite_Detection_PostProcess custom
// operator, so its four outputs are exactly that operator's (boxes [1,N,4] as
// ymin,xmin,ymax,xmax in [0,1]; classes [1,N]; scores [1,N]; count [1]).
//
// The "backbone" is the image's mean color: MEAN over H,W gives (r,g,b), one
// FULLY_CONNECTED layer maps it to the box encodings and another (through LOGISTIC) to
// the class scores of every anchor. With the weights of NewColorDetector the scores of
// class k at every anchor are sigmoid(Gain·(channel k − 0.5)) and the box encodings are
// zero, so boxes equal the anchors: answers can be computed by hand.
type DetectorNet struct {
	H, W, Classes  int
	Anchors        [][4]float32 // (ycenter, xcenter, h, w), normalized
	BoxW, BoxB     []float32    // [A*4][3], [A*4]
	ClsW, ClsB     []float32    // [A*(Classes+1)][3], [A*(Classes+1)] (class 0 = background)
	MaxDetections  int
	ScoreThreshold float32
	IoUThreshold   float32
	YScale, XScale float32
	HScale, WScale float32
}

// NewColorDetector makes a 3-class detector ("red", "green", "blue" as classes 0..2) over
// the given anchors: class k's score at every anchor is sigmoid(gain·(c_k − 0.5)) where
// c_k is the image's mean of channel k in [0,1] (for 0_1 normalization).
func NewColorDetector(h, w int, anchors [][4]float32, gain float32) *DetectorNet {
	a := len(anchors)
	d := &DetectorNet{H: h, W: w, Classes: 3, Anchors: anchors, MaxDetections: 10,
		ScoreThreshold: 0.3, IoUThreshold: 0.5, YScale: 10, XScale: 10, HScale: 5, WScale: 5}
	d.BoxW = make([]float32, a*4*3)
	d.BoxB = make([]float32, a*4)
	n := d.Classes + 1
	d.ClsW = make([]float32, a*n*3)
	d.ClsB = make([]float32, a*n)
	for i := range a {
		d.ClsB[i*n] = -10 // background
		for k := range 3 {
			row := i*n + 1 + k
			d.ClsW[row*3+k] = gain
			d.ClsB[row] = -gain / 2
		}
	}
	return d
}

// Model serializes the detector.
func (d *DetectorNet) Model() []byte {
	g := NewGraph("inferq test detector")
	a, n := len(d.Anchors), d.Classes+1
	in := g.Tensor("image", TypeFloat32, nil, 1, d.H, d.W, 3)
	mean := g.Tensor("mean", TypeFloat32, nil, 1, 3)
	g.Mean(in, g.ConstInt32("mean/axes", []int32{1, 2}, 2), mean, false)
	enc := g.Tensor("box_fc", TypeFloat32, nil, 1, a*4)
	g.FullyConnected(mean, g.ConstFloat("box/w", d.BoxW, a*4, 3), g.ConstFloat("box/b", d.BoxB, a*4), enc, ActNone)
	encR := g.Tensor("box_encodings", TypeFloat32, nil, 1, a, 4)
	g.Reshape(enc, encR, 1, a, 4)
	logit := g.Tensor("cls_fc", TypeFloat32, nil, 1, a*n)
	g.FullyConnected(mean, g.ConstFloat("cls/w", d.ClsW, a*n, 3), g.ConstFloat("cls/b", d.ClsB, a*n), logit, ActNone)
	logitR := g.Tensor("cls_logits", TypeFloat32, nil, 1, a, n)
	g.Reshape(logit, logitR, 1, a, n)
	scores := g.Tensor("class_predictions", TypeFloat32, nil, 1, a, n)
	g.Unary(OpLogistic, logitR, scores)
	anc := make([]float32, 0, 4*a)
	for _, x := range d.Anchors {
		anc = append(anc, x[:]...)
	}
	anchors := g.ConstFloat("anchors", anc, a, 4)
	m := d.MaxDetections
	boxes := g.Tensor("detection_boxes", TypeFloat32, nil, 1, m, 4)
	classes := g.Tensor("detection_classes", TypeFloat32, nil, 1, m)
	sc := g.Tensor("detection_scores", TypeFloat32, nil, 1, m)
	count := g.Tensor("num_detections", TypeFloat32, nil, 1)
	g.Custom("TFLite_Detection_PostProcess", []int32{encR, scores, anchors}, []int32{boxes, classes, sc, count}, FlexMap(map[string]FlexValue{
		"max_detections":            m,
		"max_classes_per_detection": 1,
		"detections_per_class":      m,
		"use_regular_nms":           false,
		"nms_score_threshold":       d.ScoreThreshold,
		"nms_iou_threshold":         d.IoUThreshold,
		"num_classes":               d.Classes,
		"y_scale":                   d.YScale,
		"x_scale":                   d.XScale,
		"h_scale":                   d.HScale,
		"w_scale":                   d.WScale,
	}))
	g.SetIO([]int32{in}, []int32{boxes, classes, sc, count})
	return g.Bytes()
}

// Sigmoid is the logistic function, for computing expected scores.
func Sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
