package infer

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/ebitengine/purego"
)

// Protocol between Supervisor and ServeChild: gob-encoded messages over the child's
// stdin/stdout. Requests "open" and "run" get exactly one response each, in order, and
// at most one of them is in flight. "prepare" gets no response and may arrive at any
// time, also while a run's model runs: the child decodes and pre-processes its image in
// the background (one prepare at a time, the newest maxPrepared kept), and the run whose
// Key matches uses it. A run for a prepared key may leave out its image (the
// Supervisor knows which keys its child holds: both sides keep the same list).
const (
	opOpen    = "open"
	opRun     = "run"
	opPrepare = "prepare"
)

// maxPrepared is how many prepared images the child keeps (the oldest is dropped).
const maxPrepared = 2

type request struct {
	Op       string
	Runtime  RuntimeConfig
	Model    ModelConfig
	Image    []byte
	Deadline time.Time // zero: none
	// Key identifies Image (a job id) so a prepared image is used only for its own job.
	Key string
}

type response struct {
	Info   *ModelInfo
	Result *Result
	Err    *wireError
}

// TestHooksEnv, when set to 1 in the child's environment, lets images that start with
// "inferq-test:crash" or "inferq-test:hang" crash or hang the child. Only for tests of the
// supervision; never set it in production.
const TestHooksEnv = "INFERQ_ENGINE_CHILD_TEST_HOOKS"

// ServeChild is the engine child's side: it reads requests from in and answers on out
// until in is closed or ctx is done. It loads the TFLite library (only this process
// does), opens the model on "open", prepares images on "prepare" and runs them on "run".
// cmd/inferq's hidden engine-child subcommand calls it with stdin and stdout.
func ServeChild(ctx context.Context, in io.Reader, out io.Writer, logger *slog.Logger) error {
	return ServeChildWith(ctx, in, out, logger, OpenTFLite)
}

// ServeChildWith is ServeChild with another runtime's Opener.
func ServeChildWith(ctx context.Context, in io.Reader, out io.Writer, logger *slog.Logger, open Opener) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hooks := os.Getenv(TestHooksEnv) == "1"
	bw := bufio.NewWriter(out)
	enc := gob.NewEncoder(bw)
	var eng Engine
	preps := &prepSet{}
	r := startReader(in, preps)
	defer func() {
		r.stop()
		preps.use(nil) // waits for a prepare in progress: it uses the engine's decoder
		if eng != nil {
			eng.Close()
		}
	}()
	for {
		var req request
		select {
		case <-ctx.Done():
			return nil
		case q, ok := <-r.reqs:
			if !ok {
				if err := r.err; !errors.Is(err, io.EOF) {
					return fmt.Errorf("cannot read request: %w", err)
				}
				return nil
			}
			req = q
		}
		var resp response
		switch req.Op {
		case opOpen:
			preps.use(nil)
			if eng != nil {
				eng.Close()
				eng = nil
			}
			e, err := open(ctx, req.Runtime, req.Model, logger)
			if err != nil {
				resp.Err = toWire(err)
			} else {
				eng = e
				info := e.Info()
				resp.Info = &info
				if pr, ok := e.(preparer); ok {
					preps.use(pr)
				}
			}
		case opRun:
			// The image prepared for this job, if any (its run may then leave the image out).
			p := preps.take(req.Key)
			if p != nil && len(req.Image) == 0 {
				req.Image = p.img
			}
			if hooks {
				testHook(req.Image)
			}
			if eng == nil {
				resp.Err = toWire(newErr(ErrClosed, false, nil, "no model loaded"))
				break
			}
			rctx, cancel := ctx, context.CancelFunc(func() {})
			if !req.Deadline.IsZero() {
				rctx, cancel = context.WithDeadline(ctx, req.Deadline)
			}
			var res *Result
			var err error
			switch {
			case p != nil && p.err != nil:
				err = p.err // the image failed to decode: the same error as decoding it now
			case p != nil && p.in != nil:
				res, err = eng.(preparer).runPrepared(rctx, p.in)
			case len(req.Image) == 0:
				err = newErr(ErrEngine, false, nil, "run for job %q without an image, and none prepared", req.Key)
			default:
				res, err = eng.Run(rctx, req.Image)
			}
			cancel()
			resp.Result, resp.Err = res, toWire(err)
		default:
			resp.Err = toWire(newErr(ErrEngine, false, nil, "unknown request %q", req.Op))
		}
		if err := enc.Encode(&resp); err != nil {
			return fmt.Errorf("cannot write response: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("cannot write response: %w", err)
		}
	}
}

