package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// The journal is the queue's write-ahead log. Badger runs without syncing its
// own logs; every group commit is first appended to the journal with one
// synchronous write (O_DSYNC, into a file zero-filled once when it is made,
// so there is neither a file size nor an unwritten extent to commit), and
// only once that write has returned is the batch applied to Badger. Badger
// thus never holds, and no reader ever sees, a change that is not durable. A
// checkpoint makes Badger's files durable and starts a new generation of the
// journal; at Open the records of the current generation are applied again.
// Every journaled operation is a blind set or delete of a key, so applying a
// record twice, or over a Badger state that kept any subset of the writes
// made after the checkpoint, or over a replay that a second crash cut short,
// gives the same result as applying it once.
//
// Layout: a header at offset 0 (magic, generation, crc) and records from
// journalStart on, each starting on a journalAlign (4 KiB) boundary: a write
// never touches a page that holds an earlier record, so a torn write (an SD
// card or eMMC without power-loss protection losing the page being written)
// can damage only the record being written, never one already answered.
// A record is
//
//	[4 body length][4 crc32c of generation, sequence and body][8 generation][8 sequence][body]
//
// and its body is a list of operations:
//
//	[1 op][uvarint key length][key][uvarint value length][value][uvarint expires-at]
//
// (a delete has no value and no expires-at). Replay stops at the first record
// whose length, crc, generation or sequence is wrong: that is where the last
// write ended.

const (
	journalMagic     = "inferqJ2"
	journalMagicV1   = "inferqJ1" // records packed at byte offsets (read at upgrade)
	journalHeaderLen = 20
	journalStart     = 4096
	journalAlign     = 4096
	journalRecHead   = 24
	// defaultJournalSize is the preallocated size of the journal; a checkpoint
	// runs whenever the next record would not fit.
	defaultJournalSize = 4 << 20

	jopSet byte = 1
	jopDel byte = 2
)

type journal struct {
	f     *os.File
	path  string
	size  int64
	gen   uint64
	seq   uint64 // sequence of the last record written in this generation
	off   int64  // where the next record goes
	align int64  // record alignment of the generation being read (1 for a v1 journal)
}

func alignUp(off, align int64) int64 { return (off + align - 1) / align * align }

// openJournal opens (creating and zero-filling if needed) the journal at path.
// It returns the records of the current generation, which the caller must
// apply to Badger and then checkpoint. A damaged header gives an ErrDamaged
// error; the caller sets that journal aside and opens a fresh one.
func openJournal(path string, size int64) (*journal, [][]byte, error) {
	if size < journalStart+1024 {
		size = defaultJournalSize
	}
	// O_DSYNC: each write returns once it is on disk (one system call for
	// write and fdatasync).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_DSYNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open queue journal: %w", err)
	}
	j := &journal{f: f, path: path, size: size, align: journalAlign}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cannot stat queue journal: %w", err)
	}
	if fi.Size() < size {
		if err := zeroFill(f, fi.Size(), size); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("cannot make queue journal %s (%d bytes): %w", path, size, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("cannot sync queue journal: %w", err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("cannot sync queue dir: %w", err)
		}
	} else {
		j.size = fi.Size()
	}
	hdr := make([]byte, journalHeaderLen)
	if _, err := f.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, nil, fmt.Errorf("cannot read queue journal header: %w", err)
	}
	if allZero(hdr) { // new journal
		j.gen = 0
		return j, nil, nil
	}
	gen, v1, ok := decodeJournalHeader(hdr)
	if v1 {
		j.align = 1
	}
	if !ok {
		f.Close()
		return nil, nil, fmt.Errorf("%w: queue journal header in %s", ErrDamaged, path)
	}
	j.gen = gen
	recs, err := j.scan()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return j, recs, nil
}

