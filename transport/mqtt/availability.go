package mqtt

import "encoding/json"

// Availability is the JSON on <prefix>/<node>/available when Config.Birth is set.
//
// Every connection is a birth: before it is made, Birth hands out the box's boot id and
// the next number of its sequence. That connection's "online" (published once
// connected), its "offline" will (published by the broker when the connection dies
// without a clean disconnect) and its "stopped" (published by Close) all carry the same
// boot id and sequence number, as Sparkplug's NBIRTH and NDEATH share a bdSeq. Consumers
// order availability by Seq: a message with a lower Seq than one already seen is stale
// (a will delayed past a reconnect, a retained message of an earlier run); with the
// same Seq, "offline" or "stopped" ends the "online" it belongs to.
type Availability struct {
	State  string `json:"state"` // Online, Offline or Stopped
	BootID string `json:"boot_id,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

// ParseAvailability reads an availability payload: the JSON above, or a bare word
// (online, offline, stopped) as published without Config.Birth. ok is false for
// anything else.
func ParseAvailability(payload []byte) (a Availability, ok bool) {
	switch s := string(payload); s {
	case Online, Offline, Stopped:
		return Availability{State: s}, true
	}
	if err := json.Unmarshal(payload, &a); err != nil {
		return Availability{}, false
	}
	switch a.State {
	case Online, Offline, Stopped:
		return a, true
	}
	return Availability{}, false
}

// births are one connection's availability payloads.
type births struct {
	online, offline, stopped []byte
}

// newBirths numbers a new connection with birth (nil: the bare words).
func newBirths(birth func() (bootID string, seq uint64)) births {
	if birth == nil {
		return births{online: []byte(Online), offline: []byte(Offline), stopped: []byte(Stopped)}
	}
	id, seq := birth()
	enc := func(state string) []byte {
		b, _ := json.Marshal(Availability{State: state, BootID: id, Seq: seq}) // strings and a number
		return b
	}
	return births{online: enc(Online), offline: enc(Offline), stopped: enc(Stopped)}
}
