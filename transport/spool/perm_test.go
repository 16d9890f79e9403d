package spool

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
)

const (
	nobodyEnv = "INFERQ_SPOOL_NOBODY_CHILD"
	nobodyID  = 65534
)

// readSink reads each claimed file the way the queue does for a small
// image and returns its error unclassified ("cannot read image file: open
// …: permission denied"), like a sink that knows nothing of IsFileError.
type readSink struct{ mu sync.Mutex }

func (s *readSink) Submit(_ context.Context, it Item) (bool, error) {
	if _, err := os.ReadFile(it.Path); err != nil {
		return false, fmt.Errorf("cannot read image file: %w", err)
	}
	s.mu.Lock()
	fmt.Printf("SUBMITTED %s/%s\n", it.Source, it.Name)
	s.mu.Unlock()
	return false, nil
}

// TestHelperNobodySpool is the child of TestUnreadableFileAsNobody: a
// Watcher run by uid 65534 over the directory in INFERQ_SPOOL_NOBODY_CHILD,
// logging to stderr. Each line "stats" on its stdin prints its Stats; when
// stdin closes it stops and prints them once more. It does nothing in a
// normal test run.
func TestHelperNobodySpool(t *testing.T) {
	root := os.Getenv(nobodyEnv)
	if root == "" {
		return
	}
	cfg := Config{Dir: filepath.Join(root, "spool"), ClaimDir: filepath.Join(root, "claim"), FailedDir: filepath.Join(root, "failed"),
		SettleTime: 20 * time.Millisecond, RescanInterval: 100 * time.Millisecond}
	w, err := New(cfg, &readSink{}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	fmt.Printf("READY uid=%d\n", os.Getuid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		b, _ := json.Marshal(w.Stats())
		fmt.Printf("STATS %s\n", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(w.Stats())
	fmt.Printf("STATS %s\n", b)
	w.Close()
}

// The case, for real: the daemon side is not root and a root-owned
// mode-600 file is dropped into the spool, followed by normal files. The
// unreadable file is claimed, the sink cannot read it, and it goes to
// failed/ with a sidecar saying "permission denied"; every normal file is
// submitted and the spool never pauses. A root-owned mode-600 file in a
// sticky source directory (where the watcher can neither rename nor read
// it) cannot even be moved: it stays in place, counted as unmovable and
// logged once although it is retried every RescanInterval.
func TestUnreadableFileAsNobody(t *testing.T) {
	testenv.Root(t)
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(root, "spool")
	sticky := filepath.Join(spool, "sticky")
	for _, d := range []string{spool, sticky} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The watcher's user owns its directories; root owns the sticky source.
	if err := os.Chown(root, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spool, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	// The test binary may sit in a directory only root can enter.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "spool.test")
	copyFile(t, self, bin)

	cmd := exec.Command(bin, "-test.run=^TestHelperNobodySpool$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), nobodyEnv+"="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended before %q; its log:\n%s", prefix, logs.String())
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %q from the child; its log:\n%s", prefix, logs.String())
			}
		}
	}
	if l := expect("READY"); l != fmt.Sprintf("READY uid=%d", nobodyID) {
		t.Fatalf("child says %q", l)
	}

	// Root drops an unreadable file, then normal ones.
	writeAs := func(path string, mode os.FileMode) { // as a camera does: a hidden name, then a rename
		t.Helper()
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".part")
		if err := os.WriteFile(tmp, []byte("image "+filepath.Base(path)), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, mode); err != nil { // umask
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	writeAs(filepath.Join(spool, "a-secret.jpg"), 0o600)
	writeAs(filepath.Join(sticky, "locked.jpg"), 0o600)
	want := map[string]bool{}
	for i := range 5 {
		name := fmt.Sprintf("b%d.jpg", i)
		writeAs(filepath.Join(spool, name), 0o644)
		want["spool/"+name] = true
	}
	for len(want) > 0 {
		l := expect("SUBMITTED ")
		delete(want, strings.TrimPrefix(l, "SUBMITTED "))
	}

	// The unreadable file is in failed/ with its reason.
	var sc Sidecar
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(root, "failed", "spool", "f-*__a-secret.jpg.json"))
		if len(m) == 1 {
			b, _ := os.ReadFile(m[0])
			if err := json.Unmarshal(b, &sc); err != nil {
				t.Fatal(err)
			}
			if !exists(strings.TrimSuffix(m[0], ".json")) {
				t.Fatalf("a-secret.jpg missing next to its sidecar")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sidecar for a-secret.jpg in failed/; child log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(sc.Reason, "permission denied") || sc.Name != "a-secret.jpg" {
		t.Fatalf("sidecar %+v, want a-secret.jpg with permission denied", sc)
	}
	stats := func() Stats {
		t.Helper()
		if _, err := io.WriteString(stdin, "stats\n"); err != nil {
			t.Fatal(err)
		}
		var st Stats
		if err := json.Unmarshal([]byte(strings.TrimPrefix(expect("STATS "), "STATS ")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	pollStats := func(what string, cond func(Stats) bool) Stats {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if st := stats(); cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; child log:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The locked file cannot be moved: refused once, then retried every
	// RescanInterval (100 ms) quietly while the spool goes on.
	st := pollStats("the locked file refused", func(st Stats) bool { return st.Refused == 2 && st.Unmovable == 1 })
	r0 := st.Rescans
	pollStats("three more rescans", func(st Stats) bool { return st.Rescans >= r0+3 })
	writeAs(filepath.Join(spool, "c.jpg"), 0o644)
	expect("SUBMITTED spool/c.jpg")
	stdin.Close()
	if err := json.Unmarshal([]byte(strings.TrimPrefix(expect("STATS "), "STATS ")), &st); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; its log:\n%s", err, logs.String())
	}
	if st.Taken != 6 || st.Refused != 2 || st.Unmovable != 1 || st.Paused || st.Pending != 0 {
		t.Fatalf("child stats %+v: want 6 taken, 2 refused (1 unmovable), never paused", st)
	}
	if !exists(filepath.Join(sticky, "locked.jpg")) {
		t.Fatalf("locked.jpg was moved, want it left in place")
	}
	out := logs.String()
	refusals, moveErrs := strings.Count(out, `msg="spool file refused"`), strings.Count(out, "cannot move refused file")
	if refusals != 2 || moveErrs != 1 || strings.Contains(out, "spool paused") {
		t.Fatalf("%d refusal lines (want 2: each file once), %d move errors (want 1), paused %v; log:\n%s",
			refusals, moveErrs, strings.Contains(out, "spool paused"), out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `msg="spool file refused"`) && strings.Contains(l, "locked.jpg") && !strings.Contains(l, "operation not permitted") {
			t.Fatalf("locked.jpg refused without its reason (the rename was not permitted): %s", l)
		}
	}
	if !strings.Contains(st.LastError, "locked.jpg") || !strings.Contains(st.LastError, "it stays where it is") {
		t.Fatalf("last error %q: want why locked.jpg stays in place", st.LastError)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
