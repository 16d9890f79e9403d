//go:build !linux

package queue

import (
	"log/slog"
	"sync/atomic"
)

// pageTrimmer is Linux-only (see pagetrim_linux.go).
type pageTrimmer struct{ trims atomic.Int64 }

func startPageTrimmer(string, *slog.Logger) *pageTrimmer { return nil }

func (t *pageTrimmer) Stop() {}
