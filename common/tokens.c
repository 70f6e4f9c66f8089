/*
 * Bearer tokens for the admin API and data-plane clients. A token is a kind
 * prefix plus 256 random bits in base64url; only its SHA-256 hex is stored,
 * so a copy of the database does not hand out working tokens. Lookup goes by
 * the hash (indexed, UNIQUE), and the found hash is compared again in
 * constant time. Each function is one statement, so it can run inside a
 * caller's write transaction or on its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "db.h"
#include "tokens.h"

#define TOKENS_PRESENTED_MAX 512	/* longer presented tokens are rejected unhashed */

static const char *
tokens_kind_name(enum token_kind kind)
{
	return kind == TOKEN_ADMIN ? "admin" : "client";
}

int
tokens_create(sqlite3 *db, enum token_kind kind, const char *label, char **plain, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char id[37], hash[65], *tok;
	int rc;

	*plain = NULL;
	if (label != NULL && strlen(label) > TOKENS_LABEL_MAX)
		return sc_err_set(e, "label", 0, "label: at most %d characters", TOKENS_LABEL_MAX);
	if (label != NULL && !sc_utf8_valid(label, strlen(label)))
		return sc_err_set(e, "label", 0, "label: not valid UTF-8");
	tok = crypto_token_generate(kind == TOKEN_ADMIN ? "sc_admin_" : "sc_client_");
	crypto_token_hash(tok, hash);
	sc_uuid(id);
	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO tokens (id, kind, hash, label) VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, tokens_kind_name(kind), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, label ? label : "", -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_DONE) {
		crypto_free_secret(tok);
		return db_set_err(db, rc, e, "creating token");
	}
	*plain = tok;
	return 0;
}

int
tokens_verify(sqlite3 *db, enum token_kind kind, const char *presented, char id_out[37])
{
	sqlite3_stmt *st = NULL;
	char hash[65];
	const char *found;
	int rc, ret = 0;

	if (presented == NULL || *presented == '\0' || strlen(presented) > TOKENS_PRESENTED_MAX)
		return 0;
	crypto_token_hash(presented, hash);
	rc = sqlite3_prepare_v2(db,
	    "SELECT id, hash FROM tokens WHERE hash = ?1 AND kind = ?2 AND revoked_at IS NULL",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, tokens_kind_name(kind), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		found = (const char *)sqlite3_column_text(st, 1);
		if (found != NULL && strlen(found) == 64 && crypto_ct_equal(found, hash, 64)) {
			if (id_out != NULL)
				snprintf(id_out, 37, "%s", (const char *)sqlite3_column_text(st, 0));
			ret = 1;
		}
	} else if (rc != SQLITE_DONE)
		ret = -1;
	sqlite3_finalize(st);
	return ret;
}

int
tokens_label(sqlite3 *db, const char *id, char *out, size_t outlen)
{
	sqlite3_stmt *st = NULL;
	int ret = -1;

	if (sqlite3_prepare_v2(db, "SELECT label FROM tokens WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, outlen, "%s", t != NULL ? (const char *)t : "");
		ret = 0;
	}
	sqlite3_finalize(st);
	return ret;
}

int
tokens_count(sqlite3 *db, enum token_kind kind)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM tokens WHERE kind = ?1 AND revoked_at IS NULL",
	    -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, tokens_kind_name(kind), -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

int
tokens_revoke(sqlite3 *db, const char *id, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db,
	    "UPDATE tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
	    "WHERE id = ?1 AND revoked_at IS NULL", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "revoking token");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "revoking token");
	if (sqlite3_changes(db) == 0)
		return sc_err_set(e, "id", 0, "token not found or already revoked");
	return 0;
}
