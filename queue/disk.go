package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Badger writes its memtable logs and tables through shared memory maps of
// sparse files: a store into a page that the file system cannot back (a full
// disk) is a SIGBUS that kills the process, not an error, and the next Open,
// which writes into the same maps, dies the same way. The queue therefore
// never lets its own writes run the state file system dry:
//
//   - below DiskReserve free bytes, Enqueue refuses new jobs with a
//     *FullError (Limit "disk_reserve"): the sources leave their input where
//     it is (spool files in place, MQTT messages unacknowledged);
//   - leases, acks, dead-lettering and the outbox keep working inside the
//     reserve, so the backlog drains and results go out while input waits;
//   - below a quarter of the reserve (the floor), Lease hands out nothing
//     more either: what is left is kept for settling leased jobs, the outbox
//     and Badger's flushes and compactions;
//   - a ballast file (Dir/ballast, a quarter of the reserve, written when
//     there is room) is given back when something else takes the disk below
//     the floor while the queue runs, and at Open when the disk has less free
//     than Open writes, so a box whose disk filled up still starts and
//     drains; Open refuses with a *DiskFullError, never touching Badger's
//     maps, when even that is not enough.
//
// The default reserve is what Badger may write without the queue asking:
// what Open writes (the journal, replayed into Badger, and two memtables: one
// filling, one flushing into a table) plus what its compactions may write
// before they delete their inputs (each of NumCompactors compactors merges
// up to NumLevelZeroTablesStall level-0 tables, or one table, with up to
// LevelSizeMultiplier tables of the next level). With SmallDevice: 8 MiB +
// 2 x 14 x 2 MiB = 64 MiB.

// DiskFullError is returned by Open when the state file system has less free
// space than Open needs, even after the ballast file was given back.
type DiskFullError struct {
	Dir        string
	Free, Need int64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("disk full: %s has %s free, the queue needs %s to open", e.Dir, mib(e.Free), mib(e.Need))
}

// Is reports ErrDiskFull so errors.Is works.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// ErrDiskFull matches a *DiskFullError.
var ErrDiskFull = errors.New("disk full")

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Volatile file systems: nothing written there survives a reboot.
var volatileFS = map[int64]string{
	unix.TMPFS_MAGIC: "tmpfs",
	unix.RAMFS_MAGIC: "ramfs",
}

// diskInfo is one look at the state file system.
type diskInfo struct {
	free     int64  // bytes available to this process
	fsType   string // name of a volatile file system, "" otherwise
	statfsOK bool
}

func statDisk(dir string) (diskInfo, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return diskInfo{}, fmt.Errorf("cannot stat file system of %s: %w", dir, err)
	}
	free := s.Bavail // what an unprivileged process may use
	if os.Geteuid() == 0 {
		free = s.Bfree // root may use the blocks ext4 keeps for it too
	}
	return diskInfo{free: int64(free) * int64(s.Bsize), fsType: volatileFS[int64(s.Type)], statfsOK: true}, nil
}

// openDiskNeed is what Open may write: the journal replayed into Badger and
// two memtables.
func (o Options) openDiskNeed() int64 {
	j := o.journalSize
	if j <= 0 {
		j = defaultJournalSize
	}
	return j + 2*o.badgerOptions().MemTableSize
}

// defaultDiskReserve is the reserve for Options whose DiskReserve is 0.
func (o Options) defaultDiskReserve() int64 {
	bo := o.badgerOptions()
	compaction := int64(bo.NumCompactors) * int64(bo.NumLevelZeroTablesStall+bo.LevelSizeMultiplier) * bo.BaseTableSize
	return o.openDiskNeed() + compaction
}

// diskGuard watches the state file system's free space.
type diskGuard struct {
	dir      string
	reserve  int64
	openNeed int64
	ballast  string
	now      func() time.Time
	log      func(msg string, args ...any)

	mu     sync.Mutex
	at     time.Time // when free was read
	info   diskInfo
	err    error
	since  int64  // bytes admitted since free was read: taken off it until the next read
	refuse uint64 // enqueues refused for the reserve
	// refused is the size of the last request refused, 0 once one is admitted.
	refused int64
}

// diskCacheFor is how long one statfs answer is used: short next to the time
// it takes to write a reserve's worth.
const diskCacheFor = 20 * time.Millisecond

func (g *diskGuard) look(fresh bool) (diskInfo, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if fresh || !g.info.statfsOK || now.Sub(g.at) > diskCacheFor || now.Before(g.at) {
		g.info, g.err = statDisk(g.dir)
		g.at, g.since = now, 0
	}
	d := g.info
	d.free -= g.since
	return d, g.err
}

// floor is the free space below which nothing more is leased.
func (g *diskGuard) floor() int64 { return g.reserve / 4 }

// ballastSize is the size of the ballast file.
func (g *diskGuard) ballastSize() int64 { return max(g.reserve/4, g.openNeed) }

// admit checks that need more bytes can be taken in while keeping the
// reserve; it returns a *FullError when not, counted when count is set.
func (g *diskGuard) admit(need int64, count bool) error {
	if g.reserve <= 0 {
		return nil
	}
	d, err := g.look(false)
	if err != nil {
		return nil // a file system that cannot be asked is not called full
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if d.free-need < g.reserve {
		if count {
			g.refuse++
		}
		g.refused = max(need, 1)
		return &FullError{Limit: "disk_reserve", Value: d.free, Max: g.reserve}
	}
	g.since += need // about to be written: counted until free is read again
	g.refused = 0
	return nil
}

// full reports whether input is refused for the reserve now: the free space
// is below it, or too little above it for the last request refused.
func (g *diskGuard) full(d diskInfo) bool {
	if g.reserve <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return d.free-max(g.refused-1, 0) < g.reserve
}

// holdLeases reports whether free space is below the floor. Something else
// took the space when it is (the queue's own input stops at the reserve):
// the ballast file is given back first.
func (g *diskGuard) holdLeases() bool {
	if g.reserve <= 0 {
		return false
	}
	d, err := g.look(false)
	if err != nil || d.free >= g.floor() {
		return false
	}
	if g.releaseBallast() {
		g.log("queue disk below its floor while running: ballast file given back", "free", mib(d.free), "floor", mib(g.floor()))
		if d, err = g.look(true); err == nil && d.free >= g.floor() {
			return false
		}
	}
	return true
}

// releaseBallast removes the ballast file; it reports whether there was one.
func (g *diskGuard) releaseBallast() bool {
	err := os.Remove(g.ballast)
	return err == nil
}

// keepBallast writes the ballast file when it is missing and there is room
// for it beyond the reserve. Written blocks (not a sparse or fallocated
// file) so that removing it surely frees them.
func (g *diskGuard) keepBallast() error {
	if g.reserve <= 0 {
		return nil
	}
	if fi, err := os.Stat(g.ballast); err == nil && fi.Size() >= g.ballastSize() {
		return nil
	}
	d, err := g.look(true)
	if err != nil || d.free < g.reserve+g.ballastSize() {
		return err
	}
	tmp := g.ballast + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create ballast file: %w", err)
	}
	err = zeroFill(f, 0, g.ballastSize())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, g.ballast)
	}
	if err == nil {
		err = syncDir(filepath.Dir(g.ballast))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot write ballast file: %w", err)
	}
	return nil
}
