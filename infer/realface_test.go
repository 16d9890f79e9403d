package infer

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/inferq/inferq/infer/testmodels"
)

// Photos with faces (and without) from the TensorFlow module.
const (
	photoSingleFace = "tensorflow/lite/experimental/acceleration/mini_benchmark/data/single_face_320_320_3.jpeg"
	photoChair      = "tensorflow/lite/experimental/acceleration/mini_benchmark/data/chair_224_224_3.jpeg"
)

// faceTruth is where a face is in a photo, measured once by eye on the picture with a
// pixel grid drawn over it (before any detector ran): the face from brow line to chin and
// cheek to cheek, and the centres of the eyes (the subject's right eye is on the left of
// the picture) and of the mouth.
type faceTruth struct {
	box                Box
	rightEye, leftEye  Point
	mouth              Point
	eyeTol, boxMinIoU  float32
	photo, description string
}

var faceTruths = []faceTruth{
	{photo: photoGraceHopper, description: "Grace Hopper, 517×606",
		box: Box{165, 135, 365, 335}, rightEye: Point{228, 200}, leftEye: Point{315, 197}, mouth: Point{262, 287},
		eyeTol: 25, boxMinIoU: 0.7},
	{photo: photoSingleFace, description: "a face in sunglasses, 320×320",
		box: Box{90, 75, 230, 240}, rightEye: Point{125, 130}, leftEye: Point{200, 130}, mouth: Point{163, 195},
		eyeTol: 20, boxMinIoU: 0.7},
}

func boxIoU(a, b Box) float32 {
	return iou([4]float32{a.XMin, a.YMin, a.XMax, a.YMax}, [4]float32{b.XMin, b.YMin, b.XMax, b.YMax})
}

func dist(a, b Point) float32 {
	return float32(math.Hypot(float64(a.X-b.X), float64(a.Y-b.Y)))
}

// TestRealFaceDetectors runs MediaPipe's BlazeFace detectors (fetched from npm; anchor
// heads without a post-processing op, decoded here with MediaPipe's anchors) on real
// photos: one face where a person measured it (box overlap and eye/mouth keypoints within
// a tolerance), none on photos without faces, and the three networks (short range, full
// range, full range sparse: different anchors and sizes) agreeing with each other. The
// detector, its anchors and the [-1, 1] input are chosen from the model's shapes alone.
func TestRealFaceDetectors(t *testing.T) {
	rt := needRuntime(t)
	face := testmodels.FetchFace(t)
	models := []struct {
		path, preset string
		noFaces      []string
	}{
		// The short-range model sees a face in a donut at 0.56 (threshold 0.5): no
		// negative claimed there; elsewhere the best non-face scores 0.33 at most.
		{face.ShortRange, AnchorsMediaPipeFaceShort, []string{photoSurfers, photoStreet, photoChair}},
		{face.FullRange, AnchorsMediaPipeFaceFull, []string{photoSurfers, photoStreet, photoChair, photoFood}},
		{face.FullRangeSparse, AnchorsMediaPipeFaceFull, []string{photoSurfers, photoStreet, photoChair, photoFood}},
	}
	found := map[string][]Detection{} // photo → each model's face
	for _, m := range models {
		eng, err := OpenTFLite(context.Background(), rt, ModelConfig{Path: m.path, Kind: KindDetection, Threads: 2}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		info := eng.Info()
		if !strings.HasPrefix(info.Detector, "ssd_anchors "+m.preset+" (") || !strings.Contains(info.Detector, "; auto) (auto), 6 keypoints, weighted NMS, iou 0.3") {
			t.Errorf("%s: detector %q", m.path, info.Detector)
		}
		if want := "normalize -1_1 (the " + m.preset + " detector's input range; auto)"; info.InputConvention != want {
			t.Errorf("%s: input convention %q, want %q", m.path, info.InputConvention, want)
		}
		for _, truth := range faceTruths {
			r, err := eng.Run(context.Background(), readPhoto(t, truth.photo))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Detections) != 1 {
				t.Errorf("%s on %s: %d faces, want 1: %+v", m.preset, truth.description, len(r.Detections), r.Detections)
				continue
			}
			d := r.Detections[0]
			t.Logf("%s on %s: %.3f %+v keypoints %v", m.path[strings.LastIndex(m.path, "/")+1:], truth.description, d.Score, d.Box, d.Keypoints)
			if d.Label != "face" || d.Class != 0 || len(d.Keypoints) != 6 {
				t.Errorf("%s on %s: %+v, want a \"face\" with 6 keypoints", m.preset, truth.description, d)
				continue
			}
			if got := boxIoU(d.Box, truth.box); got < truth.boxMinIoU {
				t.Errorf("%s on %s: box %+v overlaps the face %+v by %.2f, want >= %.2f", m.preset, truth.description, d.Box, truth.box, got, truth.boxMinIoU)
			}
			for _, kp := range []struct {
				name      string
				got, want Point
			}{{"right eye", d.Keypoints[0], truth.rightEye}, {"left eye", d.Keypoints[1], truth.leftEye}, {"mouth", d.Keypoints[3], truth.mouth}} {
				if dd := dist(kp.got, kp.want); dd > truth.eyeTol {
					t.Errorf("%s on %s: %s at %+v, %.0f px from %+v", m.preset, truth.description, kp.name, kp.got, dd, kp.want)
				}
			}
			found[truth.photo] = append(found[truth.photo], d)
		}
		for _, photo := range m.noFaces {
			r, err := eng.Run(context.Background(), readPhoto(t, photo))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Detections) != 0 {
				t.Errorf("%s on %s: faces %+v, want none", m.preset, photo, r.Detections)
			}
		}
		eng.Close()
	}
	for photo, dets := range found {
		for i := range dets {
			for j := range i {
				if got := boxIoU(dets[i].Box, dets[j].Box); got < 0.75 {
					t.Errorf("%s: models %d and %d disagree: %+v and %+v (IoU %.2f)", photo, j, i, dets[j].Box, dets[i].Box, got)
				}
			}
		}
	}
}

// TestRealFaceSupervised: the face detector in the supervised engine child gives what it
// gives in process, keypoints included, and its model info says the detector.
func TestRealFaceSupervised(t *testing.T) {
	face := testmodels.FetchFace(t)
	want, got, inProc, child := supervisedAndInProcess(t, ModelConfig{Path: face.ShortRange, Kind: KindDetection}, photoGraceHopper)
	if child.Detector != inProc.Detector {
		t.Errorf("supervisor's detector %q, in process %q", child.Detector, inProc.Detector)
	}
	if len(want.Detections) != 1 || !reflect.DeepEqual(got.Detections, want.Detections) {
		t.Fatalf("supervised %+v, in process %+v", got.Detections, want.Detections)
	}
}
