package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Image size of the generated inputs: a typical camera snapshot.
const (
	ImageWidth  = 640
	ImageHeight = 480
)

// Images makes n distinct 640×480 JPEGs (quality 85): a gradient scene with a few
// objects and sensor-like noise, so that they decode like camera snapshots rather than
// like flat test patterns (which decode several times faster).
func Images(n int) ([][]byte, error) {
	out := make([][]byte, n)
	for k := range n {
		img := scene(k)
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
			return nil, fmt.Errorf("cannot make bench image: %w", err)
		}
		out[k] = b.Bytes()
	}
	return out, nil
}

func scene(k int) *image.RGBA {
	r := rand.New(rand.NewPCG(uint64(k), 0x62656e6368))
	img := image.NewRGBA(image.Rect(0, 0, ImageWidth, ImageHeight))
	type blob struct {
		x, y, rad int
		c         color.RGBA
	}
	blobs := make([]blob, 6)
	for i := range blobs {
		blobs[i] = blob{r.IntN(ImageWidth), r.IntN(ImageHeight), 30 + r.IntN(90),
			color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}}
	}
	for y := range ImageHeight {
		for x := range ImageWidth {
			c := color.RGBA{uint8(x*200/ImageWidth + k*9), uint8(y*180/ImageHeight + 40), uint8(120 + (x+y)%64), 255}
			for _, b := range blobs {
				if dx, dy := x-b.x, y-b.y; dx*dx+dy*dy < b.rad*b.rad {
					c = b.c
				}
			}
			n := r.IntN(17) - 8 // sensor noise
			img.SetRGBA(x, y, color.RGBA{clamp8(int(c.R) + n), clamp8(int(c.G) + n), clamp8(int(c.B) + n), 255})
		}
	}
	return img
}

func clamp8(v int) uint8 { return uint8(max(0, min(255, v))) }

// LoadImages reads the *.jpg and *.jpeg files of dir (sorted by name).
func LoadImages(dir string) ([][]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read images: %w", err)
	}
	var names []string
	for _, e := range ents {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.Type().IsRegular() && (ext == ".jpg" || ext == ".jpeg") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("no .jpg or .jpeg files in %s", dir)
	}
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("cannot read image: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// uniqueJPEG returns jpg with a comment segment carrying tag right after its SOI marker:
// the same pixels, different bytes, so the daemon's content-derived ids (MQTT ingest)
// and its dedupe see a new job.
func uniqueJPEG(jpg []byte, tag string) []byte {
	if len(jpg) < 2 || jpg[0] != 0xFF || jpg[1] != 0xD8 {
		return append(slices.Clone(jpg), tag...) // not a JPEG: the bench never sends one
	}
	seg := make([]byte, 4, 4+len(tag))
	seg[0], seg[1] = 0xFF, 0xFE
	binary.BigEndian.PutUint16(seg[2:], uint16(2+len(tag)))
	seg = append(seg, tag...)
	out := make([]byte, 0, len(jpg)+len(seg))
	out = append(out, jpg[:2]...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

func meanSize(imgs [][]byte) int {
	if len(imgs) == 0 {
		return 0
	}
	t := 0
	for _, b := range imgs {
		t += len(b)
	}
	return t / len(imgs)
}
