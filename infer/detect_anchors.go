package infer

import (
	"fmt"
	"math"
)

// Anchor sets (ModelConfig.Anchors).
const (
	AnchorsAuto               = ""                     // the preset matching the input size and anchor count
	AnchorsMediaPipeFaceShort = "mediapipe_face_short" // face_detection_short_range.tflite, 128×128
	AnchorsMediaPipeFaceFull  = "mediapipe_face_full"  // face_detection_full_range(_sparse).tflite, 192×192
)

// anchor is an SSD anchor box in the input's normalized coordinates.
type anchor struct {
	xc, yc, w, h float32
}

// ssdAnchorOptions are the parameters of MediaPipe's SSD anchor generator
// (SsdAnchorsCalculatorOptions), the part its detectors use: layers grouped by equal
// consecutive strides share one grid of ceil(input/stride) cells, and each cell gets one
// anchor per (scale, aspect ratio) of the group's layers.
type ssdAnchorOptions struct {
	inputW, inputH     int
	minScale, maxScale float32
	offsetX, offsetY   float32
	strides            []int // one per layer
	aspectRatios       []float32
	// interpolatedRatio > 0 adds, per layer, an anchor of that aspect ratio at the
	// geometric mean of the layer's scale and the next layer's (1 after the last).
	interpolatedRatio float32
	// reduceLowest gives the first layer three fixed anchors (ratio 1 at scale 0.1,
	// ratios 2 and 0.5 at its scale) instead of aspectRatios.
	reduceLowest bool
	// fixedSize makes every anchor 1×1: the model regresses sizes directly.
	fixedSize bool
}

// layerScale is layer i's scale, linear from minScale to maxScale over the layers.
func (o ssdAnchorOptions) layerScale(i int) float32 {
	n := len(o.strides)
	if n == 1 {
		return (o.minScale + o.maxScale) / 2
	}
	return o.minScale + (o.maxScale-o.minScale)*float32(i)/float32(n-1)
}

// generate lays out the anchors, grid row by row, in the order the model's outputs use.
func (o ssdAnchorOptions) generate() []anchor {
	var out []anchor
	for first := 0; first < len(o.strides); {
		last := first // layers first..last-1 share a stride
		var scales, ratios []float32
		for last < len(o.strides) && o.strides[last] == o.strides[first] {
			s := o.layerScale(last)
			if last == 0 && o.reduceLowest {
				scales = append(scales, 0.1, s, s)
				ratios = append(ratios, 1, 2, 0.5)
			} else {
				for _, r := range o.aspectRatios {
					scales = append(scales, s)
					ratios = append(ratios, r)
				}
				if o.interpolatedRatio > 0 {
					next := float32(1)
					if last+1 < len(o.strides) {
						next = o.layerScale(last + 1)
					}
					scales = append(scales, float32(math.Sqrt(float64(s*next))))
					ratios = append(ratios, o.interpolatedRatio)
				}
			}
			last++
		}
		stride := o.strides[first]
		rows := (o.inputH + stride - 1) / stride
		cols := (o.inputW + stride - 1) / stride
		for y := range rows {
			for x := range cols {
				for k := range scales {
					a := anchor{xc: (float32(x) + o.offsetX) / float32(cols), yc: (float32(y) + o.offsetY) / float32(rows), w: 1, h: 1}
					if !o.fixedSize {
						r := float32(math.Sqrt(float64(ratios[k])))
						a.w, a.h = scales[k]*r, scales[k]/r
					}
					out = append(out, a)
				}
			}
		}
		first = last
	}
	return out
}

// anchorPreset is a known anchor-based head: its anchors and how its outputs decode
// (MediaPipe's TensorsToDetectionsCalculatorOptions and graph thresholds).
type anchorPreset struct {
	name    string
	anchors ssdAnchorOptions
	// scale divides the regressed x, y, w, h (MediaPipe's x/y/w/h_scale).
	scale [4]float32
	// xFirst: regressions are x, y, w, h (MediaPipe's reverse_output_order), not y, x, h, w.
	xFirst bool
	// expSize: w and h are exp(regression/scale) × anchor size, not linear.
	expSize bool
	// scoreClip bounds the logits before the sigmoid.
	scoreClip float32
	// The graph's minimum score and suppression overlap, the defaults here.
	score, iou float32
	weighted   bool
	// normalize is the float input range the model was trained on.
	normalize string
	// labels name the classes when no labels file is given.
	labels []string
}

