/*
 * Read-only queries behind the dashboard's panels: hourly and daily series
 * (filtered by time range, provider, model, pool), totals and per-provider
 * breakdown over a day or a week, usage by model, cooldown history, health,
 * and the data plane's live status snapshot. The SQL is assembled with only
 * the conditions that were asked for, so SQLite can use usage_hour,
 * usage_model_hour and cooldown_events_* (no "?N IS NULL OR ..." tricks that
 * defeat the planner). Every value is bound, never pasted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"

#define STATS_MAX_RANGE   (400LL * 86400)	/* longest from..to span, seconds */
#define STATS_COOLDOWNS_DEFAULT 50
#define STATS_COOLDOWNS_MAX     1000

void
stats_q_init(struct stats_q *q, const char *head)
{
	sc_buf_init(&q->sql, 8192);
	q->n = 0;
	sc_buf_printf(&q->sql, "%s", head);
}

void
stats_q_cond(struct stats_q *q, const char *sql, const char *value)
{
	if (q->n >= STATS_MAX_BINDS)
		return;
	q->bind[q->n++] = value;
	for (; *sql != '\0'; sql++) {
		if (*sql == '#')
			sc_buf_printf(&q->sql, "%d", q->n);
		else
			sc_buf_append(&q->sql, sql, 1);
	}
}

sqlite3_stmt *
stats_q_prepare(sqlite3 *db, struct stats_q *q)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db, q->sql.data, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	for (int i = 0; i < q->n; i++)
		sqlite3_bind_text(st, i + 1, q->bind[i], -1, SQLITE_STATIC);
	return st;
}

int
stats_parse_time(const char *s, int64_t *out)
{
	char buf[SC_TS_LEN];
	size_t n = strlen(s);
	char *end;

	if (n > 0 && n <= 12 && strspn(s, "0123456789") == n) {
		*out = strtoll(s, &end, 10);
		return 0;
	}
	if (n == 10)
		snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
	else if (n == 13)
		snprintf(buf, sizeof(buf), "%s:00:00Z", s);
	else if (n == 20)
		snprintf(buf, sizeof(buf), "%s", s);
	else
		return -1;
	return sc_ts_parse(buf, out);
}

/* Read from/to (defaults: the last def_span seconds). 400 and -1 when bad. */
static int
stats_range(struct api_call *c, int64_t def_span, int64_t *from, int64_t *to)
{
	char v[32];
	int rc;

	*to = c->ctx->now();
	*from = *to - def_span;
	rc = api_query(c->rq, "to", v, sizeof(v));
	if (rc == -1 || (rc == 1 && stats_parse_time(v, to) == -1)) {
		api_error(c->rs, 400, "to", "'to' must be Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH or "
		    "YYYY-MM-DDTHH:MM:SSZ");
		return -1;
	}
	if (rc == 1)
		*from = *to - def_span;
	rc = api_query(c->rq, "from", v, sizeof(v));
	if (rc == -1 || (rc == 1 && stats_parse_time(v, from) == -1)) {
		api_error(c->rs, 400, "from", "'from' must be Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH or "
		    "YYYY-MM-DDTHH:MM:SSZ");
		return -1;
	}
	if (*from > *to) {
		api_error(c->rs, 400, "from", "'from' is after 'to'");
		return -1;
	}
	if (*to - *from > STATS_MAX_RANGE) {
		api_error(c->rs, 400, "from", "range longer than %lld days", STATS_MAX_RANGE / 86400);
		return -1;
	}
	return 0;
}

int
stats_filter(struct api_call *c, const char *name, char *out, size_t outlen, bool *given)
{
	int rc = api_query(c->rq, name, out, outlen);

	*given = rc == 1 && out[0] != '\0';
	if (rc == -1) {
		api_error(c->rs, 400, name, "'%s' is malformed (bad percent-encoding or not UTF-8) or too long", name);
		return -1;
	}
	return 0;
}

/* range=day|week → seconds; 400 and -1 when bad. */
static int
stats_named_range(struct api_call *c, int64_t *span, const char **name)
{
	char v[16];
	int rc = api_query(c->rq, "range", v, sizeof(v));

	*span = 86400;
	*name = "day";
	if (rc == 0)
		return 0;
	if (rc == 1 && strcmp(v, "day") == 0)
		return 0;
	if (rc == 1 && strcmp(v, "week") == 0) {
		*span = 7 * 86400;
		*name = "week";
		return 0;
	}
	api_error(c->rs, 400, "range", "'range' must be \"day\" or \"week\"");
	return -1;
}

