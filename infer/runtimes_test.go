package infer

import (
	"context"
	"errors"
	"image/color"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/internal/testenv"
)

// openBoth opens cfg on Debian sid's 2.14.1 (the closure) and on Google's 2.9.0.
func openBoth(t *testing.T, cfg ModelConfig) (sid, npm Engine) {
	t.Helper()
	rt := needRuntime(t)
	lib := testenv.TFLiteNPM(t)
	var err error
	if sid, err = OpenTFLite(context.Background(), rt, cfg, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sid.Close() })
	if npm, err = OpenTFLite(context.Background(), RuntimeConfig{Library: lib}, cfg, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { npm.Close() })
	return sid, npm
}

// TestTwoRuntimesDemo: the demo model (float) classifies the same on both libraries,
// scores within 1e-4, labels equal; model info says which library runs it, that 2.9.0
// runs it with XNNPACK and cannot cancel, and that 2.14.1 cancels and has no XNNPACK.
func TestTwoRuntimesDemo(t *testing.T) {
	cfg := ModelConfig{Path: "../testdata/models/demo.tflite", Labels: "../testdata/models/demo.labels", TopK: 3, Threads: 1}
	sid, npm := openBoth(t, cfg)
	si, ni := sid.Info().TFLite, npm.Info().TFLite
	if si == nil || ni == nil {
		t.Fatalf("model info without TFLite: %+v %+v", si, ni)
	}
	if si.Version != "2.14.1" || !si.Cancel || si.CancelError != "" || si.XNNPACK != "" || !strings.Contains(si.XNNPACKError, "has no XNNPACK delegate") {
		t.Errorf("sid: %+v, want 2.14.1, cancel, no XNNPACK with the reason", si)
	}
	if ni.Version != "2.9.0" || ni.Cancel || !strings.Contains(ni.CancelError, "ends the engine child") ||
		!strings.HasPrefix(ni.XNNPACK, "xnnpack (TFLite 2.9.0, 1 thread,") || ni.XNNPACKError != "" || ni.Choice != ChoiceConfigured {
		t.Errorf("npm: %+v, want 2.9.0 with XNNPACK, no cancel with the reason, configured", ni)
	}
	if got := npm.Info().Version; got != "2.9.0" {
		t.Errorf("ModelInfo.Version %q, want the chosen library's 2.9.0", got)
	}
	images := map[string][]byte{
		"red jpeg":   encodeJPEG(t, solid(640, 480, color.RGBA{230, 20, 20, 255})),
		"green png":  encodePNG(t, solid(100, 300, color.RGBA{10, 240, 30, 255})),
		"noise png":  encodePNG(t, noiseImage(320, 240, 5)),
		"noise jpeg": encodeJPEG(t, noiseImage(640, 480, 9)),
	}
	for name, img := range images {
		a, b := runImage(t, sid, img), runImage(t, npm, img)
		if len(a.Classes) != len(b.Classes) || len(a.Classes) == 0 {
			t.Fatalf("%s: %d classes against %d", name, len(a.Classes), len(b.Classes))
		}
		for i := range a.Classes {
			ca, cb := a.Classes[i], b.Classes[i]
			if ca.Label != cb.Label || ca.Index != cb.Index || math.Abs(float64(ca.Score-cb.Score)) > 1e-4 {
				t.Errorf("%s class %d: sid %+v, npm %+v", name, i, ca, cb)
			}
		}
	}
}

