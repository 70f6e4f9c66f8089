/*
 * /api/v2/config: every tunable of system_config with its value, default,
 * description, type and range (from common/config.c's descriptor table), and
 * a PATCH that validates every given key with config_validate before writing
 * any of them, then stores all in one transaction (the config triggers bump
 * meta.config_version so running programs reload).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "../common/config.h"	/* not autoconf's config.h in the build dir */
#include "db.h"
#include "log.h"

#define CFG_MAX_KEYS 64	/* keys accepted in one PATCH */

/* A stored value as a JSON number that prints exactly as stored ("0.1",
 * not 0.10000000000000001); the text itself when it does not parse. */
static json_object *
cfg_value_json(const struct config_desc *d, const char *s)
{
	char *end;

	if (s == NULL)
		return NULL;
	if (d->type == CONFIG_STRING) {
		char shown[CONFIG_VALUE_MAX];
		config_display(d, s, shown, sizeof(shown));	/* never a password */
		return json_object_new_string(shown);
	}
	if (d->type != CONFIG_DOUBLE) {
		long long v = strtoll(s, &end, 10);
		if (end != s && *end == '\0')
			return json_object_new_int64(v);
	} else {
		char canon[CONFIG_VALUE_MAX];
		double v = strtod(s, &end);
		/* json-c prints the given text verbatim: it must be valid JSON,
		 * so a value stored before writers canonicalised (".5") is
		 * shown in canonical form. */
		if (end != s && *end == '\0' && isfinite(v) &&
		    config_canonical(d->key, s, canon, sizeof(canon), NULL) == 0)
			return json_object_new_double_s(v, canon);
	}
	return json_object_new_string(s);
}

/* A range bound: integral values as integers, others in their short form. */
static json_object *
cfg_bound_json(double v)
{
	char buf[40];

	if (v == floor(v) && fabs(v) < 9e15)
		return json_object_new_int64((int64_t)v);
	snprintf(buf, sizeof(buf), "%g", v);
	return json_object_new_double_s(v, buf);
}

static void
cfg_get(struct api_call *c)
{
	const struct config_desc *d;
	json_object *root = json_object_new_object(), *arr = json_object_new_array(), *o;

	for (d = config_descs(); d->key != NULL; d++) {
		char *val = config_get(c->ctx->db, d->key);
		o = json_object_new_object();
		json_object_object_add(o, "key", json_object_new_string(d->key));
		json_object_object_add(o, "value", cfg_value_json(d, val ? val : d->def));
		json_object_object_add(o, "default", cfg_value_json(d, d->def));
		json_object_object_add(o, "description", api_jstr(d->description));
		json_object_object_add(o, "type", json_object_new_string(d->type == CONFIG_DOUBLE ? "double" :
		    d->type == CONFIG_STRING ? "string" : "int"));
		json_object_object_add(o, "min", cfg_bound_json(d->min));
		json_object_object_add(o, "max", cfg_bound_json(d->max));
		json_object_array_add(arr, o);
		free(val);
	}
	json_object_object_add(root, "settings", arr);
	json_object_object_add(root, "config_version", json_object_new_int64(db_config_version(c->ctx->db)));
	api_json(c->rs, 200, root);
}

struct cfg_set {
	size_t n;
	const struct config_desc *d[CFG_MAX_KEYS];
	char v[CFG_MAX_KEYS][CONFIG_VALUE_MAX];
	const char *now;
};

static int
cfg_patch_fn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct cfg_set *s = arg;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "INSERT INTO system_config (key, value, description, updated_at) "
	    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
	    "updated_at = excluded.updated_at", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "system_config");
	for (size_t i = 0; i < s->n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, s->d[i]->key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, s->v[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, s->d[i]->description ? s->d[i]->description : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, s->now, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			sqlite3_finalize(st);
			return db_set_err(db, rc, e, "system_config");
		}
	}
	sqlite3_finalize(st);
	return api_bump_version(db, e);
}

