package tflite_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/infer/tflite"
)

// benchRound is how many invokes each library runs before the other takes over.
const benchRound = 5

// BenchmarkRuntimes times a model on Debian sid's TFLite 2.14.1 and on Google's 2.9.0
// with the XNNPACK delegate, 1 thread each, in alternating rounds of benchRound invokes
// so both see the same machine. It reports each one's median invoke (ms) and their
// ratio; ns/op is one round of each. Models: demo (float 224×224, ~80 MFLOPs) and ssd
// (the real SSD MobileNet v2 COCO, uint8 300×300, fetched from npm).
//
//	go test -run '^$' -bench 'Runtimes/demo' -benchtime 40x -count 5 ./infer/tflite/
//	go test -run '^$' -bench 'Runtimes/ssd' -benchtime 4x -count 3 ./infer/tflite/
func BenchmarkRuntimes(b *testing.B) {
	b.Run("demo", func(b *testing.B) {
		benchRuntimes(b, readModelFile(b, "testdata/models/demo.tflite"), true)
	})
	b.Run("ssd", func(b *testing.B) {
		data, err := os.ReadFile(testmodels.FetchSSD(b).Model)
		if err != nil {
			b.Fatal(err)
		}
		benchRuntimes(b, data, false)
	})
}

func benchRuntimes(b *testing.B, data []byte, float bool) {
	sid, npm := sidLib(b), npmLib(b)
	its := []*tflite.Interpreter{
		interp(b, sid, data, tflite.Options{Threads: 1}),
		interp(b, npm, data, tflite.Options{Threads: 1}),
	}
	if float && its[1].XNNPACK() == "" {
		b.Fatalf("XNNPACK not in use on %s: %v", npm.Version(), its[1].XNNPACKError())
	}
	for _, it := range its {
		in := it.Inputs()[0]
		if err := in.CopyFrom(patternInput(in, 0)); err != nil {
			b.Fatal(err)
		}
		if err := it.Invoke(); err != nil { // warm-up
			b.Fatal(err)
		}
	}
	d := make([][]float64, len(its))
	for b.Loop() {
		for i, it := range its {
			for range benchRound {
				t0 := time.Now()
				if err := it.Invoke(); err != nil {
					b.Fatal(err)
				}
				d[i] = append(d[i], float64(time.Since(t0).Nanoseconds())/1e6)
			}
		}
	}
	for i := range d {
		slices.Sort(d[i])
	}
	ms := []float64{tflite.Median(d[0]), tflite.Median(d[1])}
	b.ReportMetric(ms[0], "sid-2.14.1-ms")
	b.ReportMetric(ms[1], "npm-2.9.0-xnnpack-ms")
	b.ReportMetric(ms[0]/ms[1], "sid/npm")
}
