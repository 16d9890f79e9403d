package daemon

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/inferq/inferq/daemon/control"
)

// watchBuffer is how many items a watcher may fall behind before items are dropped
// for it (and counted in a "dropped" item once it catches up).
const watchBuffer = 256

// watchHub fans the daemon's lifecycle events and health changes out to the control
// API's watchers (inferq watch). Publishing never blocks the daemon: a watcher that
// does not keep up loses items and is told how many.
type watchHub struct {
	mu   sync.Mutex
	subs map[*watcherSub]struct{}
}

type watcherSub struct {
	ch      chan control.WatchItem
	dropped int
}

// subscribe returns a channel of items that ends when ctx ends. first, when set, is
// sent before anything else (the current health).
func (h *watchHub) subscribe(ctx context.Context, first *control.WatchItem) <-chan control.WatchItem {
	s := &watcherSub{ch: make(chan control.WatchItem, watchBuffer)}
	if first != nil {
		s.ch <- *first
	}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[*watcherSub]struct{}{}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	out := make(chan control.WatchItem)
	go func() { // owned by the watcher: ends with its ctx
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case it := <-s.ch:
				select {
				case out <- it:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// publish hands data (a JSON document) of the given type to every watcher.
func (h *watchHub) publish(typ string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.dropped > 0 {
			select {
			case s.ch <- control.WatchItem{Type: control.WatchDropped, Dropped: s.dropped}:
				s.dropped = 0
			default:
				s.dropped++
				continue
			}
		}
		select {
		case s.ch <- control.WatchItem{Type: typ, Data: json.RawMessage(data)}:
		default:
			s.dropped++
		}
	}
}

// watched reports whether anyone watches, so callers can skip building items.
func (h *watchHub) watched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}
