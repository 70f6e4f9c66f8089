/*
 * The provider record: one upstream API key with its endpoint, route prefix,
 * pool and limits. Validation, storage with encryption, and masking for
 * display. Plaintext keys live only in struct provider.api_key and are wiped
 * by provider_clear.
 */
#ifndef SC_PROVIDERS_H
#define SC_PROVIDERS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include "crypto.h"
#include "util.h"

enum provider_pool   { POOL_MAIN, POOL_FALLBACK };
enum provider_status { PSTATUS_ACTIVE, PSTATUS_DISABLED, PSTATUS_INVALID };

#define PROVIDER_MODEL_RPM_MAX 64	/* entries of metadata.model_rpm_limits */

/* One per-model window: requests for `model` (as the upstream knows it, the
 * route prefix stripped) may start at most `rpm` times per window. */
struct provider_model_rpm {
	char *model;		/* owned */
	int   rpm;		/* 1..100000 */
};

/* Request-shaping options from metadata (SPEC §5.6). */
struct provider_compat {
	bool max_tokens_field;	/* rename max_completion_tokens to max_tokens */
	bool flatten_content;	/* join text parts of list-valued content */
	bool stream_usage;	/* may ask upstream for usage in streams (default true) */
};

struct provider {
	char    id[37];			/* UUID; AEAD associated data */
	char   *name;			/* owned */
	char   *api_key;		/* owned plaintext, NULL when not decrypted; wiped on clear */
	char   *api_key_mask;		/* owned display form */
	char   *endpoint_url;		/* owned, no trailing slash */
	char   *model_prefix;		/* owned */
	enum provider_pool   pool;
	enum provider_status status;
	char   *status_reason;		/* owned, may be "" */
	char   *source;			/* owned: yaml | api | webui | cli */
	int     rpm_limit;		/* > 0 */
	int     tpm_limit;		/* 0 = none */
	double  weight;			/* > 0 */
	double  cost_per_1k;		/* >= 0 */
	int64_t cooldown_until;		/* Unix seconds, 0 = not cooling */
	int     consecutive_429;
	char   *metadata;		/* owned JSON object text */
	struct provider_compat compat;	/* parsed from metadata */
	struct provider_model_rpm *model_rpm;	/* owned: metadata.model_rpm_limits, sorted by model */
	size_t  n_model_rpm;
	char    created_at[SC_TS_LEN];
	char    updated_at[SC_TS_LEN];
};

struct provider_list {
	struct provider *v;	/* owned array */
	size_t n;
};

const char *provider_pool_name(enum provider_pool p);
int provider_pool_parse(const char *s, enum provider_pool *out);	/* 0 or -1 */
const char *provider_status_name(enum provider_status s);
int provider_status_parse(const char *s, enum provider_status *out);

/* Fill defaults (pool main, active, rpm 40, weight 1, compat.stream_usage). */
void provider_init(struct provider *p);
/* Free owned fields, wiping the plaintext key. */
void provider_clear(struct provider *p);
void provider_list_free(struct provider_list *l);

/* Check every field: name, key present, endpoint an http(s) URL (plain http only
 * for loopback hosts), prefix non-empty, limits in range, metadata a JSON object.
 * The key may be NULL only for a stored provider (p->id set: update keeps it).
 * 0, or -1 with e->field naming the first bad field and e->msg "field: reason". */
int provider_validate(const struct provider *p, struct sc_err *e);
/* Parse compat options (into p->compat) and model_rpm_limits ({"model": rpm,
 * ...}, each rpm 1..100000, at most PROVIDER_MODEL_RPM_MAX; into p->model_rpm)
 * out of p->metadata. */
int provider_parse_compat(struct provider *p, struct sc_err *e);

/* Display form of a key: a short known prefix such as "nvapi-", then at most
 * 4 leading and 4 trailing characters: "nvapi-WGop…aTDz". Short keys: "****". */
void provider_mask_key(const char *key, char *out, size_t outlen);

/* Storage. Keys are encrypted with k before they touch the database. These
 * run inside the caller's transaction (use db_write_txn). insert assigns p->id
 * when empty and fills api_key_mask. update rewrites every field, and the key
 * only when p->api_key is not NULL; it leaves the data plane's cooldown state
 * (cooldown_until, consecutive_429) alone. */
int provider_insert(sqlite3 *db, const struct crypto_key *k, struct provider *p, struct sc_err *e);
int provider_update(sqlite3 *db, const struct crypto_key *k, struct provider *p, struct sc_err *e);
int provider_delete(sqlite3 *db, const char *id, struct sc_err *e);	/* -1 + "not found" if none */
int provider_set_status(sqlite3 *db, const char *id, enum provider_status st, const char *reason, struct sc_err *e);

/* Read one by id or by name (which = "id" | "name"); with k the key is
 * decrypted, without it api_key stays NULL. 0, 1 when not found, -1 on error. */
int provider_get(sqlite3 *db, const struct crypto_key *k, const char *which, const char *value,
    struct provider *out, struct sc_err *e);
/* All providers ordered by name; with k decrypted. 0 or -1. */
int provider_list(sqlite3 *db, const struct crypto_key *k, struct provider_list *out, struct sc_err *e);

/* Re-encrypt every stored key from oldk to newk (inside the caller's write
 * transaction, together with crypto_check_store(newk)). *count = rows. 0 or -1. */
int provider_rekey_all(sqlite3 *db, const struct crypto_key *oldk, const struct crypto_key *newk,
    int *count, struct sc_err *e);

#endif
