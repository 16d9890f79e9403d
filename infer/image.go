package infer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
)

// imageFormat is an image format recognized by its first bytes, with Go's decoder.
type imageFormat struct {
	name   string
	magic  []byte
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

var formats = []imageFormat{
	{"jpeg", []byte{0xFF, 0xD8, 0xFF}, jpeg.DecodeConfig, jpeg.Decode},
	{"png", []byte("\x89PNG\r\n\x1a\n"), png.DecodeConfig, png.Decode},
	{"gif", []byte("GIF8"), gif.DecodeConfig, gif.Decode},
}

// rgbImage is a decoded image. Pixels are converted to RGB only where the resize
// samples them (see preprocess), so a large camera frame costs little beyond its decode.
type rgbImage struct {
	// w, h are the picture's size upright (after its EXIF orientation) in its own
	// pixels, before any DCT scaling: what results (boxes) refer to.
	w, h   int
	format string
	// src holds the decoded pixels as stored (not turned upright), at the DCT scale
	// the decoder used (scale; zero means 1/1).
	src    image.Image
	orient orientation
	scale  scaleFactor
}

// imageDecoder decodes the images of one engine: JPEG through libjpeg-turbo when the
// library could be loaded (at the smallest DCT scale that still covers the model's
// input), else through image/jpeg; PNG and GIF through Go. A nil *imageDecoder is Go
// only. Safe for concurrent use.
type imageDecoder struct {
	turbo *turboDecoder // nil: image/jpeg
	name  string        // for ModelInfo.Decoder
}

// goJPEG names image/jpeg in ModelInfo.Decoder.
const goJPEG = "go image/jpeg"

// newImageDecoder loads libjpeg-turbo from the candidates (turboCandidates); when it
// cannot, JPEG goes through image/jpeg and the name says why.
func newImageDecoder(candidates []string) *imageDecoder {
	lib, err := openTurbo(candidates)
	if err == nil {
		var d *turboDecoder
		if d, err = lib.newDecoder(); err == nil {
			return &imageDecoder{turbo: d, name: lib.name()}
		}
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return &imageDecoder{name: fmt.Sprintf("%s (%s not found: %s)", goJPEG, turboSoname, msg)}
}

// Name says which JPEG decoder runs.
func (d *imageDecoder) Name() string {
	if d == nil {
		return goJPEG
	}
	return d.name
}

// Close frees the TurboJPEG instance. Safe to call twice.
func (d *imageDecoder) Close() {
	if d != nil && d.turbo != nil {
		d.turbo.Close()
	}
}

// decodeImage decodes with Go's decoders at full size (tests, fuzzing).
func decodeImage(data []byte, maxPixels int64) (*rgbImage, error) {
	return (*imageDecoder)(nil).decode(data, maxPixels, 0, 0)
}

// decode checks the header against maxPixels before decoding, then decodes. A JPEG
// goes to libjpeg-turbo when loaded, scaled in the DCT domain to the smallest size whose
// upright picture is at least needW×needH (0, 0: full size); a JPEG libjpeg-turbo
// declines (CMYK, a warning or error on corrupt data) goes to image/jpeg, whose verdict
// stands. JPEGs are turned upright by their EXIF orientation.
func (d *imageDecoder) decode(data []byte, maxPixels int64, needW, needH int) (*rgbImage, error) {
	if len(data) == 0 {
		return nil, badImage(nil, "empty (0 bytes)")
	}
	var f = -1
	for i, fm := range formats {
		if bytes.HasPrefix(data, fm.magic) {
			f = i
			break
		}
	}
	if f < 0 {
		return nil, badImage(nil, "not a JPEG, PNG or GIF image (%d bytes starting %q)", len(data), head(data))
	}
	fm := formats[f]
	if fm.name == "jpeg" && d != nil && d.turbo != nil {
		img, err := d.turbo.decode(data, maxPixels, needW, needH)
		if !errors.Is(err, errTurboDeclined) {
			return img, err
		}
	}
	return decodeGo(fm, data, maxPixels)
}

// decodeGo decodes with Go's decoder for the format, after the header check.
func decodeGo(fm imageFormat, data []byte, maxPixels int64) (*rgbImage, error) {
	cfg, err := fm.config(bytes.NewReader(data))
	if err != nil {
		return nil, badImage(err, "cannot read %s header (corrupt or truncated)", fm.name)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, badImage(nil, "%s has zero size %dx%d", fm.name, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return nil, newErr(ErrImageTooLarge, true, nil, "%s is %dx%d = %d pixels, limit %d", fm.name, cfg.Width, cfg.Height, px, maxPixels)
	}
	img, err := fm.decode(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, badImage(err, "%s is truncated", fm.name)
		}
		return nil, badImage(err, "cannot decode %s", fm.name)
	}
	var o orientation
	if fm.name == "jpeg" {
		o = newOrientation(jpegOrientation(data))
	}
	b := img.Bounds()
	w, h := o.upright(b.Dx(), b.Dy())
	return &rgbImage{w: w, h: h, format: fm.name, src: img, orient: o}, nil
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// gather converts the pixels at the given source rows × columns to packed RGB (rows
// major): out[(i*len(cols)+j)*3+c]. Alpha is dropped (stored colors are used as they
// are, not blended). Fast paths cover what image/jpeg, image/png and image/gif return;
// anything else (CMYK, 16-bit, paletted) goes through the color model.
func gather(img image.Image, rows, cols []int, out []uint8) {
	b := img.Bounds()
	o := 0
	switch m := img.(type) {
	case *image.YCbCr:
		for _, y := range rows {
			for _, x := range cols {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				out[o], out[o+1], out[o+2] = ycbcrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o += 3
			}
		}
	case *packedRGB:
		for _, y := range rows {
			row := m.pix[y*m.w*3:]
			for _, x := range cols {
				out[o], out[o+1], out[o+2] = row[3*x], row[3*x+1], row[3*x+2]
				o += 3
			}
		}
	case *image.Gray:
		for _, y := range rows {
			row := m.Pix[y*m.Stride:]
			for _, x := range cols {
				v := row[x]
				out[o], out[o+1], out[o+2] = v, v, v
				o += 3
			}
		}
	case *image.NRGBA:
		for _, y := range rows {
			row := m.Pix[y*m.Stride:]
			for _, x := range cols {
				out[o], out[o+1], out[o+2] = row[4*x], row[4*x+1], row[4*x+2]
				o += 3
			}
		}
	case *image.RGBA:
		for _, y := range rows {
			row := m.Pix[y*m.Stride:]
			for _, x := range cols {
				out[o], out[o+1], out[o+2] = row[4*x], row[4*x+1], row[4*x+2]
				o += 3
			}
		}
	default:
		for _, y := range rows {
			for _, x := range cols {
				r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				out[o], out[o+1], out[o+2] = uint8(r>>8), uint8(g>>8), uint8(bl>>8)
				o += 3
			}
		}
	}
}

// decodedSize is the size of the decoded pixels turned upright (the picture's size at
// the decoder's DCT scale).
func (m *rgbImage) decodedSize() (int, int) {
	b := m.src.Bounds()
	return m.orient.upright(b.Dx(), b.Dy())
}

// gatherUpright is gather in the upright picture at the decoded scale: rows and cols
// are positions there, mapped to the stored pixels through the EXIF orientation.
func (m *rgbImage) gatherUpright(rows, cols []int, out []uint8) {
	b := m.src.Bounds()
	sw, sh := b.Dx(), b.Dy()
	o := m.orient
	if !o.transpose {
		gather(m.src, mirror(rows, sh, o.flipY), mirror(cols, sw, o.flipX), out)
		return
	}
	// Upright columns are stored rows and upright rows stored columns: gather the
	// transposed grid, then transpose it back.
	t := make([]uint8, len(rows)*len(cols)*3)
	gather(m.src, mirror(cols, sh, o.flipX), mirror(rows, sw, o.flipY), t)
	for i := range rows {
		for j := range cols {
			copy(out[(i*len(cols)+j)*3:][:3], t[(j*len(rows)+i)*3:])
		}
	}
}

// mirror returns idx, or each n-1-i when flip is set.
func mirror(idx []int, n int, flip bool) []int {
	if !flip {
		return idx
	}
	out := make([]int, len(idx))
	for k, i := range idx {
		out[k] = n - 1 - i
	}
	return out
}

// pixel returns the RGB value at (x, y) of the upright decoded picture, for tests and
// diagnostics.
func (m *rgbImage) pixel(x, y int) [3]uint8 {
	var p [3]uint8
	m.gatherUpright([]int{y}, []int{x}, p[:])
	return p
}

// ycbcrToRGB is the JFIF conversion (as image/color does), inlined for speed.
func ycbcrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy := int32(y) * 0x10101
	cb1 := int32(cb) - 128
	cr1 := int32(cr) - 128
	r := yy + 91881*cr1
	g := yy - 22554*cb1 - 46802*cr1
	b := yy + 116130*cb1
	return clamp16(r), clamp16(g), clamp16(b)
}

func clamp16(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// inputSpec is what the model's image input wants.
type inputSpec struct {
	h, w, c   int
	typ       string // float32, uint8, int8
	scale     float32
	zeroPoint int32
}

func imageInput(t TensorInfo) (inputSpec, error) {
	if len(t.Shape) != 4 || t.Shape[0] != 1 {
		return inputSpec{}, badModel(nil, "input %s: want an image tensor [1,H,W,C]", t)
	}
	s := inputSpec{h: t.Shape[1], w: t.Shape[2], c: t.Shape[3], typ: t.Type, scale: t.Scale, zeroPoint: t.ZeroPoint}
	if s.h <= 0 || s.w <= 0 || (s.c != 1 && s.c != 3) {
		return inputSpec{}, badModel(nil, "input %s: want H,W > 0 and 1 or 3 channels", t)
	}
	switch s.typ {
	case "float32":
	case "uint8", "int8":
		if s.scale == 0 {
			return inputSpec{}, badModel(nil, "input %s is %s but has no quantization scale", t, s.typ)
		}
	default:
		return inputSpec{}, badModel(nil, "input %s: type %s is not supported (float32, uint8, int8)", t, s.typ)
	}
	return s, nil
}

// normalizer maps a pixel value of channel c to the model's real-valued input, or, with
// raw set, feeds the (resized) pixel value itself to a quantized input, plus offset
// (-128 for int8).
type normalizer struct {
	mul, add [3]float32
	raw      bool
	offset   float32
}

// newNormalizer picks the input mapping for cfg.Normalize and the input tensor, and
// describes it for ModelInfo.InputConvention.
func newNormalizer(cfg ModelConfig, in inputSpec) (normalizer, string) {
	var n normalizer
	auto := cfg.Normalize == NormalizeAuto
	if auto {
		switch in.typ {
		case "uint8":
			n.raw = true
			return n, fmt.Sprintf("raw pixels 0..255 (uint8 input, scale %g, zero point %d; auto)", in.scale, in.zeroPoint)
		case "int8":
			n.raw, n.offset = true, -128
			return n, fmt.Sprintf("raw pixels - 128 (int8 input, scale %g, zero point %d; auto)", in.scale, in.zeroPoint)
		}
		cfg.Normalize = Normalize01
	}
	for c := range 3 {
		switch cfg.Normalize {
		case Normalize01:
			n.mul[c], n.add[c] = 1.0/255, 0
		case NormalizeM11:
			n.mul[c], n.add[c] = 1/127.5, -1
		case NormalizeMeanStd:
			n.mul[c], n.add[c] = 1/cfg.Std[c], -cfg.Mean[c]/cfg.Std[c]
		default:
			n.mul[c], n.add[c] = 1, 0
		}
	}
	how := "normalize " + cfg.Normalize + " (model.normalize)"
	if auto {
		how = "normalize 0_1 (float input; auto)"
	}
	if in.typ != "float32" {
		how += fmt.Sprintf(", then quantized (%s input, scale %g, zero point %d)", in.typ, in.scale, in.zeroPoint)
	}
	return n, how
}

// preprocess resizes the upright decoded picture to the input (bilinear, half-pixel
// centers), normalizes and, for quantized inputs, quantizes; it writes the tensor bytes
// (NHWC) into dst.
func preprocess(img *rgbImage, in inputSpec, norm normalizer, dst []byte) []byte {
	return preprocessInto(img, in, norm, dst, nil)
}

// preScratch is what preprocessInto keeps from one call to the next: the gathered pixels'
// buffer and the resize taps of the last decoded size (camera images of one size need
// them computed once). One caller at a time.
type preScratch struct {
	grid         []uint8
	dw, dh, w, h int
	xs, ys       []tap
	cols, rows   []int
}

// taps returns the compacted resize taps from a dw×dh decoded picture to in.
func (sc *preScratch) taps(dw, dh int, in inputSpec) (xs []tap, cols []int, ys []tap, rows []int) {
	if sc == nil || sc.xs == nil || sc.dw != dw || sc.dh != dh || sc.w != in.w || sc.h != in.h {
		xs, cols = compactTaps(resizeTaps(dw, in.w))
		ys, rows = compactTaps(resizeTaps(dh, in.h))
		if sc != nil {
			sc.dw, sc.dh, sc.w, sc.h, sc.xs, sc.cols, sc.ys, sc.rows = dw, dh, in.w, in.h, xs, cols, ys, rows
		}
		return xs, cols, ys, rows
	}
	return sc.xs, sc.cols, sc.ys, sc.rows
}

// preprocessInto is preprocess with what it can keep kept in sc (nil: nothing kept).
func preprocessInto(img *rgbImage, in inputSpec, norm normalizer, dst []byte, sc *preScratch) []byte {
	n := in.h * in.w * in.c
	size := n
	if in.typ == "float32" {
		size = 4 * n
	}
	if cap(dst) < size {
		dst = make([]byte, size)
	}
	dst = dst[:size]
	dw, dh := img.decodedSize()
	xs, cols, ys, rows := sc.taps(dw, dh, in)
	var g []uint8
	if sc != nil {
		g = sc.grid
	}
	if n := len(rows) * len(cols) * 3; cap(g) < n {
		g = make([]uint8, n)
	} else {
		g = g[:n]
	}
	if sc != nil {
		sc.grid = g
	}
	img.gatherUpright(rows, cols, g)
	stride := len(cols) * 3
	const (
		kFloat = iota
		kUint8
		kInt8
	)
	kind := kFloat
	switch in.typ {
	case "uint8":
		kind = kUint8
	case "int8":
		kind = kInt8
	}
	invScale, zp := float32(1), float32(in.zeroPoint)
	if in.scale != 0 {
		invScale = 1 / in.scale
	}
	if kind == kFloat && in.c == 3 && !norm.raw && fastRGBFloat {
		preprocessRGBFloat(dst, xs, ys, g, stride, in.w, in.h, norm)
		return dst
	}
	var px [3]float32
	i := 0
	for y := range in.h {
		ty := ys[y]
		r0 := g[ty.i0*stride:]
		r1 := g[ty.i1*stride:]
		fy := ty.f
		for x := range in.w {
			tx := xs[x]
			a0, a1 := tx.i0*3, tx.i1*3
			fx := tx.f
			for c := range 3 {
				// float32() around each product keeps arm64 from fusing it into an FMA:
				// the same bits on every architecture.
				a := float32(r0[a0+c]) + float32((float32(r0[a1+c])-float32(r0[a0+c]))*fx)
				b := float32(r1[a0+c]) + float32((float32(r1[a1+c])-float32(r1[a0+c]))*fx)
				px[c] = a + float32((b-a)*fy)
			}
			if in.c == 1 {
				// ITU-R BT.601 luma, then the channel-0 normalization.
				px[0] = 0.299*px[0] + 0.587*px[1] + 0.114*px[2]
			}
			for c := range in.c {
				if norm.raw {
					// The quantized value is the pixel itself (TFLite's convention).
					q := roundHalfAway(px[c]) + norm.offset
					if kind == kUint8 {
						dst[i] = uint8(min(max(q, 0), 255))
					} else {
						dst[i] = byte(int8(min(max(q, -128), 127)))
					}
					i++
					continue
				}
				v := float32(px[c]*norm.mul[c]) + norm.add[c]
				switch kind {
				case kFloat:
					binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
				case kUint8:
					dst[i] = uint8(min(max(roundHalfAway(v*invScale)+zp, 0), 255))
				case kInt8:
					dst[i] = byte(int8(min(max(roundHalfAway(v*invScale)+zp, -128), 127)))
				}
				i++
			}
		}
	}
	return dst
}

// fastRGBFloat lets preprocess take preprocessRGBFloat; a test turns it off to compare.
var fastRGBFloat = true

// preprocessRGBFloat is preprocess's loop for the most common input, three float32
// channels normalized by mul and add: the same arithmetic in the same order, each product
// rounded as there (so the same bits), without the general loop's per-value branches and
// bounds checks.
func preprocessRGBFloat(dst []byte, xs, ys []tap, grid []uint8, stride, w, h int, norm normalizer) {
	m0, m1, m2 := norm.mul[0], norm.mul[1], norm.mul[2]
	d0, d1, d2 := norm.add[0], norm.add[1], norm.add[2]
	dst = dst[:12*w*h]
	xs = xs[:w]
	o := 0
	for y := range h {
		ty := ys[y]
		r0 := grid[ty.i0*stride : (ty.i0+1)*stride]
		r1 := grid[ty.i1*stride : (ty.i1+1)*stride]
		fy := ty.f
		for _, tx := range xs {
			a0, a1 := tx.i0*3, tx.i1*3
			fx := tx.f
			p0, p1 := r0[a0:a0+3:a0+3], r0[a1:a1+3:a1+3]
			q0, q1 := r1[a0:a0+3:a0+3], r1[a1:a1+3:a1+3]
			a := float32(p0[0]) + float32((float32(p1[0])-float32(p0[0]))*fx)
			b := float32(q0[0]) + float32((float32(q1[0])-float32(q0[0]))*fx)
			v0 := float32((a+float32((b-a)*fy))*m0) + d0
			a = float32(p0[1]) + float32((float32(p1[1])-float32(p0[1]))*fx)
			b = float32(q0[1]) + float32((float32(q1[1])-float32(q0[1]))*fx)
			v1 := float32((a+float32((b-a)*fy))*m1) + d1
			a = float32(p0[2]) + float32((float32(p1[2])-float32(p0[2]))*fx)
			b = float32(q0[2]) + float32((float32(q1[2])-float32(q0[2]))*fx)
			v2 := float32((a+float32((b-a)*fy))*m2) + d2
			out := dst[o : o+12 : o+12]
			binary.LittleEndian.PutUint32(out[0:], math.Float32bits(v0))
			binary.LittleEndian.PutUint32(out[4:], math.Float32bits(v1))
			binary.LittleEndian.PutUint32(out[8:], math.Float32bits(v2))
			o += 12
		}
	}
}

// roundHalfAway rounds to the nearest integer, halves away from zero (as math.Round).
func roundHalfAway(v float32) float32 {
	v = min(max(v, -1024), 1024) // far outside any 8-bit range; keeps int32 exact
	if v < 0 {
		return -float32(int32(-v + 0.5))
	}
	return float32(int32(v + 0.5))
}

// compactTaps renumbers the taps' source indices to positions in the sorted list of
// distinct indices they use, which it returns.
func compactTaps(t []tap) ([]tap, []int) {
	var idx []int
	pos := map[int]int{}
	for _, x := range t {
		for _, i := range []int{x.i0, x.i1} {
			if _, ok := pos[i]; !ok {
				pos[i] = len(idx)
				idx = append(idx, i)
			}
		}
	}
	// Taps are monotonic, so idx is already sorted.
	out := make([]tap, len(t))
	for k, x := range t {
		out[k] = tap{i0: pos[x.i0], i1: pos[x.i1], f: x.f}
	}
	return out, idx
}

type tap struct {
	i0, i1 int
	f      float32
}

func resizeTaps(src, dst int) []tap {
	t := make([]tap, dst)
	scale := float64(src) / float64(dst)
	for i := range t {
		s := (float64(i)+0.5)*scale - 0.5
		if s < 0 {
			s = 0
		}
		i0 := int(s)
		if i0 > src-1 {
			i0 = src - 1
		}
		i1 := min(i0+1, src-1)
		t[i] = tap{i0: i0, i1: i1, f: float32(s - float64(i0))}
	}
	return t
}
