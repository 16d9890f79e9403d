package queue

// Recovery: what Open does to bring the queue back after any stop: the
// journal replayed, the in-memory state rebuilt from Badger, damaged records
// set aside, leftovers of interrupted deletes and enqueues removed.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/inferq/inferq/internal/logkey"
)

// checkDiskAtOpen makes sure Open has room to write (see disk.go): when the
// state file system is fuller than that, the ballast file is given back; when
// that is not enough, Open stops here with a *DiskFullError before Badger
// maps anything. It also warns about a volatile file system.
func (q *Queue) checkDiskAtOpen() error {
	reserve := q.opts.DiskReserve
	if reserve == 0 {
		reserve = q.opts.defaultDiskReserve()
	}
	q.disk = &diskGuard{dir: q.opts.Dir, reserve: max(reserve, 0), openNeed: q.opts.openDiskNeed(),
		ballast: filepath.Join(q.opts.Dir, "ballast"), now: time.Now, log: q.log.Warn}
	d, err := q.disk.look(true)
	if err != nil {
		q.log.Warn("queue cannot tell free disk space; no reserve is kept", logkey.Err, err)
		return nil
	}
	if d.fsType != "" {
		q.volatile = d.fsType
		q.log.Error("queue state is on a volatile file system: nothing queued survives a reboot or power cut",
			logkey.Dir, q.opts.Dir, "fs", d.fsType)
	}
	need := q.disk.openNeed
	if q.disk.reserve == 0 {
		need = 0
	}
	if d.free >= need {
		return nil
	}
	if q.disk.releaseBallast() {
		q.log.Warn("queue disk nearly full at open: ballast file given back", "free", mib(d.free), "need", mib(need))
		if d, err = q.disk.look(true); err != nil || d.free >= need {
			return nil
		}
	}
	return &DiskFullError{Dir: q.opts.Dir, Free: d.free, Need: need}
}

// load rebuilds the in-memory state from disk. At Open (atOpen) every leased
// job is released; after a failed commit, leases this process still holds are
// kept. It returns the referenced blob names when atOpen.
func (q *Queue) load(atOpen bool) (map[string]struct{}, error) {
	now := q.now().UnixNano()
	old := q.st.leases
	st := memState{leases: make(map[string]*leaseEntry), resultAt: make(map[string]int64), token: q.st.token,
		expired: q.st.expired}
	var blobs map[string]struct{}
	if atOpen {
		blobs = make(map[string]struct{})
	}
	type bad struct{ key, val []byte }
	var damaged []bad
	err := q.db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(metaSeqKey); err == nil {
			_ = item.Value(func(v []byte) error {
				if s, ok := decodeDone(v); ok && s > 0 {
					st.seq = uint64(s)
				}
				return nil
			})
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxJob}})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id, _ := parseIDKey(pfxJob, item.Key())
			var rec *record
			err := item.Value(func(v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					damaged = append(damaged, bad{item.KeyCopy(nil), append([]byte(nil), v...)})
					return nil
				}
				rec = r
				return nil
			})
			if err != nil {
				it.Close()
				return err
			}
			if rec == nil || id == "" {
				continue
			}
			st.jobs++
			st.bytes += rec.ImageSize
			st.seq = max(st.seq, rec.Seq, rec.DeadSeq)
			if blobs != nil && !rec.Inline {
				blobs[rec.Blob] = struct{}{}
			}
			e := entry{seq: rec.Seq, enq: rec.EnqueuedAt, id: id}
			switch rec.State {
			case stDead:
				st.dead++
			case stDelayed:
				if rec.Due > now {
					st.delayed.push(delayedEntry{due: rec.Due, prio: rec.Priority, e: e})
				} else {
					st.ready[rec.Priority].push(e)
				}
			case stLeased:
				if l, ok := old[id]; ok && !atOpen {
					st.leases[id] = l
				} else {
					st.ready[rec.Priority].push(e)
				}
			default:
				st.ready[rec.Priority].push(e)
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxOutbox}})
		for it.Rewind(); it.Valid(); it.Next() {
			seq, created, ok := parseOutboxKey(it.Item().Key())
			if !ok {
				continue
			}
			st.outbox = append(st.outbox, outRef{seq: seq, created: created})
			st.outCount++
			st.seq = max(st.seq, seq)
		}
		it.Close()
		loadResults(txn, &st, q.opts.resultTTL())
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxDamaged}})
		for it.Rewind(); it.Valid(); it.Next() {
			st.damaged++
		}
		it.Close()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot load queue: %w", err)
	}
	q.st = st
	if len(damaged) > 0 {
		txn := q.db.NewTransaction(true)
		defer txn.Discard()
		for _, d := range damaged {
			q.st.seq++
			q.log.Error("queue record damaged, set aside", "key", fmt.Sprintf("%q", d.key), "size", len(d.val))
			if err := txn.Set(damagedKey(q.st.seq, d.key), d.val); err != nil {
				return nil, fmt.Errorf("cannot set damaged record aside: %w", err)
			}
			if err := txn.Delete(d.key); err != nil {
				return nil, fmt.Errorf("cannot set damaged record aside: %w", err)
			}
			q.st.damaged++
		}
		if err := txn.Commit(); err != nil {
			return nil, fmt.Errorf("cannot set damaged records aside: %w", err)
		}
	}
	return blobs, nil
}

