package packaging

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/inferq/inferq/internal/testenv"
)

// tool returns the path of an external command, gated as testenv.Program.
func tool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Program(t, name)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// target returns what build-deb.sh -g should build for goarch: ./cmd/inferq, or with
// -short or while cmd/inferq does not build, a placeholder program (the test says so).
// Like inferq, the placeholder loads libraries with purego, so it is linked dynamically
// as the real binary is; the package's layout does not depend on the program.
func target(t *testing.T, dir, goarch string) string {
	t.Helper()
	goTool := tool(t, "go")
	if testing.Short() {
		// The package is built with -buildmode=pie, which compiles every dependency
		// anew the first time (about a minute of CPU here); -short avoids that.
		t.Log("-short: packaging a placeholder binary instead of cmd/inferq")
	} else {
		cmd := exec.Command(goTool, "build", "-o", os.DevNull, "./cmd/inferq")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOARCH="+goarch)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return "./cmd/inferq"
		}
		t.Logf("cmd/inferq does not build, packaging a placeholder binary instead: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "placeholder.go")
	code := "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/ebitengine/purego\"\n)\n\n" +
		"func main() { fmt.Println(\"inferq placeholder\", purego.RTLD_NOW) }\n"
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// config returns ../configs/inferq.yaml, or a stand-in while that file does not exist.
func config(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat("../configs/inferq.yaml"); err == nil {
		return "../configs/inferq.yaml"
	}
	t.Log("configs/inferq.yaml missing, packaging a stand-in")
	path := filepath.Join(dir, "inferq.yaml")
	if err := os.WriteFile(path, []byte("# stand-in\nstate_dir: /var/lib/inferq\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildDeb runs build-deb.sh with args and returns the path it printed.
func buildDeb(t *testing.T, args ...string) string {
	t.Helper()
	return buildDebEnv(t, nil, args...)
}

// buildDebEnv is buildDeb with env added to the environment.
func buildDebEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("./build-deb.sh", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build-deb.sh %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

type entry struct {
	mode, owner, path string
}

// contents parses `dpkg-deb --contents` into path → entry.
func contents(t *testing.T, deb string) map[string]entry {
	t.Helper()
	got := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb --contents line %q", line)
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if path == "" {
			path = "/"
		}
		got[path] = entry{mode: f[0], owner: f[1], path: path}
	}
	return got
}

// TestDeb builds and checks the package for this machine's architecture and, cross-built,
// for arm64 (most edge boxes); the arm64 binary runs under qemu-aarch64-static.
func TestDeb(t *testing.T) {
	arches := []string{runtime.GOARCH}
	if runtime.GOARCH != "arm64" {
		arches = append(arches, "arm64")
	}
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) { testDeb(t, arch) })
	}
}

// testDeb builds the package for arch (a Debian architecture that is also a GOARCH:
// amd64 or arm64) and checks it.
func testDeb(t *testing.T, arch string) {
	tool(t, "dpkg-deb")
	work := t.TempDir()
	src := target(t, work, arch)
	cfg := config(t, work)
	deb := buildDeb(t, "-g", src, "-c", cfg, "-a", arch, "-o", filepath.Join(work, "dist"))

	name := filepath.Base(deb)
	if !regexp.MustCompile(`^inferq_[0-9][0-9A-Za-z.+~]*_[a-z0-9]+\.deb$`).MatchString(name) {
		t.Errorf("package name %q, want inferq_<version>_<arch>.deb", name)
	}
	version := strings.Split(name, "_")[1]

	t.Run("control", func(t *testing.T) {
		info := run(t, "dpkg-deb", "--field", deb)
		fields := map[string]string{}
		for _, line := range strings.Split(info, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		tests := []struct{ field, want string }{
			{"Package", "inferq"},
			{"Version", version},
			{"Architecture", arch},
			{"Depends", "libc6, adduser, libturbojpeg0"},
			{"Recommends", "mosquitto"},
			{"Suggests", "libtensorflow-lite2.14.1"},
			{"Section", "misc"},
			{"Priority", "optional"},
		}
		for _, tt := range tests {
			if got := fields[tt.field]; got != tt.want {
				t.Errorf("%s = %q, want %q", tt.field, got, tt.want)
			}
		}
		if fields["Installed-Size"] == "" || fields["Maintainer"] == "" || fields["Description"] == "" {
			t.Errorf("Installed-Size, Maintainer or Description missing:\n%s", info)
		}
		if got := run(t, "dpkg-deb", "--info", deb, "conffiles"); got != "/etc/inferq/inferq.yaml\n" {
			t.Errorf("conffiles = %q, want only /etc/inferq/inferq.yaml", got)
		}
		listing := run(t, "dpkg-deb", "--info", deb)
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+` + script + `\s+#!/bin/sh$`).MatchString(listing) {
				t.Errorf("%s missing or not an executable /bin/sh script:\n%s", script, listing)
			}
		}
	})

	t.Run("contents", func(t *testing.T) {
		got := contents(t, deb)
		want := []entry{
			{"-rwxr-xr-x", "root/root", "/usr/bin/inferq"},
			{"-rw-r--r--", "root/root", "/etc/inferq/inferq.yaml"},
			{"-rw-r--r--", "root/root", "/lib/systemd/system/inferq.service"},
			{"-rw-r--r--", "root/root", "/usr/lib/sysusers.d/inferq.conf"},
			{"-rw-r--r--", "root/root", "/usr/lib/tmpfiles.d/inferq.conf"},
			{"-rw-r--r--", "root/root", "/usr/share/doc/inferq/copyright"},
			{"-rw-r--r--", "root/root", "/usr/share/doc/inferq/changelog.gz"},
			{"-rw-r--r--", "root/root", "/usr/share/doc/inferq/examples/inferq-gpu.conf"},
			{"-rwxr-xr-x", "root/root", "/usr/lib/inferq/fetch-tflite-runtime"},
			{"-rw-r--r--", "root/root", "/usr/share/man/man1/inferq.1.gz"},
			{"-rw-r--r--", "root/root", "/usr/share/lintian/overrides/inferq"},
			{"drwxr-xr-x", "root/root", "/var/spool/inferq"},
			{"drwxr-xr-x", "root/root", "/etc/inferq"},
		}
		for _, w := range want {
			g, ok := got[w.path]
			if !ok {
				t.Errorf("%s missing", w.path)
				continue
			}
			if g != w {
				t.Errorf("%s: %s %s, want %s %s", w.path, g.mode, g.owner, w.mode, w.owner)
			}
		}
		// Nothing else but directories and the optional lintian override.
		var extra []string
		for path, g := range got {
			if g.owner != "root/root" {
				t.Errorf("%s owned by %s, want root/root", path, g.owner)
			}
			known := false
			for _, w := range want {
				known = known || w.path == path
			}
			if !known && !strings.HasPrefix(g.mode, "d") {
				extra = append(extra, path)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			t.Errorf("unexpected files in the package: %v", extra)
		}
	})

	root := filepath.Join(work, "root")
	run(t, "dpkg-deb", "-x", deb, root)

	t.Run("files", func(t *testing.T) {
		tests := []struct{ installed, source string }{
			{"usr/bin/inferq", ""}, // stripped: compared by presence only
			{"etc/inferq/inferq.yaml", cfg},
			{"lib/systemd/system/inferq.service", "../systemd/inferq.service"},
			{"usr/lib/sysusers.d/inferq.conf", "../systemd/sysusers.d/inferq.conf"},
			{"usr/lib/tmpfiles.d/inferq.conf", "../systemd/tmpfiles.d/inferq.conf"},
			{"usr/share/doc/inferq/examples/inferq-gpu.conf", "../systemd/inferq-gpu.conf"},
			{"usr/share/doc/inferq/copyright", "deb/copyright"},
		}
		for _, tt := range tests {
			got, err := os.ReadFile(filepath.Join(root, tt.installed))
			if err != nil {
				t.Errorf("%s: %v", tt.installed, err)
				continue
			}
			if tt.source == "" {
				continue
			}
			want, err := os.ReadFile(tt.source)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s", tt.installed, tt.source)
			}
		}
		changelog := gunzip(t, filepath.Join(root, "usr/share/doc/inferq/changelog.gz"))
		if want := "inferq (" + version + ") unstable; urgency=medium\n"; !strings.HasPrefix(changelog, want) {
			t.Errorf("changelog starts %q, want %q", changelog, want)
		}
		if man := gunzip(t, filepath.Join(root, "usr/share/man/man1/inferq.1.gz")); !strings.HasPrefix(man, ".TH INFERQ 1") {
			t.Errorf("man page starts %q, want .TH INFERQ 1", man[:min(len(man), 20)])
		}
	})

	if src == "./cmd/inferq" {
		t.Run("version", func(t *testing.T) {
			bin := filepath.Join(root, "usr/bin/inferq")
			if f, err := elf.Open(bin); err != nil {
				t.Fatal(err)
			} else if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != want {
				t.Errorf("packaged binary is built for %v, want %v", f.Machine, want)
			}
			var got string
			if arch == runtime.GOARCH {
				got = strings.TrimSpace(run(t, bin, "version"))
			} else {
				// The stripped PIE as packaged, under emulation, with sid's arm64 C library.
				qemu := testenv.Program(t, "qemu-aarch64-static")
				got = strings.TrimSpace(run(t, qemu, "-L", arm64Runtime(t), bin, "version"))
			}
			if want := "inferq " + version; got != want {
				t.Errorf("inferq version = %q, want %q", got, want)
			}
		})
	}

	// The maintainer scripts run for real, as dpkg --root would run them: DPKG_ROOT
	// points at a fresh extraction, and systemd-sysusers, systemd-tmpfiles and
	// deb-systemd-helper work inside it. Nothing is started and the host is untouched.
	t.Run("maintainer scripts", func(t *testing.T) {
		tool(t, "systemd-sysusers")
		tool(t, "systemd-tmpfiles")
		tool(t, "deb-systemd-helper")
		control, sysroot := filepath.Join(work, "control"), filepath.Join(work, "sysroot")
		run(t, "dpkg-deb", "-e", deb, control)
		run(t, "dpkg-deb", "-x", deb, sysroot)
		script := func(name string, args ...string) {
			t.Helper()
			cmd := exec.Command("sh", append([]string{filepath.Join(control, name)}, args...)...)
			cmd.Env = append(os.Environ(), "DPKG_ROOT="+sysroot,
				"DPKG_MAINTSCRIPT_PACKAGE=inferq", "DPKG_MAINTSCRIPT_NAME="+name)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %v: %v\n%s", name, args, err, out)
			}
		}
		exists := func(path string) bool {
			_, err := os.Lstat(filepath.Join(sysroot, path))
			return err == nil
		}
		const wants = "etc/systemd/system/multi-user.target.wants/inferq.service"
		data := []string{"var/lib/inferq/queue.db", "var/spool/inferq/incoming/cam1/img.jpg"}

		script("postinst", "configure")
		uid := inferqUID(t, sysroot)
		for _, dir := range []string{"var/lib/inferq", "var/lib/inferq/models", "var/spool/inferq",
			"var/spool/inferq/incoming", "var/spool/inferq/failed"} {
			fi, err := os.Stat(filepath.Join(sysroot, dir))
			if err != nil {
				t.Errorf("postinst did not create %s: %v", dir, err)
				continue
			}
			if got := owner(fi); got != uid {
				t.Errorf("%s owned by uid %s, want inferq (%s)", dir, got, uid)
			}
		}
		if target, err := os.Readlink(filepath.Join(sysroot, wants)); err != nil || target != "/lib/systemd/system/inferq.service" {
			t.Errorf("service not enabled: %s -> %q, %v", wants, target, err)
		}

		// An upgrade (configure <old version>) keeps an administrator's disable.
		// systemctl disable removes the symlink; that is all deb-systemd-helper looks at.
		if err := os.Remove(filepath.Join(sysroot, wants)); err != nil {
			t.Fatal(err)
		}
		script("postinst", "configure", "0.0.1")
		if exists(wants) {
			t.Error("upgrade re-enabled a disabled service")
		}
		if got := inferqUID(t, sysroot); got != uid {
			t.Errorf("upgrade changed the inferq uid from %s to %s", uid, got)
		}

		for _, f := range data {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(sysroot, f)), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sysroot, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		script("prerm", "remove")
		script("postrm", "remove")
		for _, f := range data {
			if !exists(f) {
				t.Errorf("remove deleted %s; only purge may", f)
			}
		}
		script("postrm", "purge")
		for _, dir := range []string{"var/lib/inferq", "var/spool/inferq", "var/lib/systemd/deb-systemd-helper-enabled/inferq.service.dsh-also"} {
			if exists(dir) {
				t.Errorf("purge left %s", dir)
			}
		}
		if got := inferqUID(t, sysroot); got != uid {
			t.Errorf("purge changed the inferq user: uid %q, want %s kept", got, uid)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze := tool(t, "systemd-analyze")
		// The unit as installed, with ExecStart pointing at the packaged binary where it
		// was extracted (verify needs an executable that exists).
		unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/inferq.service"))
		if err != nil {
			t.Fatal(err)
		}
		const exec0 = "\nExecStart=/usr/bin/inferq "
		if !bytes.Contains(unit, []byte(exec0)) {
			t.Fatalf("unit has no %q", exec0)
		}
		unit = bytes.ReplaceAll(unit, []byte("=/usr/bin/inferq "), []byte("="+filepath.Join(root, "usr/bin/inferq")+" "))
		dir := t.TempDir()
		path := filepath.Join(dir, "inferq.service")
		if err := os.WriteFile(path, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		// MANPATH lets verify check Documentation=man:inferq(1) against the packaged page.
		cmd := exec.Command(analyze, "verify", path)
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":", "SYSTEMD_LOG_COLOR=0",
			"MANPATH="+filepath.Join(root, "usr/share/man"))
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	// Same binary, configuration, version and time: same bytes. (Building from the
	// checkout twice would compare two commits whenever another commit lands between.)
	t.Run("reproducible", func(t *testing.T) {
		bin := filepath.Join(root, "usr/bin/inferq")
		env := []string{"SOURCE_DATE_EPOCH=1700000000",
			"DEB_COMPRESS=zstd"} // xz takes about 10 s for the real binary
		a := buildDebEnv(t, env, "-b", bin, "-c", cfg, "-a", arch, "-v", "1.2.3", "-o", filepath.Join(work, "r1"))
		b := buildDebEnv(t, env, "-b", bin, "-c", cfg, "-a", arch, "-v", "1.2.3", "-o", filepath.Join(work, "r2"))
		if sa, sb := sum(t, a), sum(t, b); sa != sb {
			t.Errorf("two builds differ: %s %s", sa, sb)
		}
	})

	// packaging/install-test-deps.sh installs lintian; make test requires it.
	t.Run("lintian", func(t *testing.T) {
		lintian := tool(t, "lintian")
		out, err := exec.Command(lintian, "--pedantic", "--display-info", deb).CombinedOutput()
		var tags []string
		for _, line := range strings.Split(string(out), "\n") {
			if regexp.MustCompile(`^[EWIPX]: `).MatchString(line) {
				tags = append(tags, line)
			}
		}
		if err != nil || len(tags) > 0 {
			t.Errorf("lintian: %v\n%s", err, out)
		}
	})
}

func TestBuildDebErrors(t *testing.T) {
	tool(t, "dpkg-deb")
	dir := t.TempDir()
	exe := filepath.Join(dir, "inferq")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The start of a little-endian ELF header for arm64: e_machine 183 at offset 18.
	arm64 := filepath.Join(dir, "inferq-arm64")
	header := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 11)...)
	if err := os.WriteFile(arm64, append(header, 183, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"missing binary", []string{"-b", filepath.Join(dir, "nope")}, "(-b)"},
		{"missing config", []string{"-b", exe, "-c", filepath.Join(dir, "nope.yaml")}, "(-c)"},
		{"bad version", []string{"-b", exe, "-v", "v1.0"}, `invalid version "v1.0" (-v)`},
		{"bad target", []string{"-g", "./no/such/package"}, "cannot build ./no/such/package (-g)"},
		{"binary of another architecture", []string{"-b", arm64, "-a", "amd64"}, "is not built for amd64 (ELF machine 183, want 62)"},
		{"architecture Go cannot build", []string{"-g", "./cmd/inferq", "-a", "hurd-i386"}, "cannot build for Debian architecture hurd-i386"},
		{"unknown flag", []string{"-x"}, "packaging/build-deb.sh [-b BINARY | -g TARGET]"},
		{"extra argument", []string{"-b", exe, "extra"}, "packaging/build-deb.sh [-b BINARY | -g TARGET]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("./build-deb.sh", append(tt.args, "-o", filepath.Join(dir, "dist"))...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("build-deb.sh %v succeeded, want an error", tt.args)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "dist")); len(entries) > 0 {
		t.Errorf("failed builds left %d files in the output directory", len(entries))
	}
}

// inferqUID returns the inferq user's uid in sysroot's /etc/passwd, "" if none; it
// fails the test if the user appears more than once.
func inferqUID(t *testing.T, sysroot string) string {
	t.Helper()
	passwd, err := os.ReadFile(filepath.Join(sysroot, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, line := range strings.Split(string(passwd), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[0] == "inferq" {
			uids = append(uids, f[2])
		}
	}
	if len(uids) != 1 {
		t.Fatalf("inferq appears %d times in passwd:\n%s", len(uids), passwd)
	}
	return uids[0]
}

func owner(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Uid), 10)
	}
	return "?"
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestVersion runs build-deb.sh from a copy of the packaging files in a scratch
// repository, to check the version it derives from git in each state.
func TestVersion(t *testing.T) {
	tool(t, "dpkg-deb")
	gitTool := tool(t, "git")
	repo := t.TempDir()
	for _, f := range []string{"packaging/build-deb.sh", "packaging/fetch-tflite-runtime.sh", "packaging/deb/postinst", "packaging/deb/prerm",
		"packaging/deb/postrm", "packaging/deb/copyright", "packaging/deb/inferq.1",
		"systemd/inferq.service", "systemd/inferq-gpu.conf", "systemd/sysusers.d/inferq.conf",
		"systemd/tmpfiles.d/inferq.conf"} {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(repo, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(repo, "inferq")
	cfg := filepath.Join(repo, "inferq.yaml")
	for path, content := range map[string]string{bin: "#!/bin/sh\n", cfg: "node: test\n"} {
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitTool, append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.org",
			"-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func() { git("add", "-A"); git("commit", "-q", "--allow-empty", "-m", "c") }
	version := func() (string, error) {
		cmd := exec.Command(filepath.Join(repo, "packaging/build-deb.sh"), "-b", bin, "-c", cfg, "-o", filepath.Join(repo, "dist"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%w: %s", err, stderr.String())
		}
		return strings.Split(filepath.Base(strings.TrimSpace(string(out))), "_")[1], nil
	}

	tests := []struct {
		name    string
		setup   func()
		want    func() string // "" wants an error
		wantErr string
	}{
		{"outside git", func() {}, func() string { return "0.1.0" }, ""},
		{"untagged", func() { git("init", "-q"); commit() },
			func() string { return "0.1.0~git1.g" + git("rev-parse", "--short", "HEAD") }, ""},
		{"tag on HEAD", func() { git("tag", "v1.2.3") }, func() string { return "1.2.3" }, ""},
		{"commits after tag", func() { commit(); commit() },
			func() string { return "1.2.3+2.g" + git("rev-parse", "--short", "HEAD") }, ""},
		{"unusable tag", func() { git("tag", "release-x") }, nil, `tag-based version "release-x" is not usable; pass -v`},
	}
	for _, tt := range tests { // in order: each case builds on the previous state
		tt.setup()
		got, err := version()
		if tt.want == nil {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: version %q, error %v; want error %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if want := tt.want(); err != nil || got != want {
			t.Errorf("%s: version %q (error %v), want %q", tt.name, got, err, want)
		}
	}
}
