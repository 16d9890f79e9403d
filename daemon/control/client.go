package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client talks to a running daemon's control socket. Its errors carry the daemon's
// message and match the class sentinels with errors.Is; a daemon that cannot be reached
// gives [ErrUnreachable].
type Client struct {
	hc *http.Client
}

// ErrUnreachable is returned when nothing answers on the socket.
var ErrUnreachable = errors.New("cannot reach inferq (is it running?)")

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{
		Timeout: reloadTimeout + 10*time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Health decodes the health document into out (the daemon's Health type).
func (c *Client) Health(ctx context.Context, out any) error {
	return c.do(ctx, "GET", "/v1/health", nil, out)
}

// Jobs lists held jobs, highest priority first.
func (c *Client) Jobs(ctx context.Context, q JobsQuery) ([]Job, error) {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Source != "" {
		v.Set("source", q.Source)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []Job
	err := c.do(ctx, "GET", "/v1/jobs?"+v.Encode(), nil, &out)
	return out, err
}

// Job looks one job up; an unknown id is [ErrNotFound].
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, "GET", "/v1/jobs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Enqueue queues the image read from r; the job is durable when this returns.
func (c *Client) Enqueue(ctx context.Context, req EnqueueRequest, image io.Reader) (EnqueueResponse, error) {
	v := url.Values{"priority": {strconv.Itoa(req.Priority)}}
	if req.Source != "" {
		v.Set("source", req.Source)
	}
	if req.ID != "" {
		v.Set("id", req.ID)
	}
	var out EnqueueResponse
	err := c.do(ctx, "POST", "/v1/jobs?"+v.Encode(), image, &out)
	return out, err
}

// SetPriority gives a queued job a new priority.
func (c *Client) SetPriority(ctx context.Context, id string, priority int) error {
	return c.do(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/priority", PriorityRequest{Priority: priority}, nil)
}

// Cancel removes a queued, delayed or dead job; a running one is [ErrConflict].
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/cancel", struct{}{}, nil)
}

// Dead lists dead-lettered jobs.
func (c *Client) Dead(ctx context.Context, limit int) ([]DeadJob, error) {
	var out []DeadJob
	err := c.do(ctx, "GET", "/v1/dead?limit="+strconv.Itoa(max(limit, 1)), nil, &out)
	return out, err
}

// RetryDead sends dead jobs back to the queue with their attempts reset.
func (c *Client) RetryDead(ctx context.Context, req DeadRequest) (DeadResponse, error) {
	var out DeadResponse
	err := c.do(ctx, "POST", "/v1/dead/retry", req, &out)
	return out, err
}

// PurgeDead deletes dead jobs for good.
func (c *Client) PurgeDead(ctx context.Context, req DeadRequest) (DeadResponse, error) {
	var out DeadResponse
	err := c.do(ctx, "POST", "/v1/dead/purge", req, &out)
	return out, err
}

// Pause pauses (paused true) or resumes intake, the worker or all.
func (c *Client) Pause(ctx context.Context, what string, paused bool) (PauseState, error) {
	op := "/v1/resume"
	if paused {
		op = "/v1/pause"
	}
	var out PauseState
	err := c.do(ctx, "POST", op, PauseRequest{What: what}, &out)
	return out, err
}

// Reload asks for the model to be reloaded and waits for the outcome; a refused model
// is [ErrRefused] with the reason.
func (c *Client) Reload(ctx context.Context) (ReloadResponse, error) {
	var out ReloadResponse
	err := c.do(ctx, "POST", "/v1/reload", struct{}{}, &out)
	return out, err
}

// Watch calls f with each lifecycle event and health change the daemon streams, the
// current health first, until ctx ends (nil), the daemon stops (io.EOF) or f returns an
// error (that error).
func (c *Client) Watch(ctx context.Context, f func(WatchItem) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://inferq/v1/watch", nil)
	if err != nil {
		return fmt.Errorf("cannot build request: %w", err)
	}
	stream := &http.Client{Transport: c.hc.Transport} // no overall timeout: it streams
	resp, err := stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fromStatus(resp.StatusCode, "inferq answered "+resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var it WatchItem
		if err := dec.Decode(&it); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return err
		}
		if err := f(it); err != nil {
			return err
		}
	}
}

// do sends a request and decodes the JSON answer into out (which may be nil). in is
// sent as JSON, or as it is when it is an io.Reader.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
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
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e errorBody
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&e)
		if e.Error == "" {
			e.Error = "inferq answered " + resp.Status
		}
		return fromStatus(resp.StatusCode, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("cannot decode answer: %w", err)
	}
	return nil
}
