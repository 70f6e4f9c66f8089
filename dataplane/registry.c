/*
 * The provider registry. A reload reads every provider row, decrypts the keys
 * of the active ones, and publishes a new array: a provider whose row did not
 * change keeps its object (and so its limiter windows, cooldown and health);
 * a changed row gets a new object whose runtime state the hooks may carry
 * over; a vanished row is marked removed and released. Objects are
 * refcounted because in-flight attempts keep using them across a reload.
 *
 * A rekey (sidecarctl rekey) changes meta('key_check'): each reload first
 * follows it (crypto_key_sync), re-reading the key source; while the source
 * does not hold the new key yet, providers keep the plaintext keys they had
 * (they still work upstream) and the source is looked at every second.
 *
 * Change detection costs one PRAGMA per second: data_version moves whenever
 * another connection commits, and only then is meta.config_version read to
 * decide whether providers and settings must be reloaded. Token checks are
 * cached (hashes of tokens that verified) until the next database change, so
 * a revoked token stops working within a second.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto.h"
#include "db.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "stats.h"
#include "tokens.h"

#define REG_WATCH_MS    1000
#define REG_TOKEN_CACHE 64

static struct {
	sqlite3              *db;
	struct crypto_key     key;		/* wiped on close; replaced when a rekey is followed */
	char                  key_check[CRYPTO_CHECK_MAX];	/* the check value key matches */
	char                 *key_file;		/* owned: --key-file, NULL for the environment */
	int                   key_stale;	/* the database has another key and no source holds it */
	struct config         cfg;
	struct reg_provider **v;		/* owned array of refs */
	size_t                n;
	uint64_t              generation;
	int64_t               data_version;
	int64_t               config_version;
	int                   client_tokens;	/* unrevoked client tokens, -1 unknown */
	char                  tok_cache[REG_TOKEN_CACHE][65];	/* hashes of verified tokens */
	char                  tok_label[REG_TOKEN_CACHE][TOKENS_LABEL_MAX + 1];	/* their labels */
	size_t                ntok;
	struct registry_hooks hooks;
	struct loop          *loop;
	struct loop_timer     watch;
	char                 *path;		/* owned: the database file */
	dev_t                 dev;		/* its identity when opened */
	ino_t                 ino;
	int                   file_state;	/* 0 in place, 1 deleted, 2 replaced (logged once each) */
} reg;

sqlite3 *
registry_db(void)
{
	return reg.db;
}

const struct config *
registry_config(void)
{
	return &reg.cfg;
}

size_t
registry_count(void)
{
	return reg.n;
}

struct reg_provider *
registry_at(size_t i)
{
	return i < reg.n ? reg.v[i] : NULL;
}

void
registry_set_hooks(const struct registry_hooks *h)
{
	reg.hooks = *h;
}

void
reg_provider_ref(struct reg_provider *p)
{
	p->refs++;
}

void
reg_provider_unref(struct reg_provider *p)
{
	if (p == NULL || --p->refs > 0)
		return;
	provider_clear(&p->p);	/* wipes the plaintext key */
	free(p);
}

