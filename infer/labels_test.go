package infer

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadLabelsFormats(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		wantFormat string
		wantCount  int
		want       map[int]string // id -> label ("" = no label)
	}{
		{"one per line", "background\ncat\ndog\n", LabelsLines, 3, map[int]string{0: "background", 1: "cat", 2: "dog", 3: ""}},
		{"one per line, no final newline, CRLF", "cat\r\ndog", LabelsLines, 2, map[int]string{0: "cat", 1: "dog"}},
		{"one per line with numbers inside", "7 up\ncat\n", LabelsLines, 2, map[int]string{0: "7 up", 1: "cat"}},
		// Coral/COCO: two spaces, gaps (12 is skipped), no final newline.
		{"coco ids with gaps", "0  person\n1  bicycle\n11  fire hydrant\n13  stop sign\n89  toothbrush", LabelsIDs, 5,
			map[int]string{0: "person", 1: "bicycle", 11: "fire hydrant", 12: "", 13: "stop sign", 88: "", 89: "toothbrush"}},
		{"ids with tabs, colons, blank lines, out of order", "2:\tcar\n\n0 person\n1\tbicycle\n", LabelsIDs, 3, map[int]string{0: "person", 1: "bicycle", 2: "car"}},
		{"duplicate id is not the id form", "0 a\n0 b\n", LabelsLines, 2, map[int]string{0: "0 a", 1: "0 b"}},
		{"one line without an id is not the id form", "0 person\nbicycle\n", LabelsLines, 2, map[int]string{0: "0 person", 1: "bicycle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "labels.txt")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			ls, err := loadLabels(path)
			if err != nil {
				t.Fatal(err)
			}
			if ls.format != tc.wantFormat || ls.count != tc.wantCount {
				t.Errorf("format %q count %d, want %q %d", ls.format, ls.count, tc.wantFormat, tc.wantCount)
			}
			for id, want := range tc.want {
				if got := ls.label(id); got != want {
					t.Errorf("label(%d) = %q, want %q", id, got, want)
				}
			}
		})
	}
}

// A labels file that cannot fit a classification output fails the load, naming both
// numbers; detection and raw outputs carry no class count, so any file fits them.
func TestCheckLabels(t *testing.T) {
	out := func(n int) TensorInfo { return TensorInfo{Name: "scores", Type: "float32", Shape: []int{1, n}} }
	lines := func(n int) *labelSet {
		return &labelSet{byID: make([]string, n), format: LabelsLines, count: n}
	}
	ids := func(maxID, count int) *labelSet {
		return &labelSet{byID: make([]string, maxID+1), format: LabelsIDs, count: count}
	}
	tests := []struct {
		name    string
		kind    string
		ls      *labelSet
		classes int
		wantErr []string // substrings; nil: no error
	}{
		{"lines fit", KindClassification, lines(10), 10, nil},
		{"more classes than labels", KindClassification, lines(1000), 1001, []string{"1000 labels", "1001 classes"}},
		{"more labels than classes", KindClassification, lines(1001), 1000, []string{"1001 labels", "1000 classes"}},
		{"ids fit with gaps", KindClassification, ids(89, 80), 90, nil},
		{"id past the output", KindClassification, ids(89, 80), 80, []string{"class id 89", "only 80 classes"}},
		{"output past the ids", KindClassification, ids(89, 80), 91, []string{"ids up to 89", "80 labels", "91 classes"}},
		{"detection has no class count", KindDetection, lines(3), 1, nil},
		{"no labels", KindClassification, nil, 5, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLabels(tc.kind, tc.ls, "labels.txt", out(tc.classes))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func FuzzParseIDLabels(f *testing.F) {
	f.Add("0  person\n1  bicycle\n89  toothbrush")
	f.Add("cat\ndog\n")
	f.Add("99999999999999999999 x\n")
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		for i := range lines {
			lines[i] = strings.TrimSpace(lines[i])
		}
		ls, ok := parseIDLabels(lines)
		if !ok {
			return
		}
		if ls.count > len(ls.byID) || len(ls.byID) > maxLabelID+1 {
			t.Fatalf("count %d ids %d", ls.count, len(ls.byID))
		}
		n := 0
		for _, l := range ls.byID {
			if l != "" {
				n++
			}
		}
		if n != ls.count || !reflect.DeepEqual(ls.format, LabelsIDs) {
			t.Fatalf("%d labels, count %d", n, ls.count)
		}
	})
}
