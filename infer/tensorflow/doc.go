// Package tensorflow runs TensorFlow SavedModels through the TensorFlow C library
// (github.com/wamuir/graft/tensorflow, the official Go bindings with their generated
// code) behind the same contract as the TFLite engine: Open returns an infer.Engine, and
// infer.ServeChildWith(ctx, in, out, logger, tensorflow.Open) hosts it in the supervised
// child.
//
// It is compiled only with the build tag "tensorflow" (it needs libtensorflow and its C
// headers); without the tag, Open returns ErrNotBuilt.
//
// Guarantees and limits:
//   - The model is the SavedModel directory ModelConfig.Path, tag "serve", signature
//     "serving_default" with exactly one image input [1,H,W,C] (a -1 batch is taken as
//     1; H and W must be fixed). Outputs are ordered by signature key, which for the
//     TensorFlow Object Detection API's keys (detection_boxes, detection_classes,
//     detection_scores, num_detections) is the order the detection kind wants.
//   - ModelInfo.SHA256 covers saved_model.pb and every file under variables/, in name
//     order.
//   - The TensorFlow C API cannot cancel a running Session.Run: a run past its deadline is
//     ended by the supervisor killing the child (infer.Supervisor's kill grace).
//   - Not safe for concurrent use.
package tensorflow
