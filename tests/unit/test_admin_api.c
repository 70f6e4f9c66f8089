/*
 * Unit tests for the admin API handlers (admin-fcgi/api.c and the route
 * files), called as plain functions against a temporary database: no
 * libfcgi, no lighttpd, and a stub in place of the key test call. Covers
 * authentication (bearer, session cookie, CSRF, login throttling), provider
 * CRUD with encryption at rest and masking, validation outcomes, settings,
 * YAML import/export, cooldown reset, the statistics queries, the request log and the precise
 * 4xx answers to bad input. validate_classify is tested on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "../admin-fcgi/api.h"
#include "../admin-fcgi/auth.h"
#include "../admin-fcgi/validate_key.h"
#include "crypto.h"
#include "db.h"
#include "tokens.h"
#include "util.h"

#define KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define TESTKEY "nvapi-TEST-0001-xxxxxxxxxxxxxxxxWXYZ"
#define TESTKEY2 "nvapi-TEST-0002-yyyyyyyyyyyyyyyyQRST"

struct fx {
	char            dir[64];
	char            path[96];
	sqlite3        *db;
	struct api_ctx  ctx;
	char           *admin;		/* admin bearer token (plain) */
	char            authz[128];	/* "Bearer <admin>" */
	struct api_response rs;
	json_object    *json;		/* parsed rs.body of the last call */
};

/* The stub validator: answers with stub_outcome and counts calls. */
static enum validate_outcome stub_outcome = VALIDATE_OK;
static int stub_calls;
static int64_t fake_now = 1764144000;	/* 2025-11-26T08:00:00Z */

static void
stub_validate(const char *endpoint, const char *key, long timeout_ms, struct validate_result *out)
{
	(void)endpoint;
	(void)timeout_ms;
	stub_calls++;
	memset(out, 0, sizeof(*out));
	if (stub_outcome == VALIDATE_OK)
		validate_classify(CURLE_OK, NULL, 200, "{\"data\":[]}", 11, key, 10000, out);
	else if (stub_outcome == VALIDATE_INVALID_KEY)
		validate_classify(CURLE_OK, NULL, 401, "{\"status\":401,\"title\":\"Unauthorized\",\"detail\":\"Authentication failed\"}",
		    strlen("{\"status\":401,\"title\":\"Unauthorized\",\"detail\":\"Authentication failed\"}"),
		    key, 10000, out);
	else
		validate_classify(CURLE_COULDNT_CONNECT, "Failed to connect to 127.0.0.1 port 9: Connection refused",
		    0, NULL, 0, key, 10000, out);
}

static int64_t
stub_now(void)
{
	return fake_now;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct crypto_key k;
	struct sc_err e;

	snprintf(f->dir, sizeof(f->dir), "/tmp/sc-test-admin-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	f->db = db_open(f->path, DB_OPEN_CREATE, &e);
	if (f->db == NULL || db_migrate(f->db, &e) == -1)
		return -1;
	crypto_key_from_base64(KEY_B64, &k, NULL);
	if (crypto_check_db(f->db, &k, &e) == -1)
		return -1;
	if (api_ctx_init(&f->ctx, f->db, &k, &e) == -1)
		return -1;
	f->ctx.validate = stub_validate;
	f->ctx.now = stub_now;
	if (tokens_create(f->db, TOKEN_ADMIN, "test", &f->admin, &e) == -1)
		return -1;
	snprintf(f->authz, sizeof(f->authz), "Bearer %s", f->admin);
	api_response_init(&f->rs);
	stub_outcome = VALIDATE_OK;
	stub_calls = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[96];

	api_response_free(&f->rs);
	json_object_put(f->json);
	free(f->admin);
	db_close(f->db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* One request with everything spelled out; returns the status. */
static int
call_full(struct fx *f, const char *method, const char *uri, const char *ctype, const char *body,
    const char *authz, const char *cookie, const char *csrf)
{
	struct api_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.method = method;
	rq.uri = uri;
	rq.content_type = ctype;
	rq.authorization = authz;
	rq.cookie = cookie;
	rq.csrf = csrf;
	rq.remote_addr = "127.0.0.1";
	rq.body = body;
	rq.body_len = body ? strlen(body) : 0;
	rq.body_too_large = rq.body_len > api_body_cap(method, uri);
	api_response_free(&f->rs);
	api_response_init(&f->rs);
	api_handle(&f->ctx, &rq, &f->rs);
	json_object_put(f->json);
	f->json = NULL;
	if (f->rs.body.len > 0 && strncmp(f->rs.content_type, "application/json", 16) == 0)
		f->json = json_tokener_parse(f->rs.body.data);
	return f->rs.status;
}

/* An admin-authenticated JSON request. */
static int
call(struct fx *f, const char *method, const char *uri, const char *body)
{
	return call_full(f, method, uri, body ? "application/json" : NULL, body, f->authz, NULL, NULL);
}

/* A string member by dotted path ("error.field"), or NULL. */
static const char *
jget(json_object *o, const char *path)
{
	char buf[128], *save = NULL, *part;
	json_object *v = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (part = strtok_r(buf, ".", &save); part != NULL; part = strtok_r(NULL, ".", &save)) {
		if (v == NULL)
			return NULL;
		if (json_object_is_type(v, json_type_array))
			v = json_object_array_get_idx(v, (size_t)atoi(part));
		else if (!json_object_object_get_ex(v, part, &v))
			return NULL;
	}
	return v ? json_object_get_string(v) : NULL;
}

static bool
has_header(struct fx *f, const char *needle)
{
	return f->rs.headers.data != NULL && strstr(f->rs.headers.data, needle) != NULL;
}

static bool
body_has(struct fx *f, const char *needle)
{
	return f->rs.body.data != NULL && strstr(f->rs.body.data, needle) != NULL;
}

static const char *
create_body(const char *name, const char *key)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"api_key\":\"%s\",\"endpoint_url\":\"http://127.0.0.1:9/v1/\","
	    "\"model_prefix\":\"nvidia/\",\"rpm_limit\":40,\"email\":\"o@example.com\",\"flatten_content\":true}",
	    name, key);
	return buf;
}

/* Create a provider and return its id (static buffer). */
static const char *
create(struct fx *f, const char *name, const char *key)
{
	static char id[64];

	assert_int_equal(call(f, "POST", "/api/v2/providers?validate=false", create_body(name, key)), 201);
	snprintf(id, sizeof(id), "%s", jget(f->json, "id"));
	return id;
}

static int64_t
config_version(struct fx *f)
{
	return db_config_version(f->db);
}

static int
count_rows(struct fx *f, const char *sql)
{
	sqlite3_stmt *st;
	int n = -1;

	if (sqlite3_prepare_v2(f->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* ---- tests ---- */

static void
test_auth_bearer(void **state)
{
	struct fx *f = *state;

	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, NULL, NULL, NULL), 401);
	assert_true(has_header(f, "WWW-Authenticate: Bearer realm=\"sidecar\""));
	assert_string_equal(jget(f->json, "error.message") != NULL ? "x" : "", "x");
	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, "Bearer sca_wrong", NULL, NULL), 401);
	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, "Basic abc", NULL, NULL), 401);
	assert_int_equal(call(f, "GET", "/api/v2/providers", NULL), 200);
	assert_non_null(f->json);
	assert_int_equal(call(f, "GET", "/api/v2/nope", NULL), 404);
	assert_int_equal(call_full(f, "GET", "/other", NULL, NULL, f->authz, NULL, NULL), 404);
	assert_int_equal(call(f, "PUT", "/api/v2/providers", NULL), 405);
	assert_true(has_header(f, "Allow: GET, POST"));
}

