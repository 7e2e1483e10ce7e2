/*
 * http/chan — a byte channel from one producer thread (an engine emitting tokens) to one
 * consumer (an HTTP connection streaming Server-Sent Events).
 *
 * The producer writes and finally closes; the consumer pulls, blocking up to keepalive_ms for
 * data and returning the keep-alive text (an SSE comment, ": keep-alive\n\n") when none came,
 * so that a long prefill still writes to the socket and a vanished client is noticed. When the
 * consumer goes away it aborts the channel; the producer's next write fails and it can cancel
 * its work. Writes never block: a consumer that falls behind by more than max_bytes is treated
 * as gone (the stream is aborted), so memory stays bounded.
 *
 * Ownership: the channel is reference-counted between the two sides; each calls chan_release()
 * once when done with it, and the last one frees it.
 */
#ifndef SHOAL_HTTP_CHAN_H
#define SHOAL_HTTP_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct chan chan;

/* A channel with both references held. keepalive_ms <= 0: pull waits without a limit. */
chan *chan_init(size_t max_bytes, double keepalive_ms, const char *keepalive_text);

/* Producer: appends data; -1 when the consumer is gone or max_bytes would be exceeded (the
 * channel is then aborted). */
int chan_write(chan *c, const char *data, size_t len);

/* Producer: no more data; pull returns the rest, then -1. */
void chan_close(chan *c);

/* Consumer: copies up to max bytes; waits up to keepalive_ms when empty (then returns the
 * keep-alive text). Returns -1 once the channel is closed and drained, or aborted. */
ssize_t chan_pull(chan *c, char *buf, size_t max);

/* Either side: abandon the stream. */
void chan_abort(chan *c);
bool chan_aborted(chan *c);

/* Drops one reference; frees the channel with the last one. NULL is fine. */
void chan_release(chan *c);

#endif
