/*
 * Unit tests of dataplane/stats.c: what a finished request contributes
 * (tokens, cost, latency rule, unknown usage), the aggregate and its merge,
 * the UPSERTs against a real temporary database (counts add up across
 * flushes, averages recomputed from sums, unique providers, rows of deleted
 * providers skipped), retention pruning, the writer thread keeping its
 * rows through a locked database until the next interval, and queued writes
 * run in order.
 */
#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "events.h"
#include "stats.h"
#include "testdb.h"

#define P1 "11111111-1111-4111-8111-111111111111"
#define P2 "22222222-2222-4222-8222-222222222222"

/* The database fixture (testdb.h) with two providers the rows can refer to. */
static int
setup(void **state)
{
	struct testdb *f;
	struct sc_err e;

	if (testdb_setup(state) == -1)
		return -1;
	f = *state;
	assert_int_equal(db_exec(f->db,
	    "INSERT INTO providers (id, name, api_key, endpoint_url, model_prefix, pool) VALUES "
	    "('" P1 "', 'one', 'x', 'http://127.0.0.1:1/v1', 'a/', 'main'),"
	    "('" P2 "', 'two', 'x', 'http://127.0.0.1:1/v1', 'a/', 'fallback');", &e), 0);
	return 0;
}

static struct request_result
result(const char *pid, int status, int64_t total)
{
	struct request_result r;

	memset(&r, 0, sizeof(r));
	r.rid = "rid";
	r.provider_id = pid;
	r.provider_name = "name";
	r.pool = SCHED_POOL_MAIN;
	r.cost_per_1k = 0.5;
	r.model = "a/m";
	r.upstream_model = "m";
	r.status = status;
	r.error = status >= 400;
	r.upstream_sent = 1;
	r.latency_ms = 300;
	r.ttfb_ms = 40;
	r.attempts = 1;
	r.total_tokens = total;
	r.prompt_tokens = total >= 0 ? total / 2 : -1;
	r.completion_tokens = total >= 0 ? total - total / 2 : -1;
	return r;
}

static int64_t
q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static double
q_double(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	double v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_double(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
test_sample_rules(void **state)
{
	struct request_result r = result(P1, 200, 1000);
	struct stats_sample s;

	(void)state;
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_string_equal(s.provider_id, P1);
	assert_string_equal(s.model, "m");
	assert_int_equal(s.total_tokens, 1000);
	assert_int_equal(s.prompt_tokens, 500);
	assert_true(s.cost > 0.4999 && s.cost < 0.5001);
	assert_int_equal(s.latency_ms, 300);	/* not a stream: whole response */
	assert_int_equal(s.unknown_usage, 0);

	r.stream = 1;
	r.queue_ms = 15;
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(s.latency_ms, 25);	/* TTFT minus the queue wait */

	r = result(P1, 200, -1);
	r.stream = 1;
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(s.unknown_usage, 1);	/* counted as unknown, not as a silent 0 */
	assert_int_equal(s.total_tokens, 0);

	r = result(P1, 429, -1);
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(s.unknown_usage, 0);	/* an error spends no tokens */
	assert_int_equal(s.error, 1);

	r = result(NULL, 503, -1);
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), -1);	/* no provider: no row */
	r.pool = SCHED_POOL_EMERGENCY;
	r.provider_id = P1;
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(s.pool, SCHED_POOL_EMERGENCY);
}

struct wr {
	struct stats_agg *a;
	const char       *json;
};

static int
write_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct wr *w = arg;

	if (stats_write(db, w->a, e) == -1)
		return -1;
	return w->json != NULL ? stats_write_snapshot(db, w->json, 1795680000, e) : 0;
}

static void
add(struct stats_agg *a, struct request_result r, int64_t wall)
{
	struct stats_sample s;

	assert_int_equal(stats_sample_from(&r, wall, &s), 0);
	assert_int_equal(stats_agg_add(a, &s), 0);
}

