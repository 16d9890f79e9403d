package tflite

import (
	"fmt"
	"unsafe"
)

// Type is a TfLiteType.
type Type int32

// Tensor types (TfLiteType values).
const (
	NoType    Type = 0
	Float32   Type = 1
	Int32     Type = 2
	UInt8     Type = 3
	Int64     Type = 4
	String    Type = 5
	Bool      Type = 6
	Int16     Type = 7
	Complex64 Type = 8
	Int8      Type = 9
	Float16   Type = 10
	Float64   Type = 11
)

var typeNames = map[Type]string{
	NoType: "notype", Float32: "float32", Int32: "int32", UInt8: "uint8", Int64: "int64",
	String: "string", Bool: "bool", Int16: "int16", Complex64: "complex64", Int8: "int8",
	Float16: "float16", Float64: "float64",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", int32(t))
}

// Tensor is an input or output tensor of an interpreter. Its metadata is read once when
// the interpreter is created.
type Tensor struct {
	lib       *Library
	ptr       uintptr
	Name      string
	Type      Type
	Shape     []int
	Scale     float32
	ZeroPoint int32
	ByteSize  int
}

func newTensor(l *Library, p uintptr) *Tensor {
	t := &Tensor{lib: l, ptr: p}
	if p == 0 {
		return t
	}
	t.Name = l.fTensorName(p)
	t.Type = Type(l.fTensorType(p))
	n := l.fTensorNumDims(p)
	t.Shape = make([]int, n)
	for i := range n {
		t.Shape[i] = int(l.fTensorDim(p, i))
	}
	q := l.fTensorQuant(p)
	t.Scale, t.ZeroPoint = q.Scale, q.ZeroPoint
	t.ByteSize = int(l.fTensorByteSize(p))
	return t
}

// Bytes is the tensor's data in TFLite's memory (valid until the next Invoke or Close).
func (t *Tensor) Bytes() []byte {
	if t.ptr == 0 || t.ByteSize == 0 {
		return nil
	}
	d := t.lib.fTensorData(t.ptr)
	if d == nil {
		return nil
	}
	return unsafe.Slice((*byte)(d), t.ByteSize)
}

// CopyFrom copies b into the tensor; len(b) must equal ByteSize.
func (t *Tensor) CopyFrom(b []byte) error {
	if len(b) != t.ByteSize {
		return fmt.Errorf("cannot copy %d bytes into tensor %q of %d bytes", len(b), t.Name, t.ByteSize)
	}
	copy(t.Bytes(), b)
	return nil
}
