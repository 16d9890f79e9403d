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
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/inferq/inferq/infer/tflite"
	"github.com/inferq/inferq/internal/logkey"
)

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Command starts the child, e.g. [os.Executable(), "engine-child"]; the child must
	// call ServeChild on its stdin/stdout. When Runtime.RuntimeDir is set the supervisor
	// prefixes the closure's loader.
	Command []string
	// Env is extra environment for the child (added to this process's environment).
	Env     []string
	Runtime RuntimeConfig
	Model   ModelConfig
	// StartTimeout bounds starting a child and loading + warming up the model
	// (default 60s).
	StartTimeout time.Duration
	// KillGrace is how long past a run's deadline the child may take to report its own
	// cancellation before it is killed (default 500ms).
	KillGrace time.Duration
	// MaxChildRSS, when > 0, bounds the child's resident memory in bytes: after a run
	// that leaves the child above it (a leak in the runtime or a delegate), the child is
	// replaced before the next job. 0 disables the check.
	MaxChildRSS int64
	Logger      *slog.Logger
}

// SupervisorStats are counters for health reporting.
type SupervisorStats struct {
	Runs           uint64    `json:"runs"`            // Run calls that reached a child
	Restarts       uint64    `json:"restarts"`        // children started after the first
	Crashes        uint64    `json:"crashes"`         // children that died during a run
	Timeouts       uint64    `json:"timeouts"`        // runs past their deadline
	Reloads        uint64    `json:"reloads"`         // successful reloads
	ReloadFailures uint64    `json:"reload_failures"` // reloads that kept the old model
	Recycles       uint64    `json:"recycles"`        // children replaced for exceeding MaxChildRSS
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	ChildPID       int       `json:"child_pid"` // 0 when no child runs
}

// Supervisor runs the engine in a child process and restarts it when it crashes or hangs.
// Run and Reload are serialized; Info, Stats and Close may be called from any goroutine.
type Supervisor struct {
	cfg    SupervisorConfig
	logger *slog.Logger

	runMu sync.Mutex // serializes Run and Reload

	mu      sync.Mutex // guards the fields below
	cur     *child
	info    ModelInfo
	stats   SupervisorStats
	opened  bool
	closed  bool
	started int64
}

// NewSupervisor checks cfg and returns a Supervisor; Open starts the child.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, newErr(ErrBadConfig, true, nil, "supervisor command is empty")
	}
	m, err := cfg.Model.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Model = m
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 500 * time.Millisecond
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, logger: logger}, nil
}

// Open starts the child and loads and warms up the model.
func (s *Supervisor) Open(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.isClosed() {
		return newErr(ErrClosed, false, nil, "supervisor is closed")
	}
	c, err := s.startChild(ctx)
	if err != nil {
		s.setLastError(err)
		return err
	}
	s.mu.Lock()
	s.cur, s.info, s.opened = c, c.info, true
	s.stats.ChildPID = c.pid()
	s.mu.Unlock()
	s.logger.Info("model loaded", logkey.Model, c.info.Name, logkey.SHA256, c.info.SHA256, "runtime", c.info.Runtime, "version", c.info.Version, logkey.ChildPID, c.pid())
	return nil
}

// Run sends one image to the child. A crash or hang costs this run (a transient error)
// and a child restart; the next Run uses the new child.
func (s *Supervisor) Run(ctx context.Context, image []byte) (*Result, error) {
	return s.run(ctx, request{Op: opRun, Image: image})
}

// RunKey is Run for the job key: when the image of key was handed to Prepare (and the
// child still holds it), the child only invokes the model on what it prepared
// (Result.Timings.Prepared), and the image is not sent again. When the child was
// restarted in between, or the prepared image was dropped, the image is decoded as Run
// does; an image that failed to prepare fails only its own run, with the error decoding
// it then would give. Exactly one inference runs at a time, as with Run.
func (s *Supervisor) RunKey(ctx context.Context, image []byte, key string) (*Result, error) {
	return s.run(ctx, request{Op: opRun, Image: image, Key: key})
}

// Prepare hands the child the image of the job expected to run next (key), to decode
// and pre-process on another thread while the current run's model runs; it does not
// wait for the current run. The child keeps the newest maxPrepared. It is a hint: if no
// child runs, or the child is lost, nothing is prepared and RunKey decodes as Run does.
func (s *Supervisor) Prepare(key string, image []byte) {
	if key == "" || len(image) == 0 {
		return
	}
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c == nil {
		return
	}
	// An error means the child is gone or going: the run in flight, or the next one,
	// finds that out and restarts it.
	_ = c.prepare(key, image)
}