static void
flush(struct testdb *f, struct stats_agg *a)
{
	struct wr w = { a, "{\"ok\":true}" };
	struct sc_err e;

	sc_err_clear(&e);
	assert_int_equal(db_write_txn(f->db, write_txn, &w, &e), 0);
	stats_agg_free(a);
}

static void
test_flushes_add_up(void **state)
{
	struct testdb *f = *state;
	const int64_t t = 1795680000;	/* 2026-11-26T08:00:00Z */
	struct stats_agg a;
	struct request_result r;

	stats_agg_init(&a);
	add(&a, result(P1, 200, 100), t);
	r = result(P1, 200, 50);
	r.latency_ms = 100;
	add(&a, r, t + 1);
	add(&a, result(P1, 500, -1), t + 2);
	flush(f, &a);
	assert_int_equal(q_int(f->db, "SELECT request_count FROM provider_usage_logs"), 3);
	assert_int_equal(q_int(f->db, "SELECT error_count FROM provider_usage_logs"), 1);
	assert_int_equal(q_int(f->db, "SELECT total_tokens FROM provider_usage_logs"), 150);
	assert_int_equal(q_int(f->db, "SELECT latency_sum_ms FROM provider_usage_logs"), 700);
	assert_int_equal(q_int(f->db, "SELECT avg_latency_ms FROM provider_usage_logs"), 233);
	assert_string_equal("ok", q_int(f->db, "SELECT count(*) FROM provider_usage_logs WHERE id = '"
	    P1 "|m|2026-11-26T08' AND hour_bucket = '2026-11-26T08'") == 1 ? "ok" : "bad id");

	/* A second flush (another interval, or another process after a restart)
	 * adds to the same row; the average comes from the sums. */
	r = result(P1, 200, 10);
	r.latency_ms = 1300;
	add(&a, r, t + 60);
	r = result(P2, 200, 20);
	r.pool = SCHED_POOL_FALLBACK;
	add(&a, r, t + 61);	/* fallback pool, same day */
	flush(f, &a);
	assert_int_equal(q_int(f->db, "SELECT request_count FROM provider_usage_logs WHERE provider_id = '" P1 "'"), 4);
	assert_int_equal(q_int(f->db, "SELECT avg_latency_ms FROM provider_usage_logs WHERE provider_id = '" P1 "'"),
	    (700 + 1300) / 4);
	assert_true(q_double(f->db, "SELECT cost FROM provider_usage_logs WHERE provider_id = '" P1 "'") > 0.0799 &&
	    q_double(f->db, "SELECT cost FROM provider_usage_logs WHERE provider_id = '" P1 "'") < 0.0801);
	assert_int_equal(q_int(f->db, "SELECT total_requests FROM daily_stats WHERE id = '2026-11-26|main'"), 4);
	assert_int_equal(q_int(f->db, "SELECT total_errors FROM daily_stats WHERE id = '2026-11-26|main'"), 1);
	assert_int_equal(q_int(f->db, "SELECT total_tokens FROM daily_stats WHERE id = '2026-11-26|main'"), 160);
	assert_int_equal(q_int(f->db, "SELECT total_requests FROM daily_stats WHERE id = '2026-11-26|fallback'"), 1);
	assert_int_equal(q_int(f->db, "SELECT unique_providers FROM daily_stats WHERE id = '2026-11-26|main'"), 1);
	assert_int_equal(q_int(f->db, "SELECT unique_providers FROM daily_stats WHERE id = '2026-11-26|fallback'"), 1);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM live_status WHERE json_extract(snapshot, '$.ok')"), 1);

	/* The next hour is a new row; a new day a new daily row. */
	add(&a, result(P1, 200, 1), t + 3600);
	add(&a, result(P1, 200, -1), t + 86400);
	flush(f, &a);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM provider_usage_logs"), 4);
	assert_int_equal(q_int(f->db, "SELECT unknown_usage_count FROM provider_usage_logs WHERE hour_bucket = "
	    "'2026-11-27T08'"), 1);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM daily_stats"), 3);
}

