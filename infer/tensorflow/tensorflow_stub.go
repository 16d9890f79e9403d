//go:build !tensorflow

package tensorflow

import (
	"context"
	"errors"
	"log/slog"

	"github.com/inferq/inferq/infer"
)

// ErrNotBuilt: this binary was built without the "tensorflow" build tag.
var ErrNotBuilt = errors.New("inferq was built without TensorFlow support (rebuild with -tags tensorflow against libtensorflow)")

// Open always fails in a build without the "tensorflow" tag.
func Open(ctx context.Context, rt infer.RuntimeConfig, cfg infer.ModelConfig, logger *slog.Logger) (infer.Engine, error) {
	return nil, &infer.Error{Kind: infer.ErrRuntimeMissing, Permanent: true, Msg: "tensorflow engine", Err: ErrNotBuilt}
}
