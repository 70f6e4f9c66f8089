/*
 * One client request from routing to the last byte.
 *
 * proxy_admit, on the head before any body is read, picks the endpoint and
 * checks the method and the client token; proxy_handle, with the whole body,
 * parses it (shape_parse) and the route (longest model_prefix). proxy_next then asks
 * proxy_choose — the single place that decides "which provider, now, later,
 * or never", through sched_decide (dataplane/sched.h, docs/scheduling.md) —
 * and either starts an attempt, parks the request in the wait queue, or
 * answers the rejection. One timer serves the whole queue: it fires at the
 * earliest of the next queue deadline, the next moment a provider frees
 * (window slot, cooldown end) and the next health probe; then expired
 * waiters get 503 and the others are decided again in service order. An attempt is one upstream
 * transfer: a 2xx head commits the response to the client (a 2xx event
 * stream after its first data event, so that a rate-limit error there can be
 * retried like a 429) and the body is relayed as it arrives (pausing curl while the client's buffer is full); an
 * error head is buffered (bounded) so that a retryable failure (429,
 * 401/403, 5xx, connect error, first-byte timeout) can go to another
 * provider while nothing has been sent, and a final error reaches the client
 * in OpenAI shape with the upstream's status. When the sidecar asked the
 * upstream for stream usage the client did not request, the usage-only SSE
 * event is dropped from the relay (sse.h), holding back at most one event.
 *
 * Every upstream outcome goes through cooldown_on_outcome; what it changes
 * (cooldown, invalid key, health) is persisted through the registry.
 *
 * Each request ends in proxy_log_free (log line, release), also from
 * proxy_abort (the client went away: cancel the upstream transfer or leave
 * the queue at once).
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "models.h"
#include "oaierr.h"
#include "proxy.h"
#include "queue.h"
#include "registry.h"
#include "reqlog.h"
#include "sched.h"
#include "shape.h"
#include "sse.h"
#include "upstream.h"

#define PX_ERRBODY_CAP  (64 * 1024)	/* upstream error body kept for the rewrite */
#define PX_FWD_CAP      (64 * 1024)	/* client headers forwarded upstream */
#define PX_HDR_CAP      2048		/* response header lines the sidecar adds */
#define PX_RID_MAX      128
#define PX_USAGE_CAP    (256 * 1024)	/* JSON response bytes kept to read usage */
#define PX_MAX_CAND     256		/* providers of one route */
#define PX_FIRST_CAP    (64 * 1024)	/* bytes of a 2xx stream held for its first event */

enum px_phase {
	PX_ROUTED,	/* parsed and routed, no attempt yet */
	PX_WAITING,	/* parked until a provider may take it */
	PX_ATTEMPT,	/* upstream transfer running, nothing sent to the client */
	PX_RELAY,	/* response committed to the client, relaying */
	PX_DONE,
};

struct proxy_req {
	struct conn          *conn;		/* the client; NULL once gone */
	enum px_phase         phase;
	char                  rid[PX_RID_MAX + 1];
	const char           *path;		/* upstream path after the endpoint: "chat/completions" */
	char                 *model;		/* owned: the client's model */
	char                 *prefix;		/* owned: the matched model_prefix */
	struct sc_buf         body;		/* owned: the client's body (moved from the conn) */
	struct shape_req      shape;		/* parsed body; valid when shape_ok */
	int                   shape_ok;
	int                   has_ctype;		/* the client sent a Content-Type (forwarded in fwd) */
	struct sc_buf         fwd;		/* owned: "Name: value\0" client headers to forward */
	int64_t               t_start;		/* ms, monotonic */
	int64_t               t_wait;		/* when parked, 0 when not */
	int64_t               queue_ms;		/* total time parked */
	struct queue_node     qn;		/* wait-queue link while parked */
	enum queue_prio       prio;
	struct sched_request  srq;		/* tried-set and attempts across retries */

	/* The current or last attempt. */
	struct reg_provider  *prov;		/* ref held */
	const char           *pool;		/* "main" | "fallback" | "emergency" */
	struct upstream_xfer *xfer;		/* running transfer, NULL between attempts */
	int64_t               t_attempt;
	struct sc_buf         upbody;		/* owned: the body sent upstream */
	bool                  usage_injected;
	int                   attempts;
	int                   up_status;	/* upstream HTTP status of this attempt */
	struct sc_buf         errbody;		/* owned: buffered error body */
	int                   paused;		/* curl paused on our output buffer */
	int                   sse_drop;		/* scanning to drop the injected usage event */
	struct sse_scanner    sse;
	struct sc_buf         hold;		/* owned: relayed bytes held back in sse_drop mode */
	int                   is_sse;		/* response is text/event-stream */
	int                   sse_observe;	/* scanning (not holding) for usage */
	int                   sse_first;		/* a 2xx stream held until its first data event */
	struct sse_scanner    fsse;		/* owned while sse_first: scans the held bytes */
	struct sc_buf         first;		/* owned: the bytes held while sse_first */
	int                   first_limited;	/* that first event was a rate-limit error */
	int                   limit_counted;	/* a rate-limit event in this stream counted as a 429 */
	struct sc_buf         jbody;		/* owned: start of a JSON response, for usage */
	int64_t               tokens;		/* total_tokens reported, -1 unknown */
	int64_t               prompt_tokens;	/* -1 unknown */
	int64_t               completion_tokens;	/* -1 unknown */
	int                   stream;		/* the client asked for a stream */
	int                   interrupted;	/* the response broke after it started */
	int64_t               ttfb_ms;		/* first body byte, -1 before */
	uint64_t              relayed;		/* body bytes sent to the client */

	/* Outcome for the log line and the request log. */
	struct reqlog_trail   trail;		/* owned: the attempts */
	char                  client[TOKENS_LABEL_MAX + 1];	/* the client token's label, "" without tokens */
	int                   status;
	int                   last_fail;	/* last failure status to report when out of providers */
	int                   last_fail_http;	/* the last failure was an HTTP answer (errbody holds it) */
	const char           *last_fail_msg;
};

/* Active health probe of an unhealthy provider. */
struct px_probe {
	struct reg_provider  *prov;	/* ref held */
	struct upstream_xfer *xfer;
	int64_t               t0;
	struct px_probe      *prev, *next;
};

static struct loop      *px_loop;
static size_t            px_in_flight;
static struct queue      px_queue;
static struct loop_timer px_timer;	/* the queue / provider-change / probe timer */
static struct px_probe  *px_probes;
static int               px_public;	/* listening beyond loopback: a token is always required */

static void proxy_next(struct proxy_req *r);
static void proxy_first_reset(struct proxy_req *r);
static void proxy_abort(void *arg);
static void proxy_drain(void *arg);

static const struct conn_hooks px_hooks = { proxy_abort, proxy_drain };

void
proxy_set_public(int on)
{
	px_public = on;
}

size_t
proxy_in_flight(void)
{
	return px_in_flight;
}

size_t
proxy_queue_depth(void)
{
	return queue_len(&px_queue);
}

static void proxy_sched_fire(struct loop *l, void *arg);

