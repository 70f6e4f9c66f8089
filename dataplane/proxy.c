/*
 * One client request from routing to the last byte: the request's state
 * machine. router.c hands over a POST it has authenticated; the phases are
 *
 *   PX_ROUTE   parsed and routed; asking the dispatcher for a provider
 *   PX_WAIT    parked in the dispatcher's wait queue (its timer answers)
 *   PX_ATTEMPT an upstream transfer runs, nothing sent to the client yet
 *   PX_RELAY   a 2xx head went to the client; relaying the body
 *   PX_DONE    answered; the log line is written and the request freed
 *
 * and only proxy_set_phase changes them. ROUTE asks (dispatch_ask): GO
 * starts an attempt, WAIT parks, REJECT answers 503 or the last upstream
 * error. An attempt's error head is buffered (bounded) so that a retryable
 * failure (429, 401/403, 5xx, a redirect, connect error, first-byte timeout)
 * goes back to ROUTE for another provider while nothing was sent; a final
 * error reaches the client in OpenAI shape with the upstream's status. A 2xx
 * head commits (RELAY) — a 2xx event stream after its first data event, so
 * that a rate-limit error there is retried like a 429. A stream is relayed
 * event by event as it arrives, pausing curl while the client's buffer is
 * full: each event is held until it ends (at most one, sse.h) so that its
 * "model" can name the client's model id (respmodel.h), and when the sidecar
 * asked the upstream for stream usage the client did not request, the
 * usage-only event is dropped. A JSON response is held whole (up to
 * PX_JSON_CAP) for the same rewrite, then sent with its new length; a bigger
 * one passes through as it is.
 *
 * Every 503 the sidecar gives on its own goes through proxy_unavailable: the
 * reason's code, a message naming the route and what the client waits for,
 * and Retry-After from the dispatcher (the earliest a key of the route
 * frees). Upstream answers that describe the sidecar's keys (401/403 on
 * every key, 402) become such 503s too: 401 and 403 mean the client's token.
 *
 * The dispatcher owns every provider's runtime state; this file only reports
 * outcomes to it (dispatch_report). Each request ends in proxy_finish (log
 * line, the request-done event, release), also from proxy_abort (the client
 * went away: cancel the transfer or leave the queue at once).
 */
#define _GNU_SOURCE

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sanitizer/asan_interface.h>	/* no-ops without ASan */

#include "dispatch.h"
#include "events.h"
#include "jscan.h"
#include "log.h"
#include "oaierr.h"
#include "proxy.h"
#include "registry.h"
#include "reqlog.h"
#include "respmodel.h"
#include "shape.h"
#include "sse.h"
#include "upstream.h"

#define PX_ERRBODY_CAP  (64 * 1024)	/* upstream error body kept for the rewrite */
#define PX_FWD_CAP      (64 * 1024)	/* client headers forwarded upstream */
#define PX_HDR_CAP      2048		/* response header lines the sidecar adds */
#define PX_JSON_CAP     (16 * 1024 * 1024)	/* JSON response held for the model rewrite */
#define PX_TRIES        8		/* decisions per step when attempts fail to start */
#define PX_FIRST_CAP    (64 * 1024)	/* bytes of a 2xx stream held for its first event */

/* Ordered by lifecycle. */
enum px_phase { PX_ROUTE, PX_WAIT, PX_ATTEMPT, PX_RELAY, PX_DONE };

static const char *const px_phase_names[] = { "route", "wait", "attempt", "relay", "done" };

struct proxy_req {
	struct conn          *conn;		/* the client; NULL once answered or gone */
	enum px_phase         phase;		/* changed only by proxy_set_phase */
	const char           *rid;		/* in strs */
	size_t                rid_len;
	const char           *path;		/* upstream path after the endpoint: "chat/completions" */
	const char           *model;		/* in mtext: the client's model */
	const char           *prefix;		/* the route's model_prefix (lives with the ticket's route) */
	struct sc_buf         body;		/* owned: the client's body (moved from the conn) */
	struct shape_req      shape;		/* parsed body; valid when shape_ok */
	int                   shape_ok;
	int                   has_ctype;		/* the client sent a Content-Type (forwarded in fwd) */
	struct sc_buf         fwd;		/* owned: "Name: value\0" client headers to forward */
	size_t                nfwd;		/* lines in fwd */
	int64_t               t_start;		/* ms, monotonic */
	struct dispatch_ticket dt;		/* the dispatcher's: route, queue, provider, pool */
	bool                  ticket;		/* dt initialised */

	/* The current or last attempt (provider: dt.prov, pool: dt.pool). */
	struct upstream_xfer *xfer;		/* running transfer, NULL between attempts */
	struct sc_buf         upbody;		/* owned: the body sent upstream */
	bool                  usage_injected;
	int                   attempts;
	int                   up_status;	/* upstream HTTP status of this attempt */
	struct sc_buf         errbody;		/* owned: buffered error body */
	int                   paused;		/* curl paused on our output buffer */
	struct sse_scanner    sse;		/* initialised when is_sse */
	struct sc_buf         hold;		/* owned: the stream's event in progress (no
						 * allocation between events) */
	int                   is_sse;		/* response is text/event-stream */
	int                   json_hold;	/* the JSON response is held whole (head not sent yet) */
	int                   json_whole;	/* it came in one piece of its Content-Length and is sent */
	int64_t               up_length;	/* the upstream's Content-Length, -1 none */
	const char           *ctype;		/* a held JSON response's Content-Type: borrowed
						 * from the transfer, which lives until
						 * proxy_on_done returns (the held head goes out
						 * before that) */
	struct sc_buf         mtext;		/* owned: the client's model, its NUL, then
						 * the model as a JSON string (one allocation) */
	struct {
		const char *data;		/* in mtext */
		size_t      len;
	}                     model_lit;	/* the client's model as a JSON string */
	int                   sse_first;		/* a 2xx stream held until its first data event */
	struct sse_scanner   *fsse;		/* owned while sse_first: scans the held bytes */
	struct sc_buf         first;		/* owned: the bytes held while sse_first */
	int                   first_limited;	/* that first event was a rate-limit error */
	int                   limit_counted;	/* a rate-limit event in this stream counted as a 429 */
	struct sc_buf         jbody;		/* owned: the held JSON response */
	int64_t               tokens;		/* total_tokens reported, -1 unknown */
	int64_t               prompt_tokens;	/* -1 unknown */
	int64_t               completion_tokens;	/* -1 unknown */
	int                   stream;		/* the client asked for a stream */
	int                   interrupted;	/* the response broke after it started */
	int64_t               ttfb_ms;		/* first body byte, -1 before */
	uint64_t              relayed;		/* body bytes sent to the client */