// zeroFill writes zeros to f from from to size. Written blocks, unlike
// fallocate's unwritten extents, need no file-system commit of their own on
// a record's first write (measured: 10-20 % more synced writes per second on
// a fresh journal), and unlike a sparse file they cannot meet a full disk.
func zeroFill(f *os.File, from, size int64) error {
	zeros := make([]byte, 256<<10)
	for off := from; off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func encodeJournalHeader(gen uint64) []byte {
	b := make([]byte, 0, journalHeaderLen)
	b = append(b, journalMagic...)
	b = binary.LittleEndian.AppendUint64(b, gen)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeJournalHeader returns the generation in a header, and whether the
// journal is of the first format (records not aligned).
func decodeJournalHeader(b []byte) (gen uint64, v1, ok bool) {
	if len(b) < journalHeaderLen || (string(b[:8]) != journalMagic && string(b[:8]) != journalMagicV1) ||
		binary.LittleEndian.Uint32(b[16:20]) != crc32.Checksum(b[:16], crcTable) {
		return 0, false, false
	}
	return binary.LittleEndian.Uint64(b[8:16]), string(b[:8]) == journalMagicV1, true
}

// scan reads the records of the current generation, leaving j.off after the
// last good one.
func (j *journal) scan() ([][]byte, error) {
	var recs [][]byte
	j.off = journalStart
	head := make([]byte, journalRecHead)
	for j.off+journalRecHead <= j.size {
		if _, err := j.f.ReadAt(head, j.off); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("cannot read queue journal: %w", err)
		}
		n := int64(binary.LittleEndian.Uint32(head[0:4]))
		if n == 0 || j.off+journalRecHead+n > j.size {
			break
		}
		rec := make([]byte, journalRecHead+n)
		if _, err := j.f.ReadAt(rec, j.off); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("cannot read queue journal: %w", err)
		}
		body, gen, seq, ok := decodeJournalRecord(rec)
		if !ok || gen != j.gen || seq != j.seq+1 {
			break
		}
		recs = append(recs, body)
		j.seq = seq
		j.off = alignUp(j.off+int64(len(rec)), j.align)
	}
	j.off = alignUp(j.off, journalAlign)
	return recs, nil
}

// decodeJournalRecord checks one record (header and body) and returns its body.
func decodeJournalRecord(rec []byte) (body []byte, gen, seq uint64, ok bool) {
	if len(rec) < journalRecHead {
		return nil, 0, 0, false
	}
	n := binary.LittleEndian.Uint32(rec[0:4])
	if uint64(n) != uint64(len(rec)-journalRecHead) {
		return nil, 0, 0, false
	}
	if binary.LittleEndian.Uint32(rec[4:8]) != crc32.Checksum(rec[8:], crcTable) {
		return nil, 0, 0, false
	}
	return rec[journalRecHead:], binary.LittleEndian.Uint64(rec[8:16]), binary.LittleEndian.Uint64(rec[16:24]), true
}

// fits reports whether a record with a body of n bytes fits after the
// records already written.
func (j *journal) fits(n int) bool {
	return j.off+journalRecHead+int64(n) <= j.size
}

// capacity is the largest body a record can have.
func (j *journal) capacity() int { return int(j.size - journalStart - journalRecHead) }

// append writes one record holding body (which must have journalRecHead bytes
// of room in front: rec[:journalRecHead] is filled here); the file is opened
// with O_DSYNC, so the record is on disk when append returns.
func (j *journal) append(rec []byte) error {
	body := rec[journalRecHead:]
	if !j.fits(len(body)) {
		return fmt.Errorf("queue journal record of %d bytes does not fit", len(body))
	}
	seq := j.seal(rec)
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return fmt.Errorf("cannot write queue journal: %w", err)
	}
	j.seq = seq
	j.off = alignUp(j.off+int64(len(rec)), journalAlign)
	return nil
}

// seal fills rec's head for the next record of j's generation and returns
// that record's sequence number.
func (j *journal) seal(rec []byte) uint64 {
	seq := j.seq + 1
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(rec)-journalRecHead))
	binary.LittleEndian.PutUint64(rec[8:16], j.gen)
	binary.LittleEndian.PutUint64(rec[16:24], seq)
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], crcTable))
	return seq
}

