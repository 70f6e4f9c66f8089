/*
 * The admin API's front door: response helpers (JSON bodies, the one error
 * shape {"error":{"message":…,"field":…}}), request body and query parsing
 * with hard caps, authentication, and the router that hands a request to the
 * route files (routes_session.c, routes_providers.c, routes_config.c,
 * routes_stats.c, routes_requests.c). Nothing here knows about FastCGI.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "db.h"
#include "log.h"

#define API_PATH_MAX 512	/* longest path below /api/v2 that is routed */

static int64_t
api_wall_now(void)
{
	return sc_wall_ms() / 1000;
}

void
api_response_init(struct api_response *rs)
{
	rs->status = 200;
	rs->content_type = "application/json";
	sc_buf_init(&rs->headers, API_HDR_MAX);
	sc_buf_init(&rs->body, API_RESP_MAX);
}

void
api_response_free(struct api_response *rs)
{
	sc_buf_free(&rs->headers);
	sc_buf_free(&rs->body);
}

int
api_ctx_init(struct api_ctx *ctx, sqlite3 *db, const struct crypto_key *k, struct sc_err *e)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->db = db;
	if (k != NULL)
		ctx->key = *k;
	ctx->validate = validate_key_check;
	ctx->validate_timeout_ms = API_VALIDATE_TIMEOUT_MS;
	ctx->now = api_wall_now;
	if (k != NULL) {
		/* The check value the key matches now: a change means a rekey. */
		char *stored = db_meta_get(db, "key_check");

		if (stored != NULL && crypto_check_verify(k, stored, NULL) == 0)
			snprintf(ctx->key_check, sizeof(ctx->key_check), "%s", stored);
		free(stored);
	}
	return auth_init_tables(db, e);
}

void
api_header(struct api_response *rs, const char *name, const char *fmt, ...)
{
	char val[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	sc_buf_printf(&rs->headers, "%s: %s\r\n", name, val);
}

void
api_json(struct api_response *rs, int status, json_object *obj)
{
	const char *s;

	rs->status = status;
	rs->content_type = "application/json";
	sc_buf_reset(&rs->body);
	s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (sc_buf_append(&rs->body, s, strlen(s)) == -1 || sc_buf_append(&rs->body, "\n", 1) == -1) {
		sc_buf_reset(&rs->body);
		rs->status = 500;
		sc_buf_printf(&rs->body, "{\"error\":{\"message\":\"response too large\",\"field\":null}}\n");
	}
	json_object_put(obj);
}

void
api_error(struct api_response *rs, int status, const char *field, const char *fmt, ...)
{
	char msg[512];
	json_object *root, *err;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote input (a query value, a YAML scalar) and may be cut
	 * inside a character: the JSON must stay valid UTF-8. */
	sc_utf8_scrub(msg);
	root = json_object_new_object();
	err = json_object_new_object();
	json_object_object_add(err, "message", json_object_new_string(msg));
	json_object_object_add(err, "field", field && *field ? json_object_new_string(field) : NULL);
	json_object_object_add(root, "error", err);
	api_json(rs, status, root);
}

json_object *
api_jstr(const char *s)
{
	json_object *o;
	char *copy;

	if (s == NULL)
		return NULL;
	if (sc_utf8_valid(s, strlen(s)))
		return json_object_new_string(s);
	/* Text stored before the programs checked it: answer valid JSON. */
	copy = sc_xstrdup(s);
	sc_utf8_scrub(copy);
	o = json_object_new_string(copy);
	free(copy);
	return o;
}

bool
api_err_is_stale_key(const struct sc_err *e)
{
	return e != NULL && strcmp(e->field, CRYPTO_STALE_FIELD) == 0;
}

/* Before a request uses the key: follow a rekey (crypto_key_sync), saying
 * once per change whether this process now has the new key. */
static void
api_key_sync(struct api_ctx *ctx)
{
	int r = crypto_key_sync(ctx->db, &ctx->key, ctx->key_check, NULL, ctx->key_reload);

	if (r == CRYPTO_SYNC_RELOADED)
		log_info("encryption key reloaded: the database was rekeyed and the key source holds the new key");
	if (r == CRYPTO_SYNC_STALE && !ctx->key_stale)
		log_error("the database was rekeyed and this process has the old encryption key: writes of provider "
		    "keys are refused (503) until its key file holds the new key or it is restarted with it");
	ctx->key_stale = r == CRYPTO_SYNC_STALE;
}

bool
api_err_is_busy(sqlite3 *db, const struct sc_err *e)
{
	int code = db != NULL ? sqlite3_extended_errcode(db) & 0xff : 0;

	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return true;
	return e != NULL && strstr(e->msg, "database is locked") != NULL;
}

void
api_db_error(struct api_response *rs, sqlite3 *db, const struct sc_err *e)
{
	if (api_err_is_stale_key(e)) {
		/* Not a server fault: a rekey ran and this process has the old key. */
		sc_buf_reset(&rs->headers);
		api_header(rs, "Retry-After", "5");
		log_warn("refused a write: %s", e->msg);
		api_error(rs, 503, CRYPTO_STALE_FIELD, "%s", e->msg);
		return;
	}
	if (api_err_is_busy(db, e)) {
		sc_buf_reset(&rs->headers);
		api_header(rs, "Retry-After", "1");
		api_error(rs, 503, NULL, "database busy, retry shortly");
		return;
	}
	log_error("database error: %s", e != NULL && e->msg[0] ? e->msg : sqlite3_errmsg(db));
	api_error(rs, 500, NULL, "database error: %s",
	    e != NULL && e->msg[0] ? e->msg : "unexpected failure");
}

int
api_bump_version(sqlite3 *db, struct sc_err *e)
{
	int rc = sqlite3_exec(db, "UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
	    "WHERE key = 'config_version'", NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "config version");
	return 0;
}

size_t
api_body_cap(const char *method, const char *uri)
{
	if (uri != NULL && strncmp(uri, API_PREFIX "/providers/import", strlen(API_PREFIX "/providers/import")) == 0)
		return API_YAML_BODY_MAX;
	(void)method;
	return API_JSON_BODY_MAX;
}

/* True when the media type (before parameters) is application/json. */
static bool
api_is_json_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL)
		return false;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, "application/json", n) != 0)
		return false;
	return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

