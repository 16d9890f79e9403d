//go:build linux

package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

// container is a Debian 12 root booted with `systemd-nspawn -b`: systemd 252 as the
// container's PID 1, its own journald, and a private network (loopback only).
//
// The host has no systemd (and no system bus), so the container is neither registered
// with machined (--register=no) nor given a scope unit (--keep-unit): without those two
// flags nspawn stops on the missing bus. Commands run inside through nsenter into every
// namespace of the container's PID 1; systemctl there reaches the container's own
// manager on its private socket (/run/systemd/private), no bus needed.
//
// The root is booted read-only under a tmpfs overlay (--volatile=overlay): a run never
// changes the cached root. share is bound read-only at /mnt/test and the TFLite runtime
// closure at /opt/inferq-tflite.
type container struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *testenv.Buffer // nspawn's own output and the container's console
	leader int             // the container's PID 1, as the host sees it
	nsent  string
	exited chan struct{}
}

const (
	// sharedDir is where the test's files appear inside the container.
	sharedDir = "/mnt/test"
	// runtimeDir is where the TFLite closure appears inside the container.
	runtimeDir = "/opt/inferq-tflite"
	// containerPath is PATH for commands run inside.
	containerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// testRoot returns the cached Debian 12 root, building it the first time
// (packaging/make-test-root.sh, about 20 s and 46 MiB of packages). Gated as testenv.Need.
func testRoot(t *testing.T) string {
	t.Helper()
	testenv.Program(t, "mmdebstrap")
	cmd := exec.Command("../packaging/make-test-root.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("packaging/make-test-root.sh: %w\n%s", err, stderr.String())
	}
	testenv.Need(t, "a Debian 12 root for systemd-nspawn", err)
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Log(s)
	}
	return strings.TrimSpace(string(out))
}

// bootContainer boots root with share and the TFLite closure bound inside, and waits until
// the container's systemd finished booting. The container is powered off when t ends.
func bootContainer(t *testing.T, root, share, tflite string) *container {
	t.Helper()
	nspawn := testenv.Program(t, "systemd-nspawn")
	c := &container{
		t:      t,
		name:   fmt.Sprintf("inferq-live-%d", os.Getpid()),
		out:    &testenv.Buffer{},
		nsent:  testenv.Program(t, "nsenter"),
		exited: make(chan struct{}),
	}
	c.cmd = exec.Command(nspawn, "--quiet", "--directory="+root, "--machine="+c.name,
		"--boot", "--keep-unit", "--register=no", "--private-network",
		"--volatile=overlay", "--console=pipe",
		"--bind-ro="+share+":"+sharedDir, "--bind-ro="+tflite+":"+runtimeDir)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(c.poweroff)

	// nspawn's child becomes the container's PID 1 once it runs systemd.
	deadline := time.Now().Add(30 * time.Second)
	for c.leader == 0 {
		select {
		case <-c.exited:
			t.Fatalf("systemd-nspawn exited while booting (%v):\n%s", c.cmd.ProcessState, c.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container PID 1 after 30 s:\n%s", c.out)
		}
		c.leader = initChild(c.cmd.Process.Pid)
		if c.leader == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// is-system-running --wait needs the manager's private socket, there a moment later.
	var state string
	var err error
	for deadline = time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		state, _, err = c.exec(30*time.Second, "systemctl", "is-system-running", "--wait")
		if state == "running" || state == "degraded" || time.Now().After(deadline) {
			break
		}
	}
	switch state {
	case "running":
	case "degraded":
		failed, _, _ := c.exec(10*time.Second, "systemctl", "--failed", "--no-legend")
		t.Logf("container booted degraded (not inferq's doing): %s", failed)
	default:
		t.Fatalf("container did not boot: is-system-running: %q %v\n%s", state, err, c.out)
	}
	return c
}

// initChild returns the pid of nspawn's child that runs systemd, or 0.
func initChild(nspawn int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "systemd" {
			return pid
		}
	}
	return 0
}

