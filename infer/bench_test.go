package infer

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// Benchmarks (see BENCHMARKS.md for figures):
//
//	INFERQ_TFLITE_RUNTIME=$PWD/.cache/tflite go test -run '^$' -bench . -benchtime 2s ./infer/

type benchModel struct {
	name   string
	kind   string
	model  func() []byte
	labels []string
}

func benchModels() []benchModel {
	return []benchModel{
		{"classifier_f32_80mflop", KindClassification, func() []byte { return tflitegen.NewColorClassifier(224, 224, 16, 160).Model() }, tflitegen.ColorLabels()},
		{"classifier_uint8io_80mflop", KindClassification, func() []byte {
			n := tflitegen.NewColorClassifier(224, 224, 16, 160)
			n.InputQuant = &tflitegen.Quant{Scale: 1.0 / 255}
			n.OutputQuant = &tflitegen.Quant{Scale: 1.0 / 256}
			return n.Model()
		}, tflitegen.ColorLabels()},
		{"classifier_full_uint8", KindClassification, func() []byte { return tflitegen.NewQuantColorNet(224, 224).Model() }, tflitegen.ColorLabels()},
		{"classifier_f32_1000classes", KindClassification, func() []byte { return tflitegen.NewClassifierNet(224, 224, 16, 160, 1000, 1).Model() }, nil},
		{"detector_ssd_postprocess", KindDetection, func() []byte {
			return tflitegen.NewColorDetector(300, 300, [][4]float32{{0.25, 0.25, 0.5, 0.5}, {0.75, 0.75, 0.5, 0.5}, {0.5, 0.5, 0.6, 0.6}}, 8).Model()
		}, []string{"red", "green", "blue"}},
	}
}

func openBench(b *testing.B, m benchModel, threads int) Engine {
	rt := needRuntime(b)
	dir := b.TempDir()
	path := writeFile(b, dir, m.name+".tflite", m.model())
	labels := ""
	if m.labels != nil {
		labels = writeFile(b, dir, "labels", []byte(strings.Join(m.labels, "\n")))
	}
	eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Labels: labels, Kind: m.kind, Threads: threads}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	return eng
}

// benchImage is a 640×480 JPEG with smooth gradients and mild noise, about the size of a
// camera snapshot's JPEG (tens of KB), rather than incompressible noise.
func benchImage(b *testing.B) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 640, 480))
	n := noiseImage(640, 480, 5)
	for y := range 480 {
		for x := range 640 {
			o := y*img.Stride + 4*x
			img.Pix[o] = uint8(x*255/640) ^ n.Pix[o]&7
			img.Pix[o+1] = uint8(y*255/480) ^ n.Pix[o+1]&7
			img.Pix[o+2] = uint8((x+y)*255/1120) ^ n.Pix[o+2]&7
			img.Pix[o+3] = 255
		}
	}
	return encodeJPEG(b, img)
}

// BenchmarkDecodePreprocess: a 640×480 JPEG to a 224×224×3 tensor.
func BenchmarkDecodePreprocess(b *testing.B) {
	img := benchImage(b)
	for _, typ := range []string{"float32", "uint8"} {
		b.Run(typ, func(b *testing.B) {
			in := inputSpec{h: 224, w: 224, c: 3, typ: typ, scale: 1.0 / 255}
			norm := normFor(ModelConfig{Normalize: Normalize01}, in)
			var buf []byte
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				d, err := decodeImage(img, DefaultMaxPixels)
				if err != nil {
					b.Fatal(err)
				}
				buf = preprocess(d, in, norm, buf)
			}
		})
	}
}

