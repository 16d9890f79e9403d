package main

import (
	"errors"
	"strings"
	"testing"
)

// The command line of `inferq fleet cmd` becomes the request the box gets; mistakes are
// usage errors (exit 2) before anything is sent.
func TestFleetCmdRequest(t *testing.T) {
	tests := []struct {
		args []string
		all  bool
		want string // the request's verb, what, ids and all; or the usage error
	}{
		{[]string{"door", "reload"}, false, "reload  [] false"},
		{[]string{"door", "pause"}, false, "pause all [] false"},
		{[]string{"door", "resume", "worker"}, false, "resume worker [] false"},
		{[]string{"door", "retry", "j1", "j2"}, false, "retry  [j1 j2] false"},
		{[]string{"door", "purge"}, true, "purge  [] true"},
		{[]string{"door"}, false, "usage: fleet cmd NODE"},
		{[]string{"door", "reboot"}, false, `verb "reboot"`},
		{[]string{"a/b", "reload"}, false, `node "a/b"`},
		{[]string{"door", "reload", "now"}, false, "reload takes no arguments"},
		{[]string{"door", "pause", "worker", "intake"}, false, "pause [intake|worker|all]"},
		{[]string{"door", "retry"}, false, "give the ids of dead jobs, or --all"},
		{[]string{"door", "purge", "j1"}, true, "give the ids of dead jobs, or --all"},
	}
	for _, tt := range tests {
		req, err := commandRequest(tt.args, tt.all)
		if err != nil {
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%q: %v, want a usage error with %q", tt.args, err, tt.want)
			}
			continue
		}
		got := strings.Join([]string{req.Verb, req.What, "[" + strings.Join(req.IDs, " ") + "]", map[bool]string{true: "true", false: "false"}[req.All]}, " ")
		if got != tt.want || req.Node != tt.args[0] || len(req.ID) < 16 || req.Time.IsZero() {
			t.Errorf("%q: %+v, want %s", tt.args, req, tt.want)
		}
	}
}
