package infer

import (
	"context"
	"image/color"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// metadataModel is a small color classifier (16×16 float input, 9 classes) carrying
// TFLite Model Metadata as Model Maker writes it: input normalization mean 127.5, std
// 127.5 (pixels to [-1, 1]) and its labels in labels.txt, zipped onto the model.
func metadataModel(t testing.TB, meta tflitegen.ModelMetadata, files map[string]string) []byte {
	t.Helper()
	n := tflitegen.NewColorClassifier(16, 16, 4, 8)
	n.Metadata = meta.Bytes()
	return tflitegen.AppendZip(n.Model(), files)
}

var (
	colorLabelsFile = strings.Join(tflitegen.ColorLabels(), "\n") + "\n"
	modelMakerMeta  = tflitegen.ModelMetadata{Name: "color classifier", Mean: []float32{127.5}, Std: []float32{127.5},
		Outputs: 1, LabelsFile: "labels.txt", LabelsType: tflitegen.TensorAxisLabels}
)

func TestReadMetadata(t *testing.T) {
	model := metadataModel(t, modelMakerMeta, map[string]string{"labels.txt": colorLabelsFile, "other.txt": "x"})
	meta, err := readMetadata(model)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := meta.labelsFor(KindClassification)
	if !ok || f.name != "labels.txt" || string(f.data) != colorLabelsFile {
		t.Fatalf("labels: %q %q %v", f.name, f.data, ok)
	}
	h := meta.normalizationHint()
	if h == nil || h.normalize != NormalizeMeanStd || h.mean != [3]float32{127.5, 127.5, 127.5} || h.std != [3]float32{127.5, 127.5, 127.5} {
		t.Fatalf("normalization hint %+v", h)
	}

	// A detector's labels annotate its classes output's values.
	det := tflitegen.ModelMetadata{Outputs: 4, LabelsOutput: 1, LabelsFile: "labelmap.txt", LabelsType: tflitegen.TensorValueLabels,
		Mean: []float32{0, 0, 0}, Std: []float32{255, 255, 255}}
	meta, err = readMetadata(metadataModel(t, det, map[string]string{"labelmap.txt": "person\nbicycle\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := meta.labelsFor(KindDetection); !ok || f.name != "labelmap.txt" {
		t.Fatalf("detector labels: %q %v", f.name, ok)
	}
	if h := meta.normalizationHint(); h == nil || h.mean != [3]float32{} || h.std != [3]float32{255, 255, 255} {
		t.Fatalf("per-channel normalization hint %+v", h)
	}

	// No metadata: nothing, no error.
	if meta, err := readMetadata(tflitegen.NewColorClassifier(16, 16, 4, 8).Model()); meta != nil || err != nil {
		t.Fatalf("model without metadata: %+v, %v", meta, err)
	}
	// Metadata that names a file the zip lacks, or a damaged model: an error, no panic.
	if _, err := readMetadata(metadataModel(t, modelMakerMeta, map[string]string{"other.txt": "x"})); err == nil || !strings.Contains(err.Error(), `"labels.txt"`) {
		t.Errorf("missing labels file: %v", err)
	}
	n := tflitegen.NewColorClassifier(16, 16, 4, 8)
	n.Metadata = modelMakerMeta.Bytes()
	if _, err := readMetadata(n.Model()); err == nil || !strings.Contains(err.Error(), "associated files") {
		t.Errorf("no zip: %v", err)
	}
	for _, cut := range []int{9, 100, len(model) / 2} {
		damaged := append([]byte(nil), model...)
		for i := cut; i < cut+64 && i < len(damaged); i++ {
			damaged[i] ^= 0xA5
		}
		readMetadata(damaged) // must not panic
	}
	// Unusable normalization: std 0, or 2 values.
	for _, m := range []tflitegen.ModelMetadata{{Mean: []float32{1}, Std: []float32{0}}, {Mean: []float32{1, 2}, Std: []float32{1, 2}}} {
		meta, err := readMetadata(metadataModel(t, m, nil))
		if err != nil || meta.normalizationHint() != nil {
			t.Errorf("metadata %+v: hint %+v, err %v; want no hint", m, meta.normalizationHint(), err)
		}
	}
}

// FuzzReadMetadata: any bytes, a metadata model's mutations included, give metadata or
// an error, never a panic.
func FuzzReadMetadata(f *testing.F) {
	f.Add(metadataModel(f, modelMakerMeta, map[string]string{"labels.txt": colorLabelsFile}))
	f.Add(modelMakerMeta.Bytes())
	f.Add([]byte("\x00\x00\x00\x00TFL3"))
	f.Fuzz(func(t *testing.T, data []byte) {
		meta, err := readMetadata(data)
		if err == nil && meta != nil {
			meta.normalizationHint()
			meta.labelsFor(KindClassification)
		}
	})
}

// TestMetadataModel runs a classifier that carries Model Maker metadata through TFLite:
// its labels and normalization are used when the configuration gives none, and ModelInfo
// says so; a configured labels file or normalize wins. The metadata's [-1, 1]
// normalization makes a mid-gray picture read as (almost) black; 0_1 as gray.
func TestMetadataModel(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "meta.tflite", metadataModel(t, modelMakerMeta, map[string]string{"labels.txt": colorLabelsFile}))
	gray := encodePNG(t, solid(64, 48, color.RGBA{128, 128, 128, 255}))
	red := encodePNG(t, solid(64, 48, color.RGBA{255, 0, 0, 255}))
	upper := writeFile(t, dir, "upper.txt", []byte(strings.ToUpper(colorLabelsFile)))
	tests := []struct {
		name                   string
		cfg                    ModelConfig
		labelsFrom, convention string
		grayLabel, redLabel    string
	}{
		{"metadata", ModelConfig{}, "model metadata (labels.txt)",
			"normalize mean_std (mean [127.5 127.5 127.5], std [127.5 127.5 127.5]; model metadata; auto)", "black", "red"},
		{"configured labels win", ModelConfig{Labels: upper}, "model.labels",
			"normalize mean_std (mean [127.5 127.5 127.5], std [127.5 127.5 127.5]; model metadata; auto)", "BLACK", "RED"},
		{"configured normalize wins", ModelConfig{Normalize: Normalize01}, "model metadata (labels.txt)",
			"normalize 0_1 (model.normalize)", "gray", "red"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Path = path
			eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			info := eng.Info()
			if info.LabelsSource != tc.labelsFrom || info.Labels != 9 || info.InputConvention != tc.convention {
				t.Errorf("model info: labels %d from %q, input %q; want 9 from %q, %q", info.Labels, info.LabelsSource, info.InputConvention, tc.labelsFrom, tc.convention)
			}
			for _, pic := range []struct {
				img  []byte
				want string
			}{{gray, tc.grayLabel}, {red, tc.redLabel}} {
				r, err := eng.Run(context.Background(), pic.img)
				if err != nil {
					t.Fatal(err)
				}
				if got := r.Classes[0].Label; got != pic.want {
					t.Errorf("top class %q (%+v), want %q", got, r.Classes, pic.want)
				}
			}
		})
	}
}
