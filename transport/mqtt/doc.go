// Package mqtt connects inferq to an MQTT broker (paho.mqtt.golang, MQTT
// 3.1.1) and can run an embedded broker (mochi-mqtt) for a single box.
//
// Topics are <prefix>/<node>/available (retained: "online" after every
// connect, "stopped" on Close, "offline" as the will), .../health (the
// retained document given to SetHealth, published now and after every
// reconnect), .../events, .../results/<source> and whatever relative topics
// the outbox rows name, and .../ingest/+ (plus configured filters, shared
// subscriptions "$share/<group>/<filter>" included).
//
// Connections. Run owns the connection: every connection is a fresh paho
// client (automatic reconnect off), so no token, message id or store
// crosses a reconnect. Attempts are spaced by a capped exponential backoff
// with jitter (each wait drawn from [d/2, d]). The client id is fixed and
// the session persistent (CleanSession=false): the broker keeps the
// subscriptions and unacknowledged ingest messages across reconnects and
// crashes, and subscriptions are renewed after each connect anyway.
//
// Results. The outbox is read in Seq order and published at QoS 1, up to
// OutboxBatch messages in flight on one connection. A row is deleted only
// when its PUBACK arrived on the connection that is still current, and only
// a prefix of a batch is deleted, so a reconnect re-sends the oldest
// unconfirmed rows first: delivery is at-least-once, the first arrival of
// each row keeps the outbox order, and consumers drop duplicates by the job
// id inside the payload. While the broker is away rows wait in the outbox.
//
// Ingest. Messages are handled concurrently (SetOrderMatters(false)) and
// acknowledged manually: the PUBACK goes out only after Sink.Submit returned
// without error, i.e. the job is durable. A payload is raw image bytes or a
// JSON envelope (see ParseIngest); its job id is the envelope's id or is
// derived from sha256(topic, payload), so a message redelivered after a
// crash is a duplicate for the queue, not a second job. Oversized or
// malformed payloads, and items the sink refuses for good (ErrRefused), are
// acknowledged so they do not loop, and a "rejected" event with retry=false
// says why. When Submit fails transiently (ErrQueueFull or any other error)
// the message is not acknowledged, a "rejected" event with retry=true is
// published once, and the handler retries Submit in place with backoff
// (200 ms doubling to 5 s) for as long as the connection lasts. MQTT 3.1.1
// brokers only redeliver on a new connection, so retrying in place avoids
// reconnect storms; the broker's in-flight window (Mosquitto's
// max_inflight_messages, 20 by default) bounds how many messages are held,
// and if inferq dies meanwhile the broker redelivers them. Operators should
// raise Mosquitto's max_queued_messages (1000 by default) if a box may be
// offline while much ingest traffic is queued for it.
//
// Counting. Stats.Refused counts messages refused for good, with the last
// topic and reason (LastRefused); Stats.Rejected counts transient submit
// failures (each retry once). Stats.LastError is the current error only:
// when the part that failed works again (a new connection, a SUBACK, an
// outbox read or a fully published batch, a queued ingest message) it moves
// to PastError with its time.
//
// Untrusted strings. Topics, ids, sources and reasons quoting them are cut
// (internal/textutil: 200 bytes per name, 1 KiB per message, with a
// "…(N bytes)" marker) before they reach a log line, an event or Stats.
//
// Extra subscriptions. Config.Subscriptions route their own filters to their own
// handlers (each message on a goroutine, acknowledged when the handler returns; the
// routes exist before the connect, so messages the persistent session kept reach them
// too); Config.Unsubscribe drops filters a former configuration left in the session;
// Config.OnConnect runs after every connect. Publish sends one QoS 1 message now and
// waits for its PUBACK, without the outbox: for messages that are worth nothing later.
//
// Concurrency. All methods of Client are safe for concurrent use. Open,
// Run and Close follow inferq's lifecycle: Open makes the first attempt
// (an unreachable broker is not an error, refused credentials are:
// ErrNotAuthorized), Run blocks, Close may be called twice.
//
// The embedded broker keeps sessions and retained messages in memory only.
package mqtt
