package infer

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/inferq/inferq/infer/tflite"
)

// turboSoname is the TurboJPEG library of libjpeg-turbo (Debian package libturbojpeg0).
// Only the TurboJPEG 2.x functions are used; libjpeg-turbo 3.x still exports them.
const turboSoname = "libturbojpeg.so.0"

// TurboJPEG constants (turbojpeg.h of libjpeg-turbo 2.1).
const (
	tjpfRGB = 0 // TJPF_RGB: packed R, G, B bytes

	tjcsCMYK = 3 // TJCS_CMYK
	tjcsYCCK = 4 // TJCS_YCCK

	tjerrWarning = 0 // TJERR_WARNING

	// TJFLAG_ACCURATEDCT (the islow IDCT, djpeg's default), TJFLAG_STOPONWARNING (a
	// corrupt stream stops at its first warning and image/jpeg decides) and
	// TJFLAG_LIMITSCANS (a progressive JPEG with an absurd number of scans is refused
	// instead of taking minutes).
	tjFlags = 4096 | 8192 | 32768
)

// errTurboDeclined: libjpeg-turbo could not decode this JPEG cleanly (header it cannot
// read, CMYK, a warning or an error); image/jpeg decides instead.
var errTurboDeclined = errors.New("libjpeg-turbo declined")

// scaleFactor is a DCT scaling factor, num/denom (tjscalingfactor).
type scaleFactor struct{ Num, Denom int32 }

// scaled is TJSCALED: ceil(dim × num / denom).
func (f scaleFactor) scaled(dim int) int {
	return (dim*int(f.Num) + int(f.Denom) - 1) / int(f.Denom)
}

func (f scaleFactor) String() string { return fmt.Sprintf("%d/%d", f.Num, f.Denom) }

// turboLib is a loaded libturbojpeg. The library stays mapped for the life of the
// process.
type turboLib struct {
	path    string // the file the loader mapped
	version string // e.g. "2.1.5", or "" when it could not be read
	factors []scaleFactor

	fInit       func() uintptr
	fDestroy    func(h uintptr) int32
	fHeader     func(h uintptr, buf []byte, size uintptr, w, hgt, subsamp, cs *int32) int32
	fDecompress func(h uintptr, buf []byte, size uintptr, dst []byte, w, pitch, hgt, pf, flags int32) int32
	fErrStr     func(h uintptr) string
	fErrCode    func(h uintptr) int32
	fFactors    func(n *int32) *scaleFactor
}

// turboCandidates are the places libturbojpeg is looked for, in order: the TFLite
// runtime closure's library directory when it holds one (as the TFLite library is found
// there), then the dynamic loader's search path (under the closure's loader its library
// directory comes first there too, then the system's).
func turboCandidates(rt RuntimeConfig) []string {
	var c []string
	if rt.RuntimeDir != "" {
		if r, err := tflite.FindRuntime(rt.RuntimeDir); err == nil {
			p := filepath.Join(r.LibDir, turboSoname)
			if _, err := os.Stat(p); err == nil {
				c = append(c, p)
			}
		}
	}
	return append(c, turboSoname)
}

// openTurbo loads the first candidate the dynamic loader can open and binds the
// functions used. The error names every candidate tried.
func openTurbo(candidates []string) (*turboLib, error) {
	var handle uintptr
	var tried []string
	for _, c := range candidates {
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil {
			handle = h
			break
		}
		tried = append(tried, err.Error())
	}
	if handle == 0 {
		return nil, fmt.Errorf("%s", strings.Join(tried, "; "))
	}
	l := &turboLib{}
	syms := []struct {
		fn   any
		name string
	}{
		{&l.fInit, "tjInitDecompress"},
		{&l.fDestroy, "tjDestroy"},
		{&l.fHeader, "tjDecompressHeader3"},
		{&l.fDecompress, "tjDecompress2"},
		{&l.fErrStr, "tjGetErrorStr2"},
		{&l.fErrCode, "tjGetErrorCode"},
		{&l.fFactors, "tjGetScalingFactors"},
	}
	var initAddr uintptr
	for _, s := range syms {
		addr, err := purego.Dlsym(handle, s.name)
		if err != nil || addr == 0 {
			return nil, fmt.Errorf("%s lacks %s (TurboJPEG 2.0 or later is needed)", strings.Join(candidates, " or "), s.name)
		}
		if initAddr == 0 {
			initAddr = addr
		}
		purego.RegisterFunc(s.fn, addr)
	}
	var n int32
	p := l.fFactors(&n)
	if p == nil || n <= 0 || n > 64 {
		return nil, fmt.Errorf("tjGetScalingFactors returned no factors")
	}
	for _, f := range unsafe.Slice(p, int(n)) { // static C memory: copied out
		if f.Num > 0 && f.Denom > 0 {
			l.factors = append(l.factors, f)
		}
	}
	l.path = mappedFile(initAddr)
	if l.path != "" {
		l.version = turboVersion(l.path)
	}
	return l, nil
}

