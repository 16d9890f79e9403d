package infer

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"

	flatbuffers "github.com/google/flatbuffers/go"
)

// metadataName names the model's metadata buffer that holds TFLite Model Metadata.
const metadataName = "TFLITE_METADATA"

// Associated file types (tflite-support's metadata_schema.fbs AssociatedFileType).
const (
	fileAxisLabels  = 2 // labels of an output's classes axis (classifiers)
	fileValueLabels = 3 // labels of an output's values (detectors' class ids)
)

// maxLabelsFileSize bounds a labels file read from a model's zip.
const maxLabelsFileSize = 4 << 20

// modelMetadata is what inferq uses of a model's TFLite Model Metadata (as TFLite Model
// Maker writes it): input 0's normalization and the outputs' labels files, packed in the
// zip appended to the model.
type modelMetadata struct {
	mean, std []float32 // input 0's NormalizationOptions, 1 or 3 values; nil without
	// labels[i] are output i's labels files by type (fileAxisLabels, fileValueLabels):
	// the file's name and contents.
	labels []map[int8]metadataFile
}

type metadataFile struct {
	name string
	data []byte
}

// labelsFor returns the labels file for an output of kind: a classifier's axis labels,
// a detector's value labels, else the other type; ok is false without one.
func (m *modelMetadata) labelsFor(kind string) (f metadataFile, ok bool) {
	if m == nil {
		return f, false
	}
	order := []int8{fileAxisLabels, fileValueLabels}
	if kind == KindDetection {
		order = []int8{fileValueLabels, fileAxisLabels}
	}
	for _, typ := range order {
		for _, files := range m.labels {
			if f, ok := files[typ]; ok {
				return f, true
			}
		}
	}
	return f, false
}

// readMetadata reads the TFLite Model Metadata of a .tflite FlatBuffer: nil, nil for a
// model without; an error for metadata that cannot be read (a damaged FlatBuffer, a
// labels file it names that the appended zip lacks).
func readMetadata(model []byte) (meta *modelMetadata, err error) {
	defer func() {
		// The FlatBuffers reader trusts offsets; a damaged file panics it.
		if r := recover(); r != nil {
			meta, err = nil, fmt.Errorf("cannot read the model's metadata: damaged FlatBuffer")
		}
	}()
	buf, err := metadataBuffer(model)
	if buf == nil || err != nil {
		return nil, err
	}
	if len(buf) < 8 || string(buf[4:8]) != "M001" {
		return nil, fmt.Errorf("cannot read the model's metadata: %s is not TFLite Model Metadata (identifier %q)", metadataName, head(buf[min(4, len(buf)):]))
	}
	root := flatbuffers.Table{Bytes: buf, Pos: flatbuffers.GetUOffsetT(buf)}
	sgs := tables(root, 10) // ModelMetadata.subgraph_metadata
	if len(sgs) == 0 {
		return &modelMetadata{}, nil
	}
	meta = &modelMetadata{}
	if ins := tables(sgs[0], 8); len(ins) > 0 { // SubGraphMetadata.input_tensor_metadata
		for _, pu := range tables(ins[0], 12) { // TensorMetadata.process_units
			if o := pu.Offset(4); o == 0 || pu.GetByte(pu.Pos+flatbuffers.UOffsetT(o)) != 1 {
				continue // options_type is not NormalizationOptions
			}
			o := pu.Offset(6)
			if o == 0 {
				continue
			}
			norm := flatbuffers.Table{Bytes: buf, Pos: pu.Indirect(pu.Pos + flatbuffers.UOffsetT(o))}
			meta.mean, meta.std = floats(norm, 4), floats(norm, 6)
		}
	}
	var zr *zip.Reader
	for _, out := range tables(sgs[0], 10) { // SubGraphMetadata.output_tensor_metadata
		files := map[int8]metadataFile{}
		for _, af := range tables(out, 16) { // TensorMetadata.associated_files
			typ := int8(0)
			if o := af.Offset(8); o != 0 {
				typ = af.GetInt8(af.Pos + flatbuffers.UOffsetT(o))
			}
			o := af.Offset(4)
			if (typ != fileAxisLabels && typ != fileValueLabels) || o == 0 {
				continue
			}
			if _, dup := files[typ]; dup {
				continue // the first file of a type is the default locale's
			}
			name := string(af.ByteVector(af.Pos + flatbuffers.UOffsetT(o)))
			if zr == nil {
				if zr, err = zip.NewReader(bytes.NewReader(model), int64(len(model))); err != nil {
					return nil, fmt.Errorf("cannot read the model's associated files (metadata names %q): %w", name, err)
				}
			}
			data, err := zipFile(zr, name)
			if err != nil {
				return nil, err
			}
			files[typ] = metadataFile{name: name, data: data}
		}
		meta.labels = append(meta.labels, files)
	}
	return meta, nil
}

