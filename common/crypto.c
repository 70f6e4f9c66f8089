/*
 * Secrets. Provider keys are stored as AES-256-GCM ciphertext (OpenSSL EVP),
 * "v1:" + base64(iv[12] | ciphertext | tag[16]) with the provider id as
 * associated data. The 32-byte key comes from the environment or a key file;
 * meta('key_check') holds the encryption of a fixed text under the key, so a
 * program started with another key stops with a clear message instead of
 * failing on every request. Bearer tokens are random, stored as SHA-256 hex
 * and compared in constant time. Every buffer that held a plaintext secret is
 * wiped with OPENSSL_cleanse before it is freed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "db.h"

#define CRYPTO_IV_LEN       12
#define CRYPTO_TAG_LEN      16
#define CRYPTO_PREFIX       "v1:"
#define CRYPTO_STORED_MAX   16384	/* longest stored form accepted */
#define CRYPTO_KEYFILE_MAX  4096	/* longest key file read */
#define CRYPTO_CHECK_TEXT   "sidecar-v2 key check"
#define CRYPTO_CHECK_AAD    "key-check"

static const char crypto_wrong_key[] =
    "encryption key does not match this database "
    "(check SIDECAR_ENCRYPTION_KEY / SIDECAR_ENCRYPTION_KEY_FILE)";

/* Base64 of n bytes, NUL-terminated, malloc'd. */
static char *
crypto_b64_encode(const unsigned char *in, size_t n)
{
	char *out = sc_xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* Strict base64 decode of in[0..len) (no whitespace inside) into out[cap].
 * Returns the decoded length, or -1 on bad input or when it does not fit. */
static long
crypto_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	unsigned char *tmp;
	size_t pad = 0, i;
	int n;

	if (len == 0 || len % 4 != 0 || len > 4 * (size_t)(CRYPTO_STORED_MAX / 3 + 1))
		return -1;
	while (pad < 2 && in[len - 1 - pad] == '=')
		pad++;
	for (i = 0; i < len - pad; i++)
		if (!isalnum((unsigned char)in[i]) && in[i] != '+' && in[i] != '/')
			return -1;
	if (len / 4 * 3 - pad > cap)
		return -1;
	tmp = sc_xmalloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n < pad) {
		OPENSSL_cleanse(tmp, len / 4 * 3 + 1);
		free(tmp);
		return -1;
	}
	n -= (int)pad;
	memcpy(out, tmp, (size_t)n);
	OPENSSL_cleanse(tmp, len / 4 * 3 + 1);
	free(tmp);
	return n;
}

int
crypto_key_from_base64(const char *b64, struct crypto_key *out, struct sc_err *e)
{
	unsigned char buf[CRYPTO_KEY_LEN + 3];
	const char *s, *end;
	long n;

	if (b64 == NULL)
		return sc_err_set(e, NULL, 0, "no encryption key");
	s = b64;
	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	n = crypto_b64_decode(s, (size_t)(end - s), buf, sizeof(buf));
	if (n != CRYPTO_KEY_LEN) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return sc_err_set(e, NULL, 0, "encryption key must be base64 of exactly %d bytes", CRYPTO_KEY_LEN);
	}
	memcpy(out->k, buf, CRYPTO_KEY_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

int
crypto_key_load_file(const char *path, struct crypto_key *out, struct sc_err *e)
{
	char buf[CRYPTO_KEYFILE_MAX + 1];
	ssize_t r;
	size_t len = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return sc_err_set(e, NULL, 0, "key file %s: %s", path, strerror(errno));
	for (;;) {
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(buf) - 1)
			break;
	}
	close(fd);
	if (r < 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return sc_err_set(e, NULL, 0, "key file %s: %s", path, strerror(errno));
	}
	buf[len] = '\0';
	ret = crypto_key_from_base64(buf, out, NULL);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (ret == -1)
		return sc_err_set(e, NULL, 0, "key file %s: must hold base64 of exactly %d bytes",
		    path, CRYPTO_KEY_LEN);
	return 0;
}

