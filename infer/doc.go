// Package infer turns an image into a model's answer: it defines the [Engine] contract
// the daemon runs jobs through, decodes and pre-processes images (JPEG, PNG, GIF),
// post-processes outputs (classification, SSD-style detection, raw tensors) into a
// JSON-ready [Result], and hosts the engine in a supervised child process ([Supervisor],
// [ServeChild]) so a native crash, a hang or a leak in the runtime costs one job attempt
// and a child restart, never the daemon.
//
// Guarantees:
//   - Engines are not safe for concurrent use: one Run at a time. [Supervisor.Info] and
//     [Supervisor.Stats] may be called from any goroutine.
//   - Every error from Run says whether retrying could help: errors.Is(err, ErrPermanent)
//     (bad image, image too large, wrong shape, bad model) means never retry; anything
//     else (timeout, crashed child, runtime missing) is transient. [IsPermanent] tests it.
//   - Images are checked before decoding: the header's dimensions are compared with
//     ModelConfig.MaxPixels, so a decompression bomb is refused without allocating it.
//   - A run past its context deadline is cancelled inside TFLite at the deadline
//     (TfLiteInterpreterCancel) and, if the child does not answer within the kill grace,
//     the child is killed and restarted; either way Run returns a transient error.
//   - With SupervisorConfig.MaxChildRSS set, a child whose resident memory grows past it
//     (a leak) is replaced between jobs; the job that ran is not affected.
//   - Reload loads and warms up the new model in a new child before swapping; if that
//     fails the old model keeps serving and Reload returns the error.
//   - The daemon process never loads the TFLite library; only the child does (on
//     Debian 12 under the runtime closure's own dynamic loader).
//   - Labels files are read one label per line or as "ID label" lines (Coral/COCO, ids
//     with gaps mapped exactly), detected and said in [ModelInfo].LabelsFormat. A labels
//     file that cannot fit a classification output (more classes than labels, or labels
//     past the last class) fails the load with ErrBadConfig naming both numbers.
//   - Without ModelConfig.Normalize, a uint8 input is fed the raw pixels (int8: pixel -
//     128), whose meaning the tensor's own scale and zero point define, and a float input
//     0_1; an explicit Normalize wins. [ModelInfo].InputConvention says which is in use.
//   - A model that TFLite cannot build because of custom ops it lacks fails with an error
//     naming the ops (read from the model's operator codes) and what provides them (the
//     Edge TPU delegate, MediaPipe's op resolver, the Flex delegate).
//   - Every goroutine of an engine child has an owner: killing or stopping the child
//     returns only after its response decoder has ended, and a response nobody waits for
//     any more (one that arrived after the caller gave up) is dropped, not left blocking.
//   - Image bytes are never logged.
package infer
