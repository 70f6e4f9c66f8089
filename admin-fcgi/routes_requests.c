/*
 * The request log behind the panel's "Requests" view (docs/admin-api.md):
 *
 *   GET /requests        newest first, filtered (status class or code, errors
 *                        only, provider, model, pool, client, attempt outcome,
 *                        time range, request id), paged by a seq cursor
 *   GET /requests/{id}   one request with its attempts
 *
 * The data plane's statistics writer fills request_log (sql/schema.sql) and
 * prunes it to request_log_rows rows; this side only reads. seq only grows,
 * so "cursor" (older than) and "after" (newer than) are stable across
 * inserts and pruning: a page never repeats or skips a row that is still
 * there. The SQL holds only the conditions asked for, every value bound.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "reqrow.h"

#define REQ_LIMIT_DEFAULT 50
#define REQ_LIMIT_MAX     500

/* Outcome names as the data plane writes them (dataplane/reqlog.c). */
static const char *const req_outcomes[] = {
	"ok", "rate_limited", "invalid_key", "server_error", "client_error", "connect_error",
	"ttfb_timeout", "start_failed", "client_closed", "interrupted", NULL,
};

/* A non-negative integer parameter; 1 given, 0 absent, -1 (400 set) bad. */
static int
req_int_param(struct api_call *c, const char *name, int64_t min, int64_t max, int64_t *out)
{
	char v[32], *end;
	long long n;
	int rc = api_query(c->rq, name, v, sizeof(v));

	if (rc == 0 || (rc == 1 && v[0] == '\0'))
		return 0;
	errno = 0;
	n = rc == 1 ? strtoll(v, &end, 10) : 0;
	if (rc == -1 || errno != 0 || end == v || *end != '\0' || v[0] == '-' || v[0] == '+' || n < min || n > max) {
		api_error(c->rs, 400, name, "'%s' must be an integer from %lld to %lld", name, (long long)min,
		    (long long)max);
		return -1;
	}
	*out = n;
	return 1;
}

/* A time parameter as Unix seconds; 1, 0 or -1 as above. */
static int
req_time_param(struct api_call *c, const char *name, int64_t *out)
{
	char v[32];
	int rc = api_query(c->rq, name, v, sizeof(v));

	if (rc == 0 || (rc == 1 && v[0] == '\0'))
		return 0;
	if (rc == -1 || stats_parse_time(v, out) == -1) {
		api_error(c->rs, 400, name, "'%s' must be Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH or "
		    "YYYY-MM-DDTHH:MM:SSZ", name);
		return -1;
	}
	return 1;
}

/* status=2xx|3xx|4xx|5xx or a code (100-599): the value into v, the SQL
 * condition into cond. */
static int
req_status_param(struct api_call *c, char v[16], char *cond, size_t condlen, bool *given)
{
	bool hs;

	if (stats_filter(c, "status", v, 16, &hs) == -1)
		return -1;
	*given = hs;
	if (!hs)
		return 0;
	if (strlen(v) == 3 && v[0] >= '1' && v[0] <= '5' && (v[1] == 'x' || v[1] == 'X') &&
	    (v[2] == 'x' || v[2] == 'X')) {
		int k = v[0] - '0';
		snprintf(cond, condlen, " AND status >= %d AND status < %d", k * 100, k * 100 + 100);
		return 0;
	}
	if (strlen(v) == 3 && strspn(v, "0123456789") == 3 && v[0] >= '1' && v[0] <= '5') {
		snprintf(cond, condlen, " AND status = %d", atoi(v));
		return 0;
	}
	api_error(c->rs, 400, "status", "'status' must be a class (2xx, 3xx, 4xx, 5xx) or a status code");
	return -1;
}