int
stats_pool_ok(struct api_call *c, const char *pool)
{
	if (strcmp(pool, "main") == 0 || strcmp(pool, "fallback") == 0 || strcmp(pool, "emergency") == 0)
		return 0;
	api_error(c->rs, 400, "pool", "'pool' must be main, fallback or emergency");
	return -1;
}

/* The usage sums every series row carries, from columns at index i.. */
static void
stats_usage_cols(json_object *o, sqlite3_stmt *st, int i)
{
	int64_t req = sqlite3_column_int64(st, i), lat = sqlite3_column_int64(st, i + 6);

	json_object_object_add(o, "requests", json_object_new_int64(req));
	json_object_object_add(o, "errors", json_object_new_int64(sqlite3_column_int64(st, i + 1)));
	json_object_object_add(o, "prompt_tokens", json_object_new_int64(sqlite3_column_int64(st, i + 2)));
	json_object_object_add(o, "completion_tokens", json_object_new_int64(sqlite3_column_int64(st, i + 3)));
	json_object_object_add(o, "total_tokens", json_object_new_int64(sqlite3_column_int64(st, i + 4)));
	json_object_object_add(o, "cost", json_object_new_double(sqlite3_column_double(st, i + 5)));
	json_object_object_add(o, "avg_latency_ms", json_object_new_int64(req > 0 ? lat / req : 0));
	json_object_object_add(o, "unknown_usage", json_object_new_int64(sqlite3_column_int64(st, i + 7)));
}

#define STATS_USAGE_SUMS \
	"sum(u.request_count), sum(u.error_count), sum(u.prompt_tokens), sum(u.completion_tokens), " \
	"sum(u.total_tokens), sum(u.cost), sum(u.latency_sum_ms), sum(u.unknown_usage_count)"

/* Provider / model / pool conditions on provider_usage_logs u. */
static void
stats_usage_filters(struct stats_q *q, bool hp, const char *prov, bool hm, const char *model,
    bool hpool, const char *pool)
{
	if (hp)
		stats_q_cond(q, " AND u.provider_id IN (SELECT id FROM providers WHERE id = ?# OR name = ?#)", prov);
	if (hm)
		stats_q_cond(q, " AND u.model = ?#", model);
	if (hpool)
		stats_q_cond(q, " AND u.provider_id IN (SELECT id FROM providers WHERE pool = ?#)",
		    pool);
}

static void
stats_run_error(struct api_call *c, struct stats_q *q)
{
	api_db_error(c->rs, c->ctx->db, NULL);
	sc_buf_free(&q->sql);
}

