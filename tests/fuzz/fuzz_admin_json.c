/*
 * libFuzzer harness for the admin API handlers (admin-fcgi/api.c and the
 * route files) as sidecar-admin runs them, minus libfcgi: an in-memory
 * database with one provider and one admin token, and api_handle driven with
 * a fuzzed request. Input layout:
 *   byte 0   the route (table below), modulo its size
 *   byte 1   flags: bit 0 session cookie instead of bearer, bit 1 no CSRF
 *            header, bit 2 no credentials, bit 3 text/plain content type
 *   rest     the body; for GET routes also the query string
 * Every answer must be a status with a JSON body (or an empty 204), and
 * every body valid UTF-8 whatever bytes the input held. After
 * each write the fixtures are restored and every view of the providers
 * (list, one, YAML export) is read: none may contain the plaintext key. The
 * key test call is a stub: nothing leaves the process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "../admin-fcgi/api.h"
#include "../admin-fcgi/validate_key.h"
#include "crypto.h"
#include "db.h"
#include "log.h"
#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY_B64   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define FUZZ_SECRET    "nvapi-FUZZ-ADMIN-0001-SECRETxxxxxxxx"
#define FUZZ_QUERY_MAX 4096	/* longest query string built from the input */

struct fuzz_route {
	const char *method;
	const char *path;	/* below /api/v2; "{id}" becomes the fixture's id */
	int         query;	/* 1: the input also becomes the query string */
};

static const struct fuzz_route fuzz_routes[] = {
	{ "POST",   "/session", 0 },
	{ "GET",    "/session", 0 },
	{ "DELETE", "/session", 0 },
	{ "GET",    "/providers", 1 },
	{ "POST",   "/providers", 1 },
	{ "GET",    "/providers/{id}", 0 },
	{ "PATCH",  "/providers/{id}", 1 },
	{ "DELETE", "/providers/{id}", 0 },
	{ "POST",   "/providers/{id}/validate", 0 },
	{ "POST",   "/providers/{id}/reset-cooldown", 0 },
	{ "POST",   "/providers/import", 1 },
	{ "GET",    "/providers/export", 0 },
	{ "GET",    "/config", 0 },
	{ "PATCH",  "/config", 0 },
	{ "GET",    "/stats/hourly", 1 },
	{ "GET",    "/stats/daily", 1 },
	{ "GET",    "/stats/totals", 1 },
	{ "GET",    "/stats/by-model", 1 },
	{ "GET",    "/cooldowns", 1 },
	{ "GET",    "/health", 0 },
	{ "GET",    "/status", 0 },
	{ "PUT",    "/providers", 0 },
};
#define FUZZ_NROUTES (sizeof(fuzz_routes) / sizeof(fuzz_routes[0]))

static struct {
	sqlite3        *db;		/* in-memory, for the life of the process */
	struct api_ctx  ctx;
	char            authz[160];	/* "Bearer <admin token>" */
	char            cookie[160];	/* "sc_session=..." */
	char            csrf[96];
	char            id[40];		/* the fixture provider */
} fz;

static void
fuzz_stub_validate(const char *endpoint, const char *key, long timeout_ms, struct validate_result *out)
{
	(void)endpoint;
	(void)timeout_ms;
	memset(out, 0, sizeof(*out));
	validate_classify(CURLE_OK, NULL, 200, "{\"data\":[]}", 11, key, 10000, out);
}

static int64_t
fuzz_now(void)
{
	return 1764144000;	/* 2025-11-26T08:00:00Z */
}

/* One request; the response is left in rs (initialised here). */
static void
fuzz_call(const char *method, const char *uri, const char *query, const char *ctype, const char *body,
    size_t body_len, const char *authz, const char *cookie, const char *csrf, struct api_response *rs)
{
	struct api_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.method = method;
	rq.uri = uri;
	rq.query = query;
	rq.content_type = ctype;
	rq.authorization = authz;
	rq.cookie = cookie;
	rq.csrf = csrf;
	rq.remote_addr = "127.0.0.1";
	rq.body = body_len ? body : NULL;
	rq.body_len = body_len;
	rq.body_too_large = body_len > api_body_cap(method, uri);
	api_response_init(rs);
	api_handle(&fz.ctx, &rq, rs);
}