static int64_t
registry_data_version(void)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	if (sqlite3_prepare_v2(reg.db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int
registry_streq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Same row as far as serving is concerned (runtime columns excluded)? */
static int
registry_same(const struct provider *a, const struct provider *b)
{
	return registry_streq(a->name, b->name) && registry_streq(a->api_key, b->api_key) &&
	    registry_streq(a->endpoint_url, b->endpoint_url) &&
	    registry_streq(a->model_prefix, b->model_prefix) && a->pool == b->pool &&
	    a->status == b->status && a->rpm_limit == b->rpm_limit && a->tpm_limit == b->tpm_limit &&
	    a->weight == b->weight && a->cost_per_1k == b->cost_per_1k &&
	    registry_streq(a->metadata, b->metadata);
}

/* The current object for an id, or NULL (reloads only). */
static struct reg_provider *
registry_find(const char *id)
{
	size_t i;

	for (i = 0; i < reg.n; i++)
		if (strcmp(reg.v[i]->p.id, id) == 0)
			return reg.v[i];
	return NULL;
}

/* Cooldown resets by the operator: the admin API bumps meta('cooldown_reset:<id>')
 * rather than relying on cooldown_until alone, because the data plane's own
 * cooldown writes are queued and a reload may read the row before they land.
 * A counter that moved since the last load clears the runtime cooldown; on the
 * first load the counters are only recorded. */
static void
registry_apply_resets(struct reg_provider **v, size_t n, int notify)
{
	sqlite3_stmt *st;
	size_t i;

	if (sqlite3_prepare_v2(reg.db, "SELECT substr(key, 16), CAST(value AS INTEGER) FROM meta "
	    "WHERE key >= 'cooldown_reset:' AND key < 'cooldown_reset;'", -1, &st, NULL) != SQLITE_OK) {
		log_warn("reading cooldown resets: %s", sqlite3_errmsg(reg.db));
		return;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		int64_t count = sqlite3_column_int64(st, 1);

		for (i = 0; id != NULL && i < n; i++) {
			if (strcmp(v[i]->p.id, id) != 0 || v[i]->resets == count)
				continue;
			v[i]->resets = count;
			if (notify && reg.hooks.cooldown_reset != NULL)
				reg.hooks.cooldown_reset(v[i], reg.hooks.arg);
		}
	}
	sqlite3_finalize(st);
}

/* Follow a rekey (crypto_key_sync): reload the key from its source when
 * the database's check value changed; say once per change what came of it. */
static void
registry_key_sync(void)
{
	int r = crypto_key_sync(reg.db, &reg.key, reg.key_check, reg.key_file, 1);

	if (r == CRYPTO_SYNC_RELOADED)
		log_info("encryption key reloaded: the database was rekeyed and the key source holds the new key");
	else if (r == CRYPTO_SYNC_STALE && !reg.key_stale)
		log_error("the database was rekeyed and the data plane has the old encryption key: providers keep "
		    "the keys they had; put the new key where the data plane reads it (it is re-read on every "
		    "change) or restart it, so that new or changed keys can be used");
	reg.key_stale = r == CRYPTO_SYNC_STALE;
}

/* Read providers and settings; publish the new set. */
static int
registry_load(struct sc_err *e)
{
	struct provider_list l = { NULL, 0 };
	struct reg_provider **nv = NULL, *old;
	struct config cfg;
	size_t i, j, nn = 0;
	int tc;

	config_defaults(&cfg);
	if (config_load(reg.db, &cfg, e) == -1)
		return -1;
	registry_key_sync();
	if (provider_list(reg.db, NULL, &l, e) == -1)
		return -1;
	reg.cfg = cfg;	/* before the hooks run: they read the settings */
	nv = sc_xcalloc(l.n + 1, sizeof(*nv));
	reg.generation++;
	for (i = 0; i < l.n; i++) {
		struct reg_provider *rp = sc_xcalloc(1, sizeof(*rp));
		struct sc_err de;

		sc_err_clear(&de);
		rp->refs = 1;
		rp->generation = reg.generation;
		if (l.v[i].status == PSTATUS_ACTIVE) {
			if (provider_get(reg.db, &reg.key, "id", l.v[i].id, &rp->p, &de) == 0) {
				rp->usable = rp->p.api_key != NULL;
			} else {
				rp->p = l.v[i];
				memset(&l.v[i], 0, sizeof(l.v[i]));
				old = registry_find(rp->p.id);
				if (reg.key_stale && old != NULL && old->p.api_key != NULL) {
					/* Rekeyed under us: the key this provider had still
					 * works upstream, so a rekey never takes it away. */
					rp->p.api_key = sc_xstrdup(old->p.api_key);
					rp->usable = 1;
					log_warn("provider %s: keeps the key loaded before the rekey (its new "
					    "ciphertext needs the new encryption key)", rp->p.name);
				} else
					log_warn("provider %s: not loaded: %s", rp->p.name, de.msg);
			}
		} else {
			rp->p = l.v[i];
			memset(&l.v[i], 0, sizeof(l.v[i]));
		}
		old = registry_find(rp->p.id);
		if (old != NULL && registry_same(&old->p, &rp->p)) {
			/* Unchanged: keep the old object with its runtime state. */
			reg_provider_unref(rp);
			rp = old;
			rp->refs++;
			rp->generation = reg.generation;
		} else {
			if (old != NULL)
				rp->resets = old->resets;
			if (reg.hooks.publish != NULL)
				reg.hooks.publish(rp, old, reg.hooks.arg);
		}
		nv[nn++] = rp;
	}
	provider_list_free(&l);
	registry_apply_resets(nv, nn, reg.v != NULL);
	/* Release the previous set: retire those not carried over. */
	for (i = 0; i < reg.n; i++) {
		old = reg.v[i];
		for (j = 0; j < nn; j++)
			if (nv[j] == old)
				break;
		if (j == nn) {
			old->removed = 1;
			if (reg.hooks.retire != NULL)
				reg.hooks.retire(old, reg.hooks.arg);
		}
		reg_provider_unref(old);
	}
	free(reg.v);
	reg.v = nv;
	reg.n = nn;
	reg.config_version = db_config_version(reg.db);
	tc = tokens_count(reg.db, TOKEN_CLIENT);
	reg.client_tokens = tc;
	reg.ntok = 0;
	if (reg.hooks.reloaded != NULL)
		reg.hooks.reloaded(reg.hooks.arg);
	return 0;
}

int
registry_reload(void)
{
	struct sc_err e;
	size_t i, usable = 0;

	sc_err_clear(&e);
	if (registry_load(&e) == -1) {
		log_error("reload failed, keeping the previous providers: %s", e.msg);
		return -1;
	}
	for (i = 0; i < reg.n; i++)
		usable += reg.v[i]->usable;
	log_info("providers loaded: %zu (%zu active with keys), config version %lld",
	    reg.n, usable, (long long)reg.config_version);
	return 0;
}

/* The database file deleted or replaced underneath us (a restore without
 * the lock, an operator's mv): SQLite keeps using the old inode and nothing
 * else would notice, so say so, once per change. */
static void
registry_check_file(void)
{
	struct stat st;
	int state;

	if (reg.path == NULL)
		return;
	if (stat(reg.path, &st) == -1)
		state = 1;
	else
		state = st.st_dev != reg.dev || st.st_ino != reg.ino ? 2 : 0;
	if (state == reg.file_state)
		return;
	if (state == 1)
		log_error("database file %s was deleted underneath the data plane: changes go to the removed "
		    "file and are lost; restore it and restart the data plane", reg.path);
	else if (state == 2)
		log_error("database file %s was replaced underneath the data plane: it still uses the old file; "
		    "restart the data plane to use the new one", reg.path);
	else
		log_info("database file %s is back in place", reg.path);
	reg.file_state = state;
}

/* Every second: did another program commit? Then maybe reload. */
static void
registry_watch_fire(struct loop *l, void *arg)
{
	int64_t dv = registry_data_version();

	registry_check_file();
	if (reg.key_stale) {
		/* Rekeyed and the new key not found yet: look again, and use it
		 * for every ciphertext as soon as it is there. */
		registry_key_sync();
		if (!reg.key_stale)
			registry_reload();
	}
	if (dv != -1 && dv != reg.data_version) {
		reg.data_version = dv;
		reg.ntok = 0;	/* tokens may have been revoked */
		reg.client_tokens = tokens_count(reg.db, TOKEN_CLIENT);
		if (db_config_version(reg.db) != reg.config_version)
			registry_reload();
	}
	loop_timer_arm_in(l, &reg.watch, REG_WATCH_MS);
}

void
registry_watch(struct loop *l)
{
	reg.loop = l;
	loop_timer_init(&reg.watch, registry_watch_fire, NULL);
	loop_timer_arm_in(l, &reg.watch, REG_WATCH_MS);
}

int
registry_open(const char *db_path, const char *key_file, struct sc_err *e)
{
	const char *path = db_default_path(db_path);
	struct stat st;

	reg.db = db_open(path, 0, e);
	if (reg.db == NULL)
		return -1;
	free(reg.path);
	reg.path = sc_xstrdup(path);
	if (stat(path, &st) == 0) {
		reg.dev = st.st_dev;
		reg.ino = st.st_ino;
	}
	if (db_schema_version(reg.db) < 1) {
		sc_err_set(e, "db", 0, "%s has no schema: run `sidecarctl --db %s init` first", path, path);
		goto fail;
	}
	if (db_schema_version(reg.db) < db_latest_version()) {
		sc_err_set(e, "db", 0, "%s has schema version %d, this build needs %d: run `sidecarctl --db %s migrate`",
		    path, db_schema_version(reg.db), db_latest_version(), path);
		goto fail;
	}
	if (db_schema_version(reg.db) > db_latest_version()) {
		sc_err_set(e, "db", 0, "%s has schema version %d, newer than this build knows (%d): upgrade sidecar-dataplane",
		    path, db_schema_version(reg.db), db_latest_version());
		goto fail;
	}
	if (crypto_key_load(key_file, &reg.key, e) == -1)
		goto fail;
	if (crypto_check_db(reg.db, &reg.key, e) == -1)
		goto fail;
	free(reg.key_file);
	reg.key_file = key_file != NULL ? sc_xstrdup(key_file) : NULL;
	{
		char *stored = db_meta_get(reg.db, "key_check");

		snprintf(reg.key_check, sizeof(reg.key_check), "%s", stored != NULL ? stored : "");
		free(stored);
	}
	reg.data_version = registry_data_version();
	if (registry_load(e) == -1)
		goto fail;
	return 0;
fail:
	registry_close();
	return -1;
}

void
registry_close(void)
{
	size_t i;

	if (reg.loop != NULL)
		loop_timer_cancel(reg.loop, &reg.watch);
	for (i = 0; i < reg.n; i++) {
		reg.v[i]->removed = 1;
		if (reg.hooks.retire != NULL)
			reg.hooks.retire(reg.v[i], reg.hooks.arg);
		reg_provider_unref(reg.v[i]);
	}
	free(reg.v);
	reg.v = NULL;
	reg.n = 0;
	crypto_key_wipe(&reg.key);
	crypto_wipe(reg.tok_cache, sizeof(reg.tok_cache));
	free(reg.key_file);
	reg.key_file = NULL;
	reg.key_stale = 0;
	if (reg.db != NULL) {
		db_close(reg.db);
		reg.db = NULL;
	}
	free(reg.path);
	reg.path = NULL;
}

int
registry_client_tokens(void)
{
	return reg.client_tokens;
}

int
registry_check_token(const char *token, char label[TOKENS_LABEL_MAX + 1])
{
	char h[65], id[37];
	size_t i;
	int r;

	crypto_token_hash(token, h);
	for (i = 0; i < reg.ntok; i++)
		if (crypto_ct_equal(reg.tok_cache[i], h, 64)) {
			memcpy(label, reg.tok_label[i], TOKENS_LABEL_MAX + 1);
			return 1;
		}
	r = tokens_verify(reg.db, TOKEN_CLIENT, token, id);
	label[0] = '\0';
	if (r == 1) {
		if (tokens_label(reg.db, id, label, TOKENS_LABEL_MAX + 1) == -1)
			label[0] = '\0';	/* the request log shows no label; the token still counts */
		if (reg.ntok == REG_TOKEN_CACHE)
			reg.ntok = 0;
		memcpy(reg.tok_label[reg.ntok], label, TOKENS_LABEL_MAX + 1);
		memcpy(reg.tok_cache[reg.ntok++], h, 65);
	}
	return r;
}

/* The persistence of runtime state. Each is one short BEGIN IMMEDIATE
 * transaction, run on the data plane's database writer thread (stats.h:
 * stats_submit) in the order of the calls; a failure is logged and the
 * in-memory state stays right. */
struct reg_cd_args {
	char    *id;		/* owned */
	int64_t  until;		/* Unix seconds, 0 = not cooling, -1 = keep the stored end */
	int      count;
	int      seconds;	/* > 0: a cooldown began, record an event */
	char    *summary;	/* owned */
};

/* The provider's cooldown events still running end at end: a new cooldown
 * replaces them (end = now), an extension moves the current one's planned
 * end (end = the new end), a cleared cooldown ends them now. So at most one
 * event per provider is ever active (ended_at in the future). */
static int
registry_cd_end_events(sqlite3 *db, const char *id, const char *end, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char now[SC_TS_LEN];
	int rc;

	sc_ts_format(sc_wall_ms() / 1000, now);
	rc = sqlite3_prepare_v2(db, "UPDATE cooldown_events SET ended_at = ?2 WHERE provider_id = ?1 "
	    "AND (ended_at IS NULL OR ended_at > ?3)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "ending cooldown events");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, end, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "ending cooldown events");
}

static int
registry_cd_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct reg_cd_args *a = arg;
	sqlite3_stmt *st = NULL;
	char until[SC_TS_LEN], now[SC_TS_LEN], id[37];
	int rc;

	sc_ts_format(a->until > 0 ? a->until : 0, until);
	sc_ts_format(sc_wall_ms() / 1000, now);
	rc = sqlite3_prepare_v2(db, a->until < 0 ? "UPDATE providers SET consecutive_429 = ?3 WHERE id = ?1" :
	    "UPDATE providers SET cooldown_until = ?2, consecutive_429 = ?3 WHERE id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "saving cooldown");
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	if (a->until > 0)
		sqlite3_bind_text(st, 2, until, -1, SQLITE_STATIC);
	else if (a->until == 0)
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int(st, 3, a->count);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "saving cooldown");
	if (a->until >= 0 && registry_cd_end_events(db, a->id, a->until > 0 && a->seconds <= 0 ? until : now, e) == -1)
		return -1;
	if (a->seconds <= 0 || a->count <= 0)
		return 0;
	sc_uuid(id);
	rc = sqlite3_prepare_v2(db, "INSERT INTO cooldown_events (id, provider_id, consecutive_count, "
	    "cooldown_seconds, response_summary, started_at, ended_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "saving cooldown event");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, a->count);
	sqlite3_bind_int(st, 4, a->seconds);
	sqlite3_bind_text(st, 5, a->summary ? a->summary : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, until, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "saving cooldown event");
}

/* Run a save on the writer thread (never stalling the loop on a locked
 * database), or here when that thread does not run; free_arg(a) follows
 * either way. */
static void
registry_save(db_txn_fn fn, void *a, void (*free_arg)(void *), const char *what, const char *id)
{
	struct sc_err e;
	char desc[128];

	snprintf(desc, sizeof(desc), "%s of provider %s", what, id);
	if (stats_submit(fn, a, free_arg, desc) == 0)
		return;
	sc_err_clear(&e);
	if (db_write_txn(reg.db, fn, a, &e) == -1)
		log_warn("could not save %s: %s", desc, e.msg);
	free_arg(a);
}

static void
registry_cd_free(void *arg)
{
	struct reg_cd_args *a = arg;

	free(a->id);
	free(a->summary);
	free(a);
}

void
registry_save_cooldown(const char *id, int64_t until, int count, int seconds, const char *summary)
{
	struct reg_cd_args *a = sc_xcalloc(1, sizeof(*a));

	a->id = sc_xstrdup(id);
	a->until = until;
	a->count = count;
	a->seconds = seconds;
	a->summary = sc_xstrdup(summary != NULL ? summary : "");
	registry_save(registry_cd_txn, a, registry_cd_free, "the cooldown", id);
}

struct reg_inv_args {
	char *id;	/* owned */
	char *reason;	/* owned */
};

static void
registry_inv_free(void *arg)
{
	struct reg_inv_args *a = arg;

	free(a->id);
	free(a->reason);
	free(a);
}

static int
registry_inv_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct reg_inv_args *a = arg;

	return provider_set_status(db, a->id, PSTATUS_INVALID, a->reason, e);
}

void
registry_save_invalid(const char *id, const char *reason)
{
	struct reg_inv_args *a = sc_xcalloc(1, sizeof(*a));

	a->id = sc_xstrdup(id);
	a->reason = sc_xstrdup(reason != NULL ? reason : "");
	registry_save(registry_inv_txn, a, registry_inv_free, "the invalid mark", id);
}

struct reg_health_args {
	char    *id;		/* owned */
	int      unhealthy;
	int      failures;
	int      status;
	int64_t  latency_ms;
	char    *error;		/* owned */
	int      probe;
};

static void
registry_health_free(void *arg)
{
	struct reg_health_args *a = arg;

	free(a->id);
	free(a->error);
	free(a);
}

static int
registry_health_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct reg_health_args *a = arg;
	sqlite3_stmt *st = NULL;
	char now[SC_TS_LEN];
	int rc;

	sc_ts_format(sc_wall_ms() / 1000, now);
	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO provider_health (provider_id, state, last_latency_ms, last_status_code, "
	    "consecutive_failures, last_error, last_probe_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
	    "ON CONFLICT (provider_id) DO UPDATE SET state = excluded.state, "
	    "last_latency_ms = excluded.last_latency_ms, last_status_code = excluded.last_status_code, "
	    "consecutive_failures = excluded.consecutive_failures, last_error = excluded.last_error, "
	    "last_probe_at = COALESCE(excluded.last_probe_at, provider_health.last_probe_at), "
	    "updated_at = excluded.updated_at", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "saving health");
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->unhealthy ? "unhealthy" : "healthy", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->latency_ms);
	sqlite3_bind_int(st, 4, a->status);
	sqlite3_bind_int(st, 5, a->failures);
	sqlite3_bind_text(st, 6, a->error ? a->error : "", -1, SQLITE_STATIC);
	if (a->probe)
		sqlite3_bind_text(st, 7, now, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "saving health");
}

