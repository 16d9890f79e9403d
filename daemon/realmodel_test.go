package daemon

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/infer"
	"github.com/inferq/inferq/infer/testmodels"
	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// Photos of the TensorFlow module the tests drop into the spool.
const (
	photoGraceHopper = "tensorflow/go/testdata/label_image/grace_hopper.jpg"
	photoDogs        = "tensorflow/lite/g3doc/inference_with_metadata/task_library/images/dogs.jpg"
)

// photoThroughDaemon starts the whole daemon (the real TFLite runtime, a real Mosquitto,
// the spool) with the e2e configuration changed by set, drops the photo into the spool,
// and returns the daemon and the photo's result as a subscriber received it.
func photoThroughDaemon(t *testing.T, photo string, set func(*Config)) (*Daemon, ResultMessage) {
	t.Helper()
	rt := requireRuntime(t)
	img, err := os.ReadFile(testmodels.Photo(t, photo))
	if err != nil {
		t.Fatal(err)
	}
	b := mqtttest.Start(t, mqtttest.Options{})
	sub := b.Subscribe(t, "-t", "inferq/e2e/results/#", "-q", "1")
	cfg := e2eConfig(t, b, rt)
	set(&cfg)
	d, _, _ := startDaemon(t, cfg)
	dropFile(t, cfg.Spool.Dir, photo[strings.LastIndex(photo, "/")+1:], img)
	var r ResultMessage
	for _, v := range collectResults(t, sub, 1, 60*time.Second) {
		r = v
	}
	if r.Status != StatusOK || r.Output == nil {
		t.Fatalf("result %+v, want an output", r)
	}
	return d, r
}

// TestRealDetectorThroughDaemon runs a real pretrained detector (SSD MobileNet v2 COCO,
// quantized, fetched from npm) through the whole daemon: a real photo dropped into the
// spool comes out on MQTT as a detection result naming Grace Hopper a person with a box
// around her, labels read from the model's "ID  label" file.
func TestRealDetectorThroughDaemon(t *testing.T) {
	ssd := testmodels.FetchSSD(t)
	d, r := photoThroughDaemon(t, photoGraceHopper, func(c *Config) {
		c.Model.Path, c.Model.Labels, c.Model.Kind, c.Model.ScoreThreshold = ssd.Model, ssd.Labels, "detection", 0.5
	})
	if h := d.Health(); h.Model.LabelsFormat != "id_label" || !strings.HasPrefix(h.Model.Input, "raw pixels 0..255") {
		t.Errorf("health model: labels format %q, input %q; want id_label and raw pixels", h.Model.LabelsFormat, h.Model.Input)
	}
	// With libjpeg-turbo's pixels (as TensorFlow's own decoding gives) the person and
	// her tie score the same (0.789); Go's decoder gave the person 0.839.
	var best infer.Detection
	for _, det := range r.Output.Detections {
		if det.Label == "person" && det.Class == 0 && best.Label == "" {
			best = det
		}
	}
	if len(r.Output.Detections) == 0 || best.Score < 0.75 || best.Score < r.Output.Detections[0].Score {
		t.Fatalf("detections %+v: want a person scoring >= 0.75, as high as any", r.Output.Detections)
	}
	if bx := best.Box; bx.XMin > 30 || bx.XMax < 480 || bx.YMin > 60 || bx.YMax < 560 {
		t.Errorf("person box %+v does not cover her (image 517x606)", bx)
	}
	if r.Output.Image.Width != 517 || r.Output.Image.Height != 606 {
		t.Errorf("image %+v, want 517x606", r.Output.Image)
	}
}

// TestDemoDetectsDogs: the model settings of configs/demo.yaml (what `make demo` runs),
// with the SSD it fetches, find the dogs in the demo's dogs photo: a newcomer's first
// drop shows "dog" with a high score.
func TestDemoDetectsDogs(t *testing.T) {
	ssd := testmodels.FetchSSD(t)
	demo, err := LoadConfig("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, r := photoThroughDaemon(t, photoDogs, func(c *Config) {
		c.Model = demo.Model
		c.Model.Path, c.Model.Labels = ssd.Model, ssd.Labels // what packaging/fetch-demo-model.sh fetches
	})
	t.Logf("detections: %+v", r.Output.Detections)
	dogs := 0
	for _, det := range r.Output.Detections {
		if det.Label == "dog" && det.Score >= 0.8 {
			dogs++
		}
	}
	if len(r.Output.Detections) == 0 || r.Output.Detections[0].Label != "dog" || dogs < 2 {
		t.Fatalf("detections %+v: want dogs first, at least two scoring >= 0.8", r.Output.Detections)
	}
}

// TestRealFaceDetectorThroughDaemon: MediaPipe's face detector (an anchor-based head that
// inferq decodes and suppresses itself), told from its output shapes, finds the one face
// of grace_hopper.jpg through the whole daemon, with its keypoints, in the photo's pixels
// (the face measured by eye: x 165..365, y 135..335).
func TestRealFaceDetectorThroughDaemon(t *testing.T) {
	face := testmodels.FetchFace(t)
	d, r := photoThroughDaemon(t, photoGraceHopper, func(c *Config) {
		c.Model.Path, c.Model.Labels, c.Model.Kind = face.ShortRange, "", "detection"
	})
	if h := d.Health(); !strings.HasPrefix(h.Model.Detector, "ssd_anchors mediapipe_face_short") {
		t.Errorf("health model.detector %q, want the anchor head told from the shapes", h.Model.Detector)
	}
	if len(r.Output.Detections) != 1 {
		t.Fatalf("detections %+v, want one face", r.Output.Detections)
	}
	f := r.Output.Detections[0]
	if bx := f.Box; bx.XMin < 140 || bx.XMin > 200 || bx.XMax < 330 || bx.XMax > 390 || bx.YMin < 110 || bx.YMin > 170 || bx.YMax < 310 || bx.YMax > 370 || len(f.Keypoints) != 6 {
		t.Fatalf("face %+v, want a box around x 165..365, y 135..335 with 6 keypoints", f)
	}
}

// TestRuntimeCandidates: with Google's TFLite 2.9.0 (XNNPACK) as a candidate beside the
// closure's 2.14.1, both are measured on the model at load, the faster runs it, and
// health says which, how it was chosen, and both figures; results are right either way.
func TestRuntimeCandidates(t *testing.T) {
	npm := testenv.TFLiteNPM(t)
	d, r := photoThroughDaemon(t, photoDogs, func(c *Config) { c.Runtime.Candidates = []string{npm} })
	tf := d.Health().Model.TFLite
	if tf == nil || tf.Choice != "measured" || len(tf.Trials) != 2 {
		t.Fatalf("health model.tflite %+v, want a measured choice between two trials", tf)
	}
	for _, tr := range tf.Trials {
		if tr.Err != "" || tr.Median <= 0 {
			t.Errorf("trial %+v, want figures", tr)
		}
	}
	t.Logf("chosen %s %s (%s); trials %+v", tf.Library, tf.Version, tf.XNNPACK, tf.Trials)
	if len(r.Output.Classes) == 0 {
		t.Fatalf("result %+v, want classes", r.Output)
	}
}
