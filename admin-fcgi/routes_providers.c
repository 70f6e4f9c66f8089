/*
 * /api/v2/providers: list, create (with the key test call), read, partial
 * update, delete, re-validate, reset a cooldown, YAML import and export.
 * Keys go in once (POST / PATCH "api_key", YAML import) and never come back:
 * every answer carries api_key_mask only. Each write is one db_write_txn that
 * re-reads what it changes, so a concurrent data-plane write (cooldowns,
 * health) is never lost, and bumps meta.config_version so the data plane
 * reloads within its poll interval.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "log.h"
#include "providers.h"
#include "yamlimport.h"

#define PROV_ID_MAX 64	/* longest id accepted in a path */

/* ---- JSON views ---- */

static json_object *
prov_validation_json(const struct validate_result *v)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(v->ok));
	json_object_object_add(o, "result", json_object_new_string(validate_outcome_name(v->outcome)));
	json_object_object_add(o, "http_status", v->http_status ? json_object_new_int((int)v->http_status) : NULL);
	json_object_object_add(o, "latency_ms", json_object_new_int64(v->latency_ms));
	json_object_object_add(o, "message", api_jstr(v->message));
	return o;
}

/* Parse JSON text into an object (NULL when it is not one). */
static json_object *
prov_parse_object(const char *s)
{
	json_tokener *tok;
	json_object *o;

	if (s == NULL)
		return NULL;
	tok = json_tokener_new_ex(API_JSON_DEPTH);
	if (tok == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)strlen(s));
	json_tokener_free(tok);
	if (o != NULL && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The latest provider_health row of a provider as JSON, or NULL. */
static json_object *
prov_health_json(sqlite3 *db, const char *id)
{
	static const char sql[] =
	    "SELECT state, last_latency_ms, last_status_code, success_rate_5m, consecutive_failures, "
	    "last_error, last_probe_at, updated_at FROM provider_health WHERE provider_id = ?1";
	sqlite3_stmt *st = NULL;
	json_object *o = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		o = json_object_new_object();
		json_object_object_add(o, "state", api_jstr((const char *)sqlite3_column_text(st, 0)));
		json_object_object_add(o, "last_latency_ms", json_object_new_int64(sqlite3_column_int64(st, 1)));
		json_object_object_add(o, "last_status_code", json_object_new_int(sqlite3_column_int(st, 2)));
		json_object_object_add(o, "success_rate_5m", json_object_new_double(sqlite3_column_double(st, 3)));
		json_object_object_add(o, "consecutive_failures", json_object_new_int(sqlite3_column_int(st, 4)));
		json_object_object_add(o, "last_error", api_jstr((const char *)sqlite3_column_text(st, 5)));
		json_object_object_add(o, "last_probe_at", api_jstr((const char *)sqlite3_column_text(st, 6)));
		json_object_object_add(o, "updated_at", api_jstr((const char *)sqlite3_column_text(st, 7)));
	}
	sqlite3_finalize(st);
	return o;
}