func (s *Supervisor) run(ctx context.Context, req request) (*Result, error) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.mu.Lock()
	c, closed, opened := s.cur, s.closed, s.opened
	s.mu.Unlock()
	if closed || !opened {
		return nil, newErr(ErrClosed, false, nil, "supervisor is closed or not open")
	}
	if c == nil {
		var err error
		if c, err = s.restart(ctx); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.stats.Runs++
	s.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = dl
	}
	resp, err := s.call(ctx, c, &req)
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The caller gave up (the daemon is stopping): not the engine's failure. The
		// child was stopped; the next Run starts a new one.
		s.mu.Lock()
		if s.cur == c {
			s.cur = nil
			s.stats.ChildPID = 0
		}
		s.mu.Unlock()
		s.logger.Info("run abandoned by its caller; engine child stopped", logkey.ChildPID, c.pid())
		return nil, err
	}
	if err != nil {
		// The child is dead or was killed: count it, and bring a new one up now so the
		// next job does not pay for it.
		s.mu.Lock()
		if errors.Is(err, ErrTimeout) {
			s.stats.Timeouts++
		} else {
			s.stats.Crashes++
		}
		if s.cur == c {
			s.cur = nil
			s.stats.ChildPID = 0
		}
		s.mu.Unlock()
		s.setLastError(err)
		s.logger.Error("engine child failed, restarting it", logkey.Err, err)
		if !s.isClosed() {
			if _, rerr := s.restart(context.WithoutCancel(ctx)); rerr != nil {
				s.logger.Error("cannot restart engine child", logkey.Err, rerr)
			}
		}
		return nil, err
	}
	if resp.Err != nil {
		err := resp.Err.toError()
		s.setLastError(err)
		return nil, err
	}
	if resp.Result == nil {
		return nil, newErr(ErrEngine, false, nil, "child sent no result")
	}
	s.checkRSS(ctx, c)
	return resp.Result, nil
}

// checkRSS replaces the child when it holds more memory than MaxChildRSS.
func (s *Supervisor) checkRSS(ctx context.Context, c *child) {
	if s.cfg.MaxChildRSS <= 0 {
		return
	}
	rss, err := processRSS(c.pid())
	if err != nil || rss <= s.cfg.MaxChildRSS {
		return
	}
	s.logger.Warn("engine child exceeds max_child_rss, replacing it", logkey.ChildPID, c.pid(), "rss", rss, "max_child_rss", s.cfg.MaxChildRSS)
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
		s.stats.ChildPID = 0
	}
	s.stats.Recycles++
	s.mu.Unlock()
	c.stop(2 * time.Second)
	if _, err := s.restart(context.WithoutCancel(ctx)); err != nil {
		s.logger.Error("cannot restart engine child", logkey.Err, err)
	}
}

// processRSS reads a process's resident set size from /proc.
func processRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, fmt.Errorf("cannot parse /proc/%d/statm", pid)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// restart starts a replacement child for the current model configuration.
func (s *Supervisor) restart(ctx context.Context) (*child, error) {
	c, err := s.startChild(ctx)
	if err != nil {
		s.setLastError(err)
		// Not the job's fault: keep it retryable.
		return nil, newErr(ErrEngineCrashed, false, err, "cannot restart engine child")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		go c.stop(time.Second)
		return nil, newErr(ErrClosed, false, nil, "supervisor is closed")
	}
	s.cur, s.info = c, c.info
	s.stats.Restarts++
	s.stats.ChildPID = c.pid()
	return c, nil
}

// Reload loads Model.Path again in a new child (load and warm up) and swaps it in. If
// that fails, the old model keeps serving and the error is returned (and kept as
// LastError).
func (s *Supervisor) Reload(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.isClosed() {
		return newErr(ErrClosed, false, nil, "supervisor is closed")
	}
	c, err := s.startChild(ctx)
	if err != nil {
		s.mu.Lock()
		s.stats.ReloadFailures++
		old := s.info
		s.mu.Unlock()
		err = fmt.Errorf("cannot reload model %s, keeping %s (sha256 %s): %w", s.cfg.Model.Path, old.Name, old.SHA256, err)
		s.setLastError(err)
		s.logger.Error("model reload failed, keeping the old model", logkey.Err, err)
		return err
	}
	s.mu.Lock()
	old := s.cur
	s.cur, s.info = c, c.info
	s.stats.Reloads++
	s.stats.ChildPID = c.pid()
	s.mu.Unlock()
	if old != nil {
		old.stop(2 * time.Second)
	}
	s.logger.Info("model reloaded", logkey.Model, c.info.Name, logkey.SHA256, c.info.SHA256, logkey.ChildPID, c.pid())
	return nil
}

