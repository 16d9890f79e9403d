package queue

// entry is a job's place in the ready order of its priority: seq gives FIFO
// order, enq (enqueue time, Unix ns) the age for Stats.
type entry struct {
	seq uint64
	enq int64
	id  string
}

// seqHeap is a min-heap of entries by seq. Most pushes are at the tail (new
// jobs), returns from leases and retries go back to their original place.
type seqHeap []entry

func (h *seqHeap) push(e entry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].seq <= s[i].seq {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *seqHeap) pop() entry {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = entry{}
	s = s[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].seq < s[m].seq {
			m = l
		}
		if r < n && s[r].seq < s[m].seq {
			m = r
		}
		if m == i {
			break
		}
		s[m], s[i] = s[i], s[m]
		i = m
	}
	*h = s
	return top
}

// delayedEntry is a job waiting for its retry time due (Unix ns).
type delayedEntry struct {
	due  int64
	prio uint8
	e    entry
}

// dueHeap is a min-heap of delayed jobs by due time.
type dueHeap []delayedEntry

func (h *dueHeap) push(d delayedEntry) {
	*h = append(*h, d)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].due <= s[i].due {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *dueHeap) pop() delayedEntry {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = delayedEntry{}
	s = s[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].due < s[m].due {
			m = l
		}
		if r < n && s[r].due < s[m].due {
			m = r
		}
		if m == i {
			break
		}
		s[m], s[i] = s[i], s[m]
		i = m
	}
	*h = s
	return top
}

// outRef is an outbox row's place: its seq and creation time (both in its key).
type outRef struct {
	seq     uint64
	created int64
	deleted bool
}
