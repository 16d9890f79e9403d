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
	"time"

	"github.com/ebitengine/purego"
)

// Protocol between Supervisor and ServeChild: gob-encoded request/response pairs over
// the child's stdin/stdout, strictly one request in flight. A run may carry the next
// job's image (Next, NextKey): the child decodes and pre-processes it in the background
// while this run's model runs, and the following run whose Key matches uses it.
const (
	opOpen = "open"
	opRun  = "run"
)

type request struct {
	Op       string
	Runtime  RuntimeConfig
	Model    ModelConfig
	Image    []byte
	Deadline time.Time // zero: none
	// Key identifies Image (a job id) so a prepared image is used only for its own job;
	// Next and NextKey are the image expected to run next, to prepare meanwhile.
	Key     string
	Next    []byte
	NextKey string
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
// does), opens the model on "open" and runs images on "run". cmd/inferq's hidden
// engine-child subcommand calls it with stdin and stdout.
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
	dec := gob.NewDecoder(bufio.NewReader(in))
	enc := gob.NewEncoder(bw)
	var eng Engine
	var pending *pendingPrep // the next job's image being prepared, if any
	defer func() {
		if pending != nil {
			<-pending.done // its goroutine uses the engine's decoder
		}
		if eng != nil {
			eng.Close()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil
		}
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("cannot read request: %w", err)
		}
		var resp response
		switch req.Op {
		case opOpen:
			if pending != nil {
				<-pending.done
				pending = nil
			}
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
			}
		case opRun:
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
			// The image prepared during the previous run, if it is this job's.
			var in *prepared
			var inErr error
			if pending != nil {
				<-pending.done
				if req.Key != "" && pending.key == req.Key {
					in, inErr = pending.in, pending.err
				}
				pending = nil
			}
			pr, canPrepare := eng.(preparer)
			if canPrepare && len(req.Next) > 0 && req.NextKey != "" {
				pending = startPrepare(pr, req.NextKey, req.Next)
			}
			var r *Result
			var err error
			switch {
			case inErr != nil:
				err = inErr // the image failed to decode: the same error as decoding it now
			case in != nil:
				r, err = pr.runPrepared(rctx, in)
			default:
				r, err = eng.Run(rctx, req.Image)
			}
			cancel()
			resp.Result, resp.Err = r, toWire(err)
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

// pendingPrep is an image being prepared in the background for the run whose Key is key.
type pendingPrep struct {
	key  string
	done chan struct{} // closed when in or err is set
	in   *prepared
	err  error
}

// startPrepare prepares img on its own goroutine, which the child's loop owns: every
// path that drops a pendingPrep first waits for done.
func startPrepare(pr preparer, key string, img []byte) *pendingPrep {
	p := &pendingPrep{key: key, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.in, p.err = pr.prepare(img)
	}()
	return p
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
