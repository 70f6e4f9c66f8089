/*
 * Unit tests of dataplane/reqlog.c: outcome names, the trail of
 * attempts (begin/end, the cap, an attempt left open), a record filled from a
 * finished request (no secret fields, attempts copied), batches (merge keeps
 * the newest at the cap), and reqlog_write against a real temporary database:
 * rows and attempts with every field, the ring holding exactly N rows across
 * many flushes, a batch larger than N, N lowered, N = 0 emptying it, and seq
 * never going back.
 */
#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "events.h"
#include "reqlog.h"
#include "testdb.h"

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

/* The rows of a query as "a|b|c\n" lines (static buffer). */
static const char *
q_dump(sqlite3 *db, const char *sql)
{
	static char out[8192];
	sqlite3_stmt *st;
	size_t len = 0;
	int i;

	out[0] = '\0';
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (i = 0; i < sqlite3_column_count(st); i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i ? "|" : "",
			    t ? (const char *)t : "NULL");
		}
		len += (size_t)snprintf(out + len, sizeof(out) - len, "\n");
	}
	sqlite3_finalize(st);
	return out;
}

/* The writer of the test's database, kept for the whole test as the
 * statistics writer keeps its own for its connection's life. */
static struct reqlog_writer *tw;

static int
writer_setup(void **state)
{
	struct testdb *f;
	struct sc_err e;

	if (testdb_setup(state) == -1)
		return -1;
	f = *state;
	sc_err_clear(&e);
	tw = reqlog_writer_new(f->db, &e);
	return tw != NULL ? 0 : -1;
}

static int
writer_teardown(void **state)
{
	reqlog_writer_free(tw);
	tw = NULL;
	return testdb_teardown(state);
}

struct write_args {
	const struct reqlog_batch *b;
	int                        keep;
};

static int
write_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct write_args *a = arg;

	(void)db;
	return reqlog_write(tw, a->b, a->keep, e);
}

/* Write in a transaction, as the statistics writer does. */
static void
write_batch(sqlite3 *db, const struct reqlog_batch *b, int keep)
{
	struct sc_err e;
	struct write_args a = { b, keep };

	sc_err_clear(&e);
	assert_int_equal(reqlog_write_txn(db, write_txn, &a, &e), 0);
	/* The writer keeps the attempts' key without SQLite's enforcement. */
	assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
	assert_int_equal(q_int(db, "PRAGMA foreign_keys"), 1);
}

/* A batch of n plain records named prefix-0 .. prefix-(n-1). */
static void
fill_batch(struct reqlog_batch *b, const char *prefix, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct reqlog_record *r = reqlog_batch_add(b);
		assert_non_null(r);
		snprintf(r->request_id, sizeof(r->request_id), "%s-%d", prefix, i);
		r->finished_ms = 1764547200000LL + i;
		r->status = 200;
		r->ttfb_ms = -1;
		r->prompt_tokens = r->completion_tokens = r->total_tokens = -1;
	}
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(reqlog_outcome_name(REQLOG_RATE_LIMITED), "rate_limited");
	assert_string_equal(reqlog_outcome_name(REQLOG_INTERRUPTED), "interrupted");
	assert_string_equal(reqlog_outcome_name(REQLOG_OUTCOME_N), "pending");
	assert_int_equal(reqlog_outcome_of(false, false, 200), REQLOG_OK);
	assert_int_equal(reqlog_outcome_of(false, false, 429), REQLOG_RATE_LIMITED);
	assert_int_equal(reqlog_outcome_of(false, false, 401), REQLOG_INVALID_KEY);
	assert_int_equal(reqlog_outcome_of(false, false, 403), REQLOG_INVALID_KEY);
	assert_int_equal(reqlog_outcome_of(false, false, 502), REQLOG_SERVER_ERROR);
	assert_int_equal(reqlog_outcome_of(false, false, 400), REQLOG_CLIENT_ERROR);
	assert_int_equal(reqlog_outcome_of(true, false, 0), REQLOG_CONNECT_ERROR);
	assert_int_equal(reqlog_outcome_of(true, true, 0), REQLOG_TTFB_TIMEOUT);
}