static void
test_session_flow(void **state)
{
	struct fx *f = *state;
	char body[256], cookie[256], csrf[128];
	const char *sc, *end;

	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", f->admin);
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", body, NULL, NULL, NULL), 200);
	sc = strstr(f->rs.headers.data, "Set-Cookie: sc_session=");
	assert_non_null(sc);
	assert_non_null(strstr(sc, "HttpOnly"));
	assert_non_null(strstr(sc, "SameSite=Strict"));
	assert_non_null(strstr(sc, "Path=/api/v2"));
	assert_non_null(strstr(sc, "Max-Age=43200"));
	sc += strlen("Set-Cookie: ");
	end = strchr(sc, ';');
	snprintf(cookie, sizeof(cookie), "other=1; %.*s", (int)(end - sc), sc);
	snprintf(csrf, sizeof(csrf), "%s", jget(f->json, "csrf"));
	assert_true(strlen(csrf) > 20);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM sessions"), 1);
	/* The cookie value itself is not stored, only its hash. */
	assert_int_equal(count_rows(f, "SELECT count(*) FROM sessions WHERE hash LIKE 'scs_%'"), 0);

	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, NULL, cookie, NULL), 200);
	assert_int_equal(call_full(f, "GET", "/api/v2/session", NULL, NULL, NULL, cookie, NULL), 200);
	assert_string_equal(jget(f->json, "csrf"), csrf);
	assert_string_equal(jget(f->json, "auth"), "cookie");
	/* Mutations by cookie need the CSRF header. */
	assert_int_equal(call_full(f, "PATCH", "/api/v2/config", "application/json", "{\"max_attempts\":4}",
	    NULL, cookie, NULL), 403);
	assert_int_equal(call_full(f, "PATCH", "/api/v2/config", "application/json", "{\"max_attempts\":4}",
	    NULL, cookie, "wrong"), 403);
	assert_int_equal(call_full(f, "PATCH", "/api/v2/config", "application/json", "{\"max_attempts\":4}",
	    NULL, cookie, csrf), 200);
	/* Logout ends the session. */
	assert_int_equal(call_full(f, "DELETE", "/api/v2/session", NULL, NULL, NULL, cookie, csrf), 200);
	assert_true(has_header(f, "Max-Age=0"));
	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, NULL, cookie, NULL), 401);
	/* An expired session is refused. */
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", body, NULL, NULL, NULL), 200);
	sc = strstr(f->rs.headers.data, "sc_session=");
	end = strchr(sc, ';');
	snprintf(cookie, sizeof(cookie), "%.*s", (int)(end - sc), sc);
	fake_now += AUTH_SESSION_SECONDS + 1;
	assert_int_equal(call_full(f, "GET", "/api/v2/providers", NULL, NULL, NULL, cookie, NULL), 401);
	fake_now -= AUTH_SESSION_SECONDS + 1;
}

static void
test_login_throttle(void **state)
{
	struct fx *f = *state;
	char good[256];

	snprintf(good, sizeof(good), "{\"token\":\"%s\"}", f->admin);
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", "{\"token\":1}",
	    NULL, NULL, NULL), 422);
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", "{\"token\":\"x\",\"y\":1}",
	    NULL, NULL, NULL), 422);
	for (int i = 0; i < AUTH_FAIL_MAX; i++)
		assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json",
		    "{\"token\":\"sca_wrong\"}", NULL, NULL, NULL), 401);
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", good, NULL, NULL, NULL), 429);
	assert_true(has_header(f, "Retry-After: 300"));
	fake_now += 100;
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", good, NULL, NULL, NULL), 429);
	assert_true(has_header(f, "Retry-After: 200"));
	fake_now += 201;
	assert_int_equal(call_full(f, "POST", "/api/v2/session", "application/json", good, NULL, NULL, NULL), 200);
	fake_now -= 301;
}

