/*
 * `sidecarctl requests [--errors] [--since WHEN] [--provider P] [--status S]
 * [--limit N]` lists the newest logged requests, oldest of them first (like
 * a log file's tail); `sidecarctl requests --id ID` shows one request with
 * its attempts. Read-only: the data plane's statistics writer owns the
 * table. Error semantics match the admin API: an error is a status >= 400 or
 * a response that broke after it began (error_code set).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "requests.h"
#include "util.h"

#define REQ_LIMIT_DEFAULT 50
#define REQ_LIMIT_MAX     100000

int
ctl_requests_since(const char *s, int64_t now_s, int64_t *out)
{
	char buf[SC_TS_LEN], *end;
	size_t n = strlen(s);
	long long v;

	if (n == 0 || n > 20)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end != s && errno == 0 && v >= 0 && end[0] != '\0' && end[1] == '\0' && end[0] != '-') {
		int64_t mul = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : end[0] == 'd' ? 86400 : 0;
		if (mul == 0 || v > 3650LL * 86400 / mul)
			return -1;
		*out = now_s - v * mul;
		return 0;
	}
	if (end != s && errno == 0 && *end == '\0' && v >= 0 && s[0] != '-' && s[0] != '+') {
		*out = v;
		return 0;
	}
	if (n == 10)
		snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
	else if (n == 20)
		snprintf(buf, sizeof(buf), "%s", s);
	else
		return -1;
	return sc_ts_parse(buf, out);
}

static const char *
req_text(sqlite3_stmt *st, int i, const char *dflt)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t != NULL && t[0] != '\0' ? (const char *)t : dflt;
}

/* A -1 (unknown) column as "-". */
static const char *
req_num(sqlite3_stmt *st, int i, char *buf, size_t len)
{
	int64_t v = sqlite3_column_int64(st, i);

	if (v < 0)
		return "-";
	snprintf(buf, len, "%lld", (long long)v);
	return buf;
}

static int
req_usage(void)
{
	fprintf(stderr, "usage: sidecarctl requests [--errors] [--since WHEN] [--provider NAME|ID] [--status 4xx|CODE]\n"
	    "                          [--limit N]\n"
	    "       sidecarctl requests --id REQUEST_ID\n"
	    "  WHEN: 30s, 10m, 2h, 7d back from now; Unix seconds; YYYY-MM-DD; YYYY-MM-DDTHH:MM:SSZ\n");
	return 2;
}

static int
req_fail(sqlite3 *db, const char *what)
{
	fprintf(stderr, "sidecarctl: request log: %s: %s\n", what, sqlite3_errmsg(db));
	return 1;
}

/* One request and its attempts. */
static int
req_detail(sqlite3 *db, const char *rid, FILE *out)
{
	sqlite3_stmt *st = NULL;
	char b1[24], b2[24], b3[24], b4[24];
	int64_t seq;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT seq, request_id, finished_at, client, model, provider_name, pool, "
	    "status, error_code, queue_ms, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, "
	    "cost, streamed, client_disconnected FROM request_log WHERE request_id = ?1 ORDER BY seq DESC LIMIT 1",
	    -1, &st, NULL) != SQLITE_OK)
		return req_fail(db, "query");
	sqlite3_bind_text(st, 1, rid, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_finalize(st);
		fprintf(stderr, "sidecarctl: no request %s in the request log (it keeps the most recent "
		    "request_log_rows requests)\n", rid);
		return 1;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		return req_fail(db, "query");
	}
	seq = sqlite3_column_int64(st, 0);
	fprintf(out, "request   %s (seq %lld)\n", req_text(st, 1, ""), (long long)seq);
	fprintf(out, "finished  %s\n", req_text(st, 2, ""));
	fprintf(out, "client    %s\n", req_text(st, 3, "-"));
	fprintf(out, "model     %s\n", req_text(st, 4, "-"));
	fprintf(out, "provider  %s (%s)\n", req_text(st, 5, "-"), req_text(st, 6, "no pool"));
	fprintf(out, "status    %d%s%s\n", sqlite3_column_int(st, 7), sqlite3_column_bytes(st, 8) > 0 ? " " : "",
	    req_text(st, 8, ""));
	fprintf(out, "timing    queue %lld ms, first byte %s ms, total %lld ms\n",
	    (long long)sqlite3_column_int64(st, 9), req_num(st, 10, b1, sizeof(b1)),
	    (long long)sqlite3_column_int64(st, 11));
	fprintf(out, "tokens    %s (prompt %s, completion %s), cost %.6g\n", req_num(st, 14, b2, sizeof(b2)),
	    req_num(st, 12, b3, sizeof(b3)), req_num(st, 13, b4, sizeof(b4)), sqlite3_column_double(st, 15));
	fprintf(out, "streamed  %s, client disconnected %s\n", sqlite3_column_int(st, 16) ? "yes" : "no",
	    sqlite3_column_int(st, 17) ? "yes" : "no");
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db, "SELECT n, provider_name, pool, status, outcome, start_ms, duration_ms "
	    "FROM request_attempts WHERE seq = ?1 ORDER BY n", -1, &st, NULL) != SQLITE_OK)
		return req_fail(db, "attempts");
	sqlite3_bind_int64(st, 1, seq);
	fprintf(out, "attempts\n");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fprintf(out, "  %d  %-20s %-9s %3s  %-14s at +%lld ms, %lld ms\n", sqlite3_column_int(st, 0),
		    req_text(st, 1, "-"), req_text(st, 2, "-"), sqlite3_column_int(st, 3) > 0 ?
		    (const char *)sqlite3_column_text(st, 3) : "-", req_text(st, 4, "-"),
		    (long long)sqlite3_column_int64(st, 5), (long long)sqlite3_column_int64(st, 6));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : req_fail(db, "attempts");
}