int
crypto_key_load(const char *key_file, struct crypto_key *out, struct sc_err *e)
{
	const char *env = getenv("SIDECAR_ENCRYPTION_KEY");

	if (env != NULL && *env != '\0') {
		if (crypto_key_from_base64(env, out, NULL) == -1)
			return sc_err_set(e, NULL, 0,
			    "SIDECAR_ENCRYPTION_KEY: must be base64 of exactly %d bytes", CRYPTO_KEY_LEN);
		return 0;
	}
	env = getenv("SIDECAR_ENCRYPTION_KEY_FILE");
	if (env != NULL && *env != '\0')
		return crypto_key_load_file(env, out, e);
	if (key_file != NULL && *key_file != '\0')
		return crypto_key_load_file(key_file, out, e);
	return sc_err_set(e, NULL, 0,
	    "no encryption key: set SIDECAR_ENCRYPTION_KEY (base64 of 32 bytes) or SIDECAR_ENCRYPTION_KEY_FILE");
}

char *
crypto_key_generate_base64(void)
{
	unsigned char k[CRYPTO_KEY_LEN];
	char *s;

	crypto_random(k, sizeof(k));
	s = crypto_b64_encode(k, sizeof(k));
	OPENSSL_cleanse(k, sizeof(k));
	return s;
}

void
crypto_key_wipe(struct crypto_key *k)
{
	if (k != NULL)
		OPENSSL_cleanse(k->k, sizeof(k->k));
}

char *
crypto_encrypt(const struct crypto_key *k, const char *aad, const char *plain, size_t len)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	size_t blen = CRYPTO_IV_LEN + len + CRYPTO_TAG_LEN;
	char *b64 = NULL, *out = NULL;
	int n, fin;

	if (len > CRYPTO_STORED_MAX / 2)
		return NULL;
	buf = sc_xmalloc(blen);
	crypto_random(buf, CRYPTO_IV_LEN);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto fail;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_IV_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(ctx, NULL, NULL, k->k, buf) != 1)
		goto fail;
	if (aad != NULL && *aad != '\0' &&
	    EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1)
		goto fail;
	n = 0;
	if (len > 0 && EVP_EncryptUpdate(ctx, buf + CRYPTO_IV_LEN, &n,
	    (const unsigned char *)plain, (int)len) != 1)
		goto fail;
	if (EVP_EncryptFinal_ex(ctx, buf + CRYPTO_IV_LEN + n, &fin) != 1)
		goto fail;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN,
	    buf + CRYPTO_IV_LEN + len) != 1)
		goto fail;
	b64 = crypto_b64_encode(buf, blen);
	out = sc_xmalloc(strlen(CRYPTO_PREFIX) + strlen(b64) + 1);
	strcpy(out, CRYPTO_PREFIX);
	strcat(out, b64);
fail:
	free(b64);
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(buf, blen);
	free(buf);
	return out;
}