static void
test_provider_crud(void **state)
{
	struct fx *f = *state;
	char uri[160], id[64];
	int64_t v0 = config_version(f);

	stub_outcome = VALIDATE_OK;
	assert_int_equal(call(f, "POST", "/api/v2/providers", create_body("acct1", TESTKEY)), 201);
	assert_int_equal(stub_calls, 1);
	snprintf(id, sizeof(id), "%s", jget(f->json, "id"));
	assert_string_equal(jget(f->json, "validation.result"), "ok");
	assert_string_equal(jget(f->json, "endpoint_url"), "http://127.0.0.1:9/v1");
	assert_string_equal(jget(f->json, "metadata.email"), "o@example.com");
	assert_string_equal(jget(f->json, "metadata.flatten_content"), "true");
	assert_string_equal(jget(f->json, "source"), "api");
	assert_false(body_has(f, TESTKEY));
	assert_false(body_has(f, "xxxxxxxxxxxxxxxx"));
	assert_non_null(strstr(jget(f->json, "api_key_mask"), "WXYZ"));
	assert_true(config_version(f) > v0);
	/* At rest: ciphertext only. */
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers WHERE api_key LIKE 'v1:%' "
	    "AND instr(api_key, 'TEST') = 0"), 1);

	assert_int_equal(call(f, "GET", "/api/v2/providers", NULL), 200);
	assert_string_equal(jget(f->json, "providers.0.name"), "acct1");
	assert_false(body_has(f, TESTKEY));
	snprintf(uri, sizeof(uri), "/api/v2/providers/%s", id);
	assert_int_equal(call(f, "GET", uri, NULL), 200);
	assert_string_equal(jget(f->json, "id"), id);

	/* Duplicate name. */
	assert_int_equal(call(f, "POST", "/api/v2/providers?validate=false", create_body("acct1", TESTKEY2)), 409);
	assert_string_equal(jget(f->json, "error.field"), "name");

	/* Partial update: only the given fields; the key stays. */
	stub_calls = 0;
	v0 = config_version(f);
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":35,\"status\":\"disabled\"}"), 200);
	assert_int_equal(stub_calls, 0);
	assert_string_equal(jget(f->json, "rpm_limit"), "35");
	assert_string_equal(jget(f->json, "status"), "disabled");
	assert_string_equal(jget(f->json, "name"), "acct1");
	assert_non_null(strstr(jget(f->json, "api_key_mask"), "WXYZ"));
	assert_true(config_version(f) > v0);
	/* A new key is validated and replaces the old one. */
	assert_int_equal(call(f, "PATCH", uri, "{\"api_key\":\"" TESTKEY2 "\"}"), 200);
	assert_int_equal(stub_calls, 1);
	assert_non_null(strstr(jget(f->json, "api_key_mask"), "QRST"));
	assert_false(body_has(f, TESTKEY2));

	/* Bad patches: each a precise 4xx, nothing written. */
	assert_int_equal(call(f, "PATCH", uri, "{\"bogus\":1}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "bogus");
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":\"40\"}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "rpm_limit");
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":0}"), 422);
	assert_int_equal(call(f, "PATCH", uri, "{\"weight\":-1}"), 422);
	/* The ranges are provider_validate's, the same as the YAML import's. */
	assert_int_equal(call(f, "PATCH", uri, "{\"weight\":1000.5}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "weight");
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":100001}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "rpm_limit");
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":4294967296}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "rpm_limit");
	assert_int_equal(call(f, "PATCH", uri, "{\"pool\":\"other\"}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "pool");
	assert_int_equal(call(f, "PATCH", uri, "{\"endpoint_url\":\"http://example.com/v1\"}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "endpoint_url");
	assert_int_equal(call(f, "PATCH", uri, "{\"id\":\"x\"}"), 422);
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit\":30,\"metadata\":[]}"), 422);
	assert_int_equal(call(f, "GET", uri, NULL), 200);
	assert_string_equal(jget(f->json, "rpm_limit"), "35");
	assert_int_equal(call(f, "PATCH", "/api/v2/providers/no-such-id", "{\"rpm_limit\":30}"), 404);

	/* Per-model limits: an object, checked entry by entry; null removes them. */
	assert_int_equal(call(f, "PATCH", uri, "{\"model_rpm_limits\":{\"meta/llama-405b\":10}}"), 200);
	assert_string_equal(jget(f->json, "model_rpm_limits.meta/llama-405b"), "10");
	assert_string_equal(jget(f->json, "metadata.model_rpm_limits.meta/llama-405b"), "10");
	assert_string_equal(jget(f->json, "rpm_limit_effective"), "35");	/* no data plane: the configured one */
	assert_int_equal(call(f, "PATCH", uri, "{\"model_rpm_limits\":{\"m\":0}}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "model_rpm_limits");
	assert_int_equal(call(f, "PATCH", uri, "{\"model_rpm_limits\":[10]}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "model_rpm_limits");
	assert_int_equal(call(f, "PATCH", uri, "{\"model_rpm_limits\":{\"m\":\"10\"}}"), 422);
	assert_int_equal(call(f, "PATCH", uri, "{\"rpm_limit_effective\":10}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "rpm_limit_effective");
	assert_int_equal(call(f, "GET", uri, NULL), 200);
	assert_string_equal(jget(f->json, "model_rpm_limits.meta/llama-405b"), "10");
	assert_int_equal(call(f, "PATCH", uri, "{\"model_rpm_limits\":null}"), 200);
	assert_null(jget(f->json, "model_rpm_limits.meta/llama-405b"));
	assert_null(jget(f->json, "metadata.model_rpm_limits"));

	/* Rename conflict. */
	create(f, "acct2", TESTKEY);
	assert_int_equal(call(f, "PATCH", uri, "{\"name\":\"acct2\"}"), 409);

	assert_int_equal(call(f, "DELETE", uri, NULL), 200);
	assert_int_equal(call(f, "DELETE", uri, NULL), 404);
	assert_int_equal(call(f, "GET", uri, NULL), 404);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), 1);
}

static void
test_provider_validation(void **state)
{
	struct fx *f = *state;
	char uri[160];
	const char *id;

	stub_outcome = VALIDATE_INVALID_KEY;
	assert_int_equal(call(f, "POST", "/api/v2/providers", create_body("bad", TESTKEY)), 422);
	assert_string_equal(jget(f->json, "error.field"), "api_key");
	assert_string_equal(jget(f->json, "error.validation.result"), "invalid_key");
	assert_string_equal(jget(f->json, "error.message"),
	    "invalid key (upstream answered 401: Authentication failed)");
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), 0);

	stub_outcome = VALIDATE_UNREACHABLE;
	assert_int_equal(call(f, "POST", "/api/v2/providers", create_body("bad", TESTKEY)), 422);
	assert_string_equal(jget(f->json, "error.field"), "endpoint_url");
	assert_non_null(strstr(jget(f->json, "error.message"), "unreachable: "));
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), 0);

	/* validate=false skips the call. */
	stub_calls = 0;
	id = create(f, "skipped", TESTKEY);
	assert_int_equal(stub_calls, 0);
	assert_null(jget(f->json, "validation"));

	/* Re-validation marks a refused key invalid, a good answer re-activates it. */
	snprintf(uri, sizeof(uri), "/api/v2/providers/%s/validate", id);
	stub_outcome = VALIDATE_INVALID_KEY;
	assert_int_equal(call(f, "POST", uri, NULL), 200);
	assert_string_equal(jget(f->json, "status"), "invalid");
	assert_string_equal(jget(f->json, "validation.result"), "invalid_key");
	stub_outcome = VALIDATE_OK;
	assert_int_equal(call(f, "POST", uri, NULL), 200);
	assert_string_equal(jget(f->json, "status"), "active");
	assert_int_equal(call(f, "POST", "/api/v2/providers/nope/validate", NULL), 404);
}

static void
test_reset_cooldown(void **state)
{
	struct fx *f = *state;
	char uri[160], sql[1024], id[64];
	int64_t v0;

	snprintf(id, sizeof(id), "%s", create(f, "cool", TESTKEY));
	snprintf(sql, sizeof(sql), "UPDATE providers SET cooldown_until = '2099-01-01T00:00:00Z', "
	    "consecutive_429 = 3 WHERE id = '%s'; INSERT INTO cooldown_events (id, provider_id, "
	    "consecutive_count, cooldown_seconds, response_summary, started_at, ended_at) VALUES "
	    "('ev1', '%s', 3, 120, '429 Too Many Requests', '2025-11-26T07:59:00Z', '2099-01-01T00:00:00Z'),"
	    "('ev0', '%s', 1, 30, '429', '2025-11-26T07:00:00Z', '2025-11-26T07:00:30Z')", id, id, id);
	assert_int_equal(sqlite3_exec(f->db, sql, NULL, NULL, NULL), SQLITE_OK);
	snprintf(uri, sizeof(uri), "/api/v2/providers/%s", id);
	assert_int_equal(call(f, "GET", uri, NULL), 200);
	assert_string_equal(jget(f->json, "cooling"), "true");
	assert_string_equal(jget(f->json, "consecutive_429"), "3");

	assert_int_equal(call(f, "GET", "/api/v2/cooldowns?limit=1", NULL), 200);
	assert_string_equal(jget(f->json, "cooldowns.0.id"), "ev1");
	assert_string_equal(jget(f->json, "cooldowns.0.active"), "true");
	assert_null(jget(f->json, "cooldowns.1"));

	v0 = config_version(f);
	snprintf(uri, sizeof(uri), "/api/v2/providers/%s/reset-cooldown", id);
	assert_int_equal(call(f, "POST", uri, NULL), 200);
	assert_string_equal(jget(f->json, "cooling"), "false");
	assert_string_equal(jget(f->json, "consecutive_429"), "0");
	assert_true(config_version(f) > v0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM cooldown_events WHERE ended_at = '2025-11-26T08:00:00Z'"), 1);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM cooldown_events WHERE ended_at = '2025-11-26T07:00:30Z'"), 1);
	assert_int_equal(call(f, "GET", "/api/v2/cooldowns?provider=cool", NULL), 200);
	assert_string_equal(jget(f->json, "cooldowns.0.active"), "false");
	assert_int_equal(call(f, "POST", "/api/v2/providers/nope/reset-cooldown", NULL), 404);
	assert_int_equal(call(f, "GET", "/api/v2/cooldowns?limit=0", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/cooldowns?limit=abc", NULL), 400);
}

static void
test_bad_input(void **state)
{
	struct fx *f = *state;
	char *big;

	assert_int_equal(call(f, "POST", "/api/v2/providers", "{\"name\":"), 400);
	assert_int_equal(call(f, "POST", "/api/v2/providers", "not json"), 400);
	assert_int_equal(call(f, "POST", "/api/v2/providers", "{} []"), 400);
	assert_int_equal(call(f, "POST", "/api/v2/providers", "[1,2]"), 422);
	assert_int_equal(call(f, "POST", "/api/v2/providers", "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}"), 400);
	assert_int_equal(call_full(f, "POST", "/api/v2/providers", "text/plain", "{}", f->authz, NULL, NULL), 415);
	assert_int_equal(call_full(f, "POST", "/api/v2/providers", NULL, "{}", f->authz, NULL, NULL), 415);
	assert_int_equal(call_full(f, "POST", "/api/v2/providers", "application/json; charset=utf-8",
	    "{\"name\":\"x\"}", f->authz, NULL, NULL), 422);
	assert_string_equal(jget(f->json, "error.field"), "api_key");
	assert_int_equal(call(f, "POST", "/api/v2/providers", "{\"name\":5}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "name");
	assert_int_equal(call(f, "POST", "/api/v2/providers", "{\"source\":\"yaml\"}"), 422);
	big = malloc(API_JSON_BODY_MAX + 100);
	memset(big, ' ', API_JSON_BODY_MAX + 99);
	big[0] = '{';
	big[API_JSON_BODY_MAX + 98] = '}';
	big[API_JSON_BODY_MAX + 99] = '\0';
	assert_int_equal(call(f, "POST", "/api/v2/providers", big), 413);
	free(big);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), 0);
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?from=yesterday", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/stats/totals?range=year", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?pool=x", NULL), 400);
	assert_int_equal(call(f, "POST", "/api/v2/stats/hourly", "{}"), 405);
}

static void
test_config(void **state)
{
	struct fx *f = *state;
	int64_t v0 = config_version(f);
	json_object *arr, *o, *v;
	size_t i;
	bool found = false;

	assert_int_equal(call(f, "GET", "/api/v2/config", NULL), 200);
	assert_true(json_object_object_get_ex(f->json, "settings", &arr));
	assert_true(json_object_array_length(arr) >= 20);
	for (i = 0; i < json_object_array_length(arr); i++) {
		o = json_object_array_get_idx(arr, i);
		if (strcmp(jget(o, "key"), "emergency_rpm_ratio") == 0) {
			found = true;
			assert_string_equal(jget(o, "type"), "double");
			assert_true(json_object_object_get_ex(o, "value", &v));
			assert_true(json_object_get_double(v) > 0.09 && json_object_get_double(v) < 0.11);
			assert_non_null(jget(o, "description"));
			assert_non_null(jget(o, "min"));
			assert_non_null(jget(o, "max"));
			assert_non_null(jget(o, "default"));
		}
	}
	assert_true(found);
	/* All or nothing: one bad key keeps the good one unwritten. */
	assert_int_equal(call(f, "PATCH", "/api/v2/config", "{\"max_attempts\":5,\"queue_capacity\":-1}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "queue_capacity");
	assert_int_equal(count_rows(f, "SELECT value FROM system_config WHERE key = 'max_attempts'"), 3);
	assert_int_equal(call(f, "PATCH", "/api/v2/config", "{\"no_such_key\":1}"), 422);
	assert_string_equal(jget(f->json, "error.field"), "no_such_key");
	assert_int_equal(call(f, "PATCH", "/api/v2/config", "{\"max_attempts\":\"5\"}"), 422);
	assert_int_equal(call(f, "PATCH", "/api/v2/config", "{\"max_attempts\":2.5}"), 422);
	assert_int_equal(config_version(f), v0);
	assert_int_equal(call(f, "PATCH", "/api/v2/config", "{\"max_attempts\":5,\"emergency_rpm_ratio\":0.25}"), 200);
	assert_int_equal(count_rows(f, "SELECT value FROM system_config WHERE key = 'max_attempts'"), 5);
	assert_int_equal(count_rows(f, "SELECT value = '0.25' FROM system_config WHERE key = 'emergency_rpm_ratio'"), 1);
	assert_true(config_version(f) > v0);
}

/* Read a file into a malloc'd NUL-terminated string. */
static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return buf;
}

static void
test_import_export(void **state)
{
	struct fx *f = *state;
	const char *top = getenv("SC_TOP_SRCDIR");
	char path[512];
	char *yaml;
	int n;

	snprintf(path, sizeof(path), "%s/tests/fixtures/providers-example.yaml", top ? top : "..");
	yaml = slurp(path);
	if (yaml == NULL)
		skip();
	/* Validation on: every key tested; a refused one blocks the whole file. */
	stub_outcome = VALIDATE_INVALID_KEY;
	stub_calls = 0;
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import", "application/yaml", yaml,
	    f->authz, NULL, NULL), 422);
	assert_true(stub_calls > 1);
	assert_string_equal(jget(f->json, "error.entries.0.validation.result"), "invalid_key");
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), 0);

	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import?validate=false", "application/yaml", yaml,
	    f->authz, NULL, NULL), 200);
	n = atoi(jget(f->json, "created"));
	assert_true(n >= 10);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), n);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers WHERE source = 'yaml'"), n);
	assert_string_equal(jget(f->json, "entries.0.action"), "created");
	assert_false(body_has(f, "PLACEHOLDER"));
	/* Again: nothing new. */
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import?validate=false", "application/yaml", yaml,
	    f->authz, NULL, NULL), 200);
	assert_string_equal(jget(f->json, "created"), "0");
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers"), n);

	/* Export: YAML, no keys. */
	assert_int_equal(call(f, "GET", "/api/v2/providers/export", NULL), 200);
	assert_non_null(strstr(f->rs.content_type, "yaml"));
	assert_non_null(strstr(f->rs.body.data, "- account: \"account01\""));
	assert_null(strstr(f->rs.body.data, "PLACEHOLDER"));
	assert_null(strstr(f->rs.body.data, "api_key:"));
	free(yaml);

	/* Malformed: 422 with a line, nothing written. */
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import?validate=false", "application/yaml",
	    "providers:\n- account: new1\n  api_key: nvapi-TEST-0009-zzzzzzzzzzzzzzzz\n"
	    "  endpoint_url: https://a.example/v1\n  model_prefix: x/\n  rpm_limit: many\n",
	    f->authz, NULL, NULL), 422);
	assert_non_null(jget(f->json, "error.line"));
	assert_true(atoi(jget(f->json, "error.line")) >= 2);
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import", "application/yaml",
	    "providers: [\n", f->authz, NULL, NULL), 422);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM providers WHERE name = 'new1'"), 0);
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import", "application/yaml", NULL,
	    f->authz, NULL, NULL), 400);
}