/* The data plane's live_status snapshot (parsed), or NULL. */
static json_object *
prov_live_snapshot(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	json_object *o = NULL;

	if (sqlite3_prepare_v2(db, "SELECT snapshot FROM live_status WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
		return NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		o = prov_parse_object((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return o;
}

/* This provider's entry of the snapshot: "providers" as an array of objects
 * with "id" or "name", or as an object keyed by id or name. New reference or NULL. */
static json_object *
prov_live_find(json_object *snap, const struct provider *p)
{
	json_object *arr, *v, *f;

	if (snap == NULL || !json_object_object_get_ex(snap, "providers", &arr))
		return NULL;
	if (json_object_is_type(arr, json_type_object)) {
		if (json_object_object_get_ex(arr, p->id, &v) || json_object_object_get_ex(arr, p->name, &v))
			return json_object_get(v);
		return NULL;
	}
	if (!json_object_is_type(arr, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		v = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(v, json_type_object))
			continue;
		if ((json_object_object_get_ex(v, "id", &f) && strcmp(json_object_get_string(f), p->id) == 0) ||
		    (json_object_object_get_ex(v, "name", &f) && strcmp(json_object_get_string(f), p->name) == 0))
			return json_object_get(v);
	}
	return NULL;
}

/* The public view of a provider: never the key, only its mask. */
static json_object *
prov_json(sqlite3 *db, const struct provider *p, json_object *snap, int64_t now)
{
	json_object *o = json_object_new_object(), *md;
	char ts[SC_TS_LEN];

	json_object_object_add(o, "id", json_object_new_string(p->id));
	json_object_object_add(o, "name", api_jstr(p->name));
	json_object_object_add(o, "api_key_mask", api_jstr(p->api_key_mask ? p->api_key_mask : "****"));
	json_object_object_add(o, "endpoint_url", api_jstr(p->endpoint_url));
	json_object_object_add(o, "model_prefix", api_jstr(p->model_prefix));
	json_object_object_add(o, "pool", json_object_new_string(provider_pool_name(p->pool)));
	json_object_object_add(o, "status", json_object_new_string(provider_status_name(p->status)));
	json_object_object_add(o, "status_reason", api_jstr(p->status_reason ? p->status_reason : ""));
	json_object_object_add(o, "source", api_jstr(p->source));
	json_object_object_add(o, "rpm_limit", json_object_new_int(p->rpm_limit));
	json_object_object_add(o, "tpm_limit", json_object_new_int(p->tpm_limit));
	{
		json_object *ml = json_object_new_object();

		for (size_t i = 0; i < p->n_model_rpm; i++)
			json_object_object_add(ml, p->model_rpm[i].model, json_object_new_int(p->model_rpm[i].rpm));
		json_object_object_add(o, "model_rpm_limits", ml);
	}
	json_object_object_add(o, "weight", json_object_new_double(p->weight));
	json_object_object_add(o, "cost_per_1k", json_object_new_double(p->cost_per_1k));
	if (p->cooldown_until > 0) {
		sc_ts_format(p->cooldown_until, ts);
		json_object_object_add(o, "cooldown_until", json_object_new_string(ts));
	} else
		json_object_object_add(o, "cooldown_until", NULL);
	json_object_object_add(o, "cooling", json_object_new_boolean(p->cooldown_until > now));
	json_object_object_add(o, "consecutive_429", json_object_new_int(p->consecutive_429));
	md = prov_parse_object(p->metadata);
	json_object_object_add(o, "metadata", md ? md : json_object_new_object());
	json_object_object_add(o, "created_at", json_object_new_string(p->created_at));
	json_object_object_add(o, "updated_at", json_object_new_string(p->updated_at));
	json_object_object_add(o, "health", prov_health_json(db, p->id));
	json_object_object_add(o, "live", prov_live_find(snap, p));
	/* The limit in force: learned by the data plane (live), else the configured one. */
	{
		json_object *live = json_object_object_get(o, "live"), *e = NULL;
		int eff = p->rpm_limit;

		if (live != NULL && json_object_object_get_ex(live, "rpm_limit_effective", &e) &&
		    json_object_is_type(e, json_type_int))
			eff = json_object_get_int(e);
		json_object_object_add(o, "rpm_limit_effective", json_object_new_int(eff));
	}
	return o;
}

/* ---- applying a JSON body to a provider ---- */

/* Top-level fields that are stored in metadata. */
static const char *const prov_meta_strings[] = { "account", "email", "notes", NULL };
static const char *const prov_meta_bools[] = { "max_tokens_field", "flatten_content", "stream_usage", NULL };
static const char *const prov_readonly[] = {
	"id", "api_key_mask", "cooldown_until", "cooling", "consecutive_429", "created_at",
	"updated_at", "health", "live", "rpm_limit_effective", NULL
};

static bool
prov_in(const char *const *list, const char *k)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, k) == 0)
			return true;
	return false;
}

static void
prov_set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = sc_xstrdup(s);
}

/* Apply body to p (create: a fresh provider_init'd one; otherwise the stored
 * one). Sets a 422 and returns -1 on the first bad field. *key_given and
 * *endpoint_given tell the caller whether a test call is due. */