func runImage(t *testing.T, e Engine, img []byte) *Result {
	t.Helper()
	r, err := e.Run(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTwoRuntimesSSD: the real SSD MobileNet v2 (uint8, TFLite_Detection_PostProcess)
// finds the same objects on real photos on both libraries: labels equal in order, scores
// within 0.01, boxes within 2 pixels.
func TestTwoRuntimesSSD(t *testing.T) {
	ssd := testmodels.FetchSSD(t)
	cfg := ModelConfig{Path: ssd.Model, Labels: ssd.Labels, Kind: KindDetection, ScoreThreshold: 0.3, Threads: 2}
	sid, npm := openBoth(t, cfg)
	for _, photo := range []string{photoGraceHopper, photoSurfers, photoStreet, photoFood} {
		img := readPhoto(t, photo)
		a, b := runImage(t, sid, img), runImage(t, npm, img)
		if len(a.Detections) == 0 || len(a.Detections) != len(b.Detections) {
			t.Fatalf("%s: %d detections on sid, %d on npm", photo, len(a.Detections), len(b.Detections))
		}
		for i := range a.Detections {
			da, db := a.Detections[i], b.Detections[i]
			if da.Label != db.Label || da.Class != db.Class || math.Abs(float64(da.Score-db.Score)) > 0.01 || !boxWithin(da.Box, db.Box, 2) {
				t.Errorf("%s detection %d: sid %+v, npm %+v", photo, i, da, db)
			}
		}
		t.Logf("%s: %d detections agree (first %s %.3f); invoke sid %.1f ms, npm %.1f ms", photo, len(a.Detections),
			a.Detections[0].Label, a.Detections[0].Score, a.Timings.InvokeMS, b.Timings.InvokeMS)
	}
}

// TestRuntimeChoice: with candidates the faster library runs the model, the figures of
// each are in model info, and a candidate that cannot load is listed with its reason;
// runtime.library alone is used unmeasured.
func TestRuntimeChoice(t *testing.T) {
	rt := needRuntime(t)
	lib := testenv.TFLiteNPM(t)
	cfg := ModelConfig{Path: "../testdata/models/demo.tflite", Labels: "../testdata/models/demo.labels", Threads: 1}
	rt.Candidates = []string{lib, "/nonexistent/libtensorflowlite_c.so"}
	rt.MeasureInvokes = 5
	eng, err := OpenTFLite(context.Background(), rt, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ti := eng.Info().TFLite
	if ti.Choice != ChoiceMeasured || len(ti.Trials) != 3 {
		t.Fatalf("TFLite info %+v, want measured with 3 trials", ti)
	}
	sidT, npmT, bad := ti.Trials[0], ti.Trials[1], ti.Trials[2]
	if sidT.Version != "2.14.1" || npmT.Version != "2.9.0" || sidT.Invokes != 5 || npmT.Invokes != 5 || bad.Err == "" {
		t.Fatalf("trials %+v", ti.Trials)
	}
	winner := sidT
	if npmT.Median < sidT.Median {
		winner = npmT
	}
	if ti.Library != winner.Library || ti.Version != winner.Version || eng.Info().Version != winner.Version {
		t.Fatalf("runs on %s %s, but the lower median is %s's (sid %.2f ms, npm %.2f ms)", ti.Library, ti.Version, winner.Library, sidT.Median, npmT.Median)
	}
	t.Logf("demo, 1 thread, 5 invokes: sid %.2f ms [%.2f..%.2f], npm+xnnpack %.2f ms [%.2f..%.2f]: chose %s",
		sidT.Median, sidT.Min, sidT.Max, npmT.Median, npmT.Min, npmT.Max, ti.Version)
	runImage(t, eng, encodePNG(t, solid(64, 64, color.RGBA{0, 0, 250, 255})))

	// The same choice in the supervised child (under the closure's loader, the npm library
	// loaded beside sid's), its figures carried back over the pipe.
	s := newTestSupervisor(t, rt, cfg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if si := s.Info().TFLite; si == nil || si.Choice != ChoiceMeasured || len(si.Trials) != 3 || si.Trials[1].Invokes != 5 {
		t.Fatalf("supervised: TFLite info %+v, want measured with 3 trials", si)
	}
	if r, err := s.Run(context.Background(), encodePNG(t, solid(64, 64, color.RGBA{0, 0, 250, 255}))); err != nil || r.Classes[0].Label != "blue" {
		t.Fatalf("supervised run: %+v %v, want blue", r, err)
	}

	// Only the npm library: it runs, unmeasured.
	only, err := OpenTFLite(context.Background(), RuntimeConfig{Library: lib, Candidates: []string{lib}}, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	if oi := only.Info().TFLite; oi.Choice != ChoiceConfigured || oi.Trials != nil || oi.Version != "2.9.0" {
		t.Fatalf("single library: %+v", oi)
	}
	// No candidate can run the model: the runtime is missing.
	_, err = OpenTFLite(context.Background(), RuntimeConfig{Library: "/nonexistent/a.so", Candidates: []string{"/nonexistent/b.so"}}, cfg, testLogger(t))
	if !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("no library: %v, want ErrRuntimeMissing", err)
	}
}

// TestSupervisorDeadlineWithoutCancel: on a library without the cancellation API a run
// past its deadline ends the child (a transient ErrTimeout, one restart) and the next
// job runs; the model info says cancellation is unavailable.
func TestSupervisorDeadlineWithoutCancel(t *testing.T) {
	lib := testenv.TFLiteNPM(t)
	path := writeFile(t, t.TempDir(), "slow.tflite", tflitegen.NewClassifierNet(256, 256, 256, 6400, 10, 2).Model()) // ~53 GFLOPs, small input
	s := newTestSupervisor(t, RuntimeConfig{Library: lib}, ModelConfig{Path: path, Threads: 1})
	s.cfg.KillGrace = 50 * time.Millisecond
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ti := s.Info().TFLite; ti == nil || ti.Cancel || ti.CancelError == "" {
		t.Fatalf("TFLite info %+v, want cancellation unavailable, with the reason", ti)
	}
	img := encodePNG(t, solid(8, 8, color.White))
	t0 := time.Now()
	r, err := s.Run(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("slow model on 2.9.0+XNNPACK: invoke %.0f ms, run %v", r.Timings.InvokeMS, time.Since(t0))
	// The deadline falls inside the invoke (hundreds of ms with XNNPACK), after decoding
	// and pre-processing (a few ms; tens under -race).
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Run(ctx, img)
	if !errors.Is(err, ErrTimeout) || IsPermanent(err) {
		t.Fatalf("got %v, want a transient ErrTimeout", err)
	}
	if st := s.Stats(); st.Timeouts != 1 || st.Restarts != 1 {
		t.Fatalf("stats %+v, want 1 timeout and 1 restart", st)
	}
	if _, err := s.Run(context.Background(), img); err != nil {
		t.Fatalf("next job: %v", err)
	}
}

func boxWithin(a, b Box, px float64) bool {
	return math.Abs(float64(a.XMin-b.XMin)) <= px && math.Abs(float64(a.XMax-b.XMax)) <= px &&
		math.Abs(float64(a.YMin-b.YMin)) <= px && math.Abs(float64(a.YMax-b.YMax)) <= px
}

// TestTFLiteLibraries: which libraries compete, and how the choice is named.
func TestTFLiteLibraries(t *testing.T) {
	tests := []struct {
		name string
		rt   RuntimeConfig
		want []string
		how  string
	}{
		{"nothing configured", RuntimeConfig{}, []string{""}, ChoiceSearch},
		{"library", RuntimeConfig{Library: "/a.so"}, []string{"/a.so"}, ChoiceConfigured},
		{"library wins over dir", RuntimeConfig{Library: "/a.so", RuntimeDir: "/nonexistent"}, []string{"/a.so"}, ChoiceConfigured},
		{"library and candidates", RuntimeConfig{Library: "/a.so", Candidates: []string{"/b.so", "/a.so", "", "/b.so"}}, []string{"/a.so", "/b.so"}, ChoiceMeasured},
		{"one candidate", RuntimeConfig{Candidates: []string{"/b.so"}}, []string{"/b.so"}, ChoiceConfigured},
		{"candidates only", RuntimeConfig{Candidates: []string{"/b.so", "/c.so"}}, []string{"/b.so", "/c.so"}, ChoiceMeasured},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, how, err := tfliteLibraries(tc.rt)
			if err != nil || how != tc.how || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %q %q %v, want %q %q", got, how, err, tc.want, tc.how)
			}
		})
	}
	if _, _, err := tfliteLibraries(RuntimeConfig{RuntimeDir: "/nonexistent", Candidates: []string{"/b.so"}}); !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("missing runtime dir: %v, want ErrRuntimeMissing", err)
	}
}
