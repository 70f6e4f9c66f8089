/*
 * Unit tests for common/yamlimport.c: the example file imports as 11
 * providers with 440 RPM; importing again changes nothing; each malformed
 * input gives its message with the line and leaves the database as it was;
 * a failure half-way through the apply rolls everything back; and the
 * database file (and its WAL) never holds a plaintext key.
 */
#define _GNU_SOURCE
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
#include "yamlimport.h"
#include "testdb.h"

#define KEY_A TESTDB_KEY_A
#define KEY_B TESTDB_KEY_B

/* Whole file into a malloc'd buffer. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static char *
example(size_t *len)
{
	char *buf = slurp(SC_TEST_SRCDIR "/tests/fixtures/providers-example.yaml", len);

	assert_non_null(buf);
	return buf;
}

static int64_t
query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Parse and apply text; returns the result and fills the report counts. */
static int
import(struct testdb *f, const char *text, size_t len, size_t counts[3], struct sc_err *e)
{
	struct yaml_doc d;
	struct yaml_report r;
	int ret;

	counts[0] = counts[1] = counts[2] = 0;
	if (yamlimport_parse(text, len, &d, e) == -1)
		return -1;
	ret = yamlimport_apply(f->db, &f->k, &d, "yaml", &r, e);
	for (size_t i = 0; i < r.n; i++)
		counts[r.v[i].action]++;
	yamlimport_report_free(&r);
	yamlimport_doc_free(&d);
	return ret;
}

static void
test_example(void **state)
{
	struct testdb *f = *state;
	struct yaml_doc d;
	struct sc_err e;
	size_t len, counts[3];
	char *buf = example(&len);
	int rpm = 0;
	int64_t cv;

	assert_int_equal(yamlimport_parse(buf, len, &d, &e), 0);
	assert_int_equal(d.n, 11);
	for (size_t i = 0; i < d.n; i++)
		rpm += d.v[i].p.rpm_limit;
	assert_int_equal(rpm, 440);
	assert_string_equal(d.v[0].p.name, "account01");
	assert_int_equal(d.v[0].line, 4);
	assert_int_equal(d.v[1].line, 12);
	assert_string_equal(d.v[0].p.model_prefix, "nvidia/");
	assert_int_equal(d.v[0].p.pool, POOL_MAIN);
	assert_non_null(strstr(d.v[0].p.metadata, "\"email\":\"owner01@example.com\""));
	assert_non_null(strstr(d.v[0].p.metadata, "\"notes\":\"primary account\""));
	assert_non_null(strstr(d.v[0].p.metadata, "\"account\":\"account01\""));
	yamlimport_doc_free(&d);

	assert_int_equal(import(f, buf, len, counts, &e), 0);
	assert_int_equal(counts[YAML_CREATED], 11);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 11);
	assert_int_equal(query_int(f->db, "SELECT sum(rpm_limit) FROM providers"), 440);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers WHERE source = 'yaml' AND pool = 'main'"), 11);

	/* Again: nothing changes, not even the config version. */
	cv = db_config_version(f->db);
	assert_int_equal(import(f, buf, len, counts, &e), 0);
	assert_int_equal(counts[YAML_UNCHANGED], 11);
	assert_int_equal(counts[YAML_CREATED] + counts[YAML_UPDATED], 0);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 11);
	assert_int_equal(db_config_version(f->db), cv);

	/* One edited entry: updated, the rest unchanged, still 11 rows. */
	{
		char *edited = strdup(buf), *p = strstr(edited, "account03");

		p = strstr(p, "rpm_limit: 40");
		memcpy(p, "rpm_limit: 30", 13);
		assert_int_equal(import(f, edited, len, counts, &e), 0);
		assert_int_equal(counts[YAML_UPDATED], 1);
		assert_int_equal(counts[YAML_UNCHANGED], 10);
		assert_int_equal(query_int(f->db, "SELECT sum(rpm_limit) FROM providers"), 430);
		assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 11);
		free(edited);
	}
	/* A provider disabled by the operator stays disabled on re-import. */
	assert_int_equal(db_exec(f->db, "UPDATE providers SET status = 'disabled' WHERE name = 'account05'", &e), 0);
	assert_int_equal(import(f, buf, len, counts, &e), 0);
	assert_int_equal(counts[YAML_UPDATED], 1);	/* account03 back to 40 */
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers WHERE status = 'disabled'"), 1);
	free(buf);
}

/* One malformed input: the error text (substring) and line, nothing written. */
struct bad {
	const char *yaml;
	const char *msg;
	int line;
};

