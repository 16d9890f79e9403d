package infer

import "math"

// Result is the answer for one image, ready for encoding/json. Exactly one of Classes,
// Detections, Raw and RawSummary is set, according to Kind.
type Result struct {
	// Kind is the model kind: "classification", "detection" or "raw".
	Kind string `json:"kind"`
	// Classes are the top-k classes, best first (ties: lower index first), those below
	// the score threshold left out.
	Classes []Class `json:"classes,omitempty"`
	// Detections are the detected objects, best first (in the model's order for
	// TFLite_Detection_PostProcess, which sorts them), those below the score threshold
	// left out.
	Detections []Detection `json:"detections,omitempty"`
	// Raw are all output tensors, dequantized to float32.
	Raw []RawTensor `json:"raw,omitempty"`
	// RawSummary replaces Raw when the full tensors were too large to publish and the
	// configuration asks for a summary instead of a failure ([SummarizeRaw]).
	RawSummary []RawSummary `json:"raw_summary,omitempty"`
	// Image describes the input image as decoded.
	Image ImageInfo `json:"image"`
	// Timings are the durations of the run's stages, in milliseconds.
	Timings Timings `json:"timings"`
}

// Class is one classification answer.
type Class struct {
	Index int     `json:"index"`           // class index in the model's output
	Label string  `json:"label,omitempty"` // from the labels file, if any
	Score float32 `json:"score"`           // the model's score (dequantized)
}

// Detection is one detected object.
type Detection struct {
	Label string  `json:"label,omitempty"` // from the labels file, if any
	Class int     `json:"class"`           // class index
	Score float32 `json:"score"`           // confidence
	Box   Box     `json:"box"`             // in the original image's pixels
	// Keypoints are the landmarks the model gives with each box, in the original image's
	// pixels and the model's order (MediaPipe's face detectors: right eye, left eye, nose
	// tip, mouth centre, right ear tragion, left ear tragion, the subject's sides).
	Keypoints []Point `json:"keypoints,omitempty"`
}

// Point is a point in pixels of the original image, clamped to the image.
type Point struct {
	X float32 `json:"x"`
	Y float32 `json:"y"`
}

// Box is an axis-aligned box in pixels of the original image, clamped to the image:
// 0 <= XMin <= XMax <= width, 0 <= YMin <= YMax <= height.
type Box struct {
	XMin float32 `json:"x_min"`
	YMin float32 `json:"y_min"`
	XMax float32 `json:"x_max"`
	YMax float32 `json:"y_max"`
}

// RawTensor is one output tensor.
type RawTensor struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"` // the tensor's type before dequantization
	Shape []int     `json:"shape"`
	Data  []float32 `json:"data"` // row-major, dequantized
}

// ImageInfo describes the input image.
type ImageInfo struct {
	Width  int    `json:"width"`  // pixels
	Height int    `json:"height"` // pixels
	Format string `json:"format"` // "jpeg", "png" or "gif"
}

// Timings are stage durations in milliseconds.
type Timings struct {
	DecodeMS      float64 `json:"decode_ms"`
	PreprocessMS  float64 `json:"preprocess_ms"`
	InvokeMS      float64 `json:"invoke_ms"`
	PostprocessMS float64 `json:"postprocess_ms"`
	// Prepared says the image was decoded and pre-processed while the previous job's
	// model ran (Supervisor.Prepare, then RunKey), so decode and pre-processing cost this
	// job no wait.
	Prepared bool `json:"prepared,omitempty"`
}

// RawSummary describes one raw output tensor without its values: its shape and the
// statistics of its finite values. Non-finite values (which JSON cannot carry) are
// counted, not included in the statistics.
type RawSummary struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"`
	Shape  []int   `json:"shape"`
	Count  int     `json:"count"`  // values in the tensor
	Finite int     `json:"finite"` // of which finite; Min, Max and Mean are over these
	NaN    int     `json:"nan,omitempty"`
	Inf    int     `json:"inf,omitempty"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// SummarizeRaw replaces r.Raw by one RawSummary per tensor (shape, type, min, max and
// mean of the finite values, counts of NaN and Inf). It does nothing to a result
// without raw tensors.
func SummarizeRaw(r *Result) {
	if r == nil || len(r.Raw) == 0 {
		return
	}
	r.RawSummary = make([]RawSummary, len(r.Raw))
	for i, t := range r.Raw {
		s := RawSummary{Name: t.Name, Type: t.Type, Shape: append([]int(nil), t.Shape...), Count: len(t.Data)}
		var sum float64
		for _, v := range t.Data {
			f := float64(v)
			switch {
			case math.IsNaN(f):
				s.NaN++
				continue
			case math.IsInf(f, 0):
				s.Inf++
				continue
			}
			if s.Finite == 0 || f < s.Min {
				s.Min = f
			}
			if s.Finite == 0 || f > s.Max {
				s.Max = f
			}
			sum += f
			s.Finite++
		}
		if s.Finite > 0 {
			s.Mean = sum / float64(s.Finite)
		}
		r.RawSummary[i] = s
	}
	r.Raw = nil
}
