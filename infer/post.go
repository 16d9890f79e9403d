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

// checkOutputs verifies that the outputs fit the model kind.
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
	switch kind {
	case KindClassification:
		if outs[0].elements() < 1 {
			return badModel(nil, "classification output %s is empty", outs[0])
		}
	case KindDetection:
		if len(outs) < 4 {
			return badModel(nil, "detection wants 4 outputs (boxes, classes, scores, count) as TFLite_Detection_PostProcess gives, the model has %d", len(outs))
		}
		b, c, s, n := outs[0], outs[1], outs[2], outs[3]
		if len(b.Shape) != 3 || b.Shape[2] != 4 || c.elements() != b.Shape[1] || s.elements() != b.Shape[1] || n.elements() != 1 {
			return badModel(nil, "detection outputs %s, %s, %s, %s: want [1,N,4], [1,N], [1,N], [1]", b, c, s, n)
		}
	}
	return nil
}

// postprocess turns output tensors into a Result.
func postprocess(cfg ModelConfig, labels *labelSet, outs []TensorInfo, data [][]byte, img *rgbImage) *Result {
	r := &Result{Kind: cfg.Kind, Image: ImageInfo{Width: img.w, Height: img.h, Format: img.format}}
	switch cfg.Kind {
	case KindClassification:
		scores := dequantize(outs[0], data[0])
		idx := topK(scores, cfg.TopK, cfg.ScoreThreshold)
		r.Classes = make([]Class, len(idx))
		for i, k := range idx {
			r.Classes[i] = Class{Index: k, Label: labels.label(k), Score: scores[k]}
		}
	case KindDetection:
		boxes := dequantize(outs[0], data[0])
		classes := dequantize(outs[1], data[1])
		scores := dequantize(outs[2], data[2])
		count := int(dequantize(outs[3], data[3])[0])
		count = min(max(count, 0), len(scores))
		w, h := float32(img.w), float32(img.h)
		clamp := func(v, hi float32) float32 { return min(max(v, 0), 1) * hi }
		r.Detections = []Detection{}
		for i := range count {
			if scores[i] < cfg.ScoreThreshold || math.IsNaN(float64(scores[i])) {
				continue
			}
			ymin, xmin, ymax, xmax := boxes[4*i], boxes[4*i+1], boxes[4*i+2], boxes[4*i+3]
			bx := Box{XMin: clamp(xmin, w), YMin: clamp(ymin, h), XMax: clamp(xmax, w), YMax: clamp(ymax, h)}
			if bx.XMin > bx.XMax {
				bx.XMin, bx.XMax = bx.XMax, bx.XMin
			}
			if bx.YMin > bx.YMax {
				bx.YMin, bx.YMax = bx.YMax, bx.YMin
			}
			cls := int(classes[i])
			r.Detections = append(r.Detections, Detection{Label: labels.label(cls), Class: cls, Score: scores[i], Box: bx})
		}
	case KindRaw:
		r.Raw = make([]RawTensor, len(outs))
		for i, o := range outs {
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