/* (Re)create the fixture provider when a fuzzed DELETE removed it. */
static void
fuzz_fixture_provider(void)
{
	static const char body[] = "{\"name\":\"fx\",\"api_key\":\"" FUZZ_SECRET "\","
	    "\"endpoint_url\":\"http://127.0.0.1:9/v1\",\"model_prefix\":\"fx/\"}";
	struct api_response rs;
	json_object *o, *v;

	fuzz_call("POST", "/api/v2/providers?validate=false", "validate=false", "application/json",
	    body, sizeof(body) - 1, fz.authz, NULL, NULL, &rs);
	o = rs.status == 201 || rs.status == 200 ? json_tokener_parse(rs.body.data) : NULL;
	if (o == NULL || !json_object_object_get_ex(o, "id", &v))
		abort();
	snprintf(fz.id, sizeof(fz.id), "%s", json_object_get_string(v));
	json_object_put(o);
	api_response_free(&rs);
}

/* Log in with the admin token: fz.cookie and fz.csrf. */
static void
fuzz_login(void)
{
	struct api_response rs;
	char body[256];
	const char *sc, *end;
	json_object *o, *v;

	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", fz.authz + strlen("Bearer "));
	fuzz_call("POST", "/api/v2/session", NULL, "application/json", body, strlen(body), NULL, NULL, NULL, &rs);
	sc = rs.headers.len ? strstr(rs.headers.data, "Set-Cookie: ") : NULL;
	o = rs.status == 200 ? json_tokener_parse(rs.body.data) : NULL;
	if (sc == NULL || o == NULL || !json_object_object_get_ex(o, "csrf", &v))
		abort();
	sc += strlen("Set-Cookie: ");
	end = strchr(sc, ';');
	if (end == NULL)
		abort();
	snprintf(fz.cookie, sizeof(fz.cookie), "%.*s", (int)(end - sc), sc);
	snprintf(fz.csrf, sizeof(fz.csrf), "%s", json_object_get_string(v));
	json_object_put(o);
	api_response_free(&rs);
}

static void
fuzz_setup(void)
{
	struct crypto_key k;
	struct sc_err e;
	char *admin = NULL;

	if (fz.db != NULL)
		return;
	log_set_level(LOG_LVL_ERROR);	/* one info line per write would dominate the run */
	memset(&e, 0, sizeof(e));
	fz.db = db_open(":memory:", DB_OPEN_CREATE, &e);
	if (fz.db == NULL || db_migrate(fz.db, &e) == -1 ||
	    crypto_key_from_base64(FUZZ_KEY_B64, &k, &e) == -1 || crypto_check_db(fz.db, &k, &e) == -1 ||
	    api_ctx_init(&fz.ctx, fz.db, &k, &e) == -1 ||
	    tokens_create(fz.db, TOKEN_ADMIN, "fuzz", &admin, &e) == -1) {
		fprintf(stderr, "fuzz_admin_json: setup: %s\n", e.msg);
		abort();
	}
	fz.ctx.validate = fuzz_stub_validate;
	fz.ctx.now = fuzz_now;
	snprintf(fz.authz, sizeof(fz.authz), "Bearer %s", admin);
	free(admin);
	fuzz_login();
	fuzz_fixture_provider();
}

/* The answer's contract: a status, a JSON body unless 204 or the YAML export;
 * with secret_check, no trace of the fixture's plaintext key. */
static void
fuzz_check(const struct api_response *rs, int secret_check)
{
	json_object *o;

	if (rs->status < 200 || rs->status > 599)
		abort();
	if (secret_check && rs->body.len > 0 &&
	    memmem(rs->body.data, rs->body.len, FUZZ_SECRET, strlen(FUZZ_SECRET)) != NULL)
		abort();
	if (secret_check && rs->headers.len > 0 && strstr(rs->headers.data, FUZZ_SECRET) != NULL)
		abort();
	if (rs->body.len == 0) {
		if (rs->status != 204)
			abort();
		return;
	}
	/* JSON and the YAML export are UTF-8 text whatever the input held
	 * (issue 14: raw bytes in a name reached every view). */
	if (sc_utf8_check(rs->body.data, rs->body.len) != -1)
		abort();
	if (strcmp(rs->content_type, "application/json") != 0)
		return;	/* the YAML export */
	o = json_tokener_parse(rs->body.data);
	if (o == NULL)
		abort();
	json_object_put(o);
}

