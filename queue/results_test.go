package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestKeptResults: a result acked with Keep is what Get returns for the done job; only
// the ResultsKept most recent (and ResultsMaxBytes) are kept, the oldest deleted first,
// and the order survives a reopen: the next ack after it evicts the oldest, not a newer one.
func TestKeptResults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	o.ResultsKept = 3
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ackWith := func(q *Queue, id string, out ...OutboxMsg) {
		t.Helper()
		mustEnqueue(t, q, NewJob{ID: id})
		l, err := q.Lease(ctx)
		if err != nil || l.Job.ID != id {
			t.Fatalf("lease %s: %v %v", id, l, err)
		}
		if err := q.Ack(ctx, l, out...); err != nil {
			t.Fatal(err)
		}
	}
	kept := func(q *Queue, id string) string {
		t.Helper()
		info, err := q.Get(id)
		if err != nil || info.State != "done" {
			t.Fatalf("get %s: %+v %v", id, info, err)
		}
		return string(info.Result)
	}
	for i := range 5 {
		id := fmt.Sprintf("j%d", i)
		ackWith(q, id, OutboxMsg{Topic: "events", Payload: []byte("event " + id)},
			OutboxMsg{Topic: "results/x", Payload: []byte("result " + id), Keep: true})
	}
	ackWith(q, "plain", OutboxMsg{Topic: "results/x", Payload: []byte("not kept")})
	for i, want := range []string{"", "", "result j2", "result j3", "result j4"} {
		if got := kept(q, fmt.Sprintf("j%d", i)); got != want {
			t.Errorf("j%d result = %q, want %q", i, got, want)
		}
	}
	if got := kept(q, "plain"); got != "" {
		t.Errorf("a result acked without Keep was kept: %q", got)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = mustOpen(t, o)
	if got := kept(q, "j2"); got != "result j2" {
		t.Fatalf("after reopen: j2 = %q", got)
	}
	ackWith(q, "j5", OutboxMsg{Topic: "results/x", Payload: []byte("result j5"), Keep: true})
	for i, want := range []string{"", "", "", "result j3", "result j4", "result j5"} {
		if got := kept(q, fmt.Sprintf("j%d", i)); got != want {
			t.Errorf("after reopen and one more ack: j%d result = %q, want %q", i, got, want)
		}
	}
	if _, err := q.Get("never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

// TestKeptResultsBytes: the byte bound evicts as the count bound does; ResultsKept 0
// keeps nothing.
func TestKeptResultsBytes(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name        string
		kept        int
		maxBytes    int64
		wantResults int
	}{
		{"bytes bound", 100, 2500, 2},
		{"count bound", 3, 1 << 20, 3},
		{"none", 0, 1 << 20, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, t.TempDir(), nil)
			o.ResultsKept, o.ResultsMaxBytes = tt.kept, tt.maxBytes
			q := mustOpen(t, o)
			for i := range 6 {
				id := fmt.Sprintf("j%d", i)
				mustEnqueue(t, q, NewJob{ID: id})
				l, err := q.Lease(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := q.Ack(ctx, l, OutboxMsg{Topic: "r", Payload: []byte(strings.Repeat("x", 1000)), Keep: true}); err != nil {
					t.Fatal(err)
				}
			}
			n := 0
			for i := range 6 {
				info, err := q.Get(fmt.Sprintf("j%d", i))
				if err != nil {
					t.Fatal(err)
				}
				if len(info.Result) > 0 {
					n++
					if i < 6-tt.wantResults {
						t.Errorf("j%d kept, an older one than the newest %d", i, tt.wantResults)
					}
				}
			}
			if n != tt.wantResults {
				t.Fatalf("%d results kept, want %d", n, tt.wantResults)
			}
		})
	}
}