static const char good_entry[] =
    "providers:\n"				/* 1 */
    "- account: acct\n"				/* 2 */
    "  email: a@example.com\n"			/* 3 */
    "  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"	/* 4 */
    "  endpoint_url: https://integrate.api.nvidia.com/v1\n"	/* 5 */
    "  model_prefix: \"nvidia/\"\n"		/* 6 */
    "  pool: main\n"				/* 7 */
    "  rpm_limit: 40\n"				/* 8 */
    "  notes: \"\"\n";				/* 9 */

static const struct bad bad_cases[] = {
	/* model_rpm_limits: a mapping of model: integer 1..100000. */
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  model_rpm_limits: 10\n", "line 7: model_rpm_limits: must be a mapping", 7 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  model_rpm_limits:\n    meta/x: 0\n", "line 8: model_rpm_limits: the limit of a model", 8 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  model_rpm_limits: {meta/x: ten}\n", "line 7: model_rpm_limits: the limit of a model", 7 },
	{ "providers:\n- account: a\n  api_key: [unclosed\n  pool: main\n", "YAML syntax error", 4 },
	{ "providers:\n- account: \"a\n", "YAML syntax error", 3 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  pool: spare\n  rpm_limit: 40\n", "line 6: pool: unknown pool \"spare\"", 6 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: -40\n", "line 6: rpm_limit: must be a positive integer", 6 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: forty\n", "line 6: rpm_limit: must be a positive integer", 6 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  tpm_limit: -1\n", "line 7: tpm_limit: must be a non-negative integer", 7 },
	/* Ranges come from provider_validate, pointed at the value's line. */
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 100001\n", "line 6: rpm_limit: must be a positive integer (1 to 100000)", 6 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  weight: 1000.5\n", "line 7: weight: must be a number greater than 0 and at most 1000", 7 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: http://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n", "line 4: endpoint_url: must use https://", 4 },
	{ "providers:\n- account: acct\n  email: a@example.com\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n", "line 2: api_key: missing", 2 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  colour: red\n", "line 7: colour: unknown field", 7 },
	{ "providers:\n  account: acct\n  api_key: x\n", "line 2: providers: must be a list", 2 },
	{ "- account: acct\n", "line 1: expected a mapping", 1 },
	/* A second document is refused, naming the line of its "---". */
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n---\nproviders: []\n", "line 7: a second YAML document starts here", 7 },
	{ "providers: []\n--- x\n", "line 2: a second YAML document", 2 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  status: gone\n", "line 7: status: must be active, disabled or invalid", 7 },
	{ "providers:\n- just a string\n", "line 2: providers: each entry must be a mapping", 2 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: [a, b]\n"
	  "  rpm_limit: 40\n", "line 5: model_prefix: must be a single value", 5 },
	{ "providers:\n- account: acct\n  api_key: short\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n", "line 3: api_key: 8 to 512", 3 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n"
	  "- account: acct\n  api_key: nvapi-TEST-0002-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n", "line 7: account: duplicate account \"acct\" (first at line 2)", 7 },
	{ "providers:\n- account: acct\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	  "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n"
	  "  rpm_limit: 40\n  rpm_limit: 41\n", "line 7: rpm_limit: given twice", 7 },
	{ "extra: 1\nproviders: []\n", "line 1: extra: unknown top-level key", 1 },
	{ "summary: {}\n", "providers: missing", 1 },
	{ "", "the file is empty", 1 },
};

static void
test_malformed(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	size_t counts[3], len;
	char *buf = example(&len);
	int64_t cv;

	/* Start from the example, so "unchanged" means something. */
	assert_int_equal(import(f, buf, len, counts, &e), 0);
	free(buf);
	cv = db_config_version(f->db);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad *b = &bad_cases[i];

		sc_err_clear(&e);
		assert_int_equal(import(f, b->yaml, strlen(b->yaml), counts, &e), -1);
		if (strstr(e.msg, b->msg) == NULL || e.line != b->line)
			fail_msg("case %zu: got \"%s\" (line %d), want \"%s\" (line %d)",
			    i, e.msg, e.line, b->msg, b->line);
		if (b->line > 0) {
			char want[32];

			snprintf(want, sizeof(want), "line %d: ", b->line);
			assert_memory_equal(e.msg, want, strlen(want));
		}
	}
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 11);
	assert_int_equal(db_config_version(f->db), cv);

	/* The good entry with plain http to loopback is accepted. */
	{
		char *loop = strdup(good_entry), *p = strstr(loop, "https://integrate.api.nvidia.com/v1");

		memcpy(p, "http://127.0.0.1:9/v1              ", 35);
		assert_int_equal(import(f, loop, strlen(loop), counts, &e), 0);
		assert_int_equal(counts[YAML_CREATED], 1);
		free(loop);
	}
	/* Per-model limits land in the metadata, as the data plane reads them. */
	{
		static const char ml[] =
		    "providers:\n- account: permodel\n  api_key: nvapi-TEST-0002-xxxxxxxxxxxxxxxx\n"
		    "  endpoint_url: http://127.0.0.1:9/v1\n  model_prefix: nvidia/\n  rpm_limit: 40\n"
		    "  model_rpm_limits:\n    \"meta/llama-3.1-405b-instruct\": 10\n    other/m: 3\n";
		struct provider p;

		assert_int_equal(import(f, ml, strlen(ml), counts, &e), 0);
		assert_int_equal(counts[YAML_CREATED], 1);
		assert_int_equal(provider_get(f->db, NULL, "name", "permodel", &p, &e), 0);
		assert_int_equal(p.n_model_rpm, 2);
		assert_string_equal(p.model_rpm[0].model, "meta/llama-3.1-405b-instruct");
		assert_int_equal(p.model_rpm[0].rpm, 10);
		assert_string_equal(p.model_rpm[1].model, "other/m");
		assert_int_equal(p.model_rpm[1].rpm, 3);
		provider_clear(&p);
	}
	/* An empty list is fine and does nothing. */
	assert_int_equal(import(f, "providers: []\n", 14, counts, &e), 0);
	assert_int_equal(import(f, "providers:\n", 11, counts, &e), 0);
}

/* The apply fails on its second entry (its stored row does not decrypt with
 * our key): the first entry's insert must be rolled back too. */
static void
test_all_or_nothing(void **state)
{
	struct testdb *f = *state;
	struct crypto_key other;
	struct provider p;
	struct sc_err e;
	size_t counts[3];
	const char *text =
	    "providers:\n"
	    "- account: fresh\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n"
	    "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n  rpm_limit: 40\n"
	    "- account: foreign\n  api_key: nvapi-TEST-0002-xxxxxxxxxxxxxxxx\n"
	    "  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: nvidia/\n  rpm_limit: 40\n";
	int64_t cv;

	crypto_key_from_base64(KEY_B, &other, NULL);
	provider_init(&p);
	p.name = strdup("foreign");
	p.api_key = strdup("nvapi-TEST-0009-zzzzzzzzzzzzzzzz");
	p.endpoint_url = strdup("https://integrate.api.nvidia.com/v1");
	p.model_prefix = strdup("nvidia/");
	assert_int_equal(provider_insert(f->db, &other, &p, &e), 0);
	provider_clear(&p);
	cv = db_config_version(f->db);

	assert_int_equal(import(f, text, strlen(text), counts, &e), -1);
	assert_non_null(strstr(e.msg, "line 7: foreign:"));
	assert_non_null(strstr(e.msg, "does not decrypt"));
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 1);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers WHERE name = 'fresh'"), 0);
	assert_int_equal(db_config_version(f->db), cv);
}

