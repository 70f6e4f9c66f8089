/*
 * Unit tests for admin-fcgi/events.c: SSE framing, Last-Event-ID cursors,
 * change detection of the snapshot and config version, cooldown start/end
 * events, request log rows as "event: request" (each once, lag skipping),
 * heartbeats, and a whole tick against a temporary database (which
 * must leave no read transaction open, so a checkpoint can truncate the WAL).
 */

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

static void
test_id_parse(void **state)
{
	int64_t c, s;

	(void)state;
	assert_int_equal(events_id_parse("12-34", &c, &s), 0);
	assert_int_equal(c, 12);
	assert_int_equal(s, 34);
	assert_int_equal(events_id_parse("7", &c, &s), 0);
	assert_int_equal(c, 7);
	assert_int_equal(s, 0);
	assert_int_equal(events_id_parse("", &c, &s), -1);
	assert_int_equal(events_id_parse(NULL, &c, &s), -1);
	assert_int_equal(events_id_parse("abc", &c, &s), -1);
	assert_int_equal(events_id_parse("-1", &c, &s), -1);
	assert_int_equal(events_id_parse("1-", &c, &s), -1);
	assert_int_equal(events_id_parse("1-2x", &c, &s), -1);
	assert_int_equal(events_id_parse("1-2-3", &c, &s), -1);
	assert_int_equal(events_id_parse("99999999999999999999999", &c, &s), -1);
	assert_int_equal(c, 0);
}

static void
test_format_multiline(void **state)
{
	struct events_stream s;
	struct sc_buf b;

	(void)state;
	events_stream_init(&s, "3-9", 0);
	sc_buf_init(&b, 4096);
	assert_int_equal(events_format(&s, &b, "status", "{\"a\":1,\r\n\"b\":2}"), 0);
	assert_string_equal(b.data, "event: status\nid: 3-9\ndata: {\"a\":1,\ndata: \"b\":2}\n\n");
	sc_buf_free(&b);

	/* The preamble's hello carries no id, so it never moves the browser's cursor. */
	sc_buf_reset(&b);
	assert_int_equal(events_preamble(&s, &b, 1), 0);
	assert_string_equal(b.data, "retry: 2000\n: sidecar-events\n\nevent: hello\ndata: {\"demo\":true}\n\n");
	sc_buf_free(&b);

	/* The cap holds: a batch never grows past it. */
	sc_buf_init(&b, 16);
	assert_int_equal(events_format(&s, &b, "status", "0123456789abcdef"), -1);
	assert_true(b.len <= 16);
	sc_buf_free(&b);
}

