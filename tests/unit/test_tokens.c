/*
 * Unit tests for common/tokens.c: tokens are shown once and stored only as
 * a SHA-256 hash; verification checks kind and revocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "db.h"
#include "tokens.h"
#include "testdb.h"

static void
test_create_verify(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	char *adm = NULL, *cli = NULL, id[37], hash[65];
	sqlite3_stmt *st;

	assert_int_equal(tokens_count(f->db, TOKEN_ADMIN), 0);
	assert_int_equal(tokens_create(f->db, TOKEN_ADMIN, "ops", &adm, &e), 0);
	assert_int_equal(tokens_create(f->db, TOKEN_CLIENT, NULL, &cli, &e), 0);
	assert_non_null(adm);
	assert_non_null(cli);
	assert_string_not_equal(adm, cli);
	assert_int_equal(tokens_count(f->db, TOKEN_ADMIN), 1);
	assert_int_equal(tokens_count(f->db, TOKEN_CLIENT), 1);

	assert_int_equal(tokens_verify(f->db, TOKEN_ADMIN, adm, id), 1);
	assert_int_equal(strlen(id), 36);
	assert_int_equal(tokens_verify(f->db, TOKEN_CLIENT, cli, NULL), 1);
	/* Wrong kind, wrong token, empty, oversized. */
	assert_int_equal(tokens_verify(f->db, TOKEN_CLIENT, adm, NULL), 0);
	assert_int_equal(tokens_verify(f->db, TOKEN_ADMIN, "sc_admin_nope", NULL), 0);
	assert_int_equal(tokens_verify(f->db, TOKEN_ADMIN, "", NULL), 0);
	assert_int_equal(tokens_verify(f->db, TOKEN_ADMIN, NULL, NULL), 0);

	/* Only the hash is stored. */
	crypto_token_hash(adm, hash);
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT hash, label FROM tokens WHERE kind = 'admin'",
	    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), hash);
	assert_string_equal((const char *)sqlite3_column_text(st, 1), "ops");
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT count(*) FROM tokens WHERE hash = ?1 OR label = ?1",
	    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, adm, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 0);
	sqlite3_finalize(st);

	/* Revoked tokens no longer verify. */
	assert_int_equal(tokens_revoke(f->db, id, &e), 0);
	assert_int_equal(tokens_verify(f->db, TOKEN_ADMIN, adm, NULL), 0);
	assert_int_equal(tokens_count(f->db, TOKEN_ADMIN), 0);
	assert_int_equal(tokens_revoke(f->db, id, &e), -1);
	assert_non_null(strstr(e.msg, "not found"));
	crypto_free_secret(adm);
	crypto_free_secret(cli);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_verify, testdb_setup, testdb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