int
proxy_init(struct loop *l)
{
	px_loop = l;
	queue_init(&px_queue);
	loop_timer_init(&px_timer, proxy_sched_fire, NULL);
	return 0;
}

void
proxy_shutdown(void)
{
	if (px_loop != NULL)
		loop_timer_cancel(px_loop, &px_timer);
	while (px_probes != NULL) {
		struct px_probe *pr = px_probes;
		px_probes = pr->next;
		upstream_cancel(pr->xfer);
		reg_provider_unref(pr->prov);
		free(pr);
	}
}

/* Registry hooks: scheduling state lives as long as the provider's id. */
void
proxy_sched_publish(struct reg_provider *p, struct reg_provider *old, void *arg)
{
	struct sched_provider *sp;
	int64_t now = sc_now_ms(), wall_ms = sc_wall_ms(), wall = wall_ms / 1000;
	int unhealthy = 0, failures = 0;

	if (old != NULL && old->sched != NULL) {
		sp = old->sched;
		old->sched = NULL;
		sp->cfg = &p->p;
		p->sched = sp;
		return;
	}
	sp = sc_xcalloc(1, sizeof(*sp));
	sched_provider_init(sp, &p->p, registry_config());
	/* A restart keeps cooldowns, consecutive 429 counts and health. */
	if (p->p.cooldown_until > wall || p->p.consecutive_429 > 0)
		cooldown_restore(&sp->cd, now, p->p.cooldown_until > wall ? p->p.cooldown_until * 1000 - wall_ms : 0,
		    p->p.consecutive_429);
	if (registry_load_health(p->p.id, &unhealthy, &failures) == 0) {
		sp->cd.consecutive_failures = failures;
		if (unhealthy) {
			sp->cd.unhealthy = true;
			sp->cd.next_probe_ms = now;
		}
	}
	p->sched = sp;
}

void
proxy_sched_retire(struct reg_provider *p, void *arg)
{
	if (p->sched != NULL) {
		sched_provider_free(p->sched);
		free(p->sched);
		p->sched = NULL;
	}
}

void
proxy_sched_cooldown_reset(struct reg_provider *p, void *arg)
{
	struct sched_provider *sp = p->sched;

	if (sp == NULL)
		return;
	cooldown_reset(&sp->cd);
	log_info("provider %s: cooldown reset by the operator", p->p.name);
	/* proxy_sched_reloaded, which runs after every reload, wakes the waiters. */
}

void
proxy_sched_reloaded(void)
{
	/* Limits or cooldowns may have changed: let the waiters try again. */
	if (px_loop != NULL)
		loop_timer_arm(px_loop, &px_timer, 0);
}

/* A new request id: a random per-process prefix and a counter, unique
 * without a system call per request. */
static void
proxy_new_rid(char out[PX_RID_MAX + 1])
{
	static char prefix[37];
	static unsigned long long counter;

	if (prefix[0] == '\0') {
		sc_uuid(prefix);
		prefix[23] = '\0';	/* "xxxxxxxx-xxxx-4xxx-xxxx" */
	}
	snprintf(out, PX_RID_MAX + 1, "%s-%012llx", prefix, ++counter);
}

/* A request id from the client is kept only if it is short and plain. */
static int
proxy_rid_ok(struct http_slice s)
{
	size_t i;

	if (s.len == 0 || s.len > PX_RID_MAX)
		return 0;
	for (i = 0; i < s.len; i++) {
		char ch = s.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == ':'))
			return 0;
	}
	return 1;
}

void
proxy_error(struct conn *c, const char *rid, int status, const char *msg, const char *code,
    const char *extra_hdrs)
{
	struct sc_buf b;
	char h[PX_HDR_CAP];

	sc_buf_init(&b, 4096);
	if (oaierr_format(&b, status, msg, NULL, code) == -1) {
		sc_buf_reset(&b);
		sc_buf_append(&b, "{\"error\":{\"message\":\"error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}", 77);
	}
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\n%s", rid, extra_hdrs ? extra_hdrs : "");
	conn_respond(c, status, h, "application/json", b.data, b.len);
	sc_buf_free(&b);
}

static void
proxy_free(struct proxy_req *r)
{
	queue_remove(&px_queue, &r->qn);
	if (r->xfer != NULL) {
		upstream_cancel(r->xfer);
		r->prov->in_flight--;
	}
	if (r->prov != NULL)
		reg_provider_unref(r->prov);
	if (r->shape_ok)
		shape_free(&r->shape);
	if (r->sse_drop || r->sse_observe)
		sse_free(&r->sse);
	proxy_first_reset(r);
	sc_buf_free(&r->jbody);
	sc_buf_free(&r->body);
	sc_buf_free(&r->fwd);
	sc_buf_free(&r->upbody);
	sc_buf_free(&r->errbody);
	sc_buf_free(&r->hold);
	reqlog_trail_free(&r->trail);
	free(r->model);
	free(r->prefix);
	free(r);
	px_in_flight--;
}

/* The one log line per request, then release. The client part is already done. */
static void
proxy_log_free(struct proxy_req *r, int status, const char *note)
{
	int64_t now = sc_now_ms();
	char pname[160], model[320];

	if (r->t_wait != 0)
		r->queue_ms += now - r->t_wait;
	/* Both come from outside: quoted when not plain, so they cannot forge fields. */
	log_value(r->prov != NULL ? r->prov->p.name : "-", pname, sizeof(pname));
	log_value(r->model != NULL ? r->model : "-", model, sizeof(model));
	log_info("request %s provider=%s model=%s status=%d latency_ms=%lld ttfb_ms=%lld queue_ms=%lld "
	    "attempts=%d pool=%s tokens=%lld bytes=%llu%s%s",
	    r->rid, pname, model, status,
	    (long long)(now - r->t_start), (long long)r->ttfb_ms, (long long)r->queue_ms, r->attempts,
	    r->pool != NULL ? r->pool : "-", (long long)r->tokens, (unsigned long long)r->relayed,
	    note ? " " : "", note ? note : "");
	{
		struct proxy_result res;
		reqlog_trail_finish(&r->trail, status == 499 ? REQLOG_CLIENT_CLOSED :
		    r->interrupted ? REQLOG_INTERRUPTED : REQLOG_PENDING, r->up_status, now - r->t_start);
		memset(&res, 0, sizeof(res));
		res.rid = r->rid;
		res.provider_id = r->prov != NULL ? r->prov->p.id : NULL;
		res.provider_name = r->prov != NULL ? r->prov->p.name : NULL;
		res.cost_per_1k = r->prov != NULL ? r->prov->p.cost_per_1k : 0;
		res.pool = r->prov != NULL ? r->pool : NULL;
		res.model = r->model;
		res.upstream_model = r->model != NULL && r->prefix != NULL ? r->model + strlen(r->prefix) : NULL;
		res.status = status;
		res.error = status >= 400 || r->interrupted;
		res.stream = r->stream;
		res.upstream_sent = r->attempts > 0;
		res.latency_ms = now - r->t_start;
		res.ttfb_ms = r->ttfb_ms;
		res.queue_ms = r->queue_ms;
		res.attempts = r->attempts;
		res.prompt_tokens = r->prompt_tokens;
		res.completion_tokens = r->completion_tokens;
		res.total_tokens = r->tokens;
		res.bytes = r->relayed;
		res.client = r->client;
		res.error_code = note;
		res.client_closed = status == 499;
		res.trail = &r->trail;
		metrics_request_done(&res);
	}
	proxy_free(r);
}

