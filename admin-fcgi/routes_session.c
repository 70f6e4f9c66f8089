/*
 * /api/v2/session: browser login with an admin token (POST, throttled per
 * remote address), the current session (GET, gives the CSRF value back after
 * a page reload) and logout (DELETE). The mechanics live in auth.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>

#include "api.h"
#include "auth.h"
#include "crypto.h"
#include "tokens.h"

static void
session_login(struct api_call *c)
{
	struct api_ctx *ctx = c->ctx;
	const char *addr = c->rq->remote_addr ? c->rq->remote_addr : "";
	int64_t now = ctx->now();
	json_object *body, *tok = NULL, *out;
	char token_id[37], expires[SC_TS_LEN];
	char *cookie = NULL, *csrf = NULL;
	struct sc_err e;
	int wait, rc;

	sc_err_clear(&e);
	wait = auth_throttle_wait(ctx->db, addr, now);
	if (wait < 0) {
		api_db_error(c->rs, ctx->db, NULL);
		return;
	}
	if (wait > 0) {
		api_header(c->rs, "Retry-After", "%d", wait);
		api_error(c->rs, 429, NULL, "too many failed logins from %s; retry in %d s", addr, wait);
		return;
	}
	if ((body = api_body_json(c)) == NULL)
		return;
	json_object_object_foreach(body, k, v) {
		(void)v;
		if (strcmp(k, "token") != 0) {
			api_error(c->rs, 422, k, "unknown field '%s'", k);
			goto done;
		}
	}
	if (!json_object_object_get_ex(body, "token", &tok) || !json_object_is_type(tok, json_type_string)) {
		api_error(c->rs, 422, "token", "'token' must be a string (an admin token)");
		goto done;
	}
	rc = tokens_verify(ctx->db, TOKEN_ADMIN, json_object_get_string(tok), token_id);
	if (rc < 0) {
		api_db_error(c->rs, ctx->db, NULL);
		goto done;
	}
	if (rc == 0) {
		if (auth_throttle_fail(ctx->db, addr, now, &e) == -1) {
			api_db_error(c->rs, ctx->db, &e);
			goto done;
		}
		api_error(c->rs, 401, "token", "invalid or revoked admin token");
		goto done;
	}
	if (auth_throttle_clear(ctx->db, addr, now, &e) == -1 ||
	    auth_session_create(ctx->db, token_id, now, &cookie, &csrf, expires, &e) == -1) {
		api_db_error(c->rs, ctx->db, &e);
		goto done;
	}
	api_header(c->rs, "Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=%s; Max-Age=%d",
	    AUTH_COOKIE_NAME, cookie, API_PREFIX, AUTH_SESSION_SECONDS);
	out = json_object_new_object();
	json_object_object_add(out, "csrf", json_object_new_string(csrf));
	json_object_object_add(out, "expires_at", json_object_new_string(expires));
	json_object_object_add(out, "max_age", json_object_new_int(AUTH_SESSION_SECONDS));
	api_json(c->rs, 200, out);
done:
	if (cookie != NULL)
		crypto_free_secret(cookie);
	if (csrf != NULL)
		crypto_free_secret(csrf);
	json_object_put(body);
}

bool
routes_session(struct api_call *c)
{
	const char *m = c->rq->method;
	json_object *out;
	struct sc_err e;

	if (strcmp(c->path, "/session") != 0)
		return false;
	sc_err_clear(&e);
	if (strcmp(m, "POST") == 0) {
		session_login(c);
	} else if (strcmp(m, "GET") == 0) {
		out = json_object_new_object();
		json_object_object_add(out, "auth", json_object_new_string(c->via_cookie ? "cookie" : "bearer"));
		json_object_object_add(out, "csrf", c->via_cookie ? json_object_new_string(c->csrf) : NULL);
		json_object_object_add(out, "expires_at",
		    c->via_cookie ? json_object_new_string(c->expires_at) : NULL);
		api_json(c->rs, 200, out);
	} else if (strcmp(m, "DELETE") == 0) {
		if (auth_session_delete(c->ctx->db, c->rq->cookie, &e) == -1) {
			api_db_error(c->rs, c->ctx->db, &e);
			return true;
		}
		api_header(c->rs, "Set-Cookie", "%s=; HttpOnly; SameSite=Strict; Path=%s; Max-Age=0",
		    AUTH_COOKIE_NAME, API_PREFIX);
		out = json_object_new_object();
		json_object_object_add(out, "logged_out", json_object_new_boolean(1));
		api_json(c->rs, 200, out);
	} else {
		api_header(c->rs, "Allow", "GET, POST, DELETE");
		api_error(c->rs, 405, NULL, "method %s not allowed here", m);
	}
	return true;
}
