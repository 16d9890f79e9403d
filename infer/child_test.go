package infer

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// FuzzServeChild feeds arbitrary bytes to the child's request decoder: it must return
// (an error or nil), never panic or hang.
func FuzzServeChild(f *testing.F) {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if err := enc.Encode(&request{Op: opRun, Image: []byte("x")}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	var two bytes.Buffer
	enc = gob.NewEncoder(&two)
	for _, r := range []request{{Op: opPrepare, Key: "k", Image: []byte("x")}, {Op: opRun, Key: "k"}} {
		if err := enc.Encode(&r); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(two.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x00, 0x13})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ServeChildWith(context.Background(), bytes.NewReader(data), io.Discard, nil, func(context.Context, RuntimeConfig, ModelConfig, *slog.Logger) (Engine, error) {
			return nil, newErr(ErrRuntimeMissing, false, nil, "fuzz")
		})
	})
}

// serveInProcess runs ServeChildWith with open on pipes and returns the request encoder,
// the response decoder and end, which closes the input and returns ServeChild's error.
func serveInProcess(open Opener) (enc *gob.Encoder, dec *gob.Decoder, end func() error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeChildWith(context.Background(), inR, outW, nil, open) }()
	return gob.NewEncoder(inW), gob.NewDecoder(outR), func() error { inW.Close(); return <-done }
}

// TestServeChildProtocol drives ServeChild in process: a run before any open, an unknown
// request, an open that fails; each gets an error response and the loop goes on.
func TestServeChildProtocol(t *testing.T) {
	enc, dec, end := serveInProcess(func(context.Context, RuntimeConfig, ModelConfig, *slog.Logger) (Engine, error) {
		return nil, badModel(nil, "no such model")
	})
	tests := []struct {
		req       request
		kind      error
		permanent bool
	}{
		{request{Op: opRun, Image: []byte("img")}, ErrClosed, false},
		{request{Op: "explode"}, ErrEngine, false},
		{request{Op: opOpen, Model: ModelConfig{Path: "m"}}, ErrBadModel, true},
	}
	for _, tc := range tests {
		if err := enc.Encode(&tc.req); err != nil {
			t.Fatal(err)
		}
		var resp response
		if err := dec.Decode(&resp); err != nil {
			t.Fatal(err)
		}
		err := resp.Err.toError()
		if !errors.Is(err, tc.kind) || IsPermanent(err) != tc.permanent {
			t.Fatalf("%s: got %v, want %v (permanent %v)", tc.req.Op, err, tc.kind, tc.permanent)
		}
	}
	if err := end(); err != nil {
		t.Fatalf("ServeChild after EOF: %v", err)
	}
}

// echoEngine is an Engine that cannot prepare: its result's label is the image it ran.
type echoEngine struct{}

func (echoEngine) Info() ModelInfo { return ModelInfo{Name: "echo"} }
func (echoEngine) Run(_ context.Context, image []byte) (*Result, error) {
	return &Result{Kind: KindClassification, Classes: []Class{{Label: string(image)}}}, nil
}
func (echoEngine) Close() error { return nil }

// TestServeChildPrepareWithoutPreparer: with an engine that cannot prepare, a prepared
// job's run that leaves its image out (as the Supervisor sends it) still runs that
// image; the oldest of three prepared images is dropped, and a run without an image
// that was not prepared is refused.
func TestServeChildPrepareWithoutPreparer(t *testing.T) {
	enc, dec, end := serveInProcess(func(context.Context, RuntimeConfig, ModelConfig, *slog.Logger) (Engine, error) {
		return echoEngine{}, nil
	})
	send := func(req request) {
		t.Helper()
		if err := enc.Encode(&req); err != nil {
			t.Fatal(err)
		}
	}
	answer := func() response {
		t.Helper()
		var resp response
		if err := dec.Decode(&resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	send(request{Op: opOpen})
	if r := answer(); r.Err != nil {
		t.Fatal(r.Err.toError())
	}
	send(request{Op: opPrepare, Key: "a", Image: []byte("image a")})
	send(request{Op: opPrepare, Key: "b", Image: []byte("image b")})
	send(request{Op: opPrepare, Key: "c", Image: []byte("image c")})
	for _, tc := range []struct{ key, want string }{{"c", "image c"}, {"b", "image b"}, {"a", ""}} {
		send(request{Op: opRun, Key: tc.key})
		r := answer()
		switch {
		case tc.want == "" && r.Err == nil:
			t.Fatalf("run %s without an image, dropped from the prepared ones: %+v, want an error", tc.key, r.Result)
		case tc.want != "" && (r.Err != nil || r.Result.Classes[0].Label != tc.want):
			t.Fatalf("run %s: %+v %v, want %q", tc.key, r.Result, r.Err.toError(), tc.want)
		}
	}
	if err := end(); err != nil {
		t.Fatalf("ServeChild after EOF: %v", err)
	}
}
