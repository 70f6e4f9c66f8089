/*
 * Unit tests for common/db.c: connection settings, schema creation and
 * migration (idempotent, newer versions refused), operator-facing errors for
 * missing / non-database / read-only files, and db_write_txn waiting for a
 * briefly held write lock but failing cleanly when it is held too long.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"

struct fx {
	char dir[256];
	char path[300];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	snprintf(f->dir, sizeof(f->dir), "%s/sc-test-db-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	db_set_busy_timeout_ms(DB_BUSY_TIMEOUT_MS);
	return 0;
}

static sqlite3 *
open_migrated(const char *path)
{
	struct sc_err e;
	sqlite3 *db = db_open(path, DB_OPEN_CREATE, &e);

	assert_non_null(db);
	assert_int_equal(db_migrate(db, &e), 0);
	return db;
}

static int64_t
query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
test_open_settings(void **state)
{
	struct fx *f = *state;
	sqlite3 *db = open_migrated(f->path);
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(query_int(db, "PRAGMA synchronous"), 1);	/* NORMAL */
	assert_int_equal(query_int(db, "PRAGMA busy_timeout"), DB_BUSY_TIMEOUT_MS);
	assert_int_equal(query_int(db, "PRAGMA journal_size_limit"), DB_JOURNAL_LIMIT);
	assert_int_equal(query_int(db, "PRAGMA wal_autocheckpoint"), DB_WAL_CHECKPOINT_PAGES);
	db_close(db);
}

static void
test_default_path(void **state)
{
	(void)state;
	assert_string_equal(db_default_path("/x/y.db"), "/x/y.db");
	setenv("SIDECAR_DB", "/env/z.db", 1);
	assert_string_equal(db_default_path(NULL), "/env/z.db");
	assert_string_equal(db_default_path(""), "/env/z.db");
	unsetenv("SIDECAR_DB");
	assert_non_null(strstr(db_default_path(NULL), "sidecar_v2.db"));
}

static void
test_migrate_idempotent(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);
	int64_t objects, cv;

	assert_int_equal(db_schema_version(db), db_latest_version());
	assert_true(db_latest_version() >= 1);
	objects = query_int(db, "SELECT count(*) FROM sqlite_master");
	cv = db_config_version(db);
	assert_true(objects > 10);
	assert_true(cv >= 1);
	/* Again on the same connection and on a new one: nothing changes. */
	assert_int_equal(db_migrate(db, &e), 0);
	db_close(db);
	db = open_migrated(f->path);
	assert_int_equal(db_schema_version(db), db_latest_version());
	assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master"), objects);
	assert_int_equal(db_config_version(db), cv);
	assert_true(query_int(db, "SELECT count(*) FROM system_config") >= 24);
	db_close(db);
}

static void
test_migrate_newer_refused(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);
	char sql[64], msg[128];

	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", db_latest_version() + 1);
	assert_int_equal(db_exec(db, sql, &e), 0);
	assert_int_equal(db_migrate(db, &e), -1);
	snprintf(msg, sizeof(msg), "database schema version %d is newer than this program supports (%d)",
	    db_latest_version() + 1, db_latest_version());
	assert_non_null(strstr(e.msg, msg));
	assert_non_null(strstr(e.msg, "upgrade sidecar"));
	/* Untouched. */
	assert_int_equal(db_schema_version(db), db_latest_version() + 1);
	db_close(db);
}

/* A version-1 database (frozen schema) is upgraded in one step, data kept. */
static void
test_migrate_upgrade(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = db_open(f->path, DB_OPEN_CREATE, &e);
	char *sql;
	long n;
	FILE *fp;

	assert_non_null(db);
	fp = fopen(SC_TEST_SRCDIR "/tests/fixtures/schema-v1.sql", "r");
	if (fp == NULL) {
		db_close(db);
		skip();
	}
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	sql = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(sql, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	assert_int_equal(db_exec(db, sql, &e), 0);
	free(sql);
	assert_int_equal(db_exec(db, "PRAGMA user_version=1; INSERT INTO meta (key, value) VALUES ('kept', 'yes')", &e), 0);
	assert_int_equal(db_migrate(db, &e), 0);
	assert_int_equal(db_schema_version(db), db_latest_version());
	assert_int_equal(query_int(db, "SELECT count(*) FROM meta WHERE key = 'kept'"), 1);
	assert_int_equal(db_migrate(db, &e), 0);
	db_close(db);
}

static void
test_foreign_tables_refused(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = db_open(f->path, DB_OPEN_CREATE, &e);

	assert_non_null(db);
	assert_int_equal(db_exec(db, "CREATE TABLE other (x)", &e), 0);
	assert_int_equal(db_migrate(db, &e), -1);
	assert_non_null(strstr(e.msg, "not a Sidecar database"));
	db_close(db);
}

static void
test_open_errors(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	char path[400];
	FILE *fp;

	sc_err_clear(&e);
	assert_null(db_open(f->path, 0, &e));
	assert_non_null(strstr(e.msg, "does not exist"));

	snprintf(path, sizeof(path), "%s/garbage.db", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not a database file at all. ", fp);
	fclose(fp);
	assert_null(db_open(path, 0, &e));
	assert_non_null(strstr(e.msg, "not a SQLite database"));

	snprintf(path, sizeof(path), "%s/nodir/x.db", f->dir);
	assert_null(db_open(path, DB_OPEN_CREATE, &e));
	assert_non_null(strstr(e.msg, "cannot open"));
}

static void
test_readonly(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);

	db_close(db);
	/* A read-only connection: writes fail with a precise message. */
	db = db_open(f->path, DB_OPEN_READONLY, &e);
	assert_non_null(db);
	assert_int_equal(db_meta_set(db, "x", "y", &e), -1);
	assert_non_null(strstr(e.msg, "read-only"));
	db_close(db);
	/* A write-protected file (not meaningful as root, who may write anyway). */
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->path, 0444), 0);
		assert_null(db_open(f->path, 0, &e));
		assert_non_null(strstr(e.msg, "read-only"));
		chmod(f->path, 0644);
	}
}

