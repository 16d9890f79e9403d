package queue

// entry is a job's place in the ready order of its priority: seq gives FIFO
// order, enq (enqueue time, Unix ns) the age for Stats.
type entry struct {
	seq uint64
	enq int64
	id  string
}

// before orders heap items: a.before(b) puts a nearer the top.
type before[T any] interface{ before(T) bool }

// minHeap is a binary min-heap of values ordered by their before method.
type minHeap[T before[T]] []T

func (h *minHeap[T]) push(x T) {
	*h = append(*h, x)
	h.up(len(*h) - 1)
}

func (h *minHeap[T]) pop() T {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	var zero T
	s[n] = zero
	*h = s[:n]
	h.down(0)
	return top
}

// up moves the item at i towards the top while it comes before its parent.
func (h *minHeap[T]) up(i int) {
	s := *h
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			return
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

// down moves the item at i towards the bottom while a child comes before it.
func (h *minHeap[T]) down(i int) {
	s := *h
	n := len(s)
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].before(s[m]) {
			m = l
		}
		if r < n && s[r].before(s[m]) {
			m = r
		}
		if m == i {
			return
		}
		s[m], s[i] = s[i], s[m]
		i = m
	}
}

// removeFunc removes the first item for which match holds and reports it.
// O(n): for operators' actions on single jobs, not for the hot path.
func (h *minHeap[T]) removeFunc(match func(T) bool) (T, bool) {
	s := *h
	for i := range s {
		if !match(s[i]) {
			continue
		}
		x := s[i]
		n := len(s) - 1
		s[i] = s[n]
		var zero T
		s[n] = zero
		*h = s[:n]
		if i < n {
			h.fix(i)
		}
		return x, true
	}
	var zero T
	return zero, false
}

// fix restores the heap order after the item at i changed.
func (h *minHeap[T]) fix(i int) {
	h.up(i)
	h.down(i)
}

// seqHeap orders a priority's ready jobs by seq. Most pushes are at the tail (new jobs);
// returns from leases and retries go back to their original place.
type seqHeap = minHeap[entry]

func (a entry) before(b entry) bool { return a.seq < b.seq }

// delayedEntry is a job waiting for its retry time due (Unix ns).
type delayedEntry struct {
	due  int64
	prio uint8
	e    entry
}

// dueHeap orders delayed jobs by due time.
type dueHeap = minHeap[delayedEntry]

func (a delayedEntry) before(b delayedEntry) bool { return a.due < b.due }

// outRef is an outbox row's place: its seq and creation time (both in its key).
type outRef struct {
	seq     uint64
	created int64
	deleted bool
}
