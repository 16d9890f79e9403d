package infer

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

// customOpModel is a [1,8,8,3] image model whose only op is the named custom op.
func customOpModel(ops ...string) []byte {
	g := tflitegen.NewGraph("custom op model")
	x := g.Tensor("image", tflitegen.TypeFloat32, nil, 1, 8, 8, 3)
	for i, op := range ops {
		y := g.Tensor("y"+string(rune('0'+i)), tflitegen.TypeFloat32, nil, 1, 8, 8, 3)
		g.Custom(op, []int32{x}, []int32{y}, nil)
		x = y
	}
	g.SetIO([]int32{0}, []int32{x})
	return g.Bytes()
}

func TestCustomOps(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want []string
		hint []string // substrings of missingOpsHint; nil: ""
	}{
		{"edge tpu", customOpModel("edgetpu-custom-op"), []string{"edgetpu-custom-op"}, []string{`"edgetpu-custom-op"`, "Edge TPU delegate", "libedgetpu.so.1"}},
		{"mediapipe, repeated", customOpModel("Convolution2DTransposeBias", "Convolution2DTransposeBias"), []string{"Convolution2DTransposeBias"}, []string{"MediaPipe's op resolver"}},
		{"flex and unknown", customOpModel("MyOp", "FlexRFFT"), []string{"FlexRFFT", "MyOp"}, []string{"Select TF ops (Flex)", `"MyOp" (not part of the TFLite C library`}},
		{"runtime's own custom op", customOpModel("TFLite_Detection_PostProcess"), []string{"TFLite_Detection_PostProcess"}, nil},
		{"builtin ops only", tflitegen.NewClassifierNet(16, 16, 4, 4, 3, 1).Model(), nil, nil},
		{"not a model", []byte("GIF89a not a model at all"), nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := customOps(tc.data)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("customOps = %q, want %q", got, tc.want)
			}
			hint := missingOpsHint(tc.data)
			if tc.hint == nil && hint != "" {
				t.Errorf("hint %q, want none", hint)
			}
			for _, w := range tc.hint {
				if !strings.Contains(hint, w) {
					t.Errorf("hint %q does not say %q", hint, w)
				}
			}
		})
	}
}

// A model the runtime accepts as a FlatBuffer but cannot build because of a custom op
// fails to load with an error naming the op and what provides it (the runtime itself
// says only "status 1").
func TestMissingCustomOpNamed(t *testing.T) {
	rt := needRuntime(t)
	dir := t.TempDir()
	for _, op := range []string{"edgetpu-custom-op", "Convolution2DTransposeBias"} {
		t.Run(op, func(t *testing.T) {
			path := writeFile(t, dir, "m.tflite", customOpModel(op))
			eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: path, Kind: KindRaw}, testLogger(t))
			if err == nil {
				eng.Close()
				t.Fatal("model with an unresolvable custom op loaded")
			}
			if !IsPermanent(err) || !strings.Contains(err.Error(), `"`+op+`"`) || !strings.Contains(err.Error(), "does not provide") {
				t.Fatalf("error %q does not name the missing op %q", err, op)
			}
		})
	}
}

func FuzzCustomOps(f *testing.F) {
	f.Add(customOpModel("edgetpu-custom-op"))
	f.Add(tflitegen.NewClassifierNet(8, 8, 2, 2, 2, 1).Model())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = customOps(data) // must not panic
		_ = missingOpsHint(data)
	})
}
