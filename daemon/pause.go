package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/inferq/inferq/daemon/control"
)

// Operators pause intake (no new input: spool files stay in the spool, MQTT ingest is
// not acknowledged so the broker keeps it) or the worker (nothing more is run; queued
// jobs wait), and resume them. The state is kept in state_dir/paused.json, written
// atomically, so a pause holds across restarts and reboots until resumed.

// PauseState is what is paused.
type PauseState = control.PauseState

// errPauseWhat is an unknown pause target.
var errPauseWhat = errors.New("want intake, worker or all")

// errIntakePaused is what sources meet while intake is paused.
var errIntakePaused = errors.New("intake paused by an operator (inferq resume intake)")

// pauses holds the pause state and its file.
type pauses struct {
	path string
	mu   sync.Mutex
	st   PauseState
}

func loadPauses(stateDir string) (*pauses, error) {
	p := &pauses{path: filepath.Join(stateDir, "paused.json")}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read pause state: %w", err)
	}
	if err := json.Unmarshal(b, &p.st); err != nil {
		return nil, fmt.Errorf("pause state %s: %w (remove the file to resume everything)", p.path, err)
	}
	return p, nil
}

func (p *pauses) get() PauseState {
	if p == nil {
		return PauseState{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// set changes what is paused (what: intake, worker or all) and stores it durably
// before it returns.
func (p *pauses) set(what string, paused bool) (PauseState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	switch what {
	case "intake":
		st.Intake = paused
	case "worker":
		st.Worker = paused
	case "all", "":
		st.Intake, st.Worker = paused, paused
	default:
		return p.st, fmt.Errorf("%q: %w", what, errPauseWhat)
	}
	b, _ := json.Marshal(st)
	if err := writeFileSync(p.path, b); err != nil {
		return p.st, fmt.Errorf("cannot store pause state: %w", err)
	}
	p.st = st
	return st, nil
}

// writeFileSync writes path atomically and durably: a temp file, fsync, rename, fsync
// of the directory.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
