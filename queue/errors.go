package queue

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on.
var (
	// ErrFull is returned by Enqueue when a limit would be exceeded. The returned
	// error is a *FullError naming the limit and the values; errors.Is(err, ErrFull)
	// holds.
	ErrFull = errors.New("queue full")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("queue closed")
	// ErrNotLeased is returned by Ack, Nack and Dead for a lease that is unknown,
	// already settled or past its deadline (the job went back to the queue).
	ErrNotLeased = errors.New("job not leased")
	// ErrInvalid is returned for a NewJob or an outbox message that cannot be
	// stored; the message names the field and the value.
	ErrInvalid = errors.New("invalid job")
	// ErrImageCorrupt is returned by Image when the stored bytes do not match the
	// size or sha256 recorded at Enqueue, or the blob file is missing. It is
	// permanent: retrying the job cannot help.
	ErrImageCorrupt = errors.New("image corrupt")
	// ErrDamaged reports a stored record that could not be decoded. Such records
	// are moved aside under the damaged prefix and counted in Stats.Damaged.
	ErrDamaged = errors.New("damaged record")
)

// FullError is the error Enqueue returns when a limit is reached.
type FullError struct {
	Limit string // "max_jobs", "max_bytes" or "disk_reserve"
	Value int64  // jobs or bytes held plus the new job's; for disk_reserve the free bytes
	Max   int64  // the configured limit; for disk_reserve the reserve in bytes
}

func (e *FullError) Error() string {
	if e.Limit == "disk_reserve" {
		return fmt.Sprintf("queue full: disk nearly full: %s free, reserve %s", mib(e.Value), mib(e.Max))
	}
	return fmt.Sprintf("queue full: %s would be %d, limit %d", e.Limit, e.Value, e.Max)
}

// Is reports ErrFull so errors.Is(err, ErrFull) works.
func (e *FullError) Is(target error) bool { return target == ErrFull }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