static void
test_trail(void **state)
{
	struct reqlog_trail t;
	int i;

	(void)state;
	reqlog_trail_init(&t);
	reqlog_trail_end(&t, REQLOG_OK, 200, 5);	/* nothing open: no-op */
	assert_int_equal(t.n, 0);
	reqlog_trail_begin(&t, "p1", "one", SCHED_POOL_MAIN, 10);
	assert_ptr_equal(t.a, &t.first);	/* the one attempt most make: no allocation */
	assert_non_null(reqlog_trail_open(&t));
	reqlog_trail_end(&t, REQLOG_RATE_LIMITED, 429, 40);
	assert_null(reqlog_trail_open(&t));
	reqlog_trail_end(&t, REQLOG_OK, 200, 99);	/* already closed: unchanged */
	reqlog_trail_begin(&t, "p2", "two", SCHED_POOL_FALLBACK, 41);
	assert_ptr_not_equal(t.a, &t.first);	/* a second one moves the trail to the heap */
	assert_string_equal(t.a[0].provider_id, "p1");
	reqlog_trail_end(&t, REQLOG_OK, 200, 141);
	reqlog_trail_begin(&t, "p3", "three", SCHED_POOL_MAIN, 150);
	assert_int_equal(t.n, 3);
	assert_string_equal(t.a[0].provider_id, "p1");
	assert_int_equal(t.a[0].outcome, REQLOG_RATE_LIMITED);
	assert_int_equal(t.a[0].status, 429);
	assert_int_equal(t.a[0].start_ms, 10);
	assert_int_equal(t.a[0].duration_ms, 30);
	assert_int_equal(t.a[1].pool, SCHED_POOL_FALLBACK);
	assert_int_equal(t.a[1].duration_ms, 100);
	assert_int_equal(t.a[2].pool, SCHED_POOL_MAIN);
	assert_int_equal(t.a[2].outcome, REQLOG_PENDING);
	/* Ending with "pending" means the request ended around it. */
	reqlog_trail_end(&t, REQLOG_PENDING, 0, 100);
	assert_int_equal(t.a[2].outcome, REQLOG_CLIENT_CLOSED);
	assert_int_equal(t.a[2].duration_ms, 0);	/* clock before the start: 0, not negative */
	/* The end of the request: a 2xx attempt whose client left takes that
	 * outcome, its duration running to the end. */
	t.a[2].outcome = REQLOG_OK;
	reqlog_trail_finish(&t, REQLOG_PENDING, 200, 400);	/* ended normally: unchanged */
	assert_int_equal(t.a[2].outcome, REQLOG_OK);
	reqlog_trail_finish(&t, REQLOG_CLIENT_CLOSED, 200, 400);
	assert_int_equal(t.a[2].outcome, REQLOG_CLIENT_CLOSED);
	assert_int_equal(t.a[2].duration_ms, 250);
	reqlog_trail_finish(&t, REQLOG_INTERRUPTED, 200, 500);	/* only a 2xx is rewritten */
	assert_int_equal(t.a[2].outcome, REQLOG_CLIENT_CLOSED);
	reqlog_trail_begin(&t, "p4", "four", SCHED_POOL_MAIN, 450);
	reqlog_trail_finish(&t, REQLOG_PENDING, 0, 460);	/* still running at the end */
	assert_int_equal(t.a[3].outcome, REQLOG_INTERRUPTED);
	assert_int_equal(t.a[3].duration_ms, 10);
	/* A rate-limit error inside a 200 stream, reported after the 2xx. */
	reqlog_trail_begin(&t, "p5", "five", SCHED_POOL_MAIN, 470);
	reqlog_trail_end(&t, REQLOG_OK, 200, 480);
	reqlog_trail_late(&t, REQLOG_RATE_LIMITED, 429);
	assert_int_equal(t.a[4].outcome, REQLOG_RATE_LIMITED);
	assert_int_equal(t.a[4].status, 429);
	reqlog_trail_late(&t, REQLOG_SERVER_ERROR, 500);	/* only an ok attempt changes */
	assert_int_equal(t.a[4].outcome, REQLOG_RATE_LIMITED);
	reqlog_trail_finish(&t, REQLOG_CLIENT_CLOSED, 429, 600);	/* nor does a later end */
	assert_int_equal(t.a[4].outcome, REQLOG_RATE_LIMITED);
	for (i = 0; i < 2 * REQLOG_ATTEMPTS_MAX; i++) {
		reqlog_trail_begin(&t, "p", "n", SCHED_POOL_MAIN, i);
		reqlog_trail_end(&t, REQLOG_SERVER_ERROR, 500, i + 1);
	}
	assert_int_equal(t.n, REQLOG_ATTEMPTS_MAX);
	reqlog_trail_free(&t);
	assert_int_equal(t.n, 0);
}

