package infer

import (
	"context"
	"image/color"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// yoloNet is a generated YOLO-shaped model (64×64 input, 20 candidates, 3 classes) with
// yoloCands' candidates plus candidate 7, whose class 0 ("red") score is 0.8 × the
// image's mean red: present on a red picture, absent on a blue one. The other candidates
// lie on a grid with zero scores, as a real head's do. scale multiplies the box values
// (1: normalized; 64: input pixels).
func yoloNet(v8 bool, scale float32) *tflitegen.YOLONet {
	n := tflitegen.NewYOLONet(64, 64, 20, 3, v8)
	for i := range n.N {
		box := [4]float32{(float32(i%5) + 0.5) / 5, (float32(i/5) + 0.5) / 4, 0.1, 0.1}
		n.Candidate(i, scaled(box, scale), 0)
	}
	for _, c := range yoloCands {
		n.Candidate(c.i, scaled(c.box, scale), c.obj, c.scores[:]...)
	}
	n.Candidate(7, scaled([4]float32{0.75, 0.25, 0.2, 0.2}, scale), 1)
	n.ClassGain(7, 0, 0, 0.8)
	return n
}

func scaled(b [4]float32, s float32) [4]float32 {
	return [4]float32{b[0] * s, b[1] * s, b[2] * s, b[3] * s}
}

// yoloC7 is candidate 7 on a red 640×480 picture.
var yoloC7 = Detection{Label: "red", Class: 0, Score: 0.8, Box: Box{416, 72, 544, 168}}

// TestYOLOModel runs generated YOLOv5- and YOLOv8-shaped models through the TFLite
// runtime on 640×480 pictures stretched to their 64×64 input: the layout is told from
// the output shape, boxes come back in the picture's pixels, NMS and thresholds act as
// worked out by hand, labels name the classes, and a candidate that depends on the
// picture's color appears only on the picture that has it.
func TestYOLOModel(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	labels := writeFile(t, dir, "labels.txt", []byte("red\ngreen\nblue\n"))
	red := encodePNG(t, solid(640, 480, color.RGBA{255, 0, 0, 255}))
	blue := encodePNG(t, solid(640, 480, color.RGBA{0, 0, 255, 255}))
	named := func(d Detection) Detection {
		d.Label = []string{"red", "green", "blue"}[d.Class]
		return d
	}
	tests := []struct {
		name     string
		v8       bool
		scale    float32
		cfg      ModelConfig
		detector string
		onRed    []Detection
		onBlue   []Detection
	}{
		{"v5", false, 1, ModelConfig{}, "yolov5 (auto), 20 candidates, 3 classes, hard NMS, iou 0.45, score 0.25, max 100",
			[]Detection{yoloC0, yoloC7, yoloC2, yoloC5, yoloC6(0.45), yoloC3},
			[]Detection{yoloC0, yoloC2, yoloC5, yoloC6(0.45), yoloC3}},
		{"v8", true, 1, ModelConfig{}, "yolov8 (auto), 20 candidates, 3 classes, hard NMS, iou 0.45, score 0.25, max 100",
			[]Detection{yoloC0, yoloC6(0.9), yoloC7, yoloC2, yoloC5, yoloC3},
			[]Detection{yoloC0, yoloC6(0.9), yoloC2, yoloC5, yoloC3}},
		{"v8 in input pixels", true, 64, ModelConfig{}, "yolov8 (auto)",
			[]Detection{yoloC0, yoloC6(0.9), yoloC7, yoloC2, yoloC5, yoloC3},
			[]Detection{yoloC0, yoloC6(0.9), yoloC2, yoloC5, yoloC3}},
		{"v8 configured", true, 1, ModelConfig{Detector: DetectorYOLOv8, ScoreThreshold: 0.5, IoUThreshold: 0.9, MaxDetections: 4},
			"yolov8 (model.detector), 20 candidates, 3 classes, hard NMS, iou 0.9, score 0.5, max 4",
			[]Detection{yoloC0, yoloC6(0.9), yoloC1, yoloC7},
			[]Detection{yoloC0, yoloC6(0.9), yoloC1, yoloC2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "yolo.tflite", yoloNet(tc.v8, tc.scale).Model())
			cfg := tc.cfg
			cfg.Path, cfg.Kind, cfg.Labels = path, KindDetection, labels
			eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			if got := eng.Info().Detector; !strings.HasPrefix(got, tc.detector) {
				t.Errorf("detector %q, want %q", got, tc.detector)
			}
			for _, pic := range []struct {
				name string
				img  []byte
				want []Detection
			}{{"red", red, tc.onRed}, {"blue", blue, tc.onBlue}} {
				r, err := eng.Run(context.Background(), pic.img)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Detections) != len(pic.want) {
					t.Fatalf("%s: %d detections, want %d:\n got %+v\nwant %+v", pic.name, len(r.Detections), len(pic.want), r.Detections, pic.want)
				}
				for i, w := range pic.want {
					w = named(w)
					g := r.Detections[i]
					if g.Class != w.Class || g.Label != w.Label || !near(g.Score, w.Score, 1e-5) || !boxNear(g.Box, w.Box, 0.01) {
						t.Errorf("%s: detection %d: got %+v, want %+v", pic.name, i, g, w)
					}
				}
			}
		})
	}
}

// TestYOLOSupervised: the detection settings cross to the engine child (a cap of 2 there
// gives 2 detections), and so does the model info.
func TestYOLOSupervised(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "yolo.tflite", yoloNet(true, 1).Model())
	s := newTestSupervisor(t, rt, ModelConfig{Path: path, Kind: KindDetection, MaxDetections: 2, IoUThreshold: 0.9})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.Info().Detector; !strings.Contains(got, "iou 0.9, score 0.25, max 2") {
		t.Errorf("detector %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := s.Run(ctx, encodePNG(t, solid(640, 480, color.RGBA{255, 0, 0, 255})))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 2 || !boxNear(r.Detections[0].Box, yoloC0.Box, 0.01) || r.Detections[1].Score != 0.9 {
		t.Fatalf("supervised detections %+v, want candidates 0 and 6", r.Detections)
	}
}
