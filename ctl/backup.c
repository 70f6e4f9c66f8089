/*
 * sidecarctl backup, restore and migrate.
 *
 * backup copies the live database with SQLite's online backup API in one
 * step (a single read transaction, so the copy is one consistent snapshot
 * while the data plane keeps writing: WAL readers do not block writers) into
 * a hidden temporary file in the backup directory, turns the copy into a
 * self-contained rollback-journal file, runs PRAGMA integrity_check on it,
 * fsyncs it, renames it to sidecar_v2-YYYYMMDDTHHMMSSZ.db and fsyncs the
 * directory. Backups are not compressed: a backup is a database you can open,
 * check and restore as is, and 7 daily copies of a database kept near 100 MB
 * fit easily (see docs/operations.md). Old backups are pruned by the
 * timestamp in their name. The outcome goes to the backups table, which the
 * metrics read; failing to write that row (read-only database) is a warning,
 * never a failed backup.
 *
 * restore refuses while the data plane holds its lock, checks the file's
 * integrity, schema version and encryption key on a private copy, keeps the
 * current database aside as <db>.replaced-<time> and moves the copy in.
 *
 * migrate takes a pre-migration backup (never pruned) and runs db_migrate,
 * which applies every pending migration in one transaction.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "crypto.h"
#include "db.h"


/* "YYYYMMDDTHHMMSSZ" (16 characters + NUL) for Unix time t. */
static void
backup_stamp(int64_t t, char out[17])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Copy a formatted line into a fixed error buffer. */
static int
backup_fail(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
backup_fail(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return -1;
}

static int
backup_all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int
backup_name_time(const char *name, int64_t *t)
{
	size_t plen = strlen(BACKUP_PREFIX);
	const char *s;
	struct tm tm;
	time_t v;

	/* sidecar_v2-YYYYMMDDTHHMMSSZ.db and nothing else */
	if (strncmp(name, BACKUP_PREFIX, plen) != 0)
		return -1;
	s = name + plen;
	if (strlen(s) != 16 + strlen(BACKUP_SUFFIX) || strcmp(s + 16, BACKUP_SUFFIX) != 0)
		return -1;
	if (!backup_all_digits(s, 8) || s[8] != 'T' || !backup_all_digits(s + 9, 6) || s[15] != 'Z')
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
	tm.tm_mon = (s[4] - '0') * 10 + (s[5] - '0') - 1;
	tm.tm_mday = (s[6] - '0') * 10 + (s[7] - '0');
	tm.tm_hour = (s[9] - '0') * 10 + (s[10] - '0');
	tm.tm_min = (s[11] - '0') * 10 + (s[12] - '0');
	tm.tm_sec = (s[13] - '0') * 10 + (s[14] - '0');
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	v = timegm(&tm);
	if (v == (time_t)-1)
		return -1;
	*t = (int64_t)v;
	return 0;
}

int
backup_default_dir(const char *db_path, char *out, size_t outlen)
{
	const char *slash = strrchr(db_path, '/');
	int n;

	if (slash == NULL)
		n = snprintf(out, outlen, "backups");
	else if (slash == db_path)
		n = snprintf(out, outlen, "/backups");
	else
		n = snprintf(out, outlen, "%.*s/backups", (int)(slash - db_path), db_path);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* The directory part of path (for fsync after a rename). */
static int
backup_dir_of(const char *path, char *out, size_t outlen)
{
	const char *slash = strrchr(path, '/');
	int n;

	if (slash == NULL)
		n = snprintf(out, outlen, ".");
	else if (slash == path)
		n = snprintf(out, outlen, "/");
	else
		n = snprintf(out, outlen, "%.*s", (int)(slash - path), path);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Make sure dir is a directory we can create files in; create it (one
 * level, mode 0770: it inherits a setgid parent's group) when missing. */
static int
backup_ensure_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (stat(dir, &st) == -1) {
		if (errno != ENOENT)
			return backup_fail(err, errlen, "backup directory %s: %s", dir, strerror(errno));
		if (mkdir(dir, 0770) == -1)
			return backup_fail(err, errlen, "cannot create backup directory %s: %s",
			    dir, strerror(errno));
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return backup_fail(err, errlen, "backup directory %s: not a directory", dir);
	return 0;
}

/* Turn a failed SQLite call during a copy into one line an operator can act
 * on; where names the file being written. */
static int
backup_sql_fail(sqlite3 *dst, int rc, const char *where, char *err, size_t errlen)
{
	int sys = dst != NULL ? sqlite3_system_errno(dst) : 0;

	switch (rc & 0xff) {
	case SQLITE_FULL:
		return backup_fail(err, errlen, "writing %s: disk full (or file size limit reached)", where);
	case SQLITE_IOERR:
		if (sys == ENOSPC || sys == EDQUOT)
			return backup_fail(err, errlen, "writing %s: disk full: %s", where, strerror(sys));
		if (sys != 0)
			return backup_fail(err, errlen, "writing %s: I/O error: %s", where, strerror(sys));
		return backup_fail(err, errlen, "writing %s: I/O error", where);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return backup_fail(err, errlen,
		    "the source database is corrupt (%s); nothing was written", sqlite3_errstr(rc));
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return backup_fail(err, errlen, "the source database stayed locked; try again");
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		return backup_fail(err, errlen, "cannot write %s: %s", where,
		    sys != 0 ? strerror(sys) : sqlite3_errstr(rc));
	default:
		return backup_fail(err, errlen, "writing %s: %s", where, sqlite3_errstr(rc));
	}
}

/* Copy src into the existing (empty) file path with the backup API in one
 * step: one read transaction, so one consistent snapshot. *out receives the
 * open destination connection. */
static int
backup_copy_db(sqlite3 *src, const char *path, sqlite3 **out, char *err, size_t errlen)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc;

	*out = NULL;
	rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE, NULL);
	if (rc != SQLITE_OK) {
		backup_sql_fail(dst, rc, path, err, errlen);
		goto fail;
	}
	sqlite3_extended_result_codes(dst, 1);
	b = sqlite3_backup_init(dst, "main", src, "main");
	if (b == NULL) {
		backup_fail(err, errlen, "starting the copy: %s", sqlite3_errmsg(dst));
		goto fail;
	}
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		backup_sql_fail(dst, rc, path, err, errlen);
		goto fail;
	}
	*out = dst;
	return 0;
fail:
	sqlite3_close_v2(dst);
	return -1;
}

/* One-row text query; the first column copied into out ('' when no row). */
static int
backup_query_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	out[0] = '\0';
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(st, 0);

		snprintf(out, outlen, "%s", v != NULL ? (const char *)v : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Make the copy self-contained (rollback journal, no -wal beside it), check
 * its integrity and read its schema version. */
static int
backup_finish_copy(sqlite3 *dst, const char *path, int *version, char *err, size_t errlen)
{
	char v[256];
	int rc;

	rc = backup_query_text(dst, "PRAGMA journal_mode=DELETE", v, sizeof(v));
	if (rc != SQLITE_OK)
		return backup_sql_fail(dst, rc, path, err, errlen);
	if (strcmp(v, "delete") != 0)
		return backup_fail(err, errlen, "%s: could not leave WAL mode (%s)", path, v);
	rc = backup_query_text(dst, "PRAGMA integrity_check", v, sizeof(v));
	if (rc != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
			return backup_fail(err, errlen,
			    "integrity check of the copy failed: %s (the source database is corrupt)",
			    sqlite3_errstr(rc));
		return backup_sql_fail(dst, rc, path, err, errlen);
	}
	if (strcmp(v, "ok") != 0) {
		/* The first problem, as one line without the "*** in database
		 * main ***" heading SQLite puts before it. */
		char *p = v, *nl;

		if (strncmp(p, "*** in database ", 16) == 0 && (nl = strchr(p, '\n')) != NULL)
			p = nl + 1;
		for (nl = p; *nl != '\0'; nl++)
			if (*nl == '\n')
				*nl = ' ';
		return backup_fail(err, errlen,
		    "integrity check of the copy failed (the source database is corrupt): %.160s", p);
	}
	rc = backup_query_text(dst, "PRAGMA user_version", v, sizeof(v));
	if (rc != SQLITE_OK)
		return backup_sql_fail(dst, rc, path, err, errlen);
	*version = atoi(v);
	return 0;
}

/* fsync a file (or, with dir set, a directory) by name. */
static int
backup_fsync(const char *path, int dir, int64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	int ret = 0;

	if (fd == -1)
		return -1;
	/* Some file systems cannot fsync a directory (EINVAL): nothing to do. */
	if (fsync(fd) == -1 && !(dir && errno == EINVAL))
		ret = -1;
	if (ret == 0 && size != NULL && fstat(fd, &st) == 0)
		*size = (int64_t)st.st_size;
	if (ret == -1) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return 0;
}

/* Remove a temporary database and the journal SQLite may have left. */
static void
backup_unlink_db(const char *path)
{
	char aux[BACKUP_PATH_MAX + 16];

	unlink(path);
	snprintf(aux, sizeof(aux), "%s-journal", path);
	unlink(aux);
	snprintf(aux, sizeof(aux), "%s-wal", path);
	unlink(aux);
	snprintf(aux, sizeof(aux), "%s-shm", path);
	unlink(aux);
}

int
backup_run(sqlite3 *src, const char *dir, const char *suffix, int64_t now,
    struct backup_result *r)
{
	char stamp[17], final[BACKUP_PATH_MAX], tmp[BACKUP_PATH_MAX];
	sqlite3 *dst = NULL;
	int fd, made_tmp = 0, n, rc;

	memset(r, 0, sizeof(*r));
	r->started = now;
	if (suffix == NULL)
		suffix = "";
	if (backup_ensure_dir(dir, r->error, sizeof(r->error)) == -1)
		goto fail;
	backup_stamp(now, stamp);
	n = snprintf(final, sizeof(final), "%s/%s%s%s%s", dir, BACKUP_PREFIX, stamp, suffix, BACKUP_SUFFIX);
	if (n < 0 || (size_t)n >= sizeof(final)) {
		backup_fail(r->error, sizeof(r->error), "backup directory path too long");
		goto fail;
	}
	n = snprintf(tmp, sizeof(tmp), "%s/.%s%s%s%s.tmp.%ld", dir, BACKUP_PREFIX, stamp, suffix,
	    BACKUP_SUFFIX, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		backup_fail(r->error, sizeof(r->error), "backup directory path too long");
		goto fail;
	}
	if (access(final, F_OK) == 0) {
		backup_fail(r->error, sizeof(r->error), "%s already exists (another backup in the same second?)",
		    final);
		goto fail;
	}
	/* Create the file ourselves: O_EXCL never follows a planted symlink,
	 * and the error names the real problem (permissions, missing dir). */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd == -1) {
		backup_fail(r->error, sizeof(r->error), "cannot create a file in %s: %s", dir, strerror(errno));
		goto fail;
	}
	close(fd);
	made_tmp = 1;
	if (backup_copy_db(src, tmp, &dst, r->error, sizeof(r->error)) == -1)
		goto fail;
	if (backup_finish_copy(dst, tmp, &r->schema_version, r->error, sizeof(r->error)) == -1)
		goto fail;
	rc = sqlite3_close(dst);
	dst = NULL;
	if (rc != SQLITE_OK) {
		backup_fail(r->error, sizeof(r->error), "closing %s: %s", tmp, sqlite3_errstr(rc));
		goto fail;
	}
	if (backup_fsync(tmp, 0, &r->size) == -1) {
		backup_fail(r->error, sizeof(r->error), "writing %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, final) == -1) {
		backup_fail(r->error, sizeof(r->error), "renaming the copy to %s: %s", final, strerror(errno));
		goto fail;
	}
	made_tmp = 0;
	if (backup_fsync(dir, 1, NULL) == -1) {
		backup_fail(r->error, sizeof(r->error), "syncing directory %s: %s", dir, strerror(errno));
		unlink(final);
		goto fail;
	}
	snprintf(r->path, sizeof(r->path), "%s", final);
	r->success = 1;
	r->finished = sc_wall_ms() / 1000;
	return 0;
fail:
	if (dst != NULL)
		sqlite3_close_v2(dst);
	if (made_tmp)
		backup_unlink_db(tmp);
	r->success = 0;
	r->path[0] = '\0';
	r->size = 0;
	r->finished = sc_wall_ms() / 1000;
	return -1;
}

int
backup_prune(const char *dir, int keep_days, int64_t now, const char *keep)
{
	const char *keep_base = NULL;
	struct dirent *de;
	int64_t t, limit = now - (int64_t)keep_days * 86400;
	DIR *d;
	int removed = 0;

	if (keep != NULL && *keep != '\0') {
		keep_base = strrchr(keep, '/');
		keep_base = keep_base != NULL ? keep_base + 1 : keep;
	}
	d = opendir(dir);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (backup_name_time(de->d_name, &t) == -1 || t >= limit)
			continue;
		if (keep_base != NULL && strcmp(de->d_name, keep_base) == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
		else
			fprintf(stderr, "sidecarctl backup: warning: cannot remove old backup %s/%s: %s\n",
			    dir, de->d_name, strerror(errno));
	}
	closedir(d);
	return removed;
}

/* Arguments of backup_record_txn. */
struct backup_record_arg {
	const struct backup_result *r;
	const char *kind;
};

/* 1 when table has column, 0 when not, -1 on error. */
static int
backup_has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *st = NULL;
	int rc, found = -1;

	rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		found = sqlite3_column_int(st, 0) > 0;
	sqlite3_finalize(st);
	return found;
}

/* Inside the write transaction: append the row (with kind and schema_version
 * from version 2 on) and keep the table bounded. */
static int
backup_record_txn(sqlite3 *db, void *varg, struct sc_err *e)
{
	struct backup_record_arg *a = varg;
	const struct backup_result *r = a->r;
	char started[SC_TS_LEN], finished[SC_TS_LEN];
	sqlite3_stmt *st = NULL;
	int v2, rc;

	v2 = backup_has_column(db, "backups", "kind");
	if (v2 == -1)
		return db_set_err(db, sqlite3_extended_errcode(db), e, "backups table");
	sc_ts_format(r->started, started);
	sc_ts_format(r->finished, finished);
	rc = sqlite3_prepare_v2(db, v2 ?
	    "INSERT INTO backups (started_at, finished_at, success, path, size_bytes, error, kind, schema_version) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)" :
	    "INSERT INTO backups (started_at, finished_at, success, path, size_bytes, error) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "backups table");
	sqlite3_bind_text(st, 1, started, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, finished, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, r->success ? 1 : 0);
	sqlite3_bind_text(st, 4, r->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, r->size);
	sqlite3_bind_text(st, 6, r->error, -1, SQLITE_STATIC);
	if (v2) {
		sqlite3_bind_text(st, 7, a->kind, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 8, r->schema_version);
	}
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "backups table");
	/* Keep the newest 1000 rows: years of daily backups. */
	return db_exec(db, "DELETE FROM backups WHERE id <= (SELECT max(id) FROM backups) - 1000", e);
}

int
backup_record(sqlite3 *db, const struct backup_result *r, const char *kind, struct sc_err *e)
{
	struct backup_record_arg a = { r, kind != NULL ? kind : "manual" };

	return db_write_txn(db, backup_record_txn, &a, e);
}

/* "<db>.lock" */
static int
backup_lock_path(const char *db_path, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s.lock", db_path);

	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int
backup_lock_holder(const char *db_path, pid_t *pid, struct sc_err *e)
{
	char path[BACKUP_PATH_MAX];
	struct flock fl;
	int fd;

	if (backup_lock_path(db_path, path, sizeof(path)) == -1)
		return sc_err_set(e, NULL, 0, "database path too long");
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd == -1 && errno == EACCES)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		return sc_err_set(e, NULL, 0, "%s: %s", path, strerror(errno));
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_GETLK, &fl) == -1) {
		sc_err_set(e, NULL, 0, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (fl.l_type == F_UNLCK)
		return 0;
	if (pid != NULL)
		*pid = fl.l_pid;
	return 1;
}

/* Take the data plane's lock ourselves (so none starts meanwhile); the
 * descriptor is the lock, closing it releases it. -1 with e set when held. */
static int
backup_lock_take(const char *db_path, struct sc_err *e)
{
	char path[BACKUP_PATH_MAX];
	struct flock fl;
	int fd;

	if (backup_lock_path(db_path, path, sizeof(path)) == -1)
		return sc_err_set(e, NULL, 0, "database path too long");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0660);
	if (fd == -1)
		return sc_err_set(e, NULL, 0, "%s: %s", path, strerror(errno));
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) == -1) {
		int err = errno;
		pid_t pid = 0;

		close(fd);
		if (err == EAGAIN || err == EACCES) {
			if (backup_lock_holder(db_path, &pid, NULL) == 1 && pid > 0)
				return sc_err_set(e, NULL, 0,
				    "the data plane is running (pid %ld holds %s); stop it first "
				    "(systemctl stop sidecar-dataplane)", (long)pid, path);
			return sc_err_set(e, NULL, 0,
			    "the data plane is running (%s is locked); stop it first", path);
		}
		return sc_err_set(e, NULL, 0, "%s: %s", path, strerror(err));
	}
	return fd;
}