static int
prov_apply(struct api_call *c, json_object *body, struct provider *p, bool create,
    bool *key_given, bool *endpoint_given)
{
	json_object *md = NULL, *v;
	int64_t iv;
	double dv;
	int ret = -1;
	bool status_given = false, reason_given = false;

	*key_given = *endpoint_given = false;
	md = prov_parse_object(p->metadata);
	if (md == NULL)
		md = json_object_new_object();
	/* "metadata" replaces the object first; top-level options then refine it. */
	if (json_object_object_get_ex(body, "metadata", &v)) {
		if (!json_object_is_type(v, json_type_object)) {
			api_error(c->rs, 422, "metadata", "'metadata' must be a JSON object");
			goto done;
		}
		json_object_put(md);
		md = json_object_get(v);
		/* Do not let the caller's object be shared with the body. */
		json_object *copy = NULL;
		if (json_object_deep_copy(md, &copy, NULL) == 0) {
			json_object_put(md);
			md = copy;
		}
	}
	json_object_object_foreach(body, k, val) {
		json_type t = json_object_get_type(val);
		if (strcmp(k, "metadata") == 0)
			continue;
		if (prov_in(prov_readonly, k)) {
			api_error(c->rs, 422, k, "field '%s' is read-only", k);
			goto done;
		}
		if (strcmp(k, "name") == 0 || strcmp(k, "api_key") == 0 || strcmp(k, "endpoint_url") == 0 ||
		    strcmp(k, "model_prefix") == 0 || strcmp(k, "status_reason") == 0 ||
		    strcmp(k, "pool") == 0 || strcmp(k, "status") == 0 || strcmp(k, "source") == 0) {
			if (t != json_type_string) {
				api_error(c->rs, 422, k, "'%s' must be a string", k);
				goto done;
			}
			const char *s = json_object_get_string(val);
			if ((size_t)json_object_get_string_len(val) != strlen(s)) {
				api_error(c->rs, 400, k, "'%s' must not contain a NUL character", k);
				goto done;
			}
			if (strlen(s) > 4096) {
				api_error(c->rs, 422, k, "'%s' is too long (at most 4096 characters)", k);
				goto done;
			}
			if (strcmp(k, "name") == 0)
				prov_set_str(&p->name, s);
			else if (strcmp(k, "api_key") == 0) {
				if (p->api_key != NULL)
					crypto_free_secret(p->api_key);
				p->api_key = sc_xstrdup(s);
				*key_given = true;
			} else if (strcmp(k, "endpoint_url") == 0) {
				/* Stored without a trailing slash, so "{endpoint}/models" is right. */
				size_t n = strlen(s);
				prov_set_str(&p->endpoint_url, s);
				while (n > 0 && p->endpoint_url[n - 1] == '/')
					p->endpoint_url[--n] = '\0';
				*endpoint_given = true;
			} else if (strcmp(k, "model_prefix") == 0)
				prov_set_str(&p->model_prefix, s);
			else if (strcmp(k, "status_reason") == 0) {
				prov_set_str(&p->status_reason, s);
				reason_given = true;
			} else if (strcmp(k, "pool") == 0) {
				if (provider_pool_parse(s, &p->pool) == -1) {
					api_error(c->rs, 422, k, "'pool' must be \"main\" or \"fallback\"");
					goto done;
				}
			} else if (strcmp(k, "status") == 0) {
				if (provider_status_parse(s, &p->status) == -1) {
					api_error(c->rs, 422, k, "'status' must be \"active\", \"disabled\" or \"invalid\"");
					goto done;
				}
				status_given = true;
			} else {	/* source */
				if (!create) {
					api_error(c->rs, 422, k, "'source' is set at creation only");
					goto done;
				}
				if (strcmp(s, "api") != 0 && strcmp(s, "webui") != 0) {
					api_error(c->rs, 422, k, "'source' must be \"api\" or \"webui\"");
					goto done;
				}
				prov_set_str(&p->source, s);
			}
		} else if (strcmp(k, "rpm_limit") == 0 || strcmp(k, "tpm_limit") == 0) {
			if (t != json_type_int) {
				api_error(c->rs, 422, k, "'%s' must be an integer", k);
				goto done;
			}
			/* The range is provider_validate's (prov_check); only what fits an int gets there. */
			iv = json_object_get_int64(val);
			if (iv < INT_MIN || iv > INT_MAX)
				iv = iv < 0 ? -1 : INT_MAX;
			if (strcmp(k, "rpm_limit") == 0)
				p->rpm_limit = (int)iv;
			else
				p->tpm_limit = (int)iv;
		} else if (strcmp(k, "weight") == 0 || strcmp(k, "cost_per_1k") == 0) {
			if (t != json_type_int && t != json_type_double) {
				api_error(c->rs, 422, k, "'%s' must be a number", k);
				goto done;
			}
			dv = json_object_get_double(val);	/* its range: provider_validate (prov_check) */
			if (strcmp(k, "weight") == 0)
				p->weight = dv;
			else
				p->cost_per_1k = dv;
		} else if (prov_in(prov_meta_strings, k)) {
			if (t != json_type_string) {
				api_error(c->rs, 422, k, "'%s' must be a string", k);
				goto done;
			}
			if ((size_t)json_object_get_string_len(val) != strlen(json_object_get_string(val))) {
				api_error(c->rs, 400, k, "'%s' must not contain a NUL character", k);
				goto done;
			}
			json_object_object_add(md, k, json_object_get(val));
		} else if (strcmp(k, "model_rpm_limits") == 0) {
			/* {model: rpm}; null removes them. The entries are checked by prov_check. */
			if (t == json_type_null) {
				json_object_object_del(md, k);
				continue;
			}
			if (t != json_type_object) {
				api_error(c->rs, 422, k, "'model_rpm_limits' must be an object of model: rpm");
				goto done;
			}
			json_object_object_add(md, k, json_object_get(val));
		} else if (prov_in(prov_meta_bools, k)) {
			if (t != json_type_boolean) {
				api_error(c->rs, 422, k, "'%s' must be true or false", k);
				goto done;
			}
			json_object_object_add(md, k, json_object_get(val));
		} else {
			api_error(c->rs, 422, k, "unknown field '%s'", k);
			goto done;
		}
	}
	/* A status change without a reason clears the old reason. */
	if (status_given && !reason_given)
		prov_set_str(&p->status_reason, "");
	prov_set_str(&p->metadata, json_object_to_json_string_ext(md, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	ret = 0;
done:
	json_object_put(md);
	return ret;
}

/* provider_validate + provider_parse_compat; 422 on failure. */
static int
prov_check(struct api_call *c, struct provider *p)
{
	struct sc_err e;

	sc_err_clear(&e);
	if (provider_validate(p, &e) == -1 || provider_parse_compat(p, &e) == -1) {
		api_error(c->rs, 422, e.field[0] ? e.field : NULL, "%s", e.msg[0] ? e.msg : "invalid provider");
		return -1;
	}
	return 0;
}

/* 422 for a refused key, carrying the validation result. */
static void
prov_refused(struct api_call *c, const struct validate_result *v)
{
	json_object *root = json_object_new_object(), *err = json_object_new_object();
	const char *field = (v->outcome == VALIDATE_UNREACHABLE || v->outcome == VALIDATE_TIMEOUT ||
	    v->outcome == VALIDATE_UPSTREAM_ERROR) ? "endpoint_url" : "api_key";

	json_object_object_add(err, "message", api_jstr(v->message));
	json_object_object_add(err, "field", json_object_new_string(field));
	json_object_object_add(err, "validation", prov_validation_json(v));
	json_object_object_add(root, "error", err);
	api_json(c->rs, 422, root);
}

/* 1 when another provider (not except_id) has this name, 0 not, -1 error. */
static int
prov_name_taken(sqlite3 *db, const char *name, const char *except_id)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM providers WHERE name = ?1 AND id != ?2", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, name ? name : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, except_id ? except_id : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Answer one provider read back from the database (status 200 or 201). */
static void
prov_reply_one(struct api_call *c, const char *id, int status, const struct validate_result *v)
{
	struct provider p;
	struct sc_err e;
	json_object *o, *snap;
	int rc;

	provider_init(&p);
	sc_err_clear(&e);
	rc = provider_get(c->ctx->db, NULL, "id", id, &p, &e);
	if (rc == 1)
		api_error(c->rs, 404, NULL, "no provider with id %s", id);
	else if (rc != 0)
		api_db_error(c->rs, c->ctx->db, &e);
	else {
		snap = prov_live_snapshot(c->ctx->db);
		o = prov_json(c->ctx->db, &p, snap, c->ctx->now());
		json_object_put(snap);
		if (v != NULL)
			json_object_object_add(o, "validation", prov_validation_json(v));
		api_json(c->rs, status, o);
	}
	provider_clear(&p);
}

/* ---- write transactions ---- */

struct prov_txn {
	struct api_call *c;
	struct provider *p;	/* create: the new provider; patch: the key holder */
	json_object     *body;	/* patch: re-applied to a fresh read */
	const char      *id;
	bool             not_found;
	bool             conflict;
	bool             bad;	/* the response is already set */
};

static int
prov_create_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct prov_txn *t = arg;
	int rc = prov_name_taken(db, t->p->name, "");

	if (rc != 0) {
		t->conflict = rc == 1;
		return rc == 1 ? -1 : db_set_err(db, sqlite3_errcode(db), e, "providers");
	}
	if (provider_insert(db, &t->c->ctx->key, t->p, e) == -1)
		return -1;
	return api_bump_version(db, e);
}

static int
prov_patch_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct prov_txn *t = arg;
	struct provider cur;
	bool kg, eg;
	int rc;

	/* Re-read inside the transaction so cooldown and health written by the
	 * data plane since the first read are kept. */
	provider_init(&cur);
	rc = provider_get(db, NULL, "id", t->id, &cur, e);
	if (rc != 0) {
		t->not_found = rc == 1;
		provider_clear(&cur);
		return -1;
	}
	if (prov_apply(t->c, t->body, &cur, false, &kg, &eg) == -1) {
		t->bad = true;
		provider_clear(&cur);
		return -1;
	}
	if (cur.api_key != NULL)
		crypto_free_secret(cur.api_key);
	cur.api_key = t->p->api_key != NULL ? sc_xstrdup(t->p->api_key) : NULL;
	rc = prov_name_taken(db, cur.name, cur.id);
	if (rc != 0) {
		t->conflict = rc == 1;
		provider_clear(&cur);
		return rc == 1 ? -1 : db_set_err(db, sqlite3_errcode(db), e, "providers");
	}
	rc = provider_update(db, &t->c->ctx->key, &cur, e);
	provider_clear(&cur);
	if (rc == -1)
		return -1;
	return api_bump_version(db, e);
}

