package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Backend is what the control API asks of a daemon. Errors are classified with this
// package's sentinels (see [Errorf]); an unclassified error is answered as internal.
type Backend interface {
	// Health returns the current health document (any JSON-encodable value).
	Health() any
	Jobs(ctx context.Context, q JobsQuery) ([]Job, error)
	Job(ctx context.Context, id string) (Job, error)
	Enqueue(ctx context.Context, req EnqueueRequest, image []byte) (EnqueueResponse, error)
	SetPriority(ctx context.Context, id string, priority int) error
	Cancel(ctx context.Context, id string) error
	Dead(ctx context.Context, limit int) ([]DeadJob, error)
	RetryDead(ctx context.Context, req DeadRequest) (DeadResponse, error)
	PurgeDead(ctx context.Context, req DeadRequest) (DeadResponse, error)
	Pause(ctx context.Context, what string, paused bool) (PauseState, error)
	// Reload swaps in the model and answers once it serves, or why it was refused.
	Reload(ctx context.Context) (ReloadResponse, error)
	// MaxImageBytes bounds an enqueued image.
	MaxImageBytes() int64
	// Watch streams lifecycle events and health changes until ctx ends; the channel
	// is closed then.
	Watch(ctx context.Context) <-chan WatchItem
}

// DefaultLimit is how many jobs a listing gives when the request names no limit.
const DefaultLimit = 100

// maxJSONBody bounds every JSON request body.
const maxJSONBody = 1 << 20

// reloadTimeout bounds how long a reload request waits for the new model.
const reloadTimeout = 2 * time.Minute

// Handler serves the control API from b. Streams (watch) end when stop is closed.
func Handler(b Backend, stop <-chan struct{}) http.Handler {
	h := &handler{b: b, stop: stop}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Health()) })
	mux.HandleFunc("GET /v1/jobs", h.jobs)
	mux.HandleFunc("GET /v1/jobs/{id}", h.job)
	mux.HandleFunc("POST /v1/jobs", h.enqueue)
	mux.HandleFunc("POST /v1/jobs/{id}/priority", h.priority)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", h.cancel)
	mux.HandleFunc("GET /v1/dead", h.dead)
	mux.HandleFunc("POST /v1/dead/retry", h.deadOp(b.RetryDead))
	mux.HandleFunc("POST /v1/dead/purge", h.deadOp(b.PurgeDead))
	mux.HandleFunc("POST /v1/pause", h.pause(true))
	mux.HandleFunc("POST /v1/resume", h.pause(false))
	mux.HandleFunc("POST /v1/reload", h.reload)
	mux.HandleFunc("GET /v1/watch", h.watch)
	return mux
}

type handler struct {
	b    Backend
	stop <-chan struct{}
}

// watch streams WatchItems as JSON lines, each flushed as it comes.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	items := h.b.Watch(ctx)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-h.stop:
			return
		case it, ok := <-items:
			if !ok {
				return
			}
			if err := enc.Encode(it); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func (h *handler) jobs(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := JobsQuery{State: r.URL.Query().Get("state"), Source: r.URL.Query().Get("source"), Limit: limit}
	jobs, err := h.b.Jobs(r.Context(), q)
	answer(w, jobs, err)
}

func (h *handler) job(w http.ResponseWriter, r *http.Request) {
	j, err := h.b.Job(r.Context(), r.PathValue("id"))
	answer(w, j, err)
}

func (h *handler) enqueue(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	req := EnqueueRequest{ID: qv.Get("id"), Source: qv.Get("source")}
	if s := qv.Get("priority"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, Errorf(ErrInvalid, "priority %q: not a number", s))
			return
		}
		req.Priority = n
	}
	img, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.b.MaxImageBytes()))
	if err != nil {
		writeError(w, Errorf(ErrTooLarge, "cannot read the image: %v", err))
		return
	}
	resp, err := h.b.Enqueue(r.Context(), req, img)
	answer(w, resp, err)
}

func (h *handler) priority(w http.ResponseWriter, r *http.Request) {
	var req PriorityRequest
	if !decode(w, r, &req) {
		return
	}
	id := r.PathValue("id")
	answer(w, JobOpResponse{ID: id, Status: "ok"}, h.b.SetPriority(r.Context(), id, req.Priority))
}

func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	answer(w, JobOpResponse{ID: id, Status: "ok"}, h.b.Cancel(r.Context(), id))
}

func (h *handler) dead(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	dead, err := h.b.Dead(r.Context(), limit)
	answer(w, dead, err)
}

func (h *handler) deadOp(op func(context.Context, DeadRequest) (DeadResponse, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req DeadRequest
		if !decode(w, r, &req) {
			return
		}
		if req.All == (len(req.IDs) > 0) {
			writeError(w, Errorf(ErrInvalid, "give the ids of dead jobs, or all"))
			return
		}
		resp, err := op(r.Context(), req)
		answer(w, resp, err)
	}
}

func (h *handler) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req PauseRequest
		if !decode(w, r, &req) {
			return
		}
		st, err := h.b.Pause(r.Context(), req.What, paused)
		answer(w, st, err)
	}
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), reloadTimeout)
	defer cancel()
	resp, err := h.b.Reload(ctx)
	answer(w, resp, err)
}

// limitParam reads ?limit=N (default [DefaultLimit]); false when it answered an error.
func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultLimit, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		writeError(w, Errorf(ErrInvalid, "limit %q: want a positive number", s))
		return 0, false
	}
	return n, true
}

// decode reads a bounded JSON body into v; false when it answered an error.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(v); err != nil {
		writeError(w, Errorf(ErrInvalid, "cannot parse request: %v", err))
		return false
	}
	return true
}

func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, httpStatus(err), errorBody{Error: err.Error()})
}

// Server serves a [Backend] on a unix socket.
type Server struct {
	path     string
	ln       net.Listener
	srv      *http.Server
	stop     chan struct{} // closed when shutting down: ends the streams
	stopOnce sync.Once
}

// Listen creates the socket at path (and its directory) for b. A socket file left by a
// killed process is replaced; one another process answers on is an error.
func Listen(path string, b Backend, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cannot create control socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("cannot listen on control socket %s: another inferq is running", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cannot set control socket mode: %w", err)
	}
	stop := make(chan struct{})
	return &Server{path: path, ln: ln, stop: stop, srv: &http.Server{
		Handler: Handler(b, stop), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

// Run serves until ctx is cancelled, then shuts down: it returns once in-flight
// requests ended, or after a 2 s grace.
func (s *Server) Run(ctx context.Context) error {
	served := make(chan struct{})
	stopped := make(chan struct{})
	go func() { // owned by Run: ends with ctx (after Shutdown) or when Serve returned
		defer close(stopped)
		select {
		case <-ctx.Done():
			s.stopOnce.Do(func() { close(s.stop) })
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = s.srv.Shutdown(sctx)
		case <-served:
		}
	}()
	err := s.srv.Serve(s.ln)
	close(served)
	<-stopped
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cannot serve control API: %w", err)
	}
	return nil
}

// Close stops serving at once and removes the socket file.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	err := s.srv.Close()
	_ = os.Remove(s.path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
