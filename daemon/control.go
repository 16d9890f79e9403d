package daemon

import (
	"bytes"
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
	"time"

	"github.com/inferq/inferq/queue"
)

// The control API is HTTP on a unix socket (mode 0660), for the inferq CLI on the same box:
//
//	GET  /v1/health               the current health document
//	GET  /v1/jobs?state=S&source=S&limit=N   held jobs, highest priority first
//	GET  /v1/jobs/{id}            one job: held, or done within the dedupe window (404: unknown)
//	POST /v1/jobs?priority=N&source=S&id=ID   body: image bytes; a new job, durable when answered
//	POST /v1/jobs/{id}/priority   {"priority":N}: a held job's new priority
//	POST /v1/jobs/{id}/cancel     remove a queued, delayed or dead job (409: running)
//	GET  /v1/dead?limit=N         dead-lettered jobs with their reasons
//	POST /v1/dead/retry           {"ids":[...]} or {"all":true}: back to the queue, attempts reset
//	POST /v1/dead/purge           {"ids":[...]} or {"all":true}: delete for good
//	POST /v1/pause, /v1/resume    {"what":"intake"|"worker"|"all"}: kept across restarts
//	POST /v1/reload               swap in the model file's current content before the next job;
//	                              answers once done: 200 with the model, 422 with why it was refused
type controlServer struct {
	path string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
}

// DeadRequest selects dead jobs for retry or purge.
type DeadRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// DeadResponse says how many jobs a retry or purge touched.
type DeadResponse struct {
	Count int `json:"count"`
}