static void
test_status_changes_only(void **state)
{
	struct events_stream s;
	struct sc_buf b;

	(void)state;
	events_stream_init(&s, NULL, 0);
	sc_buf_init(&b, 4096);
	assert_int_equal(events_on_status(&s, &b, NULL), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(events_on_status(&s, &b, "{\"x\":1}"), 1);
	assert_non_null(strstr(b.data, "id: 0-1\n"));
	sc_buf_reset(&b);
	assert_int_equal(events_on_status(&s, &b, "{\"x\":1}"), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(events_on_status(&s, &b, "{\"x\":2}"), 1);
	assert_non_null(strstr(b.data, "id: 0-2\n"));
	sc_buf_free(&b);

	/* A resumed stream continues the sequence, so ids keep increasing. */
	events_stream_init(&s, "5-40", 0);
	sc_buf_init(&b, 4096);
	assert_int_equal(events_on_status(&s, &b, "{}"), 1);
	assert_non_null(strstr(b.data, "id: 5-41\n"));
	sc_buf_free(&b);
}

static void
test_config_version(void **state)
{
	struct events_stream s;
	struct sc_buf b;

	(void)state;
	events_stream_init(&s, NULL, 0);
	sc_buf_init(&b, 4096);
	assert_int_equal(events_on_config(&s, &b, 4), 0);	/* first value: silent */
	assert_int_equal(events_on_config(&s, &b, 4), 0);
	assert_int_equal(events_on_config(&s, &b, -1), 0);	/* read error: ignored */
	assert_int_equal(b.len, 0);
	assert_int_equal(events_on_config(&s, &b, 6), 1);
	assert_non_null(strstr(b.data, "event: provider\n"));
	assert_non_null(strstr(b.data, "data: {\"config_version\":6}\n"));
	sc_buf_free(&b);
}

static void
test_heartbeat(void **state)
{
	struct events_stream s;
	struct sc_buf b;

	(void)state;
	events_stream_init(&s, NULL, 1000);
	sc_buf_init(&b, 4096);
	assert_int_equal(events_heartbeat(&s, &b, 1000 + EVENTS_HEARTBEAT_MS - 1), 0);
	assert_int_equal(events_heartbeat(&s, &b, 1000 + EVENTS_HEARTBEAT_MS), 1);
	assert_string_equal(b.data, ": ping\n\n");
	events_written(&s, 1000 + EVENTS_HEARTBEAT_MS);
	sc_buf_reset(&b);
	assert_int_equal(events_heartbeat(&s, &b, 1000 + EVENTS_HEARTBEAT_MS + 5), 0);
	/* The heartbeat is well inside the 15 s that proxies are given. */
	assert_true(EVENTS_HEARTBEAT_MS <= 15000);
	sc_buf_free(&b);
}

/* A fake provider table for events_expire_cooldowns. */
struct fake_prov {
	int64_t until_ms;
	int64_t latest;
	int     gone;
};

static int
fake_lookup(void *arg, const char *id, int64_t *until, int64_t *latest)
{
	struct fake_prov *p = arg;

	(void)id;
	*until = p->until_ms;
	*latest = p->latest;
	return p->gone ? 1 : 0;
}

static void
fill_row(struct events_cooldown_row *r, int64_t rowid, const char *ended)
{
	memset(r, 0, sizeof(*r));
	r->rowid = rowid;
	snprintf(r->id, sizeof(r->id), "ev-%lld", (long long)rowid);
	snprintf(r->provider_id, sizeof(r->provider_id), "p1");
	snprintf(r->provider_name, sizeof(r->provider_name), "acc \"one\"");
	r->consecutive_count = 2;
	r->cooldown_seconds = 60;
	snprintf(r->summary, sizeof(r->summary), "429 Too Many Requests");
	snprintf(r->started_at, sizeof(r->started_at), "2026-11-26T08:00:00Z");
	snprintf(r->ended_at, sizeof(r->ended_at), "%s", ended);
}

static void
test_cooldown_start_end(void **state)
{
	struct events_stream s;
	struct events_cooldown_row r;
	struct fake_prov fp = { 0, 0, 0 };
	struct sc_buf b;
	int64_t t0 = 1795680000000LL;	/* 2026-11-26T08:00:00Z */

	(void)state;
	events_stream_init(&s, NULL, 0);
	sc_buf_init(&b, 1 << 16);
	fill_row(&r, 7, "2026-11-26T08:01:00Z");
	assert_int_equal(events_on_cooldown_start(&s, &b, &r, t0), 1);
	assert_int_equal(s.cooldown_cursor, 7);
	assert_non_null(strstr(b.data, "event: cooldown\nid: 7-0\n"));
	assert_non_null(strstr(b.data, "\"kind\":\"start\""));
	assert_non_null(strstr(b.data, "\"provider_name\":\"acc \\\"one\\\"\""));
	assert_non_null(strstr(b.data, "\"ended_at\":\"2026-11-26T08:01:00Z\""));
	assert_int_equal(s.nactive, 1);
	sc_buf_reset(&b);

	/* Still cooling on the provider: nothing. */
	fp.until_ms = t0 + 60000;
	fp.latest = 7;
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 1000, fake_lookup, &fp), 0);
	/* Extended past its planned end (longer Retry-After): still nothing. */
	fp.until_ms = t0 + 90000;
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 61000, fake_lookup, &fp), 0);
	/* Over. */
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 90000, fake_lookup, &fp), 1);
	assert_non_null(strstr(b.data, "\"kind\":\"end\""));
	assert_non_null(strstr(b.data, "\"seq\":7"));
	assert_int_equal(s.nactive, 0);
	sc_buf_reset(&b);

	/* Reset by the operator (cooldown_until cleared). */
	fill_row(&r, 8, "2026-11-26T08:01:00Z");
	events_on_cooldown_start(&s, &b, &r, t0);
	fp.until_ms = 0;
	fp.latest = 8;
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 1000, fake_lookup, &fp), 1);

	/* Superseded by a newer cooldown of the same provider. */
	fill_row(&r, 9, "2026-11-26T08:01:00Z");
	events_on_cooldown_start(&s, &b, &r, t0);
	fp.until_ms = t0 + 60000;
	fp.latest = 10;
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 1000, fake_lookup, &fp), 1);

	/* Provider deleted. */
	fill_row(&r, 11, "2026-11-26T08:01:00Z");
	events_on_cooldown_start(&s, &b, &r, t0);
	fp.gone = 1;
	assert_int_equal(events_expire_cooldowns(&s, &b, t0 + 1000, fake_lookup, &fp), 1);
	assert_int_equal(s.nactive, 0);

	/* A replayed row that is long over is not tracked. */
	fill_row(&r, 12, "2026-11-26T08:01:00Z");
	events_on_cooldown_start(&s, &b, &r, t0 + 3600000);
	assert_int_equal(s.nactive, 0);
	assert_int_equal(s.cooldown_cursor, 12);
	sc_buf_free(&b);
}

