package infer

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/internal/testenv"
)

func newTestSupervisor(t *testing.T, rt RuntimeConfig, model ModelConfig) *Supervisor {
	t.Helper()
	s, err := NewSupervisor(SupervisorConfig{
		Command:      []string{testExe(t)},
		Env:          []string{childEnv + "=1", TestHooksEnv + "=1"},
		Runtime:      rt,
		Model:        model,
		StartTimeout: 30 * time.Second,
		KillGrace:    300 * time.Millisecond,
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSupervisorCrashHangRecover: a child that segfaults or hangs costs one job (a
// transient error) and a restart; the next job works.
func TestSupervisorCrashHangRecover(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "c.tflite", tflitegen.NewClassifierNet(32, 32, 4, 8, 5, 1).Model())
	s := newTestSupervisor(t, rt, ModelConfig{Path: path})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := encodeJPEG(t, noiseImage(50, 40, 3))
	want, err := s.Run(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	pid0 := s.Stats().ChildPID
	tests := []struct {
		name  string
		image string
		kind  error
	}{
		{"segfault", "inferq-test:crash", ErrEngineCrashed},
		{"hang", "inferq-test:hang", ErrTimeout},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, err := s.Run(ctx, []byte(tc.image))
			if !errors.Is(err, tc.kind) || IsPermanent(err) {
				t.Fatalf("got %v, want a transient %v", err, tc.kind)
			}
			st := s.Stats()
			if got, want := st.Restarts, uint64(i+1); got != want {
				t.Fatalf("restarts got %d want %d", got, want)
			}
			if st.ChildPID == 0 || st.ChildPID == pid0 {
				t.Fatalf("child pid %d after restart (was %d)", st.ChildPID, pid0)
			}
			got, err := s.Run(context.Background(), img)
			if err != nil {
				t.Fatalf("next job: %v", err)
			}
			if got.Classes[0] != want.Classes[0] {
				t.Fatalf("next job got %+v want %+v", got.Classes[0], want.Classes[0])
			}
		})
	}
	st := s.Stats()
	if st.Crashes != 1 || st.Timeouts != 1 || st.LastError == "" {
		t.Fatalf("stats %+v, want 1 crash, 1 timeout, a last error", st)
	}
}

// TestSupervisorDeadlineCancelsInChild: a slow but healthy run is cancelled inside the
// child at its deadline; the child survives (no restart).
func TestSupervisorDeadlineCancelsInChild(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "slow.tflite", tflitegen.NewClassifierNet(640, 640, 32, 256, 10, 2).Model())
	s := newTestSupervisor(t, rt, ModelConfig{Path: path, Threads: 1})
	// A grace far longer than any cancellation takes, so a loaded machine cannot turn
	// the child's own cancel into a kill: this test is about behaviour, not speed.
	s.cfg.KillGrace = time.Minute
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The model's invoke takes ~100 ms here and finished inside a 100 ms deadline in 5
	// of 20 runs: 20 ms is well inside it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Run(ctx, encodePNG(t, solid(8, 8, color.White)))
	if !errors.Is(err, ErrTimeout) || IsPermanent(err) {
		t.Fatalf("got %v, want a transient ErrTimeout", err)
	}
	if st := s.Stats(); st.Restarts != 0 {
		t.Fatalf("stats %+v: the child should have cancelled the run itself", st)
	}
}

func TestSupervisorBadImagePermanent(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "c.tflite", tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model())
	s := newTestSupervisor(t, rt, ModelConfig{Path: path})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := s.Run(context.Background(), []byte("not an image"))
	if !errors.Is(err, ErrBadImage) || !IsPermanent(err) {
		t.Fatalf("got %v, want a permanent ErrBadImage across the pipe", err)
	}
	if st := s.Stats(); st.Restarts != 0 || st.Crashes != 0 {
		t.Fatalf("stats %+v: a bad image must not cost the child", st)
	}
}

