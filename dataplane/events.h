/*
 * Observability events of the data plane: what the request path and the
 * dispatcher tell whoever watches (metrics.c, stats.c, status.c), without
 * knowing who that is. The emitter fills a struct event and calls
 * events_emit; each listener registered with events_listen gets it on the
 * loop thread, in registration order, and must not block or call back into
 * the emitter. Pointers in an event are valid only during the call.
 */
#ifndef SC_EVENTS_H
#define SC_EVENTS_H

#include <stdint.h>

#include "cooldown.h"
#include "dispatch.h"
#include "sched.h"

struct reqlog_trail;

/* What a finished request was. */
struct request_result {
	const char     *rid;
	unsigned        serial;		/* the provider's prov_rt serial, 0 = none or unknown */
	const char     *provider_id;	/* NULL when no provider was tried */
	const char     *provider_name;
	enum sched_pool pool;		/* meaningful with a provider */
	double          cost_per_1k;
	const char     *model;		/* as the client sent it, NULL when unparsed */
	const char     *upstream_model;	/* as forwarded (prefix stripped) */
	int             status;		/* sent to the client; 499 = client went away */
	int             error;		/* status >= 400, or the response broke mid-way */
	int             stream;		/* the client asked for a stream */
	int             upstream_sent;	/* at least one attempt went upstream */
	int64_t         latency_ms;	/* arrival to end */
	int64_t         ttfb_ms;	/* arrival to the first body byte relayed (TTFT for streams), -1 none */
	int64_t         queue_ms;	/* time parked in the wait queue */
	int             attempts;
	int64_t         prompt_tokens;	/* -1 unknown */
	int64_t         completion_tokens;	/* -1 unknown */
	int64_t         total_tokens;	/* -1 unknown (a stream that ended without usage) */
	uint64_t        bytes;		/* body bytes relayed to the client */
	const char     *client;		/* the client token's label, NULL or "" without tokens */
	const char     *error_code;	/* why it failed (queue_timeout, upstream_error, ...), NULL on success */
	int             client_closed;	/* the client went away before the end */
	const struct reqlog_trail *trail;	/* the upstream attempts, in order (the request log) */
};

enum event_kind {
	EVENT_REQUEST_DONE,		/* u.request */
	EVENT_UPSTREAM_OUTCOME,		/* u.outcome: one upstream attempt ended */
	EVENT_COOLDOWN_STARTED,		/* u.outcome: a 429 started a cooldown */
	EVENT_QUEUE_REJECTED,		/* u.rejected: QUEUE_FULL or QUEUE_TIMEOUT */
};

struct event_outcome {
	unsigned              serial;		/* prov_rt serial, 0 = unknown */
	const char           *provider_name;
	enum cooldown_failure fail;		/* NONE: an HTTP status arrived */
	int                   status;
};

struct event {
	enum event_kind kind;
	union {
		const struct request_result *request;
		struct event_outcome         outcome;
		enum dispatch_reject         rejected;
	} u;
};

typedef void (*event_listener_fn)(const struct event *ev);

#define EVENTS_MAX_LISTENERS 8

/* Add a listener (at start-up); -1 when the table is full. */
int  events_listen(event_listener_fn fn);
void events_emit(const struct event *ev);

#endif
