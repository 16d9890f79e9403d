package infer

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Kinds of models (ModelConfig.Kind).
const (
	KindClassification = "classification"
	KindDetection      = "detection"
	KindRaw            = "raw"
)

// Kinds lists every ModelConfig.Kind, for validation here and in the daemon's config.
var Kinds = []string{KindClassification, KindDetection, KindRaw}

// kindList is Kinds in words: "classification, detection or raw".
func kindList() string {
	return strings.Join(Kinds[:len(Kinds)-1], ", ") + " or " + Kinds[len(Kinds)-1]
}

// Normalizations (ModelConfig.Normalize) of 8-bit pixel values p in [0,255].
const (
	NormalizeAuto    = ""         // raw pixels for uint8/int8 inputs, 0_1 for float inputs
	Normalize01      = "0_1"      // p/255
	NormalizeM11     = "-1_1"     // p/127.5 - 1
	NormalizeMeanStd = "mean_std" // (p - Mean[c]) / Std[c], Mean and Std in pixel units
	NormalizeNone    = "none"     // p
)

// DefaultMaxPixels is the decompression-bomb limit when ModelConfig.MaxPixels is 0.
const DefaultMaxPixels = 50_000_000

// ModelConfig says which model to load and how to feed and read it.
type ModelConfig struct {
	Path string // the .tflite file (or SavedModel dir for the tensorflow engine)
	Name string // reported model name; default: the file name without extension
	// Labels is an optional labels file: one label per line (line i is class i) or
	// "ID label" lines (ids may skip); the format is detected (ModelInfo.LabelsFormat).
	Labels string
	Kind   string // "classification" (default), "detection" or "raw"
	// TopK is how many classes a classification result lists (default 5).
	TopK int
	// ScoreThreshold drops classes and detections scoring below it. For detectors whose
	// outputs inferq decodes and suppresses itself (anchor-based SSD heads, YOLO), 0
	// means the family's default (MediaPipe face short range 0.5, full range 0.6, YOLO
	// 0.25): every one of their thousands of candidate boxes scores above 0.
	ScoreThreshold float32
	// Detector says how a detection model's outputs are laid out: "" (DetectorAuto: told
	// from the output shapes, an error naming them when it cannot), "ssd_postprocess"
	// (TFLite_Detection_PostProcess: boxes, classes, scores, count), "ssd_anchors" (box
	// regressions and scores per anchor, as MediaPipe/BlazeFace), "yolov5" ([1,N,5+classes])
	// or "yolov8" ([1,4+classes,N]).
	Detector string
	// Anchors names the anchor set of an "ssd_anchors" head: "" (AnchorsAuto: the preset
	// whose input size and anchor count match the model), "mediapipe_face_short" (128×128,
	// 896 anchors) or "mediapipe_face_full" (192×192, 2304 anchors).
	Anchors string
	// IoUThreshold is the non-maximum suppression overlap above which the lower-scoring
	// box of a class is dropped (or, with weighted NMS, merged); 0 means the family's
	// default (MediaPipe faces 0.3, YOLO 0.45). Not used by ssd_postprocess, whose graph
	// suppresses itself.
	IoUThreshold float32
	// NMS is the suppression algorithm: "" (the family's default: weighted for
	// ssd_anchors, as MediaPipe's graphs do, hard for YOLO), "hard" or "weighted" (the
	// kept box is the score-weighted mean of the boxes it suppresses).
	NMS string
	// MaxDetections caps the detections an NMS-decoded result lists, best first
	// (default 100).
	MaxDetections int
	// Normalize maps pixels to the model's real-valued input; quantized inputs are then
	// quantized with the tensor's scale and zero point. "" (NormalizeAuto) follows the
	// TFLite convention: a uint8 input gets the raw pixel bytes (int8: pixel - 128), whose
	// meaning the tensor's own scale and zero point define; a float input gets 0_1.
	Normalize string
	Mean, Std [3]float32 // for "mean_std", per RGB channel, in pixel units (0..255)
	Threads   int        // TFLite CPU threads; 0 = runtime default
	// Delegate is an external delegate library (libedgetpu.so.1, a GPU delegate); if it
	// cannot be loaded the model runs on the CPU and ModelInfo.DelegateError says why.
	Delegate        string
	DelegateOptions map[string]string
	MaxPixels       int64 // decompression-bomb limit (width×height), default 50e6
}

