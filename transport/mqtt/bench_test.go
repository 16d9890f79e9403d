package mqtt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/inferq/inferq/transport/mqtt/mqtttest"
)

// BenchmarkOutboxPublish drains b.N outbox rows (200-byte payloads) to a
// real Mosquitto at QoS 1, with 1 row in flight (wait for each PUBACK) and
// with the default window. Compare the rows/s of the two.
func BenchmarkOutboxPublish(b *testing.B) {
	broker := mqtttest.Start(b, mqtttest.Options{})
	payload := make([]byte, 200)
	for _, batch := range []int{1, DefaultOutboxBatch} {
		b.Run(fmt.Sprintf("inflight=%d", batch), func(b *testing.B) {
			ob := newMemOutbox()
			for i := 0; i < b.N; i++ {
				ob.Add("results/cam1", payload)
			}
			cfg := Config{Brokers: []string{broker.URL()}, ClientID: fmt.Sprintf("bench-%d", batch), Prefix: "inferq", Node: "bench", OutboxBatch: batch}
			c, err := New(cfg, ob, nil, discard())
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			go func() { done <- c.Run(ctx) }()
			for ob.Len() > 0 {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			cancel()
			<-done
			c.Close()
		})
	}
}