int
crypto_decrypt(const struct crypto_key *k, const char *aad, const char *stored,
    char **plain, size_t *len, struct sc_err *e)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	size_t slen, cap = 0;
	char *out = NULL;
	long blen;
	int n = 0, fin = 0, ret = -1;
	size_t clen;

	*plain = NULL;
	if (len != NULL)
		*len = 0;
	if (stored == NULL || strncmp(stored, CRYPTO_PREFIX, strlen(CRYPTO_PREFIX)) != 0)
		return sc_err_set(e, NULL, 0, "stored key has an unknown format");
	stored += strlen(CRYPTO_PREFIX);
	slen = strlen(stored);
	if (slen > CRYPTO_STORED_MAX)
		return sc_err_set(e, NULL, 0, "stored key is too long");
	cap = slen / 4 * 3 + 3;
	buf = sc_xmalloc(cap);
	blen = crypto_b64_decode(stored, slen, buf, cap);
	if (blen < CRYPTO_IV_LEN + CRYPTO_TAG_LEN) {
		sc_err_set(e, NULL, 0, "stored key is malformed");
		goto fail;
	}
	clen = (size_t)blen - CRYPTO_IV_LEN - CRYPTO_TAG_LEN;
	out = sc_xmalloc(clen + 1);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_IV_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(ctx, NULL, NULL, k->k, buf) != 1)
		goto bad;
	if (aad != NULL && *aad != '\0' &&
	    EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1)
		goto bad;
	n = 0;
	if (clen > 0 && EVP_DecryptUpdate(ctx, (unsigned char *)out, &n,
	    buf + CRYPTO_IV_LEN, (int)clen) != 1)
		goto bad;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN,
	    buf + CRYPTO_IV_LEN + clen) != 1)
		goto bad;
	/* The tag is checked here: a wrong key, aad or any changed byte fails. */
	if (EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1)
		goto bad;
	out[clen] = '\0';
	*plain = out;
	out = NULL;
	if (len != NULL)
		*len = clen;
	ret = 0;
	goto fail;
bad:
	sc_err_set(e, NULL, 0, "decryption failed (wrong key, wrong provider id or tampered data)");
fail:
	if (out != NULL) {
		OPENSSL_cleanse(out, clen + 1);
		free(out);
	}
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(buf, cap);
	free(buf);
	return ret;
}

char *
crypto_check_make(const struct crypto_key *k)
{
	return crypto_encrypt(k, CRYPTO_CHECK_AAD, CRYPTO_CHECK_TEXT, strlen(CRYPTO_CHECK_TEXT));
}

int
crypto_check_verify(const struct crypto_key *k, const char *stored, struct sc_err *e)
{
	char *plain = NULL;
	size_t len = 0;
	int ok;

	if (crypto_decrypt(k, CRYPTO_CHECK_AAD, stored, &plain, &len, NULL) == -1)
		return sc_err_set(e, NULL, 0, "%s", crypto_wrong_key);
	ok = len == strlen(CRYPTO_CHECK_TEXT) && memcmp(plain, CRYPTO_CHECK_TEXT, len) == 0;
	crypto_free_secret(plain);
	if (!ok)
		return sc_err_set(e, NULL, 0, "%s", crypto_wrong_key);
	return 0;
}

/* With no check value yet, a database that already holds keys (written
 * before the check existed, or the row was lost) is tested on one of them. */
