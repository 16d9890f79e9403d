package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/daemon"
	"github.com/inferq/inferq/daemon/control"
	"github.com/inferq/inferq/internal/testenv"
)

// TestCommandsAgainstDaemon runs the operator's commands (status, pause, enqueue, jobs,
// job, prioritize, cancel, resume, dead, reload) through run() against the real
// inferq binary serving a real model, the way an operator on the box uses them.
func TestCommandsAgainstDaemon(t *testing.T) {
	rt := testenv.TFLiteRuntime(t)
	goTool := testenv.Program(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "inferq")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model, _ := filepath.Abs("../../testdata/models/demo.tflite")
	labels, _ := filepath.Abs("../../testdata/models/demo.labels")
	sock := filepath.Join(dir, "control.sock")
	cfg := fmt.Sprintf(`node: cli
state_dir: %s/state
control_socket: %s
model: {path: %s, labels: %s, top_k: 2, threads: 1}
runtime: {dir: %s}
spool: {enabled: false}
mqtt: {enabled: false}
`, dir, sock, model, labels, rt)
	cfgPath := filepath.Join(dir, "inferq.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := exec.Command(bin, "run", "--config", cfgPath)
	d.Stdout, d.Stderr = &logs, &logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		_ = d.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	ctx := context.Background()
	// inferq runs the command line in-process; every command is given --config, as an
	// operator on a box with a non-default config would.
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append(args, "--config", cfgPath), &out, &errOut)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("inferq %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	testenv.WaitFor(t, "the daemon to answer with a loaded model", 60*time.Second, func() bool {
		out, err := cli("status", "--json")
		var h daemon.Health
		return err == nil && json.Unmarshal([]byte(out), &h) == nil && h.Model.SHA256 != ""
	})

	// inferq watch --json, from here to the end.
	var watched testenv.Buffer
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- run(wctx, []string{"watch", "--json", "--config", cfgPath}, &watched, io.Discard) }()
	testenv.WaitFor(t, "watch to show the current health", 10*time.Second, func() bool { return watched.String() != "" })

	// Paused worker: jobs stay queued where the operator can see and steer them.
	if out := must("pause", "worker"); !strings.Contains(out, "worker paused") {
		t.Fatalf("pause worker: %q", out)
	}
	imgs, _ := filepath.Abs("../../testdata/images")
	if out := must("enqueue", "--priority", "2", "--id", "red-1", filepath.Join(imgs, "red.jpg")); !strings.Contains(out, "queued as red-1") {
		t.Fatalf("enqueue: %q", out)
	}
	must("enqueue", filepath.Join(imgs, "green.jpg"), "--id", "green-1")
	must("enqueue", filepath.Join(imgs, "blue.jpg"), "--id", "blue-1", "--source", "door")
	if out := must("enqueue", filepath.Join(imgs, "blue.jpg"), "--id", "blue-1"); !strings.Contains(out, "already held as blue-1") {
		t.Fatalf("second enqueue of one id: %q", out)
	}
	var listed []control.Job
	if err := json.Unmarshal([]byte(must("jobs", "--json")), &listed); err != nil || len(listed) != 3 || listed[0].ID != "red-1" {
		t.Fatalf("jobs --json: %+v %v; want 3 with red-1 (priority 2) first", listed, err)
	}
	if out := must("jobs", "--source", "door"); !strings.Contains(out, "blue-1") || strings.Contains(out, "red-1") {
		t.Fatalf("jobs --source door:\n%s", out)
	}
	must("prioritize", "blue-1", "9")
	if out := must("job", "blue-1"); !strings.Contains(out, "priority") || !strings.Contains(out, "9") || !strings.Contains(out, "ready") {
		t.Fatalf("job blue-1 after prioritize:\n%s", out)
	}
	if out := must("cancel", "green-1"); !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %q", out)
	}
	_, err := cli("job", "green-1")
	if !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("job of a cancelled id: %v, want not found (exit 1)", err)
	}
	if _, err := cli("prioritize", "blue-1", "12"); !errors.Is(err, errUsage) {
		t.Fatalf("prioritize 12: %v, want a usage error", err)
	}

	// Resumed: both run; their results stay readable by id.
	must("resume", "worker")
	for _, id := range []string{"blue-1", "red-1"} {
		testenv.WaitFor(t, id+" done", 60*time.Second, func() bool {
			out, err := cli("job", id)
			return err == nil && strings.Contains(out, "done")
		})
	}
	out := must("job", "red-1")
	if !strings.Contains(out, "result") || !strings.Contains(out, "ok, red") {
		t.Fatalf("job red-1 once done:\n%s\nwant its kept result (ok, red first)", out)
	}
	var j control.Job
	if err := json.Unmarshal([]byte(must("job", "blue-1", "--json")), &j); err != nil || j.Result == nil {
		t.Fatalf("job blue-1 --json: %+v %v; want the kept result", j, err)
	}
	// worker.overlap (on by default): red-1 was held while blue-1 ran, and its image was
	// decoded meanwhile in the engine child.
	var red control.Job
	if err := json.Unmarshal([]byte(must("job", "red-1", "--json")), &red); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(red.Result); !strings.Contains(string(b), `"prepared":true`) {
		t.Errorf("red-1's result %s: want timings.prepared (decoded while blue-1 ran)", b)
	}
	if out := must("dead", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("dead list: %q, want the header only", out)
	}
	if _, err := cli("dead", "retry", "nope"); err == nil || !strings.Contains(err.Error(), "not dead jobs") {
		t.Fatalf("dead retry of an unknown id: %v, want an error", err)
	}
	if out := must("reload"); !strings.Contains(out, "reloaded: demo") {
		t.Fatalf("reload: %q", out)
	}
	if out := must("status"); !strings.Contains(out, "2 done") {
		t.Fatalf("status:\n%s", out)
	}

	// The watcher saw the health change (worker paused) and every job's life, in order.
	testenv.WaitFor(t, "watch to show red-1 done", 10*time.Second, func() bool {
		return strings.Contains(watched.String(), `"job_id":"red-1"`) && strings.Contains(watched.String(), `"event":"done","job_id":"red-1"`)
	})
	stopWatch()
	if err := <-watchDone; err != nil {
		t.Fatalf("watch: %v", err)
	}
	var seen []string
	for _, line := range strings.Split(strings.TrimSpace(watched.String()), "\n") {
		var it control.WatchItem
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("watch line %q: %v", line, err)
		}
		switch it.Type {
		case control.WatchHealth:
			var h daemon.Health
			_ = json.Unmarshal(it.Data, &h)
			seen = append(seen, "health "+strings.Join(h.Problems, ";"))
		case control.WatchEvent:
			var ev daemon.EventMessage
			_ = json.Unmarshal(it.Data, &ev)
			if ev.JobID == "red-1" {
				seen = append(seen, ev.Event+" "+ev.JobID)
			}
		}
	}
	got := strings.Join(seen, " | ")
	if !strings.HasPrefix(got, "health ") || !strings.Contains(got, "worker paused") ||
		!strings.Contains(got, "queued red-1 | ") || !strings.Contains(got, "started red-1 | done red-1") {
		t.Fatalf("watched: %s\nwant the health first, a health change naming the paused worker, and red-1 queued, started, done", got)
	}

	// Reload reads the file again. A broken file is refused, naming the field; nothing
	// changes.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(cfg, "top_k: 2", "top_k: 2, kind: bogus", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli("reload"); !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "model.kind") {
		t.Fatalf("reload of a config with a bad model.kind: %v, want refused naming model.kind", err)
	}
	// A changed model section applies with the reload; another changed section is said
	// to need a restart.
	changed := strings.Replace(cfg, "top_k: 2", "top_k: 1", 1) + "health: {interval: 7s}\n"
	if err := os.WriteFile(cfgPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must("reload"); !strings.Contains(out, "reloaded: demo") || !strings.Contains(out, "applies after a restart: health") {
		t.Fatalf("reload after editing model.top_k and health.interval:\n%s", out)
	}
	must("enqueue", filepath.Join(imgs, "green.jpg"), "--id", "green-2")
	testenv.WaitFor(t, "green-2 done", 60*time.Second, func() bool {
		out, err := cli("job", "green-2")
		return err == nil && strings.Contains(out, "done")
	})
	if err := json.Unmarshal([]byte(must("job", "green-2", "--json")), &j); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j.Result)
	var res daemon.ResultMessage
	if err := json.Unmarshal(b, &res); err != nil || res.Output == nil || len(res.Output.Classes) != 1 || res.Output.Classes[0].Label != "green" {
		t.Fatalf("result after reload with top_k 1: %s (%v), want one class, green", b, err)
	}
}
