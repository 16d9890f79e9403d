package infer

import (
	"fmt"
	"math"
	"strings"
)

// Detectors (ModelConfig.Detector): how a detection model's outputs are laid out.
const (
	DetectorAuto           = ""                // told from the output shapes
	DetectorSSDPostProcess = "ssd_postprocess" // TFLite_Detection_PostProcess outputs
	DetectorSSDAnchors     = "ssd_anchors"     // box regressions + scores per generated anchor
	DetectorYOLOv5         = "yolov5"          // [1, N, 5+classes]: cx, cy, w, h, objectness, classes
	DetectorYOLOv8         = "yolov8"          // [1, 4+classes, N]: cx, cy, w, h, classes
)

// Non-maximum suppression algorithms (ModelConfig.NMS).
const (
	NMSAuto     = ""         // the detector family's default
	NMSHard     = "hard"     // drop the lower-scoring box
	NMSWeighted = "weighted" // merge overlapping boxes, weighted by score (MediaPipe's)
)

// DefaultMaxDetections is ModelConfig.MaxDetections when it is 0.
const DefaultMaxDetections = 100

// maxMaxDetections bounds ModelConfig.MaxDetections (the result must stay publishable).
const maxMaxDetections = 10_000

// YOLO's defaults, those of the reference detect scripts.
const (
	yoloScoreThreshold = 0.25
	yoloIoUThreshold   = 0.45
)

// detector decodes a detection model's outputs into detections.
type detector interface {
	// detect decodes one run's outputs; fr maps the input's normalized coordinates to
	// the original image's pixels.
	detect(data [][]byte, fr frame, labels *labelSet) []Detection
}

// newDetector picks the decoder for a detection model: the one cfg.Detector names, or
// the one the output shapes say. It returns the decoder and ModelInfo.Detector's text.
// A layout it cannot tell, or one that does not fit the named detector, is ErrBadConfig
// naming the shapes.
func newDetector(cfg ModelConfig, in TensorInfo, outs []TensorInfo) (detector, string, error) {
	family, why := cfg.Detector, "model.detector"
	if family == DetectorAuto {
		family, why = guessDetector(outs), "auto"
		if family == "" {
			return nil, "", newErr(ErrBadConfig, true, nil,
				"kind detection: cannot tell the detector from the output shapes %s: want TFLite_Detection_PostProcess's 4 outputs ([1,N,4], [1,N], [1,N], [1]), an anchor-based SSD head ([1,N,4+2k] boxes and [1,N,classes] scores), YOLOv5 [1,N,5+classes] or YOLOv8 [1,4+classes,N]; set model.detector or use kind raw",
				shapes(outs))
		}
	}
	switch family {
	case DetectorSSDPostProcess:
		if err := checkPostProcessOutputs(outs); err != nil {
			return nil, "", err
		}
		return ssdPostProcess{outs: outs, threshold: cfg.ScoreThreshold},
			fmt.Sprintf("%s (%s), score %g", family, why, cfg.ScoreThreshold), nil
	case DetectorSSDAnchors:
		return newAnchorHead(cfg, in, outs, why)
	default: // yolov5, yolov8 (withDefaults refused anything else)
		return newYOLOHead(cfg, family, in, outs, why)
	}
}

// guessDetector tells the detector family from the output shapes, "" when it cannot.
func guessDetector(outs []TensorInfo) string {
	switch {
	case checkPostProcessOutputs(outs) == nil:
		return DetectorSSDPostProcess
	case len(outs) == 2:
		if _, _, err := anchorTensors(outs); err == nil {
			return DetectorSSDAnchors
		}
	case len(outs) == 1:
		return yoloLayout(outs[0])
	}
	return ""
}