static void
test_fill(void **state)
{
	struct reqlog_trail t;
	struct request_result res;
	struct reqlog_batch b;
	struct reqlog_record *r;

	(void)state;
	reqlog_trail_init(&t);
	reqlog_trail_begin(&t, "p1", "one", SCHED_POOL_MAIN, 0);
	reqlog_trail_end(&t, REQLOG_RATE_LIMITED, 429, 12);
	reqlog_trail_begin(&t, "p2", "two", SCHED_POOL_FALLBACK, 13);
	reqlog_trail_end(&t, REQLOG_OK, 200, 50);
	memset(&res, 0, sizeof(res));
	res.rid = "rid-1";
	res.provider_id = "p2";
	res.provider_name = "two";
	res.pool = SCHED_POOL_FALLBACK;
	res.cost_per_1k = 2.0;
	res.model = "nv/m";
	res.status = 200;
	res.stream = 1;
	res.latency_ms = 80;
	res.ttfb_ms = 60;
	res.queue_ms = 5;
	res.prompt_tokens = 10;
	res.completion_tokens = 20;
	res.total_tokens = 30;
	res.client = "openclaw";
	res.trail = &t;
	reqlog_batch_init(&b);
	r = reqlog_batch_add(&b);
	reqlog_record_fill(r, &res, 1764547200123LL);
	reqlog_trail_free(&t);	/* the record owns a copy */
	assert_string_equal(r->request_id, "rid-1");
	assert_string_equal(r->client, "openclaw");
	assert_string_equal(r->provider_name, "two");
	assert_int_equal(r->pool, SCHED_POOL_FALLBACK);
	assert_string_equal(r->error_code, "");
	assert_true(r->streamed);
	assert_false(r->client_disconnected);
	assert_true(r->cost > 0.0599 && r->cost < 0.0601);
	assert_int_equal(r->natt, 2);
	assert_string_equal(r->att[0].provider_name, "one");
	assert_int_equal(r->att[1].outcome, REQLOG_OK);

	/* No provider: no name even when a name pointer came along. */
	memset(&res, 0, sizeof(res));
	res.rid = "rid-2";
	res.provider_name = "stale";
	res.pool = SCHED_POOL_MAIN;
	res.status = 499;
	res.error_code = "client_closed";
	res.client_closed = 1;
	res.total_tokens = -1;
	r = reqlog_batch_add(&b);
	reqlog_record_fill(r, &res, 1764547200999LL);
	assert_string_equal(r->provider_id, "");
	assert_string_equal(r->provider_name, "");
	assert_string_equal(r->error_code, "client_closed");
	assert_true(r->client_disconnected);
	assert_int_equal(r->natt, 0);
	assert_null(r->att);

	/* One attempt (most requests): kept in the record itself. */
	reqlog_trail_init(&t);
	reqlog_trail_begin(&t, "p1", "one", SCHED_POOL_MAIN, 0);
	reqlog_trail_end(&t, REQLOG_OK, 200, 30);
	res.trail = &t;
	r = reqlog_batch_add(&b);
	reqlog_record_fill(r, &res, 1764547201000LL);
	reqlog_trail_free(&t);
	assert_int_equal(r->natt, 1);
	assert_null(r->att);
	assert_string_equal(r->first.provider_name, "one");
	assert_int_equal(r->first.duration_ms, 30);
	reqlog_batch_free(&b);
}