// removeEmptyLogFiles removes zero-length memtable (.mem) and value-log
// (.vlog) files. Badger deletes such a file by truncating it to zero and then
// unlinking it; a kill between the two leaves an empty file that makes the
// next badger.Open fail ("Create a new file"). An empty file holds no data.
func (q *Queue) removeEmptyLogFiles(dir string) error {
	logs, err := badgerLogFiles(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range logs {
		name := e.Name()
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("cannot remove empty log file: %w", err)
		}
		q.log.Warn("queue removed an empty log file left by an interrupted delete", "file", name)
	}
	return nil
}

// badgerLogFiles lists Badger's log files in dir: memtable write-ahead logs
// and value logs.
func badgerLogFiles(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list queue database dir: %w", err)
	}
	logs := ents[:0]
	for _, e := range ents {
		if name := e.Name(); strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog") {
			logs = append(logs, e)
		}
	}
	return logs, nil
}

// removeOrphans deletes blob files no record refers to and temp files left by
// an interrupted Enqueue.
func (q *Queue) removeOrphans(referenced map[string]struct{}) error {
	ents, err := os.ReadDir(q.blobDir)
	if err != nil {
		return fmt.Errorf("cannot list blob dir: %w", err)
	}
	removed := 0
	for _, e := range ents {
		name := e.Name()
		if _, ok := referenced[name]; ok {
			continue
		}
		if !strings.HasPrefix(name, "tmp-") && !validBlobName(name) {
			continue // not ours
		}
		if err := os.Remove(filepath.Join(q.blobDir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("cannot remove orphan blob: %w", err)
		}
		removed++
	}
	if removed > 0 {
		q.log.Info("queue removed orphan blob files", "count", removed)
	}
	return nil
}

// openJournal opens the journal, applies the records a previous process
// wrote after its last checkpoint, and checkpoints (always: Badger's files
// are then durable and the journal starts a new generation). A journal with a damaged
// header is renamed aside (it is logged) and a new one started.
func (q *Queue) openJournal() error {
	path := filepath.Join(q.opts.Dir, "journal")
	j, recs, err := openJournal(path, q.opts.journalSize)
	if errors.Is(err, ErrDamaged) {
		aside := fmt.Sprintf("%s.damaged-%d", path, q.now().Unix())
		q.log.Error("queue journal damaged, set aside; commits since the last checkpoint may be missing",
			logkey.Path, path, "aside", aside, logkey.Err, err)
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("cannot set damaged queue journal aside: %w", rerr)
		}
		j, recs, err = openJournal(path, q.opts.journalSize)
	}
	if err != nil {
		return err
	}
	q.jrnl = j
	if err := replayJournal(q.db, recs); err != nil {
		_ = j.close()
		return err
	}
	if err := q.checkpointLocked(); err != nil {
		_ = j.close()
		return err
	}
	if q.recovered = len(recs); q.recovered > 0 {
		q.log.Warn("queue was not closed by the previous process (crash, kill or power cut): journal applied again",
			"records", len(recs))
	}
	return nil
}