static void
test_stats(void **state)
{
	struct fx *f = *state;
	char sql[2048], id[64];
	json_object *arr;

	assert_int_equal(call(f, "GET", "/api/v2/status", NULL), 200);
	assert_int_equal(json_object_object_length(f->json), 0);
	snprintf(id, sizeof(id), "%s", create(f, "statp", TESTKEY));
	snprintf(sql, sizeof(sql),
	    "INSERT INTO provider_usage_logs (id, provider_id, model, prompt_tokens, completion_tokens, "
	    "total_tokens, cost, request_count, error_count, latency_sum_ms, hour_bucket) VALUES "
	    "('a', '%s', 'm1', 10, 20, 30, 0.5, 3, 1, 300, '2025-11-26T07'),"
	    "('b', '%s', 'm2', 1, 2, 3, 0.1, 1, 0, 50, '2025-11-26T07'),"
	    "('c', '%s', 'm1', 5, 5, 10, 0.2, 2, 0, 100, '2025-11-26T06'),"
	    "('d', '%s', 'm1', 5, 5, 10, 0.2, 2, 0, 100, '2025-11-20T06');"
	    "INSERT INTO daily_stats (id, date, pool, total_requests, total_errors, total_tokens, total_cost) VALUES "
	    "('2025-11-26|main', '2025-11-26', 'main', 6, 1, 43, 0.8);"
	    "INSERT INTO live_status (id, updated_at, snapshot) VALUES (1, '2025-11-26T08:00:00Z', "
	    "'{\"queue_depth\":2,\"providers\":[{\"id\":\"%s\",\"rpm_used\":7}]}');"
	    "INSERT INTO provider_health (provider_id, state, last_latency_ms) VALUES ('%s', 'unhealthy', 99)",
	    id, id, id, id, id, id);
	assert_int_equal(sqlite3_exec(f->db, sql, NULL, NULL, NULL), SQLITE_OK);

	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly", NULL), 200);
	assert_true(json_object_object_get_ex(f->json, "series", &arr));
	assert_int_equal(json_object_array_length(arr), 2);
	assert_string_equal(jget(f->json, "series.1.hour"), "2025-11-26T07");
	assert_string_equal(jget(f->json, "series.1.requests"), "4");
	assert_string_equal(jget(f->json, "series.1.avg_latency_ms"), "87");
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?model=m1&provider=statp&pool=main", NULL), 200);
	assert_string_equal(jget(f->json, "series.1.requests"), "3");
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?pool=fallback", NULL), 200);
	assert_null(jget(f->json, "series.0"));
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?from=2025-11-20&to=2025-11-26T06&group_by=model", NULL), 200);
	assert_string_equal(jget(f->json, "series.0.hour"), "2025-11-20T06");
	assert_string_equal(jget(f->json, "series.0.model"), "m1");
	assert_null(jget(f->json, "series.2"));

	assert_int_equal(call(f, "GET", "/api/v2/stats/daily", NULL), 200);
	assert_string_equal(jget(f->json, "source"), "daily_stats");
	assert_string_equal(jget(f->json, "series.0.requests"), "6");
	assert_int_equal(call(f, "GET", "/api/v2/stats/daily?model=m1", NULL), 200);
	assert_string_equal(jget(f->json, "source"), "provider_usage_logs");
	assert_string_equal(jget(f->json, "series.0.date"), "2025-11-20");
	assert_string_equal(jget(f->json, "series.1.requests"), "5");

	assert_int_equal(call(f, "GET", "/api/v2/stats/totals?range=day", NULL), 200);
	assert_string_equal(jget(f->json, "totals.requests"), "6");
	assert_string_equal(jget(f->json, "by_provider.0.name"), "statp");
	assert_int_equal(call(f, "GET", "/api/v2/stats/totals?range=week", NULL), 200);
	assert_string_equal(jget(f->json, "totals.requests"), "8");
	assert_int_equal(call(f, "GET", "/api/v2/stats/by-model?range=week", NULL), 200);
	assert_string_equal(jget(f->json, "models.0.model"), "m1");
	assert_string_equal(jget(f->json, "models.0.requests"), "7");

	assert_int_equal(call(f, "GET", "/api/v2/health", NULL), 200);
	assert_string_equal(jget(f->json, "providers.0.state"), "unhealthy");
	assert_string_equal(jget(f->json, "summary.unhealthy"), "1");
	assert_int_equal(call(f, "GET", "/api/v2/status", NULL), 200);
	assert_string_equal(jget(f->json, "snapshot.queue_depth"), "2");
	assert_int_equal(call(f, "GET", "/api/v2/providers", NULL), 200);
	assert_string_equal(jget(f->json, "providers.0.live.rpm_used"), "7");
	assert_string_equal(jget(f->json, "providers.0.health.state"), "unhealthy");
}

