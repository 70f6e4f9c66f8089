/*
 * One client request from routing to the last byte.
 *
 * proxy_handle checks the client token, picks the endpoint, parses the body
 * (shape_parse) and the route (longest model_prefix). proxy_next then asks
 * proxy_choose — the single place that decides "which provider, now, later,
 * or never" — and either starts an attempt, parks the request on its timer
 * until the given time, or answers the rejection. An attempt is one upstream
 * transfer: a 2xx head commits the response to the client and the body is
 * relayed as it arrives (pausing curl while the client's buffer is full); an
 * error head is buffered (bounded) so that a retryable failure (429,
 * 401/403, 5xx, connect error, first-byte timeout) can go to another
 * provider while nothing has been sent, and a final error reaches the client
 * in OpenAI shape with the upstream's status. When the sidecar asked the
 * upstream for stream usage the client did not request, the usage-only SSE
 * event is dropped from the relay (sse.h), holding back at most one event.
 *
 * Each request ends in proxy_finish (log line, release) or proxy_abort (the
 * client went away: cancel the upstream transfer at once).
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
#include "registry.h"
#include "shape.h"
#include "sse.h"
#include "upstream.h"

#define PX_ERRBODY_CAP  (64 * 1024)	/* upstream error body kept for the rewrite */
#define PX_FWD_CAP      (64 * 1024)	/* client headers forwarded upstream */
#define PX_HDR_CAP      2048		/* response header lines the sidecar adds */
#define PX_MAX_TRIED    16
#define PX_RID_MAX      128

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
	struct sc_buf         fwd;		/* owned: "Name: value\0" client headers to forward */
	int64_t               t_start;		/* ms, monotonic */
	int64_t               t_wait;		/* when parked, 0 when not */
	int64_t               queue_ms;		/* total time parked */
	struct loop_timer     timer;		/* wakes a parked request */

	/* The current or last attempt. */
	struct reg_provider  *prov;		/* ref held */
	const char           *pool;		/* "main" | "fallback" | "emergency" */
	struct upstream_xfer *xfer;		/* running transfer, NULL between attempts */
	int64_t               t_attempt;
	struct sc_buf         upbody;		/* owned: the body sent upstream */
	bool                  usage_injected;
	char                  tried[PX_MAX_TRIED][37];
	int                   ntried;
	int                   attempts;
	int                   up_status;	/* upstream HTTP status of this attempt */
	struct sc_buf         errbody;		/* owned: buffered error body */
	int                   paused;		/* curl paused on our output buffer */
	int                   sse_drop;		/* scanning to drop the injected usage event */
	struct sse_scanner    sse;
	struct sc_buf         hold;		/* owned: relayed bytes held back in sse_drop mode */
	int                   is_sse;		/* response is text/event-stream */
	int64_t               ttfb_ms;		/* first body byte, -1 before */
	uint64_t              relayed;		/* body bytes sent to the client */

	/* Outcome for the log line. */
	int                   status;
	int                   last_fail;	/* last failure status to report when out of providers */
	const char           *last_fail_msg;
};

static struct loop *px_loop;
static size_t       px_in_flight;
static unsigned     px_rr;	/* round-robin cursor of the simple chooser */

static void proxy_next(struct proxy_req *r);
static void proxy_abort(void *arg);
static void proxy_drain(void *arg);

static const struct conn_hooks px_hooks = { proxy_abort, proxy_drain };

size_t
proxy_in_flight(void)
{
	return px_in_flight;
}

int
proxy_init(struct loop *l)
{
	px_loop = l;
	return 0;
}

