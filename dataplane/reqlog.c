/*
 * The request log: per-request trails of attempts, the records the loop
 * thread hands to the statistics writer, and their INSERTs and pruning
 * (reqlog.h).
 *
 * Why a ring by seq: seq is an AUTOINCREMENT key (it only grows, even when
 * the log was emptied, so the event stream's cursor never goes back) and, in
 * the same transaction as the inserts, every row with seq <= max - N goes.
 * Rows are only ever removed from the low end, so the table holds exactly
 * min(N, requests seen) rows, the deletion is one range over the primary key
 * (attempts follow through ON DELETE CASCADE on their (seq, n) key), and the
 * pages SQLite frees are reused by the next inserts: the file stops growing
 * once it holds N rows. When a batch is larger than N only its newest N
 * records are inserted, since the rest would be deleted at once.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "events.h"
#include "reqlog.h"

static const char *const reqlog_outcomes[REQLOG_OUTCOME_N] = {
	"pending", "ok", "rate_limited", "invalid_key", "server_error", "client_error",
	"connect_error", "ttfb_timeout", "start_failed", "client_closed", "interrupted",
};

const char *
reqlog_outcome_name(enum reqlog_outcome o)
{
	return o >= 0 && o < REQLOG_OUTCOME_N ? reqlog_outcomes[o] : "pending";
}

enum reqlog_outcome
reqlog_outcome_of(bool failed, bool ttfb, int status)
{
	if (failed)
		return ttfb ? REQLOG_TTFB_TIMEOUT : REQLOG_CONNECT_ERROR;
	if (status >= 200 && status < 300)
		return REQLOG_OK;
	if (status == 429)
		return REQLOG_RATE_LIMITED;
	if (status == 401 || status == 403)
		return REQLOG_INVALID_KEY;
	if (status >= 500)
		return REQLOG_SERVER_ERROR;
	return REQLOG_CLIENT_ERROR;
}

void
reqlog_trail_init(struct reqlog_trail *t)
{
	memset(t, 0, sizeof(*t));
}

void
reqlog_trail_free(struct reqlog_trail *t)
{
	if (t->a != &t->first)
		free(t->a);
	reqlog_trail_init(t);
}

struct reqlog_attempt *
reqlog_trail_open(struct reqlog_trail *t)
{
	return t->n > 0 && t->a[t->n - 1].outcome == REQLOG_PENDING ? &t->a[t->n - 1] : NULL;
}

void
reqlog_trail_begin(struct reqlog_trail *t, const char *provider_id, const char *provider_name,
    enum sched_pool pool, int64_t start_ms)
{
	struct reqlog_attempt *a;

	if (t->n >= REQLOG_ATTEMPTS_MAX)
		return;
	if (t->cap == 0) {
		t->a = &t->first;	/* most requests make one attempt */
		t->cap = 1;
	} else if (t->n == t->cap) {
		struct reqlog_attempt *was = t->a == &t->first ? NULL : t->a;

		t->a = sc_xrealloc(was, (size_t)t->cap * 2 * sizeof(*t->a));
		if (was == NULL)
			t->a[0] = t->first;
		t->cap *= 2;
	}
	a = &t->a[t->n++];
	memset(a, 0, sizeof(*a));
	sc_strlcpy(a->provider_id, provider_id ? provider_id : "", sizeof(a->provider_id));
	sc_strlcpy(a->provider_name, provider_name ? provider_name : "", sizeof(a->provider_name));
	a->pool = pool;
	a->outcome = REQLOG_PENDING;
	a->start_ms = start_ms;
}

void
reqlog_trail_end(struct reqlog_trail *t, enum reqlog_outcome o, int status, int64_t now_ms)
{
	struct reqlog_attempt *a = reqlog_trail_open(t);

	if (a == NULL)
		return;
	a->outcome = o == REQLOG_PENDING ? REQLOG_CLIENT_CLOSED : o;
	a->status = status;
	a->duration_ms = now_ms > a->start_ms ? now_ms - a->start_ms : 0;
}

void
reqlog_trail_finish(struct reqlog_trail *t, enum reqlog_outcome how, int status, int64_t now_ms)
{
	struct reqlog_attempt *a;

	if (reqlog_trail_open(t) != NULL) {
		reqlog_trail_end(t, how == REQLOG_PENDING ? REQLOG_INTERRUPTED : how, status, now_ms);
		return;
	}
	if (how == REQLOG_PENDING || t->n == 0 || (a = &t->a[t->n - 1])->outcome != REQLOG_OK)
		return;
	a->outcome = how;
	a->duration_ms = now_ms > a->start_ms ? now_ms - a->start_ms : 0;
}

void
reqlog_trail_late(struct reqlog_trail *t, enum reqlog_outcome o, int status)
{
	struct reqlog_attempt *a;

	if (t->n == 0 || (a = &t->a[t->n - 1])->outcome != REQLOG_OK)
		return;
	a->outcome = o;
	a->status = status;
}

