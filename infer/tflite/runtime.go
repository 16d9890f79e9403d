package tflite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// ErrNoRuntime: a runtime directory does not hold a usable closure.
var ErrNoRuntime = errors.New("no tensorflow lite runtime closure")

// Runtime is a TFLite closure unpacked by packaging/fetch-tflite-runtime.sh: a library
// plus its own C library and dynamic loader. A program uses it by running under the
// loader: Loader --library-path LibDir program args...
type Runtime struct {
	Dir     string // the closure's root
	Loader  string // its dynamic loader (ld-linux)
	LibDir  string // where its libraries are
	Library string // the TFLite C library inside it
}

// FindRuntime checks dir for a closure made by fetch-tflite-runtime.sh.
func FindRuntime(dir string) (Runtime, error) {
	if dir == "" {
		return Runtime{}, fmt.Errorf("%w: runtime dir is empty", ErrNoRuntime)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Runtime{}, fmt.Errorf("cannot resolve runtime dir %q: %w", dir, err)
	}
	var loader, triplet string
	switch runtime.GOARCH {
	case "amd64":
		loader, triplet = "usr/lib64/ld-linux-x86-64.so.2", "x86_64-linux-gnu"
	case "arm64":
		loader, triplet = "usr/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu"
	default:
		return Runtime{}, fmt.Errorf("%w: architecture %s is not supported", ErrNoRuntime, runtime.GOARCH)
	}
	r := Runtime{
		Dir:     abs,
		Loader:  filepath.Join(abs, loader),
		LibDir:  filepath.Join(abs, "usr/lib", triplet),
		Library: filepath.Join(abs, "usr/lib", triplet, "libtensorflow-lite.so.2.14.1"),
	}
	for _, p := range []string{r.Loader, r.Library} {
		if _, err := os.Stat(p); err != nil {
			return Runtime{}, fmt.Errorf("%w in %s: %s is missing (run packaging/fetch-tflite-runtime.sh %s)", ErrNoRuntime, abs, p, abs)
		}
	}
	return r, nil
}

// Command prefixes argv with the closure's loader so the program runs against the
// closure's C library.
func (r Runtime) Command(argv ...string) []string {
	return append([]string{r.Loader, "--library-path", r.LibDir}, argv...)
}

// NPMLibraryName is the TFLite C library's file name in an npm runtime directory.
const NPMLibraryName = "libtensorflowlite_c.so"

// FindNPMLibrary returns this architecture's TFLite C library in dir, a directory made by
// packaging/fetch-tflite-npm.sh (Google's TFLite 2.9.0 C library from the npm package
// tfjs-tflite-node: dir/linux_amd64/ and dir/linux_arm64/libtensorflowlite_c.so). It
// needs only glibc 2.29 or later, so it loads without a closure's loader on Debian 12.
func FindNPMLibrary(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("%w: npm runtime dir is empty", ErrNoRuntime)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("cannot resolve npm runtime dir %q: %w", dir, err)
	}
	lib := filepath.Join(abs, "linux_"+runtime.GOARCH, NPMLibraryName)
	if _, err := os.Stat(lib); err != nil {
		return "", fmt.Errorf("%w in %s: %s is missing (run packaging/fetch-tflite-npm.sh %s)", ErrNoRuntime, abs, lib, abs)
	}
	return lib, nil
}
