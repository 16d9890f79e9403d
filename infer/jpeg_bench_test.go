package infer

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/internal/testenv"
)

// BenchmarkJPEG: decode + preprocess (to a float32 0_1 tensor) of real photos, a 12 MP
// camera JPEG and a 640×480 one, to 224×224 and 300×300 inputs, side by side in one
// run: image/jpeg at full size, libjpeg-turbo at the DCT scale it picks, and the djpeg
// process at that same scale (process start and PPM parse included) for reference.
// Figures in BENCHMARKS.md:
//
//	go test -run '^$' -bench JPEG -benchtime 2s -count 3 ./infer/
func BenchmarkJPEG(b *testing.B) {
	turbo := needTurbo(b)
	djpegPath := testenv.Program(b, "djpeg")
	for _, photo := range []struct{ name, rel string }{
		{"12MP_4032x3024", photoSnow12MP},
		{"640x480", photoSparrow},
	} {
		path := testmodels.Photo(b, photo.rel)
		data := mustRead(b, path)
		for _, size := range []int{224, 300} {
			in := inputSpec{h: size, w: size, c: 3, typ: "float32"}
			norm := normFor(ModelConfig{Normalize: Normalize01}, in)
			probe, err := turbo.decode(data, DefaultMaxPixels, in.w, in.h)
			if err != nil {
				b.Fatal(err)
			}
			m := int(probe.scale.Num) * 8 / int(probe.scale.Denom)
			prefix := fmt.Sprintf("%s/%dx%d/", photo.name, size, size)
			var buf []byte
			b.Run(prefix+"go-image-jpeg", func(b *testing.B) {
				for b.Loop() {
					img, err := decodeImage(data, DefaultMaxPixels)
					if err != nil {
						b.Fatal(err)
					}
					buf = preprocess(img, in, norm, buf)
				}
			})
			b.Run(fmt.Sprintf("%slibjpeg-turbo-scale-%d-8", prefix, m), func(b *testing.B) {
				for b.Loop() {
					img, err := turbo.decode(data, DefaultMaxPixels, in.w, in.h)
					if err != nil {
						b.Fatal(err)
					}
					buf = preprocess(img, in, norm, buf)
				}
			})
			b.Run(fmt.Sprintf("%sdjpeg-process-scale-%d-8", prefix, m), func(b *testing.B) {
				for b.Loop() {
					out, err := exec.Command(djpegPath, "-scale", fmt.Sprintf("%d/8", m), "-ppm", path).Output()
					if err != nil {
						b.Fatal(err)
					}
					w, h, pix := readPNM(b, out)
					buf = preprocess(fromPix(w, h, pix), in, norm, buf)
				}
			})
		}
	}
}
