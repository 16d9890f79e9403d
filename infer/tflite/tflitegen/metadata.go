package tflitegen

import (
	"archive/zip"
	"bytes"
	"sort"

	flatbuffers "github.com/google/flatbuffers/go"
)

// Associated file types (metadata schema AssociatedFileType).
const (
	TensorAxisLabels  int8 = 2 // labels of an output's classes axis (classifiers)
	TensorValueLabels int8 = 3 // labels of an output's values (detectors' class ids)
)

// ModelMetadata is the part of TFLite Model Metadata (tflite-support's
// metadata_schema.fbs, file identifier "M001") that image models made by TFLite Model
// Maker carry: the input's normalization and the labels file of an output, which lives
// in a zip appended to the model (AppendZip).
type ModelMetadata struct {
	Name string
	// Mean and Std are input 0's NormalizationOptions (1 value or one per channel);
	// nil: no normalization unit.
	Mean, Std []float32
	// Outputs is how many output tensors the metadata describes; LabelsOutput's gets
	// the associated file LabelsFile of type LabelsType.
	Outputs      int
	LabelsOutput int
	LabelsFile   string
	LabelsType   int8
}

// Bytes encodes the metadata FlatBuffer.
func (m ModelMetadata) Bytes() []byte {
	b := flatbuffers.NewBuilder(1024)
	floats := func(v []float32) flatbuffers.UOffsetT {
		b.StartVector(4, len(v), 4)
		for i := len(v) - 1; i >= 0; i-- {
			b.PrependFloat32(v[i])
		}
		return b.EndVector(len(v))
	}
	// Input 0: a NormalizationOptions process unit.
	var units flatbuffers.UOffsetT
	if m.Mean != nil {
		mean, std := floats(m.Mean), floats(m.Std)
		b.StartObject(2) // NormalizationOptions
		b.PrependUOffsetTSlot(0, mean, 0)
		b.PrependUOffsetTSlot(1, std, 0)
		opts := b.EndObject()
		b.StartObject(2)           // ProcessUnit: options_type, options
		b.PrependByteSlot(0, 1, 0) // ProcessUnitOptions.NormalizationOptions
		b.PrependUOffsetTSlot(1, opts, 0)
		unit := b.EndObject()
		units = offsetVector(b, []flatbuffers.UOffsetT{unit})
	}
	inName := b.CreateString("image")
	b.StartObject(7) // TensorMetadata
	b.PrependUOffsetTSlot(0, inName, 0)
	if units != 0 {
		b.PrependUOffsetTSlot(4, units, 0)
	}
	input := b.EndObject()
	outs := make([]flatbuffers.UOffsetT, m.Outputs)
	for i := range outs {
		var files flatbuffers.UOffsetT
		if i == m.LabelsOutput && m.LabelsFile != "" {
			fname := b.CreateString(m.LabelsFile)
			desc := b.CreateString("Labels for objects that the model can recognize.")
			b.StartObject(4) // AssociatedFile
			b.PrependUOffsetTSlot(0, fname, 0)
			b.PrependUOffsetTSlot(1, desc, 0)
			b.PrependInt8Slot(2, m.LabelsType, 0)
			files = offsetVector(b, []flatbuffers.UOffsetT{b.EndObject()})
		}
		name := b.CreateString("output")
		b.StartObject(7)
		b.PrependUOffsetTSlot(0, name, 0)
		if files != 0 {
			b.PrependUOffsetTSlot(6, files, 0)
		}
		outs[i] = b.EndObject()
	}
	inv := offsetVector(b, []flatbuffers.UOffsetT{input})
	outv := offsetVector(b, outs)
	b.StartObject(7) // SubGraphMetadata
	b.PrependUOffsetTSlot(2, inv, 0)
	b.PrependUOffsetTSlot(3, outv, 0)
	sg := b.EndObject()
	sgv := offsetVector(b, []flatbuffers.UOffsetT{sg})
	name := b.CreateString(m.Name)
	version := b.CreateString("1.0.0")
	b.StartObject(8) // ModelMetadata
	b.PrependUOffsetTSlot(0, name, 0)
	b.PrependUOffsetTSlot(3, sgv, 0)
	b.PrependUOffsetTSlot(7, version, 0) // min_parser_version
	b.FinishWithFileIdentifier(b.EndObject(), []byte("M001"))
	return b.FinishedBytes()
}

// AppendZip appends a zip of files (name → contents, stored in name order) to a model,
// as the metadata populator packs associated files: the model stays a valid FlatBuffer
// and the file a valid zip.
func AppendZip(model []byte, files map[string]string) []byte {
	var buf bytes.Buffer
	buf.Write(model)
	w := zip.NewWriter(&buf)
	w.SetOffset(int64(len(model)))
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := w.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
		if err != nil {
			panic(err) // writes to a bytes.Buffer do not fail
		}
		f.Write([]byte(files[n]))
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
