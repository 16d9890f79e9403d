package infer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Engine runs one image at a time through a loaded model. Implementations are not safe
// for concurrent use. The in-process engine ([OpenTFLite]) and the supervised child
// ([Supervisor]) both satisfy it.
type Engine interface {
	// Info identifies the loaded model and describes its inputs and outputs.
	Info() ModelInfo
	// Run decodes, pre-processes, invokes and post-processes one image. It honours the
	// context's deadline; errors say whether retrying could help (IsPermanent).
	Run(ctx context.Context, image []byte) (*Result, error)
	// Close frees the model. Safe to call twice.
	Close() error
}

// Backend is a loaded model in some runtime, at the tensor level. Runtimes (TFLite here,
// TensorFlow in infer/tensorflow) implement it; [NewEngine] adds images and results.
type Backend interface {
	Inputs() []TensorInfo
	Outputs() []TensorInfo
	// Invoke sets input 0 to input (bytes in the tensor's layout), runs the model, and
	// returns every output's bytes, valid until the next Invoke. At the context's
	// deadline the run is cancelled and the error wraps ErrTimeout.
	Invoke(ctx context.Context, input []byte) ([][]byte, error)
	// Runtime names the runtime and its version.
	Runtime() (name, version string)
	Close() error
}

// pipeline is the Engine over a Backend.
type pipeline struct {
	b      Backend
	cfg    ModelConfig
	info   ModelInfo
	in     inputSpec
	norm   normalizer
	labels *labelSet
	dec    *imageDecoder
	// prepDec decodes the next job's image while Run or runPrepared runs (child.go);
	// only the child's one prepare goroutine at a time uses it.
	prepDec *imageDecoder
	post    *postprocessor
	buf     []byte
	scratch preScratch // Run's pre-processing buffers and taps, kept for the next run
	// prepScratch and prepBufs are prepare's: its pre-processing buffers and taps, and
	// input tensors given back by runPrepared once the model has copied them, kept for
	// the next prepares (a child allocates nothing per job for them, so its GC does not
	// take the core the model runs on).
	prepScratch preScratch
	bufMu       sync.Mutex
	prepBufs    [][]byte
	logger      *slog.Logger
}

// maxSpareBufs bounds the input tensors kept for prepares.
const maxSpareBufs = 2

// Opener opens an engine in the current process; OpenTFLite is one. ServeChildWith uses
// it so a child can host another runtime (infer/tensorflow's Open).
type Opener func(ctx context.Context, rt RuntimeConfig, cfg ModelConfig, logger *slog.Logger) (Engine, error)

// NewEngine wraps a backend into an Engine: it checks that the inputs and outputs fit
// cfg.Kind, loads the labels and runs one warm-up inference. sha256 identifies the model
// (hex). The engine owns b and closes it, also when NewEngine fails.
//
// JPEGs are decoded with libjpeg-turbo from the dynamic loader's search path when it can
// be loaded, else with image/jpeg; ModelInfo.Decoder says which.
func NewEngine(ctx context.Context, b Backend, cfg ModelConfig, sha256 string, logger *slog.Logger) (Engine, error) {
	p, err := newPipeline(ctx, b, RuntimeConfig{}, cfg, sha256, logger)
	if err != nil {
		b.Close()
		return nil, err
	}
	return p, nil
}

// newPipeline looks for libjpeg-turbo where rt says (turboCandidates).
func newPipeline(ctx context.Context, b Backend, rt RuntimeConfig, cfg ModelConfig, sha string, logger *slog.Logger) (*pipeline, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ins, outs := b.Inputs(), b.Outputs()
	if len(ins) != 1 {
		return nil, badModel(nil, "model has %d inputs, want 1 image input", len(ins))
	}
	in, err := imageInput(ins[0])
	if err != nil {
		return nil, err
	}
	setup, err := setupModel(cfg, backendMetadata(b), in, ins[0], outs)
	if err != nil {
		return nil, err
	}
	labels, norm, convention := setup.labels, setup.norm, setup.convention
	name, version := b.Runtime()
	info := ModelInfo{
		Name: cfg.Name, Path: cfg.Path, SHA256: sha, LoadedAt: time.Now().UTC(),
		Runtime: name, Version: version, Inputs: ins, Outputs: outs, Kind: cfg.Kind,
		InputConvention: convention, Detector: setup.detector, LabelsSource: setup.labelsFrom,
	}
	if labels != nil {
		info.LabelsFormat, info.Labels = labels.format, labels.count
	}
	if info.Name == "" {
		info.Name = strings.TrimSuffix(filepath.Base(cfg.Path), filepath.Ext(cfg.Path))
	}
	p := &pipeline{b: b, cfg: cfg, info: info, in: in, norm: norm, labels: labels, post: setup.post, logger: logger}
	// Warm up: the first invoke allocates and plans; do it before the first job.
	size := in.h * in.w * in.c
	if in.typ == "float32" {
		size *= 4
	}
	if _, err := b.Invoke(ctx, make([]byte, size)); err != nil {
		return nil, fmt.Errorf("cannot warm up model %s: %w", cfg.Path, err)
	}
	p.dec = newImageDecoder(turboCandidates(rt))
	p.prepDec = newImageDecoder(turboCandidates(rt))
	for _, d := range []*imageDecoder{p.dec, p.prepDec} {
		if d.turbo != nil {
			d.turbo.reuse = true // each is done with an image before it decodes the next
		}
	}
	p.info.Decoder = p.dec.Name()
	if p.dec.turbo == nil {
		logger.Warn("libjpeg-turbo not loaded: JPEG goes through image/jpeg (slower, and its pixels differ from those models are trained on)", "decoder", p.info.Decoder)
	}
	return p, nil
}

