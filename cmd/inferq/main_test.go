package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/infer/testmodels"
)

func TestRunCommandLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("model:\n  path: /m.tflite\n  threads: 0\nqueue:\n  max_jobs: -3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantUsage bool
		wantErr   string
		wantOut   string
	}{
		{"no command", nil, true, "no command given", ""},
		{"unknown", []string{"frobnicate"}, true, `unknown command "frobnicate"`, ""},
		{"version", []string{"version"}, false, "", "inferq dev"},
		{"help", []string{"help"}, false, "", "usage: inferq"},
		{"run bad flag", []string{"run", "--nope"}, true, "flag provided but not defined", ""},
		{"run missing config", []string{"run", "--config", "/nonexistent/inferq.yaml"}, false, "cannot read config", ""},
		{"run invalid config", []string{"run", "--config", bad}, false, "queue.max_jobs = -3", ""},
		{"config check names fields", []string{"config", "check", "--config", bad}, false, "model.threads = 0", ""},
		{"config bad op", []string{"config", "frob"}, true, `config "frob"`, ""},
		{"dead bad op", []string{"dead", "resurrect", "--socket", "/nonexistent.sock"}, true, `dead "resurrect"`, ""},
		{"status without daemon", []string{"status", "--socket", filepath.Join(t.TempDir(), "none.sock")}, false, "cannot reach inferq (is it running?)", ""},
		{"engine-child bad engine", []string{"engine-child", "--engine", "onnx"}, true, `--engine "onnx"`, ""},
		{"classify without model", []string{"classify", "x.jpg"}, true, "classify --model FILE", ""},
		{"classify without images", []string{"classify", "--model", "m.tflite"}, true, "classify --model FILE", ""},
		{"classify missing model", []string{"classify", "--model", "/nonexistent.tflite", "x.jpg"}, false, "nonexistent.tflite", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errOut)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("run(%q) = %v", tt.args, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			if got := errors.Is(err, errUsage); got != tt.wantUsage {
				t.Errorf("run(%q): usage error = %v, want %v (exit code 2 vs 1)", tt.args, got, tt.wantUsage)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("run(%q) printed %q, want %q", tt.args, out.String(), tt.wantOut)
			}
		})
	}
}

// `inferq config defaults` prints YAML that loads back to exactly the defaults.
func TestConfigDefaultsRoundTrip(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "defaults"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "defaults.yaml")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := daemon.LoadConfig(p)
	if err != nil {
		t.Fatalf("printed defaults do not load: %v\n%s", err, out.String())
	}
	// Compared as YAML: an empty list and a missing one are the same configuration.
	gotY, _ := yaml.Marshal(got)
	wantY, _ := yaml.Marshal(daemon.DefaultConfig())
	if !bytes.Equal(gotY, wantY) {
		t.Errorf("round trip differs:\n got %s\nwant %s", gotY, wantY)
	}
}

func TestByPriority(t *testing.T) {
	tests := []struct {
		in   map[string]int
		want string
	}{
		{nil, ""},
		{map[string]int{"0": 10}, " (p0:10)"},
		{map[string]int{"0": 10, "5": 2, "9": 1}, " (p9:1 p5:2 p0:10)"},
	}
	for _, tt := range tests {
		if got := byPriority(tt.in); got != tt.want {
			t.Errorf("byPriority(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
		pos  string
		cfg  string
		err  error
	}{
		{[]string{"X", "--config", "c.yaml"}, 1, "X", "c.yaml", nil},
		{[]string{"--config", "c.yaml", "X"}, 1, "X", "c.yaml", nil},
		{[]string{"purge", "X", "--config", "c.yaml", "Y"}, -1, "purge X Y", "c.yaml", nil},
		{[]string{"--", "--config"}, 1, "--config", "", nil},
		{[]string{"-h"}, 0, "", "", errHelpShown},
		{[]string{"X", "Y"}, 1, "", "", errUsage},
		{[]string{"--nope"}, 0, "", "", errUsage},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg := fs.String("config", "", "")
		pos, err := parseFlags(fs, tt.args, tt.want)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%q: err %v, want %v", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(pos, " ") != tt.pos || *cfg != tt.cfg {
			t.Errorf("%q: pos %q config %q err %v; want %q %q", tt.args, pos, *cfg, err, tt.pos, tt.cfg)
		}
	}
}

// TestConfigCheckDemo: configs/demo.yaml checks clean once make demo fetched its model
// (here the same files, as the tests fetch them, laid out where the demo keeps them),
// and names the missing labels file before.
func TestConfigCheckDemo(t *testing.T) {
	demo, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cfg := filepath.Join(root, "configs", "demo.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, demo, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func() (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"config", "check", "--config", cfg}, &out, io.Discard)
		return out.String(), err
	}
	if _, err := check(); err == nil || !strings.Contains(err.Error(), "model.labels") {
		t.Fatalf("before the fetch: %v, want the missing labels file named", err)
	}
	ssd := testmodels.FetchSSD(t)
	dir := filepath.Join(root, ".cache", "demo", "model") // packaging/fetch-demo-model.sh's layout
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{ssd.Model: "ssd_mobilenet_v2_coco.tflite", ssd.Labels: "coco_labels.txt"} {
		if err := os.Symlink(src, filepath.Join(dir, dst)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := check(); err != nil || !strings.Contains(out, "demo.yaml: ok") || strings.Contains(out, "warning") {
		t.Fatalf("after the fetch: %q, %v; want ok without warnings", out, err)
	}
}