static void
test_classify(void **state)
{
	struct validate_result r;

	(void)state;
	validate_classify(CURLE_OK, NULL, 200, "{}", 2, TESTKEY, 10000, &r);
	assert_true(r.ok);
	assert_int_equal(r.outcome, VALIDATE_OK);
	static const char b401[] = "{\"error\":{\"message\":\"Incorrect API key provided: " TESTKEY "\"}}";
	validate_classify(CURLE_OK, NULL, 401, b401, strlen(b401), TESTKEY, 10000, &r);
	assert_false(r.ok);
	assert_int_equal(r.outcome, VALIDATE_INVALID_KEY);
	assert_null(strstr(r.message, TESTKEY));
	assert_non_null(strstr(r.message, "upstream answered 401: Incorrect API key provided: [REDACTED]"));
	/* The key echoed without its prefix and in pieces (issue 14). */
	static const char echo[] = "{\"status\":401,\"detail\":\"secret TEST-0001-xxxxxxxxxxxxxxxxWXYZ, "
	    "part 0001-xxxx, end xxxxWXYZ\"}";
	validate_classify(CURLE_OK, NULL, 401, echo, strlen(echo), TESTKEY, 10000, &r);
	assert_string_equal(r.message, "invalid key (upstream answered 401: secret [REDACTED], part [REDACTED], "
	    "end [REDACTED])");
	validate_classify(CURLE_OK, NULL, 403, "{\"status\":403,\"title\":\"Forbidden\"}",
	    strlen("{\"status\":403,\"title\":\"Forbidden\"}"), TESTKEY, 10000, &r);
	assert_int_equal(r.outcome, VALIDATE_FORBIDDEN);
	assert_string_equal(r.message, "forbidden (upstream answered 403: Forbidden)");
	validate_classify(CURLE_OPERATION_TIMEDOUT, "Operation timed out", 0, NULL, 0, TESTKEY, 10000, &r);
	assert_int_equal(r.outcome, VALIDATE_TIMEOUT);
	assert_non_null(strstr(r.message, "10 s"));
	validate_classify(CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: nowhere.invalid", 0, NULL, 0,
	    TESTKEY, 10000, &r);
	assert_int_equal(r.outcome, VALIDATE_UNREACHABLE);
	assert_string_equal(r.message, "unreachable: Could not resolve host: nowhere.invalid");
	validate_classify(CURLE_OK, NULL, 500, "oops\n", 5, TESTKEY, 10000, &r);
	assert_int_equal(r.outcome, VALIDATE_UPSTREAM_ERROR);
	assert_string_equal(r.message, "upstream answered 500: oops ");
}

