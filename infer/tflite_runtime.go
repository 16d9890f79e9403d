package infer

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/logkey"
)

// DefaultMeasureInvokes is RuntimeConfig.MeasureInvokes when 0.
const DefaultMeasureInvokes = 5

// How the TFLite library was chosen (TFLiteInfo.Choice).
const (
	ChoiceConfigured = "configured"   // the one library configured (runtime.library or runtime.dir)
	ChoiceSearch     = "search path"  // nothing configured: the dynamic loader's search path
	ChoiceMeasured   = "measured"     // the lowest median of the candidates that could run the model
	ChoiceOnlyWorked = "only one ran" // several candidates, one could run the model
)

// TFLiteInfo says which TFLite C library runs the model and how (ModelInfo.TFLite).
type TFLiteInfo struct {
	Library string `json:"library"` // the library in use
	Version string `json:"version"` // its TfLiteVersion()
	// Choice says how it was chosen: ChoiceConfigured, ChoiceSearch, ChoiceMeasured or
	// ChoiceOnlyWorked.
	Choice string `json:"choice"`
	// Trials are every candidate's figures (timed invokes: median, min, max in ms, with
	// the XNNPACK delegate where the library has it) or why it could not run the model;
	// only when there were several candidates.
	Trials []tflite.Trial `json:"trials,omitempty"`
	// XNNPACK is the XNNPACK delegate running the model ("xnnpack (TFLite 2.9.0, 2
	// threads, flags 0x0: float operators only; …)"); empty when it does not, and
	// XNNPACKError says why (the library has none, or it could not take the graph).
	XNNPACK      string `json:"xnnpack,omitempty"`
	XNNPACKError string `json:"xnnpack_error,omitempty"`
	// Cancel is true when a run past its deadline is stopped inside the engine child
	// (TfLiteInterpreterCancel); false when the library cannot cancel (TFLite 2.9.0), and
	// CancelError says so: such a run is ended by the supervisor killing the child.
	Cancel      bool   `json:"cancel"`
	CancelError string `json:"cancel_error,omitempty"`
}

// tfliteLibraries lists the libraries that compete for a model and says how the choice
// is made: rt.Library, else the library of the closure in rt.RuntimeDir, then every
// rt.Candidates entry (duplicates dropped). With nothing configured the dynamic loader's
// search path is tried ("" for tflite.Choose).
func tfliteLibraries(rt RuntimeConfig) ([]string, string, error) {
	var paths []string
	switch {
	case rt.Library != "":
		paths = append(paths, rt.Library)
	case rt.RuntimeDir != "":
		r, err := tflite.FindRuntime(rt.RuntimeDir)
		if err != nil {
			return nil, "", newErr(ErrRuntimeMissing, false, err, "runtime_dir")
		}
		paths = append(paths, r.Library)
	}
	for _, c := range rt.Candidates {
		if c != "" && !slices.Contains(paths, c) {
			paths = append(paths, c)
		}
	}
	switch {
	case len(paths) == 0:
		return []string{""}, ChoiceSearch, nil
	case len(paths) == 1:
		return paths, ChoiceConfigured, nil
	}
	return paths, ChoiceMeasured, nil
}

// chooseTFLite loads the model into the fastest of the configured libraries.
func chooseTFLite(rt RuntimeConfig, data []byte, cfg ModelConfig, logger *slog.Logger) (*tflite.Chosen, *TFLiteInfo, error) {
	paths, how, err := tfliteLibraries(rt)
	if err != nil {
		return nil, nil, err
	}
	n := rt.MeasureInvokes
	if n <= 0 {
		n = DefaultMeasureInvokes
	}
	opts := tflite.Options{Threads: cfg.Threads, Delegate: cfg.Delegate, DelegateOptions: cfg.DelegateOptions}
	c, err := tflite.Choose(paths, data, opts, n)
	if err != nil {
		return nil, nil, tfliteOpenError(err, data, cfg)
	}
	info := &TFLiteInfo{Library: c.Lib.Path(), Version: c.Lib.Version(), Choice: how, XNNPACK: c.It.XNNPACK(), Cancel: c.It.CanCancel()}
	if how == ChoiceMeasured {
		info.Trials = c.Trials
		ran := 0
		for _, tr := range c.Trials {
			if tr.Err == "" {
				ran++
			}
		}
		if ran == 1 {
			info.Choice = ChoiceOnlyWorked
		}
	}
	if e := c.It.XNNPACKError(); e != nil {
		info.XNNPACKError = e.Error()
	}
	if e := c.Lib.CancelError(); e != nil {
		info.CancelError = e.Error() + "; a run past its deadline ends the engine child instead"
	}
	logger.Info("tflite runtime", "library", info.Library, "version", info.Version, "choice", info.Choice,
		"xnnpack", info.XNNPACK != "", "cancel", info.Cancel)
	for _, tr := range info.Trials {
		logger.Info("tflite candidate", "library", tr.Library, "version", tr.Version, "median_ms", tr.Median,
			"min_ms", tr.Min, "max_ms", tr.Max, "invokes", tr.Invokes, logkey.Err, tr.Err)
	}
	return c, info, nil
}

// tfliteOpenError classifies an error of tflite.Choose: a missing library or symbol is
// ErrRuntimeMissing, a model TFLite rejects is permanent (with the custom operators it
// lacks named), anything else an engine error.
func tfliteOpenError(err error, data []byte, cfg ModelConfig) error {
	if errors.Is(err, tflite.ErrLibraryNotFound) || errors.Is(err, tflite.ErrSymbol) {
		return newErr(ErrRuntimeMissing, false, err, "")
	}
	// The runtime says only "status 1": name the custom ops it lacks, read from the
	// model's operator codes, and what provides them.
	if hint := missingOpsHint(data); hint != "" {
		err = fmt.Errorf("%w; %s", err, hint)
	}
	if errors.Is(err, tflite.ErrBadModel) {
		return badModel(err, "%s", cfg.Path)
	}
	return newErr(ErrEngine, false, err, "%s", cfg.Path)
}