/* 1 when a provider with this id exists, 0 not, -1 error. */
static int
prov_exists(sqlite3 *db, const char *id)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM providers WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
prov_delete_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct prov_txn *t = arg;
	int rc = prov_exists(db, t->id);

	if (rc != 1) {
		t->not_found = rc == 0;
		return rc == 0 ? -1 : db_set_err(db, sqlite3_errcode(db), e, "providers");
	}
	if (provider_delete(db, t->id, e) == -1)
		return -1;
	return api_bump_version(db, e);
}

/* Run one statement with ?1 = id and ?2 = now (text); -1 on error. */
static int
prov_exec_id(sqlite3 *db, const char *sql, const char *id, const char *now, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "providers");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "providers");
	return 0;
}

static int
prov_reset_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct prov_txn *t = arg;
	char now[SC_TS_LEN];
	int rc = prov_exists(db, t->id);

	if (rc != 1) {
		t->not_found = rc == 0;
		return rc == 0 ? -1 : db_set_err(db, sqlite3_errcode(db), e, "providers");
	}
	sc_ts_format(t->c->ctx->now(), now);
	if (prov_exec_id(db, "UPDATE providers SET cooldown_until = NULL, consecutive_429 = 0, "
	    "updated_at = ?2 WHERE id = ?1", t->id, now, e) == -1 ||
	    prov_exec_id(db, "UPDATE cooldown_events SET ended_at = ?2 WHERE provider_id = ?1 "
	    "AND (ended_at IS NULL OR ended_at > ?2)", t->id, now, e) == -1 ||
	    prov_exec_id(db, "INSERT INTO meta (key, value) VALUES ('cooldown_reset:' || ?1, '1') "
	    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", t->id, NULL, e) == -1)
		return -1;
	/* The counter tells a running data plane to drop its in-memory cooldown. */
	/* cooldown columns are not covered by the providers_upd trigger. */
	return api_bump_version(db, e);
}

struct prov_status_arg {
	const char          *id;
	enum provider_status st;
	const char          *reason;
};

static int
prov_status_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct prov_status_arg *a = arg;

	if (provider_set_status(db, a->id, a->st, a->reason, e) == -1)
		return -1;
	return api_bump_version(db, e);
}

