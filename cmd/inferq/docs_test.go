package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsNameEveryCommand: every command of `inferq help` is described in the man page
// (a .TP entry) and shown in the README's "Running it" commands, so neither falls
// behind the CLI.
func TestDocsNameEveryCommand(t *testing.T) {
	man, err := os.ReadFile("../../packaging/deb/inferq.1")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, running, ok := strings.Cut(string(readme), "## Running it")
	if !ok {
		t.Fatal("README has no Running it section")
	}
	running, _, _ = strings.Cut(running, "\n## ")
	var cmds []string
	for _, line := range strings.Split(usage, "\n") {
		if m := regexp.MustCompile(`^  ([a-z]+)\b`).FindStringSubmatch(line); m != nil && !slices.Contains(cmds, m[1]) {
			cmds = append(cmds, m[1])
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("found %d commands in the usage text: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		entry := regexp.MustCompile(`(?m)^\.TP\n(\.B |\.BI "|\\fB)` + c + `\b`)
		if !entry.Match(man) && !(c == "resume" && strings.Contains(string(man), `\fBpause\fR|\fBresume\fR`)) {
			t.Errorf("the man page has no entry for %q", c)
		}
		if !strings.Contains(running, "inferq "+c) {
			t.Errorf("README's Running it does not show %q", c)
		}
	}
}