/* GET /requests */
static void
req_list(struct api_call *c)
{
	char prov[256], model[256], pool[16], rid[160], client[160], outcome[32], status[16], scond[64];
	bool hp, hm, hpool, hr, hc, ho, hs, errors = api_query_bool(c->rq, "errors", false);
	int64_t limit = REQ_LIMIT_DEFAULT, cursor = 0, after = 0, from = 0, to = 0;
	int hcur, haft, hfrom, hto, rc, k, n = 0;
	struct stats_q q;
	sqlite3_stmt *st;
	json_object *root, *arr, *filters;
	int64_t last = 0;

	if (stats_filter(c, "provider", prov, sizeof(prov), &hp) == -1 ||
	    stats_filter(c, "model", model, sizeof(model), &hm) == -1 ||
	    stats_filter(c, "pool", pool, sizeof(pool), &hpool) == -1 ||
	    stats_filter(c, "request_id", rid, sizeof(rid), &hr) == -1 ||
	    stats_filter(c, "client", client, sizeof(client), &hc) == -1 ||
	    stats_filter(c, "outcome", outcome, sizeof(outcome), &ho) == -1 ||
	    req_status_param(c, status, scond, sizeof(scond), &hs) == -1 ||
	    req_int_param(c, "limit", 1, REQ_LIMIT_MAX, &limit) == -1 ||
	    (hcur = req_int_param(c, "cursor", 1, INT64_MAX, &cursor)) == -1 ||
	    (haft = req_int_param(c, "after", 0, INT64_MAX, &after)) == -1 ||
	    (hfrom = req_time_param(c, "from", &from)) == -1 ||
	    (hto = req_time_param(c, "to", &to)) == -1)
		return;
	if (hpool && stats_pool_ok(c, pool) == -1)
		return;
	if (ho) {
		for (k = 0; req_outcomes[k] != NULL && strcmp(req_outcomes[k], outcome) != 0; k++)
			;
		if (req_outcomes[k] == NULL) {
			api_error(c->rs, 400, "outcome", "'outcome' must be one of ok, rate_limited, invalid_key, "
			    "server_error, client_error, connect_error, ttfb_timeout, start_failed, client_closed, "
			    "interrupted");
			return;
		}
	}
	if (hfrom && hto && from > to) {
		api_error(c->rs, 400, "from", "'from' is after 'to'");
		return;
	}
	stats_q_init(&q, "SELECT " REQROW_COLS " FROM request_log WHERE 1");
	if (hs)
		sc_buf_printf(&q.sql, "%s", scond);	/* built from validated digits only */
	if (errors)
		sc_buf_printf(&q.sql, " AND " REQROW_ERROR_SQL);
	if (hcur)
		sc_buf_printf(&q.sql, " AND seq < %lld", (long long)cursor);
	if (haft)
		sc_buf_printf(&q.sql, " AND seq > %lld", (long long)after);
	if (hfrom)
		sc_buf_printf(&q.sql, " AND finished_ms >= %lld", (long long)from * 1000);
	if (hto)
		sc_buf_printf(&q.sql, " AND finished_ms < %lld", ((long long)to + 1) * 1000);
	if (hm)
		stats_q_cond(&q, " AND model = ?#", model);
	if (hpool)
		stats_q_cond(&q, " AND pool = ?#", pool);
	if (hr)
		stats_q_cond(&q, " AND request_id = ?#", rid);
	if (hc)
		stats_q_cond(&q, " AND client = ?#", client);
	/* A provider concerns a request when it served it or any attempt went to
	 * it; with an outcome, that attempt must have ended so. */
	if (hp && ho) {
		stats_q_cond(&q, " AND seq IN (SELECT seq FROM request_attempts WHERE (provider_id = ?# OR "
		    "provider_name = ?#)", prov);
		stats_q_cond(&q, " AND outcome = ?#)", outcome);
	} else if (hp) {
		stats_q_cond(&q, " AND (provider_id = ?# OR provider_name = ?# OR seq IN (SELECT seq FROM "
		    "request_attempts WHERE provider_id = ?# OR provider_name = ?#))", prov);
	} else if (ho) {
		stats_q_cond(&q, " AND seq IN (SELECT seq FROM request_attempts WHERE outcome = ?#)", outcome);
	}
	sc_buf_printf(&q.sql, " ORDER BY seq DESC LIMIT %lld", (long long)limit + 1);
	if ((st = stats_q_prepare(c->ctx->db, &q)) == NULL) {
		api_db_error(c->rs, c->ctx->db, NULL);
		sc_buf_free(&q.sql);
		return;
	}
	arr = json_object_new_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < limit) {
		json_object_array_add(arr, reqrow_json(st));
		last = sqlite3_column_int64(st, 0);
		n++;
	}
	sqlite3_finalize(st);
	sc_buf_free(&q.sql);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		json_object_put(arr);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	root = json_object_new_object();
	json_object_object_add(root, "requests", arr);
	/* A row past the page was there: the next page starts below the last one. */
	json_object_object_add(root, "next_cursor", rc == SQLITE_ROW ? json_object_new_int64(last) : NULL);
	filters = json_object_new_object();
	json_object_object_add(filters, "status", hs ? json_object_new_string(status) : NULL);
	json_object_object_add(filters, "errors", json_object_new_boolean(errors));
	json_object_object_add(filters, "provider", hp ? json_object_new_string(prov) : NULL);
	json_object_object_add(filters, "model", hm ? json_object_new_string(model) : NULL);
	json_object_object_add(filters, "pool", hpool ? json_object_new_string(pool) : NULL);
	json_object_object_add(filters, "client", hc ? json_object_new_string(client) : NULL);
	json_object_object_add(filters, "outcome", ho ? json_object_new_string(outcome) : NULL);
	json_object_object_add(filters, "request_id", hr ? json_object_new_string(rid) : NULL);
	json_object_object_add(root, "filters", filters);
	api_json(c->rs, 200, root);
}

