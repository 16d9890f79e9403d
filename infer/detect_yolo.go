package infer

import (
	"fmt"
	"math"
)

// yoloLayout tells a YOLO output's layout from its shape: [1, N, 5+classes] (N candidate
// rows, the longer axis) is YOLOv5's, [1, 4+classes, N] YOLOv8's; "" when it is neither
// or the two axes are equal.
func yoloLayout(t TensorInfo) string {
	if len(t.Shape) != 3 || t.Shape[0] != 1 {
		return ""
	}
	a, b := t.Shape[1], t.Shape[2]
	switch {
	case a > b && b >= 6:
		return DetectorYOLOv5
	case b > a && a >= 5:
		return DetectorYOLOv8
	}
	return ""
}

// yoloHead decodes a YOLO detection output: per candidate a box (centre x, centre y,
// width, height), YOLOv5's objectness, and per-class scores (already sigmoid-activated,
// as the exported graphs give them). Coordinates are either normalized (0..1, as
// TFLite exports give them) or in input pixels: each run tells by the candidates'
// centres, of which a normalized output has none past 1 and a pixel output nearly all.
type yoloHead struct {
	family     string
	t          TensorInfo
	n, classes int
	inW, inH   float32
	objectness bool
	nms        nmsSettings
}

func newYOLOHead(cfg ModelConfig, family string, in TensorInfo, outs []TensorInfo, why string) (detector, string, error) {
	if len(outs) != 1 {
		return nil, "", newErr(ErrBadConfig, true, nil, "detector %s wants 1 output, the model has %d: %s", family, len(outs), shapes(outs))
	}
	t := outs[0]
	if got := yoloLayout(t); got != family {
		want := "[1,N,5+classes] with N > 5+classes"
		if family == DetectorYOLOv8 {
			want = "[1,4+classes,N] with N > 4+classes"
		}
		return nil, "", newErr(ErrBadConfig, true, nil, "detector %s: output %s is not %s", family, t, want)
	}
	h := &yoloHead{family: family, t: t, inW: float32(in.Shape[2]), inH: float32(in.Shape[1])}
	if family == DetectorYOLOv5 {
		h.n, h.classes, h.objectness = t.Shape[1], t.Shape[2]-5, true
	} else {
		h.n, h.classes = t.Shape[2], t.Shape[1]-4
	}
	h.nms = resolveNMS(cfg, yoloScoreThreshold, yoloIoUThreshold, false)
	how := fmt.Sprintf("%s (%s), %d candidates, %d classes, %s", family, why, h.n, h.classes, h.nms)
	return h, how, nil
}

func (y *yoloHead) detect(data [][]byte, fr frame, labels *labelSet) []Detection {
	v := dequantize(y.t, data[0])
	first := 4 // first class score
	if y.objectness {
		first = 5
	}
	stride := first + y.classes
	if len(v) < y.n*stride {
		return []Detection{}
	}
	// at reads attribute k (0..3 box, then objectness and classes) of candidate i.
	at := func(i, k int) float32 { return v[i*stride+k] }
	if y.family == DetectorYOLOv8 {
		at = func(i, k int) float32 { return v[k*y.n+i] }
	}
	cls, best := y.bestClasses(v, first, stride)
	sx, sy := float32(1), float32(1)
	if pixelCentres(y.n, at) {
		sx, sy = 1/y.inW, 1/y.inH
	}
	var cands []candidate
	for i := range y.n {
		score := best[i]
		if y.objectness {
			score *= at(i, 4)
		}
		if cls[i] < 0 || !(score >= y.nms.score) || !finite(score) {
			continue
		}
		cx, cy, w, h := at(i, 0)*sx, at(i, 1)*sy, at(i, 2)*sx, at(i, 3)*sy
		c := candidate{box: [4]float32{cx - w/2, cy - h/2, cx + w/2, cy + h/2}, score: score, class: int(cls[i]), index: i}
		if !finiteBox(c.box) || !(w > 0 && h > 0) {
			continue
		}
		cands = append(cands, c)
	}
	return toDetections(suppress(cands, y.nms), fr, labels, nil)
}

// bestClasses returns each candidate's best class (-1 when no score is a number above
// -Inf) and its score, reading the scores in memory order: class by class for YOLOv8's
// attribute-major layout, candidate by candidate for YOLOv5's.
func (y *yoloHead) bestClasses(v []float32, first, stride int) ([]int32, []float32) {
	cls := make([]int32, y.n)
	best := make([]float32, y.n)
	for i := range cls {
		cls[i], best[i] = -1, float32(math.Inf(-1))
	}
	if y.family == DetectorYOLOv8 {
		for k := range y.classes {
			row := v[(first+k)*y.n : (first+k+1)*y.n]
			for i, s := range row {
				if s > best[i] { // NaN never is
					best[i], cls[i] = s, int32(k)
				}
			}
		}
		return cls, best
	}
	for i := range y.n {
		for k, s := range v[i*stride+first : (i+1)*stride] {
			if s > best[i] {
				best[i], cls[i] = s, int32(k)
			}
		}
	}
	return cls, best
}

// pixelCentres tells whether a YOLO output's coordinates are in input pixels: most
// candidates' centres lie past 1.5 (a normalized output has none past 1).
func pixelCentres(n int, at func(i, k int) float32) bool {
	past := 0
	for i := range n {
		if at(i, 0) > 1.5 || at(i, 1) > 1.5 {
			past++
		}
	}
	return past > n/2
}
