/*
 * Authentication of admin API requests. Bearer tokens are checked by
 * tokens_verify (SHA-256 stored, constant-time comparison). A browser logs in
 * once (POST /api/v2/session) and gets the cookie sc_session: a random token
 * whose SHA-256 is the key of its sessions row; the row also holds the CSRF
 * value that every cookie-authenticated POST/PATCH/DELETE must echo in the
 * X-Sidecar-CSRF header (a cross-site form cannot set headers).
 *
 * Failed logins are remembered per remote address in admin_login_failures
 * (created here with CREATE TABLE IF NOT EXISTS; rows older than the window
 * are pruned on every write); after AUTH_FAIL_MAX failures within
 * AUTH_FAIL_WINDOW seconds further logins answer 429 until the oldest failure
 * leaves the window. All writes go through db_write_txn.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "crypto.h"
#include "db.h"
#include "tokens.h"

static const char auth_schema[] =
    "CREATE TABLE IF NOT EXISTS admin_login_failures ("
    " addr TEXT NOT NULL,"	/* REMOTE_ADDR */
    " at   INTEGER NOT NULL"	/* Unix seconds */
    ");"
    "CREATE INDEX IF NOT EXISTS admin_login_failures_addr ON admin_login_failures (addr, at);";

static int
auth_init_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	(void)arg;
	return db_exec(db, auth_schema, e);
}

int
auth_init_tables(sqlite3 *db, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int exists = 0;

	/* Skip the write lock when the table is already there (the usual case). */
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
	    "name = 'admin_login_failures'", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		exists = 1;
	sqlite3_finalize(st);
	if (exists)
		return 0;
	return db_write_txn(db, auth_init_fn, NULL, e);
}

int
auth_cookie_value(const char *header, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = header;

	if (header == NULL || outlen == 0)
		return 0;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			size_t vlen = len - nlen - 1;
			while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (vlen == 0 || vlen >= outlen)
				return 0;
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return 1;
		}
		p += len;
	}
	return 0;
}

/* Look a session up by cookie value; 1 found and valid, 0 not, -1 db error. */
static int
auth_session_find(sqlite3 *db, const char *value, int64_t now, struct auth_info *out)
{
	static const char sql[] =
	    "SELECT s.token_id, s.csrf, s.expires_at FROM sessions s JOIN tokens t ON t.id = s.token_id "
	    "WHERE s.hash = ?1 AND s.expires_at > ?2 AND t.revoked_at IS NULL AND t.kind = 'admin'";
	sqlite3_stmt *st = NULL;
	char hash[65], ts[SC_TS_LEN];
	int rc, found = 0;

	crypto_token_hash(value, hash);
	sc_ts_format(now, ts);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ts, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(out->token_id, sizeof(out->token_id), "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(out->csrf, sizeof(out->csrf), "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(out->expires_at, sizeof(out->expires_at), "%s",
		    (const char *)sqlite3_column_text(st, 2));
		found = 1;
	} else if (rc != SQLITE_DONE)
		found = -1;
	sqlite3_finalize(st);
	return found;
}

enum auth_result
auth_check(sqlite3 *db, const char *authorization, const char *cookie,
    const char *csrf, bool mutating, int64_t now, struct auth_info *out)
{
	char value[AUTH_COOKIE_MAX];
	int rc;

	memset(out, 0, sizeof(*out));
	/* A bearer header wins over a cookie; a wrong one never falls back. */
	if (authorization != NULL && *authorization != '\0') {
		const char *t = authorization;
		if (strncasecmp(t, "Bearer ", 7) != 0)
			return AUTH_BAD;
		t += 7;
		while (*t == ' ')
			t++;
		if (*t == '\0' || strlen(t) > 512)
			return AUTH_BAD;
		rc = tokens_verify(db, TOKEN_ADMIN, t, out->token_id);
		if (rc < 0)
			return AUTH_DBERR;
		return rc == 1 ? AUTH_OK : AUTH_BAD;
	}
	if (!auth_cookie_value(cookie, AUTH_COOKIE_NAME, value, sizeof(value)))
		return AUTH_NONE;
	rc = auth_session_find(db, value, now, out);
	crypto_wipe(value, sizeof(value));
	if (rc < 0)
		return AUTH_DBERR;
	if (rc == 0)
		return AUTH_BAD;
	out->via_cookie = true;
	if (mutating) {
		size_t n = strlen(out->csrf);
		if (csrf == NULL || strlen(csrf) != n || !crypto_ct_equal(csrf, out->csrf, n))
			return AUTH_CSRF;
	}
	return AUTH_OK;
}

