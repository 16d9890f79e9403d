package infer

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// near reports whether got is within tol of want.
func near(got, want, tol float32) bool {
	return float32(math.Abs(float64(got-want))) <= tol
}

func boxNear(got, want Box, tol float32) bool {
	return near(got.XMin, want.XMin, tol) && near(got.YMin, want.YMin, tol) && near(got.XMax, want.XMax, tol) && near(got.YMax, want.YMax, tol)
}

// TestAnchorGeneration checks MediaPipe's SSD anchor layout against values worked out
// by hand from its options: counts, cell centres, anchors per cell, and sizes from
// scales and aspect ratios.
func TestAnchorGeneration(t *testing.T) {
	short := anchorPresetByName(AnchorsMediaPipeFaceShort).anchors.generate()
	full := anchorPresetByName(AnchorsMediaPipeFaceFull).anchors.generate()
	if len(short) != 896 || len(full) != 2304 {
		t.Fatalf("short range %d anchors, full range %d; want 896 and 2304", len(short), len(full))
	}
	type anchorCase struct {
		name      string
		got, want anchor
	}
	tests := []anchorCase{
		// Short range: stride 8 → 16×16 cells × 2 anchors (ratio 1 and the interpolated
		// one), then strides 16,16,16 merged → 8×8 cells × 6 anchors; all 1×1.
		{"short first", short[0], anchor{xc: 0.5 / 16, yc: 0.5 / 16, w: 1, h: 1}},
		{"short second shares the cell", short[1], anchor{xc: 0.5 / 16, yc: 0.5 / 16, w: 1, h: 1}},
		{"short second cell", short[2], anchor{xc: 1.5 / 16, yc: 0.5 / 16, w: 1, h: 1}},
		{"short second row", short[32], anchor{xc: 0.5 / 16, yc: 1.5 / 16, w: 1, h: 1}},
		{"short last of stride 8", short[511], anchor{xc: 15.5 / 16, yc: 15.5 / 16, w: 1, h: 1}},
		{"short first of stride 16", short[512], anchor{xc: 0.5 / 8, yc: 0.5 / 8, w: 1, h: 1}},
		{"short sixth of the cell", short[517], anchor{xc: 0.5 / 8, yc: 0.5 / 8, w: 1, h: 1}},
		{"short next cell", short[518], anchor{xc: 1.5 / 8, yc: 0.5 / 8, w: 1, h: 1}},
		{"short (4,3)", short[680], anchor{xc: 4.5 / 8, yc: 3.5 / 8, w: 1, h: 1}},
		{"short last", short[895], anchor{xc: 7.5 / 8, yc: 7.5 / 8, w: 1, h: 1}},
		// Full range: stride 4 → 48×48 cells × 1 anchor (no interpolated one).
		{"full first", full[0], anchor{xc: 0.5 / 48, yc: 0.5 / 48, w: 1, h: 1}},
		{"full (1,0)", full[1], anchor{xc: 1.5 / 48, yc: 0.5 / 48, w: 1, h: 1}},
		{"full (0,1)", full[48], anchor{xc: 0.5 / 48, yc: 1.5 / 48, w: 1, h: 1}},
		{"full last", full[2303], anchor{xc: 47.5 / 48, yc: 47.5 / 48, w: 1, h: 1}},
	}
	// Sized anchors: 64×64 input, strides 32 and 64, scales 0.2 and 0.9, ratios 1 and 2,
	// interpolated ratio 1: layer 0 has 2×2 cells of (0.2, r1), (0.2, r2), (√0.18, r1);
	// layer 1 one cell of (0.9, r1), (0.9, r2), (√0.9, r1) (the next scale after the
	// last is 1).
	sized := ssdAnchorOptions{inputW: 64, inputH: 64, minScale: 0.2, maxScale: 0.9, offsetX: 0.5, offsetY: 0.5,
		strides: []int{32, 64}, aspectRatios: []float32{1, 2}, interpolatedRatio: 1}.generate()
	if len(sized) != 15 {
		t.Fatalf("sized anchors: %d, want 15", len(sized))
	}
	tests = append(tests, []anchorCase{
		{"sized ratio 1", sized[0], anchor{xc: 0.25, yc: 0.25, w: 0.2, h: 0.2}},
		{"sized ratio 2", sized[1], anchor{xc: 0.25, yc: 0.25, w: 0.28284271, h: 0.14142136}},
		{"sized interpolated", sized[2], anchor{xc: 0.25, yc: 0.25, w: 0.42426407, h: 0.42426407}},
		{"sized cell (1,1)", sized[9], anchor{xc: 0.75, yc: 0.75, w: 0.2, h: 0.2}},
		{"sized layer 1", sized[12], anchor{xc: 0.5, yc: 0.5, w: 0.9, h: 0.9}},
		{"sized layer 1 ratio 2", sized[13], anchor{xc: 0.5, yc: 0.5, w: 1.2727922, h: 0.63639610}},
		{"sized layer 1 interpolated", sized[14], anchor{xc: 0.5, yc: 0.5, w: 0.94868330, h: 0.94868330}},
	}...)
	// reduce_boxes_in_lowest_layer: the first layer's anchors are (0.1, 1), (s, 2), (s, 0.5).
	reduced := ssdAnchorOptions{inputW: 32, inputH: 32, minScale: 0.2, maxScale: 0.9, offsetX: 0.5, offsetY: 0.5,
		strides: []int{32, 64}, aspectRatios: []float32{1}, reduceLowest: true}.generate()
	if len(reduced) != 4 {
		t.Fatalf("reduced anchors: %d, want 4", len(reduced))
	}
	tests = append(tests, []anchorCase{
		{"reduced 0.1", reduced[0], anchor{xc: 0.5, yc: 0.5, w: 0.1, h: 0.1}},
		{"reduced ratio 2", reduced[1], anchor{xc: 0.5, yc: 0.5, w: 0.28284271, h: 0.14142136}},
		{"reduced ratio 0.5", reduced[2], anchor{xc: 0.5, yc: 0.5, w: 0.14142136, h: 0.28284271}},
		{"reduced layer 1", reduced[3], anchor{xc: 0.5, yc: 0.5, w: 0.9, h: 0.9}},
	}...)
	for _, tc := range tests {
		g, w := tc.got, tc.want
		if !near(g.xc, w.xc, 1e-6) || !near(g.yc, w.yc, 1e-6) || !near(g.w, w.w, 1e-6) || !near(g.h, w.h, 1e-6) {
			t.Errorf("%s: got %+v, want %+v", tc.name, g, w)
		}
	}
}