// reader decodes the child's requests on its own goroutine, so that a prepare is taken
// (and started) while a run's model runs; open and run go to the loop through reqs.
type reader struct {
	reqs chan request // closed when the input ends; err then says why
	err  error
	quit chan struct{}
	once sync.Once
}

func startReader(in io.Reader, preps *prepSet) *reader {
	r := &reader{reqs: make(chan request, 1), quit: make(chan struct{})}
	go func() {
		defer close(r.reqs)
		dec := gob.NewDecoder(bufio.NewReader(in))
		for {
			var req request
			if err := dec.Decode(&req); err != nil {
				r.err = err
				return
			}
			if req.Op == opPrepare {
				preps.start(req.Key, req.Image)
				continue
			}
			select {
			case r.reqs <- req:
			case <-r.quit:
				return
			}
			// Let the loop take the request now: this goroutine's next read blocks in a
			// system call, and the loop would wait for the scheduler to notice.
			runtime.Gosched()
		}
	}()
	return r
}

// stop lets the goroutine end at its next request instead of blocking on it (it still
// blocks reading until the input ends: the process exits then).
func (r *reader) stop() { r.once.Do(func() { close(r.quit) }) }

// prepSet is the images prepared, or being prepared, for runs to come: at most
// maxPrepared, the oldest dropped first (kept as they came when the engine cannot
// prepare). Prepares run one at a time, each on its own
// goroutine after the one before it, so the last one's done means all are done.
type prepSet struct {
	mu      sync.Mutex
	pr      preparer // nil: prepares are ignored (no model, or one being replaced)
	pending []*pendingPrep
	last    *pendingPrep
}

// pendingPrep is an image being prepared in the background for the run whose Key is key.
type pendingPrep struct {
	key  string
	img  []byte
	done chan struct{} // closed when in or err is set
	in   *prepared
	err  error
}

// start prepares img for the run with key; an earlier one for the same key is replaced.
func (s *prepSet) start(key string, img []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		return
	}
	s.dropLocked(key)
	p := &pendingPrep{key: key, img: img, done: make(chan struct{})}
	s.pending = append(s.pending, p)
	if len(s.pending) > maxPrepared {
		s.pending = s.pending[1:]
	}
	prev, pr := s.last, s.pr
	if pr == nil {
		close(p.done) // kept unprepared: its run decodes the image as Run does
		return
	}
	go func() {
		defer close(p.done)
		if prev != nil {
			<-prev.done // never two prepares at once: they share the engine's decoder
		}
		p.in, p.err = pr.prepare(img)
	}()
	s.last = p
}

// take removes key's prepared image and waits until it is ready; nil when there is none.
func (s *prepSet) take(key string) *pendingPrep {
	if key == "" {
		return nil
	}
	s.mu.Lock()
	p := s.dropLocked(key)
	s.mu.Unlock()
	if p != nil {
		<-p.done
	}
	return p
}

func (s *prepSet) dropLocked(key string) *pendingPrep {
	for i, p := range s.pending {
		if p.key == key {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return p
		}
	}
	return nil
}

// use drops every prepared image, waits for a prepare in progress, and prepares with pr
// from then on (nil: none).
func (s *prepSet) use(pr preparer) {
	s.mu.Lock()
	last := s.last
	s.pr, s.pending, s.last = nil, nil, nil
	s.mu.Unlock()
	if last != nil {
		<-last.done
	}
	s.mu.Lock()
	s.pr = pr
	s.mu.Unlock()
}

// ServeChildIf serves as the engine child on stdin and stdout, then exits the process,
// when the environment variable env is "1"; otherwise it returns at once. A test binary
// calls it first in TestMain to stand in for `inferq engine-child` (the supervisor then
// starts the test binary itself with env=1).
func ServeChildIf(env string) {
	if os.Getenv(env) != "1" {
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := ServeChild(context.Background(), os.Stdin, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "engine child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func testHook(img []byte) {
	switch {
	case len(img) >= 17 && string(img[:17]) == "inferq-test:crash":
		// Jump to an unmapped address from native code: a real SIGSEGV in C, as a crash
		// inside the runtime would give.
		purego.SyscallN(8)
	case len(img) >= 16 && string(img[:16]) == "inferq-test:hang":
		select {} // ignores every deadline, as a stuck native call would
	}
}
