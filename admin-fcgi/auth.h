/*
 * Who may use the admin API: bearer admin tokens (common/tokens.c, hashed,
 * constant-time compare), browser sessions (cookie sc_session, stored as a
 * hash in the sessions table, with a CSRF value that cookie-authenticated
 * mutating requests must echo in X-Sidecar-CSRF), and the login throttle
 * (failed logins per remote address, table admin_login_failures).
 */
#ifndef SC_ADMIN_AUTH_H
#define SC_ADMIN_AUTH_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define AUTH_COOKIE_NAME	"sc_session"
#define AUTH_SESSION_SECONDS	43200	/* 12 h, also the cookie's Max-Age */
#define AUTH_FAIL_WINDOW	300	/* seconds over which failed logins are counted */
#define AUTH_FAIL_MAX		5	/* failures in the window before 429 */
#define AUTH_COOKIE_MAX		128	/* longest cookie value considered */

enum auth_result {
	AUTH_OK,	/* authenticated */
	AUTH_NONE,	/* no credentials: 401 */
	AUTH_BAD,	/* wrong / revoked / expired credentials: 401 */
	AUTH_CSRF,	/* cookie without the right X-Sidecar-CSRF on a mutation: 403 */
	AUTH_DBERR	/* database failure */
};

/* What an authenticated request carries. */
struct auth_info {
	char token_id[37];	/* the admin token (directly or behind the session) */
	bool via_cookie;
	char csrf[64];		/* the session's CSRF value (cookie sessions only) */
	char expires_at[SC_TS_LEN];
};

/* Create the admin's own table(s) if missing (one write transaction). */
int auth_init_tables(sqlite3 *db, struct sc_err *e);

/* Check a request's credentials. mutating: POST/PATCH/DELETE/PUT. */
enum auth_result auth_check(sqlite3 *db, const char *authorization, const char *cookie,
    const char *csrf, bool mutating, int64_t now, struct auth_info *out);

/* Cookie value of name from a Cookie header into out; 1 found, 0 not. */
int auth_cookie_value(const char *header, const char *name, char *out, size_t outlen);

/* Seconds the address must still wait before another login attempt (0 = may
 * try now), or -1 on a database error. */
int auth_throttle_wait(sqlite3 *db, const char *addr, int64_t now);
/* Record a failed login / forget an address's failures after a success. */
int auth_throttle_fail(sqlite3 *db, const char *addr, int64_t now, struct sc_err *e);
int auth_throttle_clear(sqlite3 *db, const char *addr, int64_t now, struct sc_err *e);

/* New session for token_id: *cookie (the value to set) and csrf are malloc'd. */
int auth_session_create(sqlite3 *db, const char *token_id, int64_t now, char **cookie,
    char **csrf, char expires_at[SC_TS_LEN], struct sc_err *e);
/* End the session named by a Cookie header (no-op when none). */
int auth_session_delete(sqlite3 *db, const char *cookie_header, struct sc_err *e);

#endif
