package infer

import (
	"context"
	"image/color"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// TestColorClassifier runs the demo model (224×224, ~80 MFLOPs) on solid-color images of
// other sizes and formats: the answer must be the color.
func TestColorClassifier(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	net := tflitegen.NewColorClassifier(224, 224, 16, 160)
	if f := net.FLOPs(); f < 70e6 || f > 90e6 {
		t.Fatalf("demo model costs %d FLOPs, want about 80M", f)
	}
	path := writeFile(t, dir, "demo.tflite", net.Model())
	labels := writeFile(t, dir, "demo.labels", []byte(strings.Join(tflitegen.ColorLabels(), "\n")+"\n"))
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Labels: labels, TopK: 2}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"red jpeg", encodeJPEG(t, solid(640, 480, color.RGBA{230, 20, 20, 255})), "red"},
		{"green png", encodePNG(t, solid(100, 300, color.RGBA{10, 240, 30, 255})), "green"},
		{"blue jpeg", encodeJPEG(t, solid(50, 50, color.RGBA{0, 0, 250, 255})), "blue"},
		{"white png", encodePNG(t, solid(224, 224, color.RGBA{255, 255, 255, 255})), "white"},
		{"gray jpeg", encodeJPEG(t, solid(300, 200, color.Gray{128})), "gray"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := eng.Run(context.Background(), tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Classes[0].Label; got != tc.want {
				t.Fatalf("got %q (%+v), want %q", got, res.Classes, tc.want)
			}
		})
	}
}
