/*
 * Unit tests for common/providers.c: field validation (https except for
 * loopback, limits, enums, metadata), compat options, masking that never
 * shows more than 4 + 4 secret characters, and storage: keys encrypted at
 * rest with the provider id as associated data, update/delete/status, rekey.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "db.h"
#include "providers.h"
#include "testdb.h"

#define KEY_A TESTDB_KEY_A
#define KEY_B TESTDB_KEY_B
#define TESTKEY "nvapi-TEST-0001-xxxxxxxxxxxxxxxxWXYZ"

/* A valid provider to start each case from. */
static void
sample(struct provider *p, const char *name)
{
	provider_init(p);
	p->name = strdup(name);
	p->api_key = strdup(TESTKEY);
	p->endpoint_url = strdup("https://integrate.api.nvidia.com/v1");
	p->model_prefix = strdup("nvidia/");
	p->source = strdup("cli");
}

static void
set(char **field, const char *v)
{
	free(*field);
	*field = v ? strdup(v) : NULL;
}

/* Validate p after one change; expect the named field to fail (or pass on NULL). */
static void
expect(struct provider *p, const char *field)
{
	struct sc_err e;

	sc_err_clear(&e);
	if (field == NULL) {
		if (provider_validate(p, &e) != 0)
			fail_msg("unexpected failure: %s", e.msg);
		return;
	}
	assert_int_equal(provider_validate(p, &e), -1);
	assert_string_equal(e.field, field);
	assert_memory_equal(e.msg, field, strlen(field));	/* "field: reason" */
}

/* Text fields are well-formed UTF-8 of printable characters (issue 14). */
static void
test_validate_utf8(void **state)
{
	struct provider p;

	(void)state;
	sample(&p, "account01");
	set(&p.name, "bad \xff\xfe");
	expect(&p, "name");
	set(&p.name, "cut \xc3");
	expect(&p, "name");
	set(&p.name, "surrogate \xed\xa0\x80");
	expect(&p, "name");
	set(&p.name, "overlong \xc0\xaf");
	expect(&p, "name");
	set(&p.name, "c1 \xc2\x85");
	expect(&p, "name");
	set(&p.name, "ls \xe2\x80\xa8");
	expect(&p, "name");
	set(&p.name, "ünïcödé \xe6\xbc\xa2 \xf0\x9f\x99\x82");
	expect(&p, NULL);
	set(&p.metadata, "{\"notes\":\"\xff\"}");
	expect(&p, "metadata");
	set(&p.metadata, "{\"notes\":\"a\\u0000b\"}");
	expect(&p, "metadata");
	set(&p.metadata, "{\"k\":[\"x\\u0000\"]}");
	expect(&p, "metadata");
	set(&p.metadata, "{\"notes\":\"tab\\tand\\nnewline \xe2\x9c\x93\"}");
	expect(&p, NULL);
	set(&p.status_reason, "upstream said \xff");
	expect(&p, "status_reason");
	set(&p.status_reason, "");
	set(&p.model_prefix, "nv\xffidia/");
	expect(&p, "model_prefix");
	provider_clear(&p);
}