/* --- command line --- */

/* Match "--name VALUE" or "--name=VALUE" at argv[*i]; 1 matched (*val set,
 * *i advanced past a separate value), 0 not this option, -1 value missing. */
static int
backup_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

/* A decimal integer in [min, max]; 0 or -1. */
static int
backup_parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* Open path read-only through a URI ("file:...?mode=ro[&immutable=1]"),
 * percent-encoding the path. */
static sqlite3 *
backup_open_ro(const char *path, int immutable, int *rc)
{
	static const char hex[] = "0123456789ABCDEF";
	char uri[3 * BACKUP_PATH_MAX + 64];
	sqlite3 *db = NULL;
	size_t o = 0;

	o += (size_t)snprintf(uri, sizeof(uri), "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
		if (o + 4 >= sizeof(uri) - 32) {
			*rc = SQLITE_CANTOPEN;
			return NULL;
		}
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("/-._~", *p) != NULL) {
			uri[o++] = (char)*p;
		} else {
			uri[o++] = '%';
			uri[o++] = hex[*p >> 4];
			uri[o++] = hex[*p & 15];
		}
	}
	snprintf(uri + o, sizeof(uri) - o, "?mode=ro%s", immutable ? "&immutable=1" : "");
	*rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	if (*rc == SQLITE_OK) {
		sqlite3_extended_result_codes(db, 1);
		sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
		*rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
	}
	if (*rc != SQLITE_OK) {
		sqlite3_close_v2(db);
		return NULL;
	}
	return db;
}

