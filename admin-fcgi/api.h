/*
 * The admin API as plain functions: a request struct in, a response struct
 * out. The FastCGI glue (admin_main.c) only fills struct api_request from the
 * FastCGI parameters and writes struct api_response back; the unit tests call
 * api_handle directly with a temporary database. docs/admin-api.md is the
 * reference for every route.
 */
#ifndef SC_ADMIN_API_H
#define SC_ADMIN_API_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "crypto.h"
#include "util.h"
#include "validate_key.h"

#define API_PREFIX		"/api/v2"
#define API_JSON_BODY_MAX	(1024 * 1024)		/* JSON request bodies, bytes */
#define API_YAML_BODY_MAX	(4 * 1024 * 1024)	/* POST /providers/import, bytes */
#define API_RESP_MAX		(16 * 1024 * 1024)	/* response bodies, bytes */
#define API_HDR_MAX		4096			/* extra response header lines, bytes */
#define API_JSON_DEPTH		16			/* json-c nesting cap */
#define API_VALIDATE_TIMEOUT_MS	10000			/* test call GET {endpoint}/models */

/* One request as the glue saw it. Every pointer is borrowed; NULL = absent. */
struct api_request {
	const char *method;		/* GET, POST, PATCH, DELETE, ... */
	const char *uri;		/* REQUEST_URI, query string included or not */
	const char *query;		/* QUERY_STRING without '?', may be NULL */
	const char *content_type;	/* CONTENT_TYPE */
	const char *authorization;	/* HTTP_AUTHORIZATION */
	const char *cookie;		/* HTTP_COOKIE */
	const char *csrf;		/* HTTP_X_SIDECAR_CSRF */
	const char *remote_addr;	/* REMOTE_ADDR */
	const char *body;		/* not NUL-terminated; NULL when body_len == 0 */
	size_t      body_len;
	bool        body_too_large;	/* the glue refused to read a body over api_body_cap */
};

/* The answer; api_response_init before, api_response_free after. */
struct api_response {
	int           status;		/* HTTP status code */
	const char   *content_type;	/* static string */
	struct sc_buf headers;		/* owned: extra "Name: value\r\n" lines */
	struct sc_buf body;		/* owned */
};

/* Key validation entry point; tests swap in a stub. */
typedef void (*api_validate_fn)(const char *endpoint, const char *key, long timeout_ms,
    struct validate_result *out);

/* Per-process state: the one SQLite connection and the encryption key. */
struct api_ctx {
	sqlite3           *db;		/* borrowed, open for the life of the process */
	struct crypto_key  key;		/* copy; wiped by the owner; replaced when a rekey is followed */
	char               key_check[CRYPTO_CHECK_MAX];	/* the check value key matches (crypto_key_sync) */
	bool               key_reload;	/* reload the key from the environment's source after a rekey */
	bool               key_stale;	/* the database has another key and no source holds it */
	api_validate_fn    validate;	/* validate_key_check unless a test replaces it */
	long               validate_timeout_ms;
	int64_t          (*now)(void);	/* wall clock, Unix seconds; tests replace it */
};

void api_response_init(struct api_response *rs);
void api_response_free(struct api_response *rs);

/* Prepare ctx (creates the admin's own tables if missing). 0 or -1 with e. */
int api_ctx_init(struct api_ctx *ctx, sqlite3 *db, const struct crypto_key *k, struct sc_err *e);

/* Largest body the glue should read for this request (bytes). */
size_t api_body_cap(const char *method, const char *uri);

/* Route and run one request. Never fails: every outcome is a status code. */
void api_handle(struct api_ctx *ctx, const struct api_request *rq, struct api_response *rs);

/* ---- helpers shared by the route files (not for the glue) ---- */

/* A parsed request: the path below /api/v2 and the query. */
struct api_call {
	struct api_ctx             *ctx;
	const struct api_request   *rq;
	struct api_response        *rs;
	const char                 *path;	/* below API_PREFIX, starts with '/', no query */
	char                        token_id[37];	/* who is authenticated */
	bool                        via_cookie;
	char                        csrf[64];		/* cookie sessions: their CSRF value */
	char                        expires_at[SC_TS_LEN];	/* cookie sessions: end */
};

/* Error response {"error":{"message":…,"field":…}}; field may be NULL. */
void api_error(struct api_response *rs, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Error response from a failed database call: 503 + Retry-After when the
 * database stayed locked, else 500 (a server fault, never bad input). */
void api_db_error(struct api_response *rs, sqlite3 *db, const struct sc_err *e);
/* Answer with a JSON value (takes ownership of obj). */
void api_json(struct api_response *rs, int status, json_object *obj);
void api_header(struct api_response *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parse the body as a JSON object; on failure the response is set (400, 413,
 * 415, 422) and NULL is returned. */
json_object *api_body_json(struct api_call *c);
/* Query parameter by name, decoded into out (cap outlen). 1 found, 0 absent,
 * -1 too long, bad percent-encoding or not UTF-8. */
int api_query(const struct api_request *rq, const char *name, char *out, size_t outlen);
/* "false"/"0"/"no" → false; absent → def. */
bool api_query_bool(const struct api_request *rq, const char *name, bool def);

/* JSON string or null; bytes that are not UTF-8 become '?'. */
json_object *api_jstr(const char *s);
/* Bump meta.config_version inside a write transaction. 0 or -1. */
int api_bump_version(sqlite3 *db, struct sc_err *e);
/* True when the failure is a stale encryption key (CRYPTO_STALE_FIELD):
 * api_db_error answers it with 503. */
bool api_err_is_stale_key(const struct sc_err *e);
/* True when the last failure was SQLite saying "busy/locked". */
bool api_err_is_busy(sqlite3 *db, const struct sc_err *e);

/* Percent-decode s[0..n) into out; 0, or -1 when it does not fit or is malformed. */
int api_urldecode(const char *s, size_t n, char *out, size_t outlen);

/* Read-only queries built from the filters that were given (routes_stats.c,
 * used by routes_requests.c too): an SQL text with its text parameters. */
#define STATS_MAX_BINDS 12
struct stats_q {
	struct sc_buf sql;
	const char   *bind[STATS_MAX_BINDS];
	int           n;
};
void stats_q_init(struct stats_q *q, const char *head);
/* Append SQL in which every '#' stands for the next parameter's number. */
void stats_q_cond(struct stats_q *q, const char *sql, const char *value);
/* Prepare and bind; NULL on failure (the caller answers with api_db_error). */
sqlite3_stmt *stats_q_prepare(sqlite3 *db, struct stats_q *q);
/* Parse a time: Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH or a full timestamp. 0 or -1. */
int stats_parse_time(const char *s, int64_t *out);
/* Optional text filter: *given when present and not empty; -1 (400 set) when too long. */
int stats_filter(struct api_call *c, const char *name, char *out, size_t outlen, bool *given);
/* 0 for main, fallback or emergency, else -1 with 400 set. */
int stats_pool_ok(struct api_call *c, const char *pool);

/* Route groups; each returns true when it recognised the path. */
bool routes_session(struct api_call *c);
bool routes_providers(struct api_call *c);
bool routes_config(struct api_call *c);
bool routes_stats(struct api_call *c);
bool routes_requests(struct api_call *c);

#endif