void
proxy_shutdown(void)
{
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
	loop_timer_cancel(px_loop, &r->timer);
	if (r->xfer != NULL) {
		upstream_cancel(r->xfer);
		r->prov->in_flight--;
	}
	if (r->prov != NULL)
		reg_provider_unref(r->prov);
	if (r->shape_ok)
		shape_free(&r->shape);
	if (r->sse_drop)
		sse_free(&r->sse);
	sc_buf_free(&r->body);
	sc_buf_free(&r->fwd);
	sc_buf_free(&r->upbody);
	sc_buf_free(&r->errbody);
	sc_buf_free(&r->hold);
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

	if (r->t_wait != 0)
		r->queue_ms += now - r->t_wait;
	log_info("request %s provider=%s model=%s status=%d latency_ms=%lld ttfb_ms=%lld queue_ms=%lld "
	    "attempts=%d bytes=%llu%s%s",
	    r->rid, r->prov != NULL ? r->prov->p.name : "-", r->model != NULL ? r->model : "-", status,
	    (long long)(now - r->t_start), (long long)r->ttfb_ms, (long long)r->queue_ms, r->attempts,
	    (unsigned long long)r->relayed, note ? " " : "", note ? note : "");
	metrics_count_request(r->prov != NULL ? r->prov->p.name : NULL, r->pool, status);
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

/* Response header lines the sidecar adds, into h. */
static int
proxy_resp_headers(struct proxy_req *r, char *h, size_t hl, const char *ctype)
{
	int64_t qms = r->queue_ms;
	const char *pool = r->pool ? r->pool : "main";
	int n;

	n = snprintf(h, hl,
	    "Content-Type: %s\r\nX-Request-Id: %s\r\nX-Sidecar-Provider: %s\r\nX-Sidecar-Pool: %s\r\n"
	    "X-Sidecar-Queue-Ms: %lld\r\n%s%s%s%s",
	    ctype, r->rid, r->prov->p.name, pool, (long long)qms,
	    strcmp(pool, "main") != 0 ? "X-Sidecar-Degraded: " : "",
	    strcmp(pool, "main") != 0 ? pool : "", strcmp(pool, "main") != 0 ? "\r\n" : "",
	    r->is_sse ? "Cache-Control: no-cache\r\n" : "");
	return n < 0 || (size_t)n >= hl ? 0 : n;
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
	if (r->is_sse && r->usage_injected) {
		r->sse_drop = 1;
		sse_init(&r->sse, 0);
		sc_buf_init(&r->hold, SSE_MAX_EVENT + 256 * 1024);
	}
	if (r->is_sse || r->sse_drop)
		cl = -1;
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
	if (r->up_status >= 200 && r->up_status < 300 && r->conn != NULL)
		proxy_commit(r, x);
	return 0;
}

/* Relay in drop mode: pass whole events, drop the injected usage-only one. */
static void
proxy_relay_sse(struct proxy_req *r, const char *p, size_t n)
{
	size_t sendable = 0, used;
	struct sse_event ev;
	struct sse_usage u;
	enum sse_result sr;

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
		} else if (sr == SSE_EVENT && ev.has_data && !ev.done &&
		    sse_usage_parse(ev.data, ev.data_len, &u) == 1 && u.usage_only) {
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

static size_t
proxy_on_data(void *arg, const char *p, size_t n)
{
	struct proxy_req *r = arg;

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
	} else {
		conn_response_body(r->conn, p, n);
		r->relayed += n;
	}
	return n;
}

/* The end of a committed response: flush what drop mode held, end cleanly. */
static void
proxy_end_relay(struct proxy_req *r, enum upstream_result res)
{
	struct conn *c = r->conn;
	int status = r->status;

	if (r->sse_drop) {
		struct sse_event ev;
		struct sse_usage u;
		if (sse_finish(&r->sse, &ev) == SSE_EVENT && ev.has_data &&
		    sse_usage_parse(ev.data, ev.data_len, &u) == 1 && u.usage_only)
			r->hold.len -= ev.raw_len;
		conn_response_body(c, r->hold.data, r->hold.len);
		r->relayed += r->hold.len;
		sc_buf_reset(&r->hold);
	}
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
		proxy_log_free(r, status, "stream_interrupted");
		conn_response_end(c);
		return;
	}
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
	n = proxy_resp_headers(r, h, sizeof(h) - sizeof(ra), "application/json");
	memcpy(h + n, ra, strlen(ra) + 1);
	r->conn = NULL;
	r->status = status;
	if (rw == 1)
		conn_respond(c, status, h + strlen("Content-Type: application/json\r\n"), "application/json",
		    out.data, out.len);
	else if (rw == 0)
		conn_respond(c, status, h + strlen("Content-Type: application/json\r\n"), "application/json",
		    r->errbody.data ? r->errbody.data : "", r->errbody.len);
	else
		proxy_error(c, r->rid, 502, "upstream error", "upstream_error", NULL);
	sc_buf_free(&out);
	proxy_log_free(r, status, "upstream_error");
}

static int
proxy_retryable_status(int st)
{
	return st == 429 || st == 401 || st == 403 || st >= 500;
}