// RuntimeConfig says where the TFLite C library is.
type RuntimeConfig struct {
	// Library is the TFLite C library (libtensorflowlite_c.so, or Debian's
	// libtensorflow-lite.so.2.14.1). Empty: inside RuntimeDir if set, else the dynamic
	// loader's search path.
	Library string
	// RuntimeDir is a closure made by packaging/fetch-tflite-runtime.sh; the engine child
	// then runs under its loader (<dir>/usr/lib64/ld-linux-x86-64.so.2 --library-path
	// <dir>/usr/lib/x86_64-linux-gnu).
	RuntimeDir string
	// Candidates are further TFLite C libraries (such as Google's 2.9.0 with XNNPACK from
	// packaging/fetch-tflite-npm.sh) that compete at load with the library named above
	// (Library, else RuntimeDir's): each runs MeasureInvokes timed invokes of the model
	// and the lowest median runs it (ModelInfo.TFLite gives the figures). Empty: the one
	// library, unmeasured. See tfliteLibraries.
	Candidates []string
	// MeasureInvokes is how many timed invokes each candidate gets (default 5).
	MeasureInvokes int
}

// withDefaults returns c with defaults filled in, or an error naming the bad field.
func (c ModelConfig) withDefaults() (ModelConfig, error) {
	if c.Path == "" {
		return c, newErr(ErrBadConfig, true, nil, "model.path is empty")
	}
	if c.Kind == "" {
		c.Kind = KindClassification
	}
	if !slices.Contains(Kinds, c.Kind) {
		return c, newErr(ErrBadConfig, true, nil, "model.kind %q: want %s", c.Kind, kindList())
	}
	if c.TopK == 0 {
		c.TopK = 5
	}
	if c.TopK < 0 {
		return c, newErr(ErrBadConfig, true, nil, "model.top_k %d: must be positive", c.TopK)
	}
	switch c.Normalize {
	case NormalizeAuto, Normalize01, NormalizeM11, NormalizeNone:
	case NormalizeMeanStd:
		for i, s := range c.Std {
			if s == 0 {
				return c, newErr(ErrBadConfig, true, nil, "model.std[%d] is 0 with normalize mean_std", i)
			}
		}
	default:
		return c, newErr(ErrBadConfig, true, nil, "model.normalize %q: want \"\" (auto), 0_1, -1_1, mean_std or none", c.Normalize)
	}
	if c.Threads < 0 {
		return c, newErr(ErrBadConfig, true, nil, "model.threads %d: must be >= 0", c.Threads)
	}
	if c.MaxPixels == 0 {
		c.MaxPixels = DefaultMaxPixels
	}
	if c.MaxPixels < 0 {
		return c, newErr(ErrBadConfig, true, nil, "model.max_pixels %d: must be positive", c.MaxPixels)
	}
	if !(c.ScoreThreshold >= 0 && c.ScoreThreshold <= 1) { // NaN included
		return c, newErr(ErrBadConfig, true, nil, "model.score_threshold %v: want 0..1", c.ScoreThreshold)
	}
	return c.detectionDefaults()
}