func (p *pipeline) Info() ModelInfo { return p.info }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *pipeline) Run(ctx context.Context, image []byte) (*Result, error) {
	if p.b == nil {
		return nil, newErr(ErrClosed, false, nil, "engine is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, newErr(ErrTimeout, false, err, "before decoding")
	}
	t0 := time.Now()
	img, err := p.dec.decode(image, p.cfg.MaxPixels, p.in.w, p.in.h)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	p.buf = preprocessInto(img, p.in, p.norm, p.buf, &p.scratch)
	t2 := time.Now()
	outs, err := p.b.Invoke(ctx, p.buf)
	if err != nil {
		return nil, err
	}
	t3 := time.Now()
	r := p.post.run(outs, img)
	t4 := time.Now()
	r.Timings = Timings{DecodeMS: ms(t1.Sub(t0)), PreprocessMS: ms(t2.Sub(t1)), InvokeMS: ms(t3.Sub(t2)), PostprocessMS: ms(t4.Sub(t3))}
	return r, nil
}

// prepared is an image decoded and pre-processed ahead of its run: the input tensor's
// bytes, what post-processing needs of the image (its size; not its pixels), and what
// the preparation cost.
type prepared struct {
	buf                    []byte
	img                    rgbImage
	decodeMS, preprocessMS float64
}

// preparer is an Engine that can prepare an image apart from running it, so the child
// prepares the next job's image while the current one's model runs.
type preparer interface {
	// prepare may run concurrently with Run and runPrepared (never with itself).
	prepare(image []byte) (*prepared, error)
	runPrepared(ctx context.Context, in *prepared) (*Result, error)
}

func (p *pipeline) prepare(image []byte) (*prepared, error) {
	t0 := time.Now()
	img, err := p.prepDec.decode(image, p.cfg.MaxPixels, p.in.w, p.in.h)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	var buf []byte
	p.bufMu.Lock()
	if n := len(p.prepBufs); n > 0 {
		buf, p.prepBufs = p.prepBufs[n-1], p.prepBufs[:n-1]
	}
	p.bufMu.Unlock()
	buf = preprocessInto(img, p.in, p.norm, buf, &p.prepScratch)
	t2 := time.Now()
	in := &prepared{buf: buf, img: *img, decodeMS: ms(t1.Sub(t0)), preprocessMS: ms(t2.Sub(t1))}
	in.img.src = nil // the pixels are in buf; the decoder may reuse its own memory
	return in, nil
}

func (p *pipeline) runPrepared(ctx context.Context, in *prepared) (*Result, error) {
	if p.b == nil {
		return nil, newErr(ErrClosed, false, nil, "engine is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, newErr(ErrTimeout, false, err, "before invoking")
	}
	t2 := time.Now()
	outs, err := p.b.Invoke(ctx, in.buf)
	p.bufMu.Lock()
	if len(p.prepBufs) < maxSpareBufs {
		p.prepBufs = append(p.prepBufs, in.buf) // the model copied it (or failed)
	}
	in.buf = nil
	p.bufMu.Unlock()
	if err != nil {
		return nil, err
	}
	t3 := time.Now()
	r := p.post.run(outs, &in.img)
	t4 := time.Now()
	r.Timings = Timings{DecodeMS: in.decodeMS, PreprocessMS: in.preprocessMS, InvokeMS: ms(t3.Sub(t2)), PostprocessMS: ms(t4.Sub(t3)), Prepared: true}
	return r, nil
}

func (p *pipeline) Close() error {
	if p.b == nil {
		return nil
	}
	err := p.b.Close()
	p.b = nil
	p.dec.Close()
	p.prepDec.Close()
	return err
}

// SHA256Hex is the hex sha256 of data.
func SHA256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// readModel reads the model file; a missing or unreadable file is a permanent error.
func readModel(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, badModel(err, "cannot read model file")
	}
	return data, nil
}
