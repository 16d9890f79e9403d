package daemon

import (
	"testing"
	"time"
)

// TestJobTimes: percentiles over the most recent jobTimesWindow runs only, and the rate
// counts the jobs finished in the last minute.
func TestJobTimes(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var j jobTimes
	if s := j.summary(now); s != (jobTimesSummary{}) {
		t.Fatalf("empty: %+v", s)
	}
	// 1024 slow jobs long ago, then 1024 fast ones in the last 50 s: only the fast count.
	for i := range jobTimesWindow {
		j.observe(time.Second, now.Add(-time.Hour+time.Duration(i)))
	}
	for i := range jobTimesWindow {
		j.observe(time.Duration(i+1)*time.Millisecond, now.Add(-50*time.Second+time.Duration(i)*time.Millisecond))
	}
	s := j.summary(now)
	want := jobTimesSummary{P50: 512 * time.Millisecond, P90: 921 * time.Millisecond, P99: 1013 * time.Millisecond, PerMinute: jobTimesWindow}
	if s != want {
		t.Fatalf("summary = %+v, want %+v", s, want)
	}
	if s := j.summary(now.Add(2 * time.Minute)); s.PerMinute != 0 || s.P50 != want.P50 {
		t.Fatalf("two minutes later: %+v, want no rate, same percentiles", s)
	}
}
