// Command tflitegen writes inferq's demo and test models and sample images:
//
//	go run ./infer/tflite/tflitegen/cmd/tflitegen -models testdata/models -images testdata/images
//
// Models: demo.tflite + demo.labels (a 224×224 color classifier of realistic cost, about
// 80 MFLOPs), demo_uint8.tflite (the same with uint8 input and output),
// demo_quant.tflite (a fully uint8 color classifier, labels demo.labels), detector.tflite
// + detector.labels (an SSD-style detector ending in TFLite_Detection_PostProcess), and
// tiny.tflite (hand-checkable; see tflitegen.Tiny). Images: small JPEG/PNG/GIF samples and
// bad inputs for trying the daemon by hand. Output is deterministic.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

func main() {
	models := flag.String("models", "testdata/models", "directory for the models (empty: skip)")
	images := flag.String("images", "", "directory for sample images (empty: skip)")
	flag.Parse()
	if err := run(*models, *images); err != nil {
		fmt.Fprintln(os.Stderr, "tflitegen:", err)
		os.Exit(1)
	}
}

func run(models, images string) error {
	if models != "" {
		demo := tflitegen.NewColorClassifier(224, 224, 16, 160)
		q := tflitegen.NewColorClassifier(224, 224, 16, 160)
		q.InputQuant = &tflitegen.Quant{Scale: 1.0 / 255}
		q.OutputQuant = &tflitegen.Quant{Scale: 1.0 / 256}
		det := tflitegen.NewColorDetector(64, 64, [][4]float32{
			{0.25, 0.25, 0.5, 0.5}, {0.25, 0.75, 0.5, 0.5}, {0.75, 0.25, 0.5, 0.5}, {0.75, 0.75, 0.5, 0.5}, {0.5, 0.5, 0.6, 0.6},
		}, 8)
		files := map[string][]byte{
			"demo.tflite":       demo.Model(),
			"demo.labels":       []byte(strings.Join(tflitegen.ColorLabels(), "\n") + "\n"),
			"demo_uint8.tflite": q.Model(),
			"demo_quant.tflite": tflitegen.NewQuantColorNet(224, 224).Model(),
			"detector.tflite":   det.Model(),
			"detector.labels":   []byte("red\ngreen\nblue\n"),
			"tiny.tflite":       tflitegen.Tiny(),
		}
		if err := writeAll(models, files); err != nil {
			return err
		}
	}
	if images != "" {
		files := map[string][]byte{}
		var err error
		for name, c := range map[string]color.RGBA{"red": {220, 30, 30, 255}, "green": {20, 200, 40, 255}, "blue": {30, 40, 210, 255}} {
			if files[name+".jpg"], err = enc("jpeg", solid(320, 240, c)); err != nil {
				return err
			}
		}
		gray := image.NewGray(image.Rect(0, 0, 200, 150))
		for i := range gray.Pix {
			gray.Pix[i] = uint8(i % 256)
		}
		if files["gray.jpg"], err = enc("jpeg", gray); err != nil {
			return err
		}
		if files["rgba.png"], err = enc("png", solid(100, 80, color.RGBA{250, 240, 10, 128})); err != nil {
			return err
		}
		if files["yellow.gif"], err = enc("gif", solid(64, 64, color.RGBA{255, 255, 0, 255})); err != nil {
			return err
		}
		files["truncated.jpg"] = files["red.jpg"][:len(files["red.jpg"])/2]
		files["not-an-image.jpg"] = []byte("this file is text, not a JPEG\n")
		files["empty.png"] = []byte{}
		bomb, err := enc("png", solid(1, 1, color.RGBA{0, 0, 0, 255}))
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint32(bomb[16:], 200000)
		binary.BigEndian.PutUint32(bomb[20:], 200000)
		binary.BigEndian.PutUint32(bomb[29:], crc32.ChecksumIEEE(bomb[12:29]))
		files["bomb-200000x200000.png"] = bomb
		if err := writeAll(images, files); err != nil {
			return err
		}
	}
	return nil
}

func solid(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

func enc(format string, img image.Image) ([]byte, error) {
	var b bytes.Buffer
	var err error
	switch format {
	case "jpeg":
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	case "png":
		err = png.Encode(&b, img)
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	return b.Bytes(), err
}

func writeAll(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
	}
	return nil
}