// JobEntry is one job as the control API shows it. Times are omitted when they do not
// apply to the job's state.
type JobEntry struct {
	ID         string            `json:"id"`
	State      string            `json:"state"`
	Priority   int               `json:"priority"`
	Source     string            `json:"source,omitempty"`
	Attempts   int               `json:"attempts"`
	LastError  string            `json:"last_error,omitempty"`
	EnqueuedAt *time.Time        `json:"enqueued_at,omitempty"`
	Deadline   *time.Time        `json:"deadline,omitempty"`
	Due        *time.Time        `json:"due,omitempty"`
	LeaseUntil *time.Time        `json:"lease_until,omitempty"`
	DeadReason string            `json:"dead_reason,omitempty"`
	DiedAt     *time.Time        `json:"died_at,omitempty"`
	DoneAt     *time.Time        `json:"done_at,omitempty"`
	ImageBytes int64             `json:"image_bytes,omitempty"`
	ImageSHA   string            `json:"image_sha256,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

func jobEntry(j queue.JobInfo) JobEntry {
	e := JobEntry{ID: j.ID, State: j.State, Priority: j.Priority, Source: j.Source, Attempts: j.Attempt,
		LastError: j.LastError, EnqueuedAt: timePtr(j.EnqueuedAt), Deadline: timePtr(j.Deadline), Due: timePtr(j.Due),
		LeaseUntil: timePtr(j.LeaseUntil), DeadReason: j.DeadReason, DiedAt: timePtr(j.DiedAt), DoneAt: timePtr(j.DoneAt),
		ImageBytes: j.ImageSize, Metadata: j.Meta}
	if j.State != "done" {
		e.ImageSHA = j.ImageSHA256
	}
	return e
}

// PauseRequest says what to pause or resume: intake, worker or all.
type PauseRequest struct {
	What string `json:"what"`
}

// ReloadResponse answers a reload that succeeded: the model now serving.
type ReloadResponse struct {
	Model  string `json:"model"`
	SHA256 string `json:"sha256"`
}

// PriorityRequest is the body of POST /v1/jobs/{id}/priority.
type PriorityRequest struct {
	Priority int `json:"priority"`
}

// EnqueueResponse answers POST /v1/jobs.
type EnqueueResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
	State     string `json:"state,omitempty"` // of the job already held, when Duplicate
}

// writeJobOp answers an operation on one job.
func writeJobOp(w http.ResponseWriter, id string, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "ok"})
	case errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Errorf("job %q: not found (not queued)", id))
	case errors.Is(err, queue.ErrRunning):
		writeError(w, http.StatusConflict, fmt.Errorf("job %q is running now; it can be cancelled only while queued", id))
	case errors.Is(err, queue.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

// controlEnqueue queues the image in the request body (the "reprocess" action): the
// answer comes once the job is durable.
func (d *Daemon) controlEnqueue(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	job := queue.NewJob{ID: qv.Get("id"), Source: qv.Get("source"), Deadline: d.deadline(time.Time{})}
	if job.ID == "" {
		job.ID = "cli-" + strconv.FormatInt(d.now().UnixNano(), 36)
	}
	if job.Source == "" {
		job.Source = "cli"
	}
	if s := qv.Get("priority"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("priority %q: want 0..9", s))
			return
		}
		job.Priority = n
	}
	img, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(d.cfg.Spool.MaxFileSize)))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("cannot read the image: %w", err))
		return
	}
	job.Image = img
	res, err := d.q.Enqueue(r.Context(), job)
	switch {
	case errors.Is(err, queue.ErrFull):
		writeError(w, http.StatusServiceUnavailable, err)
		return
	case errors.Is(err, queue.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if !res.Duplicate {
		d.queued(job.ID, job.Source)
	}
	d.pokeHealth()
	writeJSON(w, http.StatusOK, EnqueueResponse{ID: job.ID, Duplicate: res.Duplicate, State: res.State})
}

// DeadEntry is one dead-lettered job as the control API lists it.
type DeadEntry struct {
	ID         string            `json:"id"`
	Source     string            `json:"source"`
	Priority   int               `json:"priority"`
	Attempts   int               `json:"attempts"`
	Reason     string            `json:"reason"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	DiedAt     time.Time         `json:"died_at"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

func listenControl(path string, d *Daemon, log *slog.Logger) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cannot create control socket directory: %w", err)
	}
	// A socket left by a killed process would make Listen fail; nobody listens on it.
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Health())
	})
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		f := queue.JobFilter{State: r.URL.Query().Get("state"), Source: r.URL.Query().Get("source"), Limit: 100}
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a positive number", s))
				return
			}
			f.Limit = n
		}
		jobs, err := d.q.Jobs(f)
		if errors.Is(err, queue.ErrInvalid) {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out := make([]JobEntry, 0, len(jobs))
		for _, j := range jobs {
			out = append(out, jobEntry(j))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		j, err := d.q.Get(r.PathValue("id"))
		switch {
		case errors.Is(err, queue.ErrNotFound):
			writeError(w, http.StatusNotFound, fmt.Errorf("job %q: not found (not queued, and not done within the dedupe window)", r.PathValue("id")))
		case errors.Is(err, queue.ErrInvalid):
			writeError(w, http.StatusBadRequest, err)
		case err != nil:
			writeError(w, http.StatusInternalServerError, err)
		default:
			writeJSON(w, http.StatusOK, jobEntry(j))
		}
	})
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		d.controlEnqueue(w, r)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/priority", func(w http.ResponseWriter, r *http.Request) {
		var req PriorityRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("cannot parse request: %w", err))
			return
		}
		writeJobOp(w, r.PathValue("id"), d.q.SetPriority(r.Context(), r.PathValue("id"), req.Priority))
		d.pokeHealth()
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		writeJobOp(w, r.PathValue("id"), d.q.Cancel(r.Context(), r.PathValue("id")))
		d.pokeHealth()
	})
	mux.HandleFunc("GET /v1/dead", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a positive number", s))
				return
			}
			limit = n
		}
		dead, err := d.q.ListDead(limit)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out := make([]DeadEntry, 0, len(dead))
		for _, j := range dead {
			out = append(out, DeadEntry{ID: j.Job.ID, Source: j.Job.Source, Priority: j.Job.Priority, Attempts: j.Job.Attempt,
				Reason: j.Reason, EnqueuedAt: j.Job.EnqueuedAt, DiedAt: j.DiedAt, Metadata: j.Job.Meta})
		}
		writeJSON(w, http.StatusOK, out)
	})
	deadOp := func(op func(ctx context.Context, ids []string) (int, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req DeadRequest
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("cannot parse request: %w", err))
				return
			}
			if req.All == (len(req.IDs) > 0) {
				writeError(w, http.StatusBadRequest, errors.New(`give either "ids" or "all": true`))
				return
			}
			n, err := op(r.Context(), req.IDs)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			d.pokeHealth()
			writeJSON(w, http.StatusOK, DeadResponse{Count: n})
		}
	}
	mux.HandleFunc("POST /v1/dead/retry", deadOp(func(ctx context.Context, ids []string) (int, error) {
		if len(ids) == 0 { // deadOp lets an empty list through only with "all": true
			return d.q.RetryAllDead(ctx)
		}
		return d.q.RetryDead(ctx, ids...)
	}))
	mux.HandleFunc("POST /v1/dead/purge", deadOp(func(ctx context.Context, ids []string) (int, error) {
		if len(ids) == 0 {
			return d.q.PurgeAllDead()
		}
		return d.q.PurgeDead(ids...)
	}))
	for _, op := range []string{"pause", "resume"} {
		mux.HandleFunc("POST /v1/"+op, func(w http.ResponseWriter, r *http.Request) {
			var req PauseRequest
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("cannot parse request: %w", err))
				return
			}
			st, err := d.Pause(req.What, op == "pause")
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			writeJSON(w, http.StatusOK, st)
		})
	}
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		if err := d.Reload(ctx); err != nil {
			writeError(w, http.StatusUnprocessableEntity, err)
			return
		}
		info := d.eng.Info()
		writeJSON(w, http.StatusOK, ReloadResponse{Model: info.Name, SHA256: info.SHA256})
	})
	return &controlServer{path: path, ln: ln, log: log,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

func (c *controlServer) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.srv.Shutdown(sctx)
	}()
	if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cannot serve control API: %w", err)
	}
	return nil
}

func (c *controlServer) Close() error {
	err := c.srv.Close()
	_ = os.Remove(c.path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// ControlClient talks to a running daemon's control socket.
type ControlClient struct {
	hc *http.Client
}

// NewControlClient returns a client for the control socket at path.
func NewControlClient(path string) *ControlClient {
	return &ControlClient{hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Do sends a request and decodes the JSON answer into out (which may be nil). in is
// sent as JSON, or as it is when it is an io.Reader.
func (c *ControlClient) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if r, ok := in.(io.Reader); ok {
		body = r
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cannot encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://inferq"+path, body)
	if err != nil {
		return fmt.Errorf("cannot build request: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach inferq (is it running?): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("inferq answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("cannot decode answer: %w", err)
	}
	return nil
}
