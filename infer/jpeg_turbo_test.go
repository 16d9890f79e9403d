package infer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/internal/testenv"
)

// Real photos from the TensorFlow module (testmodels.Photo), with their sampling.
const (
	photoMedium   = "tensorflow/core/lib/jpeg/testdata/medium.jpg"                                  // 500×375, 4:4:4
	photoSparrow  = "tensorflow/lite/g3doc/inference_with_metadata/task_library/images/sparrow.jpg" // 640×480, 4:2:0
	photoSnow12MP = "tensorflow/lite/experimental/acceleration/mini_benchmark/snow_4032_3024_3.jpg" // 4032×3024, 4:2:0
)

// needTurbo returns an image decoder that uses libjpeg-turbo from the system, gated as
// testenv.Need (Debian package libturbojpeg0).
func needTurbo(t testing.TB) *imageDecoder {
	t.Helper()
	d := newImageDecoder(turboCandidates(RuntimeConfig{}))
	if d.turbo == nil {
		testenv.Need(t, "libturbojpeg0 ("+turboSoname+")", errors.New(d.Name()))
	}
	t.Cleanup(d.Close)
	return d
}

// readPNM parses a binary PPM (P6) or PGM (P5) with maxval 255, as djpeg and convert
// write them, into packed RGB (gray replicated).
func readPNM(t testing.TB, b []byte) (w, h int, rgb []byte) {
	t.Helper()
	var fields []string
	rest := b
	for len(fields) < 4 {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) > 0 && rest[0] == '#' {
			rest = rest[bytes.IndexByte(rest, '\n')+1:]
			continue
		}
		end := bytes.IndexAny(rest, " \t\r\n")
		if end < 0 {
			t.Fatalf("short PNM header")
		}
		fields = append(fields, string(rest[:end]))
		rest = rest[end:]
	}
	rest = rest[1:] // the single whitespace after maxval
	w, _ = strconv.Atoi(fields[1])
	h, _ = strconv.Atoi(fields[2])
	if fields[3] != "255" {
		t.Fatalf("PNM maxval %s", fields[3])
	}
	switch fields[0] {
	case "P6":
		if len(rest) != w*h*3 {
			t.Fatalf("PPM %dx%d has %d bytes of pixels", w, h, len(rest))
		}
		return w, h, rest
	case "P5":
		if len(rest) != w*h {
			t.Fatalf("PGM %dx%d has %d bytes of pixels", w, h, len(rest))
		}
		rgb = make([]byte, 0, 3*w*h)
		for _, v := range rest {
			rgb = append(rgb, v, v, v)
		}
		return w, h, rgb
	}
	t.Fatalf("not a binary PNM: %s", fields[0])
	return
}

// run runs a program and returns its stdout, failing t with its stderr.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(testenv.Program(t, name), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// djpeg decodes path with libjpeg-turbo's djpeg at scale m/8 (its defaults: islow IDCT,
// fancy upsampling), as packed RGB.
func djpeg(t testing.TB, path string, m int) (int, int, []byte) {
	t.Helper()
	return readPNM(t, run(t, "djpeg", "-scale", fmt.Sprintf("%d/8", m), "-pnm", path))
}

// upright returns the upright decoded picture's pixels, packed RGB.
func uprightPixels(img *rgbImage) (int, int, []byte) {
	w, h := img.decodedSize()
	rows, cols := make([]int, h), make([]int, w)
	for i := range rows {
		rows[i] = i
	}
	for i := range cols {
		cols[i] = i
	}
	out := make([]byte, w*h*3)
	img.gatherUpright(rows, cols, out)
	return w, h, out
}

