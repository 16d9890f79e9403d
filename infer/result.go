package infer

// Result is the answer for one image, ready for encoding/json. Exactly one of Classes,
// Detections and Raw is set, according to Kind.
type Result struct {
	// Kind is the model kind: "classification", "detection" or "raw".
	Kind string `json:"kind"`
	// Classes are the top-k classes, best first (ties: lower index first), those below
	// the score threshold left out.
	Classes []Class `json:"classes,omitempty"`
	// Detections are the detected objects, in the model's order (best first for
	// TFLite_Detection_PostProcess), those below the score threshold left out.
	Detections []Detection `json:"detections,omitempty"`
	// Raw are all output tensors, dequantized to float32.
	Raw []RawTensor `json:"raw,omitempty"`
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
}