void
reqlog_record_free(struct reqlog_record *r)
{
	free(r->att);
	r->att = NULL;
	r->natt = 0;
}

void
reqlog_batch_init(struct reqlog_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void
reqlog_batch_free(struct reqlog_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		reqlog_record_free(&b->r[i]);
	free(b->r);
	reqlog_batch_init(b);
}

struct reqlog_record *
reqlog_batch_add(struct reqlog_batch *b)
{
	struct reqlog_record *r;

	if (b->n >= REQLOG_BATCH_MAX) {
		b->dropped++;
		return NULL;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		if (b->cap > REQLOG_BATCH_MAX)
			b->cap = REQLOG_BATCH_MAX;
		b->r = sc_xrealloc(b->r, b->cap * sizeof(*b->r));
	}
	r = &b->r[b->n++];
	memset(r, 0, sizeof(*r));
	return r;
}

void
reqlog_batch_merge(struct reqlog_batch *dst, struct reqlog_batch *src)
{
	size_t total, drop, i;

	if (src->n == 0) {
		dst->dropped += src->dropped;
		reqlog_batch_free(src);
		return;
	}
	if (dst->n == 0) {
		uint64_t dropped = dst->dropped + src->dropped;
		reqlog_batch_free(dst);
		*dst = *src;
		dst->dropped = dropped;
		reqlog_batch_init(src);
		return;
	}
	/* Over the cap the oldest go: the ring would delete them first anyway. */
	total = dst->n + src->n;
	drop = total > REQLOG_BATCH_MAX ? total - REQLOG_BATCH_MAX : 0;
	for (i = 0; i < drop && i < dst->n; i++)
		reqlog_record_free(&dst->r[i]);
	if (drop >= dst->n) {
		size_t from_src = drop - dst->n;
		dst->n = 0;
		for (i = 0; i < from_src; i++)
			reqlog_record_free(&src->r[i]);
		memmove(src->r, src->r + from_src, (src->n - from_src) * sizeof(*src->r));
		src->n -= from_src;
	} else {
		memmove(dst->r, dst->r + drop, (dst->n - drop) * sizeof(*dst->r));
		dst->n -= drop;
	}
	if (dst->cap < dst->n + src->n) {
		dst->cap = dst->n + src->n;
		dst->r = sc_xrealloc(dst->r, dst->cap * sizeof(*dst->r));
	}
	memcpy(dst->r + dst->n, src->r, src->n * sizeof(*src->r));
	dst->n += src->n;
	dst->dropped += src->dropped + drop;
	free(src->r);
	reqlog_batch_init(src);
}

void
reqlog_record_fill(struct reqlog_record *r, const struct request_result *res, int64_t wall_ms)
{
	const struct reqlog_trail *t = res->trail;

	sc_strlcpy(r->request_id, res->rid ? res->rid : "", sizeof(r->request_id));
	r->finished_ms = wall_ms;
	sc_strlcpy(r->client, res->client ? res->client : "", sizeof(r->client));
	sc_strlcpy(r->model, res->model ? res->model : "", sizeof(r->model));
	sc_strlcpy(r->provider_id, res->provider_id ? res->provider_id : "", sizeof(r->provider_id));
	sc_strlcpy(r->provider_name, res->provider_id && res->provider_name ? res->provider_name : "",
	    sizeof(r->provider_name));
	r->pool = res->provider_id ? res->pool : SCHED_POOL_MAIN;
	r->status = res->status;
	sc_strlcpy(r->error_code, res->error_code ? res->error_code : "", sizeof(r->error_code));
	r->queue_ms = res->queue_ms > 0 ? res->queue_ms : 0;
	r->ttfb_ms = res->ttfb_ms;
	r->latency_ms = res->latency_ms;
	r->prompt_tokens = res->prompt_tokens;
	r->completion_tokens = res->completion_tokens;
	r->total_tokens = res->total_tokens;
	r->cost = res->total_tokens > 0 ? (double)res->total_tokens / 1000.0 * res->cost_per_1k : 0;
	r->streamed = res->stream != 0;
	r->client_disconnected = res->client_closed != 0;
	if (t != NULL && t->n == 1) {
		r->first = t->a[0];	/* no allocation per request */
		r->natt = 1;
	} else if (t != NULL && t->n > 1) {
		r->att = sc_xmalloc((size_t)t->n * sizeof(*r->att));
		memcpy(r->att, t->a, (size_t)t->n * sizeof(*r->att));
		r->natt = t->n;
	}
}

static const char reqlog_insert_sql[] =
    "INSERT INTO request_log (request_id, finished_at, finished_ms, client, model, provider_id, "
    "provider_name, pool, status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, prompt_tokens, "
    "completion_tokens, total_tokens, cost, streamed, client_disconnected) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

static const char reqlog_attempt_sql[] =
    "INSERT INTO request_attempts (seq, n, provider_id, provider_name, pool, status, outcome, start_ms, "
    "duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/* Bind a string, or NULL when it is empty and null_if_empty. */
static void
reqlog_bind_text(sqlite3_stmt *st, int i, const char *s, bool null_if_empty)
{
	if (s == NULL || (null_if_empty && s[0] == '\0'))
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* One row and its attempts; SQLITE_DONE or the failing code. */
static int
reqlog_insert(sqlite3 *db, sqlite3_stmt *si, sqlite3_stmt *sa, const struct reqlog_record *r)
{
	char ts[SC_TS_LEN];
	int64_t seq;
	int rc, k;

	sc_ts_format(r->finished_ms / 1000, ts);
	sqlite3_bind_text(si, 1, r->request_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(si, 2, ts, -1, SQLITE_STATIC);
	sqlite3_bind_int64(si, 3, r->finished_ms);
	sqlite3_bind_text(si, 4, r->client, -1, SQLITE_STATIC);
	sqlite3_bind_text(si, 5, r->model, -1, SQLITE_STATIC);
	reqlog_bind_text(si, 6, r->provider_id, true);
	sqlite3_bind_text(si, 7, r->provider_name, -1, SQLITE_STATIC);
	reqlog_bind_text(si, 8, r->provider_id[0] != '\0' ? sched_pool_name(r->pool) : NULL, true);
	sqlite3_bind_int(si, 9, r->status);
	sqlite3_bind_text(si, 10, r->error_code, -1, SQLITE_STATIC);
	sqlite3_bind_int(si, 11, r->natt);
	sqlite3_bind_int64(si, 12, r->queue_ms);
	sqlite3_bind_int64(si, 13, r->ttfb_ms);
	sqlite3_bind_int64(si, 14, r->latency_ms);
	sqlite3_bind_int64(si, 15, r->prompt_tokens);
	sqlite3_bind_int64(si, 16, r->completion_tokens);
	sqlite3_bind_int64(si, 17, r->total_tokens);
	sqlite3_bind_double(si, 18, r->cost);
	sqlite3_bind_int(si, 19, r->streamed);
	sqlite3_bind_int(si, 20, r->client_disconnected);
	rc = sqlite3_step(si);
	sqlite3_reset(si);
	if (rc != SQLITE_DONE)
		return rc;
	seq = sqlite3_last_insert_rowid(db);
	for (k = 0; k < r->natt; k++) {
		const struct reqlog_attempt *a = r->att != NULL ? &r->att[k] : &r->first;
		sqlite3_bind_int64(sa, 1, seq);
		sqlite3_bind_int(sa, 2, k + 1);
		sqlite3_bind_text(sa, 3, a->provider_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(sa, 4, a->provider_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(sa, 5, sched_pool_name(a->pool), -1, SQLITE_STATIC);
		sqlite3_bind_int(sa, 6, a->status);
		sqlite3_bind_text(sa, 7, reqlog_outcome_name(a->outcome), -1, SQLITE_STATIC);
		sqlite3_bind_int64(sa, 8, a->start_ms);
		sqlite3_bind_int64(sa, 9, a->duration_ms);
		rc = sqlite3_step(sa);
		sqlite3_reset(sa);
		if (rc != SQLITE_DONE)
			return rc;
	}
	return SQLITE_DONE;
}

int
reqlog_write(sqlite3 *db, const struct reqlog_batch *b, int keep, struct sc_err *e)
{
	sqlite3_stmt *si = NULL, *sa = NULL, *sd = NULL;
	size_t i, first;
	int rc, ret = -1;

	if (keep < 0)
		keep = 0;
	first = b->n > (size_t)keep ? b->n - (size_t)keep : 0;
	if (first < b->n) {
		if ((rc = sqlite3_prepare_v2(db, reqlog_insert_sql, -1, &si, NULL)) != SQLITE_OK ||
		    (rc = sqlite3_prepare_v2(db, reqlog_attempt_sql, -1, &sa, NULL)) != SQLITE_OK)
			goto dberr;
		for (i = first; i < b->n; i++)
			if ((rc = reqlog_insert(db, si, sa, &b->r[i])) != SQLITE_DONE)
				goto dberr;
	}
	/* The ring: everything but the newest keep rows goes. */
	if ((rc = sqlite3_prepare_v2(db, "DELETE FROM request_log WHERE seq <= "
	    "(SELECT COALESCE(max(seq), 0) FROM request_log) - ?1", -1, &sd, NULL)) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(sd, 1, keep);
	if ((rc = sqlite3_step(sd)) != SQLITE_DONE)
		goto dberr;
	ret = 0;
	goto out;
dberr:
	db_set_err(db, rc, e, "request log");
out:
	sqlite3_finalize(si);
	sqlite3_finalize(sa);
	sqlite3_finalize(sd);
	return ret;
}
