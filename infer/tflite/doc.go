// Package tflite is a thin binding to the TensorFlow Lite C API, loaded at run time with
// dlopen (github.com/ebitengine/purego), so programs that import it build and start on a
// machine without the library; [Open] says where it looked and what to install.
//
// Guarantees:
//   - Nothing is loaded until [Open] is called; a missing library or a missing symbol is an
//     error wrapping [ErrLibraryNotFound] or [ErrSymbol], never a crash.
//   - A [Model] owns a private copy of the FlatBuffer it was created from; TFLite verifies
//     the buffer before use, so malformed bytes give [ErrBadModel].
//   - An [Interpreter] is not safe for concurrent use, except [Interpreter.Cancel], which
//     may be called from any goroutine while [Interpreter.Invoke] runs (cancellation is
//     enabled on every interpreter this package creates).
//   - An external delegate that cannot be loaded or cannot be applied is reported through
//     [Interpreter.DelegateError] and the interpreter runs on the CPU instead.
//   - Tensor data returned by [Tensor.Bytes] aliases TFLite's memory and is valid until the
//     next Invoke or Close of its interpreter.
//
// This package does not import the rest of inferq.
package tflite