static void
proxy_on_done(void *arg, struct upstream_xfer *x, enum upstream_result res)
{
	struct proxy_req *r = arg;
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
	if (res == UPSTREAM_OK && r->up_status >= 200 && r->up_status < 300) {
		/* A 2xx whose head never reached on_head: commit an empty body. */
		proxy_commit(r, x);
		proxy_end_relay(r, res);
		return;
	}
	if (res == UPSTREAM_OK && !proxy_retryable_status(r->up_status)) {
		proxy_pass_error(r, -1);
		return;
	}
	/* A retryable failure with nothing sent: remember it, try elsewhere. */
	if (res == UPSTREAM_OK) {
		r->last_fail = r->up_status;
		r->last_fail_msg = "upstream error";
		log_warn("request %s: provider %s answered %d, attempt %d", r->rid, r->prov->p.name,
		    r->up_status, r->attempts);
	} else {
		r->last_fail = res == UPSTREAM_ETTFB ? 504 : 502;
		r->last_fail_msg = res == UPSTREAM_ETTFB ? "upstream did not answer in time" :
		    "upstream connection failed";
		r->prov->consecutive_failures++;
		log_warn("request %s: provider %s failed (%s), attempt %d", r->rid, r->prov->p.name,
		    upstream_error(x), r->attempts);
	}
	if (r->attempts >= registry_config()->max_attempts) {
		if (res == UPSTREAM_OK)
			proxy_pass_error(r, ra);
		else
			proxy_fail(r, r->last_fail, r->last_fail_msg, "upstream_error", NULL);
		return;
	}
	sc_buf_reset(&r->errbody);
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
};

static int
proxy_tried(const struct proxy_req *r, const struct reg_provider *p)
{
	int i;

	for (i = 0; i < r->ntried; i++)
		if (strcmp(r->tried[i], p->p.id) == 0)
			return 1;
	return 0;
}

/* Which provider, now, later, or never. Simple policy: the usable providers
 * of the request's prefix in round-robin, skipping those already tried. */
static struct px_choice
proxy_choose(struct proxy_req *r)
{
	struct px_choice ch = { PX_REJECT, NULL, "main", 0, 503, -1, NULL };
	size_t n = registry_count(), k;

	for (k = 0; k < n; k++) {
		struct reg_provider *p = registry_at((px_rr + k) % n);
		if (!p->usable || strcmp(p->p.model_prefix, r->prefix) != 0 || proxy_tried(r, p))
			continue;
		px_rr = (unsigned)((px_rr + k + 1) % n);
		ch.verdict = PX_GO;
		ch.prov = p;
		ch.pool = p->p.pool == POOL_FALLBACK ? "fallback" : "main";
		return ch;
	}
	ch.status = r->last_fail ? r->last_fail : 503;
	ch.msg = r->last_fail ? r->last_fail_msg : "no provider available for this model";
	ch.retry_after = registry_config()->retry_after_seconds;
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
	if ((t = curl_slist_append(l, "Expect:")) == NULL)
		goto fail;
	l = t;
	return l;
fail:
	curl_slist_free_all(l);
	return NULL;
}

