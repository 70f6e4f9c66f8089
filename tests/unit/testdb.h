/*
 * The unit tests' database fixture: a private temporary directory holding a
 * freshly migrated database, and a fixed test encryption key. Use
 * testdb_setup/testdb_teardown as cmocka's setup and teardown; the state is a
 * struct testdb.
 */
#ifndef SC_TESTDB_H
#define SC_TESTDB_H

#include <sqlite3.h>
#include "crypto.h"

/* Two fixed 32-byte test keys (base64), never used outside tests. */
#define TESTDB_KEY_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define TESTDB_KEY_B "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

struct testdb {
	char              dir[256];	/* mkdtemp'd under $TMPDIR or /tmp; removed by teardown */
	char              path[300];	/* dir/t.db */
	sqlite3          *db;		/* open and migrated */
	struct crypto_key k;		/* TESTDB_KEY_A */
};

int testdb_setup(void **state);
int testdb_teardown(void **state);

#endif
