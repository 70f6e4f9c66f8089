/*
 * The unit tests' database fixture (see testdb.h).
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "testdb.h"

static int
testdb_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int
testdb_setup(void **state)
{
	struct testdb *t = calloc(1, sizeof(*t));
	const char *tmp = getenv("TMPDIR");
	struct sc_err e;

	if (t == NULL)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "%s/sc-test-XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL)
		goto fail;
	snprintf(t->path, sizeof(t->path), "%s/t.db", t->dir);
	t->db = db_open(t->path, DB_OPEN_CREATE, &e);
	if (t->db == NULL || db_migrate(t->db, &e) == -1) {
		fprintf(stderr, "testdb: %s\n", e.msg);
		goto fail;
	}
	if (crypto_key_from_base64(TESTDB_KEY_A, &t->k, &e) == -1)
		goto fail;
	*state = t;
	return 0;
fail:
	db_close(t->db);
	free(t);
	return -1;
}

int
testdb_teardown(void **state)
{
	struct testdb *t = *state;
	int rc;

	db_close(t->db);
	rc = nftw(t->dir, testdb_rm, 8, FTW_DEPTH | FTW_PHYS);
	free(t);
	return rc == 0 ? 0 : -1;
}
