package infer

import (
	"context"
	"errors"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func noiseImage(w, h int, seed uint64) *image.NRGBA {
	r := rand.New(rand.NewPCG(seed, 1))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255
	}
	return img
}

// TestClassifierEndToEnd runs a PNG through the in-process TFLite engine and compares the
// top classes with the pure-Go forward pass of the same network.
func TestClassifierEndToEnd(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		net  func() *tflitegen.ClassifierNet
		tol  float32
	}{
		{"float", func() *tflitegen.ClassifierNet { return tflitegen.NewClassifierNet(40, 56, 8, 16, 12, 3) }, 1e-5},
		{"uint8 io", func() *tflitegen.ClassifierNet {
			n := tflitegen.NewClassifierNet(40, 56, 8, 16, 12, 3)
			n.InputQuant = &tflitegen.Quant{Scale: 1.0 / 255}
			n.OutputQuant = &tflitegen.Quant{Scale: 1.0 / 256}
			return n
		}, 1.0/256 + 1e-5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			net := tc.net()
			path := writeFile(t, dir, tc.name+".tflite", net.Model())
			labels := ""
			for i := range net.Classes {
				labels += "class-" + string(rune('a'+i)) + "\n"
			}
			eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Labels: writeFile(t, dir, "labels.txt", []byte(labels)), TopK: net.Classes, Threads: 1}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			info := eng.Info()
			if info.Runtime != "tflite" || info.Version == "" || len(info.SHA256) != 64 || info.Name != tc.name {
				t.Fatalf("info %+v", info)
			}
			img := noiseImage(net.W, net.H, 9) // model size: the resize is the identity
			res, err := eng.Run(context.Background(), encodePNG(t, img))
			if err != nil {
				t.Fatal(err)
			}
			in := make([]float32, 0, net.H*net.W*3)
			for i := 0; i < len(img.Pix); i += 4 {
				in = append(in, float32(img.Pix[i])/255, float32(img.Pix[i+1])/255, float32(img.Pix[i+2])/255)
			}
			want := net.Forward(in)
			if len(res.Classes) != net.Classes {
				t.Fatalf("got %d classes want %d", len(res.Classes), net.Classes)
			}
			for i, c := range res.Classes {
				if d := math.Abs(float64(c.Score - want[c.Index])); d > float64(tc.tol) {
					t.Errorf("class %d: got %v want %v", c.Index, c.Score, want[c.Index])
				}
				if c.Label != "class-"+string(rune('a'+c.Index)) {
					t.Errorf("class %d label %q", c.Index, c.Label)
				}
				if i > 0 && c.Score > res.Classes[i-1].Score {
					t.Errorf("classes not sorted: %v", res.Classes)
				}
			}
			if res.Image != (ImageInfo{Width: net.W, Height: net.H, Format: "png"}) {
				t.Errorf("image %+v", res.Image)
			}
		})
	}
}

func TestDetectionEndToEnd(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	anchors := [][4]float32{{0.25, 0.25, 0.5, 0.5}, {0.75, 0.75, 0.5, 0.5}, {0.5, 0.5, 0.2, 0.4}}
	det := tflitegen.NewColorDetector(32, 32, anchors, 8)
	path := writeFile(t, dir, "det.tflite", det.Model())
	labels := writeFile(t, dir, "labels.txt", []byte("red\ngreen\nblue\n"))
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Labels: labels, Kind: KindDetection, ScoreThreshold: 0.5}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	// A solid green 640×480 JPEG: every anchor says "green" with sigmoid(8·0.5); the box
	// encodings are zero, so boxes are the anchors, in the original image's pixels.
	res, err := eng.Run(context.Background(), encodeJPEG(t, solid(640, 480, color.RGBA{0, 255, 0, 255})))
	if err != nil {
		t.Fatal(err)
	}
	score := tflitegen.Sigmoid(4)
	var got []Detection
	got = append(got, res.Detections...)
	sort.Slice(got, func(i, j int) bool { return got[i].Box.XMin < got[j].Box.XMin })
	want := []Box{{XMin: 0, YMin: 0, XMax: 320, YMax: 240}, {XMin: 192, YMin: 192, XMax: 448, YMax: 288}, {XMin: 320, YMin: 240, XMax: 640, YMax: 480}}
	if len(got) != len(want) {
		t.Fatalf("got %d detections %+v, want %d", len(got), got, len(want))
	}
	for i, d := range got {
		if d.Class != 1 || d.Label != "green" || math.Abs(float64(d.Score-score)) > 0.02 {
			t.Errorf("detection %d: %+v, want green scoring %v", i, d, score)
		}
		b, w := d.Box, want[i]
		for _, pair := range [][2]float32{{b.XMin, w.XMin}, {b.YMin, w.YMin}, {b.XMax, w.XMax}, {b.YMax, w.YMax}} {
			if math.Abs(float64(pair[0]-pair[1])) > 1 {
				t.Errorf("detection %d box %+v want %+v", i, b, w)
				break
			}
		}
	}
}

func TestTinyRaw(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "tiny.tflite", tflitegen.Tiny())
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Kind: KindRaw, Normalize: NormalizeNone}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	// 2×2 image of (10, 20, 30): mean (10,20,30) → (10·1+0.5, 20·2, 30·3−1).
	res, err := eng.Run(context.Background(), encodePNG(t, solid(2, 2, color.RGBA{10, 20, 30, 255})))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Raw) != 1 {
		t.Fatalf("got %d raw tensors", len(res.Raw))
	}
	want := []float32{10.5, 40, 89}
	for i, w := range want {
		if math.Abs(float64(res.Raw[0].Data[i]-w)) > 1e-4 {
			t.Fatalf("got %v want %v", res.Raw[0].Data, want)
		}
	}
}