static int
crypto_check_first_provider(sqlite3 *db, const struct crypto_key *k, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char *plain = NULL;
	int rc, ret = 0;

	rc = sqlite3_prepare_v2(db, "SELECT id, api_key FROM providers LIMIT 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "key check");
	if (sqlite3_step(st) == SQLITE_ROW) {
		if (crypto_decrypt(k, (const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 1), &plain, NULL, NULL) == -1)
			ret = sc_err_set(e, NULL, 0, "%s", crypto_wrong_key);
		crypto_free_secret(plain);
	}
	sqlite3_finalize(st);
	return ret;
}

int
crypto_check_db(sqlite3 *db, const struct crypto_key *k, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char *stored, *fresh;
	int rc, ret;

	stored = db_meta_get(db, "key_check");
	if (stored == NULL) {
		if (crypto_check_first_provider(db, k, e) == -1)
			return -1;
		fresh = crypto_check_make(k);
		if (fresh == NULL)
			return sc_err_set(e, NULL, 0, "cannot compute the key check value");
		/* Two programs starting at once: the first value stored wins,
		 * and both then verify against it. */
		rc = sqlite3_prepare_v2(db,
		    "INSERT INTO meta (key, value) VALUES ('key_check', ?1) ON CONFLICT (key) DO NOTHING",
		    -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(st, 1, fresh, -1, SQLITE_STATIC);
			rc = sqlite3_step(st);
			sqlite3_finalize(st);
		}
		free(fresh);
		if (rc != SQLITE_DONE && rc != SQLITE_OK)
			return db_set_err(db, rc, e, "storing the key check value");
		stored = db_meta_get(db, "key_check");
		if (stored == NULL)
			return sc_err_set(e, NULL, 0, "key check value missing after storing it");
	}
	ret = crypto_check_verify(k, stored, e);
	free(stored);
	return ret;
}

int
crypto_check_store(sqlite3 *db, const struct crypto_key *k, struct sc_err *e)
{
	char *fresh = crypto_check_make(k);
	int ret;

	if (fresh == NULL)
		return sc_err_set(e, NULL, 0, "cannot compute the key check value");
	ret = db_meta_set(db, "key_check", fresh, e);
	free(fresh);
	return ret;
}

static const char crypto_stale_key[] =
    "the encryption key was changed (sidecarctl rekey) and this program still holds the old one: "
    "put the new key where the program reads it (SIDECAR_ENCRYPTION_KEY_FILE; it is re-read) "
    "or restart the program with it";

int
crypto_check_current(sqlite3 *db, const struct crypto_key *k, struct sc_err *e)
{
	char *stored = db_meta_get(db, "key_check");
	int ret = 0;

	if (stored != NULL && crypto_check_verify(k, stored, NULL) == -1)
		ret = sc_err_set(e, CRYPTO_STALE_FIELD, 0, "%s", crypto_stale_key);
	free(stored);
	return ret;
}

int
crypto_key_sync(sqlite3 *db, struct crypto_key *k, char check[CRYPTO_CHECK_MAX], const char *key_file,
    int reload)
{
	struct crypto_key fresh;
	char *stored;
	int ret = CRYPTO_SYNC_STALE;

	stored = db_meta_get(db, "key_check");
	/* None stored, or unreadable now (busy): nothing to compare with; the
	 * write path's crypto_check_current still guards every ciphertext. */
	if (stored == NULL)
		return CRYPTO_SYNC_CURRENT;
	if (strcmp(stored, check) == 0) {
		free(stored);
		return CRYPTO_SYNC_CURRENT;
	}
	if (crypto_check_verify(k, stored, NULL) == 0) {
		ret = CRYPTO_SYNC_CURRENT;	/* re-stored under the same key */
	} else if (reload && crypto_key_load(key_file, &fresh, NULL) == 0) {
		if (crypto_check_verify(&fresh, stored, NULL) == 0) {
			*k = fresh;
			ret = CRYPTO_SYNC_RELOADED;
		}
		crypto_key_wipe(&fresh);
	}
	/* A stale key keeps its old check value, so the next call tries again. */
	if (ret != CRYPTO_SYNC_STALE)
		snprintf(check, CRYPTO_CHECK_MAX, "%s", stored);
	free(stored);
	return ret;
}

void
crypto_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

void
crypto_free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
crypto_random(void *buf, size_t n)
{
	if (n > 0 && RAND_bytes(buf, (int)n) != 1) {
		fputs("no random source available\n", stderr);
		abort();
	}
}

char *
crypto_token_generate(const char *prefix)
{
	unsigned char raw[32];
	size_t plen = prefix ? strlen(prefix) : 0, i, j;
	char *b64, *out;

	crypto_random(raw, sizeof(raw));
	b64 = crypto_b64_encode(raw, sizeof(raw));	/* 44 characters, one '=' */
	OPENSSL_cleanse(raw, sizeof(raw));
	out = sc_xmalloc(plen + 44);
	if (plen > 0)
		memcpy(out, prefix, plen);
	for (i = 0, j = plen; b64[i] != '\0' && b64[i] != '='; i++, j++)
		out[j] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	out[j] = '\0';
	OPENSSL_cleanse(b64, strlen(b64));
	free(b64);
	return out;
}

void
crypto_token_hash(const char *token, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		fputs("SHA-256 unavailable\n", stderr);
		abort();
	}
	for (unsigned int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

int
crypto_ct_equal(const char *a, const char *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
