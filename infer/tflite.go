package infer

import (
	"context"
	"errors"
	"log/slog"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/logkey"
)

// OpenTFLite loads cfg.Path into the TFLite runtime in this process and returns an Engine.
// The daemon does not call it (it runs the engine in a child through Supervisor); the
// child and benchmarks do.
func OpenTFLite(ctx context.Context, rt RuntimeConfig, cfg ModelConfig, logger *slog.Logger) (Engine, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	data, err := readModel(cfg.Path)
	if err != nil {
		return nil, err
	}
	// The library: the configured one, or the fastest of several (tflite_runtime.go).
	chosen, tinfo, err := chooseTFLite(rt, data, cfg, logger)
	if err != nil {
		return nil, err
	}
	b := newTFLiteBackend(chosen)
	// Labels and input normalization the model carries (TFLite Model Metadata); a model
	// whose metadata cannot be read still runs, without it.
	if b.meta, err = readMetadata(data); err != nil {
		logger.Warn("model metadata not used", logkey.Err, err)
	}
	p, err := newPipeline(ctx, b, rt, cfg, SHA256Hex(data), logger)
	if err != nil {
		b.Close()
		return nil, err
	}
	p.info.TFLite = tinfo
	if cfg.Delegate != "" {
		if b.it.UsesDelegate() {
			p.info.Delegate = cfg.Delegate
		} else if derr := b.it.DelegateError(); derr != nil {
			p.info.DelegateError = derr.Error()
			logger.Warn("delegate not used, running on the CPU", "delegate", cfg.Delegate, logkey.Err, derr)
		}
	}
	return p, nil
}

type tfliteBackend struct {
	lib   *tflite.Library
	model *tflite.Model
	it    *tflite.Interpreter
	outs  [][]byte
	ins   []TensorInfo
	outTI []TensorInfo
	meta  *modelMetadata // nil without metadata
}

func (b *tfliteBackend) metadata() *modelMetadata { return b.meta }

func newTFLiteBackend(c *tflite.Chosen) *tfliteBackend {
	b := &tfliteBackend{lib: c.Lib, model: c.Model, it: c.It}
	b.ins = tensorInfos(c.It.Inputs())
	b.outTI = tensorInfos(c.It.Outputs())
	b.outs = make([][]byte, len(b.outTI))
	return b
}

func tensorInfos(ts []*tflite.Tensor) []TensorInfo {
	out := make([]TensorInfo, len(ts))
	for i, t := range ts {
		out[i] = TensorInfo{Name: t.Name, Type: t.Type.String(), Shape: append([]int(nil), t.Shape...), Scale: t.Scale, ZeroPoint: t.ZeroPoint}
	}
	return out
}

func (b *tfliteBackend) Inputs() []TensorInfo  { return b.ins }
func (b *tfliteBackend) Outputs() []TensorInfo { return b.outTI }
func (b *tfliteBackend) Runtime() (string, string) {
	return "tflite", b.lib.Version()
}

func (b *tfliteBackend) Invoke(ctx context.Context, input []byte) ([][]byte, error) {
	if b.it == nil {
		return nil, newErr(ErrClosed, false, nil, "engine is closed")
	}
	if err := b.it.Inputs()[0].CopyFrom(input); err != nil {
		return nil, badModel(err, "input")
	}
	if err := ctx.Err(); err != nil {
		return nil, newErr(ErrTimeout, false, err, "deadline passed before invoke")
	}
	// At the deadline (or cancellation) TfLiteInterpreterCancel stops the run. A library
	// without it (TFLiteInfo.Cancel false) runs on: in the engine child the supervisor
	// then kills the child at the deadline.
	stop := context.AfterFunc(ctx, b.it.Cancel)
	defer stop()
	if err := b.it.Invoke(); err != nil {
		if errors.Is(err, tflite.ErrCancelled) {
			cause := ctx.Err()
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			return nil, newErr(ErrTimeout, false, cause, "invoke cancelled")
		}
		return nil, newErr(ErrEngine, false, err, "invoke")
	}
	for i, t := range b.it.Outputs() {
		b.outs[i] = t.Bytes()
	}
	return b.outs, nil
}

func (b *tfliteBackend) Close() error {
	if b.it != nil {
		b.it.Close()
		b.it = nil
	}
	if b.model != nil {
		b.model.Close()
		b.model = nil
	}
	return nil
}