json_object *
api_body_json(struct api_call *c)
{
	const struct api_request *rq = c->rq;
	json_tokener *tok;
	json_object *obj;
	enum json_tokener_error jerr;
	size_t end;
	long bad;

	if (rq->body_too_large) {
		api_error(c->rs, 413, NULL, "request body too large (limit %d bytes)", API_JSON_BODY_MAX);
		return NULL;
	}
	if (!api_is_json_type(rq->content_type)) {
		api_error(c->rs, 415, NULL, "expected Content-Type: application/json");
		return NULL;
	}
	if (rq->body == NULL || rq->body_len == 0) {
		api_error(c->rs, 400, NULL, "empty body; expected a JSON object");
		return NULL;
	}
	if (rq->body_len > API_JSON_BODY_MAX) {
		api_error(c->rs, 413, NULL, "request body too large (limit %d bytes)", API_JSON_BODY_MAX);
		return NULL;
	}
	if (memchr(rq->body, '\0', rq->body_len) != NULL) {
		api_error(c->rs, 400, NULL, "malformed JSON: NUL byte in body");
		return NULL;
	}
	/* JSON text is UTF-8 (RFC 8259); json-c would pass raw bytes through
	 * into names and notes, and from there into every view. */
	if ((bad = sc_utf8_check(rq->body, rq->body_len)) != -1) {
		api_error(c->rs, 400, NULL, "malformed JSON: not valid UTF-8 at byte %ld", bad);
		return NULL;
	}
	tok = json_tokener_new_ex(API_JSON_DEPTH);
	if (tok == NULL) {
		api_error(c->rs, 500, NULL, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, rq->body, (int)rq->body_len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (obj == NULL || jerr != json_tokener_success) {
		json_object_put(obj);
		if (jerr == json_tokener_continue)
			api_error(c->rs, 400, NULL, "malformed JSON: unexpected end of body");
		else if (jerr == json_tokener_error_depth)
			api_error(c->rs, 400, NULL, "malformed JSON: nesting deeper than %d", API_JSON_DEPTH);
		else
			api_error(c->rs, 400, NULL, "malformed JSON: %s at byte %zu",
			    json_tokener_error_desc(jerr), end);
		return NULL;
	}
	for (; end < rq->body_len; end++) {
		if (!isspace((unsigned char)rq->body[end])) {
			json_object_put(obj);
			api_error(c->rs, 400, NULL, "malformed JSON: trailing data at byte %zu", end);
			return NULL;
		}
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		api_error(c->rs, 422, NULL, "expected a JSON object");
		return NULL;
	}
	return obj;
}

static int
api_hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int
api_urldecode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '+')
			ch = ' ';
		else if (ch == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return -1;
			hi = api_hexval((unsigned char)s[i + 1]);
			lo = api_hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi * 16 + lo);
			if (ch == '\0')
				return -1;
			i += 2;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

/* The query string of a request: QUERY_STRING, else what follows '?' in the URI. */
static const char *
api_query_string(const struct api_request *rq)
{
	const char *q;

	if (rq->query != NULL)
		return rq->query;
	if (rq->uri != NULL && (q = strchr(rq->uri, '?')) != NULL)
		return q + 1;
	return "";
}

int
api_query(const struct api_request *rq, const char *name, char *out, size_t outlen)
{
	const char *p = api_query_string(rq);
	char key[64];

	while (*p != '\0') {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t klen = eq ? (size_t)(eq - p) : len;
		if (api_urldecode(p, klen, key, sizeof(key)) == 0 && strcmp(key, name) == 0) {
			if (eq == NULL) {
				if (outlen > 0)
					out[0] = '\0';
				return 1;
			}
			/* Values are echoed into answers (filters, errors), which
			 * are UTF-8 JSON: bytes that are not UTF-8 are refused. */
			if (api_urldecode(eq + 1, len - klen - 1, out, outlen) == -1 ||
			    !sc_utf8_valid(out, strlen(out)))
				return -1;
			return 1;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return 0;
}

bool
api_query_bool(const struct api_request *rq, const char *name, bool def)
{
	char v[16];

	if (api_query(rq, name, v, sizeof(v)) != 1)
		return def;
	if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 ||
	    strcasecmp(v, "off") == 0)
		return false;
	return true;
}

static bool
api_is_mutating(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "OPTIONS") != 0;
}

void
api_handle(struct api_ctx *ctx, const struct api_request *rq, struct api_response *rs)
{
	struct api_call c;
	struct auth_info ai;
	char path[API_PATH_MAX];
	const char *uri = rq->uri ? rq->uri : "";
	size_t plen = strlen(API_PREFIX), n;
	const char *q;

	memset(&c, 0, sizeof(c));
	c.ctx = ctx;
	c.rq = rq;
	c.rs = rs;
	api_header(rs, "Cache-Control", "no-store");
	api_header(rs, "X-Content-Type-Options", "nosniff");
	if (rq->method == NULL || strncmp(uri, API_PREFIX, plen) != 0 ||
	    (uri[plen] != '/' && uri[plen] != '\0' && uri[plen] != '?')) {
		api_error(rs, 404, NULL, "no such route");
		return;
	}
	q = strchr(uri + plen, '?');
	n = q ? (size_t)(q - (uri + plen)) : strlen(uri + plen);
	if (n >= sizeof(path)) {
		api_error(rs, 404, NULL, "no such route");
		return;
	}
	memcpy(path, uri + plen, n);
	path[n] = '\0';
	/* One trailing slash is forgiven: /providers/ = /providers. */
	if (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	c.path = path;

	/* Logging in is the one thing done without credentials. */
	if (strcmp(path, "/session") == 0 && strcmp(rq->method, "POST") == 0) {
		routes_session(&c);
		return;
	}
	switch (auth_check(ctx->db, rq->authorization, rq->cookie, rq->csrf,
	    api_is_mutating(rq->method), ctx->now(), &ai)) {
	case AUTH_OK:
		break;
	case AUTH_NONE:
		api_header(rs, "WWW-Authenticate", "Bearer realm=\"sidecar\"");
		api_error(rs, 401, NULL, "authentication required: send Authorization: Bearer <admin token> "
		    "or log in with POST /api/v2/session");
		return;
	case AUTH_BAD:
		api_header(rs, "WWW-Authenticate", "Bearer realm=\"sidecar\", error=\"invalid_token\"");
		api_error(rs, 401, NULL, "invalid, revoked or expired credentials");
		return;
	case AUTH_CSRF:
		api_error(rs, 403, NULL, "missing or wrong X-Sidecar-CSRF header (required with the session "
		    "cookie on POST, PATCH and DELETE)");
		return;
	case AUTH_DBERR:
		api_db_error(rs, ctx->db, NULL);
		return;
	}
	memcpy(c.token_id, ai.token_id, sizeof(c.token_id));
	api_key_sync(ctx);
	c.via_cookie = ai.via_cookie;
	memcpy(c.csrf, ai.csrf, sizeof(c.csrf));
	memcpy(c.expires_at, ai.expires_at, sizeof(c.expires_at));
	crypto_wipe(&ai, sizeof(ai));

	if (routes_session(&c) || routes_providers(&c) || routes_config(&c) || routes_stats(&c) ||
	    routes_requests(&c))
		return;
	api_error(rs, 404, NULL, "no such route: %s%s", API_PREFIX, path);
}
