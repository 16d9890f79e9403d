package queue

import "time"

// Stats is a snapshot of the queue's counters.
type Stats struct {
	Ready        map[int]int // ready jobs by priority (priorities with none are absent)
	ReadyTotal   int
	Leased       int
	Delayed      int // waiting for a retry
	Dead         int
	Outbox       int
	Bytes        int64         // image bytes held, dead jobs included
	OldestReady  time.Duration // age of the oldest ready job, 0 when none
	OutboxOldest time.Duration // age of the oldest outbox row, 0 when none
	Full         bool          // a job of average size would be refused
	Expired      uint64        // jobs expired since Open
	Damaged      uint64        // records set aside as damaged (held on disk)
	// Recovered counts the journal records Open applied again: commits the
	// previous process made without closing the queue (a crash, kill or power
	// cut). 0 after a clean stop.
	Recovered int
	MaxJobs   int
	MaxBytes  int64
	// The state file system: free bytes (-1 when it cannot be told), the
	// reserve kept there, whether new jobs are refused for it (DiskFull) and
	// whether leasing is held too (below a quarter of the reserve).
	DiskFree    int64
	DiskReserve int64
	DiskFull    bool
	LeasesHeld  bool
	DiskRefused uint64 // enqueues refused for the reserve since Open
	Volatile    string // "tmpfs" or "ramfs" when the state is on one: nothing survives a reboot
}

// Stats returns the counters, kept in memory and rebuilt at Open.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now().UnixNano()
	if !q.closed {
		q.promoteLocked(now)
	}
	s := Stats{
		Ready:     make(map[int]int),
		Leased:    len(q.st.leases),
		Delayed:   len(q.st.delayed),
		Dead:      q.st.dead,
		Outbox:    q.st.outCount,
		Bytes:     q.st.bytes,
		Expired:   q.st.expired,
		Damaged:   q.st.damaged,
		Recovered: q.recovered,
		MaxJobs:   q.opts.MaxJobs,
		MaxBytes:  q.opts.MaxBytes,
	}
	s.DiskReserve, s.Volatile, s.DiskFree = q.disk.reserve, q.volatile, -1
	if d, err := q.disk.look(false); err == nil {
		s.DiskFree = d.free
		s.DiskFull = q.disk.full(d)
		s.LeasesHeld = s.DiskReserve > 0 && d.free < q.disk.floor()
	}
	q.disk.mu.Lock()
	s.DiskRefused = q.disk.refuse
	q.disk.mu.Unlock()
	if s.DiskFull {
		s.Full = true
	}
	var oldest int64
	for p := range q.st.ready {
		h := q.st.ready[p]
		if len(h) == 0 {
			continue
		}
		s.Ready[p] = len(h)
		s.ReadyTotal += len(h)
		if oldest == 0 || h[0].enq < oldest {
			oldest = h[0].enq
		}
	}
	if oldest != 0 {
		s.OldestReady = time.Duration(max(now-oldest, 0))
	}
	if q.st.outHead < len(q.st.outbox) {
		s.OutboxOldest = time.Duration(max(now-q.st.outbox[q.st.outHead].created, 0))
	}
	if q.opts.MaxJobs > 0 && q.st.jobs >= q.opts.MaxJobs {
		s.Full = true
	}
	if q.opts.MaxBytes > 0 && q.st.jobs > 0 && q.st.bytes+q.st.bytes/int64(q.st.jobs) > q.opts.MaxBytes {
		s.Full = true
	}
	return s
}
