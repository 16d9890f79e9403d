package textutil

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClipN(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short unchanged", "abc", 5, "abc"},
		{"exact unchanged", "abcde", 5, "abcde"},
		{"cut with length", "abcdef", 5, "abcde…(6 bytes)"},
		{"empty", "", 5, ""},
		{"no split rune", "ab€cd", 4, "ab…(7 bytes)"}, // € is 3 bytes at 2..4
		{"rune fits", "ab€cd", 5, "ab€…(7 bytes)"},
		{"zero limit", "abc", 0, "a…(3 bytes)"},
		{"invalid utf8 cut where it falls", "\x80\x80\x80\x80\x80\x80", 4, "\x80\x80\x80\x80…(6 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClipN(tt.in, tt.n); got != tt.want {
				t.Errorf("ClipN(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

// An id of 5,000 bytes is cut to MaxUntrusted bytes plus the marker.
func TestClipLongID(t *testing.T) {
	got := Clip(strings.Repeat("x", 5000))
	if want := strings.Repeat("x", MaxUntrusted) + "…(5000 bytes)"; got != want {
		t.Fatalf("got %d bytes %q…, want %d bytes", len(got), got[:20], len(want))
	}
	if got := ClipMessage(strings.Repeat("é", 2000)); len(got) > MaxMessage+20 || !utf8.ValidString(got) {
		t.Fatalf("ClipMessage: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func FuzzClipN(f *testing.F) {
	f.Add("hello, world", 5)
	f.Add("ab€cd", 4)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 300
		got := ClipN(s, n)
		if len(s) <= max(n, 1) {
			if got != s {
				t.Fatalf("changed a short string")
			}
			return
		}
		suffix := "…(" + strconv.Itoa(len(s)) + " bytes)"
		head, ok := strings.CutSuffix(got, suffix)
		if !ok || !strings.HasPrefix(s, head) || len(head) > max(n, 1) || len(head) < max(n, 1)-utf8.UTFMax+1 {
			t.Fatalf("ClipN(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("split a rune: %q", got)
		}
	})
}