// poweroff asks the container to halt (nspawn turns SIGTERM into a clean shutdown of the
// container's systemd), then kills it if it takes more than 30 s.
func (c *container) poweroff() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.t.Logf("container did not halt in 30 s; killing systemd-nspawn")
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	// nspawn leaves its (empty) mount propagation directory: /run is on disk here.
	_ = os.Remove(filepath.Join("/run/systemd/nspawn/propagate", c.name))
}

// exec runs a command inside the container (every namespace of its PID 1, a clean
// environment) and returns its trimmed stdout, its stderr, and its error.
func (c *container) exec(timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"-t", strconv.Itoa(c.leader), "-a", "/usr/bin/env", "-i",
		"PATH=" + containerPath, "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
		"SYSTEMD_LOG_COLOR=0", "DEBIAN_FRONTEND=noninteractive"}, args...)
	cmd := exec.CommandContext(ctx, c.nsent, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()), err
}

// run is exec that fails the test on an error.
func (c *container) run(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := c.exec(2*time.Minute, args...)
	if err != nil {
		t.Fatalf("in the container: %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// sh runs a shell script inside the container, failing the test on an error.
func (c *container) sh(t *testing.T, script string) string {
	t.Helper()
	return c.run(t, "sh", "-ec", script)
}

// show returns properties of inferq.service (systemctl show -p).
func (c *container) show(t *testing.T, props ...string) map[string]string {
	t.Helper()
	args := []string{"systemctl", "show", "inferq.service"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	m := map[string]string{}
	for _, line := range strings.Split(c.run(t, args...), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// waitFor polls cond every 200 ms until it returns "" (done) or timeout passes, then
// fails the test with the last reason cond gave.
func (c *container) waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// entry is one journal entry (journalctl -o json); fields that journald stores as
// bytes (non-UTF-8) are left out.
type entry map[string]string

// journal returns the entries after cursor (all with cursor "") that match the
// journalctl arguments, oldest first.
func (c *container) journal(t *testing.T, cursor string, args ...string) []entry {
	t.Helper()
	argv := []string{"journalctl", "--no-pager", "-o", "json"}
	if cursor != "" {
		argv = append(argv, "--after-cursor="+cursor)
	}
	out := c.run(t, append(argv, args...)...)
	var entries []entry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("journalctl -o json: %v: %s", err, sc.Text())
		}
		e := entry{}
		for k, v := range raw {
			var s string
			if json.Unmarshal(v, &s) == nil {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// cursor returns the journal's current end, for journal(cursor, ...) to read what comes
// after it.
func (c *container) cursor(t *testing.T) string {
	t.Helper()
	// Everything logged so far is in the journal files before journalctl reads them.
	c.run(t, "journalctl", "--sync")
	e := c.journal(t, "", "-n", "1")
	if len(e) == 0 {
		return ""
	}
	return e[len(e)-1]["__CURSOR"]
}

// health is the part of `inferq status --json` the test reads.
type health struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Model   struct {
		SHA256      string `json:"sha256"`
		ReloadError string `json:"reload_error"`
	} `json:"model"`
	Queue struct {
		Depth  int `json:"depth"`
		Leased int `json:"leased"`
		Dead   int `json:"dead"`
	} `json:"queue"`
	Jobs struct {
		Done int `json:"done"`
		Dead int `json:"dead"`
	} `json:"jobs"`
	Spool *struct {
		Taken int `json:"taken"`
	} `json:"spool"`
}

// health asks the running daemon (inferq status --json over the control socket).
func (c *container) health() (health, error) {
	var h health
	out, stderr, err := c.exec(30*time.Second, "inferq", "status", "--json")
	if err != nil {
		return h, fmt.Errorf("inferq status --json: %w: %s", err, stderr)
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		return h, fmt.Errorf("inferq status --json: %w: %s", err, out)
	}
	return h, nil
}

// mustHealth is health that fails the test on an error.
func (c *container) mustHealth(t *testing.T) health {
	t.Helper()
	h, err := c.health()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// processes returns the container's processes whose command name is comm.
func (c *container) processes(t *testing.T, comm string) []string {
	t.Helper()
	out := c.sh(t, `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = "`+comm+`" ] && echo "${p#/proc/}"; done; true`)
	return strings.Fields(out)
}

// exitCode returns err's exit status, 0 for nil, -1 for a failure to run.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