static void
test_meta(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);
	int64_t cv = db_config_version(db);
	char *v;

	assert_null(db_meta_get(db, "nothing"));
	assert_int_equal(db_meta_set(db, "k", "v1", &e), 0);
	assert_int_equal(db_meta_set(db, "k", "v2", &e), 0);
	v = db_meta_get(db, "k");
	assert_string_equal(v, "v2");
	free(v);
	/* The trigger bumps the version on a settings change. */
	assert_int_equal(db_exec(db, "UPDATE system_config SET value = '61' WHERE key = 'rpm_window_seconds'", &e), 0);
	assert_int_equal(db_config_version(db), cv + 1);
	db_close(db);
}

/* Write transactions under contention. */
struct holder {
	const char *path;
	int hold_ms;
	volatile int locked;
};

static void *
hold_lock(void *arg)
{
	struct holder *h = arg;
	struct sc_err e;
	sqlite3 *db = db_open(h->path, 0, &e);

	if (db == NULL)
		return NULL;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
		sqlite3_exec(db, "INSERT INTO meta (key, value) VALUES ('holder', '1')", NULL, NULL, NULL);
		h->locked = 1;
		usleep((useconds_t)h->hold_ms * 1000);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	h->locked = 2;
	db_close(db);
	return NULL;
}

static int
txn_insert(sqlite3 *db, void *arg, struct sc_err *e)
{
	int *calls = arg;

	(*calls)++;
	return db_meta_set(db, "writer", "1", e);
}

static int
txn_fail(sqlite3 *db, void *arg, struct sc_err *e)
{
	if (db_meta_set(db, "rolled", "back", e) == -1)
		return -1;
	return sc_err_set(e, "field", 0, "callback says no");
}

static void
start_holder(pthread_t *t, struct holder *h)
{
	assert_int_equal(pthread_create(t, NULL, hold_lock, h), 0);
	while (h->locked == 0)
		usleep(1000);
}

static void
test_write_txn_waits(void **state)
{
	struct fx *f = *state;
	struct holder h = { f->path, 300, 0 };
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);
	pthread_t t;
	int64_t t0;
	int calls = 0;
	char *v;

	start_holder(&t, &h);
	t0 = sc_now_ms();
	assert_int_equal(db_write_txn(db, txn_insert, &calls, &e), 0);
	assert_true(sc_now_ms() - t0 >= 200);
	assert_int_equal(calls, 1);
	pthread_join(t, NULL);
	v = db_meta_get(db, "writer");
	assert_string_equal(v, "1");
	free(v);
	v = db_meta_get(db, "holder");
	assert_string_equal(v, "1");
	free(v);
	db_close(db);
}

static void
test_write_txn_gives_up(void **state)
{
	struct fx *f = *state;
	struct holder h = { f->path, 1500, 0 };
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);
	pthread_t t;
	int64_t t0, dt;
	int calls = 0;

	db_set_busy_timeout_ms(300);
	start_holder(&t, &h);
	t0 = sc_now_ms();
	assert_int_equal(db_write_txn(db, txn_insert, &calls, &e), -1);
	dt = sc_now_ms() - t0;
	assert_true(dt >= 250 && dt < 1200);
	assert_non_null(strstr(e.msg, "database is locked"));
	assert_int_equal(calls, 0);
	pthread_join(t, NULL);
	assert_null(db_meta_get(db, "writer"));
	/* And the connection is usable again once the lock is gone. */
	assert_int_equal(db_write_txn(db, txn_insert, &calls, &e), 0);
	db_close(db);
}

static void
test_write_txn_rollback(void **state)
{
	struct fx *f = *state;
	struct sc_err e;
	sqlite3 *db = open_migrated(f->path);

	assert_int_equal(db_write_txn(db, txn_fail, NULL, &e), -1);
	assert_string_equal(e.msg, "callback says no");
	assert_string_equal(e.field, "field");
	assert_null(db_meta_get(db, "rolled"));
	assert_int_equal(sqlite3_get_autocommit(db), 1);
	db_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_settings, setup, teardown),
		cmocka_unit_test(test_default_path),
		cmocka_unit_test_setup_teardown(test_migrate_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_newer_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_tables_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_txn_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_txn_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_txn_rollback, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
