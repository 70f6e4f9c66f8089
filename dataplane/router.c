/*
 * Endpoint routing of the data-plane port (SPEC §4): every request gets an
 * id (the client's X-Request-Id when short and plain, else a new one), then
 *   GET  /health                 → health_handle (no token needed)
 *   GET  /v1/models              → models_handle (token checked)
 *   POST /v1/chat/completions,
 *        /v1/completions,
 *        /v1/embeddings          → proxy_request (token checked)
 * and anything else is 404 (unknown path) or 405 (wrong method) in OpenAI
 * shape; GET routes take HEAD too. router_admit decides the endpoint, the
 * method and the token on the head, before any body is read (conn_admit_fn);
 * router_handle serves the complete request. The query string is ignored
 * for routing; absolute-form targets route by their path.
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
		prefix[23] = '-';	/* "xxxxxxxx-xxxx-4xxx-xxxx-" */
		prefix[24] = '\0';
	}
	/* "<prefix>-%012llx", without snprintf's cost per request */
	memcpy(out, prefix, 24);
	sc_fmt_hex(++counter, 12, out + 24);
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

/* What a request asks for, from its path (origin- or absolute-form) and method. */
enum router_endpoint { ROUTER_EP_UNKNOWN, ROUTER_EP_HEALTH, ROUTER_EP_MODELS, ROUTER_EP_POST };

/* Classify req. *up: the upstream path of a ROUTER_EP_POST; *allow: the
 * Allow header line when the method does not fit the endpoint, else NULL.
 * GET routes take HEAD too (answered without a body, conn.c). */
static enum router_endpoint
router_endpoint(const struct http_request *req, const char **up, const char **allow)
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
		return path.len == 7 ? ROUTER_EP_HEALTH : ROUTER_EP_MODELS;
	}
	if (path.len < 4 || memcmp(path.p, "/v1/", 4) != 0)
		return ROUTER_EP_UNKNOWN;
	rest.p = path.p + 4;
	rest.len = path.len - 4;
	for (i = 0; posts[i] != NULL; i++)
		if (http_slice_eq(rest, posts[i])) {
			*up = posts[i];
			if (!http_slice_eq(req->method, "POST"))
				*allow = "Allow: POST\r\n";
			return ROUTER_EP_POST;
		}
	return ROUTER_EP_UNKNOWN;
}

/* The request id: the client's X-Request-Id when plain, else a new one. */
static void
router_request_id(const struct http_request *req, char rid[PROXY_RID_MAX + 1])
{
	const struct http_header *h = http_find_header(req, "x-request-id");

	if (h != NULL && router_rid_ok(h->value)) {
		memcpy(rid, h->value.p, h->value.len);
		rid[h->value.len] = '\0';
	} else {
		router_new_rid(rid);
	}
}

/* 404 for an unknown endpoint, 405 for a wrong method: 1 when answered. */
static int
router_refuse(struct conn *c, enum router_endpoint ep, const char *allow, const char *rid)
{
	if (ep == ROUTER_EP_UNKNOWN) {
		conn_respond_error(c, 404, rid, "unknown endpoint", "not_found", NULL);
		return 1;
	}
	if (allow != NULL) {
		conn_respond_error(c, 405, rid, "method not allowed", NULL, allow);
		return 1;
	}
	return 0;
}

/* The request id is made here only for a refusal: an admitted request gets
 * its one id in router_handle (a new id per call when the client sent none). */
int
router_admit(struct conn *c, const struct http_request *req)
{
	enum router_endpoint ep;
	const char *up, *allow;
	char rid[PROXY_RID_MAX + 1];
	enum auth_verdict v;

	ep = router_endpoint(req, &up, &allow);
	if (ep == ROUTER_EP_HEALTH && allow == NULL)
		return 1;
	if (ep == ROUTER_EP_UNKNOWN || allow != NULL) {
		router_request_id(req, rid);
		(void)router_refuse(c, ep, allow, rid);
		return 0;
	}
	if ((v = auth_check(c, req)) == AUTH_OK)
		return 1;
	router_request_id(req, rid);
	auth_refuse(c, v, rid);
	return 0;
}

void
router_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	enum router_endpoint ep;
	const char *up, *allow;
	char rid[PROXY_RID_MAX + 1];

	/* router_admit ran on the head: the endpoint and the token are checked. */
	ep = router_endpoint(req, &up, &allow);
	router_request_id(req, rid);
	if (router_refuse(c, ep, allow, rid))
		return;
	if (ep == ROUTER_EP_HEALTH) {
		health_handle(c, rid);
		return;
	}
	if (ep == ROUTER_EP_MODELS) {
		models_handle(c, rid);
		return;
	}
	proxy_request(c, req, body, rid, up, router_priority(req));
}