/* memmem over a whole file; 1 when needle occurs. */
static int
file_contains(const char *path, const char *needle)
{
	size_t len = 0;
	char *buf = slurp(path, &len);
	int found;

	if (buf == NULL)
		return 0;
	found = memmem(buf, len, needle, strlen(needle)) != NULL;
	free(buf);
	return found;
}

static void
test_no_plaintext_on_disk(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	size_t counts[3], len;
	char *buf = example(&len), wal[320], key[128];

	assert_int_equal(import(f, buf, len, counts, &e), 0);
	free(buf);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	/* Before a checkpoint the rows are in the WAL; after it, in the file. */
	for (int round = 0; round < 2; round++) {
		for (int i = 1; i <= 11; i++) {
			snprintf(key, sizeof(key),
			    "nvapi-PLACEHOLDER-%02d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
			assert_false(file_contains(f->path, key));
			assert_false(file_contains(wal, key));
			/* Nor any long piece of it. */
			snprintf(key, sizeof(key), "PLACEHOLDER-%02d", i);
			assert_false(file_contains(f->path, key));
			assert_false(file_contains(wal, key));
		}
		/* The names are there: the search itself works. */
		assert_true(file_contains(f->path, "account11") || file_contains(wal, "account11"));
		assert_int_equal(sqlite3_wal_checkpoint_v2(f->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
		    SQLITE_OK);
	}
	assert_true(file_contains(f->path, "account11"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_example, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_malformed, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_all_or_nothing, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_no_plaintext_on_disk, testdb_setup, testdb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