// TestSupervisorReload: a changed model is swapped in; a broken one is refused and the
// old model keeps serving.
func TestSupervisorReload(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.tflite")
	if err := os.WriteFile(path, tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestSupervisor(t, rt, ModelConfig{Path: path})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	sha1 := s.Info().SHA256
	img := encodePNG(t, noiseImage(16, 16, 1))

	// A new model (5 classes instead of 3), written atomically.
	tmp := filepath.Join(dir, "model.tmp")
	if err := os.WriteFile(tmp, tflitegen.NewClassifierNet(16, 16, 4, 4, 5, 2).Model(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	sha2 := s.Info().SHA256
	if sha2 == sha1 {
		t.Fatal("sha256 unchanged after reload")
	}
	if got := s.Info().Outputs[0].Shape; got[len(got)-1] != 5 {
		t.Fatalf("output shape after reload %v, want 5 classes", got)
	}
	if _, err := s.Run(context.Background(), img); err != nil {
		t.Fatal(err)
	}

	// A broken model: Reload fails, the old one serves on.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.Reload(context.Background())
	if !errors.Is(err, ErrBadModel) {
		t.Fatalf("got %v, want ErrBadModel", err)
	}
	if got := s.Info().SHA256; got != sha2 {
		t.Fatalf("sha256 after failed reload %s, want the old %s", got, sha2)
	}
	res, err := s.Run(context.Background(), img)
	if err != nil || len(res.Classes) != 5 {
		t.Fatalf("run after failed reload: %v %+v", err, res)
	}
	if st := s.Stats(); st.Reloads != 1 || st.ReloadFailures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSupervisorRuntimeMissing(t *testing.T) {
	path := writeFile(t, t.TempDir(), "c.tflite", tflitegen.Tiny())
	tests := []struct {
		name string
		rt   RuntimeConfig
	}{
		{"no closure", RuntimeConfig{RuntimeDir: t.TempDir()}},
		{"no library", RuntimeConfig{Library: "/nonexistent/libtensorflowlite_c.so"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSupervisor(t, tc.rt, ModelConfig{Path: path, Kind: KindRaw})
			err := s.Open(context.Background())
			if !errors.Is(err, ErrRuntimeMissing) || IsPermanent(err) {
				t.Fatalf("got %v, want a transient ErrRuntimeMissing", err)
			}
			s.Close()
			s.Close()
		})
	}
}

func TestNewSupervisorConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  SupervisorConfig
	}{
		{"no command", SupervisorConfig{Model: ModelConfig{Path: "m"}}},
		{"no model", SupervisorConfig{Command: []string{"x"}}},
		{"bad kind", SupervisorConfig{Command: []string{"x"}, Model: ModelConfig{Path: "m", Kind: "segmentation"}}},
		{"bad normalize", SupervisorConfig{Command: []string{"x"}, Model: ModelConfig{Path: "m", Normalize: "0_255"}}},
		{"zero std", SupervisorConfig{Command: []string{"x"}, Model: ModelConfig{Path: "m", Normalize: NormalizeMeanStd}}},
		{"negative threads", SupervisorConfig{Command: []string{"x"}, Model: ModelConfig{Path: "m", Threads: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSupervisor(tc.cfg)
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("got %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestSupervisorRecyclesOnRSS: a child over MaxChildRSS is replaced between jobs.
func TestSupervisorRecyclesOnRSS(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "c.tflite", tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model())
	s, err := NewSupervisor(SupervisorConfig{
		Command: []string{testExe(t)}, Env: []string{childEnv + "=1"}, Runtime: rt,
		Model: ModelConfig{Path: path}, MaxChildRSS: 1 << 20, Logger: testLogger(t), // any child is above 1 MiB
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := encodePNG(t, noiseImage(16, 16, 1))
	pid := s.Stats().ChildPID
	for i := range 2 {
		if _, err := s.Run(context.Background(), img); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	st := s.Stats()
	if st.Recycles != 2 || st.Restarts != 2 || st.ChildPID == pid || st.ChildPID == 0 {
		t.Fatalf("stats %+v, want 2 recycles and a new child", st)
	}
}

// A response that arrives after the caller gave up must not keep the child's decoder
// goroutine blocked forever (issue 9): the child here answers twice with nobody reading;
// the first answer fills the one-slot channel, the second (or the end of the pipe) has
// nowhere to go. Killing the child, as a caller that gave up does, must end the decoder.
func TestChildLateResponseDoesNotLeak(t *testing.T) {
	c, err := startProcess([]string{testExe(t)}, append(os.Environ(), lateChildEnv+"=1"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Both answers are in the pipe once the child has exited: the decoder reads them
	// whatever the timing.
	<-c.exited
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		c.kill()
	}()
	select {
	case <-c.readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the decoder goroutine is still blocked 10s after the child was killed")
	}
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatal("kill did not return")
	}
}

// TestSupervisorCallerGivesUp: a run whose caller cancels it (the daemon stopping during
// an inference) is not an engine failure: no ERROR line, no crash or timeout counted,
// and the next run works on a new child.
func TestSupervisorCallerGivesUp(t *testing.T) {
	rt := needRuntime(t)
	path := writeFile(t, t.TempDir(), "slow.tflite", tflitegen.NewClassifierNet(640, 640, 32, 256, 10, 2).Model())
	s := newTestSupervisor(t, rt, ModelConfig{Path: path, Threads: 1})
	var logs testenv.Buffer
	s.logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel) // inside the ~100 ms invoke
	img := encodePNG(t, solid(8, 8, color.White))
	if _, err := s.Run(ctx, img); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v, want context.Canceled", err)
	}
	if st := s.Stats(); st.Crashes != 0 || st.Timeouts != 0 {
		t.Errorf("stats after a cancelled run: %+v, want no crash or timeout", st)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a cancelled run logged an error:\n%s", logs.String())
	}
	if _, err := s.Run(context.Background(), img); err != nil {
		t.Fatalf("run after a cancelled one: %v", err)
	}
}

// TestSupervisorPrepare: an image handed to Prepare while another job's run is in
// flight is prepared meanwhile, and its run only invokes: results equal Run's exactly.
// A run for a job that was not prepared, a prepared image that does not decode, a
// prepared image dropped for newer ones, and a child crash with an image prepared all
// give what Run would; a prepared job's run needs no image sent again.
func TestSupervisorPrepare(t *testing.T) {
	rt := needRuntime(t)
	s := newTestSupervisor(t, rt, ModelConfig{Path: "../testdata/models/demo.tflite", Labels: "../testdata/models/demo.labels", TopK: 3, Threads: 1})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	imgs := [][]byte{
		encodeJPEG(t, noiseImage(640, 480, 1)), encodePNG(t, solid(300, 200, color.RGBA{R: 250, A: 255})),
		encodeJPEG(t, noiseImage(320, 240, 2)), encodePNG(t, solid(64, 64, color.RGBA{B: 250, A: 255})),
	}
	want := make([]*Result, len(imgs))
	for i, img := range imgs {
		r, err := s.Run(ctx, img)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r
	}
	same := func(t *testing.T, got, want *Result) {
		t.Helper()
		if !reflect.DeepEqual(got.Classes, want.Classes) || got.Image != want.Image {
			t.Fatalf("got %+v %+v, want %+v %+v", got.Classes, got.Image, want.Classes, want.Image)
		}
	}
	// A chain: each next image is handed over while the current run is in flight.
	type outcome struct {
		r   *Result
		err error
	}
	for i, img := range imgs {
		done := make(chan outcome, 1)
		go func() {
			r, err := s.RunKey(ctx, img, fmt.Sprint(i))
			done <- outcome{r, err}
		}()
		if i+1 < len(imgs) {
			s.Prepare(fmt.Sprint(i+1), imgs[i+1])
		}
		o := <-done
		if o.err != nil {
			t.Fatal(o.err)
		}
		same(t, o.r, want[i])
		if o.r.Timings.Prepared != (i > 0) {
			t.Errorf("run %d: prepared = %v, want %v", i, o.r.Timings.Prepared, i > 0)
		}
	}
	// A prepared job's run needs no image: the child has it.
	s.Prepare("p", imgs[1])
	if r, err := s.RunKey(ctx, nil, "p"); err != nil || !r.Timings.Prepared {
		t.Fatalf("run of a prepared job without its image: %+v, %v", r, err)
	} else {
		same(t, r, want[1])
	}
	if _, err := s.RunKey(ctx, nil, "never-prepared"); err == nil {
		t.Fatal("a run with neither an image nor a prepared one succeeded")
	}
	// Prepared for job "a", but "b" runs: b is decoded as Run does.
	s.Prepare("a", imgs[1])
	r, err := s.RunKey(ctx, imgs[2], "b")
	if err != nil || r.Timings.Prepared {
		t.Fatalf("run of another job than the prepared one: %+v, %v; want decoded afresh", r, err)
	}
	same(t, r, want[2])
	// Three prepared ("a" above, then "g", "h"): the oldest is dropped on both sides, so
	// its run sends the image and decodes it afresh.
	s.Prepare("g", imgs[3])
	s.Prepare("h", imgs[0])
	if r, err := s.RunKey(ctx, imgs[1], "a"); err != nil || r.Timings.Prepared {
		t.Fatalf("run of a dropped prepared job: %+v, %v; want decoded afresh", r, err)
	} else {
		same(t, r, want[1])
	}
	for _, c := range []struct {
		key string
		i   int
	}{{"h", 0}, {"g", 3}} {
		if r, err := s.RunKey(ctx, imgs[c.i], c.key); err != nil || !r.Timings.Prepared {
			t.Fatalf("run of prepared job %s: %+v, %v", c.key, r, err)
		} else {
			same(t, r, want[c.i])
		}
	}
	// A prepared image that does not decode fails its own run, permanently, as Run would.
	bad := []byte("\xff\xd8\xff\xe0 not a jpeg at all")
	_, runErr := s.Run(ctx, bad)
	s.Prepare("d", bad)
	if _, err := s.RunKey(ctx, bad, "d"); !IsPermanent(err) || err.Error() != runErr.Error() {
		t.Fatalf("prepared bad image: %v, want what Run gives: %v", err, runErr)
	}
	// The child crashes with an image prepared: the restarted child decodes it afresh.
	restarts := s.Stats().Restarts
	s.Prepare("f", imgs[3])
	if _, err := s.RunKey(ctx, []byte("inferq-test:crash"), "e"); !errors.Is(err, ErrEngineCrashed) {
		t.Fatalf("crash: %v", err)
	}
	r, err = s.RunKey(ctx, imgs[3], "f")
	if err != nil || r.Timings.Prepared || s.Stats().Restarts != restarts+1 {
		t.Fatalf("after a crash: %+v, %v, restarts %d; want a fresh decode in a new child", r, err, s.Stats().Restarts)
	}
	same(t, r, want[3])
}