/* Start an attempt on p. 0, or -1 when it could not start (p is marked tried). */
static int
proxy_start(struct proxy_req *r, struct reg_provider *p, const char *pool)
{
	const struct config *cfg = registry_config();
	struct upstream_req rq;
	struct sc_err e;
	char url[2048];
	int st;

	if (r->ntried < PX_MAX_TRIED)
		snprintf(r->tried[r->ntried++], 37, "%s", p->p.id);
	r->attempts++;
	if (r->prov != NULL)
		reg_provider_unref(r->prov);
	r->prov = p;
	reg_provider_ref(p);
	r->pool = pool;
	r->up_status = 0;
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

static void
proxy_wake(struct loop *l, void *arg)
{
	struct proxy_req *r = arg;

	if (r->t_wait != 0) {
		r->queue_ms += sc_now_ms() - r->t_wait;
		r->t_wait = 0;
	}
	proxy_next(r);
}

/* Decide and act: attempt, park, or answer. */
static void
proxy_next(struct proxy_req *r)
{
	for (;;) {
		struct px_choice ch = proxy_choose(r);
		char extra[64];

		switch (ch.verdict) {
		case PX_GO:
			if (proxy_start(r, ch.prov, ch.pool) == 0)
				return;
			if (r->attempts >= registry_config()->max_attempts) {
				proxy_fail(r, 502, "could not reach any provider", "upstream_error", NULL);
				return;
			}
			continue;
		case PX_WAIT:
			r->phase = PX_WAITING;
			if (r->t_wait == 0)
				r->t_wait = sc_now_ms();
			loop_timer_arm(px_loop, &r->timer, ch.until_ms);
			return;
		case PX_REJECT:
			extra[0] = '\0';
			if (ch.retry_after >= 0 && ch.status == 503)
				snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", ch.retry_after);
			proxy_fail(r, ch.status, ch.msg, ch.status == 503 ? "no_capacity" : "upstream_error",
			    extra);
			return;
		}
	}
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
		if (http_is_hop_by_hop(h->name))
			continue;
		for (k = 0; skip[k] != NULL; k++)
			if (http_slice_ieq(h->name, skip[k]))
				break;
		if (skip[k] != NULL)
			continue;
		if (r->fwd.len + h->name.len + h->value.len + 4 > PX_FWD_CAP)
			break;
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

/* GET /health (SPEC §4). */
static void
proxy_health(struct conn *c, const char *rid)
{
	size_t i, total = 0, ready = 0, cooling = 0, invalid = 0, disabled = 0, unhealthy = 0;
	int64_t now = sc_wall_ms() / 1000;
	const struct config *cfg = registry_config();
	const char *st;
	char body[1024], h[256];
	int n;

	for (i = 0; i < registry_count(); i++) {
		struct reg_provider *p = registry_at(i);
		total++;
		if (p->p.status == PSTATUS_DISABLED)
			disabled++;
		else if (p->p.status == PSTATUS_INVALID || !p->usable)
			invalid++;
		else if (p->p.cooldown_until > now)
			cooling++;
		else if (p->consecutive_failures >= cfg->unhealthy_after_failures)
			unhealthy++;
		else
			ready++;
	}
	st = ready == 0 ? "unavailable" : (cooling + unhealthy > 0) ? "degraded" : "ok";
	n = snprintf(body, sizeof(body),
	    "{\"status\":\"%s\",\"providers\":{\"total\":%zu,\"ready\":%zu,\"cooling\":%zu,"
	    "\"unhealthy\":%zu,\"invalid\":%zu,\"disabled\":%zu},"
	    "\"queue\":{\"depth\":0,\"capacity\":%d},\"in_flight\":%zu}",
	    st, total, ready, cooling, unhealthy, invalid, disabled, cfg->queue_capacity,
	    px_in_flight);
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\nCache-Control: no-store\r\n", rid);
	conn_respond(c, ready > 0 ? 200 : 503, h, "application/json", body, (size_t)n);
}

/* Client token check when tokens are configured. 1 ok, else answered. */
static int
proxy_auth(struct conn *c, const struct http_request *req, const char *rid)
{
	const struct http_header *a;
	char tok[512];
	int r;

	if (registry_client_tokens() <= 0)
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
	r = registry_check_token(tok);
	crypto_wipe(tok, sizeof(tok));
	if (r == 1)
		return 1;
	if (r == -1)
		proxy_error(c, rid, 500, "token check failed", "internal_error", NULL);
	else
		proxy_error(c, rid, 401, "missing or invalid client token (Authorization: Bearer)",
		    "invalid_api_key", "WWW-Authenticate: Bearer\r\n");
	return 0;
}

void
proxy_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	static const char *const posts[] = { "chat/completions", "completions", "embeddings", NULL };
	const struct http_header *h;
	struct proxy_req *r;
	struct http_slice path = req->target;
	const char *q, *pf, *up = NULL;
	char rid[PX_RID_MAX + 1];
	struct sc_err e;
	size_t i;

	if ((q = memchr(path.p, '?', path.len)) != NULL)
		path.len = (size_t)(q - path.p);
	h = http_find_header(req, "x-request-id");
	if (h != NULL && proxy_rid_ok(h->value)) {
		memcpy(rid, h->value.p, h->value.len);
		rid[h->value.len] = '\0';
	} else {
		sc_uuid(rid);
	}
	if (http_slice_eq(path, "/health")) {
		if (!http_slice_eq(req->method, "GET"))
			proxy_error(c, rid, 405, "method not allowed", NULL, "Allow: GET\r\n");
		else
			proxy_health(c, rid);
		return;
	}
	if (path.len >= 4 && memcmp(path.p, "/v1/", 4) == 0) {
		struct http_slice rest = { path.p + 4, path.len - 4 };
		if (http_slice_eq(rest, "models")) {
			if (!http_slice_eq(req->method, "GET")) {
				proxy_error(c, rid, 405, "method not allowed", NULL, "Allow: GET\r\n");
				return;
			}
			if (proxy_auth(c, req, rid))
				models_handle(c, rid);
			return;
		}
		for (i = 0; posts[i] != NULL; i++)
			if (http_slice_eq(rest, posts[i]))
				up = posts[i];
	}
	if (up == NULL) {
		proxy_error(c, rid, 404, "unknown endpoint", "not_found", NULL);
		return;
	}
	if (!http_slice_eq(req->method, "POST")) {
		proxy_error(c, rid, 405, "method not allowed", NULL, "Allow: POST\r\n");
		return;
	}
	if (!proxy_auth(c, req, rid))
		return;

	r = sc_xcalloc(1, sizeof(*r));
	px_in_flight++;
	r->conn = c;
	r->t_start = sc_now_ms();
	r->ttfb_ms = -1;
	r->path = up;
	memcpy(r->rid, rid, sizeof(rid));
	loop_timer_init(&r->timer, proxy_wake, r);
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
	proxy_next(r);
}