static void
test_batch_merge(void **state)
{
	struct reqlog_batch a, b;
	int i;

	(void)state;
	reqlog_batch_init(&a);
	reqlog_batch_init(&b);
	fill_batch(&b, "x", 3);
	reqlog_batch_merge(&a, &b);	/* into empty: a move */
	assert_int_equal(a.n, 3);
	assert_int_equal(b.n, 0);
	fill_batch(&b, "y", 2);
	reqlog_batch_merge(&a, &b);
	assert_int_equal(a.n, 5);
	assert_string_equal(a.r[3].request_id, "y-0");
	/* At the cap new adds are refused and counted. */
	for (i = (int)a.n; i < REQLOG_BATCH_MAX; i++)
		assert_non_null(reqlog_batch_add(&a));
	assert_null(reqlog_batch_add(&a));
	assert_int_equal(a.dropped, 1);
	/* A merge past the cap drops the oldest, keeps the newest. */
	fill_batch(&b, "z", 4);
	reqlog_batch_merge(&a, &b);
	assert_int_equal(a.n, REQLOG_BATCH_MAX);
	assert_int_equal(a.dropped, 5);
	assert_string_equal(a.r[0].request_id, "y-1");	/* x-0, x-1, x-2, y-0 went */
	assert_string_equal(a.r[REQLOG_BATCH_MAX - 1].request_id, "z-3");
	assert_string_equal(a.r[REQLOG_BATCH_MAX - 4].request_id, "z-0");
	reqlog_batch_free(&a);
	reqlog_batch_free(&b);
}

static void
test_write_fields(void **state)
{
	struct testdb *f = *state;
	struct reqlog_batch b;
	struct reqlog_record *r;

	reqlog_batch_init(&b);
	r = reqlog_batch_add(&b);
	snprintf(r->request_id, sizeof(r->request_id), "req-a");
	r->finished_ms = 1764547200123LL;	/* 2025-12-01T00:00:00Z */
	snprintf(r->client, sizeof(r->client), "openclaw");
	snprintf(r->model, sizeof(r->model), "nv/m");
	snprintf(r->provider_id, sizeof(r->provider_id), "p2");
	snprintf(r->provider_name, sizeof(r->provider_name), "two");
	r->pool = SCHED_POOL_FALLBACK;
	r->status = 200;
	r->queue_ms = 5;
	r->ttfb_ms = 60;
	r->latency_ms = 80;
	r->prompt_tokens = 10;
	r->completion_tokens = 20;
	r->total_tokens = 30;
	r->cost = 0.06;
	r->streamed = true;
	r->natt = 2;
	r->att = calloc(2, sizeof(*r->att));
	snprintf(r->att[0].provider_id, sizeof(r->att[0].provider_id), "p1");
	snprintf(r->att[0].provider_name, sizeof(r->att[0].provider_name), "one");
	r->att[0].pool = SCHED_POOL_MAIN;
	r->att[0].status = 429;
	r->att[0].outcome = REQLOG_RATE_LIMITED;
	r->att[0].duration_ms = 12;
	snprintf(r->att[1].provider_id, sizeof(r->att[1].provider_id), "p2");
	r->att[1].pool = SCHED_POOL_FALLBACK;
	r->att[1].status = 200;
	r->att[1].outcome = REQLOG_OK;
	r->att[1].start_ms = 13;
	r->att[1].duration_ms = 37;
	r = reqlog_batch_add(&b);
	snprintf(r->request_id, sizeof(r->request_id), "req-b");
	r->finished_ms = 1764547201000LL;
	r->status = 503;
	snprintf(r->error_code, sizeof(r->error_code), "queue_timeout");
	r->queue_ms = 1000;
	r->ttfb_ms = -1;
	r->prompt_tokens = r->completion_tokens = r->total_tokens = -1;
	write_batch(f->db, &b, 100);
	assert_string_equal(q_dump(f->db, "SELECT seq, request_id, finished_at, finished_ms, client, model, "
	    "provider_id, provider_name, pool, status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, "
	    "prompt_tokens, completion_tokens, total_tokens, cost, streamed, client_disconnected "
	    "FROM request_log ORDER BY seq"),
	    "1|req-a|2025-12-01T00:00:00Z|1764547200123|openclaw|nv/m|p2|two|fallback|200||2|5|60|80|10|20|30|0.06|1|0\n"
	    "2|req-b|2025-12-01T00:00:01Z|1764547201000|||NULL||NULL|503|queue_timeout|0|1000|-1|0|-1|-1|-1|0.0|0|0\n");
	assert_string_equal(q_dump(f->db, "SELECT seq, n, provider_id, provider_name, pool, status, outcome, "
	    "start_ms, duration_ms FROM request_attempts ORDER BY seq, n"),
	    "1|1|p1|one|main|429|rate_limited|0|12\n"
	    "1|2|p2||fallback|200|ok|13|37\n");
	reqlog_batch_free(&b);
}

