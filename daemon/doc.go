// Package daemon wires inferq together: configuration (defaults, load, validate), the
// single worker loop, the retry and dead-letter policy, health, and the local control API.
//
// Guarantees:
//   - A configuration error names the field and the bad value, and stops start-up before
//     anything on disk is touched.
//   - One job runs at a time. Its outcome — result row, lifecycle event, and the ack, retry
//     or dead-letter of the job — is committed in one queue transaction, so a crash at any
//     point either repeats the job or publishes its result, never neither.
//   - With worker.overlap (the default) the next job is leased before the current one
//     ends and its image prepared meanwhile; its model starts as soon as the current
//     one's is done, while the current job's outcome is committed. Still one inference
//     at a time; at most two jobs are leased (the ack leases the next job in its own
//     commit); a job of a higher priority ready by then, a pending reload or a pause
//     makes the next start wait for the commit; a stop gives the held job back unrun.
//   - A transient failure (engine crash, timeout, runtime error) is retried with backoff
//     until queue.max_attempts; a permanent one (an image or output the model cannot take)
//     is dead-lettered at once. Every dead or expired job still gets a result message with
//     status "failed" or "expired" and the reason, and a dead job a "dead" event, also
//     when its attempts ran out because the process died with it (queue.Options.
//     OnExhausted); such jobs count in the worker's dead jobs as in the queue's.
//   - No result is lost quietly: a result that cannot be stored whole (its message and done
//     event over OutboxPayloadLimit, or NaN/Inf values) is a permanent error, checked
//     before the spool image is filed: the job is dead-lettered with a small failed result
//     and the image goes to the failed directory. A raw result over model.raw_max_bytes
//     fails the same way or, with model.raw_over_limit: summary, is published as a
//     summary (infer.SummarizeRaw).
//   - A model that will not load at start-up (broken file, runtime missing) does not stop
//     the daemon: input is still queued, health is "failing" with the load error, and
//     loading is retried every 30 s and whenever the model file changes. A model that
//     fails to reload keeps the loaded one serving. A missing model directory is waited
//     for the same way.
//   - A job cut short by shutdown is left leased and runs again after restart, in its place.
//   - Health is published at health.interval and at once when the state changes; it names
//     every problem (queue full, broker away, reload failed, worker stuck) in words.
//   - The systemd watchdog is fed only while the daemon's own loops are alive; a hung
//     inference is the engine child's deadline's business, not the watchdog's.
//   - Remote commands (mqtt.commands, off by default) run through the same backend as
//     the control socket, and only when not retained, signed with the shared key (or
//     allow_unsigned said explicitly), addressed to this node and verb, allowed here,
//     fresh (max_age) and not seen before; a refusal is answered and logged (commands.go).
//   - Home Assistant discovery (mqtt.homeassistant, off by default) publishes retained
//     configs after every connect and on Home Assistant's birth message (homeassistant.go).
//
// The packages queue, infer and transport never import each other; the small adapters in
// adapters.go connect them.
package daemon
