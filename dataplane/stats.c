/*
 * Usage statistics: the in-memory aggregate, its UPSERTs, retention pruning
 * and the writer thread that runs them off the event loop (stats.h).
 *
 * Why a thread: a flush is a handful of UPSERTs, well under a millisecond on
 * an idle disk, but a commit may have to wait for the write lock that
 * sidecar-admin or sidecarctl holds (up to the busy budget of seconds) or run
 * a WAL checkpoint with fsync. Neither may stall the requests in flight, so
 * the loop only swaps pointers and the writer, with its own connection,
 * takes the waits. Averages are never stored from memory: every UPSERT adds
 * counts and latency_sum_ms and recomputes avg_latency_ms from the sums in
 * SQL, so two writers (or a restart) can interleave without skewing it.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "events.h"
#include "reqlog.h"
#include "stats.h"

#define STATS_PRUNE_EVERY_S 86400	/* retention pruning once a day */

const double stats_flush_bounds[STATS_FLUSH_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
};

int
stats_sample_from(const struct request_result *r, int64_t wall_s, struct stats_sample *s)
{
	const char *model;
	int ok = r->status >= 200 && r->status < 300;
	int64_t lat;

	if (r->provider_id == NULL || !r->upstream_sent)
		return -1;
	memset(s, 0, sizeof(*s));
	sc_strlcpy(s->provider_id, r->provider_id, sizeof(s->provider_id));
	model = r->upstream_model != NULL ? r->upstream_model : r->model != NULL ? r->model : "";
	sc_strlcpy(s->model, model, sizeof(s->model));
	s->pool = r->pool;
	s->wall_s = wall_s;
	if (r->total_tokens >= 0) {
		s->total_tokens = r->total_tokens;
		s->prompt_tokens = r->prompt_tokens > 0 ? r->prompt_tokens : 0;
		s->completion_tokens = r->completion_tokens > 0 ? r->completion_tokens : 0;
	} else {
		/* Tokens were spent but never reported: say so instead of a silent 0. */
		s->unknown_usage = ok;
	}
	s->cost = (double)s->total_tokens / 1000.0 * r->cost_per_1k;
	s->error = r->error;
	/* Streams: time to first token; otherwise the whole response. The time
	 * parked in our queue is the sidecar's, not the provider's. */
	lat = r->stream && r->ttfb_ms >= 0 ? r->ttfb_ms : r->latency_ms;
	lat -= r->queue_ms > 0 ? r->queue_ms : 0;
	s->latency_ms = lat > 0 ? lat : 0;
	return 0;
}

void
stats_agg_init(struct stats_agg *a)
{
	memset(a, 0, sizeof(*a));
}

void
stats_agg_free(struct stats_agg *a)
{
	size_t i;

	for (i = 0; i < a->nu; i++)
		free(a->u[i].model);
	free(a->u);
	free(a->idx);
	free(a->d);
	stats_agg_init(a);
}

int
stats_agg_empty(const struct stats_agg *a)
{
	return a->nu == 0 && a->nd == 0;
}

/* A hash of the three parts of a usage key, 8 bytes per step (every
 * finished request comes here; a byte per step cost more than the rest of
 * the add). Each part's length goes in with its tail, so ("ab", "c") and
 * ("a", "bc") differ. */
