package infer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/inferq/inferq/internal/testenv"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// TestResultGolden pins the published JSON of each result kind.
func TestResultGolden(t *testing.T) {
	img := &rgbImage{w: 640, h: 480, format: "jpeg"}
	labels := &labelSet{byID: []string{"cat", "dog", "bird", "fish"}, format: LabelsLines, count: 4}
	face := newFaceOutputs()
	face.set(680, 2, 12.8, -6.4, 64, 51.2, 0, 0, 6.4, 0, 3.2, 12.8, 3.2, 25.6, -25.6, 6.4, 32, 6.4)
	face.set(681, 1, 19.2, 0, 64, 51.2)
	faceOuts, faceData := face.tensors()
	yoloOut, yoloData := yoloOutput(true, 1, yoloCands)
	tests := []struct {
		name     string
		cfg      ModelConfig
		in       TensorInfo // default: a 300×300 image
		noLabels bool
		outs     []TensorInfo
		data     [][]byte
	}{
		{
			// MediaPipe's short-range face head: a face with its 6 keypoints, merged by
			// weighted NMS with an overlapping one, labelled "face" without a labels file.
			name:     "detection_ssd_anchors",
			cfg:      ModelConfig{Kind: KindDetection},
			in:       imageTensor(128, 128),
			noLabels: true,
			outs:     faceOuts,
			data:     faceData,
		},
		{
			name: "detection_yolov8",
			cfg:  ModelConfig{Kind: KindDetection, MaxDetections: 4},
			in:   imageTensor(320, 320),
			outs: []TensorInfo{yoloOut},
			data: [][]byte{yoloData},
		},
		{
			name: "classification",
			cfg:  ModelConfig{Kind: KindClassification, TopK: 3},
			outs: []TensorInfo{{Name: "probs", Type: "float32", Shape: []int{1, 4}}},
			data: [][]byte{f32bytes(0.1, 0.6, 0.1, 0.2)},
		},
		{
			name: "classification_uint8_threshold",
			cfg:  ModelConfig{Kind: KindClassification, TopK: 5, ScoreThreshold: 0.25},
			outs: []TensorInfo{{Name: "probs", Type: "uint8", Shape: []int{1, 4}, Scale: 1.0 / 256}},
			data: [][]byte{{64, 128, 0, 32}},
		},
		{
			name: "detection",
			cfg:  ModelConfig{Kind: KindDetection, ScoreThreshold: 0.5},
			outs: []TensorInfo{
				{Name: "boxes", Type: "float32", Shape: []int{1, 3, 4}},
				{Name: "classes", Type: "float32", Shape: []int{1, 3}},
				{Name: "scores", Type: "float32", Shape: []int{1, 3}},
				{Name: "count", Type: "float32", Shape: []int{1}},
			},
			data: [][]byte{
				// ymin, xmin, ymax, xmax; the second box pokes outside and is clamped.
				f32bytes(0.25, 0.5, 0.75, 1, -0.1, 0.9, 0.5, 1.2, 0, 0, 1, 1),
				f32bytes(1, 3, 0),
				f32bytes(0.9, 0.75, 0.1),
				f32bytes(3),
			},
		},
		{
			name: "raw",
			cfg:  ModelConfig{Kind: KindRaw},
			outs: []TensorInfo{
				{Name: "embedding", Type: "float32", Shape: []int{1, 3}},
				{Name: "q", Type: "int8", Shape: []int{2}, Scale: 0.5, ZeroPoint: -1},
			},
			data: [][]byte{f32bytes(1.5, -2, 0.25), {0x03, 0xFF}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, ls := tc.in, labels
			if in.Shape == nil {
				in = imageTensor(300, 300)
			}
			if tc.noLabels {
				ls = nil
			}
			r := newTestPost(t, tc.cfg, ls, in, tc.outs).run(tc.data, img)
			r.Timings = Timings{DecodeMS: 1.5, PreprocessMS: 0.25, InvokeMS: 7, PostprocessMS: 0.01}
			got, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			testenv.Golden(t, filepath.Join("infer", tc.name+".json"), got)
		})
	}
}

// imageTensor is a float32 [1,h,w,3] input.
func imageTensor(h, w int) TensorInfo {
	return TensorInfo{Name: "image", Type: "float32", Shape: []int{1, h, w, 3}}
}

// newTestPost is newPostprocessor for cfg with its defaults filled in (cfg needs no
// path).
func newTestPost(t testing.TB, cfg ModelConfig, labels *labelSet, in TensorInfo, outs []TensorInfo) *postprocessor {
	t.Helper()
	cfg.Path = "model.tflite"
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPostprocessor(cfg, labels, in, outs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckOutputsRejects(t *testing.T) {
	tests := []struct {
		name string
		kind string
		outs []TensorInfo
	}{
		{"no outputs", KindClassification, nil},
		{"string output", KindRaw, []TensorInfo{{Type: "string", Shape: []int{1}}}},
		{"detection with one output", KindDetection, []TensorInfo{{Type: "float32", Shape: []int{1, 10}}}},
		{"detection wrong box shape", KindDetection, []TensorInfo{
			{Type: "float32", Shape: []int{1, 10, 5}}, {Type: "float32", Shape: []int{1, 10}},
			{Type: "float32", Shape: []int{1, 10}}, {Type: "float32", Shape: []int{1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newPostprocessor(ModelConfig{Kind: tc.kind, MaxDetections: 10}, nil, imageTensor(300, 300), tc.outs)
			if !IsPermanent(err) {
				t.Fatalf("got %v, want a permanent error", err)
			}
		})
	}
}

func TestErrorsAcrossPipe(t *testing.T) {
	tests := []error{
		badImage(nil, "x"),
		newErr(ErrImageTooLarge, true, nil, "big"),
		newErr(ErrTimeout, false, nil, "slow"),
		newErr(ErrRuntimeMissing, false, os.ErrNotExist, "lib"),
	}
	for _, e := range tests {
		got := toWire(e).toError()
		var ie *Error
		if !asError(e, &ie) {
			t.Fatal("not *Error")
		}
		if IsPermanent(got) != ie.Permanent || !errors.Is(got, ie.Kind) {
			t.Fatalf("%v became %v", e, got)
		}
	}
}

func asError(err error, target **Error) bool { return errors.As(err, target) }

func TestTopK(t *testing.T) {
	scores := []float32{0.1, 0.5, float32(math.NaN()), 0.5, 0.9, 0.05, 0.3, 0.2, 0.0, 0.4, 0.6, 0.7, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65}
	tests := []struct {
		k         int
		threshold float32
		want      []int
	}{
		{1, 0, []int{4}},
		{2, 0, []int{4, 11}},
		{3, 0.8, []int{4}},
		{5, 0, []int{4, 11, 17, 10, 16}},
		{100, 0.5, []int{4, 11, 17, 10, 16, 1, 3}},
	}
	for _, tc := range tests {
		got := topK(scores, tc.k, tc.threshold)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("topK(k=%d, t=%v) got %v want %v", tc.k, tc.threshold, got, tc.want)
		}
	}
}