// mappedFile is the file whose mapping holds addr (from /proc/self/maps), or "".
func mappedFile(addr uintptr) string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < b {
			return strings.Join(f[5:], " ")
		}
	}
	return ""
}

// turboVersion reads the version libjpeg-turbo embeds in its library ("libjpeg-turbo
// version 2.1.5 (build …)"); TurboJPEG 2.x has no function that returns it.
func turboVersion(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const marker = "libjpeg-turbo version "
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		return ""
	}
	v := b[i+len(marker):]
	n := 0
	for n < len(v) && n < 16 && (v[n] == '.' || v[n] >= '0' && v[n] <= '9') {
		n++
	}
	return string(v[:n])
}

// turboDecoder is one TurboJPEG decompressor instance. Safe for concurrent use (calls
// are serialized).
type turboDecoder struct {
	lib *turboLib
	mu  sync.Mutex
	h   uintptr // tjhandle; 0 once closed
	// decompressions counts tjDecompress2 calls (tests check that a refused image was
	// never decompressed).
	decompressions int
	// reuse, when set, decodes into pix, kept from the last decode: an image's pixels
	// are then valid only until the decoder's next decode (the pipeline's decoders,
	// whose callers are done with an image before they decode the next).
	reuse bool
	pix   []byte
}

func (l *turboLib) newDecoder() (*turboDecoder, error) {
	h := l.fInit()
	if h == 0 {
		return nil, fmt.Errorf("tjInitDecompress: %s", l.fErrStr(0))
	}
	return &turboDecoder{lib: l, h: h}, nil
}

// name describes the library for ModelInfo.Decoder.
func (l *turboLib) name() string {
	v := l.version
	if v == "" {
		v = "(version unknown)"
	}
	if l.path == "" {
		return "libjpeg-turbo " + v
	}
	return fmt.Sprintf("libjpeg-turbo %s (%s)", v, l.path)
}

func (d *turboDecoder) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h != 0 {
		d.lib.fDestroy(d.h)
		d.h = 0
	}
}

// pickScale returns the DCT scaling factor for a w×h JPEG (stored orientation) whose
// output must be at least needW×needH: of the factors not above 1, the smallest whose
// output is not below the need in either dimension; 1/1 when none is (or nothing is
// needed). Among factors giving the same output size it returns the largest, which is
// the one TurboJPEG uses for that size.
func pickScale(factors []scaleFactor, w, h, needW, needH int) scaleFactor {
	best := scaleFactor{1, 1}
	for _, f := range factors {
		if f.Num > f.Denom {
			continue
		}
		sw, sh := f.scaled(w), f.scaled(h)
		if sw < needW || sh < needH || needW <= 0 && needH <= 0 {
			continue
		}
		bw, bh := best.scaled(w), best.scaled(h)
		if sw < bw || sh < bh || (sw == bw && sh == bh && f.Num*best.Denom > best.Num*f.Denom) {
			best = f
		}
	}
	return best
}

