package infer

import "fmt"

// modelSetup is what a loaded model is run with besides its tensors: its labels, the
// post-processor of its kind and the input normalization, each from the configuration
// when it says, else from what the model itself carries.
type modelSetup struct {
	labels     *labelSet
	post       *postprocessor
	norm       normalizer
	convention string // ModelInfo.InputConvention
	detector   string // ModelInfo.Detector
	labelsFrom string // ModelInfo.LabelsSource
}

// inputHint is a normalization the model calls for (its metadata's, a detector
// preset's input range), used for a float input when cfg.Normalize is auto.
type inputHint struct {
	normalize string
	mean, std [3]float32 // for NormalizeMeanStd
	source    string     // who says so, for ModelInfo.InputConvention
}

// backendMetadata is the model metadata a backend read from its model file, nil when
// it has none (or the runtime does not read it).
func backendMetadata(b Backend) *modelMetadata {
	if m, ok := b.(interface{ metadata() *modelMetadata }); ok {
		return m.metadata()
	}
	return nil
}

// setupModel loads the labels (the file cfg.Labels names, else the one the model's
// metadata packs) and checks them against the outputs, picks the post-processor for
// cfg.Kind, and the input normalization: cfg.Normalize when set, else the model's own
// convention for a float input (its metadata's, else a detector preset's range), else
// newNormalizer's default. Errors are permanent (ErrBadConfig or ErrBadModel).
func setupModel(cfg ModelConfig, meta *modelMetadata, in inputSpec, input TensorInfo, outs []TensorInfo) (*modelSetup, error) {
	if err := checkOutputs(cfg.Kind, outs); err != nil {
		return nil, err
	}
	labels, err := loadLabels(cfg.Labels)
	if err != nil {
		return nil, err
	}
	labelsPath, labelsFrom := cfg.Labels, "model.labels"
	if f, ok := meta.labelsFor(cfg.Kind); ok && labels == nil {
		if labels, err = parseLabels(f.data); err != nil {
			return nil, newErr(ErrBadModel, true, err, "cannot read the labels file %q in the model's metadata", f.name)
		}
		labelsPath, labelsFrom = f.name+" (model metadata)", "model metadata ("+f.name+")"
	}
	if labels == nil {
		labelsFrom = ""
	}
	if err := checkLabels(cfg.Kind, labels, labelsPath, outs[0]); err != nil {
		return nil, err
	}
	post, err := newPostprocessor(cfg, labels, input, outs)
	if err != nil {
		return nil, err
	}
	if err := checkDetectionLabels(post.det, labels, labelsPath); err != nil {
		return nil, err
	}
	hint := meta.normalizationHint()
	if a, ok := post.det.(*anchorHead); ok && hint == nil && a.p.normalize != "" {
		hint = &inputHint{normalize: a.p.normalize, source: "the " + a.p.name + " detector's input range"}
	}
	norm, convention := inputNormalizer(cfg, in, hint)
	return &modelSetup{labels: labels, post: post, norm: norm, convention: convention, detector: post.how, labelsFrom: labelsFrom}, nil
}

// inputNormalizer is newNormalizer, except that a float input without an explicit
// cfg.Normalize gets the normalization the model calls for (hint), said so in the
// convention text.
func inputNormalizer(cfg ModelConfig, in inputSpec, hint *inputHint) (normalizer, string) {
	if hint == nil || cfg.Normalize != NormalizeAuto || in.typ != "float32" {
		return newNormalizer(cfg, in)
	}
	c := cfg
	c.Normalize, c.Mean, c.Std = hint.normalize, hint.mean, hint.std
	n, _ := newNormalizer(c, in)
	if hint.normalize == NormalizeMeanStd {
		return n, fmt.Sprintf("normalize mean_std (mean %v, std %v; %s; auto)", hint.mean, hint.std, hint.source)
	}
	return n, fmt.Sprintf("normalize %s (%s; auto)", hint.normalize, hint.source)
}

// checkDetectionLabels refuses a labels file that names classes a YOLO or anchor head
// does not have, or (one label per line) does not name them all.
func checkDetectionLabels(det detector, ls *labelSet, path string) error {
	if ls == nil {
		return nil
	}
	var classes int
	var out TensorInfo
	switch d := det.(type) {
	case *yoloHead:
		classes, out = d.classes, d.t
	case *anchorHead:
		classes, out = d.classes, d.scoreT
	default:
		return nil
	}
	return checkLabelCount(ls, path, out, classes)
}