func TestBadModelFiles(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	good := tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model()
	rnd := make([]byte, 3000)
	for i := range rnd {
		rnd[i] = byte(i * 2654435761 >> 13)
	}
	// A valid TFLite file whose input is not an image: wrong schema for the engine.
	g := tflitegen.NewGraph("not an image model")
	in := g.Tensor("x", tflitegen.TypeFloat32, nil, 1, 3)
	out := g.Tensor("y", tflitegen.TypeFloat32, nil, 1, 3)
	g.Softmax(in, out)
	g.SetIO([]int32{in}, []int32{out})
	tests := []struct {
		name string
		data []byte
		kind string
		want error
	}{
		{"empty", nil, KindClassification, ErrBadModel},
		{"truncated", good[:len(good)/3], KindClassification, ErrBadModel},
		{"random bytes", rnd, KindClassification, ErrBadModel},
		{"png instead of model", encodePNG(t, solid(2, 2, color.White)), KindClassification, ErrBadModel},
		{"vector input", g.Bytes(), KindClassification, ErrBadModel},
		// The configuration (kind) does not fit the model: the error names the shapes.
		{"classifier as detector", good, KindDetection, ErrBadConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "m.tflite", tc.data)
			eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Kind: tc.kind}, testLogger(t))
			if err == nil {
				eng.Close()
				t.Fatal("got no error")
			}
			if !errors.Is(err, tc.want) || !IsPermanent(err) {
				t.Fatalf("got %v, want a permanent %v", err, tc.want)
			}
		})
	}
	_, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: filepath.Join(dir, "missing.tflite")}, testLogger(t))
	if !errors.Is(err, ErrBadModel) {
		t.Fatalf("missing file: got %v", err)
	}
}

func TestRunDeadlineCancels(t *testing.T) {
	rt := needRuntime(t)
	net := tflitegen.NewClassifierNet(640, 640, 32, 256, 10, 2) // ~1 s per invoke here
	path := writeFile(t, t.TempDir(), "slow.tflite", net.Model())
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Threads: 1}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = eng.Run(ctx, encodePNG(t, solid(64, 64, color.White)))
	if !errors.Is(err, ErrTimeout) || IsPermanent(err) {
		t.Fatalf("got %v, want a transient ErrTimeout", err)
	}
	// The engine stays usable.
	if _, err := eng.Run(context.Background(), encodePNG(t, solid(64, 64, color.White))); err != nil {
		t.Fatal(err)
	}
}

func TestRunBadImages(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "c.tflite", tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model())
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, MaxPixels: 1 << 20}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	jpg := encodeJPEG(t, solid(20, 20, color.White))
	for name, data := range map[string][]byte{"empty": nil, "text": []byte("nope"), "truncated": jpg[:len(jpg)-40], "huge": hugePNG(t, 5000, 5000)} {
		if _, err := eng.Run(context.Background(), data); !IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
		}
	}
	if _, err := eng.Run(context.Background(), jpg); err != nil {
		t.Fatalf("good image after bad ones: %v", err)
	}
}

// TestDelegateFallbackInfo: a configured delegate that cannot load leaves the model on
// the CPU, working, with the reason in ModelInfo.
func TestDelegateFallbackInfo(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "c.tflite", tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model())
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Delegate: "/nonexistent/libedgetpu.so.1", DelegateOptions: map[string]string{"device": "usb"}}, testLogger(t))
	if err != nil {
		t.Fatalf("got %v, want a CPU fallback", err)
	}
	defer eng.Close()
	info := eng.Info()
	if info.Delegate != "" || info.DelegateError == "" {
		t.Fatalf("delegate %q delegate_error %q, want none and a reason", info.Delegate, info.DelegateError)
	}
	if _, err := eng.Run(context.Background(), encodePNG(t, solid(16, 16, color.White))); err != nil {
		t.Fatal(err)
	}
}

// TestQuantizedModel runs the fully uint8 color classifier (quantized MEAN, FC, SOFTMAX
// kernels) and compares with the float computation on its dequantized weights.
func TestQuantizedModel(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	net := tflitegen.NewQuantColorNet(32, 32)
	path := writeFile(t, dir, "q.tflite", net.Model())
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, TopK: 9, Labels: writeFile(t, dir, "l", []byte(strings.Join(tflitegen.ColorLabels(), "\n")))}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if in := eng.Info().Inputs[0]; in.Type != "uint8" || in.Scale == 0 {
		t.Fatalf("input %+v, want quantized uint8", in)
	}
	for _, tc := range []struct {
		c    color.RGBA
		want string
	}{{color.RGBA{230, 20, 20, 255}, "red"}, {color.RGBA{20, 20, 230, 255}, "blue"}, {color.RGBA{128, 128, 128, 255}, "gray"}, {color.RGBA{250, 250, 10, 255}, "yellow"}} {
		c := tc.c
		img := solid(32, 32, c)
		res, err := eng.Run(context.Background(), encodePNG(t, img))
		if err != nil {
			t.Fatal(err)
		}
		pix := make([]uint8, 0, 32*32*3)
		for i := 0; i < len(img.Pix); i += 4 {
			pix = append(pix, img.Pix[i], img.Pix[i+1], img.Pix[i+2])
		}
		want := net.Forward(pix)
		if len(res.Classes) != 9 || res.Classes[0].Label != tc.want {
			t.Fatalf("color %v: got %+v, want %s first", c, res.Classes, tc.want)
		}
		for _, cl := range res.Classes {
			if d := math.Abs(float64(cl.Score - want[cl.Index])); d > 4.0/256 {
				t.Errorf("color %v class %s: got %v want %v", c, cl.Label, cl.Score, want[cl.Index])
			}
		}
	}
}
