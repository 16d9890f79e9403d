package tensorflow

import (
	"context"
	"errors"
	"testing"

	"github.com/inferq/inferq/infer"
)

// TestOpenMissingModel: in either build, a missing SavedModel or a build without
// TensorFlow gives a clear, typed error rather than a crash.
func TestOpenMissingModel(t *testing.T) {
	_, err := Open(context.Background(), infer.RuntimeConfig{}, infer.ModelConfig{Path: t.TempDir() + "/missing"}, nil)
	if err == nil {
		t.Fatal("got no error")
	}
	if !errors.Is(err, ErrNotBuilt) && !errors.Is(err, infer.ErrBadModel) {
		t.Fatalf("got %v, want ErrNotBuilt or ErrBadModel", err)
	}
}