// BenchmarkDecodeOnly and BenchmarkPreprocessOnly split the stage above.
func BenchmarkDecodeOnly(b *testing.B) {
	img := benchImage(b)
	for b.Loop() {
		if _, err := decodeImage(img, DefaultMaxPixels); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreprocessOnly(b *testing.B) {
	d, err := decodeImage(benchImage(b), DefaultMaxPixels)
	if err != nil {
		b.Fatal(err)
	}
	in := inputSpec{h: 224, w: 224, c: 3, typ: "float32"}
	norm := normFor(ModelConfig{Normalize: Normalize01}, in)
	var buf []byte
	for b.Loop() {
		buf = preprocess(d, in, norm, buf)
	}
}

// BenchmarkInvoke: TFLite invoke only, per model, 1 and 2 threads.
func BenchmarkInvoke(b *testing.B) {
	for _, m := range benchModels() {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads=%d", m.name, threads), func(b *testing.B) {
				p := openBench(b, m, threads).(*pipeline)
				img, err := decodeImage(benchImage(b), DefaultMaxPixels)
				if err != nil {
					b.Fatal(err)
				}
				input := preprocess(img, p.in, p.norm, nil)
				for b.Loop() {
					if _, err := p.b.Invoke(context.Background(), input); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkInvokeBesideDecode: the ~80 MFLOP classifier's invoke (threads 1) alone, and
// while another goroutine decodes and pre-processes 640×480 JPEGs (what the engine child
// does for the next job when decode is overlapped with inference). The two alternate in
// blocks of 20 invokes within one run; the metrics are the mean invoke of each and their
// ratio: what the decode beside it costs the model on this machine.
func BenchmarkInvokeBesideDecode(b *testing.B) {
	p := openBench(b, benchModels()[0], 1).(*pipeline)
	jpeg := benchImage(b)
	img, err := p.dec.decode(jpeg, DefaultMaxPixels, p.in.w, p.in.h)
	if err != nil {
		b.Fatal(err)
	}
	input := preprocess(img, p.in, p.norm, nil)
	var beside atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf []byte
		var sc preScratch
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !beside.Load() {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			im, err := p.prepDec.decode(jpeg, DefaultMaxPixels, p.in.w, p.in.h)
			if err != nil {
				panic(err)
			}
			buf = preprocessInto(im, p.in, p.norm, buf, &sc)
		}
	}()
	var sum [2]time.Duration
	var n [2]int
	i := 0
	for b.Loop() {
		k := i / 20 % 2
		beside.Store(k == 1)
		t0 := time.Now()
		if _, err := p.b.Invoke(context.Background(), input); err != nil {
			b.Fatal(err)
		}
		sum[k] += time.Since(t0)
		n[k]++
		i++
	}
	close(stop)
	<-done
	if n[0] > 0 && n[1] > 0 {
		alone := float64(sum[0].Microseconds()) / 1000 / float64(n[0])
		with := float64(sum[1].Microseconds()) / 1000 / float64(n[1])
		b.ReportMetric(alone, "alone-ms/invoke")
		b.ReportMetric(with, "beside-decode-ms/invoke")
		b.ReportMetric(with/alone, "beside/alone")
	}
}

// BenchmarkPostprocess: outputs to a Result, per model kind.
func BenchmarkPostprocess(b *testing.B) {
	for _, m := range benchModels() {
		b.Run(m.name, func(b *testing.B) {
			p := openBench(b, m, 1).(*pipeline)
			img, err := decodeImage(benchImage(b), DefaultMaxPixels)
			if err != nil {
				b.Fatal(err)
			}
			outs, err := p.b.Invoke(context.Background(), preprocess(img, p.in, p.norm, nil))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				p.post.run(outs, img)
			}
		})
	}
}

// BenchmarkJob compares one whole job (640×480 JPEG → Result) in process and through the
// supervised child, for the ~80 MFLOP classifier; the difference is the isolation cost.
func BenchmarkJob(b *testing.B) {
	m := benchModels()[0]
	img := benchImage(b)
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("in-process/threads=%d", threads), func(b *testing.B) {
			eng := openBench(b, m, threads)
			for b.Loop() {
				if _, err := eng.Run(context.Background(), img); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("supervised/threads=%d", threads), func(b *testing.B) {
			rt := needRuntime(b)
			dir := b.TempDir()
			path := writeFile(b, dir, "m.tflite", m.model())
			labels := writeFile(b, dir, "labels", []byte(strings.Join(m.labels, "\n")))
			s, err := NewSupervisor(SupervisorConfig{
				Command: []string{testExe(b)}, Env: []string{childEnv + "=1"}, Runtime: rt,
				Model: ModelConfig{Path: path, Labels: labels, Threads: threads},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.Run(context.Background(), img); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIsolation measures what the child process adds per job, without the cost
// that is the same either way: a payload the size of benchImage's JPEG that is refused at
// its first bytes (so no decoding), and a tiny-model job (2×2 PNG, 3-value output). The
// difference between "supervised" and "in-process" is the isolation overhead (gob
// encoding, two pipe transfers, two context switches).
func BenchmarkIsolation(b *testing.B) {
	rt := needRuntime(b)
	path := writeFile(b, b.TempDir(), "tiny.tflite", tflitegen.Tiny())
	cfg := ModelConfig{Path: path, Kind: KindRaw}
	s, err := NewSupervisor(SupervisorConfig{Command: []string{testExe(b)}, Env: []string{childEnv + "=1"}, Runtime: rt, Model: cfg})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	eng, err := OpenTFLite(context.Background(), rt, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	jpg := benchImage(b)
	refused := append([]byte("not an image "), jpg[13:]...)
	small := encodePNG(b, solid(2, 2, color.White))
	for _, e := range []struct {
		name string
		eng  Engine
	}{{"in-process", eng}, {"supervised", s}} {
		b.Run(e.name+"/refused-jpeg-sized", func(b *testing.B) {
			b.SetBytes(int64(len(refused)))
			for b.Loop() {
				if _, err := e.eng.Run(context.Background(), refused); !IsPermanent(err) {
					b.Fatal(err)
				}
			}
		})
		b.Run(e.name+"/tiny-model-job", func(b *testing.B) {
			for b.Loop() {
				if _, err := e.eng.Run(context.Background(), small); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
