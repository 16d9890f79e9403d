package tflitegen

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestFileLayout checks the FlatBuffer framing TFLite relies on.
func TestFileLayout(t *testing.T) {
	for name, m := range map[string][]byte{"tiny": Tiny(), "classifier": NewClassifierNet(16, 16, 4, 4, 3, 1).Model()} {
		if got := string(m[4:8]); got != "TFL3" {
			t.Errorf("%s: identifier %q, want TFL3", name, got)
		}
		if root := binary.LittleEndian.Uint32(m); int(root) >= len(m) {
			t.Errorf("%s: root offset %d beyond %d bytes", name, root, len(m))
		}
	}
	if !bytes.Equal(Tiny(), Tiny()) {
		t.Error("generation is not deterministic")
	}
}

// TestCommittedDemoModels: testdata/models must be what the generator writes (run
// `go run ./infer/tflite/tflitegen/cmd/tflitegen` after changing the generator).
func TestCommittedDemoModels(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata", "models")
	for name, want := range map[string][]byte{"demo.tflite": NewColorClassifier(224, 224, 16, 160).Model(), "tiny.tflite": Tiny()} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (run go run ./infer/tflite/tflitegen/cmd/tflitegen)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go run ./infer/tflite/tflitegen/cmd/tflitegen", name)
		}
	}
}

func TestFlexMapLayout(t *testing.T) {
	b := FlexMap(map[string]FlexValue{"b": 2, "a": float32(1.5), "c": true})
	// Root trailer: byte width 4, type MAP (9<<2 | 2).
	if got := b[len(b)-1]; got != 4 {
		t.Fatalf("root byte width %d", got)
	}
	if got := b[len(b)-2]; got != 9<<2|2 {
		t.Fatalf("root type %#x", got)
	}
	// Keys are stored sorted.
	if !bytes.HasPrefix(b, []byte("a\x00b\x00c\x00")) {
		t.Fatalf("keys not sorted: %q", b[:6])
	}
}
