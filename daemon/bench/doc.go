// Package bench measures what limits inferq's throughput and latency on the machine it
// runs on. It is its own package so that the daemon does not link the test-model
// generator (infer/tflite/tflitegen) that the benchmark uses when no model is given.
//
// [Run] interleaves many short rounds of four measurements and reports the median of
// each with its spread (quartiles and extremes), so one noisy moment does not decide a
// figure:
//
//   - invoke only: the model's invoke alone, timed by the engine child around the
//     runtime's invoke call (infer.Timings.InvokeMS of the results of the sequential
//     rounds). No pipeline can run faster than this: it is the limit.
//   - decode + preprocess: the child's JPEG decode and tensor preparation times of the
//     same runs.
//   - sequential: decode + invoke back to back through infer.Supervisor, wall time per
//     round (child round trip and post-processing included).
//   - daemon: a real daemon.Daemon opened in this process (spool and MQTT off), measured
//     black-box through its control socket: its worker is paused, N images are enqueued
//     durably, the worker is resumed, and the rate is N over the time from the first
//     "started" event to the N-th "done" event on the Watch stream (each done event is
//     sent after the job's ack and its result were committed). Each round checks that
//     exactly N jobs were done, none retried or dead-lettered.
//
// The headline is the ratio daemon / invoke only (Result.Headline).
//
// [Latency] runs the real inferq binary (`inferq run`) against an MQTT broker (a
// Mosquitto it starts, or one given), drops images into its spool by rename and
// publishes images on its ingest topic at a fixed rate, and measures the time from the
// rename (or the PUBLISH) to the result's arrival at a subscriber, with the part of it
// that is not the engine's own work (the result's timings).
//
// Rounds use their own temporary directories and leave nothing behind; every goroutine
// and child process a measurement starts is stopped before it returns.
package bench