/* Open the database for a backup: read-write so the outcome can be
 * recorded, else read-only (the copy needs only reads) with *can_record 0
 * and the reason in why. A WAL database we may not write and whose -shm
 * does not exist (nobody has it open, so nobody writes it) can only be
 * read as immutable. */
static sqlite3 *
backup_open_source(const char *db_path, int *can_record, char *why, size_t whylen, struct sc_err *e)
{
	struct sc_err rw;
	sqlite3 *db;
	int rc;

	sc_err_clear(&rw);
	db = db_open(db_path, 0, &rw);
	if (db != NULL) {
		*can_record = 1;
		return db;
	}
	*can_record = 0;
	snprintf(why, whylen, "%s", rw.msg);
	if (access(db_path, F_OK) == -1) {
		if (e != NULL)
			*e = rw;
		return NULL;
	}
	db = backup_open_ro(db_path, 0, &rc);
	if (db == NULL && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY))
		db = backup_open_ro(db_path, 1, &rc);
	if (db == NULL) {
		if (strstr(rw.msg, "read-only") != NULL)
			db_set_err(NULL, rc, e, db_path);
		else if (e != NULL)
			*e = rw;
	}
	return db;
}

/* Now, or the next second when a backup named after now already exists in
 * dir (names have one-second resolution; a manual run right after cron's). */