/* GET /stats/hourly and /stats/daily. */
static void
stats_series(struct api_call *c, bool daily)
{
	char prov[128], model[256], pool[16], group[16], from_s[SC_TS_LEN], to_s[SC_TS_LEN];
	char hfrom[16], hto[16];	/* hour-bucket bounds, bound as parameters */
	bool hp, hm, hpool, hg;
	int64_t from, to;
	struct stats_q q;
	sqlite3_stmt *st;
	json_object *root, *arr, *o, *filters;
	const char *gcol = NULL, *source;
	int rc;

	if (stats_range(c, daily ? 30 * 86400 : 86400, &from, &to) == -1 ||
	    stats_filter(c, "provider", prov, sizeof(prov), &hp) == -1 ||
	    stats_filter(c, "model", model, sizeof(model), &hm) == -1 ||
	    stats_filter(c, "pool", pool, sizeof(pool), &hpool) == -1 ||
	    stats_filter(c, "group_by", group, sizeof(group), &hg) == -1)
		return;
	if (hpool && stats_pool_ok(c, pool) == -1)
		return;
	if (hg) {
		if (strcmp(group, "provider") == 0)
			gcol = "u.provider_id";
		else if (strcmp(group, "model") == 0)
			gcol = "u.model";
		else {
			api_error(c->rs, 400, "group_by", "'group_by' must be \"provider\" or \"model\"");
			return;
		}
	}
	if (daily) {
		sc_date(from, from_s);
		sc_date(to, to_s);
	} else {
		sc_hour_bucket(from, from_s);
		sc_hour_bucket(to, to_s);
	}
	if (daily && !hp && !hm && !hg) {
		/* Whole-system days come from daily_stats (kept longer, knows emergency). */
		source = "daily_stats";
		stats_q_init(&q, "SELECT date, sum(total_requests), sum(total_errors), sum(total_tokens), "
		    "sum(total_cost), max(unique_providers) FROM daily_stats WHERE 1");
		stats_q_cond(&q, " AND date >= ?#", from_s);
		stats_q_cond(&q, " AND date <= ?#", to_s);
		if (hpool)
			stats_q_cond(&q, " AND pool = ?#", pool);
		sc_buf_printf(&q.sql, " GROUP BY date ORDER BY date");
	} else {
		source = "provider_usage_logs";
		if (daily) {
			snprintf(hfrom, sizeof(hfrom), "%.10sT00", from_s);
			snprintf(hto, sizeof(hto), "%.10sT23", to_s);
		} else {
			memcpy(hfrom, from_s, sizeof(hfrom) - 2);	/* "YYYY-MM-DDTHH" */
			hfrom[13] = '\0';
			memcpy(hto, to_s, sizeof(hto) - 2);
			hto[13] = '\0';
		}
		stats_q_init(&q, "");
		sc_buf_printf(&q.sql, "SELECT %s%s%s, " STATS_USAGE_SUMS
		    " FROM provider_usage_logs u WHERE 1",
		    daily ? "substr(u.hour_bucket, 1, 10)" : "u.hour_bucket",
		    gcol ? ", " : "", gcol ? gcol : "");
		stats_q_cond(&q, " AND u.hour_bucket >= ?#", hfrom);
		stats_q_cond(&q, " AND u.hour_bucket <= ?#", hto);
		stats_usage_filters(&q, hp, prov, hm, model, hpool, pool);
		sc_buf_printf(&q.sql, " GROUP BY 1%s ORDER BY 1%s", gcol ? ", 2" : "", gcol ? ", 2" : "");
	}
	if ((st = stats_q_prepare(c->ctx->db, &q)) == NULL) {
		stats_run_error(c, &q);
		return;
	}
	arr = json_object_new_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		o = json_object_new_object();
		json_object_object_add(o, daily ? "date" : "hour", api_jstr((const char *)sqlite3_column_text(st, 0)));
		if (strcmp(source, "daily_stats") == 0) {
			int64_t req = sqlite3_column_int64(st, 1);
			json_object_object_add(o, "requests", json_object_new_int64(req));
			json_object_object_add(o, "errors", json_object_new_int64(sqlite3_column_int64(st, 2)));
			json_object_object_add(o, "total_tokens", json_object_new_int64(sqlite3_column_int64(st, 3)));
			json_object_object_add(o, "cost", json_object_new_double(sqlite3_column_double(st, 4)));
			json_object_object_add(o, "unique_providers", json_object_new_int64(sqlite3_column_int64(st, 5)));
		} else {
			if (gcol != NULL)
				json_object_object_add(o, strcmp(group, "provider") == 0 ? "provider_id" : "model",
				    api_jstr((const char *)sqlite3_column_text(st, 1)));
			stats_usage_cols(o, st, gcol ? 2 : 1);
		}
		json_object_array_add(arr, o);
	}
	sqlite3_finalize(st);
	sc_buf_free(&q.sql);
	if (rc != SQLITE_DONE) {
		json_object_put(arr);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	root = json_object_new_object();
	json_object_object_add(root, "from", json_object_new_string(from_s));
	json_object_object_add(root, "to", json_object_new_string(to_s));
	json_object_object_add(root, "source", json_object_new_string(source));
	filters = json_object_new_object();
	json_object_object_add(filters, "provider", hp ? json_object_new_string(prov) : NULL);
	json_object_object_add(filters, "model", hm ? json_object_new_string(model) : NULL);
	json_object_object_add(filters, "pool", hpool ? json_object_new_string(pool) : NULL);
	json_object_object_add(filters, "group_by", hg ? json_object_new_string(group) : NULL);
	json_object_object_add(root, "filters", filters);
	json_object_object_add(root, "series", arr);
	api_json(c->rs, 200, root);
}

