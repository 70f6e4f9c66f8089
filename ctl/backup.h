/*
 * sidecarctl backup, restore and migrate: online consistent copies of the
 * database, putting one back, and schema upgrades that take a backup first.
 * See docs/operations.md for the operator's side.
 *
 * Conventions other programs rely on:
 * - Backups are plain SQLite files (rollback-journal mode, not compressed)
 *   named sidecar_v2-YYYYMMDDTHHMMSSZ.db; only names of exactly that form are
 *   pruned. Pre-migration backups are named
 *   sidecar_v2-YYYYMMDDTHHMMSSZ-premigrate-vN.db and are never pruned.
 * - Every run appends a row to the backups table; the metrics read the newest
 *   row for sidecar_backup_success and the newest successful one for
 *   sidecar_backup_last_timestamp_seconds.
 * - A running data plane holds an fcntl write lock on "<db>.lock" (the whole
 *   file); restore refuses while anyone holds it, and holds it itself while it
 *   swaps the files, so a data plane started meanwhile refuses to start.
 */
#ifndef SC_CTL_BACKUP_H
#define SC_CTL_BACKUP_H

#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>
#include "util.h"

#define BACKUP_PREFIX       "sidecar_v2-"
#define BACKUP_SUFFIX       ".db"
#define BACKUP_KEEP_DAYS    7
#define BACKUP_KEEP_MAX     3650
#define BACKUP_PATH_MAX     1024	/* longest path we build or accept */

/* Command entry points: argv[0] is the command name ("backup", ...).
 * Return the process exit status: 0 ok, 1 failure, 2 usage error. */
int ctl_backup_main(int argc, char **argv, const char *db_path);
int ctl_restore_main(int argc, char **argv, const char *db_path);
int ctl_migrate_main(int argc, char **argv, const char *db_path);

/* What one backup run did; filled by backup_run, stored by backup_record. */
struct backup_result {
	int64_t started;		/* Unix seconds */
	int64_t finished;		/* Unix seconds */
	int     success;		/* 1 when the copy is in place and checked */
	char    path[BACKUP_PATH_MAX];	/* final file; '' on failure */
	int64_t size;			/* bytes of the final file */
	int     schema_version;		/* PRAGMA user_version of the copy */
	int     pruned;			/* old backups removed */
	char    error[256];		/* one line, '' on success */
};

/* Parse a backup file name of the pruneable form; 0 and *t (Unix seconds), or -1. */
int backup_name_time(const char *name, int64_t *t);
/* The default backup directory for a database: "<dir of db>/backups". */
int backup_default_dir(const char *db_path, char *out, size_t outlen);

/* Copy the open database src into dir as a checked backup named after now;
 * suffix ("" or e.g. "-premigrate-v1") goes before ".db". Creates dir (one
 * level) when missing. Fills r; returns 0 or -1 with r->error set. */
int backup_run(sqlite3 *src, const char *dir, const char *suffix, int64_t now,
    struct backup_result *r);
/* Remove pruneable backups in dir older than keep_days before now, never
 * the file named keep. Returns the number removed, -1 when dir is unreadable. */
int backup_prune(const char *dir, int keep_days, int64_t now, const char *keep);
/* Append r to the backups table (kind: manual, scheduled, pre-migrate;
 * ignored on a version-1 database). 0 or -1 with e set. */
int backup_record(sqlite3 *db, const struct backup_result *r, const char *kind,
    struct sc_err *e);

/* Who holds the data plane's lock on "<db>.lock": 0 none (or no lock file),
 * 1 held (*pid set when known), -1 error with e set. */
int backup_lock_holder(const char *db_path, pid_t *pid, struct sc_err *e);

#endif
