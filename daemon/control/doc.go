// Package control is inferq's control API: HTTP on a unix socket for the inferq CLI on
// the same box. It holds the request and response types shared by the server and the
// client, the [Backend] a daemon implements to serve them, the [Server] that listens on
// the socket and the typed [Client] the CLI uses.
//
//	GET  /v1/health               the current health document
//	GET  /v1/jobs?state=S&source=S&limit=N   held jobs, highest priority first
//	GET  /v1/jobs/{id}            one job: held, or done within the retention window (404: unknown)
//	POST /v1/jobs?priority=N&source=S&id=ID   body: image bytes; a new job, durable when answered
//	POST /v1/jobs/{id}/priority   {"priority":N}: a held job's new priority
//	POST /v1/jobs/{id}/cancel     remove a queued, delayed or dead job (409: running)
//	GET  /v1/dead?limit=N         dead-lettered jobs with their reasons
//	POST /v1/dead/retry           {"ids":[...]} or {"all":true}: back to the queue, attempts reset
//	POST /v1/dead/purge           {"ids":[...]} or {"all":true}: delete for good
//	POST /v1/pause, /v1/resume    {"what":"intake"|"worker"|"all"}: kept across restarts
//	POST /v1/reload               swap in the model before the next job; answers once done:
//	                              200 with the model, 422 with why it was refused
//
// Guarantees:
//   - The package does not import the daemon: the daemon implements [Backend], and the
//     health document travels as the backend's own JSON value.
//   - Every failure a backend reports is classified by one of this package's sentinel
//     errors ([ErrNotFound], [ErrConflict], [ErrInvalid], [ErrUnavailable], [ErrRefused]);
//     the server maps each to one HTTP status and the [Client] maps the status back, so
//     errors.Is works the same on both sides of the socket and the CLI can choose its exit
//     code from it. The message is the backend's, in the daemon's words.
//   - The socket is created mode 0660. A socket left by a killed process is replaced; one
//     that another running inferq answers on is not.
//   - Request bodies are bounded: JSON requests to 1 MiB, images to the backend's
//     [Backend.MaxImageBytes].
//   - [Server.Run] returns once the listener is closed and in-flight requests ended (or
//     after a 2 s grace); [Server.Close] removes the socket file.
package control
