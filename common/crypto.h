/*
 * Secrets: AES-256-GCM for provider keys at rest, the key check value that
 * catches a wrong encryption key at startup, and hashing of bearer tokens.
 *
 * Stored form of an encrypted key: "v1:" + base64(iv[12] | ciphertext | tag[16]),
 * with the provider id as associated data, so a ciphertext moved to another
 * row does not decrypt.
 */
#ifndef SC_CRYPTO_H
#define SC_CRYPTO_H

#include <sqlite3.h>
#include <stddef.h>
#include "util.h"

#define CRYPTO_KEY_LEN 32

struct crypto_key {
	unsigned char k[CRYPTO_KEY_LEN];
};

/* Decode base64 of exactly 32 bytes (surrounding whitespace allowed). 0 or -1. */
int crypto_key_from_base64(const char *b64, struct crypto_key *out, struct sc_err *e);
/* Load from $SIDECAR_ENCRYPTION_KEY (base64), else the file named by
 * $SIDECAR_ENCRYPTION_KEY_FILE, else key_file (may be NULL). 0 or -1 with a
 * message that says which source was tried. */
int crypto_key_load(const char *key_file, struct crypto_key *out, struct sc_err *e);
int crypto_key_load_file(const char *path, struct crypto_key *out, struct sc_err *e);
/* New random key as base64 (malloc'd). */
char *crypto_key_generate_base64(void);
void  crypto_key_wipe(struct crypto_key *k);

/* Encrypt plaintext with aad; returns the malloc'd stored form, NULL on failure. */
char *crypto_encrypt(const struct crypto_key *k, const char *aad, const char *plain, size_t len);
/* Decrypt a stored form; *plain is malloc'd and NUL-terminated (free with
 * crypto_free_secret). Fails on tamper, wrong key, wrong aad, bad format. */
int crypto_decrypt(const struct crypto_key *k, const char *aad, const char *stored,
    char **plain, size_t *len, struct sc_err *e);

/* The check value in meta('key_check'): verify k against it, or store it when
 * the database has none yet. A wrong key fails with a clear message. */
int crypto_check_db(sqlite3 *db, const struct crypto_key *k, struct sc_err *e);
/* The check value for k (malloc'd), verifying one, and overwriting the stored
 * one (rekey; run inside the caller's write transaction). */
char *crypto_check_make(const struct crypto_key *k);
int crypto_check_verify(const struct crypto_key *k, const char *stored, struct sc_err *e);
int crypto_check_store(sqlite3 *db, const struct crypto_key *k, struct sc_err *e);

/* Rekey while the programs run (sidecarctl rekey replaces meta('key_check')
 * and every ciphertext in one transaction). Each program keeps the check
 * value its key matched (check[CRYPTO_CHECK_MAX]) and calls crypto_key_sync
 * before work that uses the key: when the stored value changed it verifies
 * *k against it and, failing that and with reload, loads the key again from
 * its source (crypto_key_load(key_file): the environment or the key file,
 * which the operator replaces with the new key) and adopts it if it matches.
 * CRYPTO_SYNC_CURRENT: *k is the database's key; CRYPTO_SYNC_RELOADED: it is
 * now (*k replaced); CRYPTO_SYNC_STALE: the database has another key and no
 * source holds it. */
#define CRYPTO_CHECK_MAX 128
enum { CRYPTO_SYNC_CURRENT, CRYPTO_SYNC_RELOADED, CRYPTO_SYNC_STALE };
int crypto_key_sync(sqlite3 *db, struct crypto_key *k, char check[CRYPTO_CHECK_MAX], const char *key_file,
    int reload);
/* Inside a write transaction, before encrypting with k: -1 with e->field
 * CRYPTO_STALE_FIELD when the database's check value no longer matches k (a
 * rekey committed since the program loaded it), so nothing is written that
 * the new key cannot read. 0 when it matches or no check value is stored. */
#define CRYPTO_STALE_FIELD "encryption_key"
int crypto_check_current(sqlite3 *db, const struct crypto_key *k, struct sc_err *e);

/* Wipe memory that held a secret (not optimised away). */
void crypto_wipe(void *p, size_t n);
void crypto_free_secret(char *s);	/* wipe strlen(s) bytes, then free */

/* Random bytes from the OS (OpenSSL RAND_bytes); aborts if none are available. */
void crypto_random(void *buf, size_t n);
/* A new bearer token, prefix + 43 base64url characters (malloc'd). */
char *crypto_token_generate(const char *prefix);
/* SHA-256 of the token as 64 lowercase hex characters + NUL. */
void crypto_token_hash(const char *token, char out[65]);
/* Constant-time comparison of two equal-length strings; 1 when equal. */
int crypto_ct_equal(const char *a, const char *b, size_t n);

#endif