static int64_t
backup_free_second(const char *dir, const char *suffix)
{
	int64_t ms = sc_wall_ms(), now = ms / 1000;
	char stamp[17], path[BACKUP_PATH_MAX];
	struct timespec ts;

	backup_stamp(now, stamp);
	snprintf(path, sizeof(path), "%s/%s%s%s%s", dir, BACKUP_PREFIX, stamp, suffix, BACKUP_SUFFIX);
	if (access(path, F_OK) == -1)
		return now;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)(1000 - ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	return now + 1;
}

static void
backup_usage(FILE *f)
{
	fprintf(f,
	    "usage: sidecarctl backup [--dir DIR] [--keep-days N] [--kind manual|scheduled]\n"
	    "  Online, consistent copy of the database into DIR (default: backups/ next to\n"
	    "  the database) as sidecar_v2-YYYYMMDDTHHMMSSZ.db, checked with integrity_check;\n"
	    "  backups older than N days (default %d) are removed.\n", BACKUP_KEEP_DAYS);
}

/* Store the outcome; a failure here is a warning, never the backup's. */
static void
backup_record_or_warn(sqlite3 *db, int can_record, const char *why, const struct backup_result *r,
    const char *kind, const char *cmd)
{
	struct sc_err e;

	sc_err_clear(&e);
	if (!can_record) {
		fprintf(stderr, "sidecarctl %s: warning: outcome not recorded in the database (%s)\n", cmd, why);
		return;
	}
	if (backup_record(db, r, kind, &e) == -1)
		fprintf(stderr, "sidecarctl %s: warning: outcome not recorded in the database (%s)\n",
		    cmd, e.msg);
}

