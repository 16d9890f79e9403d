package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
	"github.com/inferq/inferq/queue"
)

// BenchConfig configures Bench.
type BenchConfig struct {
	Jobs int // jobs per measured round
	// Model is a .tflite file; empty generates the ~80 MFLOP 224x224 classifier.
	Model         string
	Threads       int
	Runtime       infer.RuntimeConfig
	EngineCommand []string
	EngineEnv     []string
	Dir           string // scratch space for the model and the queue
	Producers     int    // concurrent enqueuers in the pipeline round
	Logger        *slog.Logger
}

// BenchResult compares the whole pipeline with raw engine runs measured in the same run
// on the same images and the same engine child.
type BenchResult struct {
	Jobs           int
	RawPerSec      float64 // engine runs back to back, no queue
	PipelinePerSec float64 // draining the queue: lease + image read + run + ack-with-outbox + outbox delete
	// Overhead is PipelineTime/RawTime - 1: what durability and the queue cost per job
	// relative to the inference itself.
	Overhead       float64
	RawP50         time.Duration
	EnqueuePerSec  float64 // durable enqueues of the same images, measured before the drain
	ModelFLOPs     int64   // when the model was generated
	ModelName      string
	EngineRestarts uint64
}

// Bench measures the pipeline against raw engine runs. It alternates two rounds of each
// and keeps the best of each, so a busy moment on the machine does not decide the ratio.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if cfg.Jobs < 1 {
		return BenchResult{}, fmt.Errorf("bench jobs %d: want at least 1", cfg.Jobs)
	}
	if cfg.Producers < 1 {
		cfg.Producers = 4
	}
	var res BenchResult
	model := cfg.Model
	if model == "" {
		net := tflitegen.NewClassifierNet(224, 224, 16, 160, 1000, 1)
		res.ModelFLOPs = net.FLOPs()
		model = filepath.Join(cfg.Dir, "bench.tflite")
		if err := os.WriteFile(model, net.Model(), 0o644); err != nil {
			return res, fmt.Errorf("cannot write bench model: %w", err)
		}
	}
	eng, err := infer.NewSupervisor(infer.SupervisorConfig{
		Command: cfg.EngineCommand, Env: cfg.EngineEnv, Runtime: cfg.Runtime,
		Model:  infer.ModelConfig{Path: model, Kind: "classification", TopK: 5, Normalize: "0_1", Std: [3]float32{1, 1, 1}, Threads: cfg.Threads, MaxPixels: 50_000_000},
		Logger: cfg.Logger,
	})
	if err != nil {
		return res, err
	}
	if err := eng.Open(ctx); err != nil {
		return res, fmt.Errorf("cannot start engine: %w", err)
	}
	defer eng.Close()
	res.ModelName = eng.Info().Name
	res.Jobs = cfg.Jobs
	imgs, err := benchImages(16)
	if err != nil {
		return res, err
	}
	var bestRaw, bestPipe time.Duration
	var p50 time.Duration
	var bestEnq float64
	for round := range 2 {
		raw, med, err := benchRaw(ctx, eng, imgs, cfg.Jobs)
		if err != nil {
			return res, err
		}
		if bestRaw == 0 || raw < bestRaw {
			bestRaw, p50 = raw, med
		}
		pipe, enq, err := benchPipeline(ctx, eng, imgs, cfg, round)
		if err != nil {
			return res, err
		}
		if bestPipe == 0 || pipe < bestPipe {
			bestPipe = pipe
		}
		bestEnq = max(bestEnq, enq)
	}
	res.RawPerSec = float64(cfg.Jobs) / bestRaw.Seconds()
	res.PipelinePerSec = float64(cfg.Jobs) / bestPipe.Seconds()
	res.Overhead = bestPipe.Seconds()/bestRaw.Seconds() - 1
	res.RawP50 = p50
	res.EnqueuePerSec = bestEnq
	res.EngineRestarts = eng.Stats().Restarts
	return res, nil
}

