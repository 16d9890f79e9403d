package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt"
	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// A start resumes numbering past everything an earlier run could have handed out, even
// when that run died without a word after using more than one reserved block; each
// start has its own boot id.
func TestBootSeqSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	var last uint64
	ids := map[string]bool{}
	for run, n := range []int{3, seqBlock + 5, 1, 2 * seqBlock} {
		s, err := openBootSeq(dir, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		if ids[s.BootID()] || len(s.BootID()) != 32 {
			t.Fatalf("run %d: boot id %q repeated or malformed", run, s.BootID())
		}
		ids[s.BootID()] = true
		for range n {
			got := s.Next()
			if got <= last {
				t.Fatalf("run %d: got %d after %d", run, got, last)
			}
			last = got
		}
		// No close: the next open is what follows a crash or power cut.
	}
	b, err := os.ReadFile(filepath.Join(dir, "sequence"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := decodeSeqSlot(b)
	c, _ := decodeSeqSlot(b[seqSlot:])
	if f := max(a.Reserved, c.Reserved); f <= last || max(a.Boots, c.Boots) != 4 {
		t.Errorf("slots %+v %+v after 4 starts and %d handed out", a, c, last)
	}
}

// A power cut in the middle of writing a reservation leaves that slot torn: the other
// slot's reservation covers every number handed out, and the next start resumes past
// it. A file with both slots spoiled stops the start with the file named, instead of
// numbering from 1 again.
func TestBootSeqTornSlot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sequence")
	s, err := openBootSeq(dir, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 3*seqBlock - 1 {
		last = s.Next()
	}
	torn := s.slot // where the next reservation would have gone
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("IQSQ\x00\x00\x00\x00\xff\xff"), int64(torn*seqSlot)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s2, err := openBootSeq(dir, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if n := s2.Next(); n <= last {
		t.Fatalf("after a torn slot: %d, but %d was handed out before", n, last)
	}
	s2.Close()
	if err := os.WriteFile(path, make([]byte, 2*seqSlot), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openBootSeq(dir, quietLogger()); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("open with both slots spoiled: %v, want an error naming the file", err)
	}
}

// A reservation that cannot be written does not stop the start (a full disk) nor the
// numbers (health keeps flowing); they still grow, and once the file can be written
// again the reservation is there.
func TestBootSeqWriteFailure(t *testing.T) {
	dir := t.TempDir()
	s, err := openBootSeq(filepath.Join(dir, "missing"), quietLogger()) // no directory: nothing can be written
	if err != nil {
		t.Fatalf("a start that cannot write: %v", err)
	}
	var last uint64
	for range 2*seqBlock + 3 {
		n := s.Next()
		if n <= last {
			t.Fatalf("got %d after %d", n, last)
		}
		last = n
	}
	if !s.failed {
		t.Error("the failed reservation is not noted")
	}
	if err := os.Mkdir(filepath.Join(dir, "missing"), 0o700); err != nil {
		t.Fatal(err)
	}
	for range seqBlock {
		last = s.Next()
	}
	if s.failed {
		t.Fatal("still failing once the file can be written")
	}
	s.Close()
	s2, err := openBootSeq(filepath.Join(dir, "missing"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if n := s2.Next(); n <= last {
		t.Fatalf("after the file came back: %d, but %d was handed out", n, last)
	}
}

// waitAvailability reads sub until topic carries state, and returns that message.
func waitAvailability(t *testing.T, sub *mqtttest.Sub, topic, state string, timeout time.Duration) mqtt.Availability {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		line, err := sub.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %s %s: %v", topic, state, err)
		}
		tp, payload, _ := strings.Cut(line, " ")
		if tp != topic {
			continue
		}
		a, ok := mqtt.ParseAvailability([]byte(payload))
		if !ok {
			t.Fatalf("availability %q is not one", payload)
		}
		if a.State == state {
			return a
		}
	}
}

// Availability and health of a real daemon against a real Mosquitto carry the boot id
// and a sequence: a connection's "stopped" has its "online"'s number, health numbers
// follow it, and after a restart on the same state_dir a new boot id comes with numbers
// above every earlier one.
func TestBirthDeathSequence(t *testing.T) {
	rt := requireRuntime(t)
	b := mqtttest.Start(t, mqtttest.Options{})
	cfg := e2eConfig(t, b, rt)
	cfg.Spool.Enabled = false
	sub := b.Subscribe(t, "-t", "inferq/e2e/available", "-t", "inferq/e2e/health", "-q", "1")

	var maxSeq uint64
	run := func() (online, stopped mqtt.Availability, health Health) {
		d, cancel, done := startDaemon(t, cfg)
		online = waitAvailability(t, sub, "inferq/e2e/available", mqtt.Online, 20*time.Second)
		for health.BootID != online.BootID {
			line, err := sub.Next(20 * time.Second)
			if err != nil {
				t.Fatalf("no health of boot %s: %v", online.BootID, err)
			}
			if tp, payload, _ := strings.Cut(line, " "); tp == "inferq/e2e/health" {
				if err := json.Unmarshal([]byte(payload), &health); err != nil {
					t.Fatal(err)
				}
			}
		}
		maxSeq = max(maxSeq, d.Health().Seq)
		cancel()
		<-done
		d.Close()
		stopped = waitAvailability(t, sub, "inferq/e2e/available", mqtt.Stopped, 20*time.Second)
		return online, stopped, health
	}
	on1, st1, h1 := run()
	if on1.BootID == "" || on1.Seq == 0 {
		t.Fatalf("online %+v: want a boot id and a sequence number", on1)
	}
	if st1 != (mqtt.Availability{State: mqtt.Stopped, BootID: on1.BootID, Seq: on1.Seq}) {
		t.Errorf("stopped %+v does not end online %+v", st1, on1)
	}
	if h1.Seq <= on1.Seq || h1.IntervalS != cfg.Health.Interval.Seconds() {
		t.Errorf("health seq %d interval %v after online seq %d", h1.Seq, h1.IntervalS, on1.Seq)
	}
	firstMax := maxSeq
	on2, _, h2 := run()
	if on2.BootID == on1.BootID || on2.Seq <= firstMax || h2.Seq <= on2.Seq {
		t.Errorf("after a restart: online %+v health seq %d; first run: boot %s, numbers up to %d", on2, h2.Seq, on1.BootID, firstMax)
	}
}