	/* Outcome for the log line and the request log. */
	struct reqlog_trail   trail;		/* owned: the attempts */
	const char           *client;		/* in strs: the client token's label, "" without tokens */
	int                   status;
	int                   last_fail;	/* last failure status to report when out of providers */
	int                   last_fail_http;	/* the last failure was an HTTP answer (errbody holds it) */
	const char           *last_fail_msg;
	bool                  poolable;		/* strs has PX_POOL_STRS bytes: kept in px_pool */
	char                  strs[];		/* rid and client, each NUL-terminated */
};

static size_t px_in_flight;
/* Finished requests' structs kept for the next ones: a proxy_req is too big
 * for malloc's per-thread cache, and allocating and freeing one cost about
 * 650 instructions per request. Those whose strings fit PX_POOL_STRS (a
 * request id and a client label of usual length) are kept; poisoned while
 * pooled, so that ASan still sees a use after the end. */
#define PX_POOL_MAX  64
#define PX_POOL_STRS 64
static struct proxy_req *px_pool[PX_POOL_MAX];
static size_t px_npool;
/* respmodel's work buffer: one for all streams (an event is rewritten in one
 * call). */
static struct sc_buf px_scratch;
#define PX_SCRATCH_KEEP (64 * 1024)	/* px_scratch allocation kept after a rewrite */
#define PX_IDLE_KEEP    2048		/* a stream's event buffers up to this size are kept (sse_buf_idle) between events */

static void proxy_step(struct proxy_req *r, enum dispatch_verdict v);
static void proxy_first_reset(struct proxy_req *r);
static void proxy_abort(void *arg);
static void proxy_drain(void *arg);

static const struct conn_hooks px_hooks = { proxy_abort, proxy_drain };

size_t
proxy_in_flight(void)
{
	return px_in_flight;
}

/* The one place a request changes phase. */
static void
proxy_set_phase(struct proxy_req *r, enum px_phase to)
{
	if (r->phase == to)
		return;
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("request %s: %s -> %s", r->rid, px_phase_names[r->phase], px_phase_names[to]);
	r->phase = to;
}

static void
proxy_free(struct proxy_req *r)
{
	if (r->xfer != NULL)
		upstream_cancel(r->xfer);
	if (r->ticket)
		dispatch_ticket_release(&r->dt);
	if (r->shape_ok)
		shape_free(&r->shape);
	if (r->is_sse)
		sse_free(&r->sse);
	sc_buf_free(&r->mtext);
	proxy_first_reset(r);
	sc_buf_free(&r->jbody);
	sc_buf_free(&r->body);
	sc_buf_free(&r->fwd);
	sc_buf_free(&r->upbody);
	sc_buf_free(&r->errbody);
	sc_buf_free(&r->hold);
	reqlog_trail_free(&r->trail);
	px_in_flight--;
	if (r->poolable && px_npool < PX_POOL_MAX) {
		ASAN_POISON_MEMORY_REGION(r, sizeof(*r) + PX_POOL_STRS);
		px_pool[px_npool++] = r;
		return;
	}
	free(r);
}

/* The end of every request: the one log line, the request-done event, release.
 * The client part is already done (or the client is gone). */
static void
proxy_finish(struct proxy_req *r, int status, const char *note)
{
	const struct reg_provider *p = r->ticket ? r->dt.prov : NULL;
	int64_t now = sc_now_ms();
	int64_t qms = r->ticket ? r->dt.queue_ms + (r->dt.t_wait != 0 ? now - r->dt.t_wait : 0) : 0;
	struct request_result res;
	struct event ev;
	char pname[160], model[320];

	proxy_set_phase(r, PX_DONE);
	if (log_enabled(LOG_LVL_INFO)) {
		/* Both come from outside: quoted when not plain, so they cannot forge fields. */
		log_value(p != NULL ? p->p.name : "-", pname, sizeof(pname));
		log_value(r->model != NULL ? r->model : "-", model, sizeof(model));
		log_info("request %s provider=%s model=%s status=%d latency_ms=%lld ttfb_ms=%lld queue_ms=%lld "
		    "attempts=%d pool=%s tokens=%lld bytes=%llu%s%s",
		    r->rid, pname, model, status,
		    (long long)(now - r->t_start), (long long)r->ttfb_ms, (long long)qms, r->attempts,
		    p != NULL ? sched_pool_name(r->dt.pool) : "-", (long long)r->tokens,
		    (unsigned long long)r->relayed, note ? " " : "", note ? note : "");
	}
	reqlog_trail_finish(&r->trail, status == 499 ? REQLOG_CLIENT_CLOSED :
	    r->interrupted ? REQLOG_INTERRUPTED : REQLOG_PENDING, r->up_status, now - r->t_start);
	memset(&res, 0, sizeof(res));
	res.rid = r->rid;
	if (p != NULL) {
		res.serial = r->dt.rt->serial;
		res.provider_id = p->p.id;
		res.provider_name = p->p.name;
		res.cost_per_1k = p->p.cost_per_1k;
		res.pool = r->dt.pool;
	}
	res.model = r->model;
	res.upstream_model = r->model != NULL && r->prefix != NULL ? r->model + strlen(r->prefix) : NULL;
	res.status = status;
	res.error = status >= 400 || r->interrupted;
	res.stream = r->stream;
	res.upstream_sent = r->attempts > 0;
	res.latency_ms = now - r->t_start;
	res.ttfb_ms = r->ttfb_ms;
	res.queue_ms = qms;
	res.attempts = r->attempts;
	res.prompt_tokens = r->prompt_tokens;
	res.completion_tokens = r->completion_tokens;
	res.total_tokens = r->tokens;
	res.bytes = r->relayed;
	res.client = r->client;
	res.error_code = note;
	res.client_closed = status == 499;
	res.trail = &r->trail;
	ev.kind = EVENT_REQUEST_DONE;
	ev.u.request = &res;
	events_emit(&ev);
	proxy_free(r);
}

/* Answer an error produced by the sidecar and finish the request. */
static void
proxy_fail(struct proxy_req *r, int status, const char *msg, const char *code, const char *extra)
{
	struct conn *c = r->conn;

	r->conn = NULL;
	conn_respond_error(c, status, r->rid, msg, code, extra);
	proxy_finish(r, status, code);
}

/* The client went away (conn teardown): stop everything now. */
static void
proxy_abort(void *arg)
{
	struct proxy_req *r = arg;

	r->conn = NULL;
	proxy_finish(r, 499, "client_closed");
}

