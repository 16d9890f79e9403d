package infer

import "sort"

// candidate is a decoded box before suppression, in the model input's normalized
// coordinates.
type candidate struct {
	box   [4]float32 // xmin, ymin, xmax, ymax
	score float32
	class int
	kps   []float32 // keypoints as x0, y0, x1, y1, …; nil without
	index int       // position in the model's output: ties in score go to the lower
}

// area is the box's area, 0 for an empty or inverted box.
func area(b [4]float32) float32 {
	return max(b[2]-b[0], 0) * max(b[3]-b[1], 0)
}

// iou is the intersection over union of two boxes, 0 when either is empty.
func iou(a, b [4]float32) float32 {
	iw := min(a[2], b[2]) - max(a[0], b[0])
	ih := min(a[3], b[3]) - max(a[1], b[1])
	if !(iw > 0 && ih > 0) {
		return 0
	}
	inter := iw * ih
	union := area(a) + area(b) - inter
	if !(union > 0) {
		return 0
	}
	return inter / union
}

// sortCandidates orders candidates best first, ties by output position.
func sortCandidates(c []candidate) {
	sort.Slice(c, func(i, j int) bool {
		if c[i].score != c[j].score {
			return c[i].score > c[j].score
		}
		return c[i].index < c[j].index
	})
}

// suppress runs non-maximum suppression class by class and returns at most s.max
// candidates, best first. Hard: a box overlapping a better box of its class by more
// than s.iou is dropped. Weighted (MediaPipe's): the best remaining box takes every box
// of its class overlapping it by more than s.iou, and becomes their score-weighted mean
// (box and keypoints), keeping its own score. Candidates must have finite scores and
// boxes; cands is reordered.
func suppress(cands []candidate, s nmsSettings) []candidate {
	sortCandidates(cands)
	if s.weighted {
		return suppressWeighted(cands, s)
	}
	var kept []candidate
	for _, c := range cands {
		if len(kept) == s.max {
			break
		}
		ok := true
		for _, k := range kept {
			if k.class == c.class && iou(k.box, c.box) > s.iou {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, c)
		}
	}
	return kept
}

func suppressWeighted(cands []candidate, s nmsSettings) []candidate {
	var kept []candidate
	rest := cands
	next := make([]candidate, 0, len(cands))
	for len(rest) > 0 && len(kept) < s.max {
		top := rest[0]
		group := []candidate{top} // the top box always joins its own group
		next = next[:0]
		for _, c := range rest[1:] {
			if c.class == top.class && iou(c.box, top.box) > s.iou {
				group = append(group, c)
			} else {
				next = append(next, c)
			}
		}
		kept = append(kept, merge(top, group))
		rest, next = next, rest[:0]
	}
	return kept
}

// merge is top with its box and keypoints replaced by the score-weighted mean of the
// group's (top's own when the weights sum to nothing).
func merge(top candidate, group []candidate) candidate {
	if len(group) == 1 {
		return top
	}
	var total float32
	var box [4]float32
	kps := make([]float32, len(top.kps))
	for _, g := range group {
		w := g.score
		total += w
		for i := range box {
			box[i] += w * g.box[i]
		}
		if len(g.kps) == len(kps) {
			for i := range kps {
				kps[i] += w * g.kps[i]
			}
		}
	}
	if !(total > 0) {
		return top
	}
	out := top
	for i := range box {
		out.box[i] = box[i] / total
	}
	if len(kps) > 0 {
		for i := range kps {
			kps[i] /= total
		}
		out.kps = kps
	}
	return out
}