// firstDiff describes where two packed RGB pictures differ first, or "".
func firstDiff(w int, got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
	}
	n, at := 0, -1
	for i := range got {
		if got[i] != want[i] {
			if at < 0 {
				at = i
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	p := at / 3
	return fmt.Sprintf("%d of %d values differ, first at (%d,%d) channel %d: %d, want %d", n, len(got), p%w, p/w, at%3, got[at], want[at])
}

// TestTurboLoadsAndNamesItself: the system's libturbojpeg is loaded and named with the
// version its library embeds, the same djpeg (same source package) reports.
func TestTurboLoadsAndNamesItself(t *testing.T) {
	d := needTurbo(t)
	var stderr bytes.Buffer
	cmd := exec.Command(testenv.Program(t, "djpeg"), "-version")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var ver string
	if _, err := fmt.Sscanf(stderr.String(), "libjpeg-turbo version %s", &ver); err != nil {
		t.Fatalf("djpeg -version said %q", stderr.String())
	}
	// The system's library is djpeg's version. (A runtime closure's libturbojpeg.so.0,
	// loaded earlier in this test process, answers to the same soname: then its own.)
	name := d.Name()
	var got, path string
	if _, err := fmt.Sscanf(name, "libjpeg-turbo %s (%s", &got, &path); err != nil || !strings.Contains(path, "libturbojpeg.so.0") {
		t.Fatalf("decoder %q, want libjpeg-turbo VERSION (/…/libturbojpeg.so.0…)", name)
	}
	if strings.HasPrefix(path, "/usr/lib/") && got != ver {
		t.Fatalf("decoder %q: the system's library, want djpeg's version %s", name, ver)
	}
	if len(d.turbo.lib.factors) < 8 {
		t.Fatalf("scaling factors %v: want at least the eight k/8", d.turbo.lib.factors)
	}
}

// TestTurboMissingFallsBack: without the library JPEG goes through image/jpeg, the
// decoder's name says why, and decoding still works.
func TestTurboMissingFallsBack(t *testing.T) {
	d := newImageDecoder([]string{filepath.Join(t.TempDir(), turboSoname)})
	defer d.Close()
	if d.turbo != nil {
		t.Fatal("loaded a library that does not exist")
	}
	if name := d.Name(); !strings.HasPrefix(name, "go image/jpeg (libturbojpeg.so.0 not found: ") {
		t.Fatalf("decoder name %q", name)
	}
	img, err := d.decode(encodeJPEG(t, solid(40, 30, color.RGBA{200, 10, 10, 255})), DefaultMaxPixels, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.src.(*image.YCbCr); !ok || img.w != 40 || img.h != 30 {
		t.Fatalf("got %T %dx%d, want image/jpeg's YCbCr at 40x30", img.src, img.w, img.h)
	}
}

// fidelityPhotos are real photos covering the chroma samplings libjpeg upsamples
// differently (4:2:0, 4:4:4, 4:4:0, odd sizes with partial blocks), plus files cjpeg
// makes from one of them (4:2:2, progressive, grayscale).
func fidelityPhotos(t *testing.T) map[string]string {
	t.Helper()
	photos := map[string]string{
		"grace_hopper 517x606 4:2:0": testmodels.Photo(t, photoGraceHopper),
		"medium 500x375 4:4:4":       testmodels.Photo(t, photoMedium),
		"surfers 480x228 4:4:0":      testmodels.Photo(t, photoSurfers),
		"sparrow 640x480 4:2:0":      testmodels.Photo(t, photoSparrow),
		"snow 4032x3024 4:2:0":       testmodels.Photo(t, photoSnow12MP),
	}
	dir := t.TempDir()
	ppm := filepath.Join(dir, "grace.ppm")
	if err := os.WriteFile(ppm, run(t, "djpeg", "-ppm", photos["grace_hopper 517x606 4:2:0"]), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"grace 4:2:2 (cjpeg)":             {"-sample", "2x1"},
		"grace progressive 4:2:0 (cjpeg)": {"-progressive"},
		"grace grayscale (cjpeg)":         {"-grayscale"},
	} {
		p := filepath.Join(dir, strings.Fields(name)[1]+".jpg")
		if err := os.WriteFile(p, run(t, "cjpeg", append(append([]string{"-quality", "90"}, args...), ppm)...), 0o644); err != nil {
			t.Fatal(err)
		}
		photos[name] = p
	}
	return photos
}

// TestTurboMatchesDjpeg: the pixels decoded at every DCT scale m/8 are exactly what
// `djpeg -scale m/8` gives for the same file.
func TestTurboMatchesDjpeg(t *testing.T) {
	d := needTurbo(t)
	for name, path := range fidelityPhotos(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for m := 1; m <= 8; m++ {
			t.Run(fmt.Sprintf("%s/scale %d-8", name, m), func(t *testing.T) {
				ww, wh, want := djpeg(t, path, m)
				f := scaleFactor{int32(m), 8}
				w, h, _, err := d.turbo.header(data)
				if err != nil {
					t.Fatal(err)
				}
				if f.scaled(w) != ww || f.scaled(h) != wh {
					t.Fatalf("scaled size %dx%d, djpeg %dx%d", f.scaled(w), f.scaled(h), ww, wh)
				}
				got, err := d.turbo.decodeScaled(data, ww, wh)
				if err != nil {
					t.Fatal(err)
				}
				if diff := firstDiff(ww, got, want); diff != "" {
					t.Fatal(diff)
				}
			})
		}
	}
}

func TestPickScale(t *testing.T) {
	eighths := []scaleFactor{{2, 1}, {15, 8}, {7, 4}, {13, 8}, {3, 2}, {11, 8}, {5, 4}, {9, 8}, {1, 1}, {7, 8}, {3, 4}, {5, 8}, {1, 2}, {3, 8}, {1, 4}, {1, 8}}
	tests := []struct {
		name                 string
		w, h, needW, needH   int
		want                 scaleFactor
		wantSizeW, wantSizeH int
	}{
		{"12 MP to 224", 4032, 3024, 224, 224, scaleFactor{1, 8}, 504, 378},
		{"12 MP to 300", 4032, 3024, 300, 300, scaleFactor{1, 8}, 504, 378},
		{"12 MP to 512", 4032, 3024, 512, 512, scaleFactor{1, 4}, 1008, 756},
		{"640x480 to 224", 640, 480, 224, 224, scaleFactor{1, 2}, 320, 240},
		{"640x480 to 300", 640, 480, 300, 300, scaleFactor{5, 8}, 400, 300},
		{"exactly the input", 224, 224, 224, 224, scaleFactor{1, 1}, 224, 224},
		{"smaller than the input: never upscaled", 100, 80, 224, 224, scaleFactor{1, 1}, 100, 80},
		{"one side decides: 200 × 7/8 < 224", 1000, 200, 224, 224, scaleFactor{1, 1}, 1000, 200},
		{"nothing needed: full size", 640, 480, 0, 0, scaleFactor{1, 1}, 640, 480},
		{"ceil rounding counts", 1790, 1790, 224, 224, scaleFactor{1, 8}, 224, 224},
		{"one below does not", 1784, 1784, 224, 224, scaleFactor{1, 4}, 446, 446},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := pickScale(eighths, tc.w, tc.h, tc.needW, tc.needH)
			if f.Num*tc.want.Denom != tc.want.Num*f.Denom || f.scaled(tc.w) != tc.wantSizeW || f.scaled(tc.h) != tc.wantSizeH {
				t.Fatalf("got %v (%dx%d), want %v (%dx%d)", f, f.scaled(tc.w), f.scaled(tc.h), tc.want, tc.wantSizeW, tc.wantSizeH)
			}
		})
	}
}

// TestTurboScalesThenResizes: a job's tensor is the existing bilinear resize of the
// DCT-scaled picture, and that picture is djpeg's at the same scale: the smallest one
// whose size still covers the model input.
func TestTurboScalesThenResizes(t *testing.T) {
	d := needTurbo(t)
	for _, tc := range []struct {
		photo          string
		inW, inH, m    int
		wantW, wantH   int // DCT-scaled, djpeg -scale m/8
		wantFullW, ful int // the picture's own size
	}{
		{photoSnow12MP, 224, 224, 1, 504, 378, 4032, 3024},
		{photoSnow12MP, 300, 300, 1, 504, 378, 4032, 3024},
		{photoSparrow, 224, 224, 4, 320, 240, 640, 480},
		{photoSparrow, 300, 300, 5, 400, 300, 640, 480},
		{photoGraceHopper, 224, 224, 4, 259, 303, 517, 606}, // 3/8 gives 194×228: too narrow
	} {
		t.Run(fmt.Sprintf("%s to %dx%d", filepath.Base(tc.photo), tc.inW, tc.inH), func(t *testing.T) {
			path := testmodels.Photo(t, tc.photo)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			img, err := d.decode(data, DefaultMaxPixels, tc.inW, tc.inH)
			if err != nil {
				t.Fatal(err)
			}
			w, h, got := uprightPixels(img)
			if w != tc.wantW || h != tc.wantH || img.w != tc.wantFullW || img.h != tc.ful {
				t.Fatalf("decoded %dx%d of a %dx%d picture, want %dx%d of %dx%d", w, h, img.w, img.h, tc.wantW, tc.wantH, tc.wantFullW, tc.ful)
			}
			dw, dh, want := djpeg(t, path, tc.m)
			if diff := firstDiff(dw, got, want); diff != "" || dw != w || dh != h {
				t.Fatalf("pixels differ from djpeg -scale %d/8 (%dx%d): %s", tc.m, dw, dh, diff)
			}
			in := inputSpec{h: tc.inH, w: tc.inW, c: 3, typ: "float32"}
			norm := normFor(ModelConfig{Normalize: Normalize01}, in)
			ref := fromPix(dw, dh, want)
			if !bytes.Equal(preprocess(img, in, norm, nil), preprocess(ref, in, norm, nil)) {
				t.Fatal("tensor differs from the bilinear resize of djpeg's pixels")
			}
		})
	}
}

// jpegWithSize is a JPEG whose frame header claims w×h (the scan data is that of a
// 16×16 picture): a decompression bomb as far as the header goes.
func jpegWithSize(t testing.TB, w, h uint16) []byte {
	b := encodeJPEG(t, solid(16, 16, color.White))
	for i := 2; i+9 < len(b); i++ {
		if b[i] == 0xFF && b[i+1] == 0xC0 { // SOF0: FF C0 len(2) precision(1) height(2) width(2)
			b[i+5], b[i+6] = byte(h>>8), byte(h)
			b[i+7], b[i+8] = byte(w>>8), byte(w)
			return b
		}
	}
	t.Fatal("no SOF0 in Go's JPEG")
	return nil
}

// TestTurboRefusesAndDeclines: the size limit is applied to the header before
// libjpeg-turbo decodes anything; what it cannot decode cleanly goes to image/jpeg, so a
// broken JPEG is refused permanently as before and a CMYK one still decodes.
func TestTurboRefusesAndDeclines(t *testing.T) {
	d := needTurbo(t)
	good := encodeJPEG(t, solid(32, 24, color.RGBA{200, 10, 10, 255}))
	cmyk, err := os.ReadFile(filepath.Join("..", "testdata", "images", "cmyk.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		kind error // nil: decodes
		src  string
	}{
		{"bomb: 60000x60000 claimed", jpegWithSize(t, 60000, 60000), ErrImageTooLarge, ""},
		{"just under the limit is decoded", jpegWithSize(t, 16, 16), nil, "*infer.packedRGB"},
		{"truncated", good[:len(good)/2], ErrBadImage, ""},
		{"header only", good[:20], ErrBadImage, ""},
		{"random bytes after the magic", append([]byte{0xFF, 0xD8, 0xFF}, bytes.Repeat([]byte{0x13, 0x37}, 500)...), ErrBadImage, ""},
		{"CMYK goes to image/jpeg", cmyk, nil, "*image.CMYK"},
		{"good", good, nil, "*infer.packedRGB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.turbo.decompressions
			img, err := d.decode(tc.data, 1<<20, 224, 224)
			if tc.kind != nil {
				if !errors.Is(err, tc.kind) || !IsPermanent(err) {
					t.Fatalf("got %v, want permanent %v", err, tc.kind)
				}
				if tc.kind == ErrImageTooLarge && d.turbo.decompressions != before {
					t.Fatal("a picture over the limit was handed to tjDecompress2")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", img.src); got != tc.src {
				t.Fatalf("decoded by %s, want %s", got, tc.src)
			}
		})
	}
}

// orientedFiles writes the photo with each EXIF orientation set by exiftool (a real
// tool, as a camera or phone would write it), alternating byte orders, and returns the
// paths by orientation.
func orientedFiles(t *testing.T, photo string) map[int]string {
	t.Helper()
	dir := t.TempDir()
	var args []string
	files := map[int]string{}
	for o := 1; o <= 8; o++ {
		order := "MM"
		if o%2 == 0 {
			order = "II"
		}
		files[o] = filepath.Join(dir, fmt.Sprintf("orient%d-%s.jpg", o, order))
		args = append(args, "-n", "-ExifByteOrder="+order, fmt.Sprintf("-Orientation=%d", o), "-o", files[o], photo, "-execute")
	}
	argfile := filepath.Join(dir, "args")
	if err := os.WriteFile(argfile, []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "exiftool", "-q", "-@", argfile)
	return files
}

// imageMagick returns ImageMagick's convert, gated (Debian package imagemagick).
func imageMagick(t *testing.T) string {
	t.Helper()
	p := testenv.Program(t, "convert")
	out, _ := exec.Command(p, "-version").CombinedOutput()
	if !bytes.Contains(out, []byte("ImageMagick")) {
		testenv.Need(t, "ImageMagick's convert", fmt.Errorf("%s -version: %q", p, firstLine(out)))
	}
	return p
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// TestEXIFOrientationRealFiles: real photos with each of the 8 orientations written by
// exiftool come out upright exactly as ImageMagick's `convert -auto-orient` shows them
// (libjpeg-turbo path, full size), and through image/jpeg as the unrotated decode moved
// by ImageMagick's own permutation for that orientation. Both byte orders are covered.
func TestEXIFOrientationRealFiles(t *testing.T) {
	d := needTurbo(t)
	im := imageMagick(t)
	photo := testmodels.Photo(t, photoGraceHopper)
	files := orientedFiles(t, photo)
	plainGo, err := decodeImage(mustRead(t, files[1]), DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	sw, sh := plainGo.src.Bounds().Dx(), plainGo.src.Bounds().Dy()
	_, _, plainPix := uprightPixels(plainGo)
	dir := t.TempDir()
	for o := 1; o <= 8; o++ {
		t.Run(fmt.Sprintf("orientation %d", o), func(t *testing.T) {
			data := mustRead(t, files[o])
			if got := jpegOrientation(data); got != o {
				t.Fatalf("parsed orientation %d from exiftool's file", got)
			}
			// libjpeg-turbo, full size, against ImageMagick's upright picture.
			ref := filepath.Join(dir, fmt.Sprintf("im%d.ppm", o))
			run(t, im, "-define", "jpeg:dct-method=islow", files[o], "-auto-orient", ref)
			ww, wh, want := readPNM(t, mustRead(t, ref))
			img, err := d.decode(data, DefaultMaxPixels, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			w, h, got := uprightPixels(img)
			if w != ww || h != wh || img.w != ww || img.h != wh {
				t.Fatalf("upright %dx%d (picture %dx%d), ImageMagick %dx%d", w, h, img.w, img.h, ww, wh)
			}
			if diff := firstDiff(w, got, want); diff != "" {
				t.Fatalf("libjpeg-turbo path vs convert -auto-orient: %s", diff)
			}
			// image/jpeg: ImageMagick turns a picture of coordinates the same way; the
			// upright Go decode must be the unrotated one moved by that permutation.
			perm := imagePermutation(t, im, dir, sw, sh, o)
			gimg, err := decodeImage(data, DefaultMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			gw, gh, gpix := uprightPixels(gimg)
			if gw != ww || gh != wh {
				t.Fatalf("image/jpeg upright %dx%d, want %dx%d", gw, gh, ww, wh)
			}
			moved := make([]byte, len(gpix))
			for i, src := range perm {
				copy(moved[3*i:3*i+3], plainPix[3*src:3*src+3])
			}
			if diff := firstDiff(gw, gpix, moved); diff != "" {
				t.Fatalf("image/jpeg path vs ImageMagick's permutation: %s", diff)
			}
		})
	}
}

// imagePermutation asks ImageMagick where each upright pixel of a w×h picture with EXIF
// orientation o comes from: it auto-orients a picture whose pixels encode their own
// coordinates. perm[i] is the stored pixel index of upright pixel i.
func imagePermutation(t *testing.T, im, dir string, w, h, o int) []int {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "P6\n%d %d\n255\n", w, h)
	for y := range h {
		for x := range w {
			b.Write([]byte{byte(x), byte(y), byte(x>>8) | byte(y>>8)<<4})
		}
	}
	in, out := filepath.Join(dir, "coords.ppm"), filepath.Join(dir, fmt.Sprintf("coords%d.ppm", o))
	if err := os.WriteFile(in, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{"", "TopLeft", "TopRight", "BottomRight", "BottomLeft", "LeftTop", "RightTop", "RightBottom", "LeftBottom"}
	run(t, im, in, "-orient", names[o], "-auto-orient", out)
	_, _, pix := readPNM(t, mustRead(t, out))
	perm := make([]int, len(pix)/3)
	for i := range perm {
		x := int(pix[3*i]) | int(pix[3*i+2]&0x0F)<<8
		y := int(pix[3*i+1]) | int(pix[3*i+2]>>4)<<8
		perm[i] = y*w + x
	}
	return perm
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOrientationPicksScaleUpright: for a turned picture the DCT scale is chosen so the
// upright picture covers the input (a 517×606 photo turned 90° is 606 wide).
func TestOrientationPicksScaleUpright(t *testing.T) {
	d := needTurbo(t)
	files := orientedFiles(t, testmodels.Photo(t, photoGraceHopper))
	for _, tc := range []struct {
		o          int
		inW, inH   int
		want       scaleFactor
		decW, decH int
	}{
		// Upright 606 wide: 7/8 gives 531 ≥ 520 (and 453 ≥ 60).
		{6, 520, 60, scaleFactor{7, 8}, 531, 453},
		// Not turned: 517 wide never reaches 520 below 1/1.
		{1, 520, 60, scaleFactor{1, 1}, 517, 606},
		{8, 60, 450, scaleFactor{7, 8}, 531, 453},
	} {
		img, err := d.decode(mustRead(t, files[tc.o]), DefaultMaxPixels, tc.inW, tc.inH)
		if err != nil {
			t.Fatal(err)
		}
		w, h := img.decodedSize()
		if img.scale != tc.want || w != tc.decW || h != tc.decH {
			t.Errorf("orientation %d, input %dx%d: scale %v, upright %dx%d; want %v, %dx%d", tc.o, tc.inW, tc.inH, img.scale, w, h, tc.want, tc.decW, tc.decH)
		}
	}
}

// withOrientation puts an Exif segment with orientation o right after a JPEG's SOI.
func withOrientation(j []byte, o int) []byte {
	seg := exifSegment(tiffIFD0(binary.BigEndian, [][4]uint32{{tagOrientation, tiffShort, 1, uint32(o)}}))
	return append(append([]byte{0xFF, 0xD8}, seg...), j[2:]...)
}

// TestEngineDecodesWithTurbo: the engine, in process and in the supervised child (which
// runs under the TFLite runtime closure's loader), loads libjpeg-turbo and says so in
// ModelInfo.Decoder; a job's JPEG is DCT-scaled for the model yet the result describes
// the picture upright at its own size.
func TestEngineDecodesWithTurbo(t *testing.T) {
	rt := needRuntime(t)
	needTurbo(t)
	path := writeFile(t, t.TempDir(), "tiny.tflite", tflitegen.Tiny())
	cfg := ModelConfig{Path: path, Kind: KindRaw, Normalize: NormalizeNone}
	eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	s := newTestSupervisor(t, rt, cfg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	jpg := withOrientation(encodeJPEG(t, solid(640, 480, color.RGBA{10, 20, 30, 255})), orientRotate90CW)
	for name, e := range map[string]Engine{"in process": eng, "supervised": s} {
		t.Run(name, func(t *testing.T) {
			t.Log(e.Info().Decoder)
			if d := e.Info().Decoder; !strings.HasPrefix(d, "libjpeg-turbo ") {
				t.Fatalf("ModelInfo.Decoder = %q, want libjpeg-turbo", d)
			}
			res, err := e.Run(context.Background(), jpg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Image.Width != 480 || res.Image.Height != 640 || res.Image.Format != "jpeg" {
				t.Fatalf("image %+v, want the upright 480x640 jpeg", res.Image)
			}
			// Tiny: channel means times (1, 2, 3) plus (0.5, 0, -1).
			want := []float32{10.5, 40, 89}
			for i, w := range want {
				if d := res.Raw[0].Data[i] - w; d > 3 || d < -3 {
					t.Fatalf("outputs %v, want about %v", res.Raw[0].Data, want)
				}
			}
		})
	}
}

// TestTurboFoundInRuntimeDir: a libturbojpeg inside the TFLite runtime closure is
// preferred to the system's, as the TFLite library is found there.
func TestTurboFoundInRuntimeDir(t *testing.T) {
	sys := needTurbo(t).turbo.lib.path
	dir := t.TempDir()
	// A closure as fetch-tflite-runtime.sh lays it out (either architecture), holding a
	// copy of the system's libturbojpeg.
	for _, f := range []string{
		"usr/lib64/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libtensorflow-lite.so.2.14.1",
		"usr/lib/ld-linux-aarch64.so.1", "usr/lib/aarch64-linux-gnu/libtensorflow-lite.so.2.14.1",
	} {
		mkfile(t, filepath.Join(dir, f), nil)
	}
	var libDir string
	for _, d := range []string{"x86_64-linux-gnu", "aarch64-linux-gnu"} {
		p := filepath.Join(dir, "usr/lib", d)
		mkfile(t, filepath.Join(p, turboSoname), mustRead(t, sys))
		if c := turboCandidates(RuntimeConfig{RuntimeDir: dir}); c[0] == filepath.Join(p, turboSoname) {
			libDir = p
		}
	}
	c := turboCandidates(RuntimeConfig{RuntimeDir: dir})
	if libDir == "" || len(c) != 2 || c[1] != turboSoname {
		t.Fatalf("candidates %q: want the closure's copy, then %s", c, turboSoname)
	}
	d := newImageDecoder(c)
	defer d.Close()
	if want := filepath.Join(libDir, turboSoname); !strings.Contains(d.Name(), want) {
		t.Fatalf("decoder %q, want the copy in the runtime dir %s", d.Name(), want)
	}
	if c := turboCandidates(RuntimeConfig{RuntimeDir: t.TempDir()}); len(c) != 1 || c[0] != turboSoname {
		t.Fatalf("candidates for an empty runtime dir: %q", c)
	}
}

func mkfile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeTurbo: whatever the bytes, the libjpeg-turbo path (with image/jpeg behind
// it) returns a picture within the pixel limit or a permanent error, and the picture
// can be pre-processed.
func FuzzDecodeTurbo(f *testing.F) {
	d := needTurbo(f)
	f.Add(encodeJPEG(f, noiseImage(40, 30, 1)), uint8(1))
	f.Add(withOrientation(encodeJPEG(f, noiseImage(17, 9, 2)), 6), uint8(2))
	f.Add(jpegWithSize(f, 5000, 5000), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, need uint8) {
		img, err := d.decode(data, 1<<20, int(need), int(need/2))
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("decode error must be permanent: %v", err)
			}
			return
		}
		dw, dh := img.decodedSize()
		if img.w*img.h > 1<<20 || img.w <= 0 || img.h <= 0 || dw <= 0 || dh <= 0 || dw > img.w || dh > img.h {
			t.Fatalf("bad image %dx%d decoded at %dx%d", img.w, img.h, dw, dh)
		}
		preprocess(img, inputSpec{h: 3, w: 5, c: 3, typ: "uint8", scale: 1}, normFor(ModelConfig{Normalize: NormalizeNone}, inputSpec{}), nil)
	})
}