// UseModel loads the model m describes (a changed model section of the configuration)
// in a new child, warms it up and swaps it in; from then on m is the configuration
// restarts and reloads use. It works whether or not a model was loaded before. If the
// new model does not load, nothing changes: the old model (if any) and its
// configuration keep serving, and the error is returned.
func (s *Supervisor) UseModel(ctx context.Context, m ModelConfig) error {
	m, err := m.withDefaults()
	if err != nil {
		return err
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.isClosed() {
		return newErr(ErrClosed, false, nil, "supervisor is closed")
	}
	prev := s.cfg.Model
	s.cfg.Model = m
	c, err := s.startChild(ctx)
	if err != nil {
		s.cfg.Model = prev
		s.mu.Lock()
		s.stats.ReloadFailures++
		s.mu.Unlock()
		err = fmt.Errorf("cannot load model %s with the new model settings, keeping the previous ones: %w", m.Path, err)
		s.setLastError(err)
		return err
	}
	s.mu.Lock()
	old := s.cur
	s.cur, s.info, s.opened = c, c.info, true
	s.stats.Reloads++
	s.stats.ChildPID = c.pid()
	s.mu.Unlock()
	if old != nil {
		old.stop(2 * time.Second)
	}
	s.logger.Info("model loaded with new settings", logkey.Model, c.info.Name, logkey.SHA256, c.info.SHA256, logkey.ChildPID, c.pid())
	return nil
}

// Info describes the model in use.
func (s *Supervisor) Info() ModelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Stats returns the counters.
func (s *Supervisor) Stats() SupervisorStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close stops the child (a run in flight fails). Safe to call twice and after a failed
// Open.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	c := s.cur
	s.cur, s.closed = nil, true
	s.stats.ChildPID = 0
	s.mu.Unlock()
	if c != nil {
		c.stop(2 * time.Second)
	}
	return nil
}

func (s *Supervisor) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Supervisor) setLastError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.LastError, s.stats.LastErrorAt = err.Error(), time.Now().UTC()
}

// startChild starts a child process and opens the model in it.
func (s *Supervisor) startChild(ctx context.Context) (*child, error) {
	argv := s.cfg.Command
	if s.cfg.Runtime.RuntimeDir != "" {
		rt, err := tflite.FindRuntime(s.cfg.Runtime.RuntimeDir)
		if err != nil {
			return nil, newErr(ErrRuntimeMissing, false, err, "")
		}
		argv = rt.Command(argv...)
	}
	c, err := startProcess(argv, append(os.Environ(), s.cfg.Env...), s.logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	resp, err := s.call(ctx, c, &request{Op: opOpen, Runtime: s.cfg.Runtime, Model: s.cfg.Model})
	if err != nil {
		c.stop(time.Second)
		return nil, fmt.Errorf("cannot start engine child: %w", err)
	}
	if resp.Err != nil {
		c.stop(time.Second)
		return nil, resp.Err.toError()
	}
	if resp.Info == nil {
		c.stop(time.Second)
		return nil, newErr(ErrEngine, false, nil, "child sent no model info")
	}
	c.info = *resp.Info
	s.mu.Lock()
	s.started++
	s.mu.Unlock()
	return c, nil
}

// call sends req and waits for the answer. It returns an error (wrapping ErrTimeout or
// ErrEngineCrashed) only when the child is unusable afterwards; the child is then killed.
func (s *Supervisor) call(ctx context.Context, c *child, req *request) (response, error) {
	if err := c.send(req); err != nil {
		c.kill()
		return response{}, newErr(ErrEngineCrashed, false, err, "cannot send request to child%s", c.stderrTail())
	}
	var grace <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case r := <-c.resps:
			if r.err != nil {
				c.kill()
				return response{}, newErr(ErrEngineCrashed, false, nil, "child died (%s)%s", c.exitStatus(), c.stderrTail())
			}
			return r.resp, nil
		case <-c.exited:
			select {
			case r := <-c.resps:
				if r.err == nil {
					return r.resp, nil
				}
			default:
			}
			return response{}, newErr(ErrEngineCrashed, false, nil, "child died (%s)%s", c.exitStatus(), c.stderrTail())
		case <-done:
			done = nil
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && req.Op == opRun && (c.info.TFLite == nil || c.info.TFLite.Cancel) {
				// The child cancels the invoke itself at the deadline; give it a moment.
				// (A library without the cancellation API cannot: the child is killed now.)
				t := time.NewTimer(s.cfg.KillGrace)
				defer t.Stop()
				grace = t.C
				continue
			}
			c.kill()
			return response{}, newErr(ErrTimeout, false, ctx.Err(), "child killed")
		case <-grace:
			c.kill()
			return response{}, newErr(ErrTimeout, false, context.DeadlineExceeded, "child did not stop at the deadline: killed")
		}
	}
}