// Validate checks c as loading a model would, before anything is loaded: the first
// invalid field, named by its YAML path (model.…).
func (c ModelConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

// detectionDefaults validates the detection fields (only meaningful for kind detection,
// checked for every kind so a typo never waits for a kind change to surface).
func (c ModelConfig) detectionDefaults() (ModelConfig, error) {
	switch c.Detector {
	case DetectorAuto, DetectorSSDPostProcess, DetectorSSDAnchors, DetectorYOLOv5, DetectorYOLOv8:
	default:
		return c, newErr(ErrBadConfig, true, nil, "model.detector %q: want \"\" (auto), %s, %s, %s or %s", c.Detector,
			DetectorSSDPostProcess, DetectorSSDAnchors, DetectorYOLOv5, DetectorYOLOv8)
	}
	if c.Anchors != AnchorsAuto && anchorPresetByName(c.Anchors) == nil {
		return c, newErr(ErrBadConfig, true, nil, "model.anchors %q: want \"\" (auto) or one of %s", c.Anchors, strings.Join(anchorPresetNames(), ", "))
	}
	if c.Anchors != AnchorsAuto && c.Detector != DetectorAuto && c.Detector != DetectorSSDAnchors {
		return c, newErr(ErrBadConfig, true, nil, "model.anchors %q is set but model.detector is %q: anchors are for %s", c.Anchors, c.Detector, DetectorSSDAnchors)
	}
	if !(c.IoUThreshold >= 0 && c.IoUThreshold <= 1) {
		return c, newErr(ErrBadConfig, true, nil, "model.iou_threshold %v: want 0..1 (0: the detector's default)", c.IoUThreshold)
	}
	switch c.NMS {
	case NMSAuto, NMSHard, NMSWeighted:
	default:
		return c, newErr(ErrBadConfig, true, nil, "model.nms %q: want \"\" (the detector's default), %s or %s", c.NMS, NMSHard, NMSWeighted)
	}
	if c.MaxDetections == 0 {
		c.MaxDetections = DefaultMaxDetections
	}
	if c.MaxDetections < 0 || c.MaxDetections > maxMaxDetections {
		return c, newErr(ErrBadConfig, true, nil, "model.max_detections %d: want 1..%d", c.MaxDetections, maxMaxDetections)
	}
	return c, nil
}

// ModelInfo identifies the loaded model.
type ModelInfo struct {
	Name          string       `json:"name"`
	Path          string       `json:"path"`
	SHA256        string       `json:"sha256"`
	LoadedAt      time.Time    `json:"loaded_at"`
	Runtime       string       `json:"runtime"` // "tflite", "tensorflow"
	Version       string       `json:"version"` // the runtime's version
	Inputs        []TensorInfo `json:"inputs"`
	Outputs       []TensorInfo `json:"outputs"`
	Kind          string       `json:"kind"`
	Delegate      string       `json:"delegate,omitempty"`       // delegate in use
	DelegateError string       `json:"delegate_error,omitempty"` // why the delegate is not in use
	// TFLite says which TFLite library runs the model, how it was chosen (with each
	// candidate's measured figures), whether XNNPACK runs it and whether a run past its
	// deadline is cancelled in the child; nil for other runtimes.
	TFLite *TFLiteInfo `json:"tflite,omitempty"`
	// InputConvention says how pixels become the input tensor, and whether the
	// configuration or the model chose it (e.g. "raw pixels 0..255 (uint8 input, scale
	// 0.0078125, zero point 128; auto)", or for a float input whose metadata gives its
	// normalization "normalize mean_std (mean [127.5 127.5 127.5], std [127.5 127.5
	// 127.5]; model metadata; auto)").
	InputConvention string `json:"input_convention,omitempty"`
	// LabelsFormat is the labels file's detected format (LabelsLines or LabelsIDs), and
	// Labels how many labels it holds; empty without a labels file.
	LabelsFormat string `json:"labels_format,omitempty"`
	Labels       int    `json:"labels,omitempty"`
	// LabelsSource says where the labels came from: "model.labels" (the configured file
	// wins) or "model metadata (<file>)" (the labels file packed in the model, as TFLite
	// Model Maker packs it); empty without labels.
	LabelsSource string `json:"labels_source,omitempty"`
	// Detector says how a detection model's outputs are decoded, and whether the
	// configuration or the output shapes chose it, with the thresholds in use (e.g.
	// "ssd_anchors mediapipe_face_short (896 anchors; auto), weighted NMS, iou 0.3, score
	// 0.5, max 100"). Empty for other kinds.
	Detector string `json:"detector,omitempty"`
	// Decoder says which JPEG decoder runs in the engine: "libjpeg-turbo 2.1.5
	// (/usr/lib/…/libturbojpeg.so.0.2.0)", or "go image/jpeg (libturbojpeg.so.0 not
	// found: …)" when the library could not be loaded.
	Decoder string `json:"decoder,omitempty"`
}

// TensorInfo describes one input or output tensor.
type TensorInfo struct {
	Name      string  `json:"name"`
	Type      string  `json:"type"` // "float32", "uint8", "int8", "int32", ...
	Shape     []int   `json:"shape"`
	Scale     float32 `json:"scale,omitempty"`      // quantization scale, 0 if not quantized
	ZeroPoint int32   `json:"zero_point,omitempty"` // quantization zero point
}

func (t TensorInfo) String() string {
	return fmt.Sprintf("%s %s%v", t.Name, t.Type, t.Shape)
}

func (t TensorInfo) elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}