// reset starts a new, empty generation. The caller has made every record of
// the current one durable elsewhere (a checkpoint).
func (j *journal) reset() error {
	gen := j.gen + 1
	if _, err := j.f.WriteAt(encodeJournalHeader(gen), 0); err != nil {
		return fmt.Errorf("cannot write queue journal header: %w", err)
	}
	j.gen, j.seq, j.off, j.align = gen, 0, journalStart, journalAlign
	return nil
}

func (j *journal) close() error { return j.f.Close() }

// appendJournalOp adds one operation to a record body.
func appendJournalOp(b []byte, op byte, key, val []byte, expiresAt uint64) []byte {
	b = append(b, op)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if op == jopSet {
		b = binary.AppendUvarint(b, uint64(len(val)))
		b = append(b, val...)
		b = binary.AppendUvarint(b, expiresAt)
	}
	return b
}

// journalOp is one decoded operation of a record body.
type journalOp struct {
	op        byte
	key, val  []byte
	expiresAt uint64
}

// decodeJournalOps splits a record body into its operations.
func decodeJournalOps(body []byte) ([]journalOp, error) {
	var ops []journalOp
	for len(body) > 0 {
		op := journalOp{op: body[0]}
		body = body[1:]
		var ok bool
		if op.key, body, ok = cutJournalBytes(body); !ok || len(op.key) == 0 {
			return nil, fmt.Errorf("%w: journal operation key", ErrDamaged)
		}
		switch op.op {
		case jopSet:
			if op.val, body, ok = cutJournalBytes(body); !ok {
				return nil, fmt.Errorf("%w: journal operation value", ErrDamaged)
			}
			x, n := binary.Uvarint(body)
			if n <= 0 {
				return nil, fmt.Errorf("%w: journal operation expiry", ErrDamaged)
			}
			op.expiresAt, body = x, body[n:]
		case jopDel:
		default:
			return nil, fmt.Errorf("%w: journal operation kind %d", ErrDamaged, op.op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func cutJournalBytes(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// replayJournal applies the journal's records to db in order. Badger never
// holds a batch whose record is not in the journal (a batch is applied only
// after its record is durable), so every record is applied as it stands.
// Replay rewrites nothing in the journal: a replay that a crash cuts short is
// simply done again at the next Open.
//
// One write batch carries all records (a later write of a key replaces an
// earlier one in it, as it did when the records were first applied), so
// replaying a full journal takes a fraction of a second.
func replayJournal(db *badger.DB, recs [][]byte) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for i, body := range recs {
		ops, err := decodeJournalOps(body)
		if err != nil {
			return fmt.Errorf("queue journal record %d: %w", i+1, err)
		}
		for _, op := range ops {
			if op.op == jopDel {
				err = wb.Delete(op.key)
			} else {
				e := badger.NewEntry(op.key, op.val)
				e.ExpiresAt = op.expiresAt
				err = wb.SetEntry(e)
			}
			if err != nil {
				return fmt.Errorf("cannot apply queue journal record %d: %w", i+1, err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("cannot apply queue journal: %w", err)
	}
	return nil
}

// syncBadgerFiles makes everything written to Badger so far durable: its
// logs (memtable write-ahead logs and value logs, which run unsynced) are
// fsynced, then the directory. Tables and the manifest Badger syncs itself.
// A file that Badger deletes meanwhile was flushed into a synced table first.
func syncBadgerFiles(db *badger.DB, dir string) error {
	if err := db.Sync(); err != nil {
		return fmt.Errorf("cannot sync queue database: %w", err)
	}
	logs, err := badgerLogFiles(dir)
	if err != nil {
		return err
	}
	for _, e := range logs {
		name := e.Name()
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot open %s to sync it: %w", name, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("cannot sync %s: %w", name, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("cannot sync queue database dir: %w", err)
	}
	return nil
}
