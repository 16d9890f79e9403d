// Package tflitegen writes small TensorFlow Lite models (.tflite FlatBuffers, schema
// version 3, file identifier "TFL3") for inferq's tests, benchmarks and demo, so the
// project needs no downloaded model.
//
// It encodes the subset of tensorflow/lite/schema/schema.fbs it needs by hand with the
// FlatBuffers builder: buffer 0 is the empty sentinel, buffer data is aligned to 16 bytes
// (the schema's force_align), schema defaults that differ from Go zero values are written
// explicitly (dilation factors 1, softmax beta 1), and operator codes carry both
// deprecated_builtin_code and builtin_code.
//
// Every model comes with its weights as Go values ([ClassifierNet], [DetectorNet]) so
// tests can compute the expected outputs independently in pure Go. Generation is
// deterministic: the same seed gives the same bytes.
package tflitegen