/* Run a grouped usage query since a bucket; rows to an array via fill. */
static json_object *
stats_grouped(struct api_call *c, const char *select, const char *group, const char *since,
    bool hp, const char *prov, int extra_cols, const char *const *extra_names, bool *failed)
{
	struct stats_q q;
	sqlite3_stmt *st;
	json_object *arr = json_object_new_array(), *o;
	int rc;

	stats_q_init(&q, "");
	sc_buf_printf(&q.sql, "SELECT %s, " STATS_USAGE_SUMS " FROM provider_usage_logs u "
	    "LEFT JOIN providers p ON p.id = u.provider_id WHERE 1", select);
	stats_q_cond(&q, " AND u.hour_bucket >= ?#", since);
	stats_usage_filters(&q, hp, prov, false, NULL, false, NULL);
	sc_buf_printf(&q.sql, "%s%s ORDER BY sum(u.request_count) DESC", group ? " GROUP BY " : "",
	    group ? group : "");
	*failed = false;
	if ((st = stats_q_prepare(c->ctx->db, &q)) == NULL) {
		sc_buf_free(&q.sql);
		*failed = true;
		return arr;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		o = json_object_new_object();
		for (int i = 0; i < extra_cols; i++)
			json_object_object_add(o, extra_names[i], api_jstr((const char *)sqlite3_column_text(st, i)));
		stats_usage_cols(o, st, extra_cols);
		json_object_array_add(arr, o);
	}
	if (rc != SQLITE_DONE)
		*failed = true;
	sqlite3_finalize(st);
	sc_buf_free(&q.sql);
	return arr;
}