// header reads the JPEG's size and colorspace.
func (d *turboDecoder) header(data []byte) (w, h, cs int, err error) {
	var w32, h32, ss, cs32 int32
	if d.lib.fHeader(d.h, data, uintptr(len(data)), &w32, &h32, &ss, &cs32) != 0 {
		return 0, 0, 0, fmt.Errorf("%w: header: %s", errTurboDeclined, d.lib.fErrStr(d.h))
	}
	return int(w32), int(h32), int(cs32), nil
}

// decodeScaled decodes data to packed RGB of sw×sh pixels, which must be the output
// size of one of the library's scaling factors (as pickScale gives).
func (d *turboDecoder) decodeScaled(data []byte, sw, sh int) ([]byte, error) {
	var pix []byte
	if n := sw * sh * 3; d.reuse && cap(d.pix) >= n {
		pix = d.pix[:n]
	} else {
		pix = make([]byte, n)
		if d.reuse {
			d.pix = pix
		}
	}
	d.decompressions++
	if d.lib.fDecompress(d.h, data, uintptr(len(data)), pix, int32(sw), int32(sw*3), int32(sh), tjpfRGB, tjFlags) != 0 {
		what := "error"
		if d.lib.fErrCode(d.h) == tjerrWarning {
			what = "warning"
		}
		return nil, fmt.Errorf("%w: %s: %s", errTurboDeclined, what, d.lib.fErrStr(d.h))
	}
	return pix, nil
}

// decode decodes a JPEG at the smallest DCT scale whose upright output covers
// needW×needH. The header's size is checked against maxPixels before anything is
// decoded. An error wrapping errTurboDeclined means image/jpeg should decide.
func (d *turboDecoder) decode(data []byte, maxPixels int64, needW, needH int) (*rgbImage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == 0 {
		return nil, fmt.Errorf("%w: decoder closed", errTurboDeclined)
	}
	img, err := d.decodeLocked(data, maxPixels, needW, needH)
	if errors.Is(err, errTurboDeclined) {
		d.reset()
	}
	return img, err
}

// reset replaces the TurboJPEG instance after a failure: libjpeg-turbo 2.1 leaves an
// instance whose header read failed in a state where every later call fails the same
// way.
func (d *turboDecoder) reset() {
	d.lib.fDestroy(d.h)
	d.h = d.lib.fInit() // 0 (out of memory) makes later calls decline
}

func (d *turboDecoder) decodeLocked(data []byte, maxPixels int64, needW, needH int) (*rgbImage, error) {
	w, h, cs, err := d.header(data)
	if err != nil {
		return nil, err
	}
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("%w: zero size %dx%d", errTurboDeclined, w, h)
	}
	if px := int64(w) * int64(h); px > maxPixels {
		return nil, newErr(ErrImageTooLarge, true, nil, "jpeg is %dx%d = %d pixels, limit %d", w, h, px, maxPixels)
	}
	if cs == tjcsCMYK || cs == tjcsYCCK {
		return nil, fmt.Errorf("%w: CMYK", errTurboDeclined)
	}
	o := newOrientation(jpegOrientation(data))
	// The need is upright; the scale applies to the stored picture.
	if o.transpose {
		needW, needH = needH, needW
	}
	f := pickScale(d.lib.factors, w, h, needW, needH)
	sw, sh := f.scaled(w), f.scaled(h)
	pix, err := d.decodeScaled(data, sw, sh)
	if err != nil {
		return nil, err
	}
	uw, uh := o.upright(w, h)
	return &rgbImage{w: uw, h: uh, format: "jpeg", src: &packedRGB{pix: pix, w: sw, h: sh}, orient: o, scale: f}, nil
}

// packedRGB is a decoded picture as packed R, G, B bytes, rows top to bottom.
type packedRGB struct {
	pix  []byte
	w, h int
}

func (p *packedRGB) ColorModel() color.Model { return color.RGBAModel }
func (p *packedRGB) Bounds() image.Rectangle { return image.Rect(0, 0, p.w, p.h) }
func (p *packedRGB) At(x, y int) color.Color {
	if x < 0 || y < 0 || x >= p.w || y >= p.h {
		return color.RGBA{}
	}
	o := (y*p.w + x) * 3
	return color.RGBA{p.pix[o], p.pix[o+1], p.pix[o+2], 255}
}