/* After a write transaction failed: pick the response. */
static void
prov_txn_error(struct prov_txn *t, const struct sc_err *e)
{
	if (t->bad)
		return;
	if (t->not_found)
		api_error(t->c->rs, 404, NULL, "no provider with id %s", t->id ? t->id : "");
	else if (t->conflict)
		api_error(t->c->rs, 409, "name", "a provider named '%s' already exists",
		    t->p && t->p->name ? t->p->name : "");
	else if (e->field[0] && !api_err_is_busy(t->c->ctx->db, e) && !api_err_is_stale_key(e))
		api_error(t->c->rs, 422, e->field, "%s", e->msg);
	else
		api_db_error(t->c->rs, t->c->ctx->db, e);
}

/* ---- handlers ---- */

static void
prov_list(struct api_call *c)
{
	struct provider_list l = { NULL, 0 };
	struct sc_err e;
	json_object *root, *arr, *snap;
	int64_t now = c->ctx->now();

	sc_err_clear(&e);
	if (provider_list(c->ctx->db, NULL, &l, &e) == -1) {
		api_db_error(c->rs, c->ctx->db, &e);
		return;
	}
	snap = prov_live_snapshot(c->ctx->db);
	root = json_object_new_object();
	arr = json_object_new_array();
	for (size_t i = 0; i < l.n; i++)
		json_object_array_add(arr, prov_json(c->ctx->db, &l.v[i], snap, now));
	json_object_object_add(root, "providers", arr);
	json_object_object_add(root, "config_version", json_object_new_int64(db_config_version(c->ctx->db)));
	json_object_put(snap);
	provider_list_free(&l);
	api_json(c->rs, 200, root);
}

static void
prov_create(struct api_call *c)
{
	struct provider p;
	struct validate_result v;
	struct prov_txn t;
	struct sc_err e;
	json_object *body;
	bool kg, eg, validate = api_query_bool(c->rq, "validate", true);
	int rc;

	if ((body = api_body_json(c)) == NULL)
		return;
	provider_init(&p);
	sc_err_clear(&e);
	memset(&v, 0, sizeof(v));
	p.source = sc_xstrdup("api");
	if (prov_apply(c, body, &p, true, &kg, &eg) == -1 || prov_check(c, &p) == -1)
		goto done;
	rc = prov_name_taken(c->ctx->db, p.name, "");
	if (rc == 1) {
		api_error(c->rs, 409, "name", "a provider named '%s' already exists", p.name);
		goto done;
	}
	if (validate) {
		c->ctx->validate(p.endpoint_url, p.api_key, c->ctx->validate_timeout_ms, &v);
		if (!v.ok) {
			log_info("provider '%s' refused: %s", p.name, v.message);
			prov_refused(c, &v);
			goto done;
		}
	}
	memset(&t, 0, sizeof(t));
	t.c = c;
	t.p = &p;
	if (db_write_txn(c->ctx->db, prov_create_fn, &t, &e) == -1) {
		prov_txn_error(&t, &e);
		goto done;
	}
	log_info("provider '%s' (%s) created, key %s", p.name, p.id, p.api_key_mask ? p.api_key_mask : "");
	prov_reply_one(c, p.id, 201, validate ? &v : NULL);
done:
	provider_clear(&p);
	json_object_put(body);
}

static void
prov_patch(struct api_call *c, const char *id)
{
	struct provider p;
	struct validate_result v;
	struct prov_txn t;
	struct sc_err e;
	json_object *body;
	bool kg = false, eg = false, validate = api_query_bool(c->rq, "validate", true);
	int rc;

	if ((body = api_body_json(c)) == NULL)
		return;
	provider_init(&p);
	sc_err_clear(&e);
	memset(&v, 0, sizeof(v));
	rc = provider_get(c->ctx->db, &c->ctx->key, "id", id, &p, &e);
	if (rc == 1) {
		api_error(c->rs, 404, NULL, "no provider with id %s", id);
		goto done;
	}
	if (rc != 0) {
		api_db_error(c->rs, c->ctx->db, &e);
		goto done;
	}
	if (prov_apply(c, body, &p, false, &kg, &eg) == -1 || prov_check(c, &p) == -1)
		goto done;
	if (json_object_object_length(body) == 0) {
		prov_reply_one(c, id, 200, NULL);
		goto done;
	}
	if (prov_name_taken(c->ctx->db, p.name, id) == 1) {
		api_error(c->rs, 409, "name", "a provider named '%s' already exists", p.name);
		goto done;
	}
	validate = validate && (kg || eg);
	if (validate) {
		c->ctx->validate(p.endpoint_url, p.api_key, c->ctx->validate_timeout_ms, &v);
		if (!v.ok) {
			prov_refused(c, &v);
			goto done;
		}
	}
	/* The stored key is rewritten only when a new one was given. */
	if (!kg && p.api_key != NULL) {
		crypto_free_secret(p.api_key);
		p.api_key = NULL;
	}
	memset(&t, 0, sizeof(t));
	t.c = c;
	t.p = &p;
	t.body = body;
	t.id = id;
	if (db_write_txn(c->ctx->db, prov_patch_fn, &t, &e) == -1) {
		prov_txn_error(&t, &e);
		goto done;
	}
	log_info("provider '%s' (%s) updated%s", p.name, id, kg ? ", new key" : "");
	prov_reply_one(c, id, 200, validate ? &v : NULL);
done:
	provider_clear(&p);
	json_object_put(body);
}

