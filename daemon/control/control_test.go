package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// failing answers every call with err.
type failing struct{ err error }

func (f failing) Health() any                                    { return map[string]string{"status": "ok"} }
func (f failing) Jobs(context.Context, JobsQuery) ([]Job, error) { return nil, f.err }
func (f failing) Job(context.Context, string) (Job, error)       { return Job{}, f.err }
func (f failing) Enqueue(context.Context, EnqueueRequest, []byte) (EnqueueResponse, error) {
	return EnqueueResponse{}, f.err
}
func (f failing) SetPriority(context.Context, string, int) error { return f.err }
func (f failing) Cancel(context.Context, string) error           { return f.err }
func (f failing) Dead(context.Context, int) ([]DeadJob, error)   { return nil, f.err }
func (f failing) RetryDead(context.Context, DeadRequest) (DeadResponse, error) {
	return DeadResponse{}, f.err
}
func (f failing) PurgeDead(context.Context, DeadRequest) (DeadResponse, error) {
	return DeadResponse{}, f.err
}
func (f failing) Pause(context.Context, string, bool) (PauseState, error) { return PauseState{}, f.err }
func (f failing) Reload(context.Context) (ReloadResponse, error)          { return ReloadResponse{}, f.err }
func (f failing) MaxImageBytes() int64                                    { return 16 }

// Watch sends one health item and one event, then nothing until ctx ends.
func (f failing) Watch(ctx context.Context) <-chan WatchItem {
	ch := make(chan WatchItem, 2)
	ch <- WatchItem{Type: WatchHealth, Data: []byte(`{"status":"ok"}`)}
	ch <- WatchItem{Type: WatchEvent, Data: []byte(`{"event":"queued"}`)}
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv, err := Listen(sock, b, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return NewClient(sock)
}

// TestErrorClasses: a backend error's class and message cross the socket unchanged, so
// the CLI can pick its exit code with errors.Is; an unclassified error stays unclassified.
func TestErrorClasses(t *testing.T) {
	classes := []error{ErrNotFound, ErrConflict, ErrInvalid, ErrUnavailable, ErrRefused, ErrTooLarge}
	for _, class := range append(classes, nil) {
		name := "unclassified"
		var berr error = errors.New("disk on fire")
		if class != nil {
			name = class.Error()
			berr = fmt.Errorf("wrapped: %w", Errorf(class, "job %q: the daemon's words", "x"))
		}
		t.Run(name, func(t *testing.T) {
			c := serve(t, failing{berr})
			ctx := context.Background()
			calls := map[string]error{}
			_, calls["jobs"] = c.Jobs(ctx, JobsQuery{})
			_, calls["job"] = c.Job(ctx, "x")
			_, calls["enqueue"] = c.Enqueue(ctx, EnqueueRequest{}, strings.NewReader("img"))
			calls["priority"] = c.SetPriority(ctx, "x", 1)
			calls["cancel"] = c.Cancel(ctx, "x")
			_, calls["dead"] = c.Dead(ctx, 5)
			_, calls["retry"] = c.RetryDead(ctx, DeadRequest{All: true})
			_, calls["purge"] = c.PurgeDead(ctx, DeadRequest{IDs: []string{"x"}})
			_, calls["pause"] = c.Pause(ctx, "all", true)
			_, calls["reload"] = c.Reload(ctx)
			for call, err := range calls {
				if err == nil || !strings.Contains(err.Error(), berr.Error()) && !strings.Contains(berr.Error(), err.Error()) {
					t.Errorf("%s: %v, want the backend's message %q", call, err, berr)
				}
				for _, other := range classes {
					if errors.Is(err, other) != (other == class) {
						t.Errorf("%s: errors.Is(%v, %v) = %v", call, err, other, !(other == class))
					}
				}
			}
		})
	}
}

// TestRequestChecks: requests the server refuses before the backend sees them.
func TestRequestChecks(t *testing.T) {
	c := serve(t, failing{errors.New("backend reached")})
	ctx := context.Background()
	if _, err := c.RetryDead(ctx, DeadRequest{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("retry with neither ids nor all: %v, want ErrInvalid", err)
	}
	if _, err := c.PurgeDead(ctx, DeadRequest{IDs: []string{"a"}, All: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("purge with both ids and all: %v, want ErrInvalid", err)
	}
	if _, err := c.Enqueue(ctx, EnqueueRequest{}, strings.NewReader(strings.Repeat("x", 17))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("image over MaxImageBytes: %v, want ErrTooLarge", err)
	}
	if err := c.do(ctx, "GET", "/v1/jobs?limit=0", nil, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("limit 0: %v", err)
	}
	var h map[string]string
	if err := c.Health(ctx, &h); err != nil || h["status"] != "ok" {
		t.Errorf("health: %v %v", h, err)
	}
}

// TestWatchStreamsUntilStop: items arrive as they are sent, and a server shutting down
// ends the stream (the client sees io.EOF) instead of holding Run for its grace.
func TestWatchStreamsUntilStop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv, err := Listen(sock, failing{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	var got []string
	watched := make(chan error, 1)
	go func() {
		watched <- NewClient(sock).Watch(context.Background(), func(it WatchItem) error {
			got = append(got, it.Type+" "+string(it.Data))
			if len(got) == 2 {
				cancel() // the daemon stops while the watcher is connected
			}
			return nil
		})
	}()
	select {
	case err := <-watched:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("watch ended with %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when the server stopped")
	}
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	want := []string{`health {"status":"ok"}`, `event {"event":"queued"}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("items %q, want %q", got, want)
	}
}

// TestUnreachable: no daemon on the socket is ErrUnreachable, not a class of the API.
func TestUnreachable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Job(context.Background(), "x")
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

// TestCloseEndsRun: Close while Run serves makes Run return (its shutdown goroutine does
// not wait for a context nobody cancels) and removes the socket.
func TestCloseEndsRun(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv, err := Listen(sock, failing{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	time.Sleep(10 * time.Millisecond) // Run may start after Close; both orders must end
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if _, err := NewClient(sock).Job(context.Background(), "x"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("after Close: %v", err)
	}
}