/* Query values are echoed into answers (stats filters, errors): one that is
 * not UTF-8, raw or percent-encoded, is a 400 naming the parameter, and
 * every answer body stays UTF-8 (the fuzz_admin_json crash). */
static void
test_query_not_utf8(void **state)
{
	struct fx *f = *state;
	static const char *const uris[] = {
		"/api/v2/stats/daily?group_by=model&provider=f\xf8",
		"/api/v2/stats/hourly?provider=f%F8",
		"/api/v2/stats/hourly?model=%C3",
		"/api/v2/stats/totals?range=%FF",
		"/api/v2/stats/by-model?provider=%ED%A0%80",
		"/api/v2/cooldowns?provider=\xc3\x28",
		"/api/v2/requests?client=%FF",
		"/api/v2/requests?request_id=a\xe2\x82",
	};
	static const char *const fields[] = { "provider", "provider", "model", "range", "provider", "provider",
	    "client", "request_id" };

	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		assert_int_equal(call(f, "GET", uris[i], NULL), 400);
		assert_true(sc_utf8_valid(f->rs.body.data, f->rs.body.len));
		assert_string_equal(jget(f->json, "error.field"), fields[i]);
	}
	/* Well-formed UTF-8 is echoed as given. */
	assert_int_equal(call(f, "GET", "/api/v2/stats/hourly?provider=caf%C3%A9", NULL), 200);
	assert_string_equal(jget(f->json, "filters.provider"), "caf\xc3\xa9");

	/* An import error quoting a value cut inside a character ("%.40s"):
	 * the answer is still UTF-8. */
	assert_int_equal(call_full(f, "POST", "/api/v2/providers/import?validate=false", "application/yaml",
	    "providers:\n- account: a1\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	    "  endpoint_url: http://127.0.0.1:9/v1\n  model_prefix: \"a/\"\n"
	    "  pool: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\"\n  rpm_limit: 40\n",
	    f->authz, NULL, NULL), 422);
	assert_true(sc_utf8_valid(f->rs.body.data, f->rs.body.len));
	assert_non_null(strstr(jget(f->json, "error.message"), "unknown pool"));
}