static void
cfg_patch(struct api_call *c)
{
	struct cfg_set *s;
	struct sc_err e;
	json_object *body;
	char now[SC_TS_LEN];

	if ((body = api_body_json(c)) == NULL)
		return;
	s = sc_xcalloc(1, sizeof(*s));
	sc_err_clear(&e);
	if (json_object_object_length(body) > CFG_MAX_KEYS) {
		api_error(c->rs, 422, NULL, "too many keys (at most %d)", CFG_MAX_KEYS);
		goto done;
	}
	/* Validate everything first: nothing is written unless all keys pass. */
	json_object_object_foreach(body, k, val) {
		const struct config_desc *d = config_find(k);
		json_type t = json_object_get_type(val);
		char *buf = s->v[s->n];
		if (d == NULL) {
			api_error(c->rs, 422, k, "unknown setting '%s'", k);
			goto done;
		}
		if (d->type == CONFIG_STRING) {
			if (t != json_type_string || (size_t)json_object_get_string_len(val) >= sizeof(s->v[0])) {
				api_error(c->rs, 422, k, "'%s' must be a string of at most %.0f bytes", k, d->max);
				goto done;
			}
			snprintf(buf, sizeof(s->v[0]), "%s", json_object_get_string(val));
			if (d->secret && strstr(buf, ":****@") != NULL) {
				/* The masked value read back: it would replace the password with stars. */
				api_error(c->rs, 422, k, "'%s': give the whole URL with its password (the value shown is masked)", k);
				goto done;
			}
		} else if (d->type != CONFIG_DOUBLE) {
			if (t == json_type_double) {
				double dv = json_object_get_double(val);
				if (!isfinite(dv) || dv != floor(dv) || fabs(dv) > 9e15) {
					api_error(c->rs, 422, k, "'%s' must be an integer", k);
					goto done;
				}
				snprintf(buf, sizeof(s->v[0]), "%lld", (long long)dv);
			} else if (t == json_type_int)
				snprintf(buf, sizeof(s->v[0]), "%lld", (long long)json_object_get_int64(val));
			else {
				api_error(c->rs, 422, k, "'%s' must be an integer", k);
				goto done;
			}
		} else {
			if (t != json_type_int && t != json_type_double) {
				api_error(c->rs, 422, k, "'%s' must be a number", k);
				goto done;
			}
			double dv = json_object_get_double(val);
			if (!isfinite(dv)) {
				api_error(c->rs, 422, k, "'%s' must be a finite number", k);
				goto done;
			}
			snprintf(buf, sizeof(s->v[0]), "%.17g", dv);
		}
		/* Stored in canonical form, as every writer does. */
		char raw[sizeof(s->v[0])];
		snprintf(raw, sizeof(raw), "%s", buf);
		if (config_canonical(k, raw, buf, sizeof(s->v[0]), &e) == -1) {
			api_error(c->rs, 422, e.field[0] ? e.field : k, "%s", e.msg);
			goto done;
		}
		s->d[s->n++] = d;
	}
	if (s->n > 0) {
		sc_ts_format(c->ctx->now(), now);
		s->now = now;
		if (db_write_txn(c->ctx->db, cfg_patch_fn, s, &e) == -1) {
			api_db_error(c->rs, c->ctx->db, &e);
			goto done;
		}
		for (size_t i = 0; i < s->n; i++) {
			char shown[CONFIG_VALUE_MAX];
			config_display(s->d[i], s->v[i], shown, sizeof(shown));
			log_info("setting %s = %s", s->d[i]->key, shown);
		}
	}
	cfg_get(c);
done:
	free(s);
	json_object_put(body);
}

bool
routes_config(struct api_call *c)
{
	const char *m = c->rq->method;

	if (strcmp(c->path, "/config") != 0)
		return false;
	if (strcmp(m, "GET") == 0)
		cfg_get(c);
	else if (strcmp(m, "PATCH") == 0)
		cfg_patch(c);
	else {
		api_header(c->rs, "Allow", "GET, PATCH");
		api_error(c->rs, 405, NULL, "method %s not allowed here", m);
	}
	return true;
}