/* A temporary database with the schema, two providers and a writer connection. */
struct dbfix {
	char     path[64];
	sqlite3 *w;		/* writer */
	sqlite3 *r;		/* read-only, as sidecar-events opens it */
	struct events_db q;
};

static int
db_setup(void **state)
{
	struct dbfix *f = calloc(1, sizeof(*f));
	struct sc_err e;
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/test_events_XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	unlink(f->path);
	f->w = db_open(f->path, DB_OPEN_CREATE, &e);
	assert_non_null(f->w);
	assert_int_equal(db_migrate(f->w, &e), 0);
	assert_int_equal(db_exec(f->w,
	    "INSERT INTO providers (id, name, api_key, endpoint_url, model_prefix) VALUES"
	    " ('p1', 'account01', 'v1:x', 'http://127.0.0.1:1/v1', 'mock/'),"
	    " ('p2', 'account02', 'v1:x', 'http://127.0.0.1:1/v1', 'mock/')", &e), 0);
	f->r = db_open(f->path, DB_OPEN_READONLY, &e);
	assert_non_null(f->r);
	assert_int_equal(events_db_init(&f->q, f->r, &e), 0);
	*state = f;
	return 0;
}

static int
db_teardown(void **state)
{
	struct dbfix *f = *state;
	char p[96];

	events_db_free(&f->q);
	db_close(f->r);
	db_close(f->w);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	free(f);
	return 0;
}

/* Count occurrences of needle in hay. */
static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (; hay != NULL && (hay = strstr(hay, needle)) != NULL; hay++)
		n++;
	return n;
}

static void
exec_ok(sqlite3 *db, const char *sql)
{
	struct sc_err e;

	if (db_exec(db, sql, &e) != 0)
		fail_msg("%s: %s", sql, e.msg);
}

