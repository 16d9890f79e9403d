package infer

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// Labels file formats (ModelInfo.LabelsFormat).
const (
	// LabelsLines is one label per line: line i (from 0) is class i.
	LabelsLines = "one_per_line"
	// LabelsIDs is "ID label" per line, as Coral's and the COCO detectors' labels.txt:
	// ids may skip (COCO's 80 labels have ids 0..89) and each maps to exactly its class.
	LabelsIDs = "id_label"
)

// labelSet is a loaded labels file: byID[i] is the label of class i ("" for an id the
// file skips).
type labelSet struct {
	byID   []string
	format string
	count  int // labels in the file
}

func (ls *labelSet) label(i int) string {
	if ls == nil || i < 0 || i >= len(ls.byID) {
		return ""
	}
	return ls.byID[i]
}

// maxLabelID bounds ids in an "ID label" file, so a stray huge number cannot allocate.
const maxLabelID = 1 << 20

// loadLabels reads a labels file and detects its format: when every non-empty line is
// "ID label" (an integer, then white space or a colon, then the label) with distinct ids,
// ids map exactly (LabelsIDs); otherwise line i is class i (LabelsLines). A nil set and
// no error when path is "".
func loadLabels(path string) (*labelSet, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, newErr(ErrBadConfig, true, err, "cannot read model.labels %q", path)
	}
	ls, err := parseLabels(data)
	if err != nil {
		return nil, newErr(ErrBadConfig, true, err, "cannot read model.labels %q", path)
	}
	return ls, nil
}

// parseLabels reads a labels file's contents, detecting its format as loadLabels says.
func parseLabels(data []byte) (*labelSet, error) {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if ls, ok := parseIDLabels(lines); ok {
		return ls, nil
	}
	return &labelSet{byID: lines, format: LabelsLines, count: len(lines)}, nil
}

// parseIDLabels reads lines as "ID label"; ok is false when any non-empty line is not of
// that form or an id repeats.
func parseIDLabels(lines []string) (*labelSet, bool) {
	ids := map[int]string{}
	maxID := -1
	for _, l := range lines {
		if l == "" {
			continue
		}
		i := strings.IndexFunc(l, func(r rune) bool { return !('0' <= r && r <= '9') })
		if i <= 0 || !(unicode.IsSpace(rune(l[i])) || l[i] == ':') {
			return nil, false
		}
		id, err := strconv.Atoi(l[:i])
		if err != nil || id > maxLabelID {
			return nil, false
		}
		label := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l[i:]), ":"))
		if _, dup := ids[id]; dup || label == "" {
			return nil, false
		}
		ids[id] = label
		maxID = max(maxID, id)
	}
	if len(ids) == 0 {
		return nil, false
	}
	byID := make([]string, maxID+1)
	for id, l := range ids {
		byID[id] = l
	}
	return &labelSet{byID: byID, format: LabelsIDs, count: len(ids)}, true
}

// checkLabels refuses, at load, a labels file that cannot fit a classification output of
// classes scores: more classes than labels (or label ids), or labels for classes the
// model does not have (the usual off-by-one: a background class present in one and not
// the other).
func checkLabels(kind string, ls *labelSet, path string, out TensorInfo) error {
	if ls == nil || kind != KindClassification {
		return nil
	}
	return checkLabelCount(ls, path, out, out.elements())
}

// checkLabelCount refuses labels that cannot fit an output of classes classes.
func checkLabelCount(ls *labelSet, path string, out TensorInfo, classes int) error {
	switch {
	case ls.format == LabelsLines && ls.count != classes:
		return newErr(ErrBadConfig, true, nil, "model.labels %q has %d labels (one per line) but the model's output %s has %d classes", path, ls.count, out, classes)
	case ls.format == LabelsIDs && len(ls.byID) > classes:
		return newErr(ErrBadConfig, true, nil, "model.labels %q names class id %d but the model's output %s has only %d classes (ids 0..%d)", path, len(ls.byID)-1, out, classes, classes-1)
	case ls.format == LabelsIDs && len(ls.byID) < classes:
		return newErr(ErrBadConfig, true, nil, "model.labels %q has ids up to %d (%d labels) but the model's output %s has %d classes", path, len(ls.byID)-1, ls.count, out, classes)
	}
	return nil
}
