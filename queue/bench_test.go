package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Benchmarks report ops/s so figures read as rates; the baselines run in the
// same invocation so they can be read as ratios.

const benchImageSize = 512 // inline, like a thumbnail; large images are blob files

func benchOptions(dir string) Options {
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	return o
}

func reportRate(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
}

// runProducers calls op(i) for i in [0, n) from p goroutines.
func runProducers(b *testing.B, p, n int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, p)
	for g := 0; g < p; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEnqueue: durable Enqueue with group commit.
func BenchmarkEnqueue(b *testing.B) {
	for _, p := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("producers=%d", p), func(b *testing.B) {
			q, err := Open(benchOptions(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			img := make([]byte, benchImageSize)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			runProducers(b, p, b.N, func(i int) error {
				_, err := q.Enqueue(ctx, NewJob{ID: "job-" + strconv.Itoa(i), Priority: i % 10, Source: "cam1", Image: img})
				return err
			})
			reportRate(b, b.N)
		})
	}
}

// BenchmarkEnqueueBaselineSyncWrites: the same record and image written by a
// Badger transaction per enqueue with SyncWrites (a commit and its fsync per
// job; Badger itself may merge concurrent commits).
func BenchmarkEnqueueBaselineSyncWrites(b *testing.B) {
	for _, p := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("producers=%d", p), func(b *testing.B) {
			o := benchOptions(b.TempDir())
			db, err := badger.Open(baselineBadgerOptions(o))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			img := make([]byte, benchImageSize)
			b.ReportAllocs()
			b.ResetTimer()
			runProducers(b, p, b.N, func(i int) error {
				id := "job-" + strconv.Itoa(i)
				rec := encodeRecord(&record{State: stReady, Priority: uint8(i % 10), Seq: uint64(i), EnqueuedAt: time.Now().UnixNano(),
					Source: "cam1", Inline: true, ImageSize: benchImageSize})
				return db.Update(func(txn *badger.Txn) error {
					if _, err := txn.Get(idKey(pfxJob, id)); err != badger.ErrKeyNotFound {
						return fmt.Errorf("dedupe lookup: %v", err)
					}
					if err := txn.Set(idKey(pfxJob, id), rec); err != nil {
						return err
					}
					return txn.Set(idKey(pfxImage, id), img)
				})
			})
			reportRate(b, b.N)
		})
	}
}

// baselineBadgerOptions is the queue's Badger configuration, but with
// Badger's own synchronous commits (two msyncs each) instead of the journal:
// what using Badger directly for durability costs.
func baselineBadgerOptions(o Options) badger.Options {
	return o.badgerOptions().WithSyncWrites(true)
}

func fill(b *testing.B, q *Queue, n, producers int, prefix string) {
	img := make([]byte, benchImageSize)
	ctx := context.Background()
	runProducers(b, producers, n, func(i int) error {
		_, err := q.Enqueue(ctx, NewJob{ID: prefix + strconv.Itoa(i), Priority: i % 3, Source: "cam1", Image: img})
		return err
	})
}