static void
prov_delete(struct api_call *c, const char *id)
{
	struct prov_txn t;
	struct sc_err e;
	json_object *o;

	memset(&t, 0, sizeof(t));
	sc_err_clear(&e);
	t.c = c;
	t.id = id;
	if (db_write_txn(c->ctx->db, prov_delete_fn, &t, &e) == -1) {
		prov_txn_error(&t, &e);
		return;
	}
	log_info("provider %s deleted", id);
	o = json_object_new_object();
	json_object_object_add(o, "deleted", json_object_new_string(id));
	api_json(c->rs, 200, o);
}

static void
prov_reset(struct api_call *c, const char *id)
{
	struct prov_txn t;
	struct sc_err e;

	memset(&t, 0, sizeof(t));
	sc_err_clear(&e);
	t.c = c;
	t.id = id;
	if (db_write_txn(c->ctx->db, prov_reset_fn, &t, &e) == -1) {
		prov_txn_error(&t, &e);
		return;
	}
	log_info("provider %s: cooldown reset", id);
	prov_reply_one(c, id, 200, NULL);
}

/* POST {id}/validate: test the stored key now; an answer that proves the key
 * bad marks it invalid, a good answer re-activates an invalid key. */
static void
prov_revalidate(struct api_call *c, const char *id)
{
	struct provider p;
	struct validate_result v;
	struct prov_status_arg a;
	struct sc_err e;
	int rc;

	provider_init(&p);
	sc_err_clear(&e);
	rc = provider_get(c->ctx->db, &c->ctx->key, "id", id, &p, &e);
	if (rc == 1) {
		api_error(c->rs, 404, NULL, "no provider with id %s", id);
		goto done;
	}
	if (rc != 0 || p.api_key == NULL) {
		api_db_error(c->rs, c->ctx->db, &e);
		goto done;
	}
	c->ctx->validate(p.endpoint_url, p.api_key, c->ctx->validate_timeout_ms, &v);
	a.id = id;
	a.reason = NULL;
	if (v.ok && p.status == PSTATUS_INVALID) {
		a.st = PSTATUS_ACTIVE;
		a.reason = "";
	} else if ((v.outcome == VALIDATE_INVALID_KEY || v.outcome == VALIDATE_FORBIDDEN) &&
	    p.status != PSTATUS_DISABLED) {
		a.st = PSTATUS_INVALID;
		a.reason = v.message;
	}
	if (a.reason != NULL && db_write_txn(c->ctx->db, prov_status_fn, &a, &e) == -1) {
		api_db_error(c->rs, c->ctx->db, &e);
		goto done;
	}
	prov_reply_one(c, id, 200, &v);
done:
	provider_clear(&p);
}

/* ---- YAML ---- */

/* A YAML double-quoted scalar that reads back as exactly s: ", \\ and every
 * character YAML does not allow raw (controls, C1, the line breaks NEL, LS,
 * PS that a quoted scalar would fold, U+FEFF, U+FFFE/F) are escaped. s is
 * valid UTF-8 (the stored text is checked on the way in); a stray byte that
 * is not is escaped as \\xNN rather than copied. */
static void
prov_yaml_str(struct sc_buf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)u), i = 0, len;
	uint32_t cp;

	sc_buf_append(b, "\"", 1);
	while (i < n) {
		len = sc_utf8_next(u + i, n - i, &cp);
		if (len == 0) {
			sc_buf_printf(b, "\\x%02x", u[i]);
			i++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			sc_buf_printf(b, "\\%c", (int)cp);
		else if (cp == '\n')
			sc_buf_append(b, "\\n", 2);
		else if (cp == '\t')
			sc_buf_append(b, "\\t", 2);
		else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
		    cp == 0xfeff || cp == 0xfffe || cp == 0xffff)
			sc_buf_printf(b, "\\u%04x", (unsigned)cp);
		else
			sc_buf_append(b, u + i, len);
		i += len;
	}
	sc_buf_append(b, "\"", 1);
}

