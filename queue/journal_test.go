package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// journalRecord builds a record holding ops, as a batch does.
func journalRecord(ops ...journalOp) []byte {
	rec := make([]byte, journalRecHead)
	for _, op := range ops {
		rec = appendJournalOp(rec, op.op, op.key, op.val, op.expiresAt)
	}
	return rec
}

func TestJournalScanStopsAtTheEndOfTheLastWrite(t *testing.T) {
	recA := journalRecord(journalOp{op: jopSet, key: []byte("a"), val: []byte("1"), expiresAt: 7})
	recB := journalRecord(journalOp{op: jopDel, key: []byte("b")})
	recC := journalRecord(journalOp{op: jopSet, key: []byte("c"), val: bytes.Repeat([]byte("x"), 300)})
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, offC int64)
		want   int // records scanned
	}{
		{"intact", func(*testing.T, string, int64) {}, 3},
		{"torn last record", func(t *testing.T, path string, offC int64) {
			truncateTo(t, path, offC+journalRecHead+100) // the rest of C never reached the disk
		}, 2},
		{"flipped byte in last record", func(t *testing.T, path string, offC int64) {
			flipByte(t, path, offC+journalRecHead+5)
		}, 2},
		{"zeroed last record", func(t *testing.T, path string, offC int64) {
			writeAt(t, path, offC, make([]byte, journalRecHead+10))
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			j, recs, err := openJournal(path, 64<<10)
			if err != nil || len(recs) != 0 || j.gen != 0 {
				t.Fatalf("new journal: %v, %d records, gen %d", err, len(recs), j.gen)
			}
			if err := j.reset(); err != nil {
				t.Fatal(err)
			}
			for _, r := range [][]byte{recA, recB} {
				if err := j.append(append([]byte(nil), r...)); err != nil {
					t.Fatal(err)
				}
			}
			offC := j.off
			if err := j.append(append([]byte(nil), recC...)); err != nil {
				t.Fatal(err)
			}
			j.close()
			tc.damage(t, path, offC)
			j, recs, err = openJournal(path, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer j.close()
			if len(recs) != tc.want {
				t.Fatalf("got %d records, want %d", len(recs), tc.want)
			}
			ops, err := decodeJournalOps(recs[0])
			if err != nil || len(ops) != 1 || string(ops[0].key) != "a" || string(ops[0].val) != "1" || ops[0].expiresAt != 7 {
				t.Fatalf("record 1: %+v, %v", ops, err)
			}
			// The next record goes on the next page boundary after the last good one.
			if want := alignUp(offC+int64(len(recC)), journalAlign); tc.want == 3 && j.off != want || tc.want == 2 && j.off != offC {
				t.Fatalf("next record at %d", j.off)
			}
		})
	}
}

// TestJournalTornPage models a torn write on flash without power-loss
// protection: the pages that the last write touched end up holding any mix
// of old bytes, new bytes and garbage. Every record written (answered)
// before that write must survive it: a record never shares a page with the
// one written after it.
func TestJournalTornPage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 200; round++ {
		path := filepath.Join(t.TempDir(), "journal")
		j, _, err := openJournal(path, 256<<10)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.reset(); err != nil {
			t.Fatal(err)
		}
		var want [][]byte
		var lastOff, lastLen int64
		for n := 1 + rng.IntN(12); len(want) < n; {
			val := make([]byte, rng.IntN(6000))
			for i := range val {
				val[i] = byte(rng.Uint32())
			}
			rec := journalRecord(journalOp{op: jopSet, key: fmt.Appendf(nil, "k%d", len(want)), val: val})
			if !j.fits(len(rec) - journalRecHead) {
				break
			}
			lastOff, lastLen = j.off, int64(len(rec))
			if err := j.append(rec); err != nil {
				t.Fatal(err)
			}
			want = append(want, rec[journalRecHead:])
		}
		j.close()
		// Garbage at random offsets of every page the last write touched.
		first, end := lastOff/journalAlign*journalAlign, alignUp(lastOff+lastLen, journalAlign)
		for p := first; p < end; p += journalAlign {
			for k := 1 + rng.IntN(8); k > 0; k-- {
				off := p + rng.Int64N(journalAlign)
				junk := make([]byte, 1+rng.IntN(64))
				for i := range junk {
					junk[i] = byte(rng.Uint32())
				}
				writeAt(t, path, off, junk[:min(int64(len(junk)), end-off)])
			}
		}
		j, got, err := openJournal(path, 256<<10)
		if err != nil {
			t.Fatal(err)
		}
		j.close()
		// The torn record may or may not read back whole; those before it must.
		if len(got) < len(want)-1 {
			t.Fatalf("round %d: %d of the %d records answered before the torn write survived", round, len(got), len(want)-1)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("round %d: record %d differs", round, i+1)
			}
		}
	}
}

