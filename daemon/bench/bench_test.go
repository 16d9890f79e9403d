package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image/jpeg"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/internal/testenv"
)

// engineChildEnv makes the test binary the engine child (`inferq engine-child`).
const engineChildEnv = "INFERQ_BENCH_TEST_ENGINE_CHILD"

func TestMain(m *testing.M) {
	infer.ServeChildIf(engineChildEnv)
	os.Exit(m.Run())
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A short run: every mode gives a positive rate from each of its rounds, the daemon
// rounds counted exactly their jobs, and the report ends with a headline line that
// parses back to the result's ratio. Timings are not judged.
func TestRunMeasuresEveryMode(t *testing.T) {
	rt := testenv.TFLiteRuntime(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const rounds, jobs = 2, 4
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Target: Target{Runtime: infer.RuntimeConfig{RuntimeDir: rt}}, EngineCommand: []string{exe}, EngineEnv: []string{engineChildEnv + "=1"},
		Rounds: rounds, Jobs: jobs, Dir: t.TempDir(), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Summary{
		"invoke only": res.InvokeOnly, "decode+preprocess": res.DecodePreprocess, "sequential": res.Sequential,
		"daemon": res.Daemon, "daemon invoke only": res.DaemonInvokeOnly, "enqueue": res.Enqueue,
	} {
		if s.N != rounds || !(s.Min > 0) || !(s.Median >= s.Min && s.Max >= s.Median) {
			t.Errorf("%s: %+v, want %d rounds of positive rates", name, s, rounds)
		}
	}
	if got, want := res.DaemonJobs, (rounds+1)*jobs; got != want {
		t.Errorf("daemon done jobs %d, want %d (warm-up round included)", got, want)
	}
	if got, want := res.SequentialJobs, (rounds+1)*jobs; got != want {
		t.Errorf("sequential runs %d, want %d", got, want)
	}
	if res.Model.FLOPs < 50e6 || res.Images.Count != 16 || !res.Images.Generated {
		t.Errorf("model %+v, images %+v: want the generated demo model and 16 generated images", res.Model, res.Images)
	}
	if !(res.Headline > 0) || math.Abs(res.Headline-res.Daemon.Median/res.InvokeOnly.Median) > 1e-9 {
		t.Errorf("headline %v, want daemon/invoke-only %v", res.Headline, res.Daemon.Median/res.InvokeOnly.Median)
	}
	if f := res.DaemonOwnInvoke * res.OwnInvokeIdle; !(res.DaemonOwnInvoke > 0) || math.Abs(f-res.Headline) > 1e-9 {
		t.Errorf("factors %v x %v = %v, want the headline %v", res.DaemonOwnInvoke, res.OwnInvokeIdle, f, res.Headline)
	}

	var out bytes.Buffer
	if err := WriteText(&out, res); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "headline daemon/invoke-only ") {
		t.Fatalf("last line %q, want the headline", last)
	}
	got, err := ParseHeadline(last)
	if err != nil || math.Abs(got-res.Headline) > 0.0005 {
		t.Errorf("headline line %q parses to %v (%v), want %.3f", last, got, err, res.Headline)
	}

	out.Reset()
	if err := WriteJSON(&out, res); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Headline != res.Headline || back.Daemon != res.Daemon {
		t.Errorf("JSON round trip: %v; headline %v daemon %+v", err, back.Headline, back.Daemon)
	}
}

// The latency run drives the real binary: every image renamed into the spool and every
// image published gets its result at the subscriber, with positive latencies.
func TestLatencyRealBinary(t *testing.T) {
	rt := testenv.TFLiteRuntime(t)
	goTool := testenv.Program(t, "go")
	mosq := testenv.Program(t, DefaultMosquitto)
	dir := t.TempDir()
	bin := filepath.Join(dir, "inferq")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/inferq")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model, _, err := DemoModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const jobs = 8
	res, err := Latency(ctx, LatencyConfig{
		Binary: bin, Target: Target{Model: model, Runtime: infer.RuntimeConfig{RuntimeDir: rt}}, Mosquitto: mosq,
		Rate: 20, Jobs: jobs, Warmup: 2, Dir: dir, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) != 2 || res.Sources[0].Source != "spool" || res.Sources[1].Source != "mqtt" {
		t.Fatalf("sources %+v, want spool then mqtt", res.Sources)
	}
	for _, s := range res.Sources {
		if s.EndToEnd.N != jobs || s.Engine.N != jobs || s.Added.N != jobs {
			t.Errorf("%s: %d/%d/%d samples, want %d", s.Source, s.EndToEnd.N, s.Engine.N, s.Added.N, jobs)
		}
		if !(s.EndToEnd.P50 > 0) || !(s.Engine.P50 > 0) || !(s.EndToEnd.P50 > s.Engine.P50) || s.EndToEnd.Max < s.EndToEnd.P99 {
			t.Errorf("%s: end to end %+v, engine %+v", s.Source, s.EndToEnd, s.Engine)
		}
	}
	var b strings.Builder
	writeLatency(&b, res)
	t.Logf("latency:\n%s", b.String())
	if n := strings.Count(b.String(), "end to end"); n != 2 {
		t.Errorf("%d end-to-end lines in the report, want 2", n)
	}
}

func TestQuantiles(t *testing.T) {
	for _, tc := range []struct {
		v             []float64
		med, p25, p75 float64
	}{
		{[]float64{5}, 5, 5, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1.75, 3.25},
		{[]float64{1, 2, 3, 4, 5}, 3, 2, 4},
	} {
		s := summarize(tc.v)
		if s.Median != tc.med || s.P25 != tc.p25 || s.P75 != tc.p75 || s.N != len(tc.v) {
			t.Errorf("summarize(%v) = %+v, want median %v p25 %v p75 %v", tc.v, s, tc.med, tc.p25, tc.p75)
		}
	}
	q := quantiles([]float64{10, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if q.P50 != 5.5 || q.Max != 10 || math.Abs(q.P99-9.91) > 1e-9 {
		t.Errorf("quantiles = %+v", q)
	}
	if s := summarize(nil); s != (Summary{}) {
		t.Errorf("summarize(nil) = %+v", s)
	}
}

func TestUniqueJPEGDecodesTheSame(t *testing.T) {
	imgs, err := Images(2)
	if err != nil {
		t.Fatal(err)
	}
	a := uniqueJPEG(imgs[0], "one")
	b := uniqueJPEG(imgs[0], "two")
	if bytes.Equal(a, b) || bytes.Equal(a, imgs[0]) {
		t.Fatal("tagged copies are not distinct")
	}
	orig, err := jpeg.Decode(bytes.NewReader(imgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	got, err := jpeg.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != orig.Bounds() || got.Bounds().Dx() != ImageWidth || got.Bounds().Dy() != ImageHeight {
		t.Fatalf("bounds %v, want %v", got.Bounds(), orig.Bounds())
	}
	for _, p := range [][2]int{{0, 0}, {320, 240}, {639, 479}} {
		if got.At(p[0], p[1]) != orig.At(p[0], p[1]) {
			t.Errorf("pixel %v differs", p)
		}
	}
	t.Logf("image sizes %d and %d bytes", len(imgs[0]), len(imgs[1]))
}

func TestParseHeadline(t *testing.T) {
	if v, err := ParseHeadline("headline daemon/invoke-only 0.912\n"); err != nil || v != 0.912 {
		t.Errorf("got %v, %v", v, err)
	}
	for _, bad := range []string{"headline daemon/invoke 0.9", "daemon/invoke-only 0.9", "headline daemon/invoke-only x"} {
		if _, err := ParseHeadline(bad); err == nil {
			t.Errorf("ParseHeadline(%q) accepted", bad)
		}
	}
}