int
ctl_backup_main(int argc, char **argv, const char *db_path)
{
	const char *dir = NULL, *kind = "manual", *val = NULL;
	char defdir[BACKUP_PATH_MAX], why[256] = "";
	struct backup_result r;
	struct sc_err e;
	sqlite3 *db = NULL;
	int keep_days = BACKUP_KEEP_DAYS, can_record = 0, m, ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			backup_usage(stdout);
			return 0;
		}
		if ((m = backup_opt(argc, argv, &i, "--dir", &val)) == 1) {
			dir = val;
		} else if (m == 0 && (m = backup_opt(argc, argv, &i, "--keep-days", &val)) == 1) {
			if (backup_parse_int(val, 1, BACKUP_KEEP_MAX, &keep_days) == -1) {
				fprintf(stderr, "sidecarctl backup: --keep-days must be 1..%d\n", BACKUP_KEEP_MAX);
				return 2;
			}
		} else if (m == 0 && (m = backup_opt(argc, argv, &i, "--kind", &val)) == 1) {
			if (strcmp(val, "manual") != 0 && strcmp(val, "scheduled") != 0) {
				fprintf(stderr, "sidecarctl backup: --kind must be manual or scheduled\n");
				return 2;
			}
			kind = val;
		}
		if (m != 1) {
			fprintf(stderr, m == -1 ? "sidecarctl backup: %s needs a value\n" :
			    "sidecarctl backup: unknown argument %s\n", argv[i]);
			backup_usage(stderr);
			return 2;
		}
	}
	db_path = db_default_path(db_path);
	if (dir == NULL) {
		if (backup_default_dir(db_path, defdir, sizeof(defdir)) == -1) {
			fprintf(stderr, "sidecarctl backup: failed: database path too long\n");
			return 1;
		}
		dir = defdir;
	}
	sc_err_clear(&e);
	db = backup_open_source(db_path, &can_record, why, sizeof(why), &e);
	if (db == NULL) {
		fprintf(stderr, "sidecarctl backup: failed: %s\n", e.msg);
		return 1;
	}
	if (backup_run(db, dir, "", backup_free_second(dir, ""), &r) == -1) {
		fprintf(stderr, "sidecarctl backup: failed: %s\n", r.error);
		backup_record_or_warn(db, can_record, why, &r, kind, "backup");
		goto out;
	}
	r.pruned = backup_prune(dir, keep_days, r.started, r.path);
	if (r.pruned < 0) {
		fprintf(stderr, "sidecarctl backup: warning: cannot list %s to prune old backups: %s\n",
		    dir, strerror(errno));
		r.pruned = 0;
	}
	backup_record_or_warn(db, can_record, why, &r, kind, "backup");
	printf("backup ok: %s (%lld bytes, schema version %d, integrity ok; %d old backup%s removed)\n",
	    r.path, (long long)r.size, r.schema_version, r.pruned, r.pruned == 1 ? "" : "s");
	ret = 0;
