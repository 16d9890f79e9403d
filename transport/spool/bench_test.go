package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkTake renames b.N files into the spool and measures until the
// fake sink (hard link per job) holds them all: claim (rename + batched
// directory fsync), submit and removal per file.
func BenchmarkTake(b *testing.B) {
	root := b.TempDir()
	cfg := Config{Dir: filepath.Join(root, "spool"), ClaimDir: filepath.Join(root, "claim"),
		FailedDir: filepath.Join(root, "failed"), SettleTime: 10 * time.Millisecond, RescanInterval: time.Hour}
	staging := filepath.Join(root, "staging")
	os.MkdirAll(staging, 0o755)
	for i := 0; i < b.N; i++ {
		os.WriteFile(filepath.Join(staging, fmt.Sprintf("%08d.jpg", i)), []byte("x"), 0o644)
	}
	sink := &storeSink{dir: filepath.Join(root, "store"), jobs: map[string]Item{}, ch: make(chan Item, b.N)}
	os.MkdirAll(sink.dir, 0o755)
	w, err := New(cfg, sink, discard())
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Open(); err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("%08d.jpg", i)
		os.Rename(filepath.Join(staging, name), filepath.Join(cfg.Dir, name))
	}
	for sink.count() < b.N {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "files/s")
}