/* Answer an error produced by the sidecar and finish the request. */
static void
proxy_fail(struct proxy_req *r, int status, const char *msg, const char *code, const char *extra)
{
	struct conn *c = r->conn;

	r->conn = NULL;
	r->phase = PX_DONE;
	proxy_error(c, r->rid, status, msg, code, extra);
	proxy_log_free(r, status, code);
}

/* The client went away (conn teardown): stop everything now. */
static void
proxy_abort(void *arg)
{
	struct proxy_req *r = arg;

	r->conn = NULL;
	proxy_log_free(r, 499, "client_closed");
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

/* A header value from stored data: control bytes become '_', so a row
 * edited by hand can never split a response header. */
static void
proxy_hdr_safe(const char *in, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; in[i] != '\0' && i + 1 < outlen; i++)
		out[i] = ((unsigned char)in[i] < 0x20 || in[i] == 0x7f) ? '_' : in[i];
	out[i] = '\0';
}

/* Response header lines the sidecar adds, into h; Content-Type first when
 * ctype is not NULL. */
static int
proxy_resp_headers(struct proxy_req *r, char *h, size_t hl, const char *ctype)
{
	int64_t qms = r->queue_ms;
	const char *pool = r->pool ? r->pool : "main";
	char name[256];
	int n;

	proxy_hdr_safe(r->prov->p.name, name, sizeof(name));
	n = snprintf(h, hl,
	    "%s%s%sX-Request-Id: %s\r\nX-Sidecar-Provider: %s\r\nX-Sidecar-Pool: %s\r\n"
	    "X-Sidecar-Queue-Ms: %lld\r\n%s%s%s%s",
	    ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
	    r->rid, name, pool, (long long)qms,
	    strcmp(pool, "main") != 0 ? "X-Sidecar-Degraded: " : "",
	    strcmp(pool, "main") != 0 ? pool : "", strcmp(pool, "main") != 0 ? "\r\n" : "",
	    r->is_sse ? "Cache-Control: no-cache\r\n" : "");
	return n < 0 || (size_t)n >= hl ? 0 : n;
}

static int
proxy_retryable_status(int st)
{
	return st == 429 || st == 401 || st == 403 || st >= 500;
}

/* Apply one upstream outcome to the provider's scheduling state and persist
 * what changed. Safe inside curl callbacks: it never starts or stops a
 * transfer (it only re-arms the scheduler timer). */
static enum cooldown_action
proxy_outcome(struct proxy_req *r, enum cooldown_failure fail, int status, int retry_after_s,
    const char *detail)
{
	struct reg_provider *cur = registry_by_id(r->prov->p.id);
	struct sched_provider *sp = cur != NULL ? cur->sched : NULL;
	const struct config *cfg = registry_config();
	struct cooldown_outcome o;
	struct cooldown_result cr;
	int64_t now = sc_now_ms(), wall_ms = sc_wall_ms();
	int prev_failures;
	char summary[160];

	metrics_upstream_outcome(r->prov->p.name, fail == COOLDOWN_FAIL_CONNECT ? 1 : fail == COOLDOWN_FAIL_TTFB ? 2 : 0,
	    status);
	reqlog_trail_end(&r->trail, reqlog_outcome_of(fail != COOLDOWN_FAIL_NONE, fail == COOLDOWN_FAIL_TTFB, status),
	    status, now - r->t_start);
	if (sp == NULL)
		return status >= 200 && status < 300 ? COOLDOWN_ACT_DELIVER :
		    (fail != COOLDOWN_FAIL_NONE || proxy_retryable_status(status)) ? COOLDOWN_ACT_RETRY :
		    COOLDOWN_ACT_PASS_THROUGH;
	memset(&o, 0, sizeof(o));
	o.failure = fail;
	o.status = status;
	o.started_ms = r->t_attempt;
	o.retry_after_ms = retry_after_s >= 0 ? (int64_t)retry_after_s * 1000 : -1;
	if (fail != COOLDOWN_FAIL_NONE)
		snprintf(summary, sizeof(summary), "%s", detail ? detail : "transfer failed");
	else
		snprintf(summary, sizeof(summary), "HTTP %d %s", status, http_reason(status));
	o.reason = summary;
	prev_failures = sp->cd.consecutive_failures;
	cr = cooldown_on_outcome(&sp->cd, cfg, now, &o);
	if (cr.cooldown_started || cr.cooldown_extended || cr.streak_reset) {
		/* A success that resets the streak (a request sent before the 429)
		 * leaves a running cooldown in force: keep its persisted end (-1). */
		int64_t until = cr.cooldown_started || cr.cooldown_extended ?
		    (wall_ms + cr.cooldown_until_ms - now + 999) / 1000 : cooldown_is_cooling(&sp->cd, now) ? -1 : 0;
		if (cr.cooldown_started)
			metrics_cooldown_started(r->prov->p.name);
		if (cr.cooldown_started || cr.cooldown_extended)
			log_warn("provider %s: %d from upstream, cooling down for %d s (consecutive %d)",
			    r->prov->p.name, status, cr.cooldown_seconds, cr.count);
		registry_save_cooldown(r->prov->p.id, until, cr.count, cr.cooldown_started ? cr.cooldown_seconds : 0,
		    summary);
	}
	if (cr.became_invalid) {
		log_warn("provider %s: upstream answered %d, key marked invalid", r->prov->p.name, status);
		registry_save_invalid(r->prov->p.id, summary);
	}
	/* Persisted when the health changes, and when the answer's status does
	 * (not per request: one write per change of last_status_code). */
	if (cr.became_unhealthy || cr.became_healthy || cr.failures != prev_failures || status != sp->saved_status) {
		if (cr.became_unhealthy)
			log_warn("provider %s: unhealthy after %d failures", r->prov->p.name, cr.failures);
		registry_save_health(r->prov->p.id, sp->cd.unhealthy, cr.failures, status, now - r->t_attempt,
		    fail != COOLDOWN_FAIL_NONE || status >= 500 ? summary : "", 0);
		sp->saved_status = status;
	}
	/* Waiters may go now, or a provider's state changed: decide again and
	 * re-arm from the timer (never here: this may run inside a curl callback). */
	if (queue_len(&px_queue) > 0 || cr.cooldown_started || cr.cooldown_extended || cr.became_invalid ||
	    cr.became_unhealthy || cr.became_healthy)
		loop_timer_arm(px_loop, &px_timer, 0);
	return cr.action;
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
	r->is_sse = strncasecmp(ct, "text/event-stream", 17) == 0;
	if (r->is_sse) {
		sse_init(&r->sse, 0);
		if (r->usage_injected) {
			r->sse_drop = 1;
			sc_buf_init(&r->hold, SSE_MAX_EVENT + 256 * 1024);
		} else {
			r->sse_observe = 1;
		}
		cl = -1;
	} else {
		sc_buf_init(&r->jbody, PX_USAGE_CAP);
	}
	n = proxy_resp_headers(r, h, sizeof(h), ct);
	r->phase = PX_RELAY;
	r->status = r->up_status;
	conn_response_head(r->conn, r->up_status, h, (size_t)n, cl);
}

