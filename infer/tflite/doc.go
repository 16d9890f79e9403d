// Package tflite is a thin binding to the TensorFlow Lite C API, loaded at run time with
// dlopen (github.com/ebitengine/purego), so programs that import it build and start on a
// machine without the library; [Open] says where it looked and what to install.
//
// Guarantees:
//   - Nothing is loaded until [Open] is called; a missing library or a missing required
//     symbol is an error wrapping [ErrLibraryNotFound] or [ErrSymbol], never a crash.
//   - Optional parts are used only where the library has them, and say why not otherwise:
//     the cancellation API ([Library.CancelError]; Google's 2.9.0 lacks it, Debian's
//     2.14.1 has it) and the XNNPACK delegate ([Library.XNNPACKError]; 2.9.0 has it,
//     2.14.1 does not). The XNNPACK options struct is passed only to a version whose
//     layout is known (2.9: 16 bytes); any other version runs without it.
//   - A [Model] owns a private copy of the FlatBuffer it was created from; TFLite verifies
//     the buffer before use, so malformed bytes give [ErrBadModel].
//   - An [Interpreter] is not safe for concurrent use, except [Interpreter.Cancel], which
//     may be called from any goroutine while [Interpreter.Invoke] runs (cancellation is
//     enabled on every interpreter of a library that can cancel; elsewhere Cancel does
//     nothing and the Invoke runs to its end).
//   - The XNNPACK delegate is created explicitly for every interpreter of a library that
//     has it (threads from [Options.Threads]), after any external delegate; when it
//     cannot take the graph the interpreter runs on TFLite's own kernels and
//     [Interpreter.XNNPACKError] says why.
//   - [Choose] loads a model into each of several libraries (they coexist in one process:
//     each is opened RTLD_LOCAL), times the same invokes on each and keeps the one with
//     the lowest median; the others' interpreters and models are freed.
//   - An external delegate that cannot be loaded or cannot be applied is reported through
//     [Interpreter.DelegateError] and the interpreter runs on the CPU instead.
//   - Tensor data returned by [Tensor.Bytes] aliases TFLite's memory and is valid until the
//     next Invoke or Close of its interpreter.
//
// This package does not import the rest of inferq.
package tflite