static void
test_deleted_provider_skipped(void **state)
{
	struct testdb *f = *state;
	struct stats_agg a;

	stats_agg_init(&a);
	add(&a, result("33333333-3333-4333-8333-333333333333", 200, 5), 1795680000);
	add(&a, result(P1, 200, 5), 1795680000);
	flush(f, &a);	/* commits: the unknown provider's row is skipped, not a failure */
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM provider_usage_logs"), 1);
}

static void
test_merge(void **state)
{
	struct stats_agg a, b, c;
	int i;

	(void)state;
	stats_agg_init(&a);
	stats_agg_init(&b);
	stats_agg_init(&c);
	for (i = 0; i < 10; i++) {
		add(i % 2 ? &a : &b, result(i % 3 ? P1 : P2, 200, i), 1795680000 + i * 1000);
		add(&c, result(i % 3 ? P1 : P2, 200, i), 1795680000 + i * 1000);
	}
	stats_agg_merge(&a, &b);
	assert_true(stats_agg_empty(&b));
	assert_int_equal(a.nu, c.nu);
	assert_int_equal(a.nd, c.nd);
	for (i = 0; i < (int)c.nu; i++) {
		size_t j;
		for (j = 0; j < a.nu; j++)
			if (strcmp(a.u[j].provider_id, c.u[i].provider_id) == 0 && strcmp(a.u[j].hour, c.u[i].hour) == 0)
				break;
		assert_true(j < a.nu);
		assert_int_equal(a.u[j].requests, c.u[i].requests);
		assert_int_equal(a.u[j].total_tokens, c.u[i].total_tokens);
	}
	/* Merging into an empty aggregate moves it whole. */
	stats_agg_merge(&b, &a);
	assert_true(stats_agg_empty(&a));
	assert_int_equal(b.nu, c.nu);
	stats_agg_free(&b);
	stats_agg_free(&c);
}

static void
test_cap(void **state)
{
	struct stats_agg a;
	struct stats_sample s;
	struct request_result r = result(P1, 200, 1);
	char model[32];
	int i;

	(void)state;
	stats_agg_init(&a);
	r.upstream_model = model;
	for (i = 0; i < STATS_MAX_ENTRIES; i++) {
		snprintf(model, sizeof(model), "m%d", i);
		assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
		assert_int_equal(stats_agg_add(&a, &s), 0);
	}
	snprintf(model, sizeof(model), "one-too-many");
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(stats_agg_add(&a, &s), -1);
	assert_int_equal(a.dropped, 1);
	/* An existing row still counts. */
	snprintf(model, sizeof(model), "m7");
	assert_int_equal(stats_sample_from(&r, 1795680000, &s), 0);
	assert_int_equal(stats_agg_add(&a, &s), 0);
	stats_agg_free(&a);
}

static void
test_prune(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	const int64_t now = 1795680000;	/* 2026-11-26 */

	sc_err_clear(&e);
	assert_int_equal(db_exec(f->db,
	    "INSERT INTO provider_usage_logs (id, provider_id, model, hour_bucket) VALUES "
	    "('a', '" P1 "', 'm', '2026-08-01T00'), ('b', '" P1 "', 'm', '2026-11-25T10');"
	    "INSERT INTO daily_stats (id, date, pool) VALUES ('2026-08-01|main', '2026-08-01', 'main'),"
	    " ('2026-11-25|main', '2026-11-25', 'main');"
	    "INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, started_at) VALUES "
	    "('c', '" P1 "', 1, 30, '2026-10-01T00:00:00Z'), ('d', '" P1 "', 1, 30, '2026-11-20T00:00:00Z');", &e), 0);
	assert_int_equal(stats_prune(f->db, now, 90, 30, &e), 3);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM provider_usage_logs"), 1);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM daily_stats"), 1);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM cooldown_events"), 1);
	assert_int_equal(stats_prune(f->db, now, 90, 30, &e), 0);
}

/* The writer thread: a locked database makes the flush fail; the rows (and
 * the request log records) stay pending and the next interval writes them
 * exactly once, the ring pruned to request_log_rows. */