static int
proxy_on_head(void *arg, struct upstream_xfer *x)
{
	struct proxy_req *r = arg;

	r->up_status = upstream_status(x);
	if (r->up_status >= 200 && r->up_status < 300 &&
	    strncasecmp(upstream_content_type(x), "text/html", 9) == 0) {
		/* A 2xx HTML page (a proxy or captive portal in front of the
		 * provider) is no API answer: an upstream failure like a 502,
		 * retried elsewhere while nothing was sent to the client. */
		log_warn("request %s: provider %s answered %d with an HTML page; treated as 502", r->rid,
		    r->prov->p.name, r->up_status);
		r->up_status = 502;
	}
	if (r->up_status >= 300 && r->up_status < 400) {
		/* A redirect is no API answer either, and following it would send
		 * the key elsewhere: an upstream failure (502), retried on another
		 * key while nothing was sent to the client (docs/security.md). */
		log_warn("request %s: provider %s answered a redirect (%d); treated as 502", r->rid,
		    r->prov->p.name, r->up_status);
		r->up_status = 502;
	}
	if (r->up_status >= 200 && r->up_status < 300 && r->conn != NULL &&
	    strncasecmp(upstream_content_type(x), "text/event-stream", 17) == 0) {
		/* Held until its first event: an error event there (a 429 inside
		 * a 200) is retried on another key while the client has nothing. */
		r->sse_first = 1;
		sse_init(&r->fsse, PX_FIRST_CAP);
		sc_buf_init(&r->first, PX_FIRST_CAP);
		return 0;
	}
	if (r->up_status >= 200 && r->up_status < 300 && r->conn != NULL) {
		proxy_outcome(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
		proxy_commit(r, x);
	}
	return 0;
}

/* Drop the first-event hold (a new attempt, or the end of the request). */
static void
proxy_first_reset(struct proxy_req *r)
{
	if (r->sse_first)
		sse_free(&r->fsse);
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
	log_warn("request %s: provider %s sent a rate-limit error inside its %d stream", r->rid, r->prov->p.name,
	    r->up_status);
	proxy_outcome(r, COOLDOWN_FAIL_NONE, 429, -1, NULL);
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

/* Relay in drop mode: pass whole events, drop the injected usage-only one. */
static void
proxy_relay_sse(struct proxy_req *r, const char *p, size_t n)
{
	size_t sendable = 0, used;
	struct sse_event ev;
	enum sse_result sr;

	while (n > 0) {
		sr = sse_feed(&r->sse, p, n, &used, &ev);
		if (sr == SSE_EVENT)
			proxy_event_limit(r, &ev);
		if (sc_buf_append(&r->hold, p, used) == -1) {
			/* Cannot happen with the scanner's cap below ours; relay what we have. */
			conn_response_body(r->conn, r->hold.data, r->hold.len);
			r->relayed += r->hold.len;
			sc_buf_reset(&r->hold);
			conn_response_body(r->conn, p, used);
			r->relayed += used;
			sendable = 0;
		} else if (sr == SSE_EVENT && proxy_event_usage(r, &ev) == 2) {
			r->hold.len -= ev.raw_len;
			r->hold.data[r->hold.len] = '\0';
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
}

/* Watch a relayed stream for its usage without holding anything back. */
static void
proxy_observe_sse(struct proxy_req *r, const char *p, size_t n)
{
	struct sse_event ev;
	size_t used;

	while (n > 0) {
		if (sse_feed(&r->sse, p, n, &used, &ev) == SSE_EVENT) {
			proxy_event_limit(r, &ev);
			proxy_event_usage(r, &ev);
		}
		p += used;
		n -= used;
	}
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
	proxy_outcome(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
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
		sr = sse_feed(&r->fsse, p + off, n - off, &used, &ev);
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
	if (r->sse_drop) {
		proxy_relay_sse(r, p, n);
		return n;
	}
	if (r->sse_observe)
		proxy_observe_sse(r, p, n);
	else if (r->jbody.len < r->jbody.cap && sc_buf_append(&r->jbody, p, n) == -1)
		r->jbody.len = r->jbody.cap;	/* too big to look at: give up on its usage */
	conn_response_body(r->conn, p, n);
	r->relayed += n;
	return n;
}

/* Tokens reported by a finished response count against the provider's TPM. */
static void
proxy_record_tokens(struct proxy_req *r)
{
	struct reg_provider *cur;
	struct sse_usage u;

	if (r->jbody.len > 0 && r->jbody.len < r->jbody.cap &&
	    sse_usage_parse(r->jbody.data, r->jbody.len, &u) == 1 && u.total_tokens >= 0) {
		r->tokens = u.total_tokens;
		r->prompt_tokens = u.prompt_tokens;
		r->completion_tokens = u.completion_tokens;
	}
	if (r->tokens <= 0 || (cur = registry_by_id(r->prov->p.id)) == NULL || cur->sched == NULL)
		return;
	if (cur->p.tpm_limit > 0)
		ratelimit_record_tokens(&((struct sched_provider *)cur->sched)->rl, sc_now_ms(), r->tokens);
}

/* The end of a committed response: flush what drop mode held, end cleanly. */
static void
proxy_end_relay(struct proxy_req *r, enum upstream_result res)
{
	struct conn *c = r->conn;
	int status = r->status;

	if (r->sse_drop) {
		struct sse_event ev;
		if (sse_finish(&r->sse, &ev) == SSE_EVENT && proxy_event_usage(r, &ev) == 2)
			r->hold.len -= ev.raw_len;
		conn_response_body(c, r->hold.data, r->hold.len);
		r->relayed += r->hold.len;
		sc_buf_reset(&r->hold);
	}
	proxy_record_tokens(r);
	r->conn = NULL;
	if (res == UPSTREAM_OK) {
		proxy_log_free(r, status, NULL);
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
		proxy_log_free(r, status, "stream_interrupted");
		conn_response_end(c);
		return;
	}
	r->interrupted = 1;
	proxy_log_free(r, status, "body_interrupted");
	conn_response_abort(c);
}

/* Send a final upstream error (status kept) in OpenAI shape. */
static void
proxy_pass_error(struct proxy_req *r, int retry_after)
{
	struct conn *c = r->conn;
	struct sc_buf out;
	char h[PX_HDR_CAP], ra[64] = "";
	int status = r->up_status, rw, n;

	sc_buf_init(&out, PX_ERRBODY_CAP + 4096);
	rw = oaierr_rewrite(status, r->errbody.data ? r->errbody.data : "", r->errbody.len,
	    r->prov->p.api_key, &out);
	if (retry_after >= 0)
		snprintf(ra, sizeof(ra), "Retry-After: %d\r\n", retry_after);
	n = proxy_resp_headers(r, h, sizeof(h) - sizeof(ra), NULL);
	memcpy(h + n, ra, strlen(ra) + 1);
	r->conn = NULL;
	r->status = status;
	if (rw == 1)
		conn_respond(c, status, h, "application/json", out.data, out.len);
	else if (rw == 0)
		conn_respond(c, status, h, "application/json", r->errbody.data ? r->errbody.data : "",
		    r->errbody.len);
	else
		proxy_error(c, r->rid, 502, "upstream error", "upstream_error", NULL);
	sc_buf_free(&out);
	proxy_log_free(r, status, "upstream_error");
}

static void
proxy_on_done(void *arg, struct upstream_xfer *x, enum upstream_result res)
{
	struct proxy_req *r = arg;
	enum cooldown_action act;
	int ra = upstream_retry_after(x);

	r->xfer = NULL;
	r->paused = 0;
	r->prov->in_flight--;
	if (r->conn == NULL) {
		proxy_log_free(r, 499, "client_closed");
		return;
	}
	if (r->phase == PX_RELAY) {
		proxy_end_relay(r, res);
		return;
	}
	if (r->first_limited) {
		/* A 200 stream whose first event said 429: a 429 for this key. */
		log_warn("request %s: provider %s sent a rate-limit error as its stream's first event; "
		    "treated as 429", r->rid, r->prov->p.name);
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
		proxy_outcome(r, COOLDOWN_FAIL_NONE, r->up_status, -1, NULL);
		proxy_commit(r, x);
		proxy_end_relay(r, res);
		return;
	}
	if (res == UPSTREAM_OK) {
		act = proxy_outcome(r, COOLDOWN_FAIL_NONE, r->up_status, ra, NULL);
		if (act != COOLDOWN_ACT_RETRY) {
			proxy_pass_error(r, -1);
			return;
		}
		r->last_fail = r->up_status;
		r->last_fail_http = 1;
		r->last_fail_msg = "upstream error";
		log_warn("request %s: provider %s answered %d, attempt %d", r->rid, r->prov->p.name,
		    r->up_status, r->attempts);
	} else {
		proxy_outcome(r, res == UPSTREAM_ETTFB ? COOLDOWN_FAIL_TTFB : COOLDOWN_FAIL_CONNECT, 0, -1,
		    upstream_error(x));
		r->last_fail = res == UPSTREAM_ETTFB ? 504 : 502;
		r->last_fail_http = 0;
		r->last_fail_msg = res == UPSTREAM_ETTFB ? "upstream did not answer in time" :
		    "upstream connection failed";
		log_warn("request %s: provider %s failed (%s), attempt %d", r->rid, r->prov->p.name,
		    upstream_error(x), r->attempts);
	}
	if (!sched_may_retry(&r->srq, registry_config())) {
		if (r->last_fail == 429)
			proxy_fail(r, 503, "all providers are rate limited; retry later", "no_capacity", "Retry-After: 30\r\n");
		else if (r->last_fail_http)
			proxy_pass_error(r, -1);
		else
			proxy_fail(r, r->last_fail, r->last_fail_msg, "upstream_error", NULL);
		return;
	}
	proxy_next(r);
}

static const struct upstream_ops px_ops = { proxy_on_head, proxy_on_data, proxy_on_done };

/* The decision for one attempt. */
enum px_verdict { PX_GO, PX_WAIT, PX_REJECT };

struct px_choice {
	enum px_verdict      verdict;
	struct reg_provider *prov;		/* GO */
	const char          *pool;		/* GO */
	int64_t              until_ms;		/* WAIT: monotonic ms */
	int                  status;		/* REJECT */
	int                  retry_after;	/* REJECT: seconds, -1 none */
	const char          *msg;		/* REJECT */
	enum sched_why       why;
};

/* The scheduling candidates of a route: its providers with keys and state. */
static size_t
proxy_candidates(const char *prefix, struct reg_provider **rp, struct sched_provider **sp)
{
	size_t i, n = 0;

	for (i = 0; i < registry_count() && n < PX_MAX_CAND; i++) {
		struct reg_provider *p = registry_at(i);
		if (p->sched == NULL || !p->usable || strcmp(p->p.model_prefix, prefix) != 0)
			continue;
		rp[n] = p;
		sp[n] = p->sched;
		n++;
	}
	return n;
}

/* Which provider, now, later, or never (SPEC §5): sched_decide over the
 * route's providers; a GO is committed (counted in the window) right here,
 * just before the caller sends. */
static struct px_choice
proxy_choose(struct proxy_req *r)
{
	struct px_choice ch = { PX_REJECT, NULL, "main", 0, 503, -1, NULL, SCHED_WHY_NO_PROVIDER };
	const struct config *cfg = registry_config();
	struct reg_provider *rp[PX_MAX_CAND];
	struct sched_provider *sp[PX_MAX_CAND];
	size_t n = proxy_candidates(r->prefix, rp, sp);
	int64_t now = sc_now_ms();
	int i;

	ch.retry_after = cfg->retry_after_seconds;
	ch.msg = "no provider available for this model; retry later";
	if (n == 0)
		return ch;
	for (i = 0; i < 4; i++) {
		struct sched_decision d = sched_decide(sp, n, &r->srq, cfg, now);
		ch.why = d.why;
		switch (d.verdict) {
		case SCHED_GO:
			if (sched_commit(sp[d.index], d.pool, &r->srq, cfg, now) == -1)
				continue;	/* the window filled meanwhile: decide again */
			ch.verdict = PX_GO;
			ch.prov = rp[d.index];
			ch.pool = sched_pool_name(d.pool);
			return ch;
		case SCHED_WAIT:
			ch.verdict = PX_WAIT;
			ch.until_ms = d.until_ms;
			return ch;
		case SCHED_REJECT:
			ch.retry_after = d.retry_after_seconds;
			return ch;
		}
	}
	return ch;
}

/* Build the upstream header list for this attempt: forwarded client headers,
 * the provider's key, our request id. */
static struct curl_slist *
proxy_up_headers(struct proxy_req *r, struct reg_provider *p)
{
	struct curl_slist *l = NULL, *t;
	size_t off = 0;
	char line[PX_RID_MAX + 32];

	while (off < r->fwd.len) {
		const char *h = r->fwd.data + off;
		if ((t = curl_slist_append(l, h)) == NULL)
			goto fail;
		l = t;
		off += strlen(h) + 1;
	}
	{
		size_t kl = strlen(p->p.api_key) + 32;
		char *auth = sc_xmalloc(kl);
		snprintf(auth, kl, "Authorization: Bearer %s", p->p.api_key);
		t = curl_slist_append(l, auth);
		crypto_wipe(auth, kl);
		free(auth);
		if (t == NULL)
			goto fail;
		l = t;
	}
	snprintf(line, sizeof(line), "X-Request-Id: %s", r->rid);
	if ((t = curl_slist_append(l, line)) == NULL)
		goto fail;
	l = t;
	/* The body is JSON: say so when the client did not (libcurl would send
	 * application/x-www-form-urlencoded). */
	if (!r->has_ctype) {
		if ((t = curl_slist_append(l, "Content-Type: application/json")) == NULL)
			goto fail;
		l = t;
	}
	if ((t = curl_slist_append(l, "Expect:")) == NULL)
		goto fail;
	l = t;
	return l;
fail:
	curl_slist_free_all(l);
	return NULL;
}

/* Start an attempt on p (already committed by proxy_choose). 0, or -1 when
 * it could not start. */
static int
proxy_start(struct proxy_req *r, struct reg_provider *p, const char *pool)
{
	const struct config *cfg = registry_config();
	struct upstream_req rq;
	struct sc_err e;
	char url[2048];
	int st;

	r->attempts++;
	if (r->prov != NULL)
		reg_provider_unref(r->prov);
	r->prov = p;
	reg_provider_ref(p);
	r->pool = pool;
	reqlog_trail_begin(&r->trail, p->p.id, p->p.name, pool, sc_now_ms() - r->t_start);
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
	if (snprintf(url, sizeof(url), "%s/%s", p->p.endpoint_url, r->path) >= (int)sizeof(url))
		return -1;
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.post = r->shape_ok;
	rq.body = r->upbody.data;
	rq.body_len = r->upbody.len;
	rq.headers = proxy_up_headers(r, p);
	rq.connect_timeout_ms = (long)cfg->upstream_connect_timeout * 1000;
	rq.ttfb_timeout_ms = (long)cfg->upstream_ttfb_timeout * 1000;
	if (rq.headers == NULL)
		return -1;
	r->t_attempt = sc_now_ms();
	r->phase = PX_ATTEMPT;
	r->xfer = upstream_start(&rq, &px_ops, r);
	if (r->xfer == NULL) {
		log_warn("request %s: could not start a transfer to %s", r->rid, p->p.name);
		return -1;
	}
	p->in_flight++;
	return 0;
}

/* The wait queue is at queue_capacity: 503 with Retry-After, at once. */
static void
proxy_queue_full(struct proxy_req *r)
{
	char extra[64];

	snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", registry_config()->retry_after_seconds);
	metrics_queue_rejected(METRICS_REJECT_OVERFLOW);
	proxy_fail(r, 503, "the wait queue is full; retry later", "queue_full", extra);
}

/* Answer a rejection: the last upstream error when a key answered one that
 * no other key can do better on, else 503 with Retry-After. */
static void
proxy_reject(struct proxy_req *r, const struct px_choice *ch, const char *msg)
{
	char extra[64];

	if (r->last_fail_http && r->last_fail != 429 && r->prov != NULL) {
		r->up_status = r->last_fail;
		proxy_pass_error(r, -1);
		return;
	}
	if (!r->last_fail_http && r->last_fail != 0 && ch->why == SCHED_WHY_NO_PROVIDER) {
		proxy_fail(r, r->last_fail, r->last_fail_msg, "upstream_error", NULL);
		return;
	}
	snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", ch->retry_after > 0 ? ch->retry_after : 1);
	proxy_fail(r, 503, msg, "no_capacity", extra);
}

/* Decide and act: attempt, wait in the queue, or answer. */
static void
proxy_next(struct proxy_req *r)
{
	const struct config *cfg = registry_config();
	int tries;

	for (tries = 0; tries < 8; tries++) {
		struct px_choice ch = proxy_choose(r);
		int64_t now = sc_now_ms();

		switch (ch.verdict) {
		case PX_GO:
			if (r->qn.queued)
				queue_remove(&px_queue, &r->qn);
			if (r->t_wait != 0) {
				r->queue_ms += now - r->t_wait;
				r->t_wait = 0;
			}
			if (proxy_start(r, ch.prov, ch.pool) == 0)
				return;
			reqlog_trail_end(&r->trail, REQLOG_START_FAILED, 0, sc_now_ms() - r->t_start);
			r->last_fail = 502;
			r->last_fail_http = 0;
			r->last_fail_msg = "could not reach the provider";
			if (!sched_may_retry(&r->srq, cfg)) {
				proxy_fail(r, 502, "could not reach any provider", "upstream_error", NULL);
				return;
			}
			continue;
		case PX_WAIT:
			if (!r->qn.queued) {
				if (queue_push(&px_queue, &r->qn, r->prio, now, (int64_t)cfg->queue_timeout_seconds * 1000,
				    (size_t)cfg->queue_capacity) == -1) {
					proxy_queue_full(r);
					return;
				}
				r->phase = PX_WAITING;
				r->t_wait = now;
			}
			proxy_sched_rearm();
			return;
		case PX_REJECT:
			if (r->qn.queued)
				queue_remove(&px_queue, &r->qn);
			proxy_reject(r, &ch, ch.msg);
			return;
		}
	}
	proxy_fail(r, 503, "no provider could take the request; retry later", "no_capacity", "Retry-After: 1\r\n");
}

/* All providers with scheduling state (for timers and probes). */
static size_t
proxy_all_sched(struct reg_provider **rp, struct sched_provider **sp)
{
	size_t i, n = 0;

	for (i = 0; i < registry_count() && n < PX_MAX_CAND; i++) {
		struct reg_provider *p = registry_at(i);
		if (p->sched == NULL || !p->usable)
			continue;
		rp[n] = p;
		sp[n] = p->sched;
		n++;
	}
	return n;
}

/* Arm the one scheduler timer: next queue deadline, next provider change
 * (only matters with waiters), next probe. */
void
proxy_sched_rearm(void)
{
	struct reg_provider *rp[PX_MAX_CAND];
	struct sched_provider *sp[PX_MAX_CAND];
	size_t n = proxy_all_sched(rp, sp);
	int64_t now = sc_now_ms(), t = INT64_MAX, x;

	if (queue_len(&px_queue) > 0) {
		t = queue_next_deadline(&px_queue);
		x = sched_next_change(sp, n, registry_config(), now);
		if (x < t)
			t = x;
	}
	x = sched_next_probe(sp, n);
	if (x < t)
		t = x;
	if (t == INT64_MAX) {
		loop_timer_cancel(px_loop, &px_timer);
		return;
	}
	if (!loop_timer_armed(&px_timer) || px_timer.when_ms != t)
		loop_timer_arm(px_loop, &px_timer, t);
}

static int
proxy_probe_on_head(void *arg, struct upstream_xfer *x)
{
	return 0;
}

static size_t
proxy_probe_on_data(void *arg, const char *p, size_t n)
{
	return n;	/* the probe only needs the status */
}

static void
proxy_probe_on_done(void *arg, struct upstream_xfer *x, enum upstream_result res)
{
	struct px_probe *pr = arg;
	struct reg_provider *cur = registry_by_id(pr->prov->p.id);
	int ok = res == UPSTREAM_OK && upstream_status(x) >= 200 && upstream_status(x) < 300;
	int64_t now = sc_now_ms();

	if (cur != NULL && cur->sched != NULL) {
		struct sched_provider *sp = cur->sched;
		struct cooldown_result cr = cooldown_on_probe(&sp->cd, registry_config(), now, ok);
		log_info("provider %s: health probe %s (status %d)%s", pr->prov->p.name, ok ? "ok" : "failed",
		    upstream_status(x), cr.became_healthy ? ", healthy again" : "");
		registry_save_health(pr->prov->p.id, sp->cd.unhealthy, sp->cd.consecutive_failures,
		    upstream_status(x), now - pr->t0, ok ? "" : upstream_error(x), 1);
		sp->saved_status = upstream_status(x);
	}
	if (pr->prev != NULL)
		pr->prev->next = pr->next;
	else
		px_probes = pr->next;
	if (pr->next != NULL)
		pr->next->prev = pr->prev;
	reg_provider_unref(pr->prov);
	free(pr);
	loop_timer_arm(px_loop, &px_timer, 0);
}

static const struct upstream_ops px_probe_ops = { proxy_probe_on_head, proxy_probe_on_data, proxy_probe_on_done };

/* GET {endpoint}/models with the provider's key. */
static void
proxy_probe_start(struct reg_provider *p)
{
	const struct config *cfg = registry_config();
	struct upstream_req rq;
	struct curl_slist *h;
	struct px_probe *pr;
	char url[2048];
	size_t kl = strlen(p->p.api_key) + 32;
	char *auth = sc_xmalloc(kl);

	snprintf(auth, kl, "Authorization: Bearer %s", p->p.api_key);
	h = curl_slist_append(NULL, auth);
	crypto_wipe(auth, kl);
	free(auth);
	if (h == NULL)
		return;
	snprintf(url, sizeof(url), "%s/models", p->p.endpoint_url);
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.headers = h;
	rq.connect_timeout_ms = (long)cfg->upstream_connect_timeout * 1000;
	rq.ttfb_timeout_ms = (long)cfg->upstream_ttfb_timeout * 1000;
	pr = sc_xcalloc(1, sizeof(*pr));
	pr->prov = p;
	reg_provider_ref(p);
	pr->t0 = sc_now_ms();
	pr->xfer = upstream_start(&rq, &px_probe_ops, pr);
	if (pr->xfer == NULL) {
		reg_provider_unref(p);
		free(pr);
		return;
	}
	pr->next = px_probes;
	if (px_probes != NULL)
		px_probes->prev = pr;
	px_probes = pr;
}

/* The scheduler timer: expire waiters, decide the others in service order,
 * start due probes, re-arm. */
static void
proxy_sched_fire(struct loop *l, void *arg)
{
	const struct config *cfg = registry_config();
	struct reg_provider *rp[PX_MAX_CAND];
	struct sched_provider *sp[PX_MAX_CAND];
	struct queue_node *qn, *next;
	int64_t now = sc_now_ms();
	size_t n, i;
	char extra[64];

	while ((qn = queue_pop_expired(&px_queue, now)) != NULL) {
		struct proxy_req *r = qn->owner;
		snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", cfg->retry_after_seconds);
		metrics_queue_rejected(METRICS_REJECT_TIMEOUT);
		proxy_fail(r, 503, "timed out waiting for a provider; retry later", "queue_timeout", extra);
	}
	for (qn = queue_first(&px_queue); qn != NULL; qn = next) {
		next = queue_next(&px_queue, qn);
		proxy_next(qn->owner);
	}
	n = proxy_all_sched(rp, sp);
	for (i = 0; i < n; i++)
		if (sched_probe_start(sp[i], cfg, now))
			proxy_probe_start(rp[i]);
	proxy_sched_rearm();
}

/* Collect the client's end-to-end headers worth forwarding. */
static void
proxy_collect_headers(struct proxy_req *r, const struct http_request *req)
{
	static const char *const skip[] = {
		"authorization", "host", "content-length", "transfer-encoding", "expect",
		"accept-encoding", "x-request-id", "x-sidecar-priority", "cookie", "proxy-authorization",
		NULL,
	};
	size_t i, k;

	sc_buf_init(&r->fwd, PX_FWD_CAP);
	for (i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (http_is_hop_by_hop(h->name) || http_connection_lists(req, h->name))
			continue;
		for (k = 0; skip[k] != NULL; k++)
			if (http_slice_ieq(h->name, skip[k]))
				break;
		if (skip[k] != NULL)
			continue;
		if (r->fwd.len + h->name.len + h->value.len + 4 > PX_FWD_CAP)
			break;
		if (http_slice_ieq(h->name, "content-type"))
			r->has_ctype = 1;
		sc_buf_append(&r->fwd, h->name.p, h->name.len);
		sc_buf_append(&r->fwd, ": ", 2);
		sc_buf_append(&r->fwd, h->value.p, h->value.len);
		sc_buf_append(&r->fwd, "", 1);
	}
}

/* The longest model_prefix among all providers that model starts with. */
static const char *
proxy_route(const char *model)
{
	const char *best = NULL;
	size_t i, bl = 0;

	for (i = 0; i < registry_count(); i++) {
		const char *pf = registry_at(i)->p.model_prefix;
		size_t l = strlen(pf);
		if (l > bl && strncmp(model, pf, l) == 0) {
			best = pf;
			bl = l;
		}
	}
	return best;
}

/* GET /health (SPEC §4): provider states, queue depth and capacity; 200
 * while any provider can serve (ready, or full and about to free). */
static void
proxy_health(struct conn *c, const char *rid)
{
	size_t i, cnt[SCHED_ST_DISABLED + 1] = { 0 }, total = 0, nokey = 0, serve;
	const struct config *cfg = registry_config();
	int64_t now = sc_now_ms();
	const char *st;
	char body[1024], h[256];
	int n;

	for (i = 0; i < registry_count(); i++) {
		struct reg_provider *p = registry_at(i);
		total++;
		if (p->sched == NULL || (!p->usable && p->p.status == PSTATUS_ACTIVE))
			nokey++;
		else
			cnt[sched_provider_state(p->sched, cfg, now)]++;
	}
	serve = cnt[SCHED_ST_READY] + cnt[SCHED_ST_FULL];
	st = serve == 0 ? "unavailable" :
	    (cnt[SCHED_ST_COOLING] + cnt[SCHED_ST_UNHEALTHY] + cnt[SCHED_ST_FULL] > 0) ? "degraded" : "ok";
	n = snprintf(body, sizeof(body),
	    "{\"status\":\"%s\",\"providers\":{\"total\":%zu,\"ready\":%zu,\"full\":%zu,\"cooling\":%zu,"
	    "\"unhealthy\":%zu,\"invalid\":%zu,\"disabled\":%zu,\"no_key\":%zu},"
	    "\"queue\":{\"depth\":%zu,\"capacity\":%d},\"in_flight\":%zu}",
	    st, total, cnt[SCHED_ST_READY], cnt[SCHED_ST_FULL], cnt[SCHED_ST_COOLING],
	    cnt[SCHED_ST_UNHEALTHY], cnt[SCHED_ST_INVALID], cnt[SCHED_ST_DISABLED], nokey,
	    queue_len(&px_queue), cfg->queue_capacity, px_in_flight);
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\nCache-Control: no-store\r\n", rid);
	conn_respond(c, serve > 0 ? 200 : 503, h, "application/json", body, (size_t)n);
}

/* Client token check when tokens are configured. 1 ok, else answered. A
 * valid token makes the connection trusted (conn_set_trusted) and names the
 * request's client (conn_set_client: the token's label, for the request log). */
static int
proxy_auth(struct conn *c, const struct http_request *req, const char *rid)
{
	const struct http_header *a;
	char tok[512], label[TOKENS_LABEL_MAX + 1];
	int r;

	conn_set_client(c, "");
	if (registry_client_tokens() <= 0 && !px_public)
		return 1;
	a = http_find_header(req, "authorization");
	if (a == NULL || a->value.len < 8 || strncasecmp(a->value.p, "Bearer ", 7) != 0 ||
	    a->value.len - 7 >= sizeof(tok)) {
		proxy_error(c, rid, 401, "missing or invalid client token (Authorization: Bearer)",
		    "invalid_api_key", "WWW-Authenticate: Bearer\r\n");
		return 0;
	}
	memcpy(tok, a->value.p + 7, a->value.len - 7);
	tok[a->value.len - 7] = '\0';
	r = registry_check_token(tok, label);
	crypto_wipe(tok, sizeof(tok));
	if (r == 1) {
		conn_set_trusted(c);
		conn_set_client(c, label);
		return 1;
	}
	if (r == -1)
		proxy_error(c, rid, 500, "token check failed", "internal_error", NULL);
	else
		proxy_error(c, rid, 401, "missing or invalid client token (Authorization: Bearer)",
		    "invalid_api_key", "WWW-Authenticate: Bearer\r\n");
	return 0;
}

/* What a request asks for, from its path (origin- or absolute-form) and method. */
enum px_endpoint { PX_EP_UNKNOWN, PX_EP_HEALTH, PX_EP_MODELS, PX_EP_POST };

/* Classify req. *up: the upstream path of a PX_EP_POST; *allow: the Allow
 * header line when the method does not fit the endpoint, else NULL. GET
 * routes take HEAD too (answered without a body, conn.c). */
static enum px_endpoint
proxy_endpoint(const struct http_request *req, const char **up, const char **allow)
{
	static const char *const posts[] = { "chat/completions", "completions", "embeddings", NULL };
	struct http_slice path = http_target_path(req->target), rest;
	int get = http_slice_eq(req->method, "GET") || http_slice_eq(req->method, "HEAD");
	const char *q;
	size_t i;

	*up = NULL;
	*allow = NULL;
	if ((q = memchr(path.p, '?', path.len)) != NULL)
		path.len = (size_t)(q - path.p);
	if (http_slice_eq(path, "/health") || http_slice_eq(path, "/v1/models")) {
		if (!get)
			*allow = "Allow: GET, HEAD\r\n";
		return path.len == 7 ? PX_EP_HEALTH : PX_EP_MODELS;
	}
	if (path.len < 4 || memcmp(path.p, "/v1/", 4) != 0)
		return PX_EP_UNKNOWN;
	rest.p = path.p + 4;
	rest.len = path.len - 4;
	for (i = 0; posts[i] != NULL; i++)
		if (http_slice_eq(rest, posts[i])) {
			*up = posts[i];
			if (!http_slice_eq(req->method, "POST"))
				*allow = "Allow: POST\r\n";
			return PX_EP_POST;
		}
	return PX_EP_UNKNOWN;
}

/* The request id: the client's X-Request-Id when plain, else a new one. */
static void
proxy_request_id(const struct http_request *req, char rid[PX_RID_MAX + 1])
{
	const struct http_header *h = http_find_header(req, "x-request-id");

	if (h != NULL && proxy_rid_ok(h->value)) {
		memcpy(rid, h->value.p, h->value.len);
		rid[h->value.len] = '\0';
	} else {
		proxy_new_rid(rid);
	}
}

/* 404 for an unknown endpoint, 405 for a wrong method: 1 when answered. */
static int
proxy_refuse(struct conn *c, enum px_endpoint ep, const char *allow, const char *rid)
{
	if (ep == PX_EP_UNKNOWN) {
		proxy_error(c, rid, 404, "unknown endpoint", "not_found", NULL);
		return 1;
	}
	if (allow != NULL) {
		proxy_error(c, rid, 405, "method not allowed", NULL, allow);
		return 1;
	}
	return 0;
}

int
proxy_admit(struct conn *c, const struct http_request *req)
{
	enum px_endpoint ep;
	const char *up, *allow;
	char rid[PX_RID_MAX + 1];

	ep = proxy_endpoint(req, &up, &allow);
	if (ep == PX_EP_HEALTH && allow == NULL)
		return 1;
	proxy_request_id(req, rid);
	if (proxy_refuse(c, ep, allow, rid))
		return 0;
	return proxy_auth(c, req, rid);
}

void
proxy_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	const struct http_header *h;
	struct proxy_req *r;
	enum px_endpoint ep;
	const char *pf, *up, *allow;
	char rid[PX_RID_MAX + 1];
	struct sc_err e;

	/* proxy_admit ran on the head: the endpoint and the token are checked. */
	ep = proxy_endpoint(req, &up, &allow);
	proxy_request_id(req, rid);
	if (proxy_refuse(c, ep, allow, rid))
		return;
	if (ep == PX_EP_HEALTH) {
		proxy_health(c, rid);
		return;
	}
	if (ep == PX_EP_MODELS) {
		models_handle(c, rid);
		return;
	}

	r = sc_xcalloc(1, sizeof(*r));
	px_in_flight++;
	r->conn = c;
	r->t_start = sc_now_ms();
	r->ttfb_ms = -1;
	r->path = up;
	memcpy(r->rid, rid, sizeof(rid));
	snprintf(r->client, sizeof(r->client), "%s", conn_client(c));
	r->tokens = r->prompt_tokens = r->completion_tokens = -1;
	queue_node_init(&r->qn, r);
	sched_request_init(&r->srq);
	h = http_find_header(req, "x-sidecar-priority");
	r->prio = QUEUE_NORMAL;
	if (h != NULL && h->value.len < 16) {
		char pv[16];
		memcpy(pv, h->value.p, h->value.len);
		pv[h->value.len] = '\0';
		if (queue_prio_parse(pv, &r->prio) == -1)
			r->prio = QUEUE_NORMAL;
	}
	sc_buf_init(&r->errbody, PX_ERRBODY_CAP);
	sc_buf_init(&r->upbody, 0);
	sc_buf_init(&r->hold, 0);
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
	r->model = sc_xstrdup(r->shape.model);
	pf = proxy_route(r->model);
	if (pf == NULL || r->model[strlen(pf)] == '\0') {
		char msg[256];
		snprintf(msg, sizeof(msg), "The model `%.128s` does not exist or no provider serves it",
		    r->model);
		proxy_fail(r, 404, msg, "model_not_found", NULL);
		return;
	}
	r->prefix = sc_xstrdup(pf);
	proxy_collect_headers(r, req);
	conn_attach(c, &px_hooks, r);
	r->phase = PX_ROUTED;
	if (queue_len(&px_queue) > 0) {
		/* Others are waiting: line up behind them instead of taking the slot
		 * the timer is about to hand out, then let the queue walk decide. */
		const struct config *cfg = registry_config();
		if (queue_push(&px_queue, &r->qn, r->prio, r->t_start, (int64_t)cfg->queue_timeout_seconds * 1000,
		    (size_t)cfg->queue_capacity) == -1) {
			proxy_queue_full(r);
			return;
		}
		r->phase = PX_WAITING;
		r->t_wait = r->t_start;
		loop_timer_arm(px_loop, &px_timer, 0);
		return;
	}
	proxy_next(r);
}