/* The client's output buffer drained: resume the paused transfer. */
static void
proxy_drain(void *arg)
{
	struct proxy_req *r = arg;

	if (r->paused && r->xfer != NULL) {
		r->paused = 0;
		upstream_resume(r->xfer);
	}
}

/* A header value from stored data (at most 255 bytes of it) added to t:
 * control bytes become '_', so a row edited by hand can never split a
 * response header. */
static void
proxy_text_safe(struct sc_text *t, const char *in)
{
	size_t from = t->len, i;

	sc_text_addn(t, in, strnlen(in, 255));
	for (i = from; i < t->len; i++)
		if ((unsigned char)t->data[i] < 0x20 || t->data[i] == 0x7f)
			t->data[i] = '_';
}
/* Response header lines the sidecar adds, into h; Content-Type first when
 * ctype is not NULL. */
static int
proxy_resp_headers(struct proxy_req *r, char *h, size_t hl, const char *ctype)
{
	const char *pool = sched_pool_name(r->dt.pool);
	struct sc_text t;

	/* piece by piece: one snprintf of all of it cost more than the rest of this function's caller */
	sc_text_init(&t, h, hl);
	if (ctype != NULL) {
		sc_text_add(&t, "Content-Type: ");
		sc_text_add(&t, ctype);
		sc_text_add(&t, "\r\n");
	}
	sc_text_add(&t, "X-Request-Id: ");
	sc_text_add(&t, r->rid);
	sc_text_add(&t, "\r\nX-Sidecar-Provider: ");
	proxy_text_safe(&t, r->dt.prov->p.name);
	sc_text_add(&t, "\r\nX-Sidecar-Pool: ");
	sc_text_add(&t, pool);
	sc_text_add(&t, "\r\nX-Sidecar-Queue-Ms: ");
	sc_text_i64(&t, r->dt.queue_ms);
	sc_text_add(&t, "\r\n");
	if (r->dt.pool != SCHED_POOL_MAIN) {
		sc_text_add(&t, "X-Sidecar-Degraded: ");
		sc_text_add(&t, pool);
		sc_text_add(&t, "\r\n");
	}
	if (r->is_sse)
		sc_text_add(&t, "Cache-Control: no-cache\r\n");
	if (t.overflow) {
		h[0] = '\0';
		return 0;
	}
	return (int)t.len;
}

/* Report how the attempt ended to the dispatcher (which applies and persists
 * it) and note it in the request's trail for the request log. */
static enum cooldown_action
proxy_report(struct proxy_req *r, enum cooldown_failure fail, int status, int retry_after_s, const char *detail)
{
	reqlog_trail_end(&r->trail, reqlog_outcome_of(fail != COOLDOWN_FAIL_NONE, fail == COOLDOWN_FAIL_TTFB, status),
	    status, sc_now_ms() - r->t_start);
	return dispatch_report(&r->dt, fail, status, retry_after_s, detail);
}

/* Committed: no other attempt follows, so what only attempts need goes now
 * (a stream then holds little while it waits for its next event): the
 * client's body, its parse and the forwarded headers; the body sent upstream
 * once curl has sent it all (else when the request ends). */
static void
proxy_drop_request(struct proxy_req *r)
{
	if (r->shape_ok) {
		shape_free(&r->shape);
		r->shape_ok = 0;
	}
	sc_buf_free(&r->body);
	sc_buf_free(&r->fwd);
	/* (a held JSON response ends soon: its upstream body goes with it) */
	if (r->is_sse && (r->xfer == NULL || upstream_body_sent(r->xfer)))
		sc_buf_free(&r->upbody);
}

/* Whether the Content-Type ct is of the media type t (n bytes, lower case),
 * ignoring case; the first byte inline: most answers are application/json. */
static int
proxy_ctype_is(const char *ct, const char *t, size_t n)
{
	return (ct[0] | 0x20) == t[0] && strncasecmp(ct, t, n) == 0;
}

/* Commit a 2xx: send the head to the client. */
static void
proxy_commit(struct proxy_req *r, struct upstream_xfer *x)
{
	char h[PX_HDR_CAP];
	const char *ct = upstream_content_type(x);
	int64_t cl = upstream_content_length(x);
	int n;

	if (ct[0] == '\0')
		ct = "application/json";
	r->is_sse = proxy_ctype_is(ct, "text/event-stream", 17);
	proxy_set_phase(r, PX_RELAY);
	proxy_drop_request(r);
	r->status = r->up_status;
	r->up_length = cl;
	if (!r->is_sse) {
		/* The head waits for the whole body: the rewrite changes its length. */
		r->ctype = ct;
		sc_buf_init(&r->jbody, PX_JSON_CAP);	/* sized by its first piece (proxy_relay_data) */
		r->json_hold = 1;
		return;
	}
	sse_init(&r->sse, 0);
	sc_buf_init(&r->hold, SSE_MAX_EVENT + 256 * 1024);
	if (px_scratch.cap == 0)
		sc_buf_init(&px_scratch, SSE_MAX_EVENT + 256 * 1024);
	n = proxy_resp_headers(r, h, sizeof(h), ct);
	conn_response_head(r->conn, r->up_status, h, (size_t)n, -1);
}

/* Send the head of a held JSON response with this Content-Length. */
static void
proxy_json_head(struct proxy_req *r, int64_t length)
{
	char h[PX_HDR_CAP];
	int n = proxy_resp_headers(r, h, sizeof(h), r->ctype != NULL ? r->ctype : "application/json");

	conn_response_head(r->conn, r->status, h, (size_t)n, length);
}

/* A JSON response past PX_JSON_CAP: send what is held as it is, pass the
 * rest through (its model is not rewritten). */
static void
proxy_json_release(struct proxy_req *r)
{
	log_debug("request %s: response over %d bytes, model not rewritten", r->rid, PX_JSON_CAP);
	r->json_hold = 0;
	proxy_json_head(r, r->up_length);
	conn_response_body(r->conn, r->jbody.data, r->jbody.len);
	r->relayed += r->jbody.len;
	sc_buf_free(&r->jbody);	/* too big to look at: no usage from it */
}