static void
test_writer_keeps_rows_through_busy(void **state)
{
	struct testdb *f = *state;
	struct stats_settings set = { 90, 30, 3 };
	struct request_result r = result(P1, 200, 7);
	struct stats_info si;
	struct sc_err e;
	sqlite3 *other;
	int i;

	sc_err_clear(&e);
	db_set_busy_timeout_ms(100);
	assert_int_equal(stats_start(f->path, &e), 0);
	other = db_open(f->path, 0, &e);
	assert_non_null(other);
	assert_int_equal(db_exec(other, "BEGIN IMMEDIATE", &e), 0);	/* someone holds the write lock */
	for (i = 0; i < 3; i++)
		stats_record(&r);
	stats_handoff(1, "{\"n\":1}", &set);
	for (i = 0; i < 200; i++) {
		stats_get_info(&si);
		if (si.flush_failures > 0)
			break;
		usleep(10000);
	}
	assert_true(si.flush_failures > 0);
	assert_int_equal(si.pending, 1);
	assert_int_equal(db_exec(other, "COMMIT", &e), 0);
	db_close(other);
	stats_record(&r);
	stats_stop("{\"n\":2}");	/* the final flush writes the kept rows and the new one */
	db_set_busy_timeout_ms(0);
	assert_int_equal(q_int(f->db, "SELECT request_count FROM provider_usage_logs"), 4);
	assert_int_equal(q_int(f->db, "SELECT total_tokens FROM provider_usage_logs"), 28);
	assert_int_equal(q_int(f->db, "SELECT json_extract(snapshot, '$.n') FROM live_status"), 2);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), 3);
	/* 3 + 1 records for a ring of 3: only the newest 3 were inserted. */
	assert_int_equal(q_int(f->db, "SELECT max(seq) FROM request_log"), 3);
	stats_get_info(&si);
	assert_int_equal(si.pending, 0);
	assert_int_equal(si.log_written, 3);
}

/* request_log_rows = 0: nothing is collected or written, and what the log
 * held is deleted at the next flush. */
static void
test_writer_log_off(void **state)
{
	struct testdb *f = *state;
	struct stats_settings on = { 90, 30, 100 }, off = { 90, 30, 0 };
	struct request_result r = result(P1, 200, 7);
	struct sc_err e;

	sc_err_clear(&e);
	assert_int_equal(stats_start(f->path, &e), 0);
	stats_handoff(0, NULL, &on);
	stats_record(&r);
	stats_record(&r);
	stats_handoff(1, NULL, &on);
	stats_handoff(1, NULL, &off);	/* may merge with the previous hand-off: written or pruned, never kept */
	stats_record(&r);
	stats_stop(NULL);
	assert_int_equal(q_int(f->db, "SELECT request_count FROM provider_usage_logs"), 3);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), 0);
}

static int
job_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "UPDATE meta SET value = value || '%s' WHERE key = 'config_version'",
	    (const char *)arg);
	return db_exec(db, sql, e);
}

/* Queued writes run on the writer thread in submission order, and all of
 * them before stats_stop returns. */
static void
test_submit_in_order(void **state)
{
	struct testdb *f = *state;
	static const char *const parts[] = { "a", "b", "c", "d" };
	struct sc_err e;
	sqlite3_stmt *st;
	int i;

	sc_err_clear(&e);
	assert_int_equal(stats_submit(job_txn, (void *)"x", NULL, "nothing"), -1);	/* not running */
	assert_int_equal(stats_start(f->path, &e), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(stats_submit(job_txn, sc_xstrdup(parts[i]), free, "a test write"), 0);
	stats_stop(NULL);
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT value FROM meta WHERE key = 'config_version'", -1, &st,
	    NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_non_null(strstr((const char *)sqlite3_column_text(st, 0), "abcd"));
	sqlite3_finalize(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample_rules),
		cmocka_unit_test_setup_teardown(test_flushes_add_up, setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_deleted_provider_skipped, setup, testdb_teardown),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_cap),
		cmocka_unit_test_setup_teardown(test_prune, setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_writer_keeps_rows_through_busy, setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_writer_log_off, setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_submit_in_order, setup, testdb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