/* GET /requests/{id}[?seq=N]: the newest logged request with that id (or
 * the one at seq), its attempts, and how many logged requests share the id
 * (a client may reuse its X-Request-Id). */
static void
req_detail(struct api_call *c, const char *raw_id)
{
	char rid[160];
	int64_t seq = 0;
	int hseq, rc;
	sqlite3_stmt *st = NULL;
	json_object *row = NULL, *arr;
	int64_t found = 0, same = 0;

	if (api_urldecode(raw_id, strlen(raw_id), rid, sizeof(rid)) == -1 || rid[0] == '\0' ||
	    strchr(rid, '/') != NULL) {
		api_error(c->rs, 400, "id", "malformed or too long request id");
		return;
	}
	if ((hseq = req_int_param(c, "seq", 1, INT64_MAX, &seq)) == -1)
		return;
	rc = sqlite3_prepare_v2(c->ctx->db, hseq ?
	    "SELECT " REQROW_COLS " FROM request_log WHERE request_id = ?1 AND seq = ?2" :
	    "SELECT " REQROW_COLS " FROM request_log WHERE request_id = ?1 ORDER BY seq DESC LIMIT 1",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(st, 1, rid, -1, SQLITE_STATIC);
	if (hseq)
		sqlite3_bind_int64(st, 2, seq);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row = reqrow_json(st);
		found = sqlite3_column_int64(st, 0);
	} else if (rc != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(st);
	st = NULL;
	if (row == NULL) {
		api_error(c->rs, 404, "id", "no request %s in the request log (it keeps the most recent "
		    "request_log_rows requests)", rid);
		return;
	}
	if (sqlite3_prepare_v2(c->ctx->db, "SELECT count(*) FROM request_log WHERE request_id = ?1", -1, &st,
	    NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(st, 1, rid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		same = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(c->ctx->db, "SELECT n, provider_id, provider_name, pool, status, outcome, "
	    "start_ms, duration_ms FROM request_attempts WHERE seq = ?1 ORDER BY n", -1, &st, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(st, 1, found);
	arr = json_object_new_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *a = json_object_new_object();
		const char *name = (const char *)sqlite3_column_text(st, 2);
		json_object_object_add(a, "n", json_object_new_int(sqlite3_column_int(st, 0)));
		json_object_object_add(a, "provider_id", api_jstr((const char *)sqlite3_column_text(st, 1)));
		json_object_object_add(a, "provider", name && name[0] ? api_jstr(name) : NULL);
		json_object_object_add(a, "pool", api_jstr((const char *)sqlite3_column_text(st, 3)));
		json_object_object_add(a, "status", sqlite3_column_int(st, 4) > 0 ?
		    json_object_new_int(sqlite3_column_int(st, 4)) : NULL);
		json_object_object_add(a, "outcome", api_jstr((const char *)sqlite3_column_text(st, 5)));
		json_object_object_add(a, "start_ms", json_object_new_int64(sqlite3_column_int64(st, 6)));
		json_object_object_add(a, "duration_ms", json_object_new_int64(sqlite3_column_int64(st, 7)));
		json_object_array_add(arr, a);
	}
	sqlite3_finalize(st);
	st = NULL;
	json_object_object_add(row, "attempt_list", arr);
	json_object_object_add(row, "same_id", json_object_new_int64(same));
	if (rc != SQLITE_DONE)
		goto dberr;
	api_json(c->rs, 200, row);
	return;
dberr:
	sqlite3_finalize(st);
	json_object_put(row);
	api_db_error(c->rs, c->ctx->db, NULL);
}

bool
routes_requests(struct api_call *c)
{
	const char *p = c->path;

	if (strcmp(p, "/requests") != 0 && strncmp(p, "/requests/", 10) != 0)
		return false;
	if (strcmp(c->rq->method, "GET") != 0) {
		api_header(c->rs, "Allow", "GET");
		api_error(c->rs, 405, NULL, "method %s not allowed here", c->rq->method);
		return true;
	}
	if (strcmp(p, "/requests") == 0)
		req_list(c);
	else
		req_detail(c, p + 10);
	return true;
}
