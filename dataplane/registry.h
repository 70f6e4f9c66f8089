/*
 * The data plane's in-memory view of the database: providers (with their
 * decrypted keys), the settings snapshot, and client-token checks. Reloads
 * on SIGHUP and when another program changes the database (PRAGMA
 * data_version, meta.config_version; checked every second), keeping the
 * runtime state of providers that did not change.
 */
#ifndef SC_REGISTRY_H
#define SC_REGISTRY_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"	/* not the autoconf config.h */
#include "providers.h"
#include "tokens.h"
#include "util.h"

struct loop;
struct prov_rt;

/* One provider as the data plane serves it. Immutable once published, except
 * rt; shared by reference between the registry and the attempts that use it,
 * so a reload never frees what a request still reads. */
struct reg_provider {
	struct provider p;		/* owned; p.api_key is the plaintext key, wiped on free */
	unsigned        refs;		/* the registry's + one per holder */
	int             removed;	/* no longer in the registry */
	int             usable;		/* key decrypted and status active */
	uint64_t        generation;	/* the reload that (re)published it */
	struct prov_rt *rt;		/* runtime state (dispatch.h), set by the hooks; survives reloads */
	int64_t         resets;		/* last seen meta('cooldown_reset:<id>'): the operator's resets */
};

/* Hooks for whoever keeps per-provider runtime state (the dispatcher). */
struct registry_hooks {
	/* A provider appeared, or changed: old is the previous version (NULL when
	 * new); move runtime state from old to p when it should survive. */
	void (*publish)(struct reg_provider *p, struct reg_provider *old, void *arg);
	/* A provider left the registry (deleted or its row changed); free its state when refs allow. */
	void (*retire)(struct reg_provider *p, void *arg);
	/* The operator reset p's cooldown (the admin API bumped its reset counter). */
	void (*cooldown_reset)(struct reg_provider *p, void *arg);
	/* Called after each reload, settings included. */
	void (*reloaded)(void *arg);
	void *arg;
};

/* Open the database, check the encryption key, load everything. 0 or -1 with e. */
int  registry_open(const char *db_path, const char *key_file, struct sc_err *e);
void registry_close(void);
void registry_set_hooks(const struct registry_hooks *h);
/* Watch for database changes every second on l. */
void registry_watch(struct loop *l);
/* Reload now (SIGHUP). 0 or -1 (the old state stays). */
int  registry_reload(void);

sqlite3             *registry_db(void);
const struct config *registry_config(void);
size_t               registry_count(void);
struct reg_provider *registry_at(size_t i);

void reg_provider_ref(struct reg_provider *p);
void reg_provider_unref(struct reg_provider *p);

/* Persist runtime state (each its own short transaction; failures are logged).
 * until: Unix seconds (0 = not cooling, -1 = keep the stored end and only set
 * the count); seconds > 0 records a cooldown event. */
void registry_save_cooldown(const char *id, int64_t until, int count, int seconds, const char *summary);
void registry_save_invalid(const char *id, const char *reason);
void registry_save_health(const char *id, int unhealthy, int failures, int status, int64_t latency_ms,
    const char *error, int probe);
/* meta(key) = value, written now on the loop's own connection (not through
 * the writer thread): the caller relies on it being durable before it goes
 * on (the window store's write-ahead). It waits at most 50 ms for a busy
 * database (the loop must not stall); then the write is handed to the
 * writer thread and -1 returned (logged). */
int   registry_put_meta_now(const char *key, const char *value);
/* Drop the window records (meta 'windows:<id>') of deleted providers (on the writer thread). */
void  registry_prune_windows(void);
/* meta(key) (malloc'd), or NULL. */
char *registry_get_meta(const char *key);
/* Health as persisted (for a restart). 0 or -1. */
int  registry_load_health(const char *id, int *unhealthy, int *failures);

/* Client tokens: how many exist (0 = open access), and checking one (1 ok,
 * 0 no, -1 error; on 1 label receives the token's label for the request log). */
int registry_client_tokens(void);
int registry_check_token(const char *token, char label[TOKENS_LABEL_MAX + 1]);

#endif