// shapes lists tensors as "name type[shape]" for error messages.
func shapes(ts []TensorInfo) string {
	if len(ts) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// checkPostProcessOutputs checks for TFLite_Detection_PostProcess's four outputs.
func checkPostProcessOutputs(outs []TensorInfo) error {
	if len(outs) != 4 {
		return newErr(ErrBadConfig, true, nil, "detector %s wants 4 outputs (boxes, classes, scores, count) as TFLite_Detection_PostProcess gives, the model has %d: %s",
			DetectorSSDPostProcess, len(outs), shapes(outs))
	}
	b, c, s, n := outs[0], outs[1], outs[2], outs[3]
	if len(b.Shape) != 3 || b.Shape[0] != 1 || b.Shape[2] != 4 || c.elements() != b.Shape[1] || s.elements() != b.Shape[1] || n.elements() != 1 {
		return newErr(ErrBadConfig, true, nil, "detector %s: outputs %s: want [1,N,4], [1,N], [1,N], [1]", DetectorSSDPostProcess, shapes(outs))
	}
	return nil
}

// frame maps a point in the model input's normalized coordinates (0..1 across the
// input tensor) to the original image's pixels. preprocess stretches the whole image
// over the input, so the map is a per-axis scale; a letterboxing preprocess would add
// its padding here, and nothing else would change.
type frame struct {
	w, h float32 // the original image's size in pixels
}

// imageFrame is the frame of img as preprocess feeds it to the model.
func imageFrame(img *rgbImage) frame {
	return frame{w: float32(img.w), h: float32(img.h)}
}

// box maps a normalized (xmin, ymin, xmax, ymax) box to pixels, ordered and clamped to
// the image. Non-finite coordinates clamp too (NaN to 0): a box is always finite.
func (f frame) box(xmin, ymin, xmax, ymax float32) Box {
	b := Box{XMin: clamp01(xmin) * f.w, YMin: clamp01(ymin) * f.h, XMax: clamp01(xmax) * f.w, YMax: clamp01(ymax) * f.h}
	if b.XMin > b.XMax {
		b.XMin, b.XMax = b.XMax, b.XMin
	}
	if b.YMin > b.YMax {
		b.YMin, b.YMax = b.YMax, b.YMin
	}
	return b
}

// point maps a normalized point to pixels, clamped to the image.
func (f frame) point(x, y float32) Point {
	return Point{X: clamp01(x) * f.w, Y: clamp01(y) * f.h}
}

// clamp01 clamps v to [0, 1]; NaN becomes 0.
func clamp01(v float32) float32 {
	if !(v > 0) {
		return 0
	}
	return min(v, 1)
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// toDetections maps suppressed candidates to detections in the image's pixels.
func toDetections(cands []candidate, fr frame, labels *labelSet, fallback []string) []Detection {
	out := make([]Detection, len(cands))
	for i, c := range cands {
		d := Detection{Class: c.class, Score: c.score, Label: labels.label(c.class), Box: fr.box(c.box[0], c.box[1], c.box[2], c.box[3])}
		if labels == nil && c.class < len(fallback) {
			d.Label = fallback[c.class]
		}
		if len(c.kps) > 0 {
			d.Keypoints = make([]Point, len(c.kps)/2)
			for k := range d.Keypoints {
				d.Keypoints[k] = fr.point(c.kps[2*k], c.kps[2*k+1])
			}
		}
		out[i] = d
	}
	return out
}

// ssdPostProcess reads TFLite_Detection_PostProcess's outputs: boxes (ymin, xmin, ymax,
// xmax, normalized), classes, scores and count, best first; the graph has suppressed.
type ssdPostProcess struct {
	outs      []TensorInfo
	threshold float32
}

func (s ssdPostProcess) detect(data [][]byte, fr frame, labels *labelSet) []Detection {
	boxes := dequantize(s.outs[0], data[0])
	classes := dequantize(s.outs[1], data[1])
	scores := dequantize(s.outs[2], data[2])
	count := 0
	if c := dequantize(s.outs[3], data[3]); len(c) > 0 && finite(c[0]) {
		count = int(min(max(c[0], 0), float32(len(scores))))
	}
	count = min(count, len(scores), len(classes), len(boxes)/4)
	dets := []Detection{}
	for i := range count {
		if !(scores[i] >= s.threshold) { // NaN too
			continue
		}
		ymin, xmin, ymax, xmax := boxes[4*i], boxes[4*i+1], boxes[4*i+2], boxes[4*i+3]
		cls := 0
		if finite(classes[i]) {
			cls = int(min(max(classes[i], 0), maxLabelID))
		}
		dets = append(dets, Detection{Label: labels.label(cls), Class: cls, Score: scores[i], Box: fr.box(xmin, ymin, xmax, ymax)})
	}
	return dets
}

// nmsSettings are the thresholds an NMS-decoded family runs with.
type nmsSettings struct {
	score, iou float32
	weighted   bool
	max        int
}

// resolveNMS fills the family defaults into cfg's zero values.
func resolveNMS(cfg ModelConfig, score, iou float32, weighted bool) nmsSettings {
	s := nmsSettings{score: score, iou: iou, weighted: weighted, max: cfg.MaxDetections}
	if cfg.ScoreThreshold > 0 {
		s.score = cfg.ScoreThreshold
	}
	if cfg.IoUThreshold > 0 {
		s.iou = cfg.IoUThreshold
	}
	switch cfg.NMS {
	case NMSHard:
		s.weighted = false
	case NMSWeighted:
		s.weighted = true
	}
	return s
}

func (s nmsSettings) String() string {
	alg := "hard"
	if s.weighted {
		alg = "weighted"
	}
	return fmt.Sprintf("%s NMS, iou %g, score %g, max %d", alg, s.iou, s.score, s.max)
}