/* After a write: drop what the input created, put the fixture provider back
 * as it was (fuzzed text in it could spell the key and fool the check), log
 * in again if the input ended the session, and read every view of the
 * providers, none of which may show the key. */
static void
fuzz_restore(void)
{
	static const char *const views[] = { "/api/v2/providers", "/api/v2/providers/export", NULL };
	struct api_response rs;
	struct sc_err e;
	char sql[512], uri[128];
	sqlite3_stmt *st;
	int have = 0;

	snprintf(sql, sizeof(sql), "DELETE FROM providers WHERE id <> '%s'", fz.id);
	if (db_exec(fz.db, sql, &e) == -1)
		abort();
	if (sqlite3_prepare_v2(fz.db, "SELECT api_key FROM providers WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
		abort();
	sqlite3_bind_text(st, 1, fz.id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		have = 1;
	sqlite3_finalize(st);
	if (have) {
		snprintf(sql, sizeof(sql), "UPDATE providers SET name = 'fx', model_prefix = 'fx/', "
		    "endpoint_url = 'http://127.0.0.1:9/v1', status_reason = '', metadata = '{}' WHERE id = '%s'", fz.id);
		if (db_exec(fz.db, sql, &e) == -1)
			abort();
	} else {
		fuzz_fixture_provider();
	}
	db_exec(fz.db, "DELETE FROM admin_login_failures", &e);
	fuzz_call("GET", "/api/v2/session", NULL, NULL, NULL, 0, NULL, fz.cookie, NULL, &rs);
	if (rs.status != 200)
		fuzz_login();
	api_response_free(&rs);
	for (int i = 0; views[i] != NULL; i++) {
		fuzz_call("GET", views[i], NULL, NULL, NULL, 0, fz.authz, NULL, NULL, &rs);
		fuzz_check(&rs, 1);
		api_response_free(&rs);
	}
	snprintf(uri, sizeof(uri), "/api/v2/providers/%s", fz.id);
	fuzz_call("GET", uri, NULL, NULL, NULL, 0, fz.authz, NULL, NULL, &rs);
	fuzz_check(&rs, 1);
	api_response_free(&rs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fuzz_route *r;
	struct api_response rs;
	char uri[FUZZ_QUERY_MAX + 128], path[128], query[FUZZ_QUERY_MAX + 1];
	const char *p, *body, *authz, *cookie, *csrf, *ctype;
	size_t body_len, qlen = 0;
	unsigned flags;

	fuzz_setup();
	if (size < 2)
		return 0;
	r = &fuzz_routes[data[0] % FUZZ_NROUTES];
	flags = data[1];
	body = (const char *)data + 2;
	body_len = size - 2;

	p = strstr(r->path, "{id}");
	if (p != NULL)
		snprintf(path, sizeof(path), "%.*s%s%s", (int)(p - r->path), r->path, fz.id, p + 4);
	else
		snprintf(path, sizeof(path), "%s", r->path);
	query[0] = '\0';
	if (r->query && strcmp(r->method, "GET") == 0) {
		/* The query string stops at the first NUL or newline of the input. */
		while (qlen < body_len && qlen < FUZZ_QUERY_MAX && body[qlen] != '\0' && body[qlen] != '\n')
			qlen++;
		memcpy(query, body, qlen);
		query[qlen] = '\0';
	} else if (r->query && (flags & 0x10)) {
		snprintf(query, sizeof(query), "validate=false");
		qlen = strlen(query);
	}
	snprintf(uri, sizeof(uri), "/api/v2%s%s%s", path, qlen ? "?" : "", query);

	authz = (flags & 1) ? NULL : fz.authz;
	cookie = (flags & 1) ? fz.cookie : NULL;
	csrf = (flags & 1) && !(flags & 2) ? fz.csrf : NULL;
	if (flags & 4)
		authz = cookie = csrf = NULL;
	ctype = (flags & 8) ? "text/plain" : strcmp(path, "/providers/import") == 0 ? "application/yaml" :
	    "application/json";

	fuzz_call(r->method, uri, qlen ? query : NULL, ctype, body, body_len, authz, cookie, csrf, &rs);
	fuzz_check(&rs, 0);
	api_response_free(&rs);
	if (strcmp(r->method, "GET") != 0)
		fuzz_restore();
	return 0;
}
