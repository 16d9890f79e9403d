//go:build !linux

package spool

// completions is Linux-only (inotify's IN_CLOSE_WRITE and IN_MOVED_TO);
// elsewhere files are taken by the settle rule alone.
type completions struct{ C chan string }

func newCompletions() (*completions, error) { return nil, nil }

func (c *completions) add(string) error { return nil }

func (c *completions) close() {}