static void
prov_export(struct api_call *c)
{
	struct provider_list l = { NULL, 0 };
	struct sc_err e;
	static const char *const compat[] = { "max_tokens_field", "flatten_content", "stream_usage" };
	struct sc_buf *b = &c->rs->body;
	json_object *md, *v;
	char num[40];

	sc_err_clear(&e);
	if (provider_list(c->ctx->db, NULL, &l, &e) == -1) {
		api_db_error(c->rs, c->ctx->db, &e);
		return;
	}
	sc_buf_reset(b);
	sc_buf_printf(b, "# Sidecar V2 providers, exported without keys.\n"
	    "# Add api_key to each entry before importing this file elsewhere.\n"
	    "providers:\n");
	for (size_t i = 0; i < l.n; i++) {
		const struct provider *p = &l.v[i];
		md = prov_parse_object(p->metadata);
		sc_buf_printf(b, "- account: ");
		prov_yaml_str(b, p->name);
		if (md != NULL && json_object_object_get_ex(md, "email", &v) && json_object_is_type(v, json_type_string)) {
			sc_buf_printf(b, "\n  email: ");
			prov_yaml_str(b, json_object_get_string(v));
		}
		sc_buf_printf(b, "\n  endpoint_url: ");
		prov_yaml_str(b, p->endpoint_url);
		sc_buf_printf(b, "\n  model_prefix: ");
		prov_yaml_str(b, p->model_prefix);
		sc_buf_printf(b, "\n  pool: %s\n  status: %s\n  rpm_limit: %d\n", provider_pool_name(p->pool),
		    provider_status_name(p->status), p->rpm_limit);
		if (p->tpm_limit > 0)
			sc_buf_printf(b, "  tpm_limit: %d\n", p->tpm_limit);
		sc_fmt_double(p->weight, num, sizeof(num));
		sc_buf_printf(b, "  weight: %s\n", num);
		sc_fmt_double(p->cost_per_1k, num, sizeof(num));
		sc_buf_printf(b, "  cost_per_1k: %s", num);
		if (md != NULL && json_object_object_get_ex(md, "notes", &v) && json_object_is_type(v, json_type_string)) {
			sc_buf_printf(b, "\n  notes: ");
			prov_yaml_str(b, json_object_get_string(v));
		}
		/* Shaping options only when set, so that absent stays absent. */
		for (size_t j = 0; j < sizeof(compat) / sizeof(compat[0]); j++)
			if (md != NULL && json_object_object_get_ex(md, compat[j], &v) &&
			    json_object_is_type(v, json_type_boolean))
				sc_buf_printf(b, "\n  %s: %s", compat[j], json_object_get_boolean(v) ? "true" : "false");
		if (p->n_model_rpm > 0) {
			sc_buf_printf(b, "\n  model_rpm_limits:");
			for (size_t k = 0; k < p->n_model_rpm; k++) {
				sc_buf_printf(b, "\n    ");
				prov_yaml_str(b, p->model_rpm[k].model);
				sc_buf_printf(b, ": %d", p->model_rpm[k].rpm);
			}
		}
		sc_buf_printf(b, "\n");
		json_object_put(md);
	}
	provider_list_free(&l);
	c->rs->status = 200;
	c->rs->content_type = "application/yaml; charset=utf-8";
	api_header(c->rs, "Content-Disposition", "attachment; filename=\"providers.yaml\"");
}

/* Test every entry's key; endpoints that proved unreachable are not retried
 * for later entries, so an offline import costs one timeout per endpoint. */
static bool
prov_import_validate(struct api_call *c, struct yaml_doc *doc, struct validate_result *res)
{
	bool all_ok = true;

	for (size_t i = 0; i < doc->n; i++) {
		struct provider *p = &doc->v[i].p;
		size_t j;
		for (j = 0; j < i; j++) {
			if ((res[j].outcome == VALIDATE_UNREACHABLE || res[j].outcome == VALIDATE_TIMEOUT) &&
			    strcmp(doc->v[j].p.endpoint_url, p->endpoint_url) == 0)
				break;
		}
		if (j < i)
			res[i] = res[j];
		else
			c->ctx->validate(p->endpoint_url, p->api_key, c->ctx->validate_timeout_ms, &res[i]);
		if (!res[i].ok)
			all_ok = false;
	}
	return all_ok;
}

