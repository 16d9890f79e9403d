package queue

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleRecords() []*record {
	return []*record{
		{State: stReady, Priority: 0, Seq: 1, EnqueuedAt: 1, Inline: true, ImageSize: 3},
		{State: stDelayed, Priority: 9, Seq: 1 << 40, EnqueuedAt: -5, Deadline: 1e18, Attempt: 3,
			LastError: "engine: timeout", Source: "cam1", Meta: map[string]string{"a": "b", "": "ü"},
			Blob: "0123456789abcdef0123456789abcdef", ImageSize: 1 << 30, SHA256: [32]byte{1, 2, 3}, Due: 77},
		{State: stDead, Priority: 4, Seq: 9, Inline: true, DeadReason: "expired", DiedAt: 123, DeadSeq: 10},
		{State: stLeased, Priority: 2, Seq: 2, Inline: true, Attempt: 1 << 31},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for i, r := range sampleRecords() {
		got, err := decodeRecord(encodeRecord(r))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("record %d: got %+v, want %+v", i, got, r)
		}
	}
}

func TestRecordDamageDetected(t *testing.T) {
	enc := encodeRecord(sampleRecords()[1])
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 0x40
		if _, err := decodeRecord(bad); err == nil {
			t.Fatalf("flipping a bit of byte %d: got no error", i)
		}
	}
	for n := 0; n < len(enc); n++ {
		if _, err := decodeRecord(enc[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: got no error", n)
		}
	}
}

func FuzzRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(encodeRecord(r))
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := decodeRecord(p)
		if err != nil {
			return
		}
		again, err := decodeRecord(encodeRecord(r))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip: got %+v, want %+v", again, r)
		}
	})
}

func FuzzRecordFields(f *testing.F) {
	f.Add(uint8(1), uint8(3), uint64(5), int64(6), uint32(2), "err", "cam", "k", "v", true, "", int64(4))
	f.Add(uint8(4), uint8(9), uint64(0), int64(-1), uint32(0), "", "", "", "", false, "0123456789abcdef0123456789abcdef", int64(0))
	f.Fuzz(func(t *testing.T, st, prio uint8, seq uint64, enq int64, att uint32, lastErr, src, mk, mv string, inline bool, blob string, size int64) {
		r := &record{State: state(st), Priority: prio, Seq: seq, EnqueuedAt: enq, Attempt: att,
			LastError: lastErr, Source: src, Meta: map[string]string{mk: mv}, Inline: inline, Blob: blob, ImageSize: size}
		got, err := decodeRecord(encodeRecord(r))
		valid := r.State >= stReady && r.State <= stDead && r.Priority <= 9 && size >= 0 &&
			(inline && blob == "" || !inline && validBlobName(blob)) && utf8All(lastErr, src, mk, mv)
		if !valid {
			if err == nil {
				t.Fatalf("invalid record %+v decoded", r)
			}
			return
		}
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
	})
}

func utf8All(ss ...string) bool {
	for _, s := range ss {
		if !bytes.Equal([]byte(s), []byte(string([]rune(s)))) {
			return false
		}
	}
	return true
}

func FuzzOutboxRow(f *testing.F) {
	f.Add(encodeOutbox(&outboxRow{CreatedAt: 5, Topic: "results/cam1", Payload: []byte(`{"id":"x"}`)}))
	f.Add(encodeOutbox(&outboxRow{Topic: "t"}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := decodeOutbox(p)
		if err != nil {
			return
		}
		again, err := decodeOutbox(encodeOutbox(r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip: got %+v, %v, want %+v", again, err, r)
		}
	})
}

func FuzzKeys(f *testing.F) {
	f.Add("job-1", uint64(7), int64(99), []byte("jjob-1"))
	f.Add("", uint64(0), int64(-1), []byte{pfxOutbox, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2})
	f.Add("ü\x00", uint64(1<<63), int64(0), []byte{pfxDead})
	f.Fuzz(func(t *testing.T, id string, seq uint64, created int64, raw []byte) {
		// Parsing arbitrary bytes never panics.
		parseIDKey(pfxJob, raw)
		parseSeqKey(pfxDead, raw)
		parseOutboxKey(raw)
		decodeDone(raw)
		// Encoding round-trips.
		if id != "" {
			if got, ok := parseIDKey(pfxJob, idKey(pfxJob, id)); !ok || got != id {
				t.Fatalf("id key: got %q %v, want %q", got, ok, id)
			}
		}
		if got, ok := parseSeqKey(pfxDead, seqKey(pfxDead, seq)); !ok || got != seq {
			t.Fatalf("seq key: got %d %v, want %d", got, ok, seq)
		}
		s, c, ok := parseOutboxKey(outboxKey(seq, created))
		if !ok || s != seq || c != created {
			t.Fatalf("outbox key: got %d %d %v, want %d %d", s, c, ok, seq, created)
		}
		if got, ok := decodeDone(encodeDone(created)); !ok || got != created {
			t.Fatalf("done value: got %d %v, want %d", got, ok, created)
		}
		// Keys of one kind sort like their sequence numbers.
		if seq > 0 && bytes.Compare(seqKey(pfxOutbox, seq-1), seqKey(pfxOutbox, seq)) >= 0 {
			t.Fatalf("seq keys out of order at %d", seq)
		}
	})
}