// child is one engine child process. Its three goroutines (response decoder, stderr
// reader, waiter) are owned by it: kill and stop end the child and wait for the decoder,
// which gives up a response nobody will read (one that arrived after the caller gave up)
// instead of blocking on resps forever.
type child struct {
	cmd      *exec.Cmd
	stdin    *os.File
	stdout   *os.File
	bw       *bufio.Writer
	enc      *gob.Encoder
	resps    chan childResp
	exited   chan struct{}
	quit     chan struct{} // closed when the child is abandoned (kill, stop)
	quitOnce sync.Once
	readDone chan struct{} // closed when the decoder goroutine has returned
	info     ModelInfo

	sendMu sync.Mutex // one message at a time on stdin: a prepare may go during a run
	// prepared are the keys this child was sent to prepare and has not run yet, newest
	// last, kept as the child keeps them (at most maxPrepared), so that a run for one of
	// them leaves its image out.
	prepared []string

	mu      sync.Mutex
	waitErr error
	tail    []string
}

type childResp struct {
	resp response
	err  error
}

func startProcess(argv []string, env []string, logger *slog.Logger) (*child, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("cannot create pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("cannot create pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("cannot create pipe: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// The child dies with us; it runs in its own process group so a terminal's signals
	// reach the daemon, which decides.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, newErr(ErrEngineCrashed, false, err, "cannot start engine child %q", argv[0])
	}
	c := &child{cmd: cmd, stdin: inW, stdout: outR, resps: make(chan childResp, 1), exited: make(chan struct{}),
		quit: make(chan struct{}), readDone: make(chan struct{})}
	c.bw = bufio.NewWriter(inW)
	c.enc = gob.NewEncoder(c.bw)
	pid := cmd.Process.Pid
	go c.decode()
	go func() {
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 6 {
				c.tail = c.tail[len(c.tail)-6:]
			}
			c.mu.Unlock()
			logger.Info("engine child", logkey.ChildPID, pid, "stderr", line)
		}
	}()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// decode reads the child's responses into resps until the pipe ends or the child is
// abandoned: a response (or the end of the pipe) that no caller will read is dropped.
func (c *child) decode() {
	defer close(c.readDone)
	defer c.stdout.Close()
	dec := gob.NewDecoder(bufio.NewReader(c.stdout))
	for {
		var r childResp
		if err := dec.Decode(&r.resp); err != nil {
			r = childResp{err: err}
		}
		select {
		case c.resps <- r:
		case <-c.quit:
			return
		}
		if r.err != nil {
			return
		}
	}
}

// abandon tells the decoder that nobody reads responses any more, closes the pipe it
// reads (in case something else still holds the child's end open) and waits for it.
func (c *child) abandon() {
	c.quitOnce.Do(func() {
		close(c.quit)
		c.stdout.Close()
	})
	<-c.readDone
}

func (c *child) send(req *request) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if req.Op == opRun && req.Key != "" && c.forget(req.Key) {
		r := *req
		r.Image = nil // the child has it, prepared
		req = &r
	}
	if err := c.enc.Encode(req); err != nil {
		return err
	}
	return c.bw.Flush()
}

// prepare sends a prepare request: the child starts on it when it reads it, also while
// it runs a model.
func (c *child) prepare(key string, image []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.forget(key)
	c.prepared = append(c.prepared, key)
	if len(c.prepared) > maxPrepared {
		c.prepared = c.prepared[1:]
	}
	if err := c.enc.Encode(&request{Op: opPrepare, Key: key, Image: image}); err != nil {
		return err
	}
	return c.bw.Flush()
}

// forget removes key from the prepared keys and reports whether it was there (the
// child does the same when it reads the request, in the same order).
func (c *child) forget(key string) bool {
	for i, k := range c.prepared {
		if k == key {
			c.prepared = append(c.prepared[:i], c.prepared[i+1:]...)
			return true
		}
	}
	return false
}

// kill ends the child at once; its goroutines are done when kill returns.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	c.stdin.Close()
	c.abandon()
}

// stop closes the child's stdin (ServeChild then returns) and kills it after wait; its
// goroutines are done when stop returns.
func (c *child) stop(wait time.Duration) {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(wait):
		c.kill()
		return
	}
	c.abandon()
}

func (c *child) exitStatus() string {
	select {
	case <-c.exited:
	case <-time.After(2 * time.Second):
		c.kill()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waitErr == nil {
		return "exit status 0"
	}
	return c.waitErr.Error()
}

func (c *child) stderrTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tail) == 0 {
		return ""
	}
	return "; last stderr: " + strings.Join(c.tail, " | ")
}

var _ Engine = (*Supervisor)(nil)

var _ io.Closer = (*Supervisor)(nil)