static void
prov_import(struct api_call *c)
{
	const struct api_request *rq = c->rq;
	struct yaml_doc doc = { NULL, 0 };
	struct yaml_report rep = { 0, NULL };
	struct validate_result *res = NULL;
	struct sc_err e;
	json_object *root, *arr, *o, *err;
	bool validate = api_query_bool(rq, "validate", true);
	size_t counts[3] = { 0, 0, 0 };

	sc_err_clear(&e);
	if (rq->body_too_large || rq->body_len > API_YAML_BODY_MAX) {
		api_error(c->rs, 413, NULL, "YAML file too large (limit %d bytes)", API_YAML_BODY_MAX);
		return;
	}
	if (rq->body == NULL || rq->body_len == 0) {
		api_error(c->rs, 400, NULL, "empty body; expected the YAML file");
		return;
	}
	/* Not text at all: 400, like a JSON body (yamlimport_parse would say
	 * the same with a line, as a 422 for a malformed file). */
	if (sc_utf8_check(rq->body, rq->body_len) != -1) {
		yamlimport_parse(rq->body, rq->body_len, &doc, &e);
		api_error(c->rs, 400, NULL, "%s", e.msg);
		yamlimport_doc_free(&doc);
		return;
	}
	if (yamlimport_parse(rq->body, rq->body_len, &doc, &e) == -1) {
		root = json_object_new_object();
		err = json_object_new_object();
		if (e.line > 0)
			json_object_object_add(err, "message", api_jstr(e.msg));
		else
			json_object_object_add(err, "message", api_jstr(e.msg[0] ? e.msg : "malformed YAML"));
		json_object_object_add(err, "field", e.field[0] ? api_jstr(e.field) : NULL);
		json_object_object_add(err, "line", e.line > 0 ? json_object_new_int(e.line) : NULL);
		json_object_object_add(root, "error", err);
		api_json(c->rs, 422, root);
		goto done;
	}
	if (validate && doc.n > 0) {
		res = sc_xcalloc(doc.n, sizeof(*res));
		if (!prov_import_validate(c, &doc, res)) {
			root = json_object_new_object();
			err = json_object_new_object();
			arr = json_object_new_array();
			for (size_t i = 0; i < doc.n; i++) {
				o = json_object_new_object();
				json_object_object_add(o, "name", api_jstr(doc.v[i].p.name));
				json_object_object_add(o, "line", json_object_new_int(doc.v[i].line));
				json_object_object_add(o, "validation", prov_validation_json(&res[i]));
				json_object_array_add(arr, o);
			}
			json_object_object_add(err, "message", json_object_new_string(
			    "some keys failed validation; nothing was imported (use ?validate=false to import anyway)"));
			json_object_object_add(err, "field", json_object_new_string("api_key"));
			json_object_object_add(err, "entries", arr);
			json_object_object_add(root, "error", err);
			api_json(c->rs, 422, root);
			goto done;
		}
	}
	if (yamlimport_apply(c->ctx->db, &c->ctx->key, &doc, "yaml", &rep, &e) == -1) {
		if (e.field[0] && !api_err_is_busy(c->ctx->db, &e) && !api_err_is_stale_key(&e)) {
			root = json_object_new_object();
			err = json_object_new_object();
			json_object_object_add(err, "message", api_jstr(e.msg));
			json_object_object_add(err, "field", api_jstr(e.field));
			json_object_object_add(err, "line", e.line > 0 ? json_object_new_int(e.line) : NULL);
			json_object_object_add(root, "error", err);
			api_json(c->rs, strstr(e.msg, "already") ? 409 : 422, root);
		} else
			api_db_error(c->rs, c->ctx->db, &e);
		goto done;
	}
	root = json_object_new_object();
	arr = json_object_new_array();
	for (size_t i = 0; i < rep.n; i++) {
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(rep.v[i].name));
		json_object_object_add(o, "line", json_object_new_int(rep.v[i].line));
		json_object_object_add(o, "action", json_object_new_string(yamlimport_action_name(rep.v[i].action)));
		if (res != NULL && i < doc.n)
			json_object_object_add(o, "validation", prov_validation_json(&res[i]));
		if (rep.v[i].action <= YAML_UNCHANGED)
			counts[rep.v[i].action]++;
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "created", json_object_new_int64((int64_t)counts[YAML_CREATED]));
	json_object_object_add(root, "updated", json_object_new_int64((int64_t)counts[YAML_UPDATED]));
	json_object_object_add(root, "unchanged", json_object_new_int64((int64_t)counts[YAML_UNCHANGED]));
	json_object_object_add(root, "validated", json_object_new_boolean(validate));
	json_object_object_add(root, "entries", arr);
	log_info("YAML import: %zu created, %zu updated, %zu unchanged", counts[YAML_CREATED],
	    counts[YAML_UPDATED], counts[YAML_UNCHANGED]);
	api_json(c->rs, 200, root);
done:
	free(res);
	yamlimport_report_free(&rep);
	yamlimport_doc_free(&doc);
}

static void
prov_405(struct api_call *c, const char *allow)
{
	api_header(c->rs, "Allow", "%s", allow);
	api_error(c->rs, 405, NULL, "method %s not allowed here", c->rq->method);
}

bool
routes_providers(struct api_call *c)
{
	const char *m = c->rq->method, *rest;
	char id[PROV_ID_MAX + 1];
	size_t n;
	const char *action;

	if (strcmp(c->path, "/providers") == 0) {
		if (strcmp(m, "GET") == 0)
			prov_list(c);
		else if (strcmp(m, "POST") == 0)
			prov_create(c);
		else
			prov_405(c, "GET, POST");
		return true;
	}
	if (strncmp(c->path, "/providers/", 11) != 0)
		return false;
	rest = c->path + 11;
	if (strcmp(rest, "import") == 0) {
		if (strcmp(m, "POST") == 0)
			prov_import(c);
		else
			prov_405(c, "POST");
		return true;
	}
	if (strcmp(rest, "export") == 0) {
		if (strcmp(m, "GET") == 0)
			prov_export(c);
		else
			prov_405(c, "GET");
		return true;
	}
	action = strchr(rest, '/');
	n = action ? (size_t)(action - rest) : strlen(rest);
	if (n == 0 || n > PROV_ID_MAX || (action != NULL && strchr(action + 1, '/') != NULL)) {
		api_error(c->rs, 404, NULL, "no such route: %s%s", API_PREFIX, c->path);
		return true;
	}
	memcpy(id, rest, n);
	id[n] = '\0';
	if (action == NULL) {
		if (strcmp(m, "GET") == 0)
			prov_reply_one(c, id, 200, NULL);
		else if (strcmp(m, "PATCH") == 0)
			prov_patch(c, id);
		else if (strcmp(m, "DELETE") == 0)
			prov_delete(c, id);
		else
			prov_405(c, "GET, PATCH, DELETE");
		return true;
	}
	action++;
	if (strcmp(action, "validate") == 0) {
		if (strcmp(m, "POST") == 0)
			prov_revalidate(c, id);
		else
			prov_405(c, "POST");
		return true;
	}
	if (strcmp(action, "reset-cooldown") == 0) {
		if (strcmp(m, "POST") == 0)
			prov_reset(c, id);
		else
			prov_405(c, "POST");
		return true;
	}
	api_error(c->rs, 404, NULL, "no such route: %s%s", API_PREFIX, c->path);
	return true;
}