// TestJournalV1Replayed: a journal of the first format (records packed at
// byte offsets), left by an older inferq that crashed, is read at upgrade
// and its next generation is of the current format.
func TestJournalV1Replayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _, err := openJournal(path, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	hdr := encodeJournalHeader(5)
	copy(hdr, journalMagicV1)
	binary.LittleEndian.PutUint32(hdr[16:20], crc32.Checksum(hdr[:16], crcTable))
	if _, err := j.f.WriteAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	j.gen = 5
	off := int64(journalStart)
	for i := 0; i < 3; i++ {
		rec := journalRecord(journalOp{op: jopSet, key: []byte{'k', byte(i)}, val: []byte("v")})
		j.seq = uint64(i)
		j.seal(rec)
		if _, err := j.f.WriteAt(rec, off); err != nil {
			t.Fatal(err)
		}
		off += int64(len(rec))
	}
	j.close()
	j, recs, err := openJournal(path, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if len(recs) != 3 {
		t.Fatalf("v1 journal: %d records, want 3", len(recs))
	}
	if err := j.reset(); err != nil {
		t.Fatal(err)
	}
	hdr = make([]byte, journalHeaderLen)
	if _, err := j.f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if gen, v1, ok := decodeJournalHeader(hdr); !ok || v1 || gen != 6 {
		t.Fatalf("after reset: gen %d v1 %v ok %v, want gen 6 of the current format", gen, v1, ok)
	}
}

func TestJournalResetForgetsTheOldGeneration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _, err := openJournal(path, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.reset(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := j.append(journalRecord(journalOp{op: jopSet, key: []byte{'k', byte(i)}})); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.reset(); err != nil {
		t.Fatal(err)
	}
	// One record of the new generation over the first old one; the old second
	// and third stay on disk but are not the current generation's.
	if err := j.append(journalRecord(journalOp{op: jopDel, key: []byte("new")})); err != nil {
		t.Fatal(err)
	}
	j.close()
	j, recs, err := openJournal(path, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if len(recs) != 1 || j.gen != 2 {
		t.Fatalf("got %d records of generation %d, want 1 of generation 2", len(recs), j.gen)
	}
	if ops, err := decodeJournalOps(recs[0]); err != nil || string(ops[0].key) != "new" || ops[0].op != jopDel {
		t.Fatalf("record: %+v, %v", ops, err)
	}
}

func TestJournalRecordTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _, err := openJournal(path, 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if err := j.reset(); err != nil {
		t.Fatal(err)
	}
	big := journalRecord(journalOp{op: jopSet, key: []byte("k"), val: make([]byte, 5000)})
	if err := j.append(big); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("got %v, want a does-not-fit error", err)
	}
}

// TestQueueReplaysJournalAfterCrash: commits that reached the journal but not
// Badger (the process died in between) are applied at the next Open.
func TestQueueReplaysJournalAfterCrash(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	q := mustOpen(t, o)
	mustEnqueue(t, q, NewJob{ID: "kept"})
	// Append a record by hand as if a commit had been journaled and the
	// process had died before applying it to Badger.
	q.mu.Lock()
	b := q.newBatch(nil)
	rec := encodeRecord(&record{State: stReady, Priority: 7, Seq: 1000, EnqueuedAt: 1, Inline: true, ImageSize: 3})
	if err := b.set(idKey(pfxJob, "journaled"), rec); err != nil {
		t.Fatal(err)
	}
	if err := b.set(idKey(pfxImage, "journaled"), []byte("img")); err != nil {
		t.Fatal(err)
	}
	if err := q.jrnl.append(b.rec); err != nil {
		t.Fatal(err)
	}
	b.txn.Discard()
	q.mu.Unlock()
	crash(t, q)

	q = mustOpen(t, o)
	if st := q.Stats(); st.ReadyTotal != 2 || st.Recovered != 2 {
		t.Fatalf("after reopen: %+v, want 2 ready and 2 recovered records (the enqueue of kept, the hand-made one)", st)
	}
	if l := poll(t, q); l == nil || l.Job.ID != "journaled" {
		t.Fatalf("first lease: %+v, want the journaled job (priority 7)", l)
	}
}

// TestDamagedJournalHeaderSetAside: a journal whose header is unreadable is
// renamed aside, logged, and the queue opens with what Badger holds.
func TestDamagedJournalHeaderSetAside(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	q := mustOpen(t, o)
	mustEnqueue(t, q, NewJob{ID: "a"})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	flipByte(t, filepath.Join(dir, "journal"), 9)
	q = mustOpen(t, o)
	if st := q.Stats(); st.ReadyTotal != 1 {
		t.Fatalf("after reopen: %+v, want 1 ready", st)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "journal.damaged-*"))
	if len(aside) != 1 {
		t.Fatalf("damaged journal set aside: %v", aside)
	}
}

// crash stops q as kill -9 would: Badger's writes are in the page cache
// (here: closed without its final sync mattering) and the journal keeps its
// records.
func crash(t testing.TB, q *Queue) {
	t.Helper()
	q.mu.Lock()
	q.closed = true
	q.cur.txn.Discard()
	q.mu.Unlock()
	q.closeOnce.Do(func() { close(q.closing) })
	if err := q.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.jrnl.close(); err != nil {
		t.Fatal(err)
	}
}

func FuzzJournalRecord(f *testing.F) {
	rec := journalRecord(journalOp{op: jopSet, key: []byte("j\x00id"), val: []byte("v"), expiresAt: 99}, journalOp{op: jopDel, key: []byte("x")})
	f.Add(rec[journalRecHead:])
	f.Add([]byte{jopSet, 1, 'k', 200})
	f.Add([]byte{3, 1, 'k'})
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := decodeJournalOps(body)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v is not ErrDamaged", err)
			}
			return
		}
		// What decodes encodes to bytes that decode to the same operations.
		again, err := decodeJournalOps(journalRecord(ops...)[journalRecHead:])
		if err != nil || len(again) != len(ops) {
			t.Fatalf("re-encoded operations: %v, %d of %d", err, len(again), len(ops))
		}
		for i := range ops {
			a, b := again[i], ops[i]
			if a.op != b.op || !bytes.Equal(a.key, b.key) || !bytes.Equal(a.val, b.val) || a.expiresAt != b.expiresAt {
				t.Fatalf("operation %d: %+v, want %+v", i, a, b)
			}
		}
		// A record around the body checks out, and any flipped bit is caught.
		full := make([]byte, journalRecHead, journalRecHead+len(body))
		full = append(full, body...)
		j := &journal{gen: 3, size: 1 << 30, off: journalStart}
		j.seal(full)
		if b, gen, _, ok := decodeJournalRecord(full); !ok || gen != 3 || !bytes.Equal(b, body) {
			t.Fatalf("record does not decode")
		}
		if len(full) > 8 {
			full[8+len(body)%(len(full)-8)] ^= 1
			if _, _, _, ok := decodeJournalRecord(full); ok {
				t.Fatalf("flipped bit not caught")
			}
		}
	})
}

func truncateTo(t *testing.T, path string, n int64) {
	t.Helper()
	// Zero from n on: the file is preallocated, so a lost write reads as zeros.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, path, n, make([]byte, fi.Size()-n))
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