int
auth_throttle_wait(sqlite3 *db, const char *addr, int64_t now)
{
	static const char sql[] =
	    "SELECT count(*), min(at) FROM admin_login_failures WHERE addr = ?1 AND at > ?2";
	sqlite3_stmt *st = NULL;
	int wait = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, addr ? addr : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now - AUTH_FAIL_WINDOW);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return -1;
	}
	if (sqlite3_column_int(st, 0) >= AUTH_FAIL_MAX) {
		/* Free again when enough failures have aged out: the oldest counted
		 * one leaves the window first. */
		int64_t oldest = sqlite3_column_int64(st, 1);
		wait = (int)(oldest + AUTH_FAIL_WINDOW - now);
		if (wait < 1)
			wait = 1;
	}
	sqlite3_finalize(st);
	return wait;
}

struct auth_fail_arg {
	const char *addr;
	int64_t     now;
	bool        clear;
};

static int
auth_fail_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct auth_fail_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int rc;

	if (a->clear)
		rc = sqlite3_prepare_v2(db, "DELETE FROM admin_login_failures WHERE addr = ?1 OR at <= ?2",
		    -1, &st, NULL);
	else
		rc = sqlite3_prepare_v2(db, "DELETE FROM admin_login_failures WHERE at <= ?2",
		    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "login throttle");
	sqlite3_bind_text(st, 1, a->addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->now - AUTH_FAIL_WINDOW);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "login throttle");
	if (a->clear)
		return 0;
	rc = sqlite3_prepare_v2(db, "INSERT INTO admin_login_failures (addr, at) VALUES (?1, ?2)",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "login throttle");
	sqlite3_bind_text(st, 1, a->addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->now);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "login throttle");
	return 0;
}

int
auth_throttle_fail(sqlite3 *db, const char *addr, int64_t now, struct sc_err *e)
{
	struct auth_fail_arg a = { addr ? addr : "", now, false };

	return db_write_txn(db, auth_fail_fn, &a, e);
}

int
auth_throttle_clear(sqlite3 *db, const char *addr, int64_t now, struct sc_err *e)
{
	struct auth_fail_arg a = { addr ? addr : "", now, true };

	return db_write_txn(db, auth_fail_fn, &a, e);
}

struct auth_session_arg {
	const char *token_id;
	const char *hash;
	const char *csrf;
	const char *now;
	const char *expires;
};

static int
auth_session_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct auth_session_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int rc;

	/* Expired sessions go first so the table does not grow. */
	rc = sqlite3_prepare_v2(db, "DELETE FROM sessions WHERE expires_at <= ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "session");
	sqlite3_bind_text(st, 1, a->now, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "session");
	rc = sqlite3_prepare_v2(db, "INSERT INTO sessions (hash, token_id, csrf, created_at, expires_at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "session");
	sqlite3_bind_text(st, 1, a->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->token_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->csrf, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->expires, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "session");
	return 0;
}

int
auth_session_create(sqlite3 *db, const char *token_id, int64_t now, char **cookie,
    char **csrf, char expires_at[SC_TS_LEN], struct sc_err *e)
{
	struct auth_session_arg a;
	char hash[65], ts[SC_TS_LEN];

	*cookie = crypto_token_generate("scs_");
	*csrf = crypto_token_generate("");
	crypto_token_hash(*cookie, hash);
	sc_ts_format(now, ts);
	sc_ts_format(now + AUTH_SESSION_SECONDS, expires_at);
	a.token_id = token_id;
	a.hash = hash;
	a.csrf = *csrf;
	a.now = ts;
	a.expires = expires_at;
	if (db_write_txn(db, auth_session_fn, &a, e) == -1) {
		crypto_free_secret(*cookie);
		crypto_free_secret(*csrf);
		*cookie = *csrf = NULL;
		return -1;
	}
	return 0;
}

static int
auth_logout_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "DELETE FROM sessions WHERE hash = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "session");
	sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "session");
	return 0;
}

int
auth_session_delete(sqlite3 *db, const char *cookie_header, struct sc_err *e)
{
	char value[AUTH_COOKIE_MAX], hash[65];

	if (!auth_cookie_value(cookie_header, AUTH_COOKIE_NAME, value, sizeof(value)))
		return 0;
	crypto_token_hash(value, hash);
	crypto_wipe(value, sizeof(value));
	return db_write_txn(db, auth_logout_fn, hash, e);
}