int
ctl_requests_run(sqlite3 *db, int argc, char **argv, int64_t now_s, FILE *out)
{
	static const struct option opts[] = {
		{ "errors", no_argument, NULL, 'e' },
		{ "since", required_argument, NULL, 's' },
		{ "provider", required_argument, NULL, 'p' },
		{ "status", required_argument, NULL, 't' },
		{ "limit", required_argument, NULL, 'n' },
		{ "id", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *provider = NULL, *rid = NULL, *status = NULL;
	bool errors = false;
	int64_t since = -1;
	long long limit = REQ_LIMIT_DEFAULT;
	struct sc_buf sql;
	sqlite3_stmt *st = NULL;
	char *end, b1[24], b2[24];
	int ch, rc, lo = 0, hi = 0, nrows = 0;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'e': errors = true; break;
		case 'p': provider = optarg; break;
		case 'i': rid = optarg; break;
		case 's':
			if (ctl_requests_since(optarg, now_s, &since) == -1) {
				fprintf(stderr, "sidecarctl: --since %s: not a duration (30s, 10m, 2h, 7d) or a time "
				    "(Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ)\n", optarg);
				return 2;
			}
			break;
		case 't':
			status = optarg;
			if (strlen(status) == 3 && status[0] >= '1' && status[0] <= '5' &&
			    strcmp(status + 1, "xx") == 0) {
				lo = (status[0] - '0') * 100;
				hi = lo + 100;
			} else if (strlen(status) == 3 && strspn(status, "0123456789") == 3 && status[0] >= '1' &&
			    status[0] <= '5') {
				lo = atoi(status);
				hi = lo + 1;
			} else {
				fprintf(stderr, "sidecarctl: --status %s: a class (2xx, 4xx, 5xx) or a status code\n", status);
				return 2;
			}
			break;
		case 'n':
			errno = 0;
			limit = strtoll(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || limit < 1 || limit > REQ_LIMIT_MAX) {
				fprintf(stderr, "sidecarctl: --limit %s: an integer from 1 to %d\n", optarg, REQ_LIMIT_MAX);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "sidecarctl: requests: unknown or incomplete option %s\n", argv[optind - 1]);
			return req_usage();
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sidecarctl: requests: unexpected argument %s\n", argv[optind]);
		return req_usage();
	}
	if (rid != NULL)
		return req_detail(db, rid, out);

	/* The newest `limit` matches, printed oldest first. */
	sc_buf_init(&sql, 4096);
	sc_buf_printf(&sql, "SELECT * FROM (SELECT seq, finished_at, request_id, client, model, provider_name, pool, "
	    "status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, total_tokens FROM request_log WHERE 1");
	if (errors)
		sc_buf_printf(&sql, " AND (status >= 400 OR error_code <> '')");
	if (since >= 0)
		sc_buf_printf(&sql, " AND finished_ms >= %lld", (long long)since * 1000);
	if (status != NULL)
		sc_buf_printf(&sql, " AND status >= %d AND status < %d", lo, hi);
	if (provider != NULL)
		sc_buf_printf(&sql, " AND (provider_id = ?1 OR provider_name = ?1 OR seq IN (SELECT seq FROM "
		    "request_attempts WHERE provider_id = ?1 OR provider_name = ?1))");
	sc_buf_printf(&sql, " ORDER BY seq DESC LIMIT %lld) ORDER BY seq", limit);
	rc = sqlite3_prepare_v2(db, sql.data, -1, &st, NULL);
	sc_buf_free(&sql);
	if (rc != SQLITE_OK)
		return req_fail(db, "query");
	if (provider != NULL)
		sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC);
	fprintf(out, "%-20s %-36s %-14s %-28s %-16s %-9s %6s %-18s %5s %8s %8s %8s %7s\n", "FINISHED", "REQUEST ID",
	    "CLIENT", "MODEL", "PROVIDER", "POOL", "STATUS", "ERROR", "TRIES", "QUEUE_MS", "TTFB_MS", "TOTAL_MS",
	    "TOKENS");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fprintf(out, "%-20s %-36s %-14s %-28s %-16s %-9s %6d %-18s %5d %8lld %8s %8lld %7s\n",
		    req_text(st, 1, ""), req_text(st, 2, ""), req_text(st, 3, "-"), req_text(st, 4, "-"),
		    req_text(st, 5, "-"), req_text(st, 6, "-"), sqlite3_column_int(st, 7), req_text(st, 8, "-"),
		    sqlite3_column_int(st, 9), (long long)sqlite3_column_int64(st, 10), req_num(st, 11, b1, sizeof(b1)),
		    (long long)sqlite3_column_int64(st, 12), req_num(st, 13, b2, sizeof(b2)));
		nrows++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return req_fail(db, "query");
	if (nrows == 0)
		fprintf(out, "(no matching requests in the log)\n");
	return 0;
}
