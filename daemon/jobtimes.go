package daemon

import (
	"slices"
	"time"
)

// jobTimesWindow is how many recent jobs the worker's percentiles are taken over.
const jobTimesWindow = 1024

// jobTimes keeps the run durations and finish times of the most recent jobs, for the
// health document's percentiles and rate. It is not safe for concurrent use.
type jobTimes struct {
	runs     []time.Duration
	finishes []time.Time
	next     int
}

// jobTimesSummary is what health shows of the recent jobs.
type jobTimesSummary struct {
	P50, P90, P99 time.Duration
	PerMinute     int // jobs finished in the minute before now
}

// observe records a job that ran for run and finished at end.
func (j *jobTimes) observe(run time.Duration, end time.Time) {
	if len(j.runs) < jobTimesWindow {
		j.runs = append(j.runs, run)
		j.finishes = append(j.finishes, end)
		return
	}
	j.runs[j.next], j.finishes[j.next] = run, end
	j.next = (j.next + 1) % jobTimesWindow
}

// summary gives the percentiles of the window and the jobs finished within a minute of now.
func (j *jobTimes) summary(now time.Time) jobTimesSummary {
	var s jobTimesSummary
	for _, t := range j.finishes {
		if now.Sub(t) <= time.Minute {
			s.PerMinute++
		}
	}
	if len(j.runs) == 0 {
		return s
	}
	runs := slices.Clone(j.runs)
	slices.Sort(runs)
	pick := func(p float64) time.Duration { return runs[int(p*float64(len(runs)-1))] }
	s.P50, s.P90, s.P99 = pick(0.50), pick(0.90), pick(0.99)
	return s
}
