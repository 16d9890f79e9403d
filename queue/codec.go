package queue

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"slices"
	"unicode/utf8"
)

// Key layout. Every key starts with a one-byte prefix:
//
//	'j' id        job record (encoded record)
//	'i' id        inline image bytes of a job
//	'x' id        done marker for dedupe (varint done time, Badger TTL)
//	'D' seq(8)    dead-letter index, value: job id
//	'o' seq(8) t  outbox row (encoded outboxRow); t: creation time, 8 bytes
//	'm' name      queue metadata (the sequence high-water mark)
//	'z' seq(8) k  a damaged record set aside under its original key k
//
// seq is big-endian so keys sort in sequence order.
const (
	pfxJob     = 'j'
	pfxImage   = 'i'
	pfxDone    = 'x'
	pfxDead    = 'D'
	pfxOutbox  = 'o'
	pfxMeta    = 'm'
	pfxDamaged = 'z'
	pfxResult  = 'r' // a done job's kept result (results.go)
)

var metaSeqKey = []byte("mseq")

func idKey(prefix byte, id string) []byte {
	k := make([]byte, 1+len(id))
	k[0] = prefix
	copy(k[1:], id)
	return k
}

// parseIDKey returns the id of a key made by idKey with the given prefix.
func parseIDKey(prefix byte, k []byte) (string, bool) {
	if len(k) < 2 || k[0] != prefix {
		return "", false
	}
	return string(k[1:]), true
}

