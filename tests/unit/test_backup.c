/*
 * Unit tests for ctl/backup.c and the schema upgrade path: backup names and
 * pruning, a checked copy of a live database, recording the outcome on
 * version-1 and version-2 databases, the data plane's lock convention, and
 * that a version-1 database (tests/fixtures/schema-v1.sql) upgraded by the
 * migrations has exactly the structure of a new database from sql/schema.sql,
 * with its data intact.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backup.h"
#include "db.h"

#define FIXTURE_MAX (1024 * 1024)

static char tdir[64];	/* this test's temporary directory */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tdir, sizeof(tdir), "/tmp/test_backup.XXXXXX");
	assert_non_null(mkdtemp(tdir));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	nftw(tdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void
tpath(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tdir, name);
}

static void
touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	close(fd);
}

static int64_t
query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* All rows of sql, columns joined by '|' and rows by '\n' (malloc'd). */
static char *
query_dump(sqlite3 *db, const char *sql)
{
	struct sc_buf b;
	sqlite3_stmt *st = NULL;

	sc_buf_init(&b, 1 << 20);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const unsigned char *v = sqlite3_column_text(st, i);

			assert_int_equal(sc_buf_printf(&b, "%s%s", i ? "|" : "", v ? (const char *)v : "NULL"), 0);
		}
		assert_int_equal(sc_buf_append(&b, "\n", 1), 0);
	}
	sqlite3_finalize(st);
	sc_buf_append(&b, "", 1);
	return b.data;
}

/* A new database at the newest schema. */
static sqlite3 *
new_db(const char *path)
{
	struct sc_err e;
	sqlite3 *db;

	sc_err_clear(&e);
	db = db_open(path, DB_OPEN_CREATE, &e);
	assert_non_null(db);
	assert_int_equal(db_migrate(db, &e), 0);
	return db;
}

/* Run the SQL file rel (from the source tree) on db. */
static void
exec_file(sqlite3 *db, const char *rel)
{
	const char *top = getenv("SC_TOP_SRCDIR");
	char fx[1024], *sql;
	struct sc_err e;
	FILE *f;
	size_t n;

	snprintf(fx, sizeof(fx), "%s/%s", top != NULL ? top : "..", rel);
	f = fopen(fx, "r");
	assert_non_null(f);
	sql = calloc(1, FIXTURE_MAX);
	assert_non_null(sql);
	n = fread(sql, 1, FIXTURE_MAX - 1, f);
	fclose(f);
	assert_true(n > 0 && n < FIXTURE_MAX - 1);
	sc_err_clear(&e);
	assert_int_equal(db_exec(db, sql, &e), 0);
	free(sql);
}

/* A version-1 database from the frozen fixture. */
static sqlite3 *
v1_db(const char *path)
{
	const char *top = getenv("SC_TOP_SRCDIR");
	char fx[1024], *sql;
	struct sc_err e;
	sqlite3 *db;
	FILE *f;
	size_t n;

	snprintf(fx, sizeof(fx), "%s/tests/fixtures/schema-v1.sql", top != NULL ? top : "..");
	f = fopen(fx, "r");
	assert_non_null(f);
	sql = calloc(1, FIXTURE_MAX);
	assert_non_null(sql);
	n = fread(sql, 1, FIXTURE_MAX - 1, f);
	fclose(f);
	assert_true(n > 0 && n < FIXTURE_MAX - 1);
	sc_err_clear(&e);
	db = db_open(path, DB_OPEN_CREATE, &e);
	assert_non_null(db);
	assert_int_equal(db_exec(db, sql, &e), 0);
	assert_int_equal(db_exec(db, "PRAGMA user_version=1", &e), 0);
	free(sql);
	return db;
}

