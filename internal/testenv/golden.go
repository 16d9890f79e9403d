package testenv

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files (testdata/golden) with what the tests produce")

// Golden compares got with the golden file testdata/golden/<name> at the top of the
// repository; `go test -update` rewrites it. Published JSON is pinned this way.
func Golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join(repoRoot(), "testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed (go test -update rewrites it); got:\n%s\nwant:\n%s", path, got, want)
	}
}

// repoRoot is the repository's top directory (this file is internal/testenv/golden.go).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