func seqKey(prefix byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// parseSeqKey returns the sequence number of a key made by seqKey.
func parseSeqKey(prefix byte, k []byte) (uint64, bool) {
	if len(k) != 9 || k[0] != prefix {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

func damagedKey(seq uint64, orig []byte) []byte {
	k := make([]byte, 9, 9+len(orig))
	k[0] = pfxDamaged
	binary.BigEndian.PutUint64(k[1:], seq)
	return append(k, orig...)
}

// state is a job's state as stored.
type state uint8

const (
	stReady   state = 1
	stDelayed state = 2 // ready once due has passed
	stLeased  state = 3 // leased by a process; at Open this means "interrupted"
	stDead    state = 4
)

func (s state) String() string {
	switch s {
	case stReady:
		return "ready"
	case stDelayed:
		return "delayed"
	case stLeased:
		return "leased"
	case stDead:
		return "dead"
	}
	return "unknown"
}

// record is a job as stored under 'j' id. Times are Unix nanoseconds, 0 for none.
type record struct {
	State      state
	Priority   uint8
	Seq        uint64 // place in its priority (FIFO); kept across retries
	EnqueuedAt int64
	Deadline   int64
	Attempt    uint32
	LastError  string
	Source     string
	Meta       map[string]string
	Inline     bool
	ImageSize  int64
	SHA256     [32]byte
	Blob       string // blob file name when !Inline
	Due        int64  // delayed until
	DeadReason string
	DiedAt     int64
	DeadSeq    uint64
}

const recordVersion = 1

var (
	errShort    = errors.New("truncated")
	errChecksum = errors.New("checksum mismatch")
	errVersion  = errors.New("unknown version")
	errField    = errors.New("bad field")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) finish() []byte {
	return binary.LittleEndian.AppendUint32(e.b, crc32.Checksum(e.b, crcTable))
}

type decoder struct {
	b   []byte
	err error
}

// newDecoder checks the version byte and the trailing checksum.
func newDecoder(p []byte) (*decoder, error) {
	if len(p) < 5 {
		return nil, errShort
	}
	body, sum := p[:len(p)-4], binary.LittleEndian.Uint32(p[len(p)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errChecksum
	}
	if body[0] != recordVersion {
		return nil, errVersion
	}
	return &decoder{b: body[1:]}, nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str(max int) string {
	p := d.raw(max)
	if d.err == nil && !utf8.Valid(p) {
		d.err = errField
	}
	return string(p)
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errField
	}
	return d.err
}

func encodeRecord(r *record) []byte {
	e := encoder{b: make([]byte, 0, 96+len(r.Source)+len(r.LastError)+len(r.Blob))}
	e.b = append(e.b, recordVersion, byte(r.State), r.Priority)
	flags := byte(0)
	if r.Inline {
		flags |= 1
	}
	e.b = append(e.b, flags)
	e.uvarint(r.Seq)
	e.varint(r.EnqueuedAt)
	e.varint(r.Deadline)
	e.uvarint(uint64(r.Attempt))
	e.str(r.LastError)
	e.str(r.Source)
	keys := make([]string, 0, len(r.Meta))
	for k := range r.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.str(r.Meta[k])
	}
	e.varint(r.ImageSize)
	e.b = append(e.b, r.SHA256[:]...)
	e.str(r.Blob)
	e.varint(r.Due)
	e.str(r.DeadReason)
	e.varint(r.DiedAt)
	e.uvarint(r.DeadSeq)
	return e.finish()
}

func decodeRecord(p []byte) (*record, error) {
	d, err := newDecoder(p)
	if err != nil {
		return nil, err
	}
	if len(d.b) < 3 {
		return nil, errShort
	}
	r := &record{State: state(d.b[0]), Priority: d.b[1]}
	flags := d.b[2]
	d.b = d.b[3:]
	if r.State < stReady || r.State > stDead || r.Priority > MaxPriority || flags&^1 != 0 {
		return nil, errField
	}
	r.Inline = flags&1 != 0
	r.Seq = d.uvarint()
	r.EnqueuedAt = d.varint()
	r.Deadline = d.varint()
	att := d.uvarint()
	if att > math.MaxUint32 {
		return nil, errField
	}
	r.Attempt = uint32(att)
	r.LastError = d.str(1 << 20)
	r.Source = d.str(1 << 20)
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errShort
	}
	if n > 0 {
		r.Meta = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.str(1 << 20)
			r.Meta[k] = d.str(1 << 20)
		}
	}
	r.ImageSize = d.varint()
	if d.err == nil {
		if len(d.b) < 32 {
			return nil, errShort
		}
		copy(r.SHA256[:], d.b[:32])
		d.b = d.b[32:]
	}
	r.Blob = d.str(256)
	r.Due = d.varint()
	r.DeadReason = d.str(1 << 20)
	r.DiedAt = d.varint()
	r.DeadSeq = d.uvarint()
	if err := d.done(); err != nil {
		return nil, err
	}
	if r.ImageSize < 0 || (r.Inline && r.Blob != "") || (!r.Inline && !validBlobName(r.Blob)) {
		return nil, errField
	}
	return r, nil
}

// outboxRow is an outbox message as stored under 'o' seq.
type outboxRow struct {
	CreatedAt int64
	Topic     string
	Payload   []byte
}

func encodeOutbox(r *outboxRow) []byte {
	e := encoder{b: make([]byte, 0, 16+len(r.Topic)+len(r.Payload))}
	e.b = append(e.b, recordVersion)
	e.varint(r.CreatedAt)
	e.str(r.Topic)
	e.bytes(r.Payload)
	return e.finish()
}

func decodeOutbox(p []byte) (*outboxRow, error) {
	d, err := newDecoder(p)
	if err != nil {
		return nil, err
	}
	r := &outboxRow{}
	r.CreatedAt = d.varint()
	r.Topic = d.str(maxTopicLen)
	pl := d.raw(math.MaxInt32)
	if err := d.done(); err != nil {
		return nil, err
	}
	if len(pl) > 0 {
		r.Payload = slices.Clone(pl)
	}
	return r, nil
}

func encodeDone(doneAt int64) []byte { return binary.AppendVarint(nil, doneAt) }

func decodeDone(p []byte) (int64, bool) {
	v, n := binary.Varint(p)
	return v, n > 0 && n == len(p)
}

// validBlobName accepts the names newBlobName makes: 32 lower-case hex digits.
func validBlobName(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// outboxKey is 'o' seq(8) created(8): the creation time is in the key so that
// Open rebuilds the outbox's order and age from a key-only scan.
func outboxKey(seq uint64, created int64) []byte {
	k := make([]byte, 17)
	k[0] = pfxOutbox
	binary.BigEndian.PutUint64(k[1:], seq)
	binary.BigEndian.PutUint64(k[9:], uint64(created))
	return k
}

func parseOutboxKey(k []byte) (seq uint64, created int64, ok bool) {
	if len(k) != 17 || k[0] != pfxOutbox {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), int64(binary.BigEndian.Uint64(k[9:])), true
}