// BenchmarkLeaseAck: one worker's durable cycle with one outbox row per job:
// "lease+ack" is Lease then Ack (two commits per job), "acknext" is AckNext,
// which commits one job's ack with the next job's lease (one commit per job).
// "disk-ceiling" is the journal alone: one synchronous write of an AckNext-
// sized record per op, the most any one-commit-per-job cycle can reach here.
func BenchmarkLeaseAck(b *testing.B) {
	b.Run("disk-ceiling", benchJournalAppend)
	for _, mode := range []string{"lease+ack", "acknext"} {
		b.Run(mode, func(b *testing.B) {
			q, err := Open(benchOptions(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			fill(b, q, b.N, 64, "job-")
			ctx := context.Background()
			payload := make([]byte, 300)
			b.ReportAllocs()
			b.ResetTimer()
			var l *Lease
			for i := 0; i < b.N; i++ {
				if l == nil {
					if l, err = q.Lease(ctx); err != nil {
						b.Fatal(err)
					}
				}
				out := OutboxMsg{Topic: "results/cam1", Payload: payload}
				if mode == "acknext" {
					l, err = q.AckNext(ctx, l, out)
				} else {
					err = q.Ack(ctx, l, out)
					l = nil
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N)
		})
	}
}

// BenchmarkAckNextVsDisk interleaves, in rounds of 100, AckNext cycles (one
// outbox row each) with raw synchronous journal appends of the same size on
// the same disk, so both rates see the same disk moment: a shared virtio
// disk's sync rate drifts by 2x within a minute here. It reports both rates
// and their ratio (1 would be a queue costing nothing beyond its one write).
func BenchmarkAckNextVsDisk(b *testing.B) {
	dir := b.TempDir()
	q, err := Open(benchOptions(filepath.Join(dir, "q")))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	fill(b, q, b.N+1, 16, "job-")
	j, _, err := openJournal(filepath.Join(dir, "raw-journal"), defaultJournalSize)
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	rec := make([]byte, 1100)
	ctx := context.Background()
	payload := make([]byte, 300)
	l, err := q.Lease(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var tq, td time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(100, b.N-done)
		start := time.Now()
		for i := 0; i < n; i++ {
			if !j.fits(len(rec) - journalRecHead) {
				if err := j.reset(); err != nil {
					b.Fatal(err)
				}
			}
			if err := j.append(rec); err != nil {
				b.Fatal(err)
			}
		}
		mid := time.Now()
		for i := 0; i < n; i++ {
			if l, err = q.AckNext(ctx, l, OutboxMsg{Topic: "results/cam1", Payload: payload}); err != nil || l == nil {
				b.Fatalf("AckNext: %v, %v", l, err)
			}
		}
		td += mid.Sub(start)
		tq += time.Since(mid)
		done += n
	}
	b.ReportMetric(float64(b.N)/tq.Seconds(), "acknext/s")
	b.ReportMetric(float64(b.N)/td.Seconds(), "disk/s")
	b.ReportMetric(td.Seconds()/tq.Seconds(), "ratio")
}

// benchJournalAppend appends records of 1,100 bytes (an AckNext commit with a
// 300-byte outbox row) to a journal, one synchronous write each.
func benchJournalAppend(b *testing.B) {
	j, _, err := openJournal(filepath.Join(b.TempDir(), "journal"), defaultJournalSize)
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	rec := make([]byte, 1100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !j.fits(len(rec) - journalRecHead) {
			if err := j.reset(); err != nil {
				b.Fatal(err)
			}
		}
		if err := j.append(rec); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
}

// BenchmarkLeaseAckBaselineSyncWrites: the same cycle as plain Badger
// transactions with SyncWrites, without the queue (read and rewrite the
// record; then delete it, write the done marker and the outbox row).
func BenchmarkLeaseAckBaselineSyncWrites(b *testing.B) {
	o := benchOptions(b.TempDir())
	db, err := badger.Open(baselineBadgerOptions(o))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	wb := db.NewWriteBatch()
	img := make([]byte, benchImageSize)
	for i := 0; i < b.N; i++ {
		id := "job-" + strconv.Itoa(i)
		rec := encodeRecord(&record{State: stReady, Seq: uint64(i), Inline: true, ImageSize: benchImageSize})
		if err := wb.Set(idKey(pfxJob, id), rec); err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(idKey(pfxImage, id), img); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "job-" + strconv.Itoa(i)
		err := db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(idKey(pfxJob, id))
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			r.State, r.Attempt = stLeased, r.Attempt+1
			return txn.Set(idKey(pfxJob, id), encodeRecord(r))
		})
		if err != nil {
			b.Fatal(err)
		}
		err = db.Update(func(txn *badger.Txn) error {
			if err := txn.Delete(idKey(pfxJob, id)); err != nil {
				return err
			}
			if err := txn.Delete(idKey(pfxImage, id)); err != nil {
				return err
			}
			if err := txn.SetEntry(badger.NewEntry(idKey(pfxDone, id), encodeDone(1)).WithTTL(time.Hour)); err != nil {
				return err
			}
			row := encodeOutbox(&outboxRow{CreatedAt: 1, Topic: "results/cam1", Payload: payload})
			return txn.Set(outboxKey(uint64(i), 1), row)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
}

const bigQueue = 100_000

var (
	bigDirOnce sync.Once
	bigDir     string
	bigDirErr  error
)

// bigQueueDir returns a queue directory holding 100,000 queued jobs, filled
// once per test binary run (removed by TestMain).
func bigQueueDir(b *testing.B) string {
	bigDirOnce.Do(func() {
		bigDir, bigDirErr = os.MkdirTemp("", "inferq-queue-bench-")
		if bigDirErr != nil {
			return
		}
		var q *Queue
		if q, bigDirErr = Open(benchOptions(bigDir)); bigDirErr != nil {
			return
		}
		start := time.Now()
		fill(b, q, bigQueue, 64, "job-")
		b.Logf("filled %d jobs in %v", bigQueue, time.Since(start))
		bigDirErr = q.Close()
	})
	if bigDirErr != nil {
		b.Fatal(bigDirErr)
	}
	return bigDir
}

// BenchmarkReopen100k: Open (with recovery: scan, counters, orphan check)
// and Close of a queue holding 100,000 jobs.
func BenchmarkReopen100k(b *testing.B) {
	dir := bigQueueDir(b)
	b.ResetTimer()
	var openTime time.Duration
	for i := 0; i < b.N; i++ {
		openTime += timedOpen(b, dir, func(st Stats) {
			if st.ReadyTotal != bigQueue {
				b.Fatalf("ReadyTotal: got %d, want %d", st.ReadyTotal, bigQueue)
			}
		})
	}
	b.ReportMetric(openTime.Seconds()*1000/float64(b.N), "ms/open")
}

// timedOpen opens the queue in dir, checks its stats, closes it, and returns
// how long Open took.
func timedOpen(b *testing.B, dir string, check func(Stats)) time.Duration {
	start := time.Now()
	q, err := Open(benchOptions(dir))
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	check(q.Stats())
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	return took
}

// BenchmarkReopenFullJournal: Open after a crash that left a full journal
// (4 MB of enqueue and AckNext commits, each ack with a 300-byte outbox row) for Open to
// apply again. Replay is idempotent, so every iteration replays the same
// journal over the same store.
func BenchmarkReopenFullJournal(b *testing.B) {
	dir := b.TempDir()
	q, err := Open(benchOptions(dir))
	if err != nil {
		b.Fatal(err)
	}
	fill(b, q, 20_000, 16, "job-")
	ctx := context.Background()
	l, err := q.Lease(ctx)
	payload := make([]byte, 300)
	cycles := 0
	for err == nil && q.jrnl.off < q.jrnl.size-64<<10 {
		l, err = q.AckNext(ctx, l, OutboxMsg{Topic: "results/cam1", Payload: payload})
		cycles++
	}
	if err != nil {
		b.Fatal(err)
	}
	recs := q.jrnl.seq
	crash(b, q) // the journal keeps its records
	jpath := filepath.Join(dir, "journal")
	saved, err := os.ReadFile(jpath)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("journal: %d records from %d cycles", recs, cycles)
	b.ResetTimer()
	var openTime time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := os.WriteFile(jpath, saved, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		openTime += timedOpen(b, dir, func(st Stats) {
			if st.Outbox != cycles {
				b.Fatalf("outbox after replay: %d rows, want %d", st.Outbox, cycles)
			}
		})
	}
	b.ReportMetric(openTime.Seconds()*1000/float64(b.N), "ms/open")
	b.ReportMetric(float64(recs), "records")
}

// BenchmarkRSS100k re-executes the test binary to measure resident memory
// (from /proc/self/status) of a process that fills a fresh queue with
// 100,000 jobs as fast as 16 producers can (peak: VmHWM, and the fill rate),
// and of one that opens that queue and runs 100 lease+ack cycles (VmRSS, and
// its anonymous part: file-backed pages are Badger's mmapped tables,
// reclaimable), with and without the small-device preset, and with the Go
// memory limit that brings the small-device fill under 64 MB.
func BenchmarkRSS100k(b *testing.B) {
	for _, c := range []struct {
		small    bool
		memLimit string // GOMEMLIMIT of the child; "" for none
	}{{true, ""}, {false, ""}, {true, "42MiB"}} {
		name := fmt.Sprintf("small_device=%v", c.small)
		if c.memLimit != "" {
			name += ",gomemlimit=" + c.memLimit
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var fill, open map[string]float64
			for i := 0; i < b.N; i++ {
				os.RemoveAll(filepath.Join(dir, "q"))
				fill = rssChild(b, "fill", filepath.Join(dir, "q"), c.small, c.memLimit)
				open = rssChild(b, "open", filepath.Join(dir, "q"), c.small, c.memLimit)
			}
			b.ReportMetric(fill["VmHWM"], "MB-fill-peak")
			b.ReportMetric(bigQueue/fill["fill_s"], "fill-jobs/s")
			b.ReportMetric(open["VmRSS"], "MB-rss-open")
			b.ReportMetric(open["RssAnon"], "MB-anon-open")
			b.ReportMetric(open["HeapInuse"], "MB-goheap-open")
		})
	}
}

func rssChild(b *testing.B, mode, dir string, small bool, memLimit string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=rss-"+mode, envDir+"="+dir, envRound+"="+strconv.FormatBool(small))
	if memLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+memLimit)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("rss child %s: %v", mode, err)
	}
	m := map[string]float64{}
	for _, f := range strings.Fields(string(out)) {
		k, v, ok := strings.Cut(f, "=")
		if ok {
			m[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	return m
}

func rssChildMain(mode string) int {
	o := benchOptions(os.Getenv(envDir))
	o.SmallDevice = os.Getenv(envRound) == "true"
	q, err := Open(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	switch mode {
	case "rss-fill":
		start := time.Now()
		img := make([]byte, benchImageSize)
		var next atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= bigQueue; i = next.Add(1) {
					if _, err := q.Enqueue(ctx, NewJob{ID: "job-" + strconv.FormatInt(i, 10), Priority: int(i % 3), Image: img}); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
				}
			}()
		}
		wg.Wait()
		fmt.Printf("fill_s=%.2f ", time.Since(start).Seconds())
	case "rss-open":
		for i := 0; i < 100; i++ {
			l, err := q.Lease(ctx)
			if err == nil {
				err = q.Ack(ctx, l, OutboxMsg{Topic: "results/cam1", Payload: make([]byte, 300)})
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	st := q.Stats()
	if p := os.Getenv("INFERQ_QUEUE_HEAPPROFILE"); p != "" {
		// For finding what holds the memory: go tool pprof -sample_index=inuse_space.
		if hf, err := os.Create(p); err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(hf)
			hf.Close()
		}
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (k == "VmRSS" || k == "VmHWM" || k == "RssAnon" || k == "RssFile") {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			fmt.Printf("%s=%.1f ", k, kb/1024)
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("HeapInuse=%.1f GoSys=%.1f ", float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20))
	fmt.Printf("jobs=%d\n", st.ReadyTotal)
	q.Close()
	return 0
}
