package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testenv"
	"github.com/inferq/inferq/transport/mqtt"
)

func availMsg(node, state, boot string, seq uint64) mqtt.Message {
	b, _ := json.Marshal(mqtt.Availability{State: state, BootID: boot, Seq: seq})
	return mqtt.Message{Topic: "inferq/" + node + "/available", Payload: b, Retained: true}
}

func healthMsg(node string, h Health, retained bool) mqtt.Message {
	h.Node = node
	b, _ := json.Marshal(h)
	return mqtt.Message{Topic: "inferq/" + node + "/health", Payload: b, Retained: retained}
}

func okHealth(seq uint64, at time.Time) Health {
	return Health{Seq: seq, BootID: "b1", Status: HealthOK, Time: at, IntervalS: 10, Version: "1.2.0",
		Model: HealthModel{Name: "mobilenet.tflite", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		Jobs:  HealthJobs{PerMinute: 120, P50MS: 6.2, P99MS: 15}}
}

// Each box's verdict follows from its availability and health; the table is worst first.
func TestFleetVerdicts(t *testing.T) {
	now := t0.Add(time.Hour)
	tests := []struct {
		name string
		msgs []mqtt.Message
		want string
	}{
		{"online and ok", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(6, now), false)}, VerdictOK},
		{"degraded", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", func() Health {
			h := okHealth(6, now)
			h.Status, h.Problems = HealthDegraded, []string{"worker paused by an operator"}
			return h
		}(), false)}, VerdictDegraded},
		{"failing", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", func() Health {
			h := okHealth(6, now)
			h.Status = HealthFailing
			return h
		}(), false)}, VerdictFailing},
		{"killed: the will", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(6, now), true), availMsg("a", "offline", "b1", 5)}, VerdictOffline},
		{"stopped", []mqtt.Message{healthMsg("a", okHealth(6, now), true), availMsg("a", "stopped", "b1", 5)}, VerdictStopped},
		// 3 intervals of 10 s without health.
		{"stale retained health", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(6, now.Add(-31*time.Second)), true)}, VerdictStale},
		{"fresh retained health", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(6, now.Add(-29*time.Second)), true)}, VerdictOK},
		// A live message counts from its arrival, whatever the box's clock says.
		{"live health, box clock behind", []mqtt.Message{availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(6, now.Add(-time.Hour)), false)}, VerdictOK},
		{"no availability", []mqtt.Message{healthMsg("a", okHealth(6, now), false)}, VerdictUnknown},
		{"no health", []mqtt.Message{availMsg("a", "online", "b1", 5)}, VerdictUnknown},
		// A will of the previous connection (seq 5) arriving after the new birth (seq 9).
		{"delayed will of an earlier connection", []mqtt.Message{availMsg("a", "online", "b2", 9), healthMsg("a", okHealth(10, now), false), availMsg("a", "offline", "b1", 5)}, VerdictOK},
		// A retained "online" of the same connection arriving after its death.
		{"birth after its own death", []mqtt.Message{availMsg("a", "offline", "b1", 5), availMsg("a", "online", "b1", 5), healthMsg("a", okHealth(4, now), false)}, VerdictOffline},
		{"bare words (no sequence)", []mqtt.Message{{Topic: "inferq/a/available", Payload: []byte("online")}, healthMsg("a", okHealth(6, now), false)}, VerdictOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFleet("inferq")
			for _, m := range tt.msgs {
				f.Apply(m, now)
			}
			rows := f.Rows(now)
			if len(rows) != 1 || rows[0].Verdict != tt.want {
				t.Fatalf("rows %+v, want one with verdict %s", rows, tt.want)
			}
			if healthy := tt.want == VerdictOK || tt.want == VerdictDegraded; rows[0].Healthy != healthy || (FleetUnwell(rows, false) == 0) != healthy {
				t.Errorf("healthy %v, unwell %d for %s", rows[0].Healthy, FleetUnwell(rows, false), tt.want)
			}
		})
	}
}

// An older health document (lower sequence) does not replace a newer one; foreign and
// malformed messages are ignored.
func TestFleetIgnoresOldAndForeign(t *testing.T) {
	now := t0
	f := NewFleet("inferq")
	h := okHealth(20, now)
	h.Queue.Depth = 7
	f.Apply(healthMsg("a", h, false), now)
	f.Apply(healthMsg("a", okHealth(19, now), false), now)
	f.Apply(mqtt.Message{Topic: "inferq/a/health", Payload: []byte("{not json")}, now)
	f.Apply(mqtt.Message{Topic: "other/b/health", Payload: []byte("{}")}, now)
	f.Apply(mqtt.Message{Topic: "inferq/c/available", Payload: []byte("maybe")}, now)
	rows := f.Rows(now)
	if len(rows) != 1 || rows[0].QueueDepth != 7 || rows[0].HealthSeq != 20 {
		t.Fatalf("rows %+v", rows)
	}
}

// fleetFixture is a fleet of six boxes in every state, for the golden table and JSON.
func fleetFixture() (*Fleet, time.Time) {
	now := t0.Add(2 * time.Hour)
	f := NewFleet("inferq")
	for i, n := range []string{"gate", "yard"} {
		f.Apply(availMsg(n, "online", "b-"+n, 100), now)
		h := okHealth(101, now.Add(-time.Duration(i)*time.Second))
		f.Apply(healthMsg(n, h, true), now)
	}
	backlog := okHealth(300, now)
	backlog.Status, backlog.Problems = HealthDegraded, []string{"worker paused by an operator: queued jobs wait (inferq resume worker)"}
	backlog.Queue = HealthQueue{Depth: 412, OldestAgeS: 754, Dead: 3}
	backlog.Outbox.Depth = 2
	f.Apply(availMsg("door", "online", "b-door", 299), now)
	f.Apply(healthMsg("door", backlog, false), now)
	f.Apply(availMsg("dock", "online", "b-dock", 40), now)
	f.Apply(healthMsg("dock", okHealth(41, now), true), now)
	f.Apply(availMsg("dock", "offline", "b-dock", 40), now)
	f.Apply(availMsg("lab", "stopped", "b-lab", 7), now)
	f.Apply(healthMsg("lab", okHealth(8, now.Add(-26*time.Hour)), true), now)
	f.Apply(availMsg("roof\tx\x1b[2J", "online", "b-roof", 3), now)
	f.Apply(healthMsg("roof\tx\x1b[2J", okHealth(4, now.Add(-10*time.Minute)), true), now)
	return f, now
}

func TestFleetGolden(t *testing.T) {
	f, now := fleetFixture()
	rows := f.Rows(now)
	var order []string
	for _, r := range rows {
		order = append(order, r.Verdict)
	}
	if fmt.Sprint(order) != "[offline stale stopped degraded ok ok]" {
		t.Errorf("order %v, want worst first", order)
	}
	if n := FleetUnwell(rows, false); n != 3 {
		t.Errorf("unwell = %d, want 3 (offline, stale, stopped)", n)
	}
	if n := FleetUnwell(rows, true); n != 4 {
		t.Errorf("unwell, strict = %d, want 4", n)
	}
	var tab bytes.Buffer
	if err := WriteFleetTable(&tab, rows, now); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "daemon/fleet.txt", tab.Bytes())
	checkGolden(t, "fleet.json", rows)
}
