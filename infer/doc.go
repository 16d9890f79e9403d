// Package infer turns an image into a model's answer: it defines the [Engine] contract
// the daemon runs jobs through, decodes and pre-processes images (JPEG, PNG, GIF),
// post-processes outputs (classification; detection by TFLite_Detection_PostProcess,
// anchor-based SSD heads or YOLO; raw tensors) into a
// JSON-ready [Result], and hosts the engine in a supervised child process ([Supervisor],
// [ServeChild]) so a native crash, a hang or a leak in the runtime costs one job attempt
// and a child restart, never the daemon.
//
// Guarantees:
//   - Engines are not safe for concurrent use: one Run at a time. [Supervisor.Info] and
//     [Supervisor.Stats] may be called from any goroutine, and [Supervisor.Prepare] while
//     a run is in flight: the child decodes and pre-processes that image on another
//     thread, keeps the newest two, and the RunKey for its key only invokes the model
//     (results identical to Run's); a prepared image is used only for its own key, one
//     that failed to decode fails only its own run, and a child restart drops them.
//   - Every error from Run says whether retrying could help: errors.Is(err, ErrPermanent)
//     (bad image, image too large, wrong shape, bad model) means never retry; anything
//     else (timeout, crashed child, runtime missing) is transient. [IsPermanent] tests it.
//   - Images are checked before decoding: the header's dimensions are compared with
//     ModelConfig.MaxPixels, so a decompression bomb is refused without allocating it
//     (by whichever decoder reads the header: libjpeg-turbo's or Go's).
//   - JPEGs are decoded in the engine process by libjpeg-turbo (libturbojpeg.so.0,
//     Debian's libturbojpeg0) loaded at run time, looked for in the TFLite runtime
//     closure's library directory first, then on the dynamic loader's search path; when
//     it cannot be loaded, image/jpeg decodes them. [ModelInfo].Decoder says which runs
//     (with the library's version and file). PNG and GIF go through Go's decoders.
//   - libjpeg-turbo decodes at the smallest DCT scale m/8 (never above 1) whose output
//     still covers the model input in both dimensions of the upright picture, with its
//     accurate IDCT and fancy upsampling: the pixels are exactly what `djpeg -scale m/8`
//     gives. The bilinear resize to the input follows.
//   - A JPEG libjpeg-turbo does not decode cleanly (CMYK or YCCK, any warning or error
//     on corrupt or truncated data, an excessive number of progressive scans) is handed
//     to image/jpeg, whose verdict and pixels stand: what image/jpeg refused before is
//     still refused, as a permanent ErrBadImage.
//   - JPEGs are turned upright by their EXIF orientation (APP1 Exif, IFD0 tag 0x0112,
//     all 8 values, either byte order; a missing or unreadable one means upright) with
//     either decoder. [Result].Image's size and detection boxes are in the upright
//     picture's own pixels, whatever DCT scale was decoded.
//   - A run past its context deadline is cancelled inside TFLite at the deadline
//     (TfLiteInterpreterCancel) and, if the child does not answer within the kill grace,
//     the child is killed and restarted; either way Run returns a transient error. A
//     library without the cancellation API (Google's 2.9.0) is accepted: its runs end by
//     the kill, and [ModelInfo].TFLite says cancellation is unavailable.
//   - The TFLite library is the configured one, or, with RuntimeConfig.Candidates, the
//     one with the lowest median of a few timed invokes of the model at load; the
//     XNNPACK delegate runs the model wherever the library has it. [ModelInfo].TFLite
//     says which library, how it was chosen (every candidate's figures), and whether
//     XNNPACK runs it or why not.
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
//   - A detection model's output layout is read at load: TFLite_Detection_PostProcess's
//     four outputs, an anchor-based SSD head (box regressions and scores per anchor, as
//     MediaPipe's BlazeFace; anchors generated as MediaPipe's SsdAnchorsCalculator does,
//     from a preset that ModelConfig.Anchors names or that the input size and anchor
//     count select), YOLOv5's [1,N,5+classes] or YOLOv8's [1,4+classes,N]; or the one
//     ModelConfig.Detector names. A layout that fits none (or not the named one) fails
//     the load with ErrBadConfig naming the output shapes. [ModelInfo].Detector says
//     which decoder runs, why, and its thresholds.
//   - Detections decoded here (anchor heads, YOLO) are suppressed class by class: a box
//     overlapping a better box of its class by more than the IoU threshold is dropped
//     (hard NMS) or merged into it, score-weighted (weighted NMS, MediaPipe's); they come
//     best first (ties: the earlier candidate), at most ModelConfig.MaxDetections. A zero
//     ScoreThreshold, IoUThreshold or NMS means the family's default (MediaPipe faces:
//     their graphs' 0.5 or 0.6 and 0.3, weighted; YOLO: 0.25 and 0.45, hard). A labels
//     file must fit the head's class count (ErrBadConfig otherwise).
//   - Detection boxes and keypoints are in the original image's pixels (the inverse of
//     the pre-processing's resize), ordered (min <= max) and clamped to the image, and
//     finite whatever the model outputs (NaN, Inf and huge values included): candidates
//     with non-finite or empty boxes or scores are dropped. YOLO coordinates may be
//     normalized or in input pixels; each run tells by the candidates' centres.
//   - A model's TFLite Model Metadata (its "TFLITE_METADATA" buffer, as TFLite Model
//     Maker writes it) is read at load: without ModelConfig.Labels, the labels file it
//     attaches to an output (packed in the zip appended to the model) names the classes,
//     checked against the outputs as a configured file is; for a float input without
//     ModelConfig.Normalize, its input normalization (mean, std) is applied. The
//     configuration wins; [ModelInfo].LabelsSource and InputConvention say which was
//     used. Metadata that cannot be read (damaged, a file its zip lacks) is logged and
//     the model runs without it; reading it never panics or allocates past the file.
//   - A float input of an anchor preset without ModelConfig.Normalize (nor metadata)
//     gets the preset's training range (MediaPipe's face detectors: [-1, 1]), said in
//     [ModelInfo].InputConvention; an explicit Normalize wins.
//   - Every goroutine of an engine child has an owner: killing or stopping the child
//     returns only after its response decoder has ended, and a response nobody waits for
//     any more (one that arrived after the caller gave up) is dropped, not left blocking.
//   - Image bytes are never logged.
package infer