static uint32_t
stats_hash(const char *pid, const char *model, const char *hour)
{
	const char *parts[3] = { pid, model, hour };
	uint64_t h = 0xcbf29ce484222325ULL, w;
	int k;

	for (k = 0; k < 3; k++) {
		const char *p = parts[k];
		size_t n = strlen(p), i;

		for (i = 0; i + 8 <= n; i += 8) {
			memcpy(&w, p + i, 8);
			h = (h ^ w) * 0x100000001b3ULL;
			h ^= h >> 29;
		}
		for (w = n; i < n; i++)
			w = (w << 8) | (unsigned char)p[i];
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static void
stats_rehash(struct stats_agg *a, size_t nidx)
{
	size_t i;

	free(a->idx);
	a->idx = sc_xcalloc(nidx, sizeof(*a->idx));
	a->nidx = nidx;
	for (i = 0; i < a->nu; i++) {
		size_t j = stats_hash(a->u[i].provider_id, a->u[i].model, a->u[i].hour) & (nidx - 1);
		while (a->idx[j] != 0)
			j = (j + 1) & (nidx - 1);
		a->idx[j] = (uint32_t)i + 1;
	}
}

/* The usage row for a key, created when missing; NULL at the cap. */
static struct stats_usage *
stats_usage_get(struct stats_agg *a, const char *pid, const char *model, const char *hour)
{
	struct stats_usage *u;
	size_t j;

	if (a->last > 0 && a->last <= a->nu) {
		u = &a->u[a->last - 1];
		if (strcmp(u->provider_id, pid) == 0 && strcmp(u->hour, hour) == 0 && strcmp(u->model, model) == 0)
			return u;
	}
	if (a->nidx == 0)
		stats_rehash(a, 64);
	j = stats_hash(pid, model, hour) & (a->nidx - 1);
	while (a->idx[j] != 0) {
		u = &a->u[a->idx[j] - 1];
		if (strcmp(u->provider_id, pid) == 0 && strcmp(u->hour, hour) == 0 && strcmp(u->model, model) == 0) {
			a->last = a->idx[j];
			return u;
		}
		j = (j + 1) & (a->nidx - 1);
	}
	if (a->nu >= STATS_MAX_ENTRIES)
		return NULL;
	if (a->nu == a->cu) {
		a->cu = a->cu ? a->cu * 2 : 16;
		a->u = sc_xrealloc(a->u, a->cu * sizeof(*a->u));
	}
	u = &a->u[a->nu];
	memset(u, 0, sizeof(*u));
	sc_strlcpy(u->provider_id, pid, sizeof(u->provider_id));
	u->model = sc_xstrdup(model);
	sc_strlcpy(u->hour, hour, sizeof(u->hour));
	a->idx[j] = (uint32_t)a->nu + 1;
	a->nu++;
	a->last = a->nu;
	if (a->nu * 2 > a->nidx)
		stats_rehash(a, a->nidx * 2);
	return &a->u[a->nu - 1];
}

static struct stats_daily *
stats_daily_get(struct stats_agg *a, const char *date, enum sched_pool pool)
{
	size_t i;

	for (i = 0; i < a->nd; i++)
		if (a->d[i].pool == pool && strcmp(a->d[i].date, date) == 0)
			return &a->d[i];
	if (a->nd == a->cd) {
		a->cd = a->cd ? a->cd * 2 : 4;
		a->d = sc_xrealloc(a->d, a->cd * sizeof(*a->d));
	}
	memset(&a->d[a->nd], 0, sizeof(a->d[0]));
	sc_strlcpy(a->d[a->nd].date, date, sizeof(a->d[0].date));
	a->d[a->nd].pool = pool;
	return &a->d[a->nd++];
}

int
stats_agg_add(struct stats_agg *a, const struct stats_sample *s)
{
	struct stats_usage *u;
	struct stats_daily *d;

	if (!a->bucket_set || a->bucket_hour != s->wall_s / 3600) {
		sc_hour_bucket(s->wall_s, a->hour);
		sc_date(s->wall_s, a->date);
		a->bucket_hour = s->wall_s / 3600;
		a->bucket_set = true;
	}
	if ((u = stats_usage_get(a, s->provider_id, s->model, a->hour)) == NULL) {
		a->dropped++;
		return -1;
	}
	u->prompt_tokens += s->prompt_tokens;
	u->completion_tokens += s->completion_tokens;
	u->total_tokens += s->total_tokens;
	u->cost += s->cost;
	u->requests++;
	u->errors += s->error != 0;
	u->unknown_usage += s->unknown_usage != 0;
	u->latency_sum_ms += s->latency_ms;
	d = stats_daily_get(a, a->date, s->pool);
	d->requests++;
	d->errors += s->error != 0;
	d->tokens += s->total_tokens;
	d->cost += s->cost;
	return 0;
}

void
stats_agg_merge(struct stats_agg *dst, struct stats_agg *src)
{
	size_t i;

	if (stats_agg_empty(dst)) {
		uint64_t dropped = dst->dropped + src->dropped;
		stats_agg_free(dst);
		*dst = *src;
		dst->dropped = dropped;
		stats_agg_init(src);
		return;
	}
	for (i = 0; i < src->nu; i++) {
		const struct stats_usage *s = &src->u[i];
		struct stats_usage *u = stats_usage_get(dst, s->provider_id, s->model, s->hour);
		if (u == NULL) {
			dst->dropped += (uint64_t)s->requests;
			continue;
		}
		u->prompt_tokens += s->prompt_tokens;
		u->completion_tokens += s->completion_tokens;
		u->total_tokens += s->total_tokens;
		u->cost += s->cost;
		u->requests += s->requests;
		u->errors += s->errors;
		u->unknown_usage += s->unknown_usage;
		u->latency_sum_ms += s->latency_sum_ms;
	}
	for (i = 0; i < src->nd; i++) {
		const struct stats_daily *s = &src->d[i];
		struct stats_daily *d = stats_daily_get(dst, s->date, s->pool);
		d->requests += s->requests;
		d->errors += s->errors;
		d->tokens += s->tokens;
		d->cost += s->cost;
	}
	dst->dropped += src->dropped;
	stats_agg_free(src);
}

/* Counts add up; the average is recomputed from the sums, never stored from
 * memory. A row of a provider deleted meanwhile is skipped (its usage went
 * with it, ON DELETE CASCADE). */
static const char stats_usage_sql[] =
    "INSERT INTO provider_usage_logs (id, provider_id, model, prompt_tokens, completion_tokens, "
    "total_tokens, cost, request_count, error_count, unknown_usage_count, latency_sum_ms, "
    "avg_latency_ms, hour_bucket, updated_at) "
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, CASE WHEN ?8 > 0 THEN ?11 / ?8 ELSE 0 END, "
    "?12, ?13 WHERE EXISTS (SELECT 1 FROM providers WHERE id = ?2) "
    "ON CONFLICT (provider_id, model, hour_bucket) DO UPDATE SET "
    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens, "
    "total_tokens = total_tokens + excluded.total_tokens, "
    "cost = cost + excluded.cost, "
    "request_count = request_count + excluded.request_count, "
    "error_count = error_count + excluded.error_count, "
    "unknown_usage_count = unknown_usage_count + excluded.unknown_usage_count, "
    "latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms, "
    "avg_latency_ms = CASE WHEN request_count + excluded.request_count > 0 THEN "
    "(latency_sum_ms + excluded.latency_sum_ms) / (request_count + excluded.request_count) ELSE 0 END, "
    "updated_at = excluded.updated_at";

static const char stats_daily_sql[] =
    "INSERT INTO daily_stats (id, date, pool, total_requests, total_errors, total_tokens, total_cost) "
    "VALUES (?1 || '|' || ?2, ?1, ?2, ?3, ?4, ?5, ?6) "
    "ON CONFLICT (date, pool) DO UPDATE SET "
    "total_requests = total_requests + excluded.total_requests, "
    "total_errors = total_errors + excluded.total_errors, "
    "total_tokens = total_tokens + excluded.total_tokens, "
    "total_cost = total_cost + excluded.total_cost";

/* Distinct providers with usage that day, by their pool; the emergency
 * channel borrows a main or fallback key, and which ones is not kept per
 * row, so its day counts at least one. */
static const char stats_unique_sql[] =
    "UPDATE daily_stats SET unique_providers = CASE WHEN pool = 'emergency' "
    "THEN max(unique_providers, 1) ELSE (SELECT count(DISTINCT u.provider_id) "
    "FROM provider_usage_logs u JOIN providers p ON p.id = u.provider_id "
    "WHERE u.hour_bucket BETWEEN ?1 || 'T00' AND ?1 || 'T23' AND p.pool = daily_stats.pool) END "
    "WHERE date = ?1 AND pool = ?2";

int
stats_write(sqlite3 *db, const struct stats_agg *a, struct sc_err *e)
{
	sqlite3_stmt *su = NULL, *sd = NULL, *sq = NULL;
	char now[SC_TS_LEN], id[512];
	size_t i;
	int rc, ret = -1;

	sc_ts_format(sc_wall_ms() / 1000, now);
	if ((rc = sqlite3_prepare_v2(db, stats_usage_sql, -1, &su, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(db, stats_daily_sql, -1, &sd, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(db, stats_unique_sql, -1, &sq, NULL)) != SQLITE_OK) {
		db_set_err(db, rc, e, "statistics");
		goto out;
	}
	for (i = 0; i < a->nu; i++) {
		const struct stats_usage *u = &a->u[i];
		snprintf(id, sizeof(id), "%s|%s|%s", u->provider_id, u->model, u->hour);
		sqlite3_bind_text(su, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(su, 2, u->provider_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(su, 3, u->model, -1, SQLITE_STATIC);
		sqlite3_bind_int64(su, 4, u->prompt_tokens);
		sqlite3_bind_int64(su, 5, u->completion_tokens);
		sqlite3_bind_int64(su, 6, u->total_tokens);
		sqlite3_bind_double(su, 7, u->cost);
		sqlite3_bind_int64(su, 8, u->requests);
		sqlite3_bind_int64(su, 9, u->errors);
		sqlite3_bind_int64(su, 10, u->unknown_usage);
		sqlite3_bind_int64(su, 11, u->latency_sum_ms);
		sqlite3_bind_text(su, 12, u->hour, -1, SQLITE_STATIC);
		sqlite3_bind_text(su, 13, now, -1, SQLITE_STATIC);
		rc = sqlite3_step(su);
		sqlite3_reset(su);
		if (rc != SQLITE_DONE) {
			db_set_err(db, rc, e, "statistics");
			goto out;
		}
	}
	for (i = 0; i < a->nd; i++) {
		const struct stats_daily *d = &a->d[i];
		sqlite3_bind_text(sd, 1, d->date, -1, SQLITE_STATIC);
		sqlite3_bind_text(sd, 2, sched_pool_name(d->pool), -1, SQLITE_STATIC);
		sqlite3_bind_int64(sd, 3, d->requests);
		sqlite3_bind_int64(sd, 4, d->errors);
		sqlite3_bind_int64(sd, 5, d->tokens);
		sqlite3_bind_double(sd, 6, d->cost);
		rc = sqlite3_step(sd);
		sqlite3_reset(sd);
		if (rc != SQLITE_DONE) {
			db_set_err(db, rc, e, "statistics");
			goto out;
		}
		sqlite3_bind_text(sq, 1, d->date, -1, SQLITE_STATIC);
		sqlite3_bind_text(sq, 2, sched_pool_name(d->pool), -1, SQLITE_STATIC);
		rc = sqlite3_step(sq);
		sqlite3_reset(sq);
		if (rc != SQLITE_DONE) {
			db_set_err(db, rc, e, "statistics");
			goto out;
		}
	}
	ret = 0;
out:
	sqlite3_finalize(su);
	sqlite3_finalize(sd);
	sqlite3_finalize(sq);
	return ret;
}

int
stats_write_snapshot(sqlite3 *db, const char *json, int64_t wall_s, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char ts[SC_TS_LEN];
	int rc;

	sc_ts_format(wall_s, ts);
	rc = sqlite3_prepare_v2(db, "INSERT INTO live_status (id, updated_at, snapshot) VALUES (1, ?1, ?2) "
	    "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, snapshot = excluded.snapshot",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "live status");
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "live status");
	/* provider_health keeps each provider's 5-minute success rate and last
	 * latency from the same snapshot; rows are rewritten only when they move. */
	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO provider_health (provider_id, success_rate_5m, last_latency_ms, updated_at) "
	    "SELECT json_extract(value, '$.id'), json_extract(value, '$.success_rate_5m'), "
	    "COALESCE(json_extract(value, '$.last_latency_ms'), 0), ?1 FROM json_each(?2, '$.providers') "
	    "WHERE json_extract(value, '$.success_rate_5m') IS NOT NULL "
	    "AND json_extract(value, '$.id') IN (SELECT id FROM providers) "
	    "ON CONFLICT (provider_id) DO UPDATE SET success_rate_5m = excluded.success_rate_5m, "
	    "last_latency_ms = excluded.last_latency_ms, updated_at = excluded.updated_at "
	    "WHERE provider_health.success_rate_5m IS NOT excluded.success_rate_5m "
	    "OR provider_health.last_latency_ms IS NOT excluded.last_latency_ms", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "provider health");
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "provider health");
}

struct stats_prune_args {
	int64_t now_s;
	int     stats_days, events_days;
	int64_t deleted;
};

static int
stats_prune_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct stats_prune_args *a = arg;
	static const char *const sql[3] = {
		"DELETE FROM provider_usage_logs WHERE hour_bucket < ?1",
		"DELETE FROM daily_stats WHERE date < ?1",
		"DELETE FROM cooldown_events WHERE started_at < ?1",
	};
	char hour[14], date[11], ts[SC_TS_LEN];
	const char *cut[3] = { hour, date, ts };
	int64_t sc = a->now_s - (int64_t)a->stats_days * 86400, ec = a->now_s - (int64_t)a->events_days * 86400;
	int k, rc;

	sc_hour_bucket(sc, hour);
	sc_date(sc, date);
	sc_ts_format(ec, ts);
	a->deleted = 0;
	for (k = 0; k < 3; k++) {
		sqlite3_stmt *st = NULL;
		if ((rc = sqlite3_prepare_v2(db, sql[k], -1, &st, NULL)) != SQLITE_OK)
			return db_set_err(db, rc, e, "pruning");
		sqlite3_bind_text(st, 1, cut[k], -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return db_set_err(db, rc, e, "pruning");
		a->deleted += sqlite3_changes(db);
	}
	return 0;
}

int64_t
stats_prune(sqlite3 *db, int64_t now_s, int stats_days, int events_days, struct sc_err *e)
{
	struct stats_prune_args a = { now_s, stats_days, events_days, 0 };

	if (db_write_txn(db, stats_prune_txn, &a, e) == -1)
		return -1;
	return a.deleted;
}

/* ---- the writer thread ---- */

/* A queued write (stats_submit). */
struct stats_job {
	int              (*fn)(sqlite3 *db, void *arg, struct sc_err *e);
	void              *arg;
	void             (*free_arg)(void *);
	char              *what;	/* owned */
	struct stats_job  *next;
};

static struct {
	pthread_mutex_t   mu;
	pthread_cond_t    cv;
	pthread_t         th;
	int               running;	/* the thread exists */
	sqlite3          *db;		/* the writer's own connection */
	struct reqlog_writer *rlw;	/* its request log statements */
	/* Loop thread only. */
	struct stats_agg  cur;
	struct reqlog_batch cur_log;	/* request log records since the last hand-off */
	int               log_rows;	/* request_log_rows as last handed off, -1 before */
	/* Under mu: the hand-off slot. */
	struct stats_agg  slot;
	struct reqlog_batch slot_log;
	char             *slot_json;	/* owned */
	int               slot_ready;
	int               stop;
	struct stats_job *jobs, **jobs_tail;	/* FIFO of queued writes */
	size_t            njobs;
	struct stats_settings set;
	struct stats_info info;
	/* Writer thread only. */
	struct stats_agg  pending;	/* not yet written */
	struct reqlog_batch pending_log;	/* request log records not yet written */
	int               log_kept;	/* request_log_rows the ring was last pruned to, -1 never */
	int64_t           last_prune_s;
	int               failing;	/* the last write failed (log once per episode) */
} sw = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .log_rows = -1, .log_kept = -1 };

static double
stats_clock_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
stats_on_event(const struct event *ev)
{
	if (ev->kind == EVENT_REQUEST_DONE)
		stats_record(ev->u.request);
}

void
stats_record(const struct request_result *r)
{
	static unsigned long long dropped;	/* for the log line: powers of two only */
	struct stats_sample s;
	struct reqlog_record *rec;
	int64_t wall_ms = sc_wall_ms();

	if (sw.log_rows != 0) {
		if ((rec = reqlog_batch_add(&sw.cur_log)) != NULL)
			reqlog_record_fill(rec, r, wall_ms);
		else if ((sw.cur_log.dropped & (sw.cur_log.dropped - 1)) == 0)
			log_error("request log: %d records since the last flush: dropping new ones (%llu so far)",
			    REQLOG_BATCH_MAX, (unsigned long long)sw.cur_log.dropped);
	}
	if (stats_sample_from(r, wall_ms / 1000, &s) == -1)
		return;
	if (stats_agg_add(&sw.cur, &s) == 0)
		return;
	dropped++;
	if ((dropped & (dropped - 1)) == 0)
		log_error("statistics: %d usage rows in memory and the database takes none: dropping the "
		    "counts of new rows (%llu requests so far)", STATS_MAX_ENTRIES, dropped);
}

struct stats_txn_args {
	struct reqlog_writer      *rlw;
	const struct stats_agg    *agg;	/* may be empty */
	const struct reqlog_batch *log;	/* may be empty */
	int                        log_rows;	/* < 0: leave the request log alone */
	const char                *json;	/* may be NULL */
};

static int
stats_flush_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct stats_txn_args *a = arg;

	if (!stats_agg_empty(a->agg) && stats_write(db, a->agg, e) == -1)
		return -1;
	if (a->log_rows >= 0 && reqlog_write(a->rlw, a->log, a->log_rows, e) == -1)
		return -1;
	if (a->json != NULL && stats_write_snapshot(db, a->json, sc_wall_ms() / 1000, e) == -1)
		return -1;
	return 0;
}

/* One flush on the writer thread: pending rows (and the snapshot) in one
 * transaction; on failure the rows stay pending for the next one. It runs
 * without foreign-key enforcement (reqlog_write_txn): the usage and health
 * rows check their provider in their own SQL, the request log keeps its
 * key itself. */
static void
stats_writer_flush(const char *json, int log_rows)
{
	/* The ring is written when records wait or its size setting changed. */
	int log_due = sw.pending_log.n > 0 || log_rows != sw.log_kept;
	struct stats_txn_args a = { sw.rlw, &sw.pending, &sw.pending_log, log_due ? log_rows : -1, json };
	size_t nlog = sw.pending_log.n;
	struct sc_err e;
	double t0, dt;
	size_t k;
	int ok;

	if (stats_agg_empty(&sw.pending) && json == NULL && !log_due)
		return;
	sc_err_clear(&e);
	t0 = stats_clock_s();
	ok = reqlog_write_txn(sw.db, stats_flush_txn, &a, &e) == 0;
	dt = stats_clock_s() - t0;
	if (ok) {
		if (sw.failing)
			log_info("statistics: writing again after a failure");
		sw.failing = 0;
		log_debug("statistics flush: %zu usage rows, %zu daily rows, %zu requests%s in %.3f ms",
		    sw.pending.nu, sw.pending.nd, nlog, json ? ", snapshot" : "", dt * 1000);
		stats_agg_free(&sw.pending);
		reqlog_batch_free(&sw.pending_log);
		if (log_due)
			sw.log_kept = log_rows;
	} else if (!sw.failing) {
		sw.failing = 1;
		log_error("statistics: flush failed, keeping %zu usage rows and %zu requests for the next "
		    "attempt: %s", sw.pending.nu, nlog, e.msg);
	}
	pthread_mutex_lock(&sw.mu);
	for (k = 0; k < STATS_FLUSH_BUCKETS && dt > stats_flush_bounds[k]; k++)
		;
	if (k < STATS_FLUSH_BUCKETS)
		sw.info.flush_bucket[k]++;
	sw.info.flush_count++;
	sw.info.flush_sum_s += dt;
	if (dt > sw.info.flush_max_s)
		sw.info.flush_max_s = dt;
	sw.info.flush_failures += !ok;
	sw.info.pending = sw.pending.nu;
	if (ok && log_due)
		sw.info.log_written += nlog < (size_t)log_rows ? nlog : (size_t)log_rows;
	pthread_mutex_unlock(&sw.mu);
}

static void
stats_writer_prune(const struct stats_settings *set)
{
	int64_t now = sc_wall_ms() / 1000, n;
	struct sc_err e;

	if (sw.last_prune_s != 0 && now - sw.last_prune_s < STATS_PRUNE_EVERY_S)
		return;
	sw.last_prune_s = now;
	sc_err_clear(&e);
	n = stats_prune(sw.db, now, set->stats_retention_days, set->events_retention_days, &e);
	if (n < 0) {
		log_warn("statistics: retention pruning failed (next try in a day): %s", e.msg);
		return;
	}
	if (n > 0)
		log_info("statistics: pruned %lld rows (usage older than %d days, cooldown events older than %d days)",
		    (long long)n, set->stats_retention_days, set->events_retention_days);
	pthread_mutex_lock(&sw.mu);
	sw.info.rows_pruned += (uint64_t)n;
	pthread_mutex_unlock(&sw.mu);
}

/* Run queued writes in order; a failure is logged and the write dropped,
 * as the in-memory state (which it only mirrors) stays right. */
static void
stats_writer_jobs(struct stats_job *j)
{
	struct stats_job *next;
	struct sc_err e;

	for (; j != NULL; j = next) {
		next = j->next;
		sc_err_clear(&e);
		if (db_write_txn(sw.db, j->fn, j->arg, &e) == -1) {
			log_warn("could not save %s: %s", j->what, e.msg);
			pthread_mutex_lock(&sw.mu);
			sw.info.jobs_failed++;
			pthread_mutex_unlock(&sw.mu);
		}
		if (j->free_arg != NULL)
			j->free_arg(j->arg);
		free(j->what);
		free(j);
	}
}

int
stats_submit(int (*fn)(sqlite3 *db, void *arg, struct sc_err *e), void *arg, void (*free_arg)(void *),
    const char *what)
{
	struct stats_job *j;

	if (!sw.running)
		return -1;
	pthread_mutex_lock(&sw.mu);
	if (sw.njobs >= STATS_MAX_JOBS) {
		sw.info.jobs_failed++;
		pthread_mutex_unlock(&sw.mu);
		log_error("database writes are %d behind: dropping the save of %s", STATS_MAX_JOBS, what);
		if (free_arg != NULL)
			free_arg(arg);
		return 0;
	}
	j = sc_xcalloc(1, sizeof(*j));
	j->fn = fn;
	j->arg = arg;
	j->free_arg = free_arg;
	j->what = sc_xstrdup(what);
	if (sw.jobs_tail == NULL)
		sw.jobs_tail = &sw.jobs;
	*sw.jobs_tail = j;
	sw.jobs_tail = &j->next;
	sw.njobs++;
	pthread_cond_signal(&sw.cv);
	pthread_mutex_unlock(&sw.mu);
	return 0;
}

static void *
stats_writer_main(void *arg)
{
	struct stats_job *jobs;
	struct stats_agg batch;
	struct reqlog_batch logb;
	struct stats_settings set;
	uint64_t dropped, log_dropped;
	char *json;
	int stopping;

	pthread_mutex_lock(&sw.mu);
	for (;;) {
		while (!sw.slot_ready && sw.jobs == NULL && !sw.stop)
			pthread_cond_wait(&sw.cv, &sw.mu);
		jobs = sw.jobs;
		sw.jobs = NULL;
		sw.jobs_tail = &sw.jobs;
		sw.njobs = 0;
		batch = sw.slot;
		stats_agg_init(&sw.slot);
		logb = sw.slot_log;
		reqlog_batch_init(&sw.slot_log);
		json = sw.slot_json;
		sw.slot_json = NULL;
		sw.slot_ready = 0;
		set = sw.set;
		stopping = sw.stop;
		pthread_mutex_unlock(&sw.mu);

		stats_writer_jobs(jobs);
		stats_agg_merge(&sw.pending, &batch);
		reqlog_batch_merge(&sw.pending_log, &logb);
		dropped = sw.pending.dropped;
		sw.pending.dropped = 0;
		log_dropped = sw.pending_log.dropped;
		sw.pending_log.dropped = 0;
		stats_writer_flush(json, set.request_log_rows);
		free(json);
		if (!stopping && set.stats_retention_days > 0)
			stats_writer_prune(&set);

		pthread_mutex_lock(&sw.mu);
		sw.info.dropped += dropped;
		sw.info.log_dropped += log_dropped;
		if (stopping && !sw.slot_ready && sw.jobs == NULL)
			break;
	}
	pthread_mutex_unlock(&sw.mu);
	if (!stats_agg_empty(&sw.pending))
		log_error("statistics: %zu usage rows could not be written before the stop", sw.pending.nu);
	if (sw.pending_log.n > 0)
		log_error("request log: %zu requests could not be written before the stop", sw.pending_log.n);
	return NULL;
}

/* Only the writer thread uses this connection once it runs (stats_start
 * opens it and stats_stop closes it after the join): no mutex per call.
 * Its page cache is SQLite's default 2 MiB, not the request log's ring
 * (about 6 MB at 20,000 rows, memory the data plane would hold for good),
 * and a flush keeps its dirty pages in it until the commit (cache_spill
 * off: spilling them to the WAL first wrote them twice). The ring's deletes
 * read the oldest pages back from the file (bench/reqlog_write,
 * docs/performance.md). */
#define STATS_WRITER_CACHE_KIB 2048

sqlite3 *
stats_writer_db_open(const char *db_path, struct sc_err *e)
{
	sqlite3 *db = db_open(db_path, DB_OPEN_ONE_THREAD, e);
	char sql[64];

	if (db == NULL)
		return NULL;
	snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d; PRAGMA cache_spill=OFF", STATS_WRITER_CACHE_KIB);
	if (db_exec(db, sql, e) == -1) {
		db_close(db);
		return NULL;
	}
	return db;
}

int
stats_start(const char *db_path, struct sc_err *e)
{
	if (sw.running)
		return 0;
	sw.db = stats_writer_db_open(db_path, e);
	if (sw.db == NULL)
		return -1;
	if ((sw.rlw = reqlog_writer_new(sw.db, e)) == NULL) {
		db_close(sw.db);
		sw.db = NULL;
		return -1;
	}
	sw.stop = 0;	/* a previous stats_stop left it set */
	if (pthread_create(&sw.th, NULL, stats_writer_main, NULL) != 0) {
		reqlog_writer_free(sw.rlw);
		sw.rlw = NULL;
		db_close(sw.db);
		sw.db = NULL;
		return sc_err_set(e, NULL, 0, "cannot start the statistics writer thread");
	}
	sw.running = 1;
	return 0;
}

void
stats_handoff(int with_stats, const char *json, const struct stats_settings *s)
{
	double t0 = stats_clock_s(), dt;

	if (s != NULL)
		sw.log_rows = s->request_log_rows;
	if (sw.log_rows == 0)
		reqlog_batch_free(&sw.cur_log);	/* turned off meanwhile */
	if (!sw.running)
		return;	/* keep counting in cur; the caps bound it */
	pthread_mutex_lock(&sw.mu);
	if (with_stats) {
		stats_agg_merge(&sw.slot, &sw.cur);	/* a pointer swap unless the writer lags */
		reqlog_batch_merge(&sw.slot_log, &sw.cur_log);
	}
	if (json != NULL) {
		free(sw.slot_json);
		sw.slot_json = sc_xstrdup(json);
	}
	if (s != NULL)
		sw.set = *s;
	if (with_stats || json != NULL) {
		sw.slot_ready = 1;
		pthread_cond_signal(&sw.cv);
	}
	dt = stats_clock_s() - t0;
	if (dt > sw.info.handoff_max_s)
		sw.info.handoff_max_s = dt;
	pthread_mutex_unlock(&sw.mu);
}

void
stats_stop(const char *json)
{
	if (!sw.running) {
		stats_agg_free(&sw.cur);
		reqlog_batch_free(&sw.cur_log);
		return;
	}
	stats_handoff(1, json, NULL);
	pthread_mutex_lock(&sw.mu);
	sw.stop = 1;
	pthread_cond_signal(&sw.cv);
	pthread_mutex_unlock(&sw.mu);
	pthread_join(sw.th, NULL);
	sw.running = 0;
	stats_agg_free(&sw.pending);
	stats_agg_free(&sw.slot);
	reqlog_batch_free(&sw.pending_log);
	reqlog_batch_free(&sw.slot_log);
	free(sw.slot_json);
	sw.slot_json = NULL;
	reqlog_writer_free(sw.rlw);
	sw.rlw = NULL;
	db_close(sw.db);
	sw.db = NULL;
}

void
stats_get_info(struct stats_info *out)
{
	pthread_mutex_lock(&sw.mu);
	*out = sw.info;
	out->dropped += sw.cur.dropped;
	out->log_dropped += sw.cur_log.dropped;
	pthread_mutex_unlock(&sw.mu);
}
