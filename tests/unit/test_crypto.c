/*
 * Unit tests for common/crypto.c: key loading from base64, environment and
 * files; AES-256-GCM round trip; tampering, a wrong key, wrong associated data
 * and malformed stored text all failing; the database key check; token
 * generation, hashing and constant-time comparison.
 */
#define _GNU_SOURCE
#include <fcntl.h>
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

/* base64 of 32 bytes 0x00..0x1f, and of 32 bytes 0x01. */
#define KEY_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_B "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define SECRET "nvapi-TEST-0001-xxxxxxxxxxxxxxxx"
#define AAD "6f1c2d3e-0000-4000-8000-000000000001"

static void
test_key_base64(void **state)
{
	struct crypto_key k;
	struct sc_err e;
	char *g;

	(void)state;
	assert_int_equal(crypto_key_from_base64(KEY_A, &k, &e), 0);
	for (int i = 0; i < 32; i++)
		assert_int_equal(k.k[i], i);
	assert_int_equal(crypto_key_from_base64("  \n" KEY_A "\n\n", &k, &e), 0);
	assert_int_equal(crypto_key_from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", &k, &e), -1);	/* 31 */
	assert_non_null(strstr(e.msg, "exactly 32 bytes"));
	assert_int_equal(crypto_key_from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", &k, &e), -1);	/* 34 */
	assert_int_equal(crypto_key_from_base64("AAECAwQFBgcICQoLDA0O*xAREhMUFRYXGBkaGxwdHh8=", &k, &e), -1);
	assert_int_equal(crypto_key_from_base64("", &k, &e), -1);
	assert_int_equal(crypto_key_from_base64("AAEC AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &k, &e), -1);
	g = crypto_key_generate_base64();
	assert_int_equal(strlen(g), 44);
	assert_int_equal(crypto_key_from_base64(g, &k, &e), 0);
	free(g);
	crypto_key_wipe(&k);
	for (int i = 0; i < 32; i++)
		assert_int_equal(k.k[i], 0);
}

static void
test_key_load(void **state)
{
	struct crypto_key k;
	struct sc_err e;
	char path[] = "/tmp/sc-test-key-XXXXXX";
	int fd;

	(void)state;
	unsetenv("SIDECAR_ENCRYPTION_KEY");
	unsetenv("SIDECAR_ENCRYPTION_KEY_FILE");
	assert_int_equal(crypto_key_load(NULL, &k, &e), -1);
	assert_string_equal(e.msg,
	    "no encryption key: set SIDECAR_ENCRYPTION_KEY (base64 of 32 bytes) or SIDECAR_ENCRYPTION_KEY_FILE");

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, KEY_B "\n", strlen(KEY_B) + 1), (ssize_t)strlen(KEY_B) + 1);
	close(fd);
	assert_int_equal(crypto_key_load(path, &k, &e), 0);
	assert_int_equal(k.k[0], 1);
	setenv("SIDECAR_ENCRYPTION_KEY_FILE", path, 1);
	assert_int_equal(crypto_key_load(NULL, &k, &e), 0);
	assert_int_equal(k.k[5], 1);
	/* The variable wins over the file. */
	setenv("SIDECAR_ENCRYPTION_KEY", KEY_A, 1);
	assert_int_equal(crypto_key_load(path, &k, &e), 0);
	assert_int_equal(k.k[5], 5);
	setenv("SIDECAR_ENCRYPTION_KEY", "short", 1);
	assert_int_equal(crypto_key_load(NULL, &k, &e), -1);
	assert_non_null(strstr(e.msg, "SIDECAR_ENCRYPTION_KEY"));
	unsetenv("SIDECAR_ENCRYPTION_KEY");
	unsetenv("SIDECAR_ENCRYPTION_KEY_FILE");

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage", 7), 7);
	close(fd);
	assert_int_equal(crypto_key_load_file(path, &k, &e), -1);
	assert_non_null(strstr(e.msg, "base64 of exactly 32 bytes"));
	unlink(path);
	assert_int_equal(crypto_key_load_file(path, &k, &e), -1);
	assert_non_null(strstr(e.msg, "No such file"));
}

static void
test_round_trip(void **state)
{
	struct crypto_key k;
	char *s1, *s2, *plain = NULL;
	size_t len = 0;
	struct sc_err e;

	(void)state;
	crypto_key_from_base64(KEY_A, &k, NULL);
	s1 = crypto_encrypt(&k, AAD, SECRET, strlen(SECRET));
	s2 = crypto_encrypt(&k, AAD, SECRET, strlen(SECRET));
	assert_non_null(s1);
	assert_non_null(s2);
	assert_memory_equal(s1, "v1:", 3);
	assert_null(strstr(s1, "TEST-0001"));
	assert_string_not_equal(s1, s2);	/* random IV */
	/* iv 12 + 32 + tag 16 = 60 bytes = 80 base64 characters. */
	assert_int_equal(strlen(s1), 3 + 80);
	assert_int_equal(crypto_decrypt(&k, AAD, s1, &plain, &len, &e), 0);
	assert_int_equal(len, strlen(SECRET));
	assert_string_equal(plain, SECRET);
	crypto_free_secret(plain);
	assert_int_equal(crypto_decrypt(&k, AAD, s2, &plain, NULL, &e), 0);
	assert_string_equal(plain, SECRET);
	crypto_free_secret(plain);
	/* Empty plaintext still authenticates. */
	free(s2);
	s2 = crypto_encrypt(&k, AAD, "", 0);
	assert_int_equal(crypto_decrypt(&k, AAD, s2, &plain, &len, &e), 0);
	assert_int_equal(len, 0);
	crypto_free_secret(plain);
	free(s1);
	free(s2);
}

static void
test_failures(void **state)
{
	struct crypto_key k, other;
	char *s, *t, *plain = (char *)"unchanged";
	struct sc_err e;
	size_t n;

	(void)state;
	crypto_key_from_base64(KEY_A, &k, NULL);
	crypto_key_from_base64(KEY_B, &other, NULL);
	s = crypto_encrypt(&k, AAD, SECRET, strlen(SECRET));
	n = strlen(s);

	/* Wrong key, wrong associated data (a ciphertext moved to another row). */
	assert_int_equal(crypto_decrypt(&other, AAD, s, &plain, NULL, &e), -1);
	assert_null(plain);
	assert_non_null(strstr(e.msg, "decryption failed"));
	assert_int_equal(crypto_decrypt(&k, "6f1c2d3e-0000-4000-8000-000000000002", s, &plain, NULL, &e), -1);
	assert_int_equal(crypto_decrypt(&k, "", s, &plain, NULL, &e), -1);

	/* Every single-character change anywhere in iv, ciphertext or tag. */
	t = strdup(s);
	for (size_t i = 3; i < n - 1; i++) {
		char c = t[i];

		t[i] = c == 'A' ? 'B' : 'A';
		assert_int_equal(crypto_decrypt(&k, AAD, t, &plain, NULL, &e), -1);
		t[i] = c;
	}
	/* Truncated, extended, wrong prefix, not base64, empty. */
	t[n - 4] = '\0';
	assert_int_equal(crypto_decrypt(&k, AAD, t, &plain, NULL, &e), -1);
	free(t);
	assert_int_equal(asprintf(&t, "%sAAAA", s), (int)n + 4);
	assert_int_equal(crypto_decrypt(&k, AAD, t, &plain, NULL, &e), -1);
	free(t);
	t = strdup(s);
	t[1] = '2';
	assert_int_equal(crypto_decrypt(&k, AAD, t, &plain, NULL, &e), -1);
	assert_non_null(strstr(e.msg, "unknown format"));
	free(t);
	assert_int_equal(crypto_decrypt(&k, AAD, "v1:!!!!", &plain, NULL, &e), -1);
	assert_int_equal(crypto_decrypt(&k, AAD, "v1:", &plain, NULL, &e), -1);
	assert_int_equal(crypto_decrypt(&k, AAD, "v1:AAAA", &plain, NULL, &e), -1);
	assert_int_equal(crypto_decrypt(&k, AAD, NULL, &plain, NULL, &e), -1);
	free(s);
}

static void
test_check_db(void **state)
{
	char dir[] = "/tmp/sc-test-crypto-XXXXXX", path[64], cmd[96];
	struct crypto_key k, other;
	struct sc_err e;
	sqlite3 *db;
	char *v1, *v2;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.db", dir);
	db = db_open(path, DB_OPEN_CREATE, &e);
	assert_non_null(db);
	assert_int_equal(db_migrate(db, &e), 0);
	crypto_key_from_base64(KEY_A, &k, NULL);
	crypto_key_from_base64(KEY_B, &other, NULL);

	assert_null(db_meta_get(db, "key_check"));
	assert_int_equal(crypto_check_db(db, &k, &e), 0);	/* stores it */
	v1 = db_meta_get(db, "key_check");
	assert_non_null(v1);
	assert_memory_equal(v1, "v1:", 3);
	assert_int_equal(crypto_check_db(db, &k, &e), 0);	/* verifies it */
	v2 = db_meta_get(db, "key_check");
	assert_string_equal(v1, v2);
	free(v2);
	assert_int_equal(crypto_check_db(db, &other, &e), -1);
	assert_string_equal(e.msg, "encryption key does not match this database "
	    "(check SIDECAR_ENCRYPTION_KEY / SIDECAR_ENCRYPTION_KEY_FILE)");
	v2 = db_meta_get(db, "key_check");
	assert_string_equal(v1, v2);	/* a wrong key changes nothing */
	free(v2);
	/* Overwriting (rekey) makes the other key the right one. */
	assert_int_equal(crypto_check_store(db, &other, &e), 0);
	assert_int_equal(crypto_check_db(db, &other, &e), 0);
	assert_int_equal(crypto_check_db(db, &k, &e), -1);
	free(v1);
	db_close(db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void
test_tokens(void **state)
{
	char *a, *b, h[65];

	(void)state;
	a = crypto_token_generate("sc_test_");
	b = crypto_token_generate("sc_test_");
	assert_int_equal(strlen(a), 8 + 43);
	assert_memory_equal(a, "sc_test_", 8);
	assert_string_not_equal(a, b);
	for (const char *p = a + 8; *p; p++)
		assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
	crypto_free_secret(a);
	crypto_free_secret(b);
	crypto_token_hash("abc", h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(crypto_ct_equal("abcdef", "abcdef", 6));
	assert_false(crypto_ct_equal("abcdef", "abcdeg", 6));
	assert_false(crypto_ct_equal("xbcdef", "abcdef", 6));
}

static void
test_wipe(void **state)
{
	char buf[16];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	crypto_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	crypto_wipe(NULL, 0);
	crypto_free_secret(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_base64),
		cmocka_unit_test(test_key_load),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_check_db),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_wipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