out:
	db_close(db);
	return ret;
}

static void
restore_usage(FILE *f)
{
	fprintf(f,
	    "usage: sidecarctl restore [--key-file PATH] FILE\n"
	    "  Replace the database with the backup FILE. The data plane must be stopped.\n"
	    "  FILE is checked first (integrity, schema version, encryption key from\n"
	    "  SIDECAR_ENCRYPTION_KEY, SIDECAR_ENCRYPTION_KEY_FILE or --key-file); the\n"
	    "  current database is kept as <db>.replaced-YYYYMMDDTHHMMSSZ.\n");
}

/* Check the private, integrity-checked copy at tmp: schema version and
 * encryption key (this also switches the copy to WAL mode, as db_open does). */
static int
restore_check(const char *tmp, const char *key_file, int version, struct sc_err *e)
{
	struct crypto_key key;
	sqlite3 *db = NULL;
	int ret = -1;

	if (version == 0)
		return sc_err_set(e, NULL, 0, "the file is not a Sidecar database (no schema version)");
	if (version > db_latest_version())
		return sc_err_set(e, NULL, 0,
		    "the backup has schema version %d, newer than this program supports (%d); "
		    "restore it with the sidecar release that wrote it", version, db_latest_version());
	if ((key_file != NULL ? crypto_key_load_file(key_file, &key, e) : crypto_key_load(NULL, &key, e)) == -1) {
		char msg[sizeof(e->msg)];

		snprintf(msg, sizeof(msg), "%s", e->msg);
		return sc_err_set(e, NULL, 0, "cannot check the encryption key: %s", msg);
	}
	db = db_open(tmp, 0, e);
	if (db == NULL)
		goto out;
	if (crypto_check_db(db, &key, e) == -1) {
		char msg[sizeof(e->msg)];

		snprintf(msg, sizeof(msg), "%s", e->msg);
		sc_err_set(e, NULL, 0, "the encryption key does not match the backup: %s", msg);
		goto out;
	}
	ret = 0;
out:
	crypto_key_wipe(&key);
	db_close(db);
	return ret;
}