static int
proxy_on_head(void *arg, struct upstream_xfer *x)
{
	struct proxy_req *r = arg;

	r->up_status = upstream_status(x);
	if (r->up_status >= 200 && r->up_status < 300 &&
	    proxy_ctype_is(upstream_content_type(x), "text/html", 9)) {
		/* A 2xx HTML page (a proxy or captive portal in front of the
		 * provider) is no API answer: an upstream failure like a 502,
		 * retried elsewhere while nothing was sent to the client. */
		log_warn("request %s: provider %s answered %d with an HTML page; treated as 502", r->rid,
		    r->dt.prov->p.name, r->up_status);
		r->up_status = 502;
	}
	if (r->up_status >= 300 && r->up_status < 400) {
		/* A redirect is no API answer either, and following it would send
		 * the key elsewhere: an upstream failure (502), retried on another
		 * key while nothing was sent to the client (docs/security.md). */
		log_warn("request %s: provider %s answered a redirect (%d); treated as 502", r->rid,
		    r->dt.prov->p.name, r->up_status);
		r->up_status = 502;
	}
	if (r->up_status >= 200 && r->up_status < 300 && r->conn != NULL &&
	    proxy_ctype_is(upstream_content_type(x), "text/event-stream", 17)) {
		/* Held until its first event: an error event there (a 429 inside
		 * a 200) is retried on another key while the client has nothing. */
		r->sse_first = 1;
		r->fsse = sc_xmalloc(sizeof(*r->fsse));
		sse_init(r->fsse, PX_FIRST_CAP);
		sc_buf_init(&r->first, PX_FIRST_CAP);
		return 0;
	}
	if (r->up_status >= 200 && r->up_status < 300 && r->conn != NULL) {
		proxy_report(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
		proxy_commit(r, x);
	}
	return 0;
}

/* Drop the first-event hold (a new attempt, or the end of the request). */
static void
proxy_first_reset(struct proxy_req *r)
{
	if (r->fsse != NULL) {
		sse_free(r->fsse);
		free(r->fsse);
		r->fsse = NULL;
	}
	sc_buf_free(&r->first);
	r->sse_first = 0;
	r->first_limited = 0;
}

/* A rate-limit error event inside a committed 2xx stream: once per request
 * it counts as a 429 for the key (cooldown, metrics). The event itself is
 * relayed: the client already has the stream. */
static void
proxy_event_limit(struct proxy_req *r, const struct sse_event *ev)
{
	if (r->limit_counted || !ev->has_data || ev->done || !sse_rate_limited(ev->data, ev->data_len))
		return;
	r->limit_counted = 1;
	log_warn("request %s: provider %s sent a rate-limit error inside its %d stream", r->rid, r->dt.prov->p.name,
	    r->up_status);
	proxy_report(r, COOLDOWN_FAIL_NONE, 429, -1, NULL);
	reqlog_trail_late(&r->trail, REQLOG_RATE_LIMITED, 429);	/* the attempt had answered 200 */
}

/* Note an event's usage (total tokens), when it carries one. */
static int
proxy_event_usage(struct proxy_req *r, const struct sse_event *ev)
{
	struct sse_usage u;

	if (!ev->has_data || ev->done || sse_usage_parse(ev->data, ev->data_len, &u) != 1)
		return 0;
	if (u.total_tokens >= 0)
		r->tokens = u.total_tokens;
	r->prompt_tokens = u.prompt_tokens;
	r->completion_tokens = u.completion_tokens;
	return u.usage_only ? 2 : 1;
}

/* What happens to an event that ended as hold's tail: a rate-limit error
 * counts for the key, the injected usage-only event is dropped, any other
 * names the client's model. */
static void
proxy_sse_event(struct proxy_req *r, const struct sse_event *ev)
{
	proxy_event_limit(r, ev);
	if (proxy_event_usage(r, ev) == 2 && r->usage_injected) {
		r->hold.len -= ev->raw_len;
		r->hold.data[r->hold.len] = '\0';
		return;
	}
	respmodel_sse(&r->hold, ev, r->model_lit.data, r->model_lit.len, &px_scratch);
	if (px_scratch.alloc > PX_SCRATCH_KEEP)
		sc_buf_free(&px_scratch);	/* a huge event grew it */
}

/* Relay a stream: pass whole events, each seen by proxy_sse_event. */
static void
proxy_relay_sse(struct proxy_req *r, const char *p, size_t n)
{
	size_t sendable = 0, used;
	struct sse_event ev;
	enum sse_result sr;

	sse_buf_ready(&r->hold);
	while (n > 0) {
		sr = sse_feed(&r->sse, p, n, &used, &ev);
		if (sc_buf_append(&r->hold, p, used) == -1) {
			/* Cannot happen with the scanner's cap below ours; relay what we have. */
			conn_response_body(r->conn, r->hold.data, r->hold.len);
			r->relayed += r->hold.len;
			sc_buf_reset(&r->hold);
			conn_response_body(r->conn, p, used);
			r->relayed += used;
			sendable = 0;
		} else if (sr == SSE_EVENT) {
			proxy_sse_event(r, &ev);
			sendable = r->hold.len;
		} else if (sr != SSE_MORE) {
			sendable = r->hold.len;
		}
		p += used;
		n -= used;
	}
	if (sendable > 0) {
		conn_response_body(r->conn, r->hold.data, sendable);
		r->relayed += sendable;
		sc_buf_consume(&r->hold, sendable);
	}
	/* Between events a stream holds no event buffers: small ones go to
	 * sse's free list (a busy stream does not allocate per event), one that
	 * a big event grew is freed. */
	sse_buf_idle(&r->hold, PX_IDLE_KEEP);
	sse_idle(&r->sse, PX_IDLE_KEEP);
}

static size_t proxy_relay_data(struct proxy_req *r, const char *p, size_t n);

/* Commit a held 2xx stream: count the success, send the head, relay what
 * was held (the client's output is empty: it takes it all). */
static void
proxy_first_commit(struct proxy_req *r, struct upstream_xfer *x)
{
	struct sc_buf held = r->first;

	sc_buf_init(&r->first, 0);
	proxy_first_reset(r);
	proxy_report(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
	proxy_commit(r, x);
	if (held.len > 0)
		proxy_relay_data(r, held.data, held.len);
	sc_buf_free(&held);
}

/* Bytes of a held 2xx stream: hold them until the first data event. A
 * rate-limit error there aborts the transfer (first_limited: proxy_on_done
 * retries); any other event, or more than PX_FIRST_CAP bytes, commits. */
static size_t
proxy_first_event(struct proxy_req *r, const char *p, size_t n)
{
	struct sse_event ev;
	size_t off = 0, used;
	enum sse_result sr;

	if (sc_buf_append(&r->first, p, n) == -1) {
		proxy_first_commit(r, r->xfer);
		return proxy_relay_data(r, p, n);
	}
	while (off < n) {
		sr = sse_feed(r->fsse, p + off, n - off, &used, &ev);
		off += used;
		if (sr == SSE_EVENT && !ev.has_data)
			continue;	/* a comment or blank line: wait for data */
		if (sr == SSE_EVENT && sse_rate_limited(ev.data, ev.data_len)) {
			r->first_limited = 1;
			sc_buf_reset(&r->errbody);
			sc_buf_append(&r->errbody, ev.data, ev.data_len < r->errbody.cap ? ev.data_len : r->errbody.cap);
			return 0;	/* stop this transfer */
		}
		if (sr != SSE_MORE) {
			proxy_first_commit(r, r->xfer);
			return n;
		}
	}
	return n;
}

static size_t
proxy_on_data(void *arg, const char *p, size_t n)
{
	struct proxy_req *r = arg;

	if (r->sse_first && r->conn != NULL)
		return proxy_first_event(r, p, n);
	return proxy_relay_data(r, p, n);
}

/* A JSON response of len bytes (the held one, or curl's buffer when the
 * body came in one piece), its model the client's, with its length: the
 * head and the pieces around the model go out in one write, without a
 * rewritten copy. Its usage is read in the same scan (a document the
 * scanner refuses: each of the two decides on its own, json-c behind the
 * usage). */
static void
proxy_send_json(struct proxy_req *r, const char *json, size_t len)
{
	struct jscan_member m[3] = { JSCAN_WANT("model"), JSCAN_WANT("usage"), JSCAN_WANT("choices") };
	struct jscan_member f[3] = SSE_USAGE_FIELDS;
	struct sse_usage u;
	size_t at = 0, vlen = 0, out;
	int rw, ur;

	if (json == NULL)
		json = "";
	if (len > 0 && jscan_object_in(json, len, m, 3, &m[1], f, 3) == 0) {
		ur = sse_usage_fields(&m[1], f, &m[2], &u);
	} else {
		/* the model's scan alone may still pass (a repeated "usage", say) */
		if (len == 0 || jscan_object(json, len, &m[0], 1) != 0)
			m[0].val = NULL;
		ur = sse_usage_parse(json, len, &u);
	}
	rw = respmodel_json_span(json, &m[0], r->model_lit.data, r->model_lit.len, &at, &vlen);
	if (ur == 1 && u.total_tokens >= 0 && len < PX_JSON_CAP) {
		r->tokens = u.total_tokens;
		r->prompt_tokens = u.prompt_tokens;
		r->completion_tokens = u.completion_tokens;
	}
	r->json_hold = 0;
	out = rw ? len - vlen + r->model_lit.len : len;
	conn_batch_begin();
	proxy_json_head(r, (int64_t)out);
	if (rw) {
		conn_response_body(r->conn, json, at);
		conn_response_body(r->conn, r->model_lit.data, r->model_lit.len);
		conn_response_body(r->conn, json + at + vlen, len - at - vlen);
	} else {
		conn_response_body(r->conn, json, len);
	}
	conn_batch_end();
	r->relayed += out;
}

/* Body bytes of the attempt: an error body kept for the rewrite, or relayed. */
static size_t
proxy_relay_data(struct proxy_req *r, const char *p, size_t n)
{
	if (r->phase != PX_RELAY) {
		/* An error body: keep the first PX_ERRBODY_CAP bytes for the rewrite. */
		size_t room = r->errbody.cap - r->errbody.len;
		sc_buf_append(&r->errbody, p, n < room ? n : room);
		return n;
	}
	if (r->conn == NULL)
		return 0;
	if (conn_out_pending(r->conn) >= CONN_OUT_CAP) {
		r->paused = 1;
		return UPSTREAM_PAUSE;
	}
	if (r->ttfb_ms < 0)
		r->ttfb_ms = sc_now_ms() - r->t_start;
	if (r->is_sse) {
		proxy_relay_sse(r, p, n);
		return n;
	}
	if (r->json_whole)
		return 0;	/* more than its Content-Length said (curl framed it otherwise): stop */
	if (r->json_hold) {
		if (r->jbody.len == 0 && r->up_length >= 0 && (uint64_t)r->up_length == n && n < r->jbody.cap) {
			/* The whole body in one piece (a small answer, nearly
			 * always): sent from curl's buffer, not held. */
			proxy_send_json(r, p, n);
			r->json_whole = 1;
			return n;
		}
		if (r->jbody.len == 0 && r->up_length > 0)
			sc_buf_presize(&r->jbody, (size_t)r->up_length);	/* no-op past the cap */
		if (sc_buf_append(&r->jbody, p, n) == 0)
			return n;
		proxy_json_release(r);
	}
	conn_response_body(r->conn, p, n);
	r->relayed += n;
	return n;
}

/* Tokens reported by a finished response count against the provider's TPM
 * (a held JSON response's usage was read by proxy_send_json). */
static void
proxy_record_tokens(struct proxy_req *r)
{
	dispatch_report_tokens(&r->dt, r->tokens);
}

/* The end of a committed response: flush what is held, end cleanly. */
static void
proxy_end_relay(struct proxy_req *r, enum upstream_result res)
{
	struct conn *c = r->conn;
	int status = r->status;

	if (r->is_sse) {
		struct sse_event ev;
		if (sse_finish(&r->sse, &ev) == SSE_EVENT)
			proxy_sse_event(r, &ev);
		conn_response_body(c, r->hold.data, r->hold.len);
		r->relayed += r->hold.len;
		sc_buf_reset(&r->hold);
	}
	if (r->json_hold) {
		if (res != UPSTREAM_OK) {
			/* Nothing reached the client yet: a clean error, not a cut body. */
			proxy_fail(r, 502, "the upstream response broke off", "upstream_error", NULL);
			return;
		}
		proxy_send_json(r, r->jbody.data, r->jbody.len);
	}
	proxy_record_tokens(r);
	r->conn = NULL;
	if (res == UPSTREAM_OK) {
		proxy_finish(r, status, NULL);
		conn_response_end(c);
		return;
	}
	if (r->is_sse) {
		/* Mid-stream failure: end the stream the way clients understand. */
		static const char tail[] =
		    "data: {\"error\":{\"message\":\"upstream stream interrupted\",\"type\":\"server_error\","
		    "\"param\":null,\"code\":\"upstream_error\"}}\n\ndata: [DONE]\n\n";
		conn_response_body(c, tail, sizeof(tail) - 1);
		r->interrupted = 1;
		proxy_finish(r, status, "stream_interrupted");
		conn_response_end(c);
		return;
	}
	r->interrupted = 1;
	proxy_finish(r, status, "body_interrupted");
	conn_response_abort(c);
}

/* Send a final upstream error (status kept) in OpenAI shape. */
static void
proxy_pass_error(struct proxy_req *r)
{
	struct conn *c = r->conn;
	struct sc_buf out;
	char h[PX_HDR_CAP];
	int status = r->up_status, rw;

	sc_buf_init(&out, PX_ERRBODY_CAP + 4096);
	rw = oaierr_rewrite(status, r->errbody.data ? r->errbody.data : "", r->errbody.len,
	    r->dt.prov->p.api_key, &out);
	proxy_resp_headers(r, h, sizeof(h), NULL);
	r->conn = NULL;
	r->status = status;
	if (rw == 1)
		conn_respond(c, status, h, "application/json", out.data, out.len);
	else if (rw == 0)
		conn_respond(c, status, h, "application/json", r->errbody.data ? r->errbody.data : "",
		    r->errbody.len);
	else
		conn_respond_error(c, 502, r->rid, "upstream error", "upstream_error", NULL);
	sc_buf_free(&out);
	proxy_finish(r, status, "upstream_error");
}

/*
 * Every 503 the sidecar answers on its own (queue full, queue timeout, no
 * provider left, keys rejected, drain): Retry-After is the whole seconds
 * until the earliest candidate of the route could take the request (the
 * dispatcher's window slots and cooldown ends), at least 1, or
 * retry_after_seconds when nothing is known to free; the message says which
 * and names the route, never a key. upstream_status: the status behind
 * OAIERR_AUTH_FAILED / OAIERR_QUOTA.
 */
static void
proxy_unavailable(struct proxy_req *r, enum oaierr_unavail why, int upstream_status)
{
	struct conn *c = r->conn;
	int64_t now = sc_now_ms();
	int ra = dispatch_route_retry_after(r->dt.route, now);
	int known = dispatch_route_next_free(r->dt.route, now) != INT64_MAX;
	size_t valid, nkeys = dispatch_route_keys(r->dt.route, &valid);
	char h[PX_HDR_CAP], ral[HTTP_RETRY_AFTER_LINE_MAX];
	struct sc_buf b;

	if ((why == OAIERR_RATE_LIMITED || why == OAIERR_NO_PROVIDER) && valid == 0)
		why = OAIERR_NO_VALID_KEY;
	else if (why == OAIERR_RATE_LIMITED && !known)
		why = OAIERR_NO_PROVIDER;	/* nothing is cooling or full: unhealthy, or all tried */
	sc_buf_init(&b, 4096);
	if (oaierr_unavailable(&b, why, r->prefix, (int)nkeys, ra, known, upstream_status) == -1) {
		sc_buf_reset(&b);
		oaierr_format(&b, 503, "no provider available; retry later", NULL, oaierr_unavail_code(why));
	}
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\n%s", r->rid, http_retry_after_line(ral, sizeof(ral), ra));
	r->conn = NULL;
	conn_respond(c, 503, h, "application/json", b.data, b.len);
	sc_buf_free(&b);
	proxy_finish(r, 503, oaierr_unavail_code(why));
}

/* A final upstream answer: one about the sidecar's key (401/403 on the
 * last key, 402) becomes a 503; anything else reaches the client as it is,
 * in OpenAI shape. */
static void
proxy_final_upstream(struct proxy_req *r, int status)
{
	int why = oaierr_unavail_from_upstream(status);

	if (why >= 0 && status != 429) {
		proxy_unavailable(r, (enum oaierr_unavail)why, status);
		return;
	}
	r->up_status = status;
	proxy_pass_error(r);
}

/* No attempt is left: the last failure, in the best shape for the client. */
static void
proxy_out_of_attempts(struct proxy_req *r)
{
	if (r->last_fail == 429)
		proxy_unavailable(r, OAIERR_RATE_LIMITED, 429);
	else if (r->last_fail_http)
		proxy_final_upstream(r, r->last_fail);
	else
		proxy_fail(r, r->last_fail, r->last_fail_msg, "upstream_error", NULL);
}

/* The dispatcher said no: the queue's answer, the last upstream error when a
 * key answered one that no other key can do better on, else 503. */
static void
proxy_reject(struct proxy_req *r)
{
	switch (r->dt.reject) {
	case DISPATCH_REJ_QUEUE_FULL:
		proxy_unavailable(r, OAIERR_QUEUE_FULL, 0);
		return;
	case DISPATCH_REJ_QUEUE_TIMEOUT:
		proxy_unavailable(r, OAIERR_QUEUE_TIMEOUT, 0);
		return;
	case DISPATCH_REJ_DRAINING:
		proxy_unavailable(r, OAIERR_DRAINING, 0);
		return;
	default:
		break;
	}
	if (r->last_fail_http && r->last_fail != 429 && r->dt.prov != NULL) {
		proxy_final_upstream(r, r->last_fail);
		return;
	}
	if (!r->last_fail_http && r->last_fail != 0 && r->dt.reject == DISPATCH_REJ_NO_PROVIDER) {
		proxy_fail(r, r->last_fail, r->last_fail_msg, "upstream_error", NULL);
		return;
	}
	proxy_unavailable(r, OAIERR_RATE_LIMITED, 0);
}

/* Build the upstream header lines for this attempt: forwarded client
 * headers, the provider's key, our request id. 0, or -1 past the cap. */
static int
proxy_up_headers(struct proxy_req *r, const struct reg_provider *p, struct upstream_hdrs *h)
{
	static const char ctype[] = "Content-Type: application/json", expect[] = "Expect:";
	size_t ll = 14 + r->rid_len + 1;	/* "X-Request-Id: <id>\0" */
	char *d;

	/* Every line's size is known: the text in one allocation. */
	upstream_hdrs_presize(h, r->fwd.len + UPSTREAM_BEARER_SIZE(strlen(p->p.api_key)) + ll +
	    (r->has_ctype ? 0 : sizeof(ctype)) + sizeof(expect));
	if (upstream_hdrs_add_lines(h, r->fwd.data, r->fwd.len, r->nfwd) == -1 ||
	    upstream_hdrs_bearer(h, p->p.api_key) == -1 || (d = upstream_hdrs_line(h, ll)) == NULL)
		return -1;
	memcpy(d, "X-Request-Id: ", 14);
	memcpy(d + 14, r->rid, r->rid_len + 1);
	/* The body is JSON: say so when the client did not (libcurl would send
	 * application/x-www-form-urlencoded). */
	if (!r->has_ctype && upstream_hdrs_add_lines(h, ctype, sizeof(ctype), 1) == -1)
		return -1;
	return upstream_hdrs_add_lines(h, expect, sizeof(expect), 1);
}

static const struct upstream_ops px_ops;

/* Start an attempt on the provider the dispatcher granted (its start is
 * already counted). 0, or -1 when it could not start. */
static int
proxy_attempt(struct proxy_req *r)
{
	const struct config *cfg = registry_config();
	const struct reg_provider *p = r->dt.prov;
	struct upstream_req rq;
	struct upstream_hdrs hdrs;
	struct sc_err e;
	struct sc_text ut;
	char url[2048];
	int64_t t0 = sc_now_ms();	/* the attempt's start: shaping takes microseconds */
	int st;

	r->attempts++;
	reqlog_trail_begin(&r->trail, p->p.id, p->p.name, r->dt.pool, t0 - r->t_start);
	r->up_status = 0;
	r->last_fail_http = 0;
	r->limit_counted = 0;
	proxy_first_reset(r);
	sc_buf_reset(&r->errbody);
	sc_buf_free(&r->upbody);
	if (r->shape_ok) {
		sc_buf_init(&r->upbody, (size_t)cfg->max_body_bytes + 65536);
		sc_err_clear(&e);
		st = shape_build(&r->shape, &p->p.compat, r->model + strlen(r->prefix), &r->upbody,
		    &r->usage_injected, &e);
		if (st != 0) {
			log_warn("request %s: shaping for %s failed: %s", r->rid, p->p.name, e.msg);
			return -1;
		}
	}
	sc_text_init(&ut, url, sizeof(url));
	sc_text_add(&ut, p->p.endpoint_url);
	sc_text_add(&ut, "/");
	sc_text_add(&ut, r->path);
	if (ut.overflow)
		return -1;
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.post = r->shape_ok;
	rq.body = r->upbody.data;
	rq.body_len = r->upbody.len;
	rq.headers = &hdrs;
	rq.connect_timeout_ms = (long)cfg->upstream_connect_timeout * 1000;
	rq.ttfb_timeout_ms = (long)cfg->upstream_ttfb_timeout * 1000;
	rq.stream = r->stream;
	upstream_hdrs_init(&hdrs);
	if (proxy_up_headers(r, p, &hdrs) == -1) {
		upstream_hdrs_free(&hdrs);
		return -1;
	}
	proxy_set_phase(r, PX_ATTEMPT);
	r->xfer = upstream_start(&rq, &px_ops, r);	/* takes hdrs */
	if (r->xfer == NULL) {
		log_warn("request %s: could not start a transfer to %s", r->rid, p->p.name);
		proxy_set_phase(r, PX_ROUTE);
		return -1;
	}
	dispatch_attempt_started(&r->dt, t0);
	return 0;
}

/* One step of ROUTE: act on the dispatcher's verdict (attempt, park or
 * answer); an attempt that cannot start asks again. */
static void
proxy_step(struct proxy_req *r, enum dispatch_verdict v)
{
	int tries;

	for (tries = 0; tries < PX_TRIES; tries++) {
		switch (v) {
		case DISPATCH_GO:
			if (proxy_attempt(r) == 0)
				return;
			reqlog_trail_end(&r->trail, REQLOG_START_FAILED, 0, sc_now_ms() - r->t_start);
			r->last_fail = 502;
			r->last_fail_http = 0;
			r->last_fail_msg = "could not reach the provider";
			if (!dispatch_may_retry(&r->dt)) {
				proxy_fail(r, 502, "could not reach any provider", "upstream_error", NULL);
				return;
			}
			v = dispatch_ask(&r->dt, false);
			continue;
		case DISPATCH_WAIT:
			proxy_set_phase(r, PX_WAIT);
			return;
		case DISPATCH_REJECT:
			proxy_reject(r);
			return;
		}
	}
	proxy_unavailable(r, OAIERR_RATE_LIMITED, 0);
}

/* The dispatcher's timer answers a parked request. */
static void
proxy_answered(struct dispatch_ticket *t, enum dispatch_verdict v)
{
	struct proxy_req *r = (struct proxy_req *)((char *)t - offsetof(struct proxy_req, dt));

	proxy_set_phase(r, PX_ROUTE);
	proxy_step(r, v);
}

static void
proxy_on_done(void *arg, struct upstream_xfer *x, enum upstream_result res)
{
	struct proxy_req *r = arg;
	enum cooldown_action act;
	int ra = upstream_retry_after(x);

	r->xfer = NULL;
	r->paused = 0;
	dispatch_attempt_ended(&r->dt);
	if (r->conn == NULL) {
		proxy_finish(r, 499, "client_closed");
		return;
	}
	if (r->phase == PX_RELAY) {
		proxy_end_relay(r, res);
		return;
	}
	if (r->first_limited) {
		/* A 200 stream whose first event said 429: a 429 for this key. */
		log_warn("request %s: provider %s sent a rate-limit error as its stream's first event; "
		    "treated as 429", r->rid, r->dt.prov->p.name);
		proxy_first_reset(r);
		r->up_status = 429;
		res = UPSTREAM_OK;
	} else if (r->sse_first && res == UPSTREAM_OK) {
		/* The stream ended before any data event: relay what it was. */
		proxy_first_commit(r, x);
		proxy_end_relay(r, res);
		return;
	} else if (r->sse_first) {
		proxy_first_reset(r);	/* broken before its first event: retried as below */
	}
	if (res == UPSTREAM_OK && r->up_status >= 200 && r->up_status < 300) {
		/* A 2xx whose head never reached on_head: commit an empty body. */
		proxy_report(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
		proxy_commit(r, x);
		proxy_end_relay(r, res);
		return;
	}
	if (res == UPSTREAM_OK) {
		act = proxy_report(r, COOLDOWN_FAIL_NONE, r->up_status, ra, NULL);
		if (act != COOLDOWN_ACT_RETRY) {
			proxy_final_upstream(r, r->up_status);
			return;
		}
		r->last_fail = r->up_status;
		r->last_fail_http = 1;
		r->last_fail_msg = "upstream error";
		log_warn("request %s: provider %s answered %d, attempt %d", r->rid, r->dt.prov->p.name,
		    r->up_status, r->attempts);
	} else {
		proxy_report(r, res == UPSTREAM_ETTFB ? COOLDOWN_FAIL_TTFB : COOLDOWN_FAIL_CONNECT, 0, -1,
		    upstream_error(x));
		r->last_fail = res == UPSTREAM_ETTFB ? 504 : 502;
		r->last_fail_http = 0;
		r->last_fail_msg = res == UPSTREAM_ETTFB ? "upstream did not answer in time" :
		    "upstream connection failed";
		log_warn("request %s: provider %s failed (%s), attempt %d", r->rid, r->dt.prov->p.name,
		    upstream_error(x), r->attempts);
	}
	proxy_set_phase(r, PX_ROUTE);
	if (!dispatch_may_retry(&r->dt)) {
		proxy_out_of_attempts(r);
		return;
	}
	proxy_step(r, dispatch_ask(&r->dt, false));
}

static const struct upstream_ops px_ops = { proxy_on_head, proxy_on_data, proxy_on_done };

/* Client headers the sidecar never forwards although they are end-to-end
 * (the hop-by-hop ones are http_is_hop_by_hop's): its own (the token, the
 * id and priority it answers), the framing curl makes, and what the
 * upstream must not see. By length first: most names have a length none of
 * these has. */
static int
proxy_not_forwarded(struct http_slice n)
{
	switch (n.len) {
	case 4:
		return http_slice_ieq(n, "host");
	case 6:
		return http_slice_ieq(n, "expect") || http_slice_ieq(n, "cookie");
	case 12:
		return http_slice_ieq(n, "x-request-id");
	case 13:
		return http_slice_ieq(n, "authorization");
	case 14:
		return http_slice_ieq(n, "content-length");
	case 15:
		return http_slice_ieq(n, "accept-encoding");
	case 18:
		return http_slice_ieq(n, "x-sidecar-priority");
	default:
		return 0;
	}
}

/* Collect the client's end-to-end headers worth forwarding, each as
 * "Name: value\0". */
static void
proxy_collect_headers(struct proxy_req *r, const struct http_request *req)
{
	/* the options a Connection header lists are hop-by-hop too: looked up
	 * per header only when the request has one */
	int lists = http_find_header(req, "connection") != NULL;
	size_t i;

	sc_buf_init(&r->fwd, PX_FWD_CAP);
	for (i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		char *d;

		if (proxy_not_forwarded(h->name) || http_is_hop_by_hop(h->name) ||
		    (lists && http_connection_lists(req, h->name)))
			continue;
		if ((d = sc_buf_extend(&r->fwd, h->name.len + 2 + h->value.len + 1)) == NULL)
			break;
		if (http_slice_ieq(h->name, "content-type"))
			r->has_ctype = 1;
		memcpy(d, h->name.p, h->name.len);
		d += h->name.len;
		*d++ = ':';
		*d++ = ' ';
		memcpy(d, h->value.p, h->value.len);
		d[h->value.len] = '\0';
		r->nfwd++;
	}
}

void
proxy_request(struct conn *c, const struct http_request *req, struct sc_buf *body, const char *rid,
    const char *path, enum queue_prio prio)
{
	struct dispatch_route *route;
	struct proxy_req *r;
	struct sc_err e;
	size_t rl, cl, ml;

	rl = strnlen(rid, PROXY_RID_MAX);	/* router.c keeps it to PROXY_RID_MAX */
	cl = strnlen(conn_client(c), TOKENS_LABEL_MAX);	/* conn.c keeps it to CONN_CLIENT_MAX */
	/* zeroed: both strings terminated */
	if (rl + 1 + cl + 1 > PX_POOL_STRS) {
		r = sc_xcalloc(1, sizeof(*r) + rl + 1 + cl + 1);
	} else if (px_npool > 0) {
		r = px_pool[--px_npool];
		ASAN_UNPOISON_MEMORY_REGION(r, sizeof(*r) + PX_POOL_STRS);
		memset(r, 0, sizeof(*r) + PX_POOL_STRS);
		r->poolable = true;
	} else {
		r = sc_xcalloc(1, sizeof(*r) + PX_POOL_STRS);
		r->poolable = true;
	}
	px_in_flight++;
	r->conn = c;
	r->phase = PX_ROUTE;
	r->t_start = sc_now_ms();
	r->ttfb_ms = -1;
	r->path = path;
	memcpy(r->strs, rid, rl);
	r->rid = r->strs;
	r->rid_len = rl;
	memcpy(r->strs + rl + 1, conn_client(c), cl);
	r->client = r->strs + rl + 1;
	r->tokens = r->prompt_tokens = r->completion_tokens = -1;
	sc_buf_init(&r->errbody, PX_ERRBODY_CAP);
	sc_buf_init(&r->upbody, 0);
	sc_buf_init(&r->hold, 0);
	sc_buf_init(&r->mtext, 0);
	/* Take the body's storage instead of copying it. */
	r->body = *body;
	sc_buf_init(body, 0);
	sc_err_clear(&e);
	if (shape_parse(&r->shape, r->body.data ? r->body.data : "", r->body.len, &e) == -1) {
		proxy_fail(r, 400, e.msg[0] ? e.msg : "invalid request body", "invalid_request_body", NULL);
		return;
	}
	r->shape_ok = 1;
	r->stream = r->shape.stream;
	ml = strlen(r->shape.model);
	sc_buf_init(&r->mtext, 7 * ml + 65);	/* the literal: \u00XX per byte at worst */
	sc_buf_presize(&r->mtext, 2 * ml + 3);	/* exact for a model with nothing to escape */
	sc_buf_append(&r->mtext, r->shape.model, ml + 1);
	r->model = r->mtext.data;	/* for the log line if the literal fails (mtext unchanged then) */
	if (respmodel_literal(r->shape.model, ml, &r->mtext) == -1) {
		proxy_fail(r, 400, "invalid model", "invalid_request_body", NULL);
		return;
	}
	sc_buf_fit(&r->mtext);	/* kept for the whole response */
	r->model = r->mtext.data;	/* the literal may have moved it */
	r->model_lit.data = r->mtext.data + ml + 1;
	r->model_lit.len = r->mtext.len - ml - 1;
	route = dispatch_route_find(r->model);
	if (route == NULL || r->model[strlen(dispatch_route_prefix(route))] == '\0') {
		char msg[256];
		snprintf(msg, sizeof(msg), "The model `%.128s` does not exist or no provider serves it",
		    r->model);
		proxy_fail(r, 404, msg, "model_not_found", NULL);
		return;
	}
	r->prefix = dispatch_route_prefix(route);
	dispatch_ticket_init(&r->dt, route, r->model + strlen(r->prefix), prio, proxy_answered);
	r->ticket = true;
	proxy_collect_headers(r, req);
	conn_attach(c, &px_hooks, r);
	proxy_step(r, dispatch_ask(&r->dt, true));
}
