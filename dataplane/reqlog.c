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
 * (and, before it, one over the attempts' (seq, n) key), and the
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

/*
 * The writer. Per row, what costs is per statement run, not per row stored:
 * a statement's start and halt, the ephemeral table SQLite builds for each
 * run of a CHECK (pool IN ('main', 'fallback', 'emergency')) and, with
 * AUTOINCREMENT, the read and write of sqlite_sequence. So rows go in
 * REQLOG_ROWS_PER_INSERT at a time (one multi-row INSERT; the rest one by
 * one), their attempts likewise, and the statements are prepared once for
 * the connection's life.
 *
 * seq is given explicitly, with AUTOINCREMENT's own rule: the first new row
 * gets one more than the larger of sqlite_sequence's counter and the
 * table's max(seq), read once per flush inside the write transaction (the
 * writer is the only inserter). SQLite still raises sqlite_sequence to the
 * largest seq inserted, so seq keeps only growing, also after the log was
 * emptied (request_log_rows 0 → N). Knowing the new max, the ring's bound
 * is computed here, and its DELETE is one range over the primary key.
 */
#define REQLOG_ROWS_PER_INSERT 16
#define REQLOG_LOG_COLS        21
#define REQLOG_ATT_COLS        9

static const char reqlog_insert_head[] =
    "INSERT INTO request_log (seq, request_id, finished_at, finished_ms, client, model, provider_id, "
    "provider_name, pool, status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, prompt_tokens, "
    "completion_tokens, total_tokens, cost, streamed, client_disconnected) VALUES ";

static const char reqlog_attempt_head[] =
    "INSERT INTO request_attempts (seq, n, provider_id, provider_name, pool, status, outcome, start_ms, "
    "duration_ms) VALUES ";

/* The largest seq ever given (sqlite_sequence) and the largest kept. */
static const char reqlog_top_sql[] =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'request_log'), 0), "
    "COALESCE((SELECT max(seq) FROM request_log), 0)";

/* The ring's two range deletes: the attempts first (the foreign key). */
static const char reqlog_prune_att_sql[] = "DELETE FROM request_attempts WHERE seq <= ?1";
static const char reqlog_prune_sql[] = "DELETE FROM request_log WHERE seq <= ?1";

/* An attempt waiting for its INSERT (its record's seq and number). */
struct reqlog_att_ref {
	int64_t                      seq;
	int                          n;
	const struct reqlog_attempt *a;
};

/* The writer's statements (reqlog.h); prepared at the first write. */
struct reqlog_writer {
	sqlite3      *db;
	sqlite3_stmt *log1, *logn;	/* one row, REQLOG_ROWS_PER_INSERT rows */
	sqlite3_stmt *att1, *attn;
	sqlite3_stmt *top, *prune_att, *prune;
	int64_t       ts_s;		/* the second ts holds, -1 none */
	char          ts[SC_TS_LEN];
	struct reqlog_att_ref pend[REQLOG_ROWS_PER_INSERT];
	int           npend;
};

struct reqlog_writer *
reqlog_writer_new(sqlite3 *db, struct sc_err *e)
{
	struct reqlog_writer *w = sc_xcalloc(1, sizeof(*w));

	(void)e;
	w->db = db;
	w->ts_s = -1;
	return w;
}

/* Finalize the writer's statements (prepared or not) and forget them. */
static void
reqlog_writer_finalize(struct reqlog_writer *w)
{
	sqlite3_finalize(w->log1);
	sqlite3_finalize(w->logn);
	sqlite3_finalize(w->att1);
	sqlite3_finalize(w->attn);
	sqlite3_finalize(w->top);
	sqlite3_finalize(w->prune_att);
	sqlite3_finalize(w->prune);
	w->log1 = w->logn = w->att1 = w->attn = w->top = w->prune_att = w->prune = NULL;
}

void
reqlog_writer_free(struct reqlog_writer *w)
{
	if (w == NULL)
		return;
	reqlog_writer_finalize(w);
	free(w);
}

