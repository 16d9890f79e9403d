package infer

import (
	"encoding/binary"
	"math"
	"sort"
)

// dequantize converts a tensor's bytes to float32 values.
func dequantize(t TensorInfo, b []byte) []float32 {
	switch t.Type {
	case "float32":
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v
	case "uint8":
		v := make([]float32, len(b))
		for i, q := range b {
			v[i] = deq(t, float32(q))
		}
		return v
	case "int8":
		v := make([]float32, len(b))
		for i, q := range b {
			v[i] = deq(t, float32(int8(q)))
		}
		return v
	case "int32":
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = deq(t, float32(int32(binary.LittleEndian.Uint32(b[4*i:]))))
		}
		return v
	case "int64":
		v := make([]float32, len(b)/8)
		for i := range v {
			v[i] = deq(t, float32(int64(binary.LittleEndian.Uint64(b[8*i:]))))
		}
		return v
	}
	return nil
}

func deq(t TensorInfo, q float32) float32 {
	if t.Scale == 0 {
		return q
	}
	return t.Scale * (q - float32(t.ZeroPoint))
}

// checkOutputs verifies that the outputs are readable and fit the model kind; a
// detection model's layout is newDetector's to check.
func checkOutputs(kind string, outs []TensorInfo) error {
	supported := func(t TensorInfo) bool {
		switch t.Type {
		case "float32", "uint8", "int8", "int32", "int64":
			return true
		}
		return false
	}
	if len(outs) == 0 {
		return badModel(nil, "model has no outputs")
	}
	for _, o := range outs {
		if !supported(o) {
			return badModel(nil, "output %s: type %s is not supported", o, o.Type)
		}
	}
	if kind == KindClassification && outs[0].elements() < 1 {
		return badModel(nil, "classification output %s is empty", outs[0])
	}
	return nil
}

// postprocessor turns one loaded model's outputs into Results.
type postprocessor struct {
	cfg    ModelConfig
	labels *labelSet
	outs   []TensorInfo
	det    detector // kind detection
	how    string   // ModelInfo.Detector
}

// newPostprocessor checks the outputs against cfg.Kind (and, for detection, picks the
// decoder) once, at load.
func newPostprocessor(cfg ModelConfig, labels *labelSet, in TensorInfo, outs []TensorInfo) (*postprocessor, error) {
	if err := checkOutputs(cfg.Kind, outs); err != nil {
		return nil, err
	}
	p := &postprocessor{cfg: cfg, labels: labels, outs: outs}
	if cfg.Kind == KindDetection {
		det, how, err := newDetector(cfg, in, outs)
		if err != nil {
			return nil, err
		}
		p.det, p.how = det, how
	}
	return p, nil
}

// run turns one run's output bytes into a Result.
func (p *postprocessor) run(data [][]byte, img *rgbImage) *Result {
	r := &Result{Kind: p.cfg.Kind, Image: ImageInfo{Width: img.w, Height: img.h, Format: img.format}}
	switch p.cfg.Kind {
	case KindClassification:
		scores := dequantize(p.outs[0], data[0])
		idx := topK(scores, p.cfg.TopK, p.cfg.ScoreThreshold)
		r.Classes = make([]Class, len(idx))
		for i, k := range idx {
			r.Classes[i] = Class{Index: k, Label: p.labels.label(k), Score: scores[k]}
		}
	case KindDetection:
		r.Detections = p.det.detect(data, imageFrame(img), p.labels)
		if r.Detections == nil {
			r.Detections = []Detection{}
		}
	case KindRaw:
		r.Raw = make([]RawTensor, len(p.outs))
		for i, o := range p.outs {
			r.Raw[i] = RawTensor{Name: o.Name, Type: o.Type, Shape: append([]int(nil), o.Shape...), Data: dequantize(o, data[i])}
		}
	}
	return r
}

// topK returns the indices of the k best scores at or above threshold, best first, ties
// by lower index. NaN scores are skipped.
func topK(scores []float32, k int, threshold float32) []int {
	better := func(a, b int) bool { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b) }
	if k*8 >= len(scores) {
		idx := make([]int, 0, len(scores))
		for i, s := range scores {
			if s >= threshold {
				idx = append(idx, i)
			}
		}
		sort.Slice(idx, func(a, b int) bool { return better(idx[a], idx[b]) })
		return idx[:min(k, len(idx))]
	}
	idx := make([]int, 0, k+1)
	for i, s := range scores {
		if !(s >= threshold) || (len(idx) == k && !better(i, idx[k-1])) {
			continue
		}
		j := len(idx)
		idx = append(idx, i)
		for j > 0 && better(i, idx[j-1]) {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = i
		if len(idx) > k {
			idx = idx[:k]
		}
	}
	return idx
}