static void
test_tick_database(void **state)
{
	struct dbfix *f = *state;
	struct events_stream s;
	struct sc_buf b;
	char sql[512], ts[SC_TS_LEN];
	int64_t wall = sc_wall_ms();
	int log, ckpt, busy;
	sqlite3_stmt *st;

	sc_buf_init(&b, EVENTS_BUF_CAP);
	/* An old cooldown exists before the stream opens: not replayed. */
	exec_ok(f->w, "INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds,"
	    " started_at, ended_at) VALUES ('old', 'p1', 1, 30, '2026-01-01T00:00:00Z', '2026-01-01T00:00:30Z')");
	events_stream_init(&s, NULL, 0);
	assert_true(events_tick(&s, &f->q, &b, 0, wall) >= 0);
	assert_int_equal(count(b.data, "event: cooldown"), 0);
	assert_int_equal(count(b.data, "event: status"), 0);	/* no live_status row yet */
	assert_int_equal(s.cooldown_cursor, 1);
	sc_buf_reset(&b);

	/* The data plane publishes a snapshot: one status event, then none until it changes. */
	exec_ok(f->w, "INSERT INTO live_status (id, updated_at, snapshot) VALUES (1, '2026-11-26T08:00:00Z',"
	    " '{\"ts_ms\":1,\"providers\":[]}')");
	assert_int_equal(events_tick(&s, &f->q, &b, 100, wall), 1);
	assert_int_equal(count(b.data, "event: status"), 1);
	assert_non_null(strstr(b.data, "data: {\"ts_ms\":1,\"providers\":[]}\n"));
	sc_buf_reset(&b);
	assert_int_equal(events_tick(&s, &f->q, &b, 200, wall), 0);
	assert_int_equal(b.len, 0);
	exec_ok(f->w, "UPDATE live_status SET snapshot = '{\"ts_ms\":2,\"providers\":[]}' WHERE id = 1");
	assert_int_equal(events_tick(&s, &f->q, &b, 300, wall), 1);
	assert_non_null(strstr(b.data, "id: 1-2\n"));
	sc_buf_reset(&b);

	/* A cooldown starts on p2: start event, carried id advances. */
	sc_ts_format(wall / 1000 + 60, ts);
	snprintf(sql, sizeof(sql),
	    "UPDATE providers SET cooldown_until = '%s', consecutive_429 = 1 WHERE id = 'p2';"
	    "INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds,"
	    " response_summary, started_at, ended_at) VALUES ('c2', 'p2', 1, 60, '429', '2026-11-26T08:00:00Z', '%s')",
	    ts, ts);
	exec_ok(f->w, sql);
	assert_int_equal(events_tick(&s, &f->q, &b, 400, wall), 1);
	assert_non_null(strstr(b.data, "event: cooldown\nid: 2-2\n"));
	assert_non_null(strstr(b.data, "\"provider_name\":\"account02\""));
	sc_buf_reset(&b);

	/* Operator changes a provider: provider event. Reset the cooldown: end event. */
	exec_ok(f->w, "UPDATE providers SET rpm_limit = 30 WHERE id = 'p1'");
	exec_ok(f->w, "UPDATE providers SET cooldown_until = NULL WHERE id = 'p2'");
	assert_int_equal(events_tick(&s, &f->q, &b, 500, wall), 2);
	assert_int_equal(count(b.data, "event: provider"), 1);
	assert_int_equal(count(b.data, "\"kind\":\"end\""), 1);
	sc_buf_reset(&b);

	/* Quiet: a heartbeat once EVENTS_HEARTBEAT_MS passed since the last write. */
	events_written(&s, 500);
	assert_int_equal(events_tick(&s, &f->q, &b, 600, wall), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(events_tick(&s, &f->q, &b, 500 + EVENTS_HEARTBEAT_MS, wall), 0);
	assert_string_equal(b.data, ": ping\n\n");
	sc_buf_reset(&b);

	/* No read transaction stays open between ticks: the WAL truncates fully. */
	assert_int_equal(sqlite3_prepare_v2(f->w, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	busy = sqlite3_column_int(st, 0);
	log = sqlite3_column_int(st, 1);
	ckpt = sqlite3_column_int(st, 2);
	sqlite3_finalize(st);
	assert_int_equal(busy, 0);
	assert_int_equal(log, ckpt);

	/* A reconnect with Last-Event-ID "1-2" replays cooldown 2 and nothing older. */
	events_stream_init(&s, "1-2", 0);
	assert_true(events_tick(&s, &f->q, &b, 0, wall) >= 1);
	/* ... and, since it was reset meanwhile, its end right after. */
	assert_int_equal(count(b.data, "event: cooldown"), 2);
	assert_int_equal(count(b.data, "\"kind\":\"end\""), 1);
	assert_non_null(strstr(b.data, "\"id\":\"c2\""));
	assert_non_null(strstr(b.data, "event: status\nid: 2-3\n"));
	sc_buf_free(&b);
}

/* More new cooldown rows than one batch: the rest follow on the next tick, in order. */
static void
test_tick_batches(void **state)
{
	struct dbfix *f = *state;
	struct events_stream s;
	struct sc_buf b;
	char sql[256];
	int i, n1, n2;

	sc_buf_init(&b, EVENTS_BUF_CAP);
	events_stream_init(&s, "0-0", 0);	/* resumed from the very start */
	exec_ok(f->w, "BEGIN");
	for (i = 0; i < EVENTS_COOLDOWN_BATCH + 10; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO cooldown_events (id, provider_id, consecutive_count,"
		    " cooldown_seconds, started_at, ended_at) VALUES ('b%d', 'p1', 1, 30,"
		    " '2026-01-01T00:00:00Z', '2026-01-01T00:00:30Z')", i);
		exec_ok(f->w, sql);
	}
	exec_ok(f->w, "COMMIT");
	n1 = events_tick(&s, &f->q, &b, 0, sc_wall_ms());
	assert_int_equal(n1, EVENTS_COOLDOWN_BATCH);
	assert_int_equal(s.cooldown_cursor, EVENTS_COOLDOWN_BATCH);
	sc_buf_reset(&b);
	n2 = events_tick(&s, &f->q, &b, 0, sc_wall_ms());
	assert_int_equal(n2, 10);
	assert_int_equal(s.cooldown_cursor, EVENTS_COOLDOWN_BATCH + 10);
	assert_non_null(strstr(b.data, "\"id\":\"b73\""));
	assert_int_equal(s.nactive, 0);		/* all long over: nothing to end later */
	sc_buf_free(&b);
}

/* Insert n request_log rows as the data plane's writer does. */
static void
insert_requests(sqlite3 *db, int n, int status)
{
	char sql[512];
	int i;

	exec_ok(db, "BEGIN");
	for (i = 0; i < n; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO request_log (request_id, finished_at, finished_ms, model, "
		    "provider_id, provider_name, pool, status, error_code, attempts) VALUES ('r%d', "
		    "'2026-01-01T00:00:00Z', 1767225600000, 'mock/m', 'p1', 'account01', 'main', %d, '%s', 1)",
		    i, status, status >= 400 ? "upstream_error" : "");
		exec_ok(db, sql);
	}
	exec_ok(db, "COMMIT");
}

/* New request_log rows become "event: request", each once, in order; rows
 * from before the stream opened are not replayed; a stream far behind skips
 * ahead and says so. */
static void
test_tick_requests(void **state)
{
	struct dbfix *f = *state;
	struct events_stream s;
	struct sc_buf b;
	int n;

	sc_buf_init(&b, EVENTS_BUF_CAP);
	insert_requests(f->w, 3, 200);
	events_stream_init(&s, NULL, 0);
	assert_true(events_tick(&s, &f->q, &b, 0, sc_wall_ms()) >= 0);
	assert_int_equal(count(b.data, "event: request\n"), 0);
	assert_int_equal(s.request_cursor, 3);
	sc_buf_reset(&b);

	insert_requests(f->w, 2, 502);
	n = events_requests(&s, &f->q, &b);
	assert_int_equal(n, 2);
	assert_int_equal(count(b.data, "event: request\n"), 2);
	assert_non_null(strstr(b.data, "\"seq\":4,\"request_id\":\"r0\""));
	assert_non_null(strstr(b.data, "\"seq\":5,\"request_id\":\"r1\""));
	assert_non_null(strstr(b.data, "\"provider\":\"account01\""));
	assert_non_null(strstr(b.data, "\"error_code\":\"upstream_error\",\"error\":true"));
	assert_true(strstr(b.data, "\"seq\":4") < strstr(b.data, "\"seq\":5"));
	sc_buf_reset(&b);
	assert_int_equal(events_requests(&s, &f->q, &b), 0);	/* each row once */
	assert_int_equal(b.len, 0);

	/* More than a batch: the rest on the next tick. */
	insert_requests(f->w, EVENTS_REQUEST_BATCH + 5, 200);
	assert_int_equal(events_requests(&s, &f->q, &b), EVENTS_REQUEST_BATCH);
	sc_buf_reset(&b);
	assert_int_equal(events_requests(&s, &f->q, &b), 5);
	assert_int_equal(s.request_cursor, 5 + EVENTS_REQUEST_BATCH + 5);
	sc_buf_reset(&b);

	/* Far behind: skip to the newest batch, telling the page. */
	insert_requests(f->w, EVENTS_REQUEST_LAG + 10, 200);
	n = events_requests(&s, &f->q, &b);
	assert_int_equal(n, EVENTS_REQUEST_BATCH + 1);
	assert_int_equal(count(b.data, "event: requests_skipped\n"), 1);
	assert_int_equal(s.request_cursor, 5 + EVENTS_REQUEST_BATCH + 5 + EVENTS_REQUEST_LAG + 10);
	sc_buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_parse),
		cmocka_unit_test(test_format_multiline),
		cmocka_unit_test(test_status_changes_only),
		cmocka_unit_test(test_config_version),
		cmocka_unit_test(test_heartbeat),
		cmocka_unit_test(test_cooldown_start_end),
		cmocka_unit_test_setup_teardown(test_tick_database, db_setup, db_teardown),
		cmocka_unit_test_setup_teardown(test_tick_batches, db_setup, db_teardown),
		cmocka_unit_test_setup_teardown(test_tick_requests, db_setup, db_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
