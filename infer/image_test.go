package infer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func solid(w, h int, c color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNG is a valid PNG header claiming w×h pixels (the IHDR CRC is fixed up), with
// only a tiny image body: a decompression bomb as far as the header goes.
func hugePNG(t testing.TB, w, h uint32) []byte {
	b := encodePNG(t, solid(1, 1, color.White))
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestDecodeErrors(t *testing.T) {
	good := encodeJPEG(t, solid(32, 24, color.RGBA{200, 10, 10, 255}))
	goodPNG := encodePNG(t, solid(32, 24, color.RGBA{200, 10, 10, 255}))
	tests := []struct {
		name string
		data []byte
		kind error
	}{
		{"zero bytes", nil, ErrBadImage},
		{"text", []byte("hello, this is not an image"), ErrBadImage},
		{"jpeg truncated", good[:len(good)/2], ErrBadImage},
		{"jpeg header only", good[:20], ErrBadImage},
		{"png truncated", goodPNG[:len(goodPNG)-20], ErrBadImage},
		{"png corrupt body", func() []byte {
			b := append([]byte(nil), goodPNG...)
			for i := 40; i < len(b)-12; i++ {
				b[i] ^= 0x5a
			}
			return b
		}(), ErrBadImage},
		{"random bytes after jpeg magic", append([]byte{0xFF, 0xD8, 0xFF}, bytes.Repeat([]byte{0x13, 0x37}, 500)...), ErrBadImage},
		{"gigantic png", hugePNG(t, 100000, 100000), ErrImageTooLarge},
		{"zero-size png", hugePNG(t, 0, 10), ErrBadImage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeImage(tc.data, DefaultMaxPixels)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			if !IsPermanent(err) {
				t.Fatalf("got transient %v, want permanent", err)
			}
		})
	}
}

func TestDecodeFormatsAndChannels(t *testing.T) {
	red := color.RGBA{200, 10, 10, 255}
	gray := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	cmyk := image.NewCMYK(image.Rect(0, 0, 8, 8))
	for i := 0; i < len(cmyk.Pix); i += 4 {
		cmyk.Pix[i], cmyk.Pix[i+1], cmyk.Pix[i+2], cmyk.Pix[i+3] = 0, 255, 255, 55 // red
	}
	pal := image.NewPaletted(image.Rect(0, 0, 8, 8), palette.Plan9)
	for i := range pal.Pix {
		pal.Pix[i] = uint8(pal.Palette.Index(red))
	}
	var gifBuf bytes.Buffer
	if err := gif.Encode(&gifBuf, pal, nil); err != nil {
		t.Fatal(err)
	}
	rgba16 := image.NewRGBA64(image.Rect(0, 0, 8, 8))
	for y := range 8 {
		for x := range 8 {
			rgba16.Set(x, y, red)
		}
	}
	tests := []struct {
		name    string
		data    []byte
		format  string
		want    [3]uint8
		maxDiff int
	}{
		{"jpeg rgb", encodeJPEG(t, solid(16, 16, red)), "jpeg", [3]uint8{200, 10, 10}, 6},
		{"jpeg gray", encodeJPEG(t, gray), "jpeg", [3]uint8{77, 77, 77}, 1},
		{"png rgba", encodePNG(t, solid(8, 8, color.NRGBA{200, 10, 10, 128})), "png", [3]uint8{200, 10, 10}, 0},
		{"png gray", encodePNG(t, gray), "png", [3]uint8{77, 77, 77}, 0},
		{"png cmyk source", encodePNG(t, cmyk), "png", [3]uint8{200, 0, 0}, 0},
		{"png 16-bit", encodePNG(t, rgba16), "png", [3]uint8{200, 10, 10}, 0},
		{"gif paletted", gifBuf.Bytes(), "gif", rgbOf(pal.Palette[pal.Pix[0]]), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := decodeImage(tc.data, DefaultMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			if img.format != tc.format {
				t.Fatalf("format got %s want %s", img.format, tc.format)
			}
			px := img.pixel(1, 1)
			for c := range 3 {
				if d := int(px[c]) - int(tc.want[c]); d > tc.maxDiff || -d > tc.maxDiff {
					t.Fatalf("pixel got %v want %v (±%d)", px, tc.want, tc.maxDiff)
				}
			}
		})
	}
	// CMYK in memory (as image/jpeg returns for Adobe CMYK JPEGs).
	img := &rgbImage{w: 8, h: 8, src: cmyk}
	if got, want := img.pixel(0, 0), [3]uint8{200, 0, 0}; got != want {
		t.Fatalf("cmyk got %v want %v", got, want)
	}
}

func TestPreprocess(t *testing.T) {
	img := fromPix(4, 2, bytes.Repeat([]uint8{255, 51, 0}, 8))
	f32 := func(b []byte) []float32 { return dequantize(TensorInfo{Type: "float32"}, b) }
	tests := []struct {
		name string
		in   inputSpec
		cfg  ModelConfig
		want []float32 // per channel of the first pixel, after dequantizing
	}{
		{"0_1", inputSpec{h: 3, w: 3, c: 3, typ: "float32"}, ModelConfig{Normalize: Normalize01}, []float32{1, 0.2, 0}},
		{"-1_1", inputSpec{h: 2, w: 2, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeM11}, []float32{1, 51/127.5 - 1, -1}},
		{"mean_std", inputSpec{h: 1, w: 1, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeMeanStd, Mean: [3]float32{127.5, 0, 10}, Std: [3]float32{127.5, 51, 2}}, []float32{1, 1, -5}},
		{"none", inputSpec{h: 5, w: 7, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeNone}, []float32{255, 51, 0}},
		{"gray model", inputSpec{h: 2, w: 2, c: 1, typ: "float32"}, ModelConfig{Normalize: NormalizeNone}, []float32{0.299*255 + 0.587*51}},
		{"uint8 quantized", inputSpec{h: 2, w: 2, c: 3, typ: "uint8", scale: 1.0 / 255, zeroPoint: 0}, ModelConfig{Normalize: Normalize01}, []float32{255, 51, 0}},
		{"uint8 -1_1", inputSpec{h: 2, w: 2, c: 3, typ: "uint8", scale: 0.0078125, zeroPoint: 128}, ModelConfig{Normalize: NormalizeM11}, []float32{255, 128 + float32(math.Round((51/127.5-1)/0.0078125)), 0}},
		{"int8 quantized", inputSpec{h: 2, w: 2, c: 3, typ: "int8", scale: 1.0 / 255, zeroPoint: -128}, ModelConfig{Normalize: Normalize01}, []float32{127, 51 - 128, -128}},
		// Auto (no model.normalize): quantized inputs get the raw pixels whatever their
		// scale and zero point say (TFLite's convention); float inputs get 0_1.
		{"auto uint8 scale 1/128 zp 128", inputSpec{h: 2, w: 2, c: 3, typ: "uint8", scale: 0.0078125, zeroPoint: 128}, ModelConfig{}, []float32{255, 51, 0}},
		{"auto uint8 scale 1/255 zp 0", inputSpec{h: 3, w: 2, c: 3, typ: "uint8", scale: 1.0 / 255, zeroPoint: 0}, ModelConfig{}, []float32{255, 51, 0}},
		{"auto int8", inputSpec{h: 2, w: 2, c: 3, typ: "int8", scale: 0.0078125, zeroPoint: 0}, ModelConfig{}, []float32{127, 51 - 128, -128}},
		{"auto float", inputSpec{h: 2, w: 2, c: 3, typ: "float32"}, ModelConfig{}, []float32{1, 0.2, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := preprocess(img, tc.in, normFor(tc.cfg, tc.in), nil)
			var vals []float32
			switch tc.in.typ {
			case "float32":
				vals = f32(out)
				if len(vals) != tc.in.h*tc.in.w*tc.in.c {
					t.Fatalf("got %d values want %d", len(vals), tc.in.h*tc.in.w*tc.in.c)
				}
			case "uint8":
				for _, b := range out {
					vals = append(vals, float32(b))
				}
			case "int8":
				for _, b := range out {
					vals = append(vals, float32(int8(b)))
				}
			}
			// A solid image stays solid at every size: check every pixel.
			for p := 0; p < len(vals); p += tc.in.c {
				for c := range tc.in.c {
					if math.Abs(float64(vals[p+c]-tc.want[c])) > 1e-4 {
						t.Fatalf("value %d got %v want %v", p+c, vals[p:p+tc.in.c], tc.want)
					}
				}
			}
		})
	}
}

func TestResizeBilinear(t *testing.T) {
	// A 2×1 image (0 and 200) resized to 4×1 with half-pixel centers:
	// sample points -0.25→0 (clamped), 0.25, 0.75, 1.25→1 (clamped).
	img := fromPix(2, 1, []uint8{0, 0, 0, 200, 200, 200})
	out := dequantize(TensorInfo{Type: "float32"}, preprocess(img, inputSpec{h: 1, w: 4, c: 3, typ: "float32"}, normFor(ModelConfig{Normalize: NormalizeNone}, inputSpec{}), nil))
	want := []float32{0, 50, 150, 200}
	for i, w := range want {
		if got := out[3*i]; math.Abs(float64(got-w)) > 1e-4 {
			t.Fatalf("pixel %d got %v want %v (all %v)", i, got, w, out)
		}
	}
}

func rgbOf(c color.Color) [3]uint8 {
	r, g, b, _ := c.RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

func FuzzDecodeImage(f *testing.F) {
	f.Add(encodeJPEG(f, solid(8, 8, color.RGBA{1, 2, 3, 255})))
	f.Add(encodePNG(f, solid(3, 5, color.NRGBA{1, 2, 3, 4})))
	f.Add(hugePNG(f, 1<<20, 1<<20))
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := decodeImage(data, 1<<20)
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("decode error must be permanent: %v", err)
			}
			return
		}
		if img.w*img.h > 1<<20 || img.w <= 0 || img.h <= 0 {
			t.Fatalf("bad image %dx%d", img.w, img.h)
		}
		preprocess(img, inputSpec{h: 3, w: 3, c: 3, typ: "uint8", scale: 1}, normFor(ModelConfig{Normalize: NormalizeNone}, inputSpec{}), nil)
	})
}

