/*
 * Bearer tokens for the admin API and for data-plane clients. Only the
 * SHA-256 of a token is stored; the token itself is shown once at creation.
 */
#ifndef SC_TOKENS_H
#define SC_TOKENS_H

#include <sqlite3.h>
#include "util.h"

enum token_kind { TOKEN_ADMIN, TOKEN_CLIENT };

#define TOKENS_LABEL_MAX 128	/* bytes of a label */

/* Create a token; *plain receives it (malloc'd, free with crypto_free_secret). 0 or -1. */
int tokens_create(sqlite3 *db, enum token_kind kind, const char *label, char **plain, struct sc_err *e);
/* Check a presented token: returns 1 and copies the token id (37 bytes) when
 * it matches an unrevoked token of this kind, 0 when not, -1 on a database error. */
int tokens_verify(sqlite3 *db, enum token_kind kind, const char *presented, char id_out[37]);
/* The label of token id into out (outlen bytes, cut to fit): 0, or -1 when
 * there is no such token or on a database error. */
int tokens_label(sqlite3 *db, const char *id, char *out, size_t outlen);
/* Unrevoked tokens of a kind, or -1 on error. */
int tokens_count(sqlite3 *db, enum token_kind kind);
int tokens_revoke(sqlite3 *db, const char *id, struct sc_err *e);

#endif
