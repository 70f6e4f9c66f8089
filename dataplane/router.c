/*
 * Endpoint routing of the data-plane port (SPEC §4): every request gets an
 * id (the client's X-Request-Id when short and plain, else a new one), then
 *   GET  /health                 → health_handle (no token needed)
 *   GET  /v1/models              → models_handle (token checked)
 *   POST /v1/chat/completions,
 *        /v1/completions,
 *        /v1/embeddings          → proxy_request (token checked)
 * and anything else is 404 (unknown path) or 405 (wrong method) in OpenAI
 * shape. The query string is ignored for routing.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "health.h"
#include "models.h"
#include "proxy.h"
#include "router.h"

/* A new request id: a random per-process prefix and a counter, unique
 * without a system call per request. */
static void
router_new_rid(char out[PROXY_RID_MAX + 1])
{
	static char prefix[37];
	static unsigned long long counter;

	if (prefix[0] == '\0') {
		sc_uuid(prefix);
		prefix[23] = '\0';	/* "xxxxxxxx-xxxx-4xxx-xxxx" */
	}
	snprintf(out, PROXY_RID_MAX + 1, "%s-%012llx", prefix, ++counter);
}

/* A request id from the client is kept only if it is short and plain. */
static int
router_rid_ok(struct http_slice s)
{
	size_t i;

	if (s.len == 0 || s.len > PROXY_RID_MAX)
		return 0;
	for (i = 0; i < s.len; i++) {
		char ch = s.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == ':'))
			return 0;
	}
	return 1;
}

/* X-Sidecar-Priority: high | normal | low; anything else is normal. */
static enum queue_prio
router_priority(const struct http_request *req)
{
	const struct http_header *h = http_find_header(req, "x-sidecar-priority");
	enum queue_prio p = QUEUE_NORMAL;
	char pv[16];

	if (h == NULL || h->value.len >= sizeof(pv))
		return QUEUE_NORMAL;
	memcpy(pv, h->value.p, h->value.len);
	pv[h->value.len] = '\0';
	if (queue_prio_parse(pv, &p) == -1)
		p = QUEUE_NORMAL;
	return p;
}

void
router_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	static const char *const posts[] = { "chat/completions", "completions", "embeddings", NULL };
	const struct http_header *h;
	struct http_slice path = req->target;
	const char *q, *up = NULL;
	char rid[PROXY_RID_MAX + 1];
	size_t i;

	if ((q = memchr(path.p, '?', path.len)) != NULL)
		path.len = (size_t)(q - path.p);
	h = http_find_header(req, "x-request-id");
	if (h != NULL && router_rid_ok(h->value)) {
		memcpy(rid, h->value.p, h->value.len);
		rid[h->value.len] = '\0';
	} else {
		router_new_rid(rid);
	}
	if (http_slice_eq(path, "/health")) {
		if (!http_slice_eq(req->method, "GET"))
			conn_respond_error(c, 405, rid, "method not allowed", NULL, "Allow: GET\r\n");
		else
			health_handle(c, rid);
		return;
	}
	if (path.len >= 4 && memcmp(path.p, "/v1/", 4) == 0) {
		struct http_slice rest = { path.p + 4, path.len - 4 };
		if (http_slice_eq(rest, "models")) {
			if (!http_slice_eq(req->method, "GET")) {
				conn_respond_error(c, 405, rid, "method not allowed", NULL, "Allow: GET\r\n");
				return;
			}
			if (auth_check(c, req, rid))
				models_handle(c, rid);
			return;
		}
		for (i = 0; posts[i] != NULL; i++)
			if (http_slice_eq(rest, posts[i]))
				up = posts[i];
	}
	if (up == NULL) {
		conn_respond_error(c, 404, rid, "unknown endpoint", "not_found", NULL);
		return;
	}
	if (!http_slice_eq(req->method, "POST")) {
		conn_respond_error(c, 405, rid, "method not allowed", NULL, "Allow: POST\r\n");
		return;
	}
	if (!auth_check(c, req, rid))
		return;
	proxy_request(c, req, body, rid, up, router_priority(req));
}
