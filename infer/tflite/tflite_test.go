package tflite_test

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/infer/tflite/tflitegen"
)

func floats(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func TestTinyInvoke(t *testing.T) {
	lib := openLib(t)
	if got := lib.Version(); got == "" {
		t.Fatalf("empty TfLiteVersion")
	}
	m, err := lib.NewModel(tflitegen.Tiny())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	it, err := lib.NewInterpreter(m, tflite.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	in, out := it.Inputs(), it.Outputs()
	if len(in) != 1 || len(out) != 1 {
		t.Fatalf("got %d inputs %d outputs, want 1 and 1", len(in), len(out))
	}
	if got, want := in[0].Shape, []int{1, 2, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("input shape got %v want %v", got, want)
	}
	tests := []struct {
		name string
		in   []float32
		want []float32
	}{
		{"ones", []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, []float32{1.5, 2, 2}},
		{"ramp", []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, []float32{4.5 + 0.5, 2 * 5.5, 3*6.5 - 1}},
	}
	for _, tc := range tests {
		if err := in[0].CopyFrom(floatBytes(tc.in)); err != nil {
			t.Fatal(err)
		}
		if err := it.Invoke(); err != nil {
			t.Fatal(err)
		}
		got := floats(out[0].Bytes())
		for i := range tc.want {
			if math.Abs(float64(got[i]-tc.want[i])) > 1e-5 {
				t.Errorf("%s: output got %v want %v", tc.name, got, tc.want)
				break
			}
		}
	}
	it.Close()
	it.Close() // twice is safe
}

func TestBadModels(t *testing.T) {
	lib := openLib(t)
	good := tflitegen.Tiny()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)/2]},
		{"random", func() []byte {
			b := make([]byte, 4096)
			for i := range b {
				b[i] = byte(i*7919 + i/3)
			}
			return b
		}()},
		{"wrong identifier", append(append([]byte{}, good[:4]...), append([]byte("XXXX"), good[8:]...)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := lib.NewModel(tc.data)
			if err == nil {
				it, err2 := lib.NewInterpreter(m, tflite.Options{})
				if err2 == nil {
					it.Close()
				}
				m.Close()
				err = err2
			}
			if !errors.Is(err, tflite.ErrBadModel) {
				t.Fatalf("got %v, want ErrBadModel", err)
			}
		})
	}
}

func TestMissingLibrary(t *testing.T) {
	_, err := tflite.Open("/nonexistent/libtensorflowlite_c.so")
	if !errors.Is(err, tflite.ErrLibraryNotFound) {
		t.Fatalf("got %v, want ErrLibraryNotFound", err)
	}
}