static void
test_validate(void **state)
{
	struct provider p;

	(void)state;
	sample(&p, "account01");
	expect(&p, NULL);

	set(&p.endpoint_url, "http://integrate.api.nvidia.com/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "http://127.0.0.1:8080/v1");
	expect(&p, NULL);
	set(&p.endpoint_url, "http://localhost:9/v1");
	expect(&p, NULL);
	set(&p.endpoint_url, "http://[::1]:9000");
	expect(&p, NULL);
	set(&p.endpoint_url, "http://127.0.0.1.evil.com/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "http://localhost@evil.com/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "ftp://x/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "https://");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "https://a b/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "https://host:99999/v1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "https://host/v1?x=1");
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, NULL);
	expect(&p, "endpoint_url");
	set(&p.endpoint_url, "https://host:443/v1/");
	expect(&p, NULL);

	set(&p.model_prefix, "");
	expect(&p, "model_prefix");
	set(&p.model_prefix, "nv idia/");
	expect(&p, "model_prefix");
	set(&p.model_prefix, "nvidia/");

	set(&p.name, "");
	expect(&p, "name");
	set(&p.name, "bad\nname");
	expect(&p, "name");
	set(&p.name, "account 01");
	expect(&p, NULL);

	set(&p.api_key, "short");
	expect(&p, "api_key");
	set(&p.api_key, "nvapi-has space-xxxxxxxx");
	expect(&p, "api_key");
	set(&p.api_key, NULL);
	expect(&p, "api_key");	/* new provider: key required */
	strcpy(p.id, "00000000-0000-4000-8000-000000000000");
	expect(&p, NULL);	/* stored provider: NULL keeps the key */
	p.id[0] = '\0';
	set(&p.api_key, TESTKEY);

	p.rpm_limit = 0;
	expect(&p, "rpm_limit");
	p.rpm_limit = -5;
	expect(&p, "rpm_limit");
	p.rpm_limit = 100001;
	expect(&p, "rpm_limit");
	p.rpm_limit = 40;
	p.tpm_limit = -1;
	expect(&p, "tpm_limit");
	p.tpm_limit = 0;
	p.weight = 0;
	expect(&p, "weight");
	p.weight = 1000.5;
	expect(&p, "weight");
	p.weight = 1000;
	expect(&p, NULL);
	p.cost_per_1k = -0.01;
	expect(&p, "cost_per_1k");
	p.cost_per_1k = 0.002;
	p.pool = (enum provider_pool)7;
	expect(&p, "pool");
	p.pool = POOL_FALLBACK;
	p.status = (enum provider_status)9;
	expect(&p, "status");
	p.status = PSTATUS_DISABLED;
	set(&p.source, "carrier-pigeon");
	expect(&p, "source");
	set(&p.source, "yaml");
	set(&p.metadata, "[1,2]");
	expect(&p, "metadata");
	set(&p.metadata, "{not json");
	expect(&p, "metadata");
	set(&p.metadata, "{\"email\":\"a@example.com\"}");
	expect(&p, NULL);
	provider_clear(&p);
}

static void
test_enums_compat(void **state)
{
	struct provider p;
	enum provider_pool pool;
	enum provider_status st;
	struct sc_err e;

	(void)state;
	assert_int_equal(provider_pool_parse("fallback", &pool), 0);
	assert_int_equal(pool, POOL_FALLBACK);
	assert_int_equal(provider_pool_parse("emergency", &pool), -1);
	assert_string_equal(provider_pool_name(POOL_MAIN), "main");
	assert_int_equal(provider_status_parse("invalid", &st), 0);
	assert_int_equal(provider_status_parse("Active", &st), -1);
	assert_string_equal(provider_status_name(PSTATUS_DISABLED), "disabled");

	sample(&p, "x");
	assert_int_equal(provider_parse_compat(&p, &e), 0);
	assert_false(p.compat.max_tokens_field);
	assert_false(p.compat.flatten_content);
	assert_true(p.compat.stream_usage);
	set(&p.metadata, "{\"flatten_content\":true,\"stream_usage\":false,\"max_tokens_field\":true}");
	assert_int_equal(provider_parse_compat(&p, &e), 0);
	assert_true(p.compat.max_tokens_field);
	assert_true(p.compat.flatten_content);
	assert_false(p.compat.stream_usage);
	set(&p.metadata, "{\"flatten_content\":\"yes\"}");
	assert_int_equal(provider_parse_compat(&p, &e), -1);
	assert_string_equal(e.field, "metadata");
	provider_clear(&p);
}

/* metadata.model_rpm_limits: parsed sorted, every bad shape a precise error
 * naming the field, nothing half-parsed left behind. */
static void
test_model_rpm_limits(void **state)
{
	struct provider p;
	struct sc_err e;
	char big[4096];
	size_t n;

	(void)state;
	sample(&p, "x");
	set(&p.metadata, "{\"model_rpm_limits\":{\"z/m\":5,\"meta/llama-3.1-405b-instruct\":10}}");
	assert_int_equal(provider_parse_compat(&p, &e), 0);
	assert_int_equal(p.n_model_rpm, 2);
	assert_string_equal(p.model_rpm[0].model, "meta/llama-3.1-405b-instruct");
	assert_int_equal(p.model_rpm[0].rpm, 10);
	assert_string_equal(p.model_rpm[1].model, "z/m");
	/* Parsing again replaces (no leak, no duplicates). */
	assert_int_equal(provider_parse_compat(&p, &e), 0);
	assert_int_equal(p.n_model_rpm, 2);
	const char *bad[] = {
		"{\"model_rpm_limits\":[1]}", "{\"model_rpm_limits\":{\"m\":0}}",
		"{\"model_rpm_limits\":{\"m\":100001}}", "{\"model_rpm_limits\":{\"m\":\"5\"}}",
		"{\"model_rpm_limits\":{\"m\":2.5}}", "{\"model_rpm_limits\":{\"\":5}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set(&p.metadata, bad[i]);
		sc_err_clear(&e);
		assert_int_equal(provider_parse_compat(&p, &e), -1);
		assert_string_equal(e.field, "model_rpm_limits");
		assert_int_equal(p.n_model_rpm, 0);
		assert_null(p.model_rpm);
	}
	/* At most PROVIDER_MODEL_RPM_MAX models. */
	n = (size_t)snprintf(big, sizeof(big), "{\"model_rpm_limits\":{");
	for (int i = 0; i <= PROVIDER_MODEL_RPM_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"m%d\":1", i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "}}");
	set(&p.metadata, big);
	assert_int_equal(provider_parse_compat(&p, &e), -1);
	assert_string_equal(e.field, "model_rpm_limits");
	set(&p.metadata, "{\"model_rpm_limits\":null}");
	assert_int_equal(provider_parse_compat(&p, &e), 0);
	assert_int_equal(p.n_model_rpm, 0);
	provider_clear(&p);
}

/* How many characters of the secret part of key appear in mask. */
static void
check_mask(const char *key)
{
	char mask[64], *ell;
	size_t pre = 0, shown;

	provider_mask_key(key, mask, sizeof(mask));
	assert_null(strstr(mask, key));
	if (strcmp(mask, "****") == 0)
		return;
	ell = strstr(mask, "\xe2\x80\xa6");
	assert_non_null(ell);
	while (key[pre] >= 'a' && key[pre] <= 'z')
		pre++;
	pre = key[pre] == '-' && pre > 0 && pre + 1 <= 8 ? pre + 1 : 0;
	assert_memory_equal(mask, key, pre);
	/* Secret characters shown: before the ellipsis after the prefix, and after it. */
	shown = (size_t)(ell - mask) - pre + strlen(ell + 3);
	assert_true(shown <= 8);
	assert_true((size_t)(ell - mask) - pre <= 4);
	assert_true(strlen(ell + 3) <= 4);
	/* And never more than 4 + 4 + prefix overall. */
	assert_true(strlen(mask) <= pre + 4 + 3 + 4);
}

static void
test_mask(void **state)
{
	char mask[64];
	char key[600];

	(void)state;
	provider_mask_key("nvapi-WGopXXXXXXXXXXXXXXXXXXXXaTDz", mask, sizeof(mask));
	assert_string_equal(mask, "nvapi-WGop\xe2\x80\xa6" "aTDz");
	provider_mask_key("sk-abcdefghijklmnopqrstuvwxyz", mask, sizeof(mask));
	assert_string_equal(mask, "sk-abcd\xe2\x80\xa6wxyz");
	/* A long lowercase run is not a vendor prefix: it is secret. */
	provider_mask_key("abcdefghijklmnop-qrstuvwxyz0123", mask, sizeof(mask));
	assert_string_equal(mask, "abcd\xe2\x80\xa6" "0123");
	provider_mask_key("nvapi-short", mask, sizeof(mask));
	assert_string_equal(mask, "****");
	provider_mask_key("12345678", mask, sizeof(mask));
	assert_string_equal(mask, "****");
	provider_mask_key("", mask, sizeof(mask));
	assert_string_equal(mask, "****");
	provider_mask_key(NULL, mask, sizeof(mask));
	assert_string_equal(mask, "****");
	/* Too small an output buffer never gets a partial key. */
	provider_mask_key("nvapi-WGopXXXXXXXXXXXXXXXXXXXXaTDz", mask, 10);
	assert_string_equal(mask, "****");

	/* Property: every length and shape reveals at most 4 + 4. */
	for (size_t len = 1; len + 8 < sizeof(key); len += (len < 40 ? 1 : 37)) {
		for (int shape = 0; shape < 3; shape++) {
			const char *pre = shape == 0 ? "" : shape == 1 ? "nvapi-" : "sk-";
			size_t pl = strlen(pre);

			memcpy(key, pre, pl);
			for (size_t i = 0; i < len; i++)
				key[pl + i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(i * 7 + len) % 36];
			key[pl + len] = '\0';
			check_mask(key);
		}
	}
}

static void
test_storage(void **state)
{
	struct testdb *f = *state;
	struct provider p, g, dup;
	struct provider_list l;
	struct sc_err e;
	sqlite3_stmt *st;
	int64_t cv = db_config_version(f->db);
	char *plain;

	sample(&p, "account01");
	set(&p.endpoint_url, "https://integrate.api.nvidia.com/v1/");
	set(&p.metadata, "{\"flatten_content\":true}");
	assert_int_equal(provider_insert(f->db, &f->k, &p, &e), 0);
	assert_int_equal(strlen(p.id), 36);
	assert_string_equal(p.api_key_mask, "nvapi-TEST\xe2\x80\xa6WXYZ");
	assert_true(db_config_version(f->db) > cv);

	/* At rest: ciphertext bound to the id, never the plaintext. */
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT api_key, api_key_mask, endpoint_url FROM providers",
	    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_memory_equal(sqlite3_column_text(st, 0), "v1:", 3);
	assert_null(strstr((const char *)sqlite3_column_text(st, 0), "TEST-0001"));
	assert_int_equal(crypto_decrypt(&f->k, p.id, (const char *)sqlite3_column_text(st, 0), &plain, NULL, &e), 0);
	assert_string_equal(plain, TESTKEY);
	crypto_free_secret(plain);
	assert_string_equal((const char *)sqlite3_column_text(st, 2), "https://integrate.api.nvidia.com/v1");
	sqlite3_finalize(st);

	/* Read back, with and without the key. */
	assert_int_equal(provider_get(f->db, &f->k, "name", "account01", &g, &e), 0);
	assert_string_equal(g.api_key, TESTKEY);
	assert_string_equal(g.id, p.id);
	assert_true(g.compat.flatten_content);
	assert_int_equal(g.rpm_limit, 40);
	assert_string_equal(g.source, "cli");
	assert_int_equal(g.created_at[4], '-');
	provider_clear(&g);
	assert_int_equal(provider_get(f->db, NULL, "id", p.id, &g, &e), 0);
	assert_null(g.api_key);
	assert_string_equal(g.name, "account01");
	provider_clear(&g);
	assert_int_equal(provider_get(f->db, NULL, "name", "nobody", &g, &e), 1);
	assert_int_equal(provider_get(f->db, NULL, "colour", "x", &g, &e), -1);

	/* Duplicate name names the field. */
	sample(&dup, "account01");
	assert_int_equal(provider_insert(f->db, &f->k, &dup, &e), -1);
	assert_string_equal(e.field, "name");
	assert_non_null(strstr(e.msg, "already exists"));
	provider_clear(&dup);

	/* Update without a key keeps it; with one replaces it. */
	crypto_free_secret(p.api_key);
	p.api_key = NULL;
	p.rpm_limit = 35;
	p.pool = POOL_FALLBACK;
	assert_int_equal(provider_update(f->db, &f->k, &p, &e), 0);
	assert_int_equal(provider_get(f->db, &f->k, "id", p.id, &g, &e), 0);
	assert_int_equal(g.rpm_limit, 35);
	assert_int_equal(g.pool, POOL_FALLBACK);
	assert_string_equal(g.api_key, TESTKEY);
	provider_clear(&g);
	p.api_key = strdup("nvapi-TEST-0002-yyyyyyyyyyyyyyyyABCD");
	assert_int_equal(provider_update(f->db, &f->k, &p, &e), 0);
	assert_int_equal(provider_get(f->db, &f->k, "id", p.id, &g, &e), 0);
	assert_string_equal(g.api_key, "nvapi-TEST-0002-yyyyyyyyyyyyyyyyABCD");
	assert_string_equal(g.api_key_mask, "nvapi-TEST\xe2\x80\xa6" "ABCD");
	provider_clear(&g);

	assert_int_equal(provider_set_status(f->db, p.id, PSTATUS_DISABLED, "operator", &e), 0);
	assert_int_equal(provider_get(f->db, NULL, "id", p.id, &g, &e), 0);
	assert_int_equal(g.status, PSTATUS_DISABLED);
	assert_string_equal(g.status_reason, "operator");
	provider_clear(&g);

	sample(&dup, "account02");
	assert_int_equal(provider_insert(f->db, &f->k, &dup, &e), 0);
	assert_int_equal(provider_list(f->db, &f->k, &l, &e), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "account01");
	assert_string_equal(l.v[1].api_key, TESTKEY);
	provider_list_free(&l);

	/* A wrong key cannot read the keys. */
	{
		struct crypto_key other;

		crypto_key_from_base64(KEY_B, &other, NULL);
		assert_int_equal(provider_list(f->db, &other, &l, &e), -1);
		assert_int_equal(provider_get(f->db, &other, "id", p.id, &g, &e), -1);
	}

	assert_int_equal(provider_delete(f->db, dup.id, &e), 0);
	assert_int_equal(provider_delete(f->db, dup.id, &e), -1);
	assert_non_null(strstr(e.msg, "not found"));
	assert_int_equal(provider_set_status(f->db, dup.id, PSTATUS_ACTIVE, NULL, &e), -1);
	provider_clear(&dup);
	provider_clear(&p);
}

static void
test_rekey(void **state)
{
	struct testdb *f = *state;
	struct crypto_key nk;
	struct provider p;
	struct provider_list l;
	struct sc_err e;
	int n = 0;

	crypto_key_from_base64(KEY_B, &nk, NULL);
	for (int i = 0; i < 3; i++) {
		char name[16];

		snprintf(name, sizeof(name), "acct%d", i);
		sample(&p, name);
		assert_int_equal(provider_insert(f->db, &f->k, &p, &e), 0);
		provider_clear(&p);
	}
	assert_int_equal(provider_rekey_all(f->db, &f->k, &nk, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(provider_list(f->db, &f->k, &l, &e), -1);
	assert_int_equal(provider_list(f->db, &nk, &l, &e), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[2].api_key, TESTKEY);
	provider_list_free(&l);
}

/* A rekey by another process while this one holds the old key (issue 14):
 * writes that would encrypt with it fail with CRYPTO_STALE_FIELD inside the
 * transaction, reads say so too; crypto_key_sync adopts the new key only
 * from a source that holds it. */
static void
test_rekey_running(void **state)
{
	struct testdb *f = *state;
	struct crypto_key nk, held = f->k;
	struct provider p, got;
	struct sc_err e;
	char check[CRYPTO_CHECK_MAX], path[400], *stored;
	FILE *fp;
	int n = 0;

	assert_int_equal(crypto_check_db(f->db, &f->k, &e), 0);
	stored = db_meta_get(f->db, "key_check");
	snprintf(check, sizeof(check), "%s", stored);
	free(stored);
	assert_int_equal(crypto_key_sync(f->db, &held, check, NULL, 0), CRYPTO_SYNC_CURRENT);
	sample(&p, "before");
	assert_int_equal(provider_insert(f->db, &f->k, &p, &e), 0);
	provider_clear(&p);
	/* "sidecarctl rekey" in another process. */
	crypto_key_from_base64(KEY_B, &nk, NULL);
	assert_int_equal(db_exec(f->db, "BEGIN IMMEDIATE", &e), 0);
	assert_int_equal(provider_rekey_all(f->db, &f->k, &nk, &n, &e), 0);
	assert_int_equal(crypto_check_store(f->db, &nk, &e), 0);
	assert_int_equal(db_exec(f->db, "COMMIT", &e), 0);
	/* The old key can no longer write or read keys, and says why. */
	sample(&p, "after");
	sc_err_clear(&e);
	assert_int_equal(provider_insert(f->db, &held, &p, &e), -1);
	assert_string_equal(e.field, CRYPTO_STALE_FIELD);
	assert_non_null(strstr(e.msg, "sidecarctl rekey"));
	provider_clear(&p);
	assert_int_equal(provider_get(f->db, &held, "name", "before", &got, &e), -1);
	assert_string_equal(e.field, CRYPTO_STALE_FIELD);
	assert_int_equal(provider_rekey_all(f->db, &held, &nk, &n, &e), -1);
	assert_string_equal(e.field, CRYPTO_STALE_FIELD);
	/* No source with the new key: stale, and the check value is kept so
	 * the next call tries again. */
	assert_int_equal(crypto_key_sync(f->db, &held, check, NULL, 0), CRYPTO_SYNC_STALE);
	unsetenv("SIDECAR_ENCRYPTION_KEY");
	unsetenv("SIDECAR_ENCRYPTION_KEY_FILE");
	snprintf(path, sizeof(path), "%s/key", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(TESTDB_KEY_A "\n", fp);	/* still the old key */
	fclose(fp);
	assert_int_equal(crypto_key_sync(f->db, &held, check, path, 1), CRYPTO_SYNC_STALE);
	fp = fopen(path, "w");
	fputs(KEY_B "\n", fp);		/* the operator installs the new one */
	fclose(fp);
	assert_int_equal(crypto_key_sync(f->db, &held, check, path, 1), CRYPTO_SYNC_RELOADED);
	assert_memory_equal(held.k, nk.k, CRYPTO_KEY_LEN);
	assert_int_equal(crypto_key_sync(f->db, &held, check, path, 1), CRYPTO_SYNC_CURRENT);
	sample(&p, "after");
	assert_int_equal(provider_insert(f->db, &held, &p, &e), 0);
	provider_clear(&p);
	assert_int_equal(provider_get(f->db, &nk, "name", "before", &got, &e), 0);
	assert_string_equal(got.api_key, TESTKEY);
	provider_clear(&got);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_validate_utf8),
		cmocka_unit_test(test_enums_compat),
		cmocka_unit_test(test_model_rpm_limits),
		cmocka_unit_test(test_mask),
		cmocka_unit_test_setup_teardown(test_storage, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_rekey, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_rekey_running, testdb_setup, testdb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