// faceOutputs is a short-range face head's outputs ([1,896,16] regressions, [1,896,1]
// logits) with a few anchors set.
type faceOutputs struct {
	boxes, logits []float32
}

func newFaceOutputs() *faceOutputs {
	f := &faceOutputs{boxes: make([]float32, 896*16), logits: make([]float32, 896)}
	for i := range f.logits {
		f.logits[i] = -10 // no face
	}
	return f
}

func (f *faceOutputs) set(i int, logit float32, reg ...float32) {
	f.logits[i] = logit
	copy(f.boxes[16*i:], reg)
}

func (f *faceOutputs) tensors() ([]TensorInfo, [][]byte) {
	return []TensorInfo{
			{Name: "regressors", Type: "float32", Shape: []int{1, 896, 16}},
			{Name: "classificators", Type: "float32", Shape: []int{1, 896, 1}},
		},
		[][]byte{f32bytes(f.boxes...), f32bytes(f.logits...)}
}

// TestAnchorHeadDecode decodes a short-range face head's outputs set by hand. Anchor 680
// is cell (4,3) of the stride-16 grid, centre (0.5625, 0.4375); regressions are in input
// pixels (÷128) relative to it. The image is 640×480, stretched onto the 128×128 input.
func TestAnchorHeadDecode(t *testing.T) {
	nan := float32(math.NaN())
	f := newFaceOutputs()
	// Box (0.6625, 0.3875) 0.5×0.4 → x 0.4125..0.9125, y 0.1875..0.5875 → pixels 264..584,
	// 90..282; logit 2 → 0.8808; its keypoints at the anchor centre (360, 210).
	f.set(680, 2, 12.8, -6.4, 64, 51.2)
	// Same cell, shifted right: x 0.4625..0.9625, y 0.2375..0.6375, IoU 0.6495 with the
	// first; logit 1 → 0.7311; first keypoint at the centre + (0.05, 0.05).
	f.set(681, 1, 19.2, 0, 64, 51.2, 6.4, 6.4)
	// Corner anchor 0, centre (1/32, 1/32), 0.1×0.1: clamped to 0..52, 0..39; logit 0.5
	// → 0.6225; keypoints at (20, 15).
	f.set(0, 0.5, 0, 0, 12.8, 12.8)
	f.set(1, -1, 0, 0, 12.8, 12.8)  // 0.2689, under the 0.5 default
	f.set(2, nan, 0, 0, 12.8, 12.8) // not a score
	f.set(3, 5, 0, 0, -10, 12.8)    // negative width: dropped, as MediaPipe does
	f.set(5, 5, 0, 0, 12.8, 0)      // no height: dropped too
	f.set(4, 6, nan, 0, 12.8, 12.8) // a box that cannot be placed
	outs, data := f.tensors()
	fr := frame{w: 640, h: 480}
	in := imageTensor(128, 128)

	type want struct {
		score float32
		box   Box
		kp0   Point
	}
	tests := []struct {
		name string
		cfg  ModelConfig
		want []want
	}{
		{"weighted (default)", ModelConfig{Kind: KindDetection}, []want{
			// Score-weighted mean of the two overlapping boxes, the best one's score.
			{0.8807971, Box{278.51363, 100.88522, 598.51363, 292.88522}, Point{374.51363, 220.88522}},
			{0.6224593, Box{0, 0, 52, 39}, Point{20, 15}},
		}},
		{"hard", ModelConfig{Kind: KindDetection, NMS: NMSHard}, []want{
			{0.8807971, Box{264, 90, 584, 282}, Point{360, 210}},
			{0.6224593, Box{0, 0, 52, 39}, Point{20, 15}},
		}},
		{"iou above the overlap keeps both", ModelConfig{Kind: KindDetection, IoUThreshold: 0.65}, []want{
			{0.8807971, Box{264, 90, 584, 282}, Point{360, 210}},
			{0.7310586, Box{296, 114, 616, 306}, Point{392, 234}},
			{0.6224593, Box{0, 0, 52, 39}, Point{20, 15}},
		}},
		{"score threshold", ModelConfig{Kind: KindDetection, ScoreThreshold: 0.7}, []want{
			{0.8807971, Box{278.51363, 100.88522, 598.51363, 292.88522}, Point{374.51363, 220.88522}},
		}},
		{"max detections", ModelConfig{Kind: KindDetection, MaxDetections: 1}, []want{
			{0.8807971, Box{278.51363, 100.88522, 598.51363, 292.88522}, Point{374.51363, 220.88522}},
		}},
		{"explicit anchors", ModelConfig{Kind: KindDetection, Detector: DetectorSSDAnchors, Anchors: AnchorsMediaPipeFaceShort}, []want{
			{0.8807971, Box{278.51363, 100.88522, 598.51363, 292.88522}, Point{374.51363, 220.88522}},
			{0.6224593, Box{0, 0, 52, 39}, Point{20, 15}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPost(t, tc.cfg, nil, in, outs)
			got := p.det.detect(data, fr, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("%d detections, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if !near(g.Score, w.score, 1e-6) || !boxNear(g.Box, w.box, 1e-3) || g.Class != 0 || g.Label != "face" {
					t.Errorf("detection %d: got %.7f %+v class %d %q, want %.7f %+v class 0 \"face\"", i, g.Score, g.Box, g.Class, g.Label, w.score, w.box)
				}
				if len(g.Keypoints) != 6 || !near(g.Keypoints[0].X, w.kp0.X, 1e-3) || !near(g.Keypoints[0].Y, w.kp0.Y, 1e-3) {
					t.Errorf("detection %d: keypoints %+v, want 6 starting %+v", i, g.Keypoints, w.kp0)
				}
			}
		})
	}
}

// yoloCase builds a YOLO output of 20 candidates and 3 classes: every candidate gets a
// box on a 5×4 grid (as a real head's candidates cover the picture) with zero scores,
// then the listed ones are set. scale multiplies the box values (1: normalized; the
// input size: pixels).
type yoloCand struct {
	i      int
	box    [4]float32 // cx, cy, w, h, normalized
	obj    float32    // YOLOv5 only
	scores [3]float32
}

func yoloOutput(v8 bool, scale float32, cands []yoloCand) (TensorInfo, []byte) {
	const n, classes = 20, 3
	attrs := 5 + classes
	shape := []int{1, n, attrs}
	idx := func(i, k int) int { return i*attrs + k }
	first := 5
	if v8 {
		attrs = 4 + classes
		shape = []int{1, attrs, n}
		idx = func(i, k int) int { return k*n + i }
		first = 4
	}
	v := make([]float32, n*attrs)
	for i := range n {
		box := [4]float32{(float32(i%5) + 0.5) / 5, (float32(i/5) + 0.5) / 4, 0.1, 0.1}
		for k, b := range box {
			v[idx(i, k)] = b * scale
		}
	}
	for _, c := range cands {
		for k, b := range c.box {
			v[idx(c.i, k)] = b * scale
		}
		if !v8 {
			v[idx(c.i, 4)] = c.obj
		}
		for k, s := range c.scores {
			v[idx(c.i, first+k)] = s
		}
	}
	return TensorInfo{Name: "output0", Type: "float32", Shape: shape}, f32bytes(v...)
}

// yoloCands: candidates 0 and 1 overlap (IoU 0.818) with class 0, candidate 2 overlaps
// them with class 1, candidate 3 is class 2 at 0.3, candidate 4 scores under the 0.25
// default, candidate 5 pokes out of the right edge, candidate 6 has objectness 0.5 and
// class 2 at 0.9 (0.45 for YOLOv5; 0.9 for YOLOv8, which has no objectness, after
// candidate 0's equal score: ties go to the earlier candidate).
var yoloCands = []yoloCand{
	{0, [4]float32{0.5, 0.5, 0.2, 0.2}, 1, [3]float32{0.9, 0.1, 0}},
	{1, [4]float32{0.52, 0.5, 0.2, 0.2}, 1, [3]float32{0.8, 0, 0}},
	{2, [4]float32{0.52, 0.5, 0.2, 0.2}, 1, [3]float32{0, 0.7, 0}},
	{3, [4]float32{0.1, 0.1, 0.1, 0.1}, 1, [3]float32{0, 0, 0.3}},
	{4, [4]float32{0.9, 0.9, 0.1, 0.1}, 1, [3]float32{0.2, 0.1, 0}},
	{5, [4]float32{0.95, 0.5, 0.2, 0.2}, 1, [3]float32{0.6, 0, 0}},
	{6, [4]float32{0.3, 0.8, 0.1, 0.1}, 0.5, [3]float32{0, 0, 0.9}},
}

// Expected detections in a 640×480 image (boxes: normalized × 640, × 480).
var (
	yoloC0 = Detection{Class: 0, Score: 0.9, Box: Box{256, 192, 384, 288}}
	yoloC1 = Detection{Class: 0, Score: 0.8, Box: Box{268.8, 192, 396.8, 288}}
	yoloC2 = Detection{Class: 1, Score: 0.7, Box: Box{268.8, 192, 396.8, 288}}
	yoloC3 = Detection{Class: 2, Score: 0.3, Box: Box{32, 24, 96, 72}}
	yoloC5 = Detection{Class: 0, Score: 0.6, Box: Box{544, 192, 640, 288}}
	yoloC6 = func(score float32) Detection {
		return Detection{Class: 2, Score: score, Box: Box{160, 360, 224, 408}}
	}
)

// TestYOLODecode decodes YOLOv5 and YOLOv8 outputs set by hand: class-aware NMS, the
// objectness product, thresholds and the cap, normalized and pixel coordinates, boxes
// in the original (640×480) image's pixels.
func TestYOLODecode(t *testing.T) {
	in := imageTensor(320, 320)
	fr := frame{w: 640, h: 480}
	tests := []struct {
		name  string
		v8    bool
		scale float32
		cfg   ModelConfig
		want  []Detection
	}{
		{"v5", false, 1, ModelConfig{}, []Detection{yoloC0, yoloC2, yoloC5, yoloC6(0.45), yoloC3}},
		{"v8", true, 1, ModelConfig{}, []Detection{yoloC0, yoloC6(0.9), yoloC2, yoloC5, yoloC3}},
		{"v8 pixel coordinates", true, 320, ModelConfig{}, []Detection{yoloC0, yoloC6(0.9), yoloC2, yoloC5, yoloC3}},
		{"v5 pixel coordinates", false, 320, ModelConfig{}, []Detection{yoloC0, yoloC2, yoloC5, yoloC6(0.45), yoloC3}},
		{"v8 explicit", true, 1, ModelConfig{Detector: DetectorYOLOv8}, []Detection{yoloC0, yoloC6(0.9), yoloC2, yoloC5, yoloC3}},
		{"iou 0.9 keeps the overlap", true, 1, ModelConfig{IoUThreshold: 0.9}, []Detection{yoloC0, yoloC6(0.9), yoloC1, yoloC2, yoloC5, yoloC3}},
		{"score 0.65", true, 1, ModelConfig{ScoreThreshold: 0.65}, []Detection{yoloC0, yoloC6(0.9), yoloC2}},
		{"max 2", false, 1, ModelConfig{MaxDetections: 2}, []Detection{yoloC0, yoloC2}},
		{"weighted", false, 1, ModelConfig{NMS: NMSWeighted}, []Detection{
			// c0 absorbs c1 (same class): x 0.4..0.6 and 0.42..0.62 weighted 0.9, 0.8.
			{Class: 0, Score: 0.9, Box: Box{(0.9*256 + 0.8*268.8) / 1.7, 192, (0.9*384 + 0.8*396.8) / 1.7, 288}},
			yoloC2, yoloC5, yoloC6(0.45), yoloC3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, data := yoloOutput(tc.v8, tc.scale, yoloCands)
			cfg := tc.cfg
			cfg.Kind = KindDetection
			p := newTestPost(t, cfg, nil, in, []TensorInfo{out})
			got := p.det.detect([][]byte{data}, fr, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("%d detections, want %d:\n got %+v\nwant %+v", len(got), len(tc.want), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Class != w.Class || !near(g.Score, w.Score, 1e-6) || !boxNear(g.Box, w.Box, 1e-3) || g.Keypoints != nil {
					t.Errorf("detection %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestNMS(t *testing.T) {
	a := [4]float32{0, 0, 2, 2}
	b := [4]float32{1, 0, 3, 2}   // overlaps a by 2 of 6: IoU 1/3
	c := [4]float32{0, 0, 2, 2.2} // IoU with a 4/4.4
	empty := [4]float32{1, 1, 1, 1}
	if got := iou(a, b); !near(got, 1.0/3, 1e-6) {
		t.Errorf("iou(a, b) = %v, want 1/3", got)
	}
	if got := iou(a, empty); got != 0 {
		t.Errorf("iou with an empty box = %v, want 0", got)
	}
	cands := func() []candidate {
		return []candidate{
			{box: b, score: 0.8, index: 0},
			{box: a, score: 0.9, index: 1},
			{box: c, score: 0.7, index: 2},
			{box: c, score: 0.7, index: 3, class: 1},
			{box: empty, score: 0.95, index: 4},
		}
	}
	tests := []struct {
		name string
		s    nmsSettings
		want []int // kept candidates' indexes, in order
	}{
		{"hard 0.5", nmsSettings{iou: 0.5, max: 10}, []int{4, 1, 0, 3}},
		{"hard 0.3 drops b too", nmsSettings{iou: 0.3, max: 10}, []int{4, 1, 3}},
		{"hard max 2", nmsSettings{iou: 0.5, max: 2}, []int{4, 1}},
		// An IoU threshold of 1 suppresses nothing; the weighted loop still ends.
		{"weighted iou 1", nmsSettings{iou: 1, max: 10, weighted: true}, []int{4, 1, 0, 2, 3}},
		{"weighted 0.5", nmsSettings{iou: 0.5, max: 10, weighted: true}, []int{4, 1, 0, 3}},
	}
	for _, tc := range tests {
		got := suppress(cands(), tc.s)
		var idx []int
		for _, g := range got {
			idx = append(idx, g.index)
		}
		if !slices.Equal(idx, tc.want) {
			t.Errorf("%s: kept %v, want %v", tc.name, idx, tc.want)
		}
	}
	// Weighted: a (0.9) absorbs c (0.7): y max (0.9·2 + 0.7·2.2)/1.6 = 2.0875.
	got := suppress(cands(), nmsSettings{iou: 0.5, max: 10, weighted: true})
	if m := got[1]; m.index != 1 || !near(m.box[3], 2.0875, 1e-6) || m.box[0] != 0 || m.box[2] != 2 || m.score != 0.9 {
		t.Errorf("weighted merge: %+v, want a's box with y max 2.0875 and score 0.9", m)
	}
}

// TestDetectorChoice: the detector is told from the output shapes, or named; a layout
// that fits none, or not the one named, is ErrBadConfig naming the shapes.
func TestDetectorChoice(t *testing.T) {
	f := func(shape ...int) TensorInfo { return TensorInfo{Name: "t", Type: "float32", Shape: shape} }
	post := []TensorInfo{f(1, 10, 4), f(1, 10), f(1, 10), f(1)}
	face := []TensorInfo{f(1, 896, 16), f(1, 896, 1)}
	faceSwapped := []TensorInfo{f(1, 896, 1), f(1, 896, 16)}
	full := []TensorInfo{f(1, 2304, 16), f(1, 2304, 1)}
	tests := []struct {
		name    string
		in      TensorInfo
		outs    []TensorInfo
		cfg     ModelConfig
		want    string // start of ModelInfo.Detector, or "" for an error
		errHas  string
		wantErr error
	}{
		{"postprocess", imageTensor(300, 300), post, ModelConfig{}, "ssd_postprocess (auto)", "", nil},
		{"face short", imageTensor(128, 128), face, ModelConfig{}, "ssd_anchors mediapipe_face_short (896 anchors; auto) (auto)", "", nil},
		{"face short outputs swapped", imageTensor(128, 128), faceSwapped, ModelConfig{}, "ssd_anchors mediapipe_face_short", "", nil},
		{"face full", imageTensor(192, 192), full, ModelConfig{}, "ssd_anchors mediapipe_face_full (2304 anchors; auto) (auto)", "", nil},
		{"face named", imageTensor(128, 128), face, ModelConfig{Anchors: AnchorsMediaPipeFaceShort}, "ssd_anchors mediapipe_face_short (896 anchors; model.anchors) (auto)", "", nil},
		{"v5", imageTensor(640, 640), []TensorInfo{f(1, 25200, 85)}, ModelConfig{}, "yolov5 (auto), 25200 candidates, 80 classes, hard NMS, iou 0.45, score 0.25, max 100", "", nil},
		{"v8", imageTensor(640, 640), []TensorInfo{f(1, 84, 8400)}, ModelConfig{}, "yolov8 (auto), 8400 candidates, 80 classes", "", nil},
		{"v8 one class", imageTensor(320, 320), []TensorInfo{f(1, 5, 2100)}, ModelConfig{}, "yolov8 (auto), 2100 candidates, 1 classes", "", nil},
		{"v8 named", imageTensor(640, 640), []TensorInfo{f(1, 84, 8400)}, ModelConfig{Detector: DetectorYOLOv8, IoUThreshold: 0.7, ScoreThreshold: 0.5, NMS: NMSWeighted, MaxDetections: 3}, "yolov8 (model.detector), 8400 candidates, 80 classes, weighted NMS, iou 0.7, score 0.5, max 3", "", nil},
		{"classifier", imageTensor(224, 224), []TensorInfo{f(1, 1001)}, ModelConfig{}, "", "cannot tell the detector from the output shapes t float32[1 1001]", ErrBadConfig},
		{"square yolo", imageTensor(640, 640), []TensorInfo{f(1, 85, 85)}, ModelConfig{}, "", "float32[1 85 85]", ErrBadConfig},
		{"three outputs", imageTensor(640, 640), []TensorInfo{f(1, 10, 4), f(1, 10), f(1, 10)}, ModelConfig{}, "", "float32[1 10 4], t float32[1 10], t float32[1 10]", ErrBadConfig},
		{"anchors of no preset", imageTensor(256, 256), []TensorInfo{f(1, 2944, 18), f(1, 2944, 1)}, ModelConfig{}, "", "no anchor preset fits input 256x256 with 2944 boxes", ErrBadConfig},
		{"preset of another size", imageTensor(192, 192), full, ModelConfig{Anchors: AnchorsMediaPipeFaceShort}, "", "mediapipe_face_short has 896 anchors but the model's outputs", ErrBadConfig},
		{"v5 named on a v8 output", imageTensor(640, 640), []TensorInfo{f(1, 84, 8400)}, ModelConfig{Detector: DetectorYOLOv5}, "", "output t float32[1 84 8400] is not [1,N,5+classes]", ErrBadConfig},
		{"postprocess named on yolo", imageTensor(640, 640), []TensorInfo{f(1, 84, 8400)}, ModelConfig{Detector: DetectorSSDPostProcess}, "", "wants 4 outputs", ErrBadConfig},
		{"anchors named on yolo", imageTensor(640, 640), []TensorInfo{f(1, 84, 8400)}, ModelConfig{Detector: DetectorSSDAnchors}, "", "want boxes [1,N,4+2k]", ErrBadConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Kind, cfg.Path = KindDetection, "m.tflite"
			cfg, err := cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			p, err := newPostprocessor(cfg, nil, tc.in, tc.outs)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !IsPermanent(err) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %v, want a permanent %v saying %q", err, tc.wantErr, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(p.how, tc.want) {
				t.Errorf("detector %q, want it to start %q", p.how, tc.want)
			}
		})
	}
}

// TestDetectionConfig: the detection fields are validated, naming the field.
func TestDetectionConfig(t *testing.T) {
	base := ModelConfig{Path: "m.tflite", Kind: KindDetection}
	got, err := base.withDefaults()
	if err != nil || got.MaxDetections != DefaultMaxDetections || got.IoUThreshold != 0 {
		t.Fatalf("defaults: %+v, %v", got, err)
	}
	tests := []struct {
		name  string
		set   func(*ModelConfig)
		field string
	}{
		{"detector", func(c *ModelConfig) { c.Detector = "yolov11" }, "model.detector"},
		{"anchors", func(c *ModelConfig) { c.Anchors = "blazepalm" }, "model.anchors"},
		{"anchors for yolo", func(c *ModelConfig) { c.Anchors, c.Detector = AnchorsMediaPipeFaceFull, DetectorYOLOv8 }, "model.anchors"},
		{"iou", func(c *ModelConfig) { c.IoUThreshold = 1.5 }, "model.iou_threshold"},
		{"iou NaN", func(c *ModelConfig) { c.IoUThreshold = float32(math.NaN()) }, "model.iou_threshold"},
		{"score NaN", func(c *ModelConfig) { c.ScoreThreshold = float32(math.NaN()) }, "model.score_threshold"},
		{"nms", func(c *ModelConfig) { c.NMS = "soft" }, "model.nms"},
		{"max", func(c *ModelConfig) { c.MaxDetections = -1 }, "model.max_detections"},
		{"max huge", func(c *ModelConfig) { c.MaxDetections = 1 << 20 }, "model.max_detections"},
	}
	for _, tc := range tests {
		c := base
		tc.set(&c)
		_, err := c.withDefaults()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v, want ErrBadConfig naming %s", tc.name, err, tc.field)
		}
	}
}

// TestPresetNormalization: a float input without model.normalize gets the face
// detectors' [-1, 1] range, said in the input convention; an explicit normalize, or a
// quantized input, is not touched.
func TestPresetNormalization(t *testing.T) {
	f := func(shape ...int) TensorInfo { return TensorInfo{Name: "t", Type: "float32", Shape: shape} }
	face := []TensorInfo{f(1, 896, 16), f(1, 896, 1)}
	in := imageTensor(128, 128)
	spec, err := imageInput(in)
	if err != nil {
		t.Fatal(err)
	}
	setup := func(cfg ModelConfig) *modelSetup {
		cfg.Path, cfg.Kind = "m.tflite", KindDetection
		cfg, err := cfg.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		s, err := setupModel(cfg, nil, spec, in, face)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	auto := setup(ModelConfig{})
	if auto.convention != "normalize -1_1 (the mediapipe_face_short detector's input range; auto)" {
		t.Errorf("auto: convention %q", auto.convention)
	}
	// Black maps to -1, white to 1.
	if n := auto.norm; !near(0*n.mul[0]+n.add[0], -1, 1e-6) || !near(255*n.mul[2]+n.add[2], 1, 1e-6) {
		t.Errorf("auto: normalizer %+v does not map 0..255 to -1..1", n)
	}
	explicit := setup(ModelConfig{Normalize: Normalize01})
	if !strings.HasPrefix(explicit.convention, "normalize 0_1 (model.normalize)") || explicit.norm.add[0] != 0 {
		t.Errorf("explicit: convention %q, normalizer %+v", explicit.convention, explicit.norm)
	}
}

// TestDetectionLabels: a labels file must fit a YOLO head's class count.
func TestDetectionLabels(t *testing.T) {
	dir := t.TempDir()
	out, _ := yoloOutput(true, 1, nil) // 3 classes
	in := imageTensor(320, 320)
	spec, _ := imageInput(in)
	for _, tc := range []struct {
		labels string
		ok     bool
	}{
		{"a\nb\nc\n", true},
		{"a\nb\n", false},
		{"0 a\n2 c\n", true},
		{"0 a\n3 d\n", false},
	} {
		path := writeFile(t, dir, "labels.txt", []byte(tc.labels))
		cfg, _ := ModelConfig{Path: "m.tflite", Kind: KindDetection, Labels: path}.withDefaults()
		_, err := setupModel(cfg, nil, spec, in, []TensorInfo{out})
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadConfig)) {
			t.Errorf("labels %q: got %v, want ok %v", tc.labels, err, tc.ok)
		}
	}
}

// FuzzDetectors decodes arbitrary output bytes with every detector: no panic, and every
// detection is finite, inside the image and under the cap.
func FuzzDetectors(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x3f}, uint8(0))                         // 1.0
	f.Add([]byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x7f}, uint8(1))       // NaN, +Inf
	f.Add([]byte{0xff, 0xff, 0x7f, 0x7f, 0, 0, 0x80, 0xff}, uint8(2)) // MaxFloat32, -Inf
	f.Add([]byte{0x00, 0x00, 0x48, 0x43, 0xcd, 0xcc, 0x4c, 0x3f}, uint8(3))
	f32 := func(shape ...int) TensorInfo { return TensorInfo{Name: "t", Type: "float32", Shape: shape} }
	u8 := func(shape ...int) TensorInfo {
		return TensorInfo{Name: "q", Type: "uint8", Shape: shape, Scale: 0.05, ZeroPoint: 100}
	}
	models := []struct {
		in   TensorInfo
		outs []TensorInfo
	}{
		{imageTensor(320, 320), []TensorInfo{f32(1, 40, 8)}},                   // YOLOv5, 3 classes
		{imageTensor(320, 320), []TensorInfo{f32(1, 7, 40)}},                   // YOLOv8
		{imageTensor(128, 128), []TensorInfo{f32(1, 896, 16), f32(1, 896, 1)}}, // face
		{imageTensor(300, 300), []TensorInfo{f32(1, 10, 4), f32(1, 10), f32(1, 10), f32(1)}},
		{imageTensor(320, 320), []TensorInfo{u8(1, 7, 40)}},
	}
	f.Fuzz(func(t *testing.T, raw []byte, pick uint8) {
		if len(raw) == 0 {
			return
		}
		m := models[int(pick)%len(models)]
		cfg, err := ModelConfig{Path: "m.tflite", Kind: KindDetection, MaxDetections: 50, ScoreThreshold: float32(pick%4) / 8}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		p, err := newPostprocessor(cfg, nil, m.in, m.outs)
		if err != nil {
			t.Fatal(err)
		}
		data := make([][]byte, len(m.outs))
		for i, o := range m.outs {
			size := o.elements()
			if o.Type == "float32" {
				size *= 4
			}
			b := make([]byte, size)
			for j := range b {
				b[j] = raw[(j+i*7)%len(raw)]
			}
			data[i] = b
		}
		img := &rgbImage{w: 641, h: 479, format: "jpeg"}
		r := p.run(data, img)
		if len(r.Detections) > 50 {
			t.Fatalf("%d detections, cap 50", len(r.Detections))
		}
		for _, d := range r.Detections {
			b := d.Box
			if !finite(d.Score) || !finite(b.XMin) || !finite(b.YMin) || !finite(b.XMax) || !finite(b.YMax) {
				t.Fatalf("non-finite detection %+v", d)
			}
			if !(0 <= b.XMin && b.XMin <= b.XMax && b.XMax <= 641 && 0 <= b.YMin && b.YMin <= b.YMax && b.YMax <= 479) {
				t.Fatalf("box %+v outside the 641x479 image", b)
			}
			for _, k := range d.Keypoints {
				if !(k.X >= 0 && k.X <= 641 && k.Y >= 0 && k.Y <= 479) {
					t.Fatalf("keypoint %+v outside the image", k)
				}
			}
		}
	})
}

// BenchmarkDetectDecode times decoding and suppression of full-size heads: YOLOv8 at
// 640×640 (8400 candidates, 80 classes; 300 candidates over the threshold, in clusters)
// and MediaPipe's full-range face head (2304 anchors).
func BenchmarkDetectDecode(b *testing.B) {
	const n, classes = 8400, 80
	v := make([]float32, n*(4+classes))
	for i := range n {
		v[0*n+i] = float32(i%80)/80 + 0.005
		v[1*n+i] = float32(i/80)/105 + 0.005
		v[2*n+i], v[3*n+i] = 0.05, 0.05
		if i%28 == 0 {
			v[(4+i%classes)*n+i] = 0.3 + float32(i%7)/10
		}
	}
	yolo := []TensorInfo{{Name: "output0", Type: "float32", Shape: []int{1, 4 + classes, n}}}
	full := []TensorInfo{{Name: "r", Type: "float32", Shape: []int{1, 2304, 16}}, {Name: "c", Type: "float32", Shape: []int{1, 2304, 1}}}
	fullBoxes, fullLogits := make([]float32, 2304*16), make([]float32, 2304)
	for i := range fullLogits {
		fullLogits[i] = -10
		copy(fullBoxes[16*i:], []float32{0, 0, 40, 40})
	}
	for i := 1000; i < 1010; i++ {
		fullLogits[i] = 3
	}
	cases := []struct {
		name string
		in   TensorInfo
		outs []TensorInfo
		data [][]byte
	}{
		{"yolov8_640", imageTensor(640, 640), yolo, [][]byte{f32bytes(v...)}},
		{"face_full_range", imageTensor(192, 192), full, [][]byte{f32bytes(fullBoxes...), f32bytes(fullLogits...)}},
	}
	img := &rgbImage{w: 1920, h: 1080, format: "jpeg"}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			p := newTestPost(b, ModelConfig{Kind: KindDetection}, nil, c.in, c.outs)
			for b.Loop() {
				p.run(c.data, img)
			}
		})
	}
}
