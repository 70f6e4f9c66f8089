/*
 * sidecar-admin: the FastCGI program lighttpd spawns for /api/v2/. This file
 * is only the libfcgi glue: open the database named by $SIDECAR_DB, load the
 * encryption key ($SIDECAR_ENCRYPTION_KEY or $SIDECAR_ENCRYPTION_KEY_FILE) and
 * check it against the database, then for each request read the parameters
 * and a CONTENT_LENGTH-bounded body into struct api_request, call api_handle,
 * and write Status, headers and body back. One SQLite connection per process.
 *
 *   sidecar-admin            run under a FastCGI server (stdin is the socket)
 *   sidecar-admin --check    open the database and key, then exit 0/1
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <fcgiapp.h>

#include "api.h"
#include "crypto.h"
#include "db.h"
#include "log.h"

#define ADMIN_DISCARD_MAX (256LL * 1024 * 1024)	/* most body bytes skipped for a 413 */

static const char *
admin_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default:  return status >= 500 ? "Internal Server Error" : "Error";
	}
}

/* Read the request body (at most cap bytes) into buf; a larger declared body
 * is read and dropped so the connection stays in step, and *too_large set. */
static int
admin_read_body(FCGX_Request *req, size_t cap, struct sc_buf *buf, bool *too_large)
{
	const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
	char chunk[16384];
	long long want = 0;
	char *end;

	*too_large = false;
	if (cl != NULL && *cl != '\0') {
		errno = 0;
		want = strtoll(cl, &end, 10);
		if (errno != 0 || *end != '\0' || want < 0)
			want = 0;
	}
	if (want == 0)
		return 0;
	if ((unsigned long long)want > cap) {
		*too_large = true;
		while (want > 0 && want <= ADMIN_DISCARD_MAX) {
			int n = FCGX_GetStr(chunk, (int)(want < (long long)sizeof(chunk) ? want : (long long)sizeof(chunk)),
			    req->in);
			if (n <= 0)
				break;
			want -= n;
		}
		return 0;
	}
	sc_buf_init(buf, cap);
	while (want > 0) {
		int n = FCGX_GetStr(chunk, (int)(want < (long long)sizeof(chunk) ? want : (long long)sizeof(chunk)),
		    req->in);
		if (n <= 0)
			break;
		if (sc_buf_append(buf, chunk, (size_t)n) == -1) {
			*too_large = true;
			break;
		}
		want -= n;
	}
	return 0;
}

static void
admin_serve(struct api_ctx *ctx, FCGX_Request *req)
{
	struct api_request rq;
	struct api_response rs;
	struct sc_buf body;
	char head[256];
	int64_t t0 = sc_now_ms();
	int n;

	memset(&rq, 0, sizeof(rq));
	memset(&body, 0, sizeof(body));
	rq.method = FCGX_GetParam("REQUEST_METHOD", req->envp);
	rq.uri = FCGX_GetParam("REQUEST_URI", req->envp);
	rq.query = FCGX_GetParam("QUERY_STRING", req->envp);
	rq.content_type = FCGX_GetParam("CONTENT_TYPE", req->envp);
	rq.authorization = FCGX_GetParam("HTTP_AUTHORIZATION", req->envp);
	rq.cookie = FCGX_GetParam("HTTP_COOKIE", req->envp);
	rq.csrf = FCGX_GetParam("HTTP_X_SIDECAR_CSRF", req->envp);
	rq.remote_addr = FCGX_GetParam("REMOTE_ADDR", req->envp);
	if (rq.uri == NULL) {
		/* Not every server sends REQUEST_URI; rebuild it from its parts. */
		rq.uri = FCGX_GetParam("SCRIPT_NAME", req->envp);
	}
	admin_read_body(req, api_body_cap(rq.method, rq.uri), &body, &rq.body_too_large);
	rq.body = body.len > 0 ? body.data : NULL;
	rq.body_len = body.len;

	api_response_init(&rs);
	api_handle(ctx, &rq, &rs);
	/* libfcgi's own printf knows no %zu: format here. */
	n = snprintf(head, sizeof(head), "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
	    rs.status, admin_reason(rs.status), rs.content_type, rs.body.len);
	FCGX_PutStr(head, n > 0 && (size_t)n < sizeof(head) ? n : 0, req->out);
	if (rs.headers.len > 0)
		FCGX_PutStr(rs.headers.data, (int)rs.headers.len, req->out);
	FCGX_PutS("\r\n", req->out);
	if (rs.body.len > 0 && strcmp(rq.method ? rq.method : "", "HEAD") != 0)
		FCGX_PutStr(rs.body.data, (int)rs.body.len, req->out);
	log_info("%s %s %d %lldms", rq.method ? rq.method : "-", rq.uri ? rq.uri : "-", rs.status,
	    (long long)(sc_now_ms() - t0));
	api_response_free(&rs);
	/* The body may hold a key (POST /providers): wipe before freeing. */
	if (body.data != NULL)
		crypto_wipe(body.data, body.len);
	sc_buf_free(&body);
}

int
main(int argc, char **argv)
{
	struct api_ctx ctx;
	struct crypto_key key;
	struct sc_err e;
	FCGX_Request req;
	sqlite3 *db = NULL;
	const char *path;
	bool check_only = argc > 1 && strcmp(argv[1], "--check") == 0;
	int rc = 1;

	if (argc > 2 || (argc == 2 && !check_only)) {
		fprintf(stderr, "usage: sidecar-admin [--check]\n"
		    "  A FastCGI program for lighttpd (see lighttpd/sidecar.conf.in); environment:\n"
		    "  SIDECAR_DB, SIDECAR_ENCRYPTION_KEY or SIDECAR_ENCRYPTION_KEY_FILE, SIDECAR_ADMIN_LOG.\n"
		    "  --check: open the database and check the key, then exit 0 or 1.\n");
		return 2;
	}
	log_init("sidecar-admin", LOG_LVL_INFO, getenv("SIDECAR_ADMIN_LOG"));
	signal(SIGPIPE, SIG_IGN);
	sc_err_clear(&e);
	path = db_default_path(NULL);
	if ((db = db_open(path, 0, &e)) == NULL) {
		log_error("%s", e.msg);
		return 1;
	}
	if (db_schema_version(db) != db_latest_version()) {
		log_error("%s: schema version %d, this build needs %d (run `sidecarctl migrate`)", path,
		    db_schema_version(db), db_latest_version());
		goto done;
	}
	if (crypto_key_load(NULL, &key, &e) == -1 || crypto_check_db(db, &key, &e) == -1) {
		log_error("encryption key: %s", e.msg);
		goto done;
	}
	if (api_ctx_init(&ctx, db, &key, &e) == -1) {
		log_error("%s", e.msg);
		goto done_key;
	}
	ctx.key_reload = true;	/* after a rekey, re-read the key source */
	if (check_only) {
		printf("sidecar-admin: %s ok\n", path);
		rc = 0;
		goto done_ctx;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, 0) != 0) {
		log_error("cannot initialise libfcgi (not started by a FastCGI server?)");
		goto done_curl;
	}
	log_info("serving %s", path);
	while (FCGX_Accept_r(&req) >= 0) {
		admin_serve(&ctx, &req);
		FCGX_Finish_r(&req);
	}
	rc = 0;
done_curl:
	curl_global_cleanup();
done_ctx:
	crypto_key_wipe(&ctx.key);
done_key:
	crypto_key_wipe(&key);
done:
	db_close(db);
	return rc;
}