/* The request log: rows as the data plane writes them; filters, the cursor,
 * the detail with its attempts, and the 4xx answers to bad parameters. */
static void
test_requests(void **state)
{
	struct fx *f = *state;

	assert_int_equal(sqlite3_exec(f->db,
	    "INSERT INTO request_log (seq, request_id, finished_at, finished_ms, client, model, provider_id, "
	    "provider_name, pool, status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, prompt_tokens, "
	    "completion_tokens, total_tokens, cost, streamed, client_disconnected) VALUES "
	    "(1, 'a1', '2025-11-26T07:00:00Z', 1764140400000, 'oc', 'nvidia/m', 'p1', 'one', 'main', 200, '', 1, "
	    " 0, 40, 90, 10, 20, 30, 0.03, 0, 0),"
	    "(2, 'a2', '2025-11-26T07:10:00Z', 1764141000000, 'oc', 'nvidia/m', NULL, '', NULL, 503, "
	    " 'queue_timeout', 0, 30000, -1, 30001, -1, -1, -1, 0, 0, 0),"
	    "(3, 'a3', '2025-11-26T07:20:00Z', 1764141600000, 'bot', 'nvidia/x', 'p2', 'two', 'fallback', 200, "
	    " '', 2, 5, 70, 200, 1, 2, 3, 0.001, 1, 0),"
	    "(4, 'a4', '2025-11-26T07:30:00Z', 1764142200000, 'oc', 'nvidia/m', 'p1', 'one', 'main', 499, "
	    " 'client_closed', 1, 0, -1, 500, -1, -1, -1, 0, 1, 1),"
	    "(5, 'a1', '2025-11-26T07:40:00Z', 1764142800000, 'oc', 'nvidia/m', 'p1', 'one', 'main', 200, "
	    " 'stream_interrupted', 1, 0, 50, 400, -1, -1, -1, 0, 1, 0);"
	    "INSERT INTO request_attempts (seq, n, provider_id, provider_name, pool, status, outcome, start_ms, "
	    "duration_ms) VALUES (1, 1, 'p1', 'one', 'main', 200, 'ok', 0, 40),"
	    "(3, 1, 'p1', 'one', 'main', 429, 'rate_limited', 5, 20), (3, 2, 'p2', 'two', 'fallback', 200, 'ok', 26, 44),"
	    "(4, 1, 'p1', 'one', 'main', 0, 'client_closed', 0, 500), (5, 1, 'p1', 'one', 'main', 200, 'interrupted', 0, 400);",
	    NULL, NULL, NULL), SQLITE_OK);

	/* Newest first, every field; unknown numbers are null. */
	assert_int_equal(call(f, "GET", "/api/v2/requests", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "5");
	assert_string_equal(jget(f->json, "requests.0.error"), "true");	/* 200, but the stream broke */
	assert_string_equal(jget(f->json, "requests.0.error_code"), "stream_interrupted");
	assert_string_equal(jget(f->json, "requests.3.request_id"), "a2");
	assert_null(jget(f->json, "requests.3.provider"));
	assert_null(jget(f->json, "requests.3.pool"));
	assert_null(jget(f->json, "requests.3.ttfb_ms"));
	assert_null(jget(f->json, "requests.3.total_tokens"));
	assert_string_equal(jget(f->json, "requests.3.queue_ms"), "30000");
	assert_string_equal(jget(f->json, "requests.4.total_tokens"), "30");
	assert_string_equal(jget(f->json, "requests.4.client"), "oc");
	assert_string_equal(jget(f->json, "requests.4.error"), "false");
	assert_null(jget(f->json, "requests.4.error_code"));
	assert_string_equal(jget(f->json, "requests.2.streamed"), "true");
	assert_string_equal(jget(f->json, "requests.1.client_disconnected"), "true");
	assert_null(jget(f->json, "requests.5"));
	assert_null(jget(f->json, "next_cursor"));

	/* Cursor paging: stable, no repeats, the end says so. */
	assert_int_equal(call(f, "GET", "/api/v2/requests?limit=2", NULL), 200);
	assert_string_equal(jget(f->json, "requests.1.seq"), "4");
	assert_string_equal(jget(f->json, "next_cursor"), "4");
	assert_int_equal(call(f, "GET", "/api/v2/requests?limit=2&cursor=4", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_string_equal(jget(f->json, "requests.1.seq"), "2");
	assert_string_equal(jget(f->json, "next_cursor"), "2");
	assert_int_equal(call(f, "GET", "/api/v2/requests?limit=2&cursor=2", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "1");
	assert_null(jget(f->json, "requests.1"));
	assert_null(jget(f->json, "next_cursor"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?after=3", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "5");
	assert_string_equal(jget(f->json, "requests.1.seq"), "4");
	assert_null(jget(f->json, "requests.2"));

	/* Filters. */
	assert_int_equal(call(f, "GET", "/api/v2/requests?errors=1", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "5");
	assert_string_equal(jget(f->json, "requests.1.seq"), "4");
	assert_string_equal(jget(f->json, "requests.2.seq"), "2");
	assert_null(jget(f->json, "requests.3"));
	assert_string_equal(jget(f->json, "filters.errors"), "true");
	assert_int_equal(call(f, "GET", "/api/v2/requests?status=5xx", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "2");
	assert_null(jget(f->json, "requests.1"));
	assert_string_equal(jget(f->json, "filters.status"), "5xx");
	assert_int_equal(call(f, "GET", "/api/v2/requests?status=499", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "4");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?status=2xx&errors=false", NULL), 200);
	assert_string_equal(jget(f->json, "requests.2.seq"), "1");
	assert_null(jget(f->json, "requests.3"));
	/* A provider concerns a request it served or one of its attempts went to. */
	assert_int_equal(call(f, "GET", "/api/v2/requests?provider=one", NULL), 200);
	assert_string_equal(jget(f->json, "requests.2.seq"), "3");
	assert_string_equal(jget(f->json, "requests.3.seq"), "1");
	assert_null(jget(f->json, "requests.4"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?provider=p1&outcome=rate_limited", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?provider=p2&outcome=rate_limited", NULL), 200);
	assert_null(jget(f->json, "requests.0"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?outcome=client_closed", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "4");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?pool=fallback", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?model=nvidia%2Fx", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?client=bot", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_null(jget(f->json, "requests.1"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?request_id=a1", NULL), 200);
	assert_string_equal(jget(f->json, "requests.1.seq"), "1");
	assert_null(jget(f->json, "requests.2"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?from=2025-11-26T07:10:00Z&to=2025-11-26T07:20:00Z", NULL), 200);
	assert_string_equal(jget(f->json, "requests.0.seq"), "3");
	assert_string_equal(jget(f->json, "requests.1.seq"), "2");
	assert_null(jget(f->json, "requests.2"));
	assert_int_equal(call(f, "GET", "/api/v2/requests?from=1764142200", NULL), 200);
	assert_string_equal(jget(f->json, "requests.1.seq"), "4");
	assert_null(jget(f->json, "requests.2"));

	/* Bad parameters: 400 naming the field. */
	assert_int_equal(call(f, "GET", "/api/v2/requests?status=6xx", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "status");
	assert_int_equal(call(f, "GET", "/api/v2/requests?status=20", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/requests?limit=0", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "limit");
	assert_int_equal(call(f, "GET", "/api/v2/requests?limit=501", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/requests?cursor=abc", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "cursor");
	assert_int_equal(call(f, "GET", "/api/v2/requests?cursor=-1", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/requests?pool=spare", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "pool");
	assert_int_equal(call(f, "GET", "/api/v2/requests?outcome=fine", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "outcome");
	assert_int_equal(call(f, "GET", "/api/v2/requests?from=yesterday", NULL), 400);
	assert_string_equal(jget(f->json, "error.field"), "from");
	assert_int_equal(call(f, "GET", "/api/v2/requests?from=2025-11-27&to=2025-11-26", NULL), 400);
	assert_int_equal(call(f, "POST", "/api/v2/requests", "{}"), 405);
	assert_true(has_header(f, "Allow: GET"));

	/* One request with its attempts, by the id the client received. */
	assert_int_equal(call(f, "GET", "/api/v2/requests/a3", NULL), 200);
	assert_string_equal(jget(f->json, "seq"), "3");
	assert_string_equal(jget(f->json, "provider"), "two");
	assert_string_equal(jget(f->json, "same_id"), "1");
	assert_string_equal(jget(f->json, "attempt_list.0.provider"), "one");
	assert_string_equal(jget(f->json, "attempt_list.0.status"), "429");
	assert_string_equal(jget(f->json, "attempt_list.0.outcome"), "rate_limited");
	assert_string_equal(jget(f->json, "attempt_list.0.duration_ms"), "20");
	assert_string_equal(jget(f->json, "attempt_list.1.pool"), "fallback");
	assert_string_equal(jget(f->json, "attempt_list.1.start_ms"), "26");
	assert_null(jget(f->json, "attempt_list.2"));
	assert_int_equal(call(f, "GET", "/api/v2/requests/a4", NULL), 200);
	assert_null(jget(f->json, "attempt_list.0.status"));	/* no answer came */
	/* A reused id: the newest, or the one at seq. */
	assert_int_equal(call(f, "GET", "/api/v2/requests/a1", NULL), 200);
	assert_string_equal(jget(f->json, "seq"), "5");
	assert_string_equal(jget(f->json, "same_id"), "2");
	assert_int_equal(call(f, "GET", "/api/v2/requests/a1?seq=1", NULL), 200);
	assert_string_equal(jget(f->json, "seq"), "1");
	assert_string_equal(jget(f->json, "attempt_list.0.outcome"), "ok");
	assert_int_equal(call(f, "GET", "/api/v2/requests/a1?seq=3", NULL), 404);
	assert_int_equal(call(f, "GET", "/api/v2/requests/nope", NULL), 404);
	assert_true(body_has(f, "no request nope in the request log"));
	assert_int_equal(call(f, "GET", "/api/v2/requests/a1?seq=x", NULL), 400);
	assert_int_equal(call(f, "GET", "/api/v2/requests/%zz", NULL), 400);
	assert_int_equal(call(f, "DELETE", "/api/v2/requests/a1", NULL), 405);
	/* A model cut inside a character (or odd client bytes): valid JSON anyway. */
	assert_int_equal(sqlite3_exec(f->db, "INSERT INTO request_log (request_id, finished_at, finished_ms, model, "
	    "status) VALUES ('bad-utf8', '2025-11-26T07:50:00Z', 1764143400000, CAST(X'6e762fc3' AS TEXT), 200)",
	    NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(call(f, "GET", "/api/v2/requests?request_id=bad-utf8", NULL), 200);
	assert_non_null(f->json);
	assert_string_equal(jget(f->json, "requests.0.model"), "nv/?");
	/* Admin only. */
	assert_int_equal(call_full(f, "GET", "/api/v2/requests", NULL, NULL, NULL, NULL, NULL), 401);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_auth_bearer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_flow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_throttle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_provider_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_provider_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_cooldown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_export, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_not_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
		cmocka_unit_test(test_classify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