// anchorPresets are MediaPipe's face detectors, with the options of MediaPipe's
// face_detection_short_range_common.pbtxt and face_detection_full_range_common.pbtxt
// graphs (MediaPipe's ImageToTensorCalculator feeds them [-1, 1]).
var anchorPresets = []anchorPreset{
	{
		name: AnchorsMediaPipeFaceShort,
		anchors: ssdAnchorOptions{inputW: 128, inputH: 128, minScale: 0.1484375, maxScale: 0.75,
			offsetX: 0.5, offsetY: 0.5, strides: []int{8, 16, 16, 16}, aspectRatios: []float32{1},
			interpolatedRatio: 1, fixedSize: true},
		scale: [4]float32{128, 128, 128, 128}, xFirst: true, scoreClip: 100,
		score: 0.5, iou: 0.3, weighted: true, normalize: NormalizeM11, labels: []string{"face"},
	},
	{
		name: AnchorsMediaPipeFaceFull,
		anchors: ssdAnchorOptions{inputW: 192, inputH: 192, minScale: 0.1484375, maxScale: 0.75,
			offsetX: 0.5, offsetY: 0.5, strides: []int{4}, aspectRatios: []float32{1},
			interpolatedRatio: 0, fixedSize: true},
		scale: [4]float32{192, 192, 192, 192}, xFirst: true, scoreClip: 100,
		score: 0.6, iou: 0.3, weighted: true, normalize: NormalizeM11, labels: []string{"face"},
	},
}

func anchorPresetByName(name string) *anchorPreset {
	for i := range anchorPresets {
		if anchorPresets[i].name == name {
			return &anchorPresets[i]
		}
	}
	return nil
}

func anchorPresetNames() []string {
	names := make([]string, len(anchorPresets))
	for i, p := range anchorPresets {
		names[i] = p.name
	}
	return names
}

// anchorTensors finds an anchor head's box and score outputs: two [1,N,…] tensors with
// the same N, boxes with 4 coordinates plus 2 per keypoint, scores with one logit per
// class (or [1,N]). When both could be boxes, the first output is (MediaPipe's order).
func anchorTensors(outs []TensorInfo) (boxes, scores int, err error) {
	fits := func(b, s TensorInfo) bool {
		if len(b.Shape) != 3 || b.Shape[0] != 1 || b.Shape[1] < 1 || b.Shape[2] < 4 || b.Shape[2]%2 != 0 {
			return false
		}
		n := b.Shape[1]
		switch len(s.Shape) {
		case 2:
			return s.Shape[0] == 1 && s.Shape[1] == n
		case 3:
			return s.Shape[0] == 1 && s.Shape[1] == n && s.Shape[2] >= 1
		}
		return false
	}
	if len(outs) == 2 {
		switch {
		case fits(outs[0], outs[1]):
			return 0, 1, nil
		case fits(outs[1], outs[0]):
			return 1, 0, nil
		}
	}
	return 0, 0, newErr(ErrBadConfig, true, nil, "detector %s: outputs %s: want boxes [1,N,4+2k] and scores [1,N,classes]", DetectorSSDAnchors, shapes(outs))
}

// anchorHead decodes an anchor-based SSD head (MediaPipe/BlazeFace).
type anchorHead struct {
	p            *anchorPreset
	anchors      []anchor
	boxT, scoreT TensorInfo
	boxI, scoreI int
	coords, kps  int // values per box; keypoints per box
	classes      int
	nms          nmsSettings
}