static void
test_ring(void **state)
{
	struct testdb *f = *state;
	struct reqlog_batch b;
	int round;

	/* 30 flushes of 7 records each into a ring of 50: exactly 50 rows, the newest. */
	for (round = 0; round < 30; round++) {
		char prefix[16];
		int i;
		reqlog_batch_init(&b);
		snprintf(prefix, sizeof(prefix), "r%d", round);
		fill_batch(&b, prefix, 7);
		for (i = 0; i < 7; i++) {
			b.r[i].natt = 1;
			if (i % 2 == 0) {	/* both forms: an array, and the record's own */
				b.r[i].att = calloc(1, sizeof(*b.r[i].att));
				b.r[i].att[0].outcome = REQLOG_OK;
			} else {
				b.r[i].first.outcome = REQLOG_OK;
			}
		}
		write_batch(f->db, &b, 50);
		reqlog_batch_free(&b);
		assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), round * 7 + 7 < 50 ? round * 7 + 7 : 50);
	}
	assert_int_equal(q_int(f->db, "SELECT max(seq) FROM request_log"), 210);
	assert_int_equal(q_int(f->db, "SELECT min(seq) FROM request_log"), 161);
	/* Attempts went with their rows. */
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_attempts"), 50);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_attempts WHERE seq < 161"), 0);
	assert_string_equal(q_dump(f->db, "SELECT request_id FROM request_log ORDER BY seq DESC LIMIT 1"), "r29-6\n");

	/* A batch larger than the ring: only its newest N go in. */
	reqlog_batch_init(&b);
	fill_batch(&b, "big", 120);
	write_batch(f->db, &b, 50);
	reqlog_batch_free(&b);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), 50);
	assert_string_equal(q_dump(f->db, "SELECT request_id FROM request_log ORDER BY seq LIMIT 1"), "big-70\n");

	/* N lowered with nothing new: pruned at once. */
	reqlog_batch_init(&b);
	write_batch(f->db, &b, 10);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), 10);
	assert_string_equal(q_dump(f->db, "SELECT request_id FROM request_log ORDER BY seq LIMIT 1"), "big-110\n");

	/* N = 0 empties the log; seq never goes back afterwards. */
	write_batch(f->db, &b, 0);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_log"), 0);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_attempts"), 0);
	fill_batch(&b, "again", 1);
	write_batch(f->db, &b, 10);
	reqlog_batch_free(&b);
	assert_int_equal(q_int(f->db, "SELECT seq FROM request_log"), 261);
}