// metadataBuffer returns the bytes of the model's TFLITE_METADATA buffer, nil without.
func metadataBuffer(model []byte) ([]byte, error) {
	if len(model) < 8 || string(model[4:8]) != "TFL3" {
		return nil, fmt.Errorf("cannot read the model's metadata: not a TFLite FlatBuffer")
	}
	m := flatbuffers.Table{Bytes: model, Pos: flatbuffers.GetUOffsetT(model)}
	for _, md := range tables(m, 16) { // Model.metadata
		o := md.Offset(4)
		if o == 0 || string(md.ByteVector(md.Pos+flatbuffers.UOffsetT(o))) != metadataName {
			continue
		}
		idx := uint32(0)
		if o := md.Offset(6); o != 0 {
			idx = md.GetUint32(md.Pos + flatbuffers.UOffsetT(o))
		}
		bufs := tables(m, 12) // Model.buffers
		if int(idx) >= len(bufs) {
			return nil, fmt.Errorf("cannot read the model's metadata: buffer %d of %d", idx, len(bufs))
		}
		b := bufs[idx]
		if o := b.Offset(4); o != 0 { // Buffer.data
			return b.ByteVector(b.Pos + flatbuffers.UOffsetT(o)), nil
		}
		var off, size uint64 // Buffer.offset, Buffer.size: data outside the FlatBuffer
		if o := b.Offset(6); o != 0 {
			off = b.GetUint64(b.Pos + flatbuffers.UOffsetT(o))
		}
		if o := b.Offset(8); o != 0 {
			size = b.GetUint64(b.Pos + flatbuffers.UOffsetT(o))
		}
		if off <= 1 || off > uint64(len(model)) || size > uint64(len(model))-off {
			return nil, fmt.Errorf("cannot read the model's metadata: buffer %d has no data", idx)
		}
		return model[off : off+size], nil
	}
	return nil, nil
}

// tables returns the tables of the vector of tables in field vo of t.
func tables(t flatbuffers.Table, vo flatbuffers.VOffsetT) []flatbuffers.Table {
	o := flatbuffers.UOffsetT(t.Offset(vo))
	if o == 0 {
		return nil
	}
	vec, n := t.Vector(o), t.VectorLen(o)
	checkVector(t, vec, n, 4)
	out := make([]flatbuffers.Table, n)
	for i := range n {
		out[i] = flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(vec + flatbuffers.UOffsetT(i)*4)}
	}
	return out
}

// checkVector panics (readMetadata recovers) when a vector of n elements of size bytes
// at vec does not fit the buffer: a damaged length must not allocate.
func checkVector(t flatbuffers.Table, vec flatbuffers.UOffsetT, n, size int) {
	if n < 0 || int(vec) > len(t.Bytes) || n > (len(t.Bytes)-int(vec))/size {
		panic("flatbuffer vector out of range")
	}
}

// floats returns the float vector in field vo of t, nil without.
func floats(t flatbuffers.Table, vo flatbuffers.VOffsetT) []float32 {
	o := flatbuffers.UOffsetT(t.Offset(vo))
	if o == 0 {
		return nil
	}
	vec, n := t.Vector(o), t.VectorLen(o)
	checkVector(t, vec, n, 4)
	out := make([]float32, n)
	for i := range n {
		out[i] = t.GetFloat32(vec + flatbuffers.UOffsetT(i)*4)
	}
	return out
}

// zipFile reads one member of the model's zip, bounded.
func zipFile(zr *zip.Reader, name string) ([]byte, error) {
	for _, f := range zr.File {
		if f.Name != name {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("cannot read the model's associated file %q: %w", name, err)
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, maxLabelsFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("cannot read the model's associated file %q: %w", name, err)
		}
		if len(data) > maxLabelsFileSize {
			return nil, fmt.Errorf("the model's associated file %q is over %d bytes", name, maxLabelsFileSize)
		}
		return data, nil
	}
	return nil, fmt.Errorf("the model's metadata names associated file %q, which its zip does not hold", name)
}

// normalizationHint is the metadata's input normalization as an inputHint (mean_std,
// one value propagated to the three channels); nil without one or when it cannot be used
// (a std of 0, a count other than 1 or 3, non-finite values).
func (m *modelMetadata) normalizationHint() *inputHint {
	if m == nil || m.mean == nil || m.std == nil {
		return nil
	}
	var mean, std [3]float32
	for c := range 3 {
		switch {
		case len(m.mean) == 1 && len(m.std) == 1:
			mean[c], std[c] = m.mean[0], m.std[0]
		case len(m.mean) == 3 && len(m.std) == 3:
			mean[c], std[c] = m.mean[c], m.std[c]
		default:
			return nil
		}
		if !finite(mean[c]) || !finite(std[c]) || std[c] == 0 {
			return nil
		}
	}
	return &inputHint{normalize: NormalizeMeanStd, mean: mean, std: std, source: "model metadata"}
}
