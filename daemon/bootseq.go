package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/inferq/inferq/internal/logkey"
)

// Every availability and health message carries the box's boot id (new at each start)
// and a sequence number that only grows: across reconnects, restarts, crashes and power
// cuts. Consumers order a box's messages by it and tell a stale retained message from a
// fresh one without trusting clocks (an edge box may have no real-time clock).
//
// Writing the counter on every message would wear flash: instead a block of numbers is
// reserved in state_dir/sequence before any of them is handed out, and a start resumes
// past the last reserved block. A crash skips the unused rest of a block; no number is
// handed out twice.
//
// The file has two slots, each on its own page, written in turn in place and fsynced:
// a write torn by a power cut spoils only the slot being written (its checksum fails)
// and the other still holds the previous reservation, which covers every number handed
// out. Writing in place needs no free blocks, so the numbers keep their promise on a
// full disk, where the daemon still starts and waits for space.

// seqBlock is how many sequence numbers one write reserves.
const seqBlock = 1024

// seqSlot is the distance between the file's two slots (one page each).
const seqSlot = 4096

var seqMagic = [4]byte{'I', 'Q', 'S', 'Q'}

// seqFile is one slot of state_dir/sequence.
type seqFile struct {
	// Reserved: every number below it may have been handed out.
	Reserved uint64
	// Boots counts starts.
	Boots uint64
}

// encode is a slot: magic, reserved, boots (big-endian), CRC-32C of what precedes.
func (f seqFile) encode() []byte {
	b := make([]byte, 24)
	copy(b, seqMagic[:])
	binary.BigEndian.PutUint64(b[4:], f.Reserved)
	binary.BigEndian.PutUint64(b[12:], f.Boots)
	binary.BigEndian.PutUint32(b[20:], crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func decodeSeqSlot(b []byte) (seqFile, bool) {
	if len(b) < 24 || [4]byte(b[:4]) != seqMagic ||
		binary.BigEndian.Uint32(b[20:]) != crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli)) {
		return seqFile{}, false
	}
	return seqFile{Reserved: binary.BigEndian.Uint64(b[4:]), Boots: binary.BigEndian.Uint64(b[12:])}, true
}

// bootSeq hands out the sequence numbers of one run.
type bootSeq struct {
	path   string
	bootID string
	log    *slog.Logger

	mu     sync.Mutex
	f      *os.File // nil until the file exists (a full disk may keep it from being made)
	slot   int      // the slot the next reservation is written to
	file   seqFile  // the last reservation written
	next   uint64
	failed bool // the last reservation could not be written
}

// openBootSeq reads state_dir/sequence, makes a new boot id and reserves the first
// block durably. A file with no valid slot stops the start: numbers handed out without
// it could repeat those of an earlier run. A reservation that cannot be written (a
// full disk on the very first start) is logged and tried again at the next block.
func openBootSeq(stateDir string, log *slog.Logger) (*bootSeq, error) {
	s := &bootSeq{path: filepath.Join(stateDir, "sequence"), log: log}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("cannot read sequence state: %w", err)
	default:
		a, okA := decodeSeqSlot(b)
		var c seqFile
		okC := false
		if len(b) > seqSlot {
			c, okC = decodeSeqSlot(b[seqSlot:])
		}
		switch {
		case !okA && !okC:
			return nil, fmt.Errorf("sequence state %s is damaged (removing it restarts the numbering at 1: consumers may take new messages for old ones)", s.path)
		case okA && (!okC || a.Reserved >= c.Reserved):
			s.file, s.slot = a, 1
		default:
			s.file, s.slot = c, 0
		}
		if s.f, err = os.OpenFile(s.path, os.O_RDWR, 0); err != nil {
			return nil, fmt.Errorf("cannot open sequence state: %w", err)
		}
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	s.bootID = hex.EncodeToString(id)
	s.next = s.file.Reserved + 1
	s.file.Boots++
	s.reserveOrLog()
	return s, nil
}

// reserve durably records that numbers below next+seqBlock may be handed out. Called
// with mu held (or before s is shared).
func (s *bootSeq) reserve() error {
	f := s.file
	f.Reserved = s.next + seqBlock
	if s.f == nil {
		// First start: both slots hold the reservation; the file appears whole (rename).
		img := make([]byte, 2*seqSlot)
		copy(img, f.encode())
		copy(img[seqSlot:], f.encode())
		if err := writeFileSync(s.path, img); err != nil {
			return err
		}
		h, err := os.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		s.f, s.file = h, f
		return nil
	}
	if _, err := s.f.WriteAt(f.encode(), int64(s.slot*seqSlot)); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.file, s.slot = f, 1-s.slot
	return nil
}

// reserveOrLog reserves, logging a failure once until a reservation works again.
func (s *bootSeq) reserveOrLog() {
	if err := s.reserve(); err != nil {
		if !s.failed {
			s.log.Error("cannot reserve sequence numbers; after a crash some may repeat", logkey.Err, err)
		}
		s.failed = true
		s.file.Reserved = s.next + seqBlock // in memory only: the next try is a block later
	} else if s.failed {
		s.failed = false
		s.log.Info("sequence numbers reserved again")
	}
}

// Close releases the file.
func (s *bootSeq) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// BootID is this run's boot id.
func (s *bootSeq) BootID() string { return s.bootID }

// Next hands out the next sequence number. When the reserved block is used up it
// reserves the next one first; should that write fail the number is handed out anyway,
// so that health keeps flowing, and the failure is logged (reserveOrLog).
func (s *bootSeq) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next >= s.file.Reserved {
		s.reserveOrLog()
	}
	n := s.next
	s.next++
	return n
}

// next is Next for the methods of Daemon that run before or without Open's bootSeq
// (tests building a Daemon by hand): 0 then.
func (d *Daemon) nextSeq() uint64 {
	if d.bseq == nil {
		return 0
	}
	return d.bseq.Next()
}

// bootID is this run's boot id, "" without one (see nextSeq).
func (d *Daemon) bootID() string {
	if d.bseq == nil {
		return ""
	}
	return d.bseq.BootID()
}