/* Many rows in one flush, as under load: the writer inserts them in groups
 * (reqlog.c); every row must get the next seq, its own second and its own
 * attempts, whatever its place in a group, and the ring's bound must count
 * them all. 100 records over 4 seconds (groups cut where the second
 * changes), 0 to 3 attempts each, ring of 70: the newest 70 go in as seq
 * 4..73 after the 3 rows before them, which the ring then drops. */
static void
test_write_many(void **state)
{
	struct testdb *f = *state;
	struct reqlog_batch b;
	char want[8192], sql[256];
	size_t len = 0;
	int i, k, natt = 0;

	reqlog_batch_init(&b);
	fill_batch(&b, "m", 3);	/* seq 1..3, pruned below */
	write_batch(f->db, &b, 70);
	reqlog_batch_free(&b);
	reqlog_batch_init(&b);
	fill_batch(&b, "g", 100);
	for (i = 0; i < 100; i++) {
		struct reqlog_record *r = &b.r[i];
		r->finished_ms = 1764547200000LL + (i < 5 ? 0 : i < 40 ? 1000 : i < 41 ? 2000 : 3000) + i;
		r->status = 200 + i;
		r->natt = i % 4;
		r->att = r->natt ? calloc((size_t)r->natt, sizeof(*r->att)) : NULL;
		for (k = 0; k < r->natt; k++) {
			snprintf(r->att[k].provider_id, sizeof(r->att[k].provider_id), "p%d", i);
			r->att[k].pool = k == 2 ? SCHED_POOL_EMERGENCY : SCHED_POOL_MAIN;
			r->att[k].status = 429 + k;
			r->att[k].outcome = k + 1 < r->natt ? REQLOG_RATE_LIMITED : REQLOG_OK;
			r->att[k].start_ms = k;
		}
		if (i >= 30) {
			len += (size_t)snprintf(want + len, sizeof(want) - len, "%d|g-%d|2025-12-01T00:00:0%dZ|%d|%d\n",
			    i - 26, i, i < 5 ? 0 : i < 40 ? 1 : i < 41 ? 2 : 3, 200 + i, i % 4);
			natt += i % 4;
		}
	}
	write_batch(f->db, &b, 70);
	reqlog_batch_free(&b);
	assert_string_equal(q_dump(f->db, "SELECT seq, request_id, finished_at, status, attempts FROM request_log "
	    "ORDER BY seq"), want);
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_attempts"), natt);
	/* Each attempt under its own row: provider p<i> for g-<i>, n = 1.., pools and outcomes. */
	assert_int_equal(q_int(f->db, "SELECT count(*) FROM request_attempts a JOIN request_log l USING (seq) "
	    "WHERE a.provider_id <> 'p' || substr(l.request_id, 3) OR a.n > l.attempts OR a.status <> 428 + a.n "
	    "OR a.start_ms <> a.n - 1 OR a.pool <> CASE a.n WHEN 3 THEN 'emergency' ELSE 'main' END "
	    "OR a.outcome <> CASE WHEN a.n = l.attempts THEN 'ok' ELSE 'rate_limited' END"), 0);
	for (i = 30; i < 100; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM request_attempts WHERE seq = %d", i - 26);
		assert_int_equal(q_int(f->db, sql), i % 4);
	}
	assert_int_equal(q_int(f->db, "SELECT seq FROM sqlite_sequence WHERE name = 'request_log'"), 73);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_trail),
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_batch_merge),
		cmocka_unit_test_setup_teardown(test_write_fields, writer_setup, writer_teardown),
		cmocka_unit_test_setup_teardown(test_ring, writer_setup, writer_teardown),
		cmocka_unit_test_setup_teardown(test_write_many, writer_setup, writer_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
