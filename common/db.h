/*
 * The SQLite database every program shares. Opening sets WAL, busy_timeout,
 * foreign_keys, synchronous=NORMAL, journal_size_limit and
 * wal_autocheckpoint; db_migrate brings
 * the schema to DB_SCHEMA_VERSION (from sql/schema.sql and sql/migrations/,
 * compiled into the program). Every write goes through db_write_txn.
 */
#ifndef SC_DB_H
#define SC_DB_H

#include <sqlite3.h>
#include <stdint.h>
#include "util.h"

#define DB_BUSY_TIMEOUT_MS   5000
#define DB_JOURNAL_LIMIT     (500LL * 1024 * 1024)	/* 500 MB WAL ceiling */
/* A commit that leaves the WAL at this many pages or more checkpoints it
 * (SQLite's default: 1,000). db.c says why more. */
#define DB_WAL_CHECKPOINT_PAGES 10000

enum {
	DB_OPEN_CREATE   = 1 << 0,	/* create the file if missing */
	DB_OPEN_READONLY = 1 << 1,
	DB_OPEN_ONE_THREAD = 1 << 2,	/* used by one thread at a time only: no SQLite mutex per call
					 * (SQLITE_OPEN_NOMUTEX; e.g. the statistics writer's connection) */
};

/* The path from --db, else $SIDECAR_DB, else SC_LOCALSTATEDIR/lib/sidecar/sidecar_v2.db. */
const char *db_default_path(const char *cli_path);

/* Open and configure; on error returns NULL and fills e. */
sqlite3 *db_open(const char *path, unsigned flags, struct sc_err *e);
void     db_close(sqlite3 *db);

/* Schema version of the open database (PRAGMA user_version), and the one this build knows. */
int db_schema_version(sqlite3 *db);
int db_latest_version(void);
/* Create a new schema or apply pending migrations in one transaction; idempotent.
 * Refuses a database newer than this build. 0 or -1. */
int db_migrate(sqlite3 *db, struct sc_err *e);

/* Run fn inside BEGIN IMMEDIATE ... COMMIT, retrying the whole transaction on
 * SQLITE_BUSY / SQLITE_BUSY_SNAPSHOT (bounded by DB_BUSY_TIMEOUT_MS in total);
 * fn returns 0 to commit, -1 to roll back. Returns 0, or -1 with e filled. */
typedef int (*db_txn_fn)(sqlite3 *db, void *arg, struct sc_err *e);
int db_write_txn(sqlite3 *db, db_txn_fn fn, void *arg, struct sc_err *e);
/* The same, giving up on a busy database after wait_ms instead of the busy
 * timeout (for a writer that must not stall, e.g. on the event loop). */
int db_write_txn_within(sqlite3 *db, db_txn_fn fn, void *arg, int wait_ms, struct sc_err *e);

/* Execute SQL with no result rows. 0 or -1. */
int db_exec(sqlite3 *db, const char *sql, struct sc_err *e);

/* First column of the first row of sql with ?1 bound to arg, malloc'd; NULL if none or on error. */
char *db_query_text(sqlite3 *db, const char *sql, const char *arg);

/* Internal key/value values (table meta). Getter returns a malloc'd string or NULL. */
char *db_meta_get(sqlite3 *db, const char *key);
int   db_meta_set(sqlite3 *db, const char *key, const char *value, struct sc_err *e);

/* meta.config_version: bumped by triggers on any provider or setting change. */
int64_t db_config_version(sqlite3 *db);

/* Fill e from a failed SQLite call (rc) with an operator-facing message
 * ("database is locked ...", "database is read-only ...", "not a SQLite
 * database"); what names the operation or file. Returns -1. */
int db_set_err(sqlite3 *db, int rc, struct sc_err *e, const char *what);
/* Total time a writer waits for the lock (default DB_BUSY_TIMEOUT_MS);
 * applies to later db_open and db_write_txn calls. For tests. */
void db_set_busy_timeout_ms(int ms);

#endif
