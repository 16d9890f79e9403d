package infer

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/testmodels"
)

// Photos from the TensorFlow module used with the real detector.
const (
	photoGraceHopper = "tensorflow/go/testdata/label_image/grace_hopper.jpg" // 517×606
	photoSurfers     = "tensorflow/examples/multibox_detector/data/surfers.jpg"
	photoStreet      = "tensorflow/lite/experimental/acceleration/mini_benchmark/data/street_192_192_3.jpeg"
	photoFood        = "tensorflow/lite/experimental/acceleration/mini_benchmark/data/food_224_224_3.jpeg"
)

func readPhoto(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(testmodels.Photo(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// count is how many detections of label score at least min.
func count(r *Result, label string, min float32) int {
	n := 0
	for _, d := range r.Detections {
		if d.Label == label && d.Score >= min {
			n++
		}
	}
	return n
}

// TestRealSSDDetector runs a real pretrained detector nobody here wrote (SSD MobileNet v2
// COCO, quantized, uint8 input with scale 1/128 and zero point 128, fetched from npm)
// on real photos and checks the labels, scores and boxes a person would: Grace Hopper
// is a person (COCO id 0) with a box covering her and wears a tie (id 31, after three
// gaps in the 90-id map: read one label per line it would be misnamed); surfers and
// their boards; cars in a street; donuts. The labels file is read in its "ID  label"
// form and the quantized input gets raw pixels (the convention the model was built for),
// which health/model info say.
func TestRealSSDDetector(t *testing.T) {
	rt := needRuntime(t)
	ssd := testmodels.FetchSSD(t)
	cfg := ModelConfig{Path: ssd.Model, Labels: ssd.Labels, Kind: KindDetection, ScoreThreshold: 0.3, Threads: 2}
	eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	info := eng.Info()
	if info.LabelsFormat != LabelsIDs || info.Labels != 80 || !strings.HasPrefix(info.InputConvention, "raw pixels 0..255 (uint8 input, scale 0.0078125, zero point 128") {
		t.Fatalf("model info: labels %q (%d), input %q; want id_label (80), raw pixels", info.LabelsFormat, info.Labels, info.InputConvention)
	}

	r, err := eng.Run(context.Background(), readPhoto(t, photoGraceHopper))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) == 0 {
		t.Fatal("no detections on grace_hopper.jpg")
	}
	// With libjpeg-turbo's pixels at DCT scale 5/8 she (person) and her tie both score
	// 0.789, as they do after an antialiased resize of the full picture (ImageMagick
	// -filter Triangle to 300x300): which of the two is first is not the point.
	var best Detection
	for _, d := range r.Detections {
		if d.Label == "person" && d.Score > best.Score {
			best = d
		}
	}
	if best.Label != "person" || best.Class != 0 || best.Score < 0.75 || r.Detections[0].Score > best.Score {
		t.Fatalf("detections on grace_hopper.jpg: %+v, want a person scoring >= 0.75 among the best", r.Detections)
	}
	if b := best.Box; b.XMin > 30 || b.XMax < 480 || b.YMin > 60 || b.YMax < 560 {
		t.Errorf("person box %+v does not cover her (image 517x606)", b)
	}
	tie := false
	for _, d := range r.Detections {
		if d.Label == "tie" && d.Class == 31 && d.Score >= 0.6 {
			tie = d.Box.XMin > 180 && d.Box.XMax < 340 && d.Box.YMin > 380 && d.Box.YMax < 580
		}
	}
	if !tie {
		t.Errorf("no tie (id 31) at her collar: %+v", r.Detections)
	}

	tests := []struct {
		photo, label string
		min          float32
		atLeast      int
	}{
		{photoSurfers, "person", 0.5, 2},
		{photoSurfers, "surfboard", 0.9, 1},
		{photoStreet, "car", 0.7, 3},
		{photoFood, "donut", 0.45, 2}, // libjpeg's pixels: 0.58, 0.50 (image/jpeg's: 0.66, 0.58)
	}
	for _, tc := range tests {
		r, err := eng.Run(context.Background(), readPhoto(t, tc.photo))
		if err != nil {
			t.Fatal(err)
		}
		if n := count(r, tc.label, tc.min); n < tc.atLeast {
			t.Errorf("%s: %d %q scoring >= %.2f, want at least %d: %+v", tc.photo, n, tc.label, tc.min, tc.atLeast, r.Detections)
		}
	}

	// An explicit normalize still wins: 0_1 before quantizing feeds 128..255 (what
	// inferq did by default before), and the detector sees a different image.
	cfg.Normalize = Normalize01
	eng01, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng01.Close()
	if got := eng01.Info().InputConvention; !strings.HasPrefix(got, "normalize 0_1 (model.normalize)") {
		t.Errorf("explicit normalize: input %q", got)
	}
	r01, err := eng01.Run(context.Background(), readPhoto(t, photoGraceHopper))
	if err != nil {
		t.Fatal(err)
	}
	if len(r01.Detections) > 0 && r01.Detections[0].Score == best.Score && r01.Detections[0].Box == best.Box {
		t.Errorf("normalize 0_1 gave the same answer as raw pixels: %+v", r01.Detections[0])
	}
	t.Logf("grace_hopper.jpg: raw pixels %s %.3f; normalize 0_1 %+v", best.Label, best.Score, r01.Detections)
}

// supervisedAndInProcess runs the photo through cfg's model in this process and in a
// supervised engine child, and returns both results and both model infos.
func supervisedAndInProcess(t *testing.T, cfg ModelConfig, photo string) (want, got *Result, inProc, child ModelInfo) {
	t.Helper()
	rt := needRuntime(t)
	eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	img := readPhoto(t, photo)
	if want, err = eng.Run(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	s := newTestSupervisor(t, rt, cfg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err = s.Run(ctx, img); err != nil {
		t.Fatal(err)
	}
	return want, got, eng.Info(), s.Info()
}

// TestRealSSDSupervised: the same detector in the supervised engine child answers as it
// does in process.
func TestRealSSDSupervised(t *testing.T) {
	ssd := testmodels.FetchSSD(t)
	want, got, _, info := supervisedAndInProcess(t, ModelConfig{Path: ssd.Model, Labels: ssd.Labels, Kind: KindDetection, ScoreThreshold: 0.5}, photoGraceHopper)
	if info.LabelsFormat != LabelsIDs {
		t.Errorf("supervisor's model info: labels format %q", info.LabelsFormat)
	}
	if !reflect.DeepEqual(got.Detections, want.Detections) {
		t.Fatalf("supervised %+v, in process %+v", got.Detections, want.Detections)
	}
}

// TestRealEdgeTPUModel: the Edge TPU-compiled twin of the detector cannot run without an
// Edge TPU; loading it fails with an error that names the op and what provides it
// (TFLite itself says only "status 1" there).
func TestRealEdgeTPUModel(t *testing.T) {
	rt := needRuntime(t)
	ssd := testmodels.FetchSSD(t)
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: ssd.EdgeTPU, Labels: ssd.Labels, Kind: KindDetection}, testLogger(t))
	if err == nil {
		eng.Close()
		t.Fatal("the Edge TPU model loaded without an Edge TPU")
	}
	for _, want := range []string{`"edgetpu-custom-op"`, "Edge TPU delegate", "model.delegate: libedgetpu.so.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !IsPermanent(err) {
		t.Errorf("error %v is not permanent", err)
	}
}