void
registry_save_health(const char *id, int unhealthy, int failures, int status, int64_t latency_ms,
    const char *error, int probe)
{
	struct reg_health_args *a = sc_xcalloc(1, sizeof(*a));

	a->id = sc_xstrdup(id);
	a->unhealthy = unhealthy;
	a->failures = failures;
	a->status = status;
	a->latency_ms = latency_ms;
	a->error = sc_xstrdup(error != NULL ? error : "");
	a->probe = probe;
	registry_save(registry_health_txn, a, registry_health_free, "the health", id);
}

int
registry_load_health(const char *id, int *unhealthy, int *failures)
{
	sqlite3_stmt *st = NULL;
	int rc, ret = 0;

	*unhealthy = 0;
	*failures = 0;
	if (sqlite3_prepare_v2(reg.db, "SELECT state, consecutive_failures FROM provider_health "
	    "WHERE provider_id = ?1", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		*unhealthy = s != NULL && strcmp(s, "unhealthy") == 0;
		*failures = sqlite3_column_int(st, 1);
	} else if (rc != SQLITE_DONE) {
		ret = -1;
	}
	sqlite3_finalize(st);
	return ret;
}

#define REG_META_WAIT_MS 50	/* longest the loop waits for the write lock in registry_put_meta_now */

struct reg_meta_args {
	char *key;	/* owned when queued for the writer */
	char *value;	/* owned when queued for the writer */
};

static void
registry_meta_free(void *arg)
{
	struct reg_meta_args *a = arg;

	free(a->key);
	free(a->value);
	free(a);
}

static int
registry_meta_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct reg_meta_args *a = arg;
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO meta (key, value) VALUES (?1, ?2) "
	    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", -1, &st, NULL) != SQLITE_OK)
		return sc_err_set(e, NULL, 0, "%s", sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, a->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sc_err_set(e, NULL, 0, "%s", sqlite3_errmsg(db));
	return 0;
}

int
registry_put_meta_now(const char *key, const char *value)
{
	struct reg_meta_args a = { (char *)key, (char *)value }, *q;
	struct sc_err e;

	if (reg.db == NULL)
		return -1;
	sc_err_clear(&e);
	/* On the loop: wait at most REG_META_WAIT_MS for a busy database, then
	 * let the writer thread take it (late, but not lost) and report -1. */
	if (db_write_txn_within(reg.db, registry_meta_txn, &a, REG_META_WAIT_MS, &e) == -1) {
		log_warn("could not save %s now (%s); queued for the writer", key, e.msg);
		q = sc_xcalloc(1, sizeof(*q));
		q->key = sc_xstrdup(key);
		q->value = sc_xstrdup(value);
		registry_save(registry_meta_txn, q, registry_meta_free, "the windows", key);
		return -1;
	}
	return 0;
}

char *
registry_get_meta(const char *key)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;

	if (reg.db == NULL || sqlite3_prepare_v2(reg.db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
		v = sc_xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

static int
registry_prune_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	(void)arg;
	return db_exec(db, "DELETE FROM meta WHERE key LIKE 'windows:%' "
	    "AND substr(key, 9) NOT IN (SELECT id FROM providers)", e);
}

static void
registry_prune_free(void *arg)
{
	(void)arg;
}

void
registry_prune_windows(void)
{
	if (reg.db != NULL)
		registry_save(registry_prune_txn, NULL, registry_prune_free, "the window records", "(deleted)");
}