func benchRaw(ctx context.Context, eng *infer.Supervisor, imgs [][]byte, n int) (time.Duration, time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := range n {
		t := time.Now()
		if _, err := eng.Run(ctx, imgs[i%len(imgs)]); err != nil {
			return 0, 0, fmt.Errorf("raw run %d: %w", i, err)
		}
		lat = append(lat, time.Since(t))
	}
	total := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return total, lat[len(lat)/2], nil
}

// benchPipeline first enqueues n jobs durably from several producers (timed on its own),
// then lets the worker drain them while a consumer deletes outbox rows as the publisher
// would, and times the drain: lease, image read, inference, ack with outbox, delete.
func benchPipeline(ctx context.Context, eng *infer.Supervisor, imgs [][]byte, cfg BenchConfig, round int) (time.Duration, float64, error) {
	qdir := filepath.Join(cfg.Dir, fmt.Sprintf("queue-%d", round))
	defer os.RemoveAll(qdir)
	opts := queue.DefaultOptions(qdir)
	opts.SmallDevice = true
	opts.Logger = cfg.Logger
	q, err := queue.Open(opts)
	if err != nil {
		return 0, 0, err
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan struct{})
	go func() { // the queue's timers, stopped and joined before the queue closes
		defer close(runDone)
		_ = q.Run(ctx)
	}()
	defer func() { cancel(); <-runDone }()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Producers)
	per := (cfg.Jobs + cfg.Producers - 1) / cfg.Producers
	for p := range cfg.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p * per; i < min((p+1)*per, cfg.Jobs); i++ {
				if _, err := q.Enqueue(ctx, queue.NewJob{ID: fmt.Sprintf("b%d-%d", round, i), Source: "bench", Image: imgs[i%len(imgs)]}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	enqRate := float64(cfg.Jobs) / time.Since(start).Seconds()
	select {
	case err := <-errs:
		return 0, 0, fmt.Errorf("enqueue: %w", err)
	default:
	}

	w := newWorker(q, &engineAdapter{eng}, nil, workerConfig{node: "bench", jobTimeout: time.Minute, maxAttempts: 5, log: cfg.Logger})
	w.tmpDir = cfg.Dir
	w.loaded.Store(true) // Bench opened the engine itself
	start = time.Now()
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(ctx) }()
	got := 0
	for got < cfg.Jobs {
		rows, err := q.OutboxPeek(256)
		if err != nil {
			return 0, 0, err
		}
		seqs := make([]uint64, 0, len(rows))
		for _, r := range rows {
			seqs = append(seqs, r.Seq)
			if filepath.Dir(r.Topic) == "results" {
				got++
			}
		}
		if len(seqs) > 0 {
			if err := q.OutboxDelete(seqs...); err != nil {
				return 0, 0, err
			}
			continue
		}
		if s := w.snapshot(); s.Dead > 0 || s.Retried > 0 {
			return 0, 0, fmt.Errorf("bench job failed: %s", s.LastError)
		}
		select {
		case <-q.OutboxNotify():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	total := time.Since(start)
	cancel()
	if err := <-workerDone; err != nil && !errors.Is(err, context.Canceled) {
		return 0, 0, err
	}
	return total, enqRate, nil
}

// benchImages makes n distinct 640x480 JPEGs, a typical camera snapshot size.
func benchImages(n int) ([][]byte, error) {
	out := make([][]byte, n)
	for k := range n {
		img := image.NewRGBA(image.Rect(0, 0, 640, 480))
		for y := range 480 {
			for x := range 640 {
				img.Set(x, y, color.RGBA{uint8(x + k*7), uint8(y + k*13), uint8(x ^ y), 255})
			}
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
			return nil, fmt.Errorf("cannot make bench image: %w", err)
		}
		out[k] = b.Bytes()
	}
	return out, nil
}