/* Providers, usage rows and cooldown events, as a v1 data plane writes them. */
static void
add_data(sqlite3 *db)
{
	struct sc_err e;

	sc_err_clear(&e);
	assert_int_equal(db_exec(db,
	    "INSERT INTO providers (id, name, api_key, api_key_mask, endpoint_url, model_prefix, pool, source) VALUES "
	    " ('p1', 'nim-01', 'v1:AAAAfakeciphertext', 'nvapi-TEST…0001', 'http://127.0.0.1:1/v1', 'nvidia/', 'main', 'yaml'),"
	    " ('p2', 'nim-02', 'v1:BBBBfakeciphertext', 'nvapi-TEST…0002', 'http://127.0.0.1:1/v1', 'nvidia/', 'fallback', 'cli');"
	    "INSERT INTO provider_usage_logs (id, provider_id, model, prompt_tokens, completion_tokens, total_tokens,"
	    " cost, request_count, error_count, latency_sum_ms, avg_latency_ms, hour_bucket) VALUES"
	    " ('p1|m|2026-11-25T10', 'p1', 'm', 10, 20, 30, 0.5, 3, 1, 300, 100, '2026-11-25T10'),"
	    " ('p2|m|2026-11-25T11', 'p2', 'm', 1, 2, 3, 0.1, 1, 0, 50, 50, '2026-11-25T11');"
	    "INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary,"
	    " started_at, ended_at) VALUES ('c1', 'p1', 2, 60, '429 Too Many Requests', '2026-11-25T10:00:00Z',"
	    " '2026-11-25T10:01:00Z');"
	    "INSERT INTO daily_stats (id, date, pool, total_requests) VALUES ('2026-11-25|main', '2026-11-25', 'main', 4);"
	    "INSERT INTO backups (started_at, finished_at, success, path) VALUES"
	    " ('2026-11-24T03:00:00Z', '2026-11-24T03:00:01Z', 1, '/old/sidecar_v2-20261124T030000Z.db');",
	    &e), 0);
}

/* The data tables as text (one statement at a time). */
static char *
dump_data(sqlite3 *db)
{
	static const char *q[] = {
		"SELECT id, name, api_key, pool, status, rpm_limit FROM providers ORDER BY id",
		"SELECT * FROM provider_usage_logs ORDER BY id",
		"SELECT * FROM cooldown_events ORDER BY id",
		"SELECT * FROM daily_stats ORDER BY id",
	};
	struct sc_buf b;

	sc_buf_init(&b, 1 << 20);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		char *s = query_dump(db, q[i]);

		assert_int_equal(sc_buf_printf(&b, "%s--\n", s), 0);
		free(s);
	}
	return b.data;
}

/* Structure: every table's columns, every index's columns, every trigger. */
static char *
dump_schema(sqlite3 *db)
{
	struct sc_buf b;
	char *t, *i, *x, *k;

	t = query_dump(db, "SELECT m.name, p.cid, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk "
	    "FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY 1, 2");
	i = query_dump(db, "SELECT m.name, m.tbl_name, p.seqno, p.name FROM sqlite_master m, "
	    "pragma_index_info(m.name) p WHERE m.type = 'index' ORDER BY 1, 3");
	x = query_dump(db, "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('trigger', 'view') ORDER BY 2");
	k = query_dump(db, "SELECT m.name, f.id, f.seq, f.\"table\", f.\"from\", f.\"to\", f.on_update, f.on_delete "
	    "FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table' ORDER BY 1, 2, 3");
	sc_buf_init(&b, 1 << 20);
	assert_int_equal(sc_buf_printf(&b, "%s==\n%s==\n%s==\n%s", t, i, x, k), 0);
	free(k);
	free(t);
	free(i);
	free(x);
	return b.data;
}