/* GET /stats/totals?range=day|week and /stats/by-model?range=&provider= */
static void
stats_totals(struct api_call *c, bool by_model)
{
	static const char *const prov_names[] = { "provider_id", "name", "pool" };
	static const char *const model_names[] = { "model" };
	static const char *const none[] = { "scope" };
	char since[16], prov[128];
	const char *rname;
	int64_t span;
	bool hp = false, failed = false, f2 = false;
	json_object *root, *tot, *arr, *one;

	if (stats_named_range(c, &span, &rname) == -1 ||
	    stats_filter(c, "provider", prov, sizeof(prov), &hp) == -1)
		return;
	sc_hour_bucket(c->ctx->now() - span, since);
	root = json_object_new_object();
	json_object_object_add(root, "range", json_object_new_string(rname));
	json_object_object_add(root, "from", json_object_new_string(since));
	if (by_model) {
		arr = stats_grouped(c, "u.model", "u.model", since, hp, prov, 1, model_names, &failed);
		json_object_object_add(root, "models", arr);
	} else {
		tot = stats_grouped(c, "'all'", NULL, since, hp, prov, 1, none, &failed);
		one = json_object_array_length(tot) > 0 ? json_object_get(json_object_array_get_idx(tot, 0)) : NULL;
		json_object_put(tot);
		if (one != NULL) {
			json_object_object_del(one, "scope");
			int64_t req = json_object_get_int64(json_object_object_get(one, "requests"));
			int64_t err = json_object_get_int64(json_object_object_get(one, "errors"));
			json_object_object_add(one, "error_rate", json_object_new_double(req > 0 ? (double)err / (double)req : 0));
		}
		json_object_object_add(root, "totals", one);
		arr = stats_grouped(c, "u.provider_id, p.name, p.pool", "u.provider_id", since, hp, prov, 3,
		    prov_names, &f2);
		json_object_object_add(root, "by_provider", arr);
	}
	if (failed || f2) {
		json_object_put(root);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	api_json(c->rs, 200, root);
}

/* GET /cooldowns?limit=&provider= */
static void
stats_cooldowns(struct api_call *c)
{
	char lim[16], prov[128], now[SC_TS_LEN];
	bool hp;
	long limit = STATS_COOLDOWNS_DEFAULT;
	struct stats_q q;
	sqlite3_stmt *st;
	json_object *root, *arr, *o;
	int rc;

	rc = api_query(c->rq, "limit", lim, sizeof(lim));
	if (rc == 1) {
		char *end;
		limit = strtol(lim, &end, 10);
		if (end == lim || *end != '\0' || limit < 1 || limit > STATS_COOLDOWNS_MAX) {
			api_error(c->rs, 400, "limit", "'limit' must be an integer from 1 to %d", STATS_COOLDOWNS_MAX);
			return;
		}
	} else if (rc == -1) {
		api_error(c->rs, 400, "limit", "'limit' must be an integer from 1 to %d", STATS_COOLDOWNS_MAX);
		return;
	}
	if (stats_filter(c, "provider", prov, sizeof(prov), &hp) == -1)
		return;
	sc_ts_format(c->ctx->now(), now);
	stats_q_init(&q, "SELECT c.id, c.provider_id, p.name, c.consecutive_count, c.cooldown_seconds, "
	    "c.response_summary, c.started_at, c.ended_at FROM cooldown_events c "
	    "LEFT JOIN providers p ON p.id = c.provider_id WHERE 1");
	if (hp)
		stats_q_cond(&q, " AND c.provider_id IN (SELECT id FROM providers WHERE id = ?# OR name = ?#)", prov);
	sc_buf_printf(&q.sql, " ORDER BY c.started_at DESC");
	sc_buf_printf(&q.sql, " LIMIT %ld", limit);	/* validated integer */
	if ((st = stats_q_prepare(c->ctx->db, &q)) == NULL) {
		stats_run_error(c, &q);
		return;
	}
	arr = json_object_new_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *ended = (const char *)sqlite3_column_text(st, 7);
		o = json_object_new_object();
		json_object_object_add(o, "id", api_jstr((const char *)sqlite3_column_text(st, 0)));
		json_object_object_add(o, "provider_id", api_jstr((const char *)sqlite3_column_text(st, 1)));
		json_object_object_add(o, "provider", api_jstr((const char *)sqlite3_column_text(st, 2)));
		json_object_object_add(o, "consecutive_count", json_object_new_int(sqlite3_column_int(st, 3)));
		json_object_object_add(o, "cooldown_seconds", json_object_new_int(sqlite3_column_int(st, 4)));
		json_object_object_add(o, "response_summary", api_jstr((const char *)sqlite3_column_text(st, 5)));
		json_object_object_add(o, "started_at", api_jstr((const char *)sqlite3_column_text(st, 6)));
		json_object_object_add(o, "ended_at", api_jstr(ended));
		json_object_object_add(o, "active", json_object_new_boolean(ended == NULL || strcmp(ended, now) > 0));
		json_object_array_add(arr, o);
	}
	sqlite3_finalize(st);
	sc_buf_free(&q.sql);
	if (rc != SQLITE_DONE) {
		json_object_put(arr);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	root = json_object_new_object();
	json_object_object_add(root, "cooldowns", arr);
	api_json(c->rs, 200, root);
}

/* GET /health: every provider with its state and latest health row. */
static void
stats_health(struct api_call *c)
{
	static const char sql[] =
	    "SELECT p.id, p.name, p.pool, p.status, p.status_reason, p.cooldown_until, "
	    "h.state, h.last_latency_ms, h.last_status_code, h.success_rate_5m, h.consecutive_failures, "
	    "h.last_error, h.last_probe_at, h.updated_at "
	    "FROM providers p LEFT JOIN provider_health h ON h.provider_id = p.id ORDER BY p.name";
	sqlite3_stmt *st = NULL;
	json_object *root, *arr, *o, *sum;
	char now[SC_TS_LEN], hour[16];
	int64_t n_active = 0, n_disabled = 0, n_invalid = 0, n_cooling = 0, n_unhealthy = 0;
	int rc;

	sc_ts_format(c->ctx->now(), now);
	if (sqlite3_prepare_v2(c->ctx->db, sql, -1, &st, NULL) != SQLITE_OK) {
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	arr = json_object_new_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *status = (const char *)sqlite3_column_text(st, 3);
		const char *cu = (const char *)sqlite3_column_text(st, 5);
		const char *state = (const char *)sqlite3_column_text(st, 6);
		bool cooling = cu != NULL && strcmp(cu, now) > 0;
		o = json_object_new_object();
		json_object_object_add(o, "provider_id", api_jstr((const char *)sqlite3_column_text(st, 0)));
		json_object_object_add(o, "name", api_jstr((const char *)sqlite3_column_text(st, 1)));
		json_object_object_add(o, "pool", api_jstr((const char *)sqlite3_column_text(st, 2)));
		json_object_object_add(o, "status", api_jstr(status));
		json_object_object_add(o, "status_reason", api_jstr((const char *)sqlite3_column_text(st, 4)));
		json_object_object_add(o, "cooldown_until", api_jstr(cu));
		json_object_object_add(o, "cooling", json_object_new_boolean(cooling));
		json_object_object_add(o, "state", api_jstr(state ? state : "unknown"));
		json_object_object_add(o, "last_latency_ms", json_object_new_int64(sqlite3_column_int64(st, 7)));
		json_object_object_add(o, "last_status_code", json_object_new_int(sqlite3_column_int(st, 8)));
		json_object_object_add(o, "success_rate_5m", state ? json_object_new_double(sqlite3_column_double(st, 9)) : NULL);
		json_object_object_add(o, "consecutive_failures", json_object_new_int(sqlite3_column_int(st, 10)));
		json_object_object_add(o, "last_error", api_jstr((const char *)sqlite3_column_text(st, 11)));
		json_object_object_add(o, "last_probe_at", api_jstr((const char *)sqlite3_column_text(st, 12)));
		json_object_object_add(o, "updated_at", api_jstr((const char *)sqlite3_column_text(st, 13)));
		json_object_array_add(arr, o);
		if (status && strcmp(status, "active") == 0)
			n_active++;
		else if (status && strcmp(status, "disabled") == 0)
			n_disabled++;
		else
			n_invalid++;
		n_cooling += cooling;
		n_unhealthy += state != NULL && strcmp(state, "unhealthy") == 0;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_object_put(arr);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	root = json_object_new_object();
	sum = json_object_new_object();
	json_object_object_add(sum, "active", json_object_new_int64(n_active));
	json_object_object_add(sum, "disabled", json_object_new_int64(n_disabled));
	json_object_object_add(sum, "invalid", json_object_new_int64(n_invalid));
	json_object_object_add(sum, "cooling", json_object_new_int64(n_cooling));
	json_object_object_add(sum, "unhealthy", json_object_new_int64(n_unhealthy));
	/* Errors over the current and the previous hour bucket. */
	sc_hour_bucket(c->ctx->now() - 3600, hour);
	if (sqlite3_prepare_v2(c->ctx->db, "SELECT coalesce(sum(request_count), 0), coalesce(sum(error_count), 0) "
	    "FROM provider_usage_logs WHERE hour_bucket >= ?1", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, hour, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			json_object_object_add(sum, "requests_last_2h", json_object_new_int64(sqlite3_column_int64(st, 0)));
			json_object_object_add(sum, "errors_last_2h", json_object_new_int64(sqlite3_column_int64(st, 1)));
		}
		sqlite3_finalize(st);
	}
	json_object_object_add(root, "summary", sum);
	json_object_object_add(root, "providers", arr);
	api_json(c->rs, 200, root);
}

/* GET /status: the live_status row, or {} when the data plane never wrote one. */
static void
stats_status(struct api_call *c)
{
	sqlite3_stmt *st = NULL;
	json_object *root = json_object_new_object(), *snap = NULL;
	json_tokener *tok;
	int rc;

	if (sqlite3_prepare_v2(c->ctx->db, "SELECT updated_at, snapshot FROM live_status WHERE id = 1",
	    -1, &st, NULL) != SQLITE_OK) {
		json_object_put(root);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 1);
		tok = json_tokener_new_ex(64);
		if (tok != NULL && s != NULL) {
			snap = json_tokener_parse_ex(tok, s, (int)strlen(s));
		}
		if (tok != NULL)
			json_tokener_free(tok);
		json_object_object_add(root, "updated_at", api_jstr((const char *)sqlite3_column_text(st, 0)));
		json_object_object_add(root, "snapshot", snap);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		json_object_put(root);
		api_db_error(c->rs, c->ctx->db, NULL);
		return;
	}
	api_json(c->rs, 200, root);
}

bool
routes_stats(struct api_call *c)
{
	const char *p = c->path;

	if (strcmp(p, "/stats/hourly") != 0 && strcmp(p, "/stats/daily") != 0 &&
	    strcmp(p, "/stats/totals") != 0 && strcmp(p, "/stats/by-model") != 0 &&
	    strcmp(p, "/cooldowns") != 0 && strcmp(p, "/health") != 0 && strcmp(p, "/status") != 0)
		return false;
	if (strcmp(c->rq->method, "GET") != 0) {
		api_header(c->rs, "Allow", "GET");
		api_error(c->rs, 405, NULL, "method %s not allowed here", c->rq->method);
		return true;
	}
	if (strcmp(p, "/stats/hourly") == 0)
		stats_series(c, false);
	else if (strcmp(p, "/stats/daily") == 0)
		stats_series(c, true);
	else if (strcmp(p, "/stats/totals") == 0)
		stats_totals(c, false);
	else if (strcmp(p, "/stats/by-model") == 0)
		stats_totals(c, true);
	else if (strcmp(p, "/cooldowns") == 0)
		stats_cooldowns(c);
	else if (strcmp(p, "/health") == 0)
		stats_health(c);
	else
		stats_status(c);
	return true;
}
