/*
 * The request lifecycle of the data plane: authenticate, route by the
 * longest model_prefix, shape the body per provider, choose a provider
 * (proxy_choose: go now, wait, or give up), run the attempt upstream, retry
 * on another provider while nothing was sent to the client, relay the
 * response (streamed, with back-pressure), and log one line per request.
 */
#ifndef SC_PROXY_H
#define SC_PROXY_H

#include <stdint.h>

#include "conn.h"

struct loop;
struct reqlog_trail;

/* What a finished request was, for statistics and metrics (metrics_request_done).
 * Pointers are valid only during the call. */
struct proxy_result {
	const char *rid;
	const char *provider_id;	/* NULL when no provider was tried */
	const char *provider_name;
	const char *pool;		/* "main" | "fallback" | "emergency", NULL without provider */
	double      cost_per_1k;
	const char *model;		/* as the client sent it, NULL when unparsed */
	const char *upstream_model;	/* as forwarded (prefix stripped) */
	int         status;		/* sent to the client; 499 = client went away */
	int         error;		/* status >= 400, or the response broke mid-way */
	int         stream;		/* the client asked for a stream */
	int         upstream_sent;	/* at least one attempt went upstream */
	int64_t     latency_ms;		/* arrival to end */
	int64_t     ttfb_ms;		/* arrival to the first body byte relayed (TTFT for streams), -1 none */
	int64_t     queue_ms;		/* time parked in the wait queue */
	int         attempts;
	int64_t     prompt_tokens;	/* -1 unknown */
	int64_t     completion_tokens;	/* -1 unknown */
	int64_t     total_tokens;	/* -1 unknown (a stream that ended without usage) */
	uint64_t    bytes;		/* body bytes relayed to the client */
	const char *client;		/* the client token's label, NULL without tokens */
	const char *error_code;		/* why it failed (queue_timeout, upstream_error, ...), NULL on success */
	int         client_closed;	/* the client went away before the end */
	const struct reqlog_trail *trail;	/* the upstream attempts, in order */
};

int  proxy_init(struct loop *l);
void proxy_shutdown(void);
/* conn_admit_fn for the data-plane port: the endpoint, the method and the
 * client token, decided on the head before any body is read. */
int  proxy_admit(struct conn *c, const struct http_request *req);
/* conn_handler_fn for the data-plane port (after proxy_admit). */
void proxy_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);
/* The data port listens beyond loopback: refuse requests without a valid
 * client token even if every token was revoked after the start. */
void proxy_set_public(int on);
/* Requests in progress (for the drain on SIGTERM). */
size_t proxy_in_flight(void);
/* Requests parked in the wait queue now (metrics, live status). */
size_t proxy_queue_depth(void);

/* Registry hooks: scheduling state per provider, kept across reloads. */
struct reg_provider;
void proxy_sched_publish(struct reg_provider *p, struct reg_provider *old, void *arg);
void proxy_sched_retire(struct reg_provider *p, void *arg);
void proxy_sched_cooldown_reset(struct reg_provider *p, void *arg);
/* Settings or providers changed: decide the waiters again. */
void proxy_sched_reloaded(void);
/* Re-arm the scheduler timer after a change of queue or provider state. */
void proxy_sched_rearm(void);

/* Append a sidecar-made OpenAI error response (status, body) to c, with the
 * request id and extra header lines (each ending in CRLF, may be NULL). */
void proxy_error(struct conn *c, const char *rid, int status, const char *msg, const char *code,
    const char *extra_hdrs);

#endif
