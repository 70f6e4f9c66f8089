/*
 * The request lifecycle of the data plane: authenticate, route by the
 * longest model_prefix, shape the body per provider, choose a provider
 * (proxy_choose: go now, wait, or give up), run the attempt upstream, retry
 * on another provider while nothing was sent to the client, relay the
 * response (streamed, with back-pressure), and log one line per request.
 */
#ifndef SC_PROXY_H
#define SC_PROXY_H

#include "conn.h"

struct loop;

int  proxy_init(struct loop *l);
void proxy_shutdown(void);
/* conn_handler_fn for the data-plane port. */
void proxy_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);
/* The data port listens beyond loopback: refuse requests without a valid
 * client token even if every token was revoked after the start. */
void proxy_set_public(int on);
/* Requests in progress (for the drain on SIGTERM). */
size_t proxy_in_flight(void);

/* Registry hooks: scheduling state per provider, kept across reloads. */
struct reg_provider;
void proxy_sched_publish(struct reg_provider *p, struct reg_provider *old, void *arg);
void proxy_sched_retire(struct reg_provider *p, void *arg);
/* Settings or providers changed: decide the waiters again. */
void proxy_sched_reloaded(void);
/* Re-arm the scheduler timer after a change of queue or provider state. */
void proxy_sched_rearm(void);

/* Append a sidecar-made OpenAI error response (status, body) to c, with the
 * request id and extra header lines (each ending in CRLF, may be NULL). */
void proxy_error(struct conn *c, const char *rid, int status, const char *msg, const char *code,
    const char *extra_hdrs);

#endif
