package tflite

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// Trial is one library's showing in [Choose].
type Trial struct {
	Library string  `json:"library"`             // the path given (or as loaded)
	Version string  `json:"version,omitempty"`   // TfLiteVersion()
	XNNPACK string  `json:"xnnpack,omitempty"`   // the XNNPACK delegate in use, if any
	Invokes int     `json:"invokes,omitempty"`   // timed invokes
	Median  float64 `json:"median_ms,omitempty"` // their median, milliseconds
	Min     float64 `json:"min_ms,omitempty"`
	Max     float64 `json:"max_ms,omitempty"`
	Err     string  `json:"error,omitempty"` // why this library could not run the model
}

// Chosen is the library that won [Choose], with the model and interpreter it holds.
type Chosen struct {
	Lib   *Library
	Model *Model
	It    *Interpreter
	// Trials are every candidate's results in the order given; Trials[Index] won.
	Trials []Trial
	Index  int
}

// Choose loads each library in paths ("" means DefaultNames), creates the model from
// data and an interpreter with opts in it, and, when more than one works, times n invokes
// of each (after one untimed warm-up, on the same deterministic input) and keeps the one
// with the lowest median; the others are closed. With a single working candidate nothing
// is timed. A candidate that cannot load or run the model is skipped, its error kept in
// its Trial; when none works the error is the first candidate's (wrapping
// ErrLibraryNotFound, ErrSymbol or ErrBadModel as Open, NewModel and NewInterpreter do).
//
// Libraries stay mapped (see Library); only the losers' models and interpreters are freed.
func Choose(paths []string, data []byte, opts Options, n int) (*Chosen, error) {
	if len(paths) == 0 {
		paths = []string{""}
	}
	if n < 1 {
		n = 1
	}
	c := &Chosen{Trials: make([]Trial, len(paths)), Index: -1}
	type cand struct {
		lib *Library
		m   *Model
		it  *Interpreter
	}
	cands := make([]cand, len(paths))
	var firstErr error
	working := 0
	for i, p := range paths {
		c.Trials[i].Library = p
		lib, m, it, err := load(p, data, opts)
		if err != nil {
			c.Trials[i].Err = err.Error()
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		c.Trials[i].Library, c.Trials[i].Version, c.Trials[i].XNNPACK = lib.Path(), lib.Version(), it.XNNPACK()
		cands[i] = cand{lib, m, it}
		working++
	}
	if working == 0 {
		return nil, firstErr
	}
	for i, cd := range cands {
		if cd.it == nil {
			continue
		}
		if working > 1 {
			if err := timeInvokes(cd.it, n, &c.Trials[i]); err != nil {
				c.Trials[i].Err = err.Error()
				cd.it.Close()
				cd.m.Close()
				cands[i] = cand{}
				continue
			}
		}
		if c.Index < 0 || c.Trials[i].Median < c.Trials[c.Index].Median {
			c.Index = i
		}
	}
	if c.Index < 0 {
		return nil, fmt.Errorf("%w: no candidate library could invoke the model: %s", ErrInvoke, c.Trials[0].Err)
	}
	for i, cd := range cands {
		if i != c.Index && cd.it != nil {
			cd.it.Close()
			cd.m.Close()
		}
	}
	w := cands[c.Index]
	c.Lib, c.Model, c.It = w.lib, w.m, w.it
	return c, nil
}

func load(path string, data []byte, opts Options) (*Library, *Model, *Interpreter, error) {
	lib, err := Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := lib.NewModel(data)
	if err != nil {
		return nil, nil, nil, err
	}
	it, err := lib.NewInterpreter(m, opts)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return lib, m, it, nil
}

// timeInvokes fills every input with the same pseudo-random bytes, runs one warm-up
// invoke and n timed ones, and records their median, min and max in t.
func timeInvokes(it *Interpreter, n int, t *Trial) error {
	for _, in := range it.Inputs() {
		fillInput(in)
	}
	if err := it.Invoke(); err != nil {
		return fmt.Errorf("warm-up invoke: %w", err)
	}
	d := make([]float64, n)
	for i := range d {
		t0 := time.Now()
		if err := it.Invoke(); err != nil {
			return err
		}
		d[i] = float64(time.Since(t0).Microseconds()) / 1000
	}
	slices.Sort(d)
	t.Invokes, t.Median, t.Min, t.Max = n, Median(d), d[0], d[n-1]
	return nil
}

// fillInput writes a deterministic input: for float tensors values in [0,1), for others
// bytes of a fixed pseudo-random sequence (any byte is a valid uint8/int8 value).
func fillInput(t *Tensor) {
	b := t.Bytes()
	x := uint32(2463534242)
	next := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	if t.Type == Float32 {
		for i := 0; i+4 <= len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(next()%1000)/1000))
		}
		return
	}
	for i := range b {
		b[i] = byte(next())
	}
}

// Median is the median of sorted values (the mean of the middle two for an even count).
func Median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
