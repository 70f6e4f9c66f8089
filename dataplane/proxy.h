/*
 * The request's state machine (proxy.c): route → wait → attempt → relay →
 * done for one POST to /v1/chat/completions, /v1/completions or
 * /v1/embeddings that router.c has accepted and authenticated.
 */
#ifndef SC_PROXY_H
#define SC_PROXY_H

#include <stddef.h>

#include "conn.h"
#include "queue.h"

#define PROXY_RID_MAX 128	/* request ids kept from the client at most this long */

/* Serve one request: takes body's storage; the answer comes on c (at once
 * for a bad body or an unknown model). path: the upstream path after the
 * endpoint ("chat/completions"), static. */
void proxy_request(struct conn *c, const struct http_request *req, struct sc_buf *body, const char *rid,
    const char *path, enum queue_prio prio);
/* Requests in progress (for the drain on SIGTERM). */
size_t proxy_in_flight(void);

#endif