/* head followed by rows groups of cols parameters. */
static int
reqlog_prepare_insert(sqlite3 *db, const char *head, int cols, int rows, sqlite3_stmt **st)
{
	size_t hl = strlen(head), len = hl + (size_t)rows * ((size_t)cols * 2 + 3) + 1, at = hl;
	char *sql = sc_xmalloc(len);
	int r, c, rc;

	memcpy(sql, head, hl);
	for (r = 0; r < rows; r++) {
		if (r > 0)
			sql[at++] = ',';
		sql[at++] = '(';
		for (c = 0; c < cols; c++) {
			if (c > 0)
				sql[at++] = ',';
			sql[at++] = '?';
		}
		sql[at++] = ')';
	}
	sql[at] = '\0';
	rc = sqlite3_prepare_v3(db, sql, (int)at + 1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	free(sql);
	return rc;
}

static int
reqlog_writer_prepare(struct reqlog_writer *w)
{
	int rc;

	if (w->prune != NULL)
		return SQLITE_OK;
	if ((rc = reqlog_prepare_insert(w->db, reqlog_insert_head, REQLOG_LOG_COLS, 1, &w->log1)) != SQLITE_OK ||
	    (rc = reqlog_prepare_insert(w->db, reqlog_insert_head, REQLOG_LOG_COLS, REQLOG_ROWS_PER_INSERT,
	    &w->logn)) != SQLITE_OK ||
	    (rc = reqlog_prepare_insert(w->db, reqlog_attempt_head, REQLOG_ATT_COLS, 1, &w->att1)) != SQLITE_OK ||
	    (rc = reqlog_prepare_insert(w->db, reqlog_attempt_head, REQLOG_ATT_COLS, REQLOG_ROWS_PER_INSERT,
	    &w->attn)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v3(w->db, reqlog_top_sql, -1, SQLITE_PREPARE_PERSISTENT, &w->top, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v3(w->db, reqlog_prune_att_sql, -1, SQLITE_PREPARE_PERSISTENT, &w->prune_att,
	    NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v3(w->db, reqlog_prune_sql, -1, SQLITE_PREPARE_PERSISTENT, &w->prune,
	    NULL)) != SQLITE_OK) {
		reqlog_writer_finalize(w);
		return rc;
	}
	return SQLITE_OK;
}

/* Bind a string, or NULL when it is empty and null_if_empty. */
static void
reqlog_bind_text(sqlite3_stmt *st, int i, const char *s, bool null_if_empty)
{
	if (s == NULL || (null_if_empty && s[0] == '\0'))
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* Record r as seq into the parameters from i + 1 on. The timestamp text
 * (w->ts) is formatted once per second of finished_ms and bound without a
 * copy: a group holds rows of one second only and runs before the next
 * second is formatted (reqlog_insert_rows). */
static void
reqlog_bind_row(struct reqlog_writer *w, sqlite3_stmt *st, int i, const struct reqlog_record *r, int64_t seq)
{
	sqlite3_bind_int64(st, i + 1, seq);
	sqlite3_bind_text(st, i + 2, r->request_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 3, w->ts, SC_TS_LEN - 1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i + 4, r->finished_ms);
	sqlite3_bind_text(st, i + 5, r->client, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 6, r->model, -1, SQLITE_STATIC);
	reqlog_bind_text(st, i + 7, r->provider_id, true);
	sqlite3_bind_text(st, i + 8, r->provider_name, -1, SQLITE_STATIC);
	reqlog_bind_text(st, i + 9, r->provider_id[0] != '\0' ? sched_pool_name(r->pool) : NULL, true);
	sqlite3_bind_int(st, i + 10, r->status);
	sqlite3_bind_text(st, i + 11, r->error_code, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, i + 12, r->natt);
	sqlite3_bind_int64(st, i + 13, r->queue_ms);
	sqlite3_bind_int64(st, i + 14, r->ttfb_ms);
	sqlite3_bind_int64(st, i + 15, r->latency_ms);
	sqlite3_bind_int64(st, i + 16, r->prompt_tokens);
	sqlite3_bind_int64(st, i + 17, r->completion_tokens);
	sqlite3_bind_int64(st, i + 18, r->total_tokens);
	sqlite3_bind_double(st, i + 19, r->cost);
	sqlite3_bind_int(st, i + 20, r->streamed);
	sqlite3_bind_int(st, i + 21, r->client_disconnected);
}

static void
reqlog_bind_att(sqlite3_stmt *st, int i, const struct reqlog_att_ref *ref)
{
	const struct reqlog_attempt *a = ref->a;

	sqlite3_bind_int64(st, i + 1, ref->seq);
	sqlite3_bind_int(st, i + 2, ref->n);
	sqlite3_bind_text(st, i + 3, a->provider_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 4, a->provider_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 5, sched_pool_name(a->pool), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, i + 6, a->status);
	sqlite3_bind_text(st, i + 7, reqlog_outcome_name(a->outcome), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i + 8, a->start_ms);
	sqlite3_bind_int64(st, i + 9, a->duration_ms);
}

/* Run a bound statement; SQLITE_DONE or the failing code. */
static int
reqlog_run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc;
}

/* The pending attempts: a full group as one INSERT, else one by one. */
static int
reqlog_flush_att(struct reqlog_writer *w)
{
	int k, rc = SQLITE_DONE;

	if (w->npend == REQLOG_ROWS_PER_INSERT) {
		for (k = 0; k < w->npend; k++)
			reqlog_bind_att(w->attn, k * REQLOG_ATT_COLS, &w->pend[k]);
		rc = reqlog_run(w->attn);
	} else {
		for (k = 0; k < w->npend && rc == SQLITE_DONE; k++) {
			reqlog_bind_att(w->att1, 0, &w->pend[k]);
			rc = reqlog_run(w->att1);
		}
	}
	w->npend = 0;
	return rc;
}

/* Records b->r[from .. to) as seq first_seq on, REQLOG_ROWS_PER_INSERT at
 * a time where they share their second (finished_at), else one by one. */
static int
reqlog_insert_rows(struct reqlog_writer *w, const struct reqlog_batch *b, size_t from, size_t to,
    int64_t first_seq)
{
	size_t i = from, j;
	int rc;

	while (i < to) {
		int64_t s = b->r[i].finished_ms / 1000;
		size_t same = 1;

		if (s != w->ts_s) {
			sc_ts_format(s, w->ts);
			w->ts_s = s;
		}
		while (i + same < to && same < REQLOG_ROWS_PER_INSERT && b->r[i + same].finished_ms / 1000 == s)
			same++;
		if (same == REQLOG_ROWS_PER_INSERT) {
			for (j = 0; j < same; j++)
				reqlog_bind_row(w, w->logn, (int)j * REQLOG_LOG_COLS, &b->r[i + j],
				    first_seq + (int64_t)(i + j - from));
			rc = reqlog_run(w->logn);
		} else {
			for (j = 0, rc = SQLITE_DONE; j < same && rc == SQLITE_DONE; j++) {
				reqlog_bind_row(w, w->log1, 0, &b->r[i + j], first_seq + (int64_t)(i + j - from));
				rc = reqlog_run(w->log1);
			}
		}
		if (rc != SQLITE_DONE)
			return rc;
		i += same;
	}
	return SQLITE_DONE;
}

/*
 * With foreign keys enforced, each range delete is a "complex" DELETE to
 * SQLite: it first collects the doomed keys (a RowSet for request_log, an
 * ephemeral index for the WITHOUT ROWID attempts), then seeks every row
 * again, and checks each one: every attempt's parent, every row's children.
 * Each INSERTed attempt looks its parent up too. That was 28 % of the
 * writer's instructions per row (bench/reqlog_write). Without enforcement
 * both deletes run in one pass and the checks go. The writer keeps the key
 * itself: attempts go in after their rows, with those rows' seq, in the
 * same transaction, and the ring deletes attempts before rows, by the same
 * bound (test_write_many runs PRAGMA foreign_key_check after it). Every
 * other connection, and the writer's queued jobs (stats_submit), still
 * enforce it, so the schema refuses orphans from anyone else.
 * sqlite3_db_config changes the flag outside a transaction only, and
 * expires the connection's statements (re-prepared once per flush: a few
 * hundred instructions per flush, not per row).
 */
int
reqlog_write_txn(sqlite3 *db, db_txn_fn fn, void *arg, struct sc_err *e)
{
	int r;

	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FKEY, 0, (int *)NULL);
	r = db_write_txn(db, fn, arg, e);
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FKEY, 1, (int *)NULL);
	return r;
}

int
reqlog_write(struct reqlog_writer *w, const struct reqlog_batch *b, int keep, struct sc_err *e)
{
	sqlite3 *db = w->db;
	int64_t counter, kept_max, base, bound;
	size_t i, first;
	int rc, k;

	if (keep < 0)
		keep = 0;
	w->npend = 0;
	if ((rc = reqlog_writer_prepare(w)) != SQLITE_OK)
		goto dberr;
	if ((rc = sqlite3_step(w->top)) != SQLITE_ROW) {
		sqlite3_reset(w->top);
		goto dberr;
	}
	counter = sqlite3_column_int64(w->top, 0);
	kept_max = sqlite3_column_int64(w->top, 1);
	sqlite3_reset(w->top);
	base = counter > kept_max ? counter : kept_max;
	bound = kept_max;
	first = b->n > (size_t)keep ? b->n - (size_t)keep : 0;
	if (first < b->n) {
		if ((rc = reqlog_insert_rows(w, b, first, b->n, base + 1)) != SQLITE_DONE)
			goto dberr;
		/* The attempts after their rows (the foreign key). */
		for (i = first; i < b->n; i++) {
			for (k = 0; k < b->r[i].natt; k++) {
				struct reqlog_att_ref *ref = &w->pend[w->npend++];
				ref->seq = base + 1 + (int64_t)(i - first);
				ref->n = k + 1;
				ref->a = b->r[i].att != NULL ? &b->r[i].att[k] : &b->r[i].first;
				if (w->npend == REQLOG_ROWS_PER_INSERT && (rc = reqlog_flush_att(w)) != SQLITE_DONE)
					goto dberr;
			}
		}
		if ((rc = reqlog_flush_att(w)) != SQLITE_DONE)
			goto dberr;
		bound = base + (int64_t)(b->n - first);
	}
	/* The ring: everything but the newest keep rows goes. */
	bound -= keep;
	if (bound > 0) {
		sqlite3_bind_int64(w->prune_att, 1, bound);
		sqlite3_bind_int64(w->prune, 1, bound);
		if ((rc = reqlog_run(w->prune_att)) != SQLITE_DONE || (rc = reqlog_run(w->prune)) != SQLITE_DONE)
			goto dberr;
	}
	return 0;
dberr:
	return db_set_err(db, rc, e, "request log");
}
