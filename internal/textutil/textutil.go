// Package textutil cuts untrusted strings (job ids, file names, topics,
// sources, error messages quoting them) before they reach a log line, an
// event or a health field, so a 5,000-byte id costs 200 bytes, not 5,000.
//
// Guarantees: the result is at most the limit plus a short marker, never
// splits a UTF-8 sequence that was valid, and says how long the original
// was ("…(5000 bytes)"). Strings within the limit are returned unchanged.
// All functions are pure and safe for concurrent use.
package textutil

import (
	"strconv"
	"unicode/utf8"
)

// Limits for Clip and ClipMessage.
const (
	// MaxUntrusted bounds one untrusted name: an id, a file name, a topic, a source.
	MaxUntrusted = 200
	// MaxMessage bounds a whole message (an error or a reason) that may quote
	// a few untrusted names, each already cut with Clip.
	MaxMessage = 1024
)

// Clip cuts s to MaxUntrusted bytes (see ClipN).
func Clip(s string) string { return ClipN(s, MaxUntrusted) }

// ClipMessage cuts a message to MaxMessage bytes (see ClipN).
func ClipMessage(s string) string { return ClipN(s, MaxMessage) }

// ClipN returns s unchanged when it has at most n bytes; otherwise its first
// n bytes (fewer, to end on a rune boundary) followed by "…(<len> bytes)".
// n < 1 counts as 1.
func ClipN(s string, n int) string {
	n = max(n, 1)
	if len(s) <= n {
		return s
	}
	cut := n
	// Step back over continuation bytes so a multi-byte rune is not split;
	// at most utf8.UTFMax-1 steps (invalid input is cut where it falls).
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