// TestCMYKJPEG decodes a CMYK JPEG made by ImageMagick (testdata/images/cmyk.jpg, a
// solid rgb(200,20,20) converted with -colorspace CMYK).
func TestCMYKJPEG(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "images", "cmyk.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := decodeImage(data, DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	want, px := [3]int{200, 20, 20}, img.pixel(10, 10)
	for c := range 3 {
		if d := int(px[c]) - want[c]; d > 12 || d < -12 {
			t.Fatalf("pixel got %v want about %v", px, want)
		}
	}
}

// fromPix makes an rgbImage from packed RGB.
func fromPix(w, h int, pix []uint8) *rgbImage {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		copy(img.Pix[4*i:4*i+3], pix[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return &rgbImage{w: w, h: h, format: "png", src: img}
}

// TestPreprocessMatchesFullResize checks the sparse gather against resizing a fully
// converted image, for every source type.
func TestPreprocessMatchesFullResize(t *testing.T) {
	src := noiseImage(37, 29, 4)
	full := make([]uint8, 0, 37*29*3)
	for i := 0; i < len(src.Pix); i += 4 {
		full = append(full, src.Pix[i], src.Pix[i+1], src.Pix[i+2])
	}
	in := inputSpec{h: 13, w: 50, c: 3, typ: "float32"}
	norm := normFor(ModelConfig{Normalize: NormalizeNone}, in)
	got := dequantize(TensorInfo{Type: "float32"}, preprocess(&rgbImage{w: 37, h: 29, src: src}, in, norm, nil))
	// Reference: plain bilinear over the full pixel array.
	xs, ys := resizeTaps(37, in.w), resizeTaps(29, in.h)
	for y := range in.h {
		for x := range in.w {
			for c := range 3 {
				at := func(yy, xx int) float64 { return float64(full[(yy*37+xx)*3+c]) }
				tx, ty := xs[x], ys[y]
				fx, fy := float64(tx.f), float64(ty.f)
				a := at(ty.i0, tx.i0)*(1-fx) + at(ty.i0, tx.i1)*fx
				b := at(ty.i1, tx.i0)*(1-fx) + at(ty.i1, tx.i1)*fx
				want := a*(1-fy) + b*fy
				if g := float64(got[(y*in.w+x)*3+c]); math.Abs(g-want) > 1e-3 {
					t.Fatalf("(%d,%d,%d) got %v want %v", x, y, c, g, want)
				}
			}
		}
	}
}

// normFor is newNormalizer without the description.
func normFor(cfg ModelConfig, in inputSpec) normalizer {
	n, _ := newNormalizer(cfg, in)
	return n
}

// The input convention in use is said in ModelInfo: explicit normalize wins, auto follows
// the input tensor's type.
func TestInputConvention(t *testing.T) {
	u8 := inputSpec{h: 1, w: 1, c: 3, typ: "uint8", scale: 0.0078125, zeroPoint: 128}
	tests := []struct {
		name string
		cfg  ModelConfig
		in   inputSpec
		want string
	}{
		{"auto uint8", ModelConfig{}, u8, "raw pixels 0..255 (uint8 input, scale 0.0078125, zero point 128; auto)"},
		{"auto int8", ModelConfig{}, inputSpec{typ: "int8", scale: 0.5, zeroPoint: -1}, "raw pixels - 128 (int8 input, scale 0.5, zero point -1; auto)"},
		{"auto float", ModelConfig{}, inputSpec{typ: "float32"}, "normalize 0_1 (float input; auto)"},
		{"explicit wins", ModelConfig{Normalize: Normalize01}, u8, "normalize 0_1 (model.normalize), then quantized (uint8 input, scale 0.0078125, zero point 128)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := newNormalizer(tc.cfg, tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPreprocessFastPathSameBits: the float32 RGB fast path gives the general loop's
// output bit for bit, for every normalization, upscaling and downscaling, and a rotated
// (EXIF) picture.
func TestPreprocessFastPathSameBits(t *testing.T) {
	defer func() { fastRGBFloat = true }()
	for _, tc := range []struct {
		name   string
		w, h   int
		in     inputSpec
		cfg    ModelConfig
		orient int
	}{
		{"down 0_1", 320, 240, inputSpec{h: 224, w: 224, c: 3, typ: "float32"}, ModelConfig{Normalize: Normalize01}, 1},
		{"up -1_1", 37, 29, inputSpec{h: 64, w: 80, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeM11}, 1},
		{"mean_std", 300, 200, inputSpec{h: 96, w: 128, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeMeanStd, Mean: [3]float32{123.7, 116.3, 103.5}, Std: [3]float32{58.4, 57.1, 57.4}}, 1},
		{"none, rotated", 200, 120, inputSpec{h: 50, w: 70, c: 3, typ: "float32"}, ModelConfig{Normalize: NormalizeNone}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := noiseImage(tc.w, tc.h, 7)
			pix := make([]byte, 0, tc.w*tc.h*3)
			for i := 0; i < len(src.Pix); i += 4 {
				pix = append(pix, src.Pix[i], src.Pix[i+1], src.Pix[i+2])
			}
			o := newOrientation(tc.orient)
			uw, uh := o.upright(tc.w, tc.h)
			img := &rgbImage{w: uw, h: uh, src: &packedRGB{pix: pix, w: tc.w, h: tc.h}, orient: o, scale: scaleFactor{1, 1}}
			norm := normFor(tc.cfg, tc.in)
			fastRGBFloat = true
			fast := preprocess(img, tc.in, norm, nil)
			fastRGBFloat = false
			general := preprocess(img, tc.in, norm, nil)
			if !bytes.Equal(fast, general) {
				t.Fatalf("fast path differs from the general loop (%d bytes)", len(fast))
			}
		})
	}
}

// TestPreprocessScratchFollowsSize: buffers and taps kept between calls give what a fresh
// call gives, also when the picture's size changes between calls.
func TestPreprocessScratchFollowsSize(t *testing.T) {
	in := inputSpec{h: 24, w: 32, c: 3, typ: "float32"}
	norm := normFor(ModelConfig{Normalize: Normalize01}, in)
	var sc preScratch
	var buf []byte
	for i, size := range [][2]int{{64, 48}, {40, 90}, {64, 48}, {33, 17}} {
		img, err := decodeImage(encodePNG(t, noiseImage(size[0], size[1], uint64(i+1))), DefaultMaxPixels)
		if err != nil {
			t.Fatal(err)
		}
		buf = preprocessInto(img, in, norm, buf, &sc)
		if want := preprocess(img, in, norm, nil); !bytes.Equal(buf, want) {
			t.Fatalf("call %d (%dx%d): kept scratch gives other values than a fresh call", i, size[0], size[1])
		}
	}
}