func newAnchorHead(cfg ModelConfig, in TensorInfo, outs []TensorInfo, why string) (detector, string, error) {
	bi, si, err := anchorTensors(outs)
	if err != nil {
		return nil, "", err
	}
	b, s := outs[bi], outs[si]
	n := b.Shape[1]
	h, w := in.Shape[1], in.Shape[2]
	p := anchorPresetByName(cfg.Anchors)
	anchorsWhy := "model.anchors"
	if p == nil {
		anchorsWhy = "auto"
		for i := range anchorPresets {
			c := &anchorPresets[i]
			if c.anchors.inputW == w && c.anchors.inputH == h && len(c.anchors.generate()) == n {
				p = c
				break
			}
		}
		if p == nil {
			return nil, "", newErr(ErrBadConfig, true, nil, "detector %s: no anchor preset fits input %dx%d with %d boxes (outputs %s); known: %s",
				DetectorSSDAnchors, w, h, n, shapes(outs), presetList())
		}
	}
	anchors := p.anchors.generate()
	if len(anchors) != n {
		return nil, "", newErr(ErrBadConfig, true, nil, "model.anchors %s has %d anchors but the model's outputs %s have %d boxes",
			p.name, len(anchors), shapes(outs), n)
	}
	classes := 1
	if len(s.Shape) == 3 {
		classes = s.Shape[2]
	}
	head := &anchorHead{p: p, anchors: anchors, boxT: b, scoreT: s, boxI: bi, scoreI: si,
		coords: b.Shape[2], kps: (b.Shape[2] - 4) / 2, classes: classes,
		nms: resolveNMS(cfg, p.score, p.iou, p.weighted)}
	how := fmt.Sprintf("%s %s (%d anchors; %s) (%s), %d keypoints, %s", DetectorSSDAnchors, p.name, n, anchorsWhy, why, head.kps, head.nms)
	return head, how, nil
}

func presetList() string {
	s := ""
	for i, p := range anchorPresets {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s (%dx%d, %d anchors)", p.name, p.anchors.inputW, p.anchors.inputH, len(p.anchors.generate()))
	}
	return s
}

// sigmoid is the logistic function with the logit clipped to ±clip (0: no clip).
func sigmoid(x, clip float32) float32 {
	if clip > 0 {
		x = min(max(x, -clip), clip)
	}
	return float32(1 / (1 + math.Exp(-float64(x))))
}

func (a *anchorHead) detect(data [][]byte, fr frame, labels *labelSet) []Detection {
	raw := dequantize(a.boxT, data[a.boxI])
	logits := dequantize(a.scoreT, data[a.scoreI])
	p := a.p
	var cands []candidate
	for i, an := range a.anchors {
		if (i+1)*a.classes > len(logits) || (i+1)*a.coords > len(raw) {
			break
		}
		// Best class by logit (the sigmoid is monotonic); NaN logits never win.
		cls, best := -1, float32(0)
		for k, l := range logits[i*a.classes : (i+1)*a.classes] {
			if finite(l) && (cls < 0 || l > best) {
				cls, best = k, l
			}
		}
		if cls < 0 {
			continue
		}
		score := sigmoid(best, p.scoreClip)
		if !(score >= a.nms.score) {
			continue
		}
		r := raw[i*a.coords : (i+1)*a.coords]
		x, y, w, h := r[1], r[0], r[3], r[2]
		if p.xFirst {
			x, y, w, h = r[0], r[1], r[2], r[3]
		}
		xc := x/p.scale[0]*an.w + an.xc
		yc := y/p.scale[1]*an.h + an.yc
		if p.expSize {
			w = float32(math.Exp(float64(w/p.scale[2]))) * an.w
			h = float32(math.Exp(float64(h/p.scale[3]))) * an.h
		} else {
			w = w / p.scale[2] * an.w
			h = h / p.scale[3] * an.h
		}
		c := candidate{box: [4]float32{xc - w/2, yc - h/2, xc + w/2, yc + h/2}, score: score, class: cls, index: i}
		// MediaPipe drops boxes of negative size; empty ones are no object either, and
		// non-finite ones cannot be placed.
		if !(w > 0 && h > 0) || !finiteBox(c.box) {
			continue
		}
		if a.kps > 0 {
			c.kps = make([]float32, 2*a.kps)
			for k := range a.kps {
				kx, ky := r[4+2*k+1], r[4+2*k]
				if p.xFirst {
					kx, ky = r[4+2*k], r[4+2*k+1]
				}
				c.kps[2*k] = kx/p.scale[0]*an.w + an.xc
				c.kps[2*k+1] = ky/p.scale[1]*an.h + an.yc
			}
		}
		cands = append(cands, c)
	}
	return toDetections(suppress(cands, a.nms), fr, labels, p.labels)
}

func finiteBox(b [4]float32) bool {
	return finite(b[0]) && finite(b[1]) && finite(b[2]) && finite(b[3])
}