/* Rename a -wal/-shm companion of from to the same companion of to, if present. */
static int
restore_move_aux(const char *from, const char *to, const char *aux)
{
	char a[BACKUP_PATH_MAX + 8], b[BACKUP_PATH_MAX + 48];

	snprintf(a, sizeof(a), "%s%s", from, aux);
	snprintf(b, sizeof(b), "%s%s", to, aux);
	if (rename(a, b) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

int
ctl_restore_main(int argc, char **argv, const char *db_path)
{
	const char *file = NULL, *key_file = NULL, *val = NULL;
	char tmp[BACKUP_PATH_MAX + 32], aside[BACKUP_PATH_MAX + 40], dir[BACKUP_PATH_MAX], stamp[17];
	char err[256];
	struct sc_err e;
	struct stat st, cur;
	sqlite3 *src = NULL, *dst = NULL;
	int lock = -1, fd, made_tmp = 0, version = 0, have_cur, moved = 0, m, rc, ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			restore_usage(stdout);
			return 0;
		}
		if ((m = backup_opt(argc, argv, &i, "--key-file", &val)) == 1) {
			key_file = val;
			continue;
		}
		if (m == -1 || argv[i][0] == '-' || file != NULL) {
			fprintf(stderr, "sidecarctl restore: unexpected argument %s\n", argv[i]);
			restore_usage(stderr);
			return 2;
		}
		file = argv[i];
	}
	if (file == NULL) {
		restore_usage(stderr);
		return 2;
	}
	db_path = db_default_path(db_path);
	sc_err_clear(&e);
	if (stat(file, &st) == -1) {
		fprintf(stderr, "sidecarctl restore: refused: %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "sidecarctl restore: refused: %s: not a regular file\n", file);
		return 1;
	}
	lock = backup_lock_take(db_path, &e);
	if (lock == -1) {
		fprintf(stderr, "sidecarctl restore: refused: %s\n", e.msg);
		return 1;
	}
	/* A private copy next to the database: checks run on it, and the final
	 * step is one rename on the same file system. */
	snprintf(tmp, sizeof(tmp), "%s.restore-tmp.%ld", db_path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
	if (fd == -1) {
		fprintf(stderr, "sidecarctl restore: failed: cannot create %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	made_tmp = 1;
	rc = sqlite3_open_v2(file, &src, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(src, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "sidecarctl restore: refused: %s: %s\n", file,
		    (rc & 0xff) == SQLITE_NOTADB ? "not a SQLite database" : sqlite3_errstr(rc));
		goto out;
	}
	if (backup_copy_db(src, tmp, &dst, err, sizeof(err)) == -1) {
		fprintf(stderr, "sidecarctl restore: refused: copying %s: %s\n", file, err);
		goto out;
	}
	sqlite3_close_v2(src);
	src = NULL;
	if (backup_finish_copy(dst, tmp, &version, err, sizeof(err)) == -1) {
		fprintf(stderr, "sidecarctl restore: refused: %s: %s\n", file, err);
		goto out;
	}
	rc = sqlite3_close(dst);
	dst = NULL;
	if (rc != SQLITE_OK || restore_check(tmp, key_file, version, &e) == -1) {
		fprintf(stderr, "sidecarctl restore: refused: %s: %s\n", file,
		    rc != SQLITE_OK ? sqlite3_errstr(rc) : e.msg);
		goto out;
	}
	if (backup_fsync(tmp, 0, NULL) == -1) {
		fprintf(stderr, "sidecarctl restore: failed: writing %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	have_cur = stat(db_path, &cur) == 0;
	if (have_cur) {
		/* The restored file keeps the ownership and mode of the one it
		 * replaces, so both the data plane and lighttpd can write it. */
		if (chown(tmp, cur.st_uid, cur.st_gid) == -1 && geteuid() == 0)
			fprintf(stderr, "sidecarctl restore: warning: chown %s: %s\n", tmp, strerror(errno));
		chmod(tmp, cur.st_mode & 07777);
		backup_stamp(sc_wall_ms() / 1000, stamp);
		snprintf(aside, sizeof(aside), "%s.replaced-%s", db_path, stamp);
		if (rename(db_path, aside) == -1) {
			fprintf(stderr, "sidecarctl restore: failed: moving %s aside: %s\n", db_path, strerror(errno));
			goto out;
		}
		moved = 1;
		if (restore_move_aux(db_path, aside, "-wal") == -1 ||
		    restore_move_aux(db_path, aside, "-shm") == -1) {
			fprintf(stderr, "sidecarctl restore: failed: moving %s-wal/-shm aside: %s\n",
			    db_path, strerror(errno));
			goto undo;
		}
	}
	if (rename(tmp, db_path) == -1) {
		fprintf(stderr, "sidecarctl restore: failed: moving the restored copy to %s: %s\n",
		    db_path, strerror(errno));
		goto undo;
	}
	made_tmp = 0;
	if (backup_dir_of(db_path, dir, sizeof(dir)) == 0)
		backup_fsync(dir, 1, NULL);
	printf("restored %s (schema version %d) into %s", file, version, db_path);
	if (have_cur)
		printf("; the previous database is kept as %s", aside);
	printf("\n");
	if (version < db_latest_version())
		printf("note: the backup has schema version %d and this program expects %d: run "
		    "`sidecarctl migrate`, or reinstall the release that wrote it to roll back\n",
		    version, db_latest_version());
	ret = 0;
	goto out;
undo:
	if (moved) {
		restore_move_aux(aside, db_path, "-wal");
		restore_move_aux(aside, db_path, "-shm");
		if (rename(aside, db_path) == -1)
			fprintf(stderr, "sidecarctl restore: the previous database is at %s\n", aside);
	}
out:
	if (src != NULL)
		sqlite3_close_v2(src);
	if (dst != NULL)
		sqlite3_close_v2(dst);
	if (made_tmp)
		backup_unlink_db(tmp);
	if (lock != -1)
		close(lock);
	return ret;
}

static void
migrate_usage(FILE *f)
{
	fprintf(f,
	    "usage: sidecarctl migrate [--dir DIR]\n"
	    "  Take a backup (kept until you remove it) into DIR (default: backups/ next to\n"
	    "  the database), then apply every pending schema migration in one transaction.\n");
}

/* Arguments of migrate_note_txn. */
struct migrate_note {
	int         version;
	const char *backup_path;
};

/* Inside a write transaction: remember which backup precedes this upgrade. */
static int
migrate_note_txn(sqlite3 *db, void *varg, struct sc_err *e)
{
	struct migrate_note *n = varg;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "UPDATE schema_migrations SET backup_path = ?1 WHERE version = ?2",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "schema_migrations");
	sqlite3_bind_text(st, 1, n->backup_path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, n->version);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "schema_migrations");
}

int
ctl_migrate_main(int argc, char **argv, const char *db_path)
{
	const char *dir = NULL, *val = NULL;
	char defdir[BACKUP_PATH_MAX], suffix[32];
	struct backup_result r;
	struct migrate_note note;
	struct sc_err e;
	sqlite3 *db = NULL;
	int from, to, m, ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			migrate_usage(stdout);
			return 0;
		}
		if ((m = backup_opt(argc, argv, &i, "--dir", &val)) == 1) {
			dir = val;
			continue;
		}
		fprintf(stderr, m == -1 ? "sidecarctl migrate: %s needs a value\n" :
		    "sidecarctl migrate: unknown argument %s\n", argv[i]);
		migrate_usage(stderr);
		return 2;
	}
	db_path = db_default_path(db_path);
	if (dir == NULL) {
		if (backup_default_dir(db_path, defdir, sizeof(defdir)) == -1) {
			fprintf(stderr, "sidecarctl migrate: failed: database path too long\n");
			return 1;
		}
		dir = defdir;
	}
	sc_err_clear(&e);
	db = db_open(db_path, 0, &e);
	if (db == NULL) {
		fprintf(stderr, "sidecarctl migrate: failed: %s\n", e.msg);
		return 1;
	}
	from = db_schema_version(db);
	to = db_latest_version();
	if (from < 0) {
		db_set_err(db, sqlite3_errcode(db), &e, db_path);
		fprintf(stderr, "sidecarctl migrate: failed: %s\n", e.msg);
		goto out;
	}
	if (from == 0) {
		fprintf(stderr, "sidecarctl migrate: failed: %s has no schema yet: run `sidecarctl init`\n",
		    db_path);
		goto out;
	}
	if (from > to) {
		fprintf(stderr, "sidecarctl migrate: failed: database schema version %d is newer than this "
		    "program supports (%d); upgrade sidecar\n", from, to);
		goto out;
	}
	if (from == to) {
		printf("schema version %d is current; nothing to migrate\n", from);
		ret = 0;
		goto out;
	}
	snprintf(suffix, sizeof(suffix), "-premigrate-v%d", from);
	if (backup_run(db, dir, suffix, backup_free_second(dir, suffix), &r) == -1) {
		fprintf(stderr, "sidecarctl migrate: failed: backup before migrating: %s; nothing was changed\n",
		    r.error);
		backup_record_or_warn(db, 1, "", &r, "pre-migrate", "migrate");
		goto out;
	}
	if (db_migrate(db, &e) == -1) {
		fprintf(stderr, "sidecarctl migrate: failed: %s; the database is unchanged (schema version %d); "
		    "backup: %s\n", e.msg, from, r.path);
		backup_record_or_warn(db, 1, "", &r, "pre-migrate", "migrate");
		goto out;
	}
	backup_record_or_warn(db, 1, "", &r, "pre-migrate", "migrate");
	note.version = db_schema_version(db);
	note.backup_path = r.path;
	if (backup_has_column(db, "schema_migrations", "backup_path") == 1 &&
	    db_write_txn(db, migrate_note_txn, &note, &e) == -1)
		fprintf(stderr, "sidecarctl migrate: warning: backup path not noted in schema_migrations (%s)\n",
		    e.msg);
	printf("migrated %s from schema version %d to %d (pre-migration backup: %s)\n",
	    db_path, from, note.version, r.path);
	ret = 0;
out:
	db_close(db);
	return ret;
}