static void
test_name_time(void **state)
{
	int64_t t = 0;

	(void)state;
	assert_int_equal(backup_name_time("sidecar_v2-20261126T081600Z.db", &t), 0);
	assert_int_equal(t, 1795680960);
	assert_int_equal(backup_name_time("sidecar_v2-19700101T000000Z.db", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(backup_name_time("sidecar_v2-20261126T081600Z-premigrate-v1.db", &t), -1);
	assert_int_equal(backup_name_time("sidecar_v2-20261126T081600Z.db.tmp", &t), -1);
	assert_int_equal(backup_name_time(".sidecar_v2-20261126T081600Z.db.tmp.12", &t), -1);
	assert_int_equal(backup_name_time("sidecar_v2-2026112xT081600Z.db", &t), -1);
	assert_int_equal(backup_name_time("sidecar_v2-20261326T081600Z.db", &t), -1);
	assert_int_equal(backup_name_time("sidecar_v2-20261126 081600Z.db", &t), -1);
	assert_int_equal(backup_name_time("sidecar_v2.db", &t), -1);
	assert_int_equal(backup_name_time("other-20261126T081600Z.db", &t), -1);
}

static void
test_default_dir(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(backup_default_dir("/var/lib/sidecar/sidecar_v2.db", out, sizeof(out)), 0);
	assert_string_equal(out, "/var/lib/sidecar/backups");
	assert_int_equal(backup_default_dir("sidecar_v2.db", out, sizeof(out)), 0);
	assert_string_equal(out, "backups");
	assert_int_equal(backup_default_dir("/x.db", out, sizeof(out)), 0);
	assert_string_equal(out, "/backups");
	assert_int_equal(backup_default_dir("/a/very/long/path/that/does/not/fit/in/sixty/four/bytes/at/all/x.db",
	    out, sizeof(out)), -1);
}

static void
test_prune(void **state)
{
	int64_t now = 1795680960;	/* 2026-11-26T08:16:00Z */
	const char *names[] = {
		"sidecar_v2-20261116T081600Z.db",	/* 10 days: old */
		"sidecar_v2-20261118T081600Z.db",	/* 8 days: old */
		"sidecar_v2-20261120T081600Z.db",	/* 6 days: kept */
		"sidecar_v2-20261126T081500Z.db",	/* today */
		"sidecar_v2-20200101T000000Z-premigrate-v1.db",	/* never pruned */
		"sidecar_v2-20200101T000000Z.db.bak",	/* not ours */
		"notes.txt",
	};
	char p[512];
	struct stat st;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		tpath(p, sizeof(p), names[i]);
		touch(p);
	}
	tpath(p, sizeof(p), names[0]);
	assert_int_equal(backup_prune(tdir, 7, now, p), 1);	/* keep protects the first */
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(backup_prune(tdir, 7, now, NULL), 1);
	assert_int_equal(stat(p, &st), -1);
	for (size_t i = 2; i < sizeof(names) / sizeof(names[0]); i++) {
		tpath(p, sizeof(p), names[i]);
		assert_int_equal(stat(p, &st), 0);
	}
	assert_int_equal(backup_prune(tdir, 1, now, NULL), 1);	/* the 6-day one */
	tpath(p, sizeof(p), "missing");
	assert_int_equal(backup_prune(p, 7, now, NULL), -1);
}

static void
test_backup_run(void **state)
{
	char dbp[512], dir[512], aux[BACKUP_PATH_MAX + 16];
	struct backup_result r;
	struct sc_err e;
	struct stat st;
	sqlite3 *db, *copy;
	char *a, *b;
	int64_t t;

	(void)state;
	tpath(dbp, sizeof(dbp), "sidecar_v2.db");
	tpath(dir, sizeof(dir), "backups");
	db = new_db(dbp);
	add_data(db);
	assert_int_equal(backup_run(db, dir, "", 1795680960, &r), 0);
	assert_int_equal(r.success, 1);
	assert_string_equal(r.error, "");
	assert_int_equal(r.schema_version, db_latest_version());
	assert_true(r.size > 0);
	assert_non_null(strstr(r.path, "/backups/sidecar_v2-20261126T081600Z.db"));
	assert_int_equal(backup_name_time(strrchr(r.path, '/') + 1, &t), 0);
	assert_int_equal(stat(r.path, &st), 0);
	assert_int_equal(st.st_size, r.size);
	assert_int_equal(st.st_mode & 0007, 0);	/* never world-readable */
	/* Self-contained: no WAL beside it, rollback-journal mode, same data. */
	snprintf(aux, sizeof(aux), "%s-wal", r.path);
	assert_int_equal(stat(aux, &st), -1);
	assert_int_equal(sqlite3_open_v2(r.path, &copy, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	a = dump_data(db);
	b = dump_data(copy);
	assert_string_equal(a, b);
	free(a);
	free(b);
	a = query_dump(copy, "PRAGMA journal_mode");
	assert_string_equal(a, "delete\n");
	free(a);
	sqlite3_close(copy);
	/* The same second again is refused rather than overwritten. */
	assert_int_equal(backup_run(db, dir, "", 1795680960, &r), -1);
	assert_non_null(strstr(r.error, "already exists"));
	/* A suffixed (pre-migration) name. */
	assert_int_equal(backup_run(db, dir, "-premigrate-v1", 1795680960, &r), 0);
	assert_non_null(strstr(r.path, "sidecar_v2-20261126T081600Z-premigrate-v1.db"));
	/* Recorded with kind and schema version on a version-2 database. */
	sc_err_clear(&e);
	assert_int_equal(backup_record(db, &r, "pre-migrate", &e), 0);
	a = query_dump(db, "SELECT success, kind, schema_version, size_bytes > 0, error FROM backups "
	    "ORDER BY id DESC LIMIT 1");
	snprintf(aux, sizeof(aux), "1|pre-migrate|%d|1|\n", db_latest_version());
	assert_string_equal(a, aux);
	free(a);
	db_close(db);
}

static void
test_backup_failures(void **state)
{
	char dbp[512], file[512], dir[600];
	struct backup_result r;
	struct sc_err e;
	sqlite3 *db;
	char *a;

	(void)state;
	tpath(dbp, sizeof(dbp), "sidecar_v2.db");
	tpath(file, sizeof(file), "plainfile");
	touch(file);
	db = new_db(dbp);
	/* A directory that cannot exist. */
	snprintf(dir, sizeof(dir), "%s/sub", file);
	assert_int_equal(backup_run(db, dir, "", 1795680960, &r), -1);
	assert_int_equal(r.success, 0);
	assert_non_null(strstr(r.error, "Not a directory"));
	/* A file where the directory should be. */
	assert_int_equal(backup_run(db, file, "", 1795680960, &r), -1);
	assert_non_null(strstr(r.error, "not a directory"));
	/* The failure is recorded for the metric. */
	sc_err_clear(&e);
	assert_int_equal(backup_record(db, &r, "scheduled", &e), 0);
	a = query_dump(db, "SELECT success, kind, path, error <> '' FROM backups ORDER BY id DESC LIMIT 1");
	assert_string_equal(a, "0|scheduled||1\n");
	free(a);
	db_close(db);
}

/* v1 + migrations has the same structure as a new database. */
static void
test_schema_equivalence(void **state)
{
	char p1[512], p2[512];
	struct sc_err e;
	sqlite3 *a, *b;
	char *sa, *sb;

	(void)state;
	tpath(p1, sizeof(p1), "new.db");
	tpath(p2, sizeof(p2), "old.db");
	a = new_db(p1);
	b = v1_db(p2);
	sc_err_clear(&e);
	assert_int_equal(db_schema_version(b), 1);
	assert_int_equal(db_migrate(b, &e), 0);
	assert_int_equal(db_schema_version(b), db_latest_version());
	assert_int_equal(db_schema_version(a), db_latest_version());
	sa = dump_schema(a);
	sb = dump_schema(b);
	assert_string_equal(sa, sb);
	free(sa);
	free(sb);
	assert_int_equal(query_int(b, "SELECT count(*) FROM schema_migrations WHERE version = 2"), 1);
	assert_int_equal(query_int(a, "SELECT max(version) FROM schema_migrations"), db_latest_version());
	db_close(a);
	db_close(b);
}

/* A version-1 database with data keeps it through the upgrade; recording a
 * backup works on version 1 (no kind column) and after it. */
static void
test_upgrade_keeps_data(void **state)
{
	char p[512], dir[512];
	struct backup_result r;
	struct sc_err e;
	sqlite3 *db;
	char *before, *after, *s;

	(void)state;
	tpath(p, sizeof(p), "v1.db");
	tpath(dir, sizeof(dir), "bk");
	db = v1_db(p);
	add_data(db);
	before = dump_data(db);
	assert_int_equal(backup_run(db, dir, "-premigrate-v1", 1795680960, &r), 0);
	assert_int_equal(r.schema_version, 1);
	sc_err_clear(&e);
	assert_int_equal(backup_record(db, &r, "pre-migrate", &e), 0);
	assert_int_equal(db_migrate(db, &e), 0);
	assert_int_equal(db_schema_version(db), db_latest_version());
	after = dump_data(db);
	assert_string_equal(before, after);
	s = query_dump(db, "SELECT success, kind, schema_version FROM backups ORDER BY id");
	assert_string_equal(s, "1|manual|0\n1|manual|0\n");
	free(s);
	assert_int_equal(query_int(db, "PRAGMA foreign_key_check"), -1);	/* no rows */
	assert_int_equal(backup_record(db, &r, "pre-migrate", &e), 0);
	assert_int_equal(query_int(db, "SELECT count(*) FROM backups WHERE kind = 'pre-migrate'"), 1);
	/* The new index serves per-provider history. */
	s = query_dump(db, "EXPLAIN QUERY PLAN SELECT sum(total_tokens) FROM provider_usage_logs "
	    "WHERE provider_id = 'p1' AND hour_bucket >= '2026-11-25T00'");
	assert_non_null(strstr(s, "usage_provider_hour"));
	free(s);
	free(before);
	free(after);
	db_close(db);
}

static void
test_lock_holder(void **state)
{
	char dbp[512], lockp[600];
	int pfd[2], rfd[2], fd;
	struct flock fl;
	pid_t child, holder = 0;
	char c;

	(void)state;
	tpath(dbp, sizeof(dbp), "sidecar_v2.db");
	assert_int_equal(backup_lock_holder(dbp, &holder, NULL), 0);	/* no lock file */
	snprintf(lockp, sizeof(lockp), "%s.lock", dbp);
	touch(lockp);
	assert_int_equal(backup_lock_holder(dbp, &holder, NULL), 0);	/* file, no lock */
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(pipe(rfd), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(pfd[0]);
		close(rfd[1]);
		fd = open(lockp, O_RDWR);
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fd < 0 || fcntl(fd, F_SETLK, &fl) == -1)
			_exit(1);
		(void)!write(pfd[1], "L", 1);
		(void)!read(rfd[0], &c, 1);
		_exit(0);
	}
	close(pfd[1]);
	close(rfd[0]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	assert_int_equal(backup_lock_holder(dbp, &holder, NULL), 1);
	assert_int_equal(holder, child);
	close(rfd[1]);
	waitpid(child, NULL, 0);
	close(pfd[0]);
	assert_int_equal(backup_lock_holder(dbp, &holder, NULL), 0);
}

/* Migration 004 on a version-3 database with a request log: every row and
 * attempt kept, seq's counter carried over (the newest rows were gone, so
 * the counter is above max(seq)), the checks still refuse a bad pool, and
 * the foreign key still refuses a row deleted before its attempts. */
static void
test_upgrade_v3_request_log(void **state)
{
	static const char rows[] =
	    "SELECT seq, request_id, finished_at, finished_ms, client, model, provider_id, provider_name, pool, "
	    "status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, "
	    "total_tokens, cost, streamed, client_disconnected FROM request_log ORDER BY seq";
	static const char atts[] = "SELECT * FROM request_attempts ORDER BY seq, n";
	char p[512], *r0, *a0, *r1, *a1;
	struct sc_err e;
	sqlite3 *db;
	int i;

	(void)state;
	tpath(p, sizeof(p), "v3.db");
	db = v1_db(p);
	exec_file(db, "sql/migrations/002_backup_history_and_indexes.sql");
	exec_file(db, "sql/migrations/003_request_log.sql");
	sc_err_clear(&e);
	assert_int_equal(db_exec(db, "PRAGMA user_version=3", &e), 0);
	for (i = 1; i <= 7; i++) {
		char sql[512];
		snprintf(sql, sizeof(sql), "INSERT INTO request_log (request_id, finished_at, finished_ms, client, model, "
		    "provider_id, provider_name, pool, status, error_code, attempts, ttfb_ms, cost, streamed) VALUES "
		    "('r%d', '2026-12-02T02:00:0%dZ', %lld, 'c', 'm', %s, 'n', %s, %d, '%s', %d, -1, 0.5, %d)",
		    i, i, 1796176800000LL + i, i % 3 ? "'p1'" : "NULL", i % 3 ? "'fallback'" : "NULL",
		    i % 3 ? 200 : 503, i % 3 ? "" : "queue_timeout", i % 3 ? 2 : 0, i % 2);
		assert_int_equal(db_exec(db, sql, &e), 0);
		if (i % 3 == 0)
			continue;
		snprintf(sql, sizeof(sql), "INSERT INTO request_attempts VALUES (%d, 1, 'p0', 'zero', 'main', 429, "
		    "'rate_limited', 0, 3), (%d, 2, 'p1', 'n', 'fallback', 200, 'ok', 4, 9)", i, i);
		assert_int_equal(db_exec(db, sql, &e), 0);
	}
	/* The ring's low end and, to see the counter, its two newest rows. */
	assert_int_equal(db_exec(db, "DELETE FROM request_log WHERE seq <= 2 OR seq >= 6", &e), 0);
	assert_int_equal(query_int(db, "SELECT seq FROM sqlite_sequence WHERE name = 'request_log'"), 7);
	r0 = query_dump(db, rows);
	a0 = query_dump(db, atts);
	assert_int_equal(query_int(db, "SELECT count(*) FROM request_attempts"), 4);

	assert_int_equal(db_migrate(db, &e), 0);
	assert_int_equal(db_schema_version(db), db_latest_version());
	r1 = query_dump(db, rows);
	a1 = query_dump(db, atts);
	assert_string_equal(r0, r1);
	assert_string_equal(a0, a1);
	assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_sequence WHERE name LIKE 'request_log%'"), 1);
	assert_int_equal(query_int(db, "SELECT seq FROM sqlite_sequence WHERE name = 'request_log'"), 7);
	assert_int_equal(query_int(db, "PRAGMA foreign_key_check"), -1);	/* no rows */
	assert_int_equal(db_exec(db, "INSERT INTO request_log (request_id, finished_at, finished_ms, status) "
	    "VALUES ('r8', '2026-12-02T02:00:08Z', 1, 200)", &e), 0);
	assert_int_equal(query_int(db, "SELECT max(seq) FROM request_log"), 8);
	/* The same checks as before. */
	assert_int_equal(db_exec(db, "INSERT INTO request_log (request_id, finished_at, finished_ms, status, pool) "
	    "VALUES ('bad', 'x', 1, 200, 'spare')", &e), -1);
	assert_int_equal(db_exec(db, "INSERT INTO request_attempts VALUES (8, 1, 'p', '', 'spare', 0, 'ok', 0, 0)", &e), -1);
	assert_int_equal(db_exec(db, "INSERT INTO request_attempts VALUES (99, 1, 'p', '', 'main', 0, 'ok', 0, 0)", &e), -1);
	assert_int_equal(db_exec(db, "INSERT INTO request_attempts VALUES (8, 1, 'p', '', 'emergency', 0, 'ok', 0, 0)", &e), 0);
	/* No cascade: a row goes after its attempts (the writer deletes both). */
	assert_int_equal(db_exec(db, "DELETE FROM request_log WHERE seq = 8", &e), -1);
	assert_int_equal(db_exec(db, "DELETE FROM request_attempts WHERE seq <= 8", &e), 0);
	assert_int_equal(db_exec(db, "DELETE FROM request_log WHERE seq <= 8", &e), 0);
	assert_int_equal(db_exec(db, "INSERT INTO request_log (request_id, finished_at, finished_ms, status) "
	    "VALUES ('r9', '2026-12-02T02:00:09Z', 1, 200)", &e), 0);
	assert_int_equal(query_int(db, "SELECT seq FROM request_log"), 9);
	free(r0);
	free(a0);
	free(r1);
	free(a1);
	db_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_time),
		cmocka_unit_test(test_default_dir),
		cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_equivalence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_v3_request_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_holder, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
