package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmallDeviceLargestOperation: the small-device preset's 2 MB memtable
// bounds one Badger transaction (and the value threshold) at 15% of it,
// 307 KiB, and every value counts in full since all stay in the LSM tree.
// The largest job, dead-lettering it with the longest error and an outbox of
// maxPayloadLen over 16 messages with the longest topics, and an outbox row
// of maxPayloadLen must commit, and the value log must stay empty. (An
// operation with many more long topics can exceed the bound and fail with
// Badger's ErrTxnTooBig; with the previous 8 MB memtable the bound was 1.2 MiB.)
func TestSmallDeviceLargestOperation(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir, nil)
	o.InlineMax = maxInlineMax
	if !o.SmallDevice {
		t.Fatal("testOptions: want the small-device preset")
	}
	q := mustOpen(t, o)
	ctx := context.Background()
	id := strings.Repeat("i", maxIDLen)
	mustEnqueue(t, q, NewJob{ID: id, Priority: 9, Source: strings.Repeat("s", maxSourceLen),
		Meta:  map[string]string{"k": strings.Repeat("m", maxMetaBytes-1)},
		Image: bytes.Repeat([]byte{7}, maxInlineMax)})
	many := make([]OutboxMsg, 16)
	for i := range many {
		many[i] = OutboxMsg{Topic: strings.Repeat("t", maxTopicLen), Payload: make([]byte, maxPayloadLen/len(many))}
	}
	one := OutboxMsg{Topic: strings.Repeat("t", maxTopicLen), Payload: make([]byte, maxPayloadLen)}

	l := poll(t, q)
	if l == nil {
		t.Fatal("no job to lease")
	}
	if err := q.Dead(ctx, l, errors.New(strings.Repeat("e", maxErrorLen)), many...); err != nil {
		t.Fatalf("Dead with %d outbox messages: %v", len(many), err)
	}
	if n, err := q.RetryDead(ctx, id); err != nil || n != 1 {
		t.Fatalf("RetryDead: %d, %v", n, err)
	}
	if l = poll(t, q); l == nil {
		t.Fatal("no job to lease after RetryDead")
	}
	if err := q.Ack(ctx, l, one); err != nil {
		t.Fatalf("Ack with a %d-byte payload: %v", maxPayloadLen, err)
	}
	if err := q.OutboxAppend(ctx, one); err != nil {
		t.Fatalf("OutboxAppend with a %d-byte payload: %v", maxPayloadLen, err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	vlogs, _ := filepath.Glob(filepath.Join(dir, "db", "*.vlog"))
	for _, f := range vlogs {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 1024 {
			t.Errorf("%s: %d bytes; want every value in the LSM tree", filepath.Base(f), fi.Size())
		}
	}
	q = mustOpen(t, o)
	if got := q.Stats().Outbox; got != len(many)+2 {
		t.Errorf("outbox rows after reopen: %d, want %d", got, len(many)+2)
	}
}
