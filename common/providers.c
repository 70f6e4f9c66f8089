/*
 * The provider record: validation of every field an operator can set,
 * storage with the key encrypted (provider id as associated data) before it
 * reaches SQLite, reading back with or without decryption, masking for
 * display, and re-encryption of every key under a new encryption key.
 * Storage functions run inside the caller's write transaction (db_write_txn),
 * so an import or a rekey is all or nothing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "db.h"
#include "providers.h"

static void provider_model_rpm_clear(struct provider *p);

#define PROVIDER_NAME_MAX      128
#define PROVIDER_KEY_MIN       8
#define PROVIDER_KEY_MAX       512
#define PROVIDER_URL_MAX       2048
#define PROVIDER_PREFIX_MAX    128
#define PROVIDER_REASON_MAX    1024
#define PROVIDER_METADATA_MAX  65536
#define PROVIDER_RPM_MAX       100000
#define PROVIDER_TPM_MAX       1000000000
#define PROVIDER_WEIGHT_MAX    1000.0
#define PROVIDER_COST_MAX      1000000.0

/* Columns in the order provider_from_row reads them. */
#define PROVIDER_COLUMNS \
	"id, name, api_key, api_key_mask, endpoint_url, model_prefix, pool, status, " \
	"status_reason, source, rpm_limit, tpm_limit, weight, cost_per_1k, cooldown_until, " \
	"consecutive_429, metadata, created_at, updated_at"

static const char *const pool_names[] = { "main", "fallback" };
static const char *const status_names[] = { "active", "disabled", "invalid" };
static const char *const source_names[] = { "yaml", "api", "webui", "cli" };

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Index of s in names[0..n), or -1. */
static int
provider_enum_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
provider_pool_name(enum provider_pool p)
{
	return (unsigned)p < NELEM(pool_names) ? pool_names[p] : "?";
}

int
provider_pool_parse(const char *s, enum provider_pool *out)
{
	int i = provider_enum_index(pool_names, NELEM(pool_names), s);

	if (i >= 0)
		*out = (enum provider_pool)i;
	return i >= 0 ? 0 : -1;
}

const char *
provider_status_name(enum provider_status s)
{
	return (unsigned)s < NELEM(status_names) ? status_names[s] : "?";
}

int
provider_status_parse(const char *s, enum provider_status *out)
{
	int i = provider_enum_index(status_names, NELEM(status_names), s);

	if (i >= 0)
		*out = (enum provider_status)i;
	return i >= 0 ? 0 : -1;
}

void
provider_init(struct provider *p)
{
	memset(p, 0, sizeof(*p));
	p->pool = POOL_MAIN;
	p->status = PSTATUS_ACTIVE;
	p->rpm_limit = 40;
	p->weight = 1.0;
	p->compat.stream_usage = true;
}

void
provider_clear(struct provider *p)
{
	if (p == NULL)
		return;
	crypto_free_secret(p->api_key);
	free(p->name);
	free(p->api_key_mask);
	free(p->endpoint_url);
	free(p->model_prefix);
	free(p->status_reason);
	free(p->source);
	free(p->metadata);
	provider_model_rpm_clear(p);
	provider_init(p);
}

void
provider_list_free(struct provider_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		provider_clear(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Length of s in bytes if it is well-formed UTF-8 of printable characters
 * (no C0 or C1 controls, DEL, or the line/paragraph separators U+2028/9),
 * -1 otherwise. nospace also refuses spaces. Names end up in Prometheus
 * labels, HTTP headers, JSON and log lines: each needs valid UTF-8. */
static long
provider_printable(const char *s, int nospace)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, len;
	uint32_t cp;

	while (i < n) {
		if ((len = sc_utf8_next(u + i, n - i, &cp)) == 0)
			return -1;
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
		    (nospace && cp == ' '))
			return -1;
		i += len;
	}
	return (long)n;
}

/* Every string in a JSON value (object keys included) is valid UTF-8 with
 * no NUL: json-c keeps "\u0000" and, without its UTF-8 flag, raw bytes. */
static int
provider_json_utf8(struct json_object *o, int depth)
{
	size_t i, n;

	if (depth > 32)
		return 0;
	switch (json_object_get_type(o)) {
	case json_type_string:
		return sc_utf8_valid(json_object_get_string(o), (size_t)json_object_get_string_len(o));
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			if (!sc_utf8_valid(k, strlen(k)) || !provider_json_utf8(v, depth + 1))
				return 0;
		}
		return 1;
	}
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			if (!provider_json_utf8(json_object_array_get_idx(o, i), depth + 1))
				return 0;
		return 1;
	default:
		return 1;
	}
}

/* Plain HTTP is allowed only to these hosts (tests, local mocks). */
static int
provider_host_is_loopback(const char *host, size_t len)
{
	return (len == 9 && strncasecmp(host, "127.0.0.1", 9) == 0) ||
	    (len == 9 && strncasecmp(host, "localhost", 9) == 0) ||
	    (len == 5 && strncmp(host, "[::1]", 5) == 0);
}

/* An absolute http(s) URL with a plain host name or address, optional port,
 * optional path; no credentials, spaces, query or fragment. */
static int
provider_validate_url(const char *url, struct sc_err *e)
{
	const char *p, *host, *hend;
	int https;
	long port;

	if (url == NULL || *url == '\0')
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: required");
	if (strlen(url) > PROVIDER_URL_MAX || provider_printable(url, 1) < 0)
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: not a valid URL");
	if (strncasecmp(url, "https://", 8) == 0) {
		https = 1;
		host = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		https = 0;
		host = url + 7;
	} else
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: must start with https://");
	if (*host == '[') {
		hend = strchr(host, ']');
		if (hend == NULL)
			return sc_err_set(e, "endpoint_url", 0, "endpoint_url: not a valid URL");
		hend++;
	} else {
		for (hend = host; *hend != '\0' && *hend != ':' && *hend != '/'; hend++)
			if (!isalnum((unsigned char)*hend) && *hend != '.' && *hend != '-' && *hend != '_')
				return sc_err_set(e, "endpoint_url", 0,
				    "endpoint_url: not a valid URL (bad character in host)");
	}
	if (hend == host)
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: no host");
	p = hend;
	if (*p == ':') {
		char *end;

		port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/'))
			return sc_err_set(e, "endpoint_url", 0, "endpoint_url: bad port");
		p = end;
	}
	if (*p != '\0' && *p != '/')
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: not a valid URL");
	if (strpbrk(p, "?#") != NULL)
		return sc_err_set(e, "endpoint_url", 0, "endpoint_url: must not have a query or fragment");
	if (!https && !provider_host_is_loopback(host, (size_t)(hend - host)))
		return sc_err_set(e, "endpoint_url", 0,
		    "endpoint_url: must use https:// (plain http only for 127.0.0.1, localhost, [::1])");
	return 0;
}

/* Metadata: NULL, or the text of a JSON object of bounded size. */
static int
provider_validate_metadata(const char *md, struct sc_err *e)
{
	struct json_object *o;
	int ok;

	if (md == NULL)
		return 0;
	if (strlen(md) > PROVIDER_METADATA_MAX)
		return sc_err_set(e, "metadata", 0, "metadata: larger than %d bytes", PROVIDER_METADATA_MAX);
	if (!sc_utf8_valid(md, strlen(md)))
		return sc_err_set(e, "metadata", 0, "metadata: not valid UTF-8");
	o = json_tokener_parse(md);
	ok = o != NULL && json_object_is_type(o, json_type_object);
	if (ok && !provider_json_utf8(o, 0)) {
		json_object_put(o);
		return sc_err_set(e, "metadata", 0, "metadata: text must be valid UTF-8 without NUL characters");
	}
	json_object_put(o);
	if (!ok)
		return sc_err_set(e, "metadata", 0, "metadata: must be a JSON object");
	return 0;
}

int
provider_validate(const struct provider *p, struct sc_err *e)
{
	long n;

	if (p->name == NULL || (n = provider_printable(p->name, 0)) < 1 || n > PROVIDER_NAME_MAX)
		return sc_err_set(e, "name", 0, "name: 1 to %d bytes of printable UTF-8 text", PROVIDER_NAME_MAX);
	if (p->api_key == NULL) {
		if (p->id[0] == '\0')
			return sc_err_set(e, "api_key", 0, "api_key: required");
	} else {
		n = provider_printable(p->api_key, 1);
		if (n < PROVIDER_KEY_MIN || n > PROVIDER_KEY_MAX)
			return sc_err_set(e, "api_key", 0,
			    "api_key: %d to %d printable characters without spaces",
			    PROVIDER_KEY_MIN, PROVIDER_KEY_MAX);
	}
	if (provider_validate_url(p->endpoint_url, e) == -1)
		return -1;
	if (p->model_prefix == NULL || *p->model_prefix == '\0')
		return sc_err_set(e, "model_prefix", 0, "model_prefix: required (e.g. \"nvidia/\")");
	n = provider_printable(p->model_prefix, 1);
	if (n < 1 || n > PROVIDER_PREFIX_MAX)
		return sc_err_set(e, "model_prefix", 0,
		    "model_prefix: 1 to %d characters without spaces", PROVIDER_PREFIX_MAX);
	if ((unsigned)p->pool > POOL_FALLBACK)
		return sc_err_set(e, "pool", 0, "pool: must be main or fallback");
	if ((unsigned)p->status > PSTATUS_INVALID)
		return sc_err_set(e, "status", 0, "status: must be active, disabled or invalid");
	if (p->status_reason != NULL && strlen(p->status_reason) > PROVIDER_REASON_MAX)
		return sc_err_set(e, "status_reason", 0, "status_reason: at most %d bytes", PROVIDER_REASON_MAX);
	if (p->status_reason != NULL && !sc_utf8_valid(p->status_reason, strlen(p->status_reason)))
		return sc_err_set(e, "status_reason", 0, "status_reason: not valid UTF-8");
	if (p->source != NULL && provider_enum_index(source_names, NELEM(source_names), p->source) < 0)
		return sc_err_set(e, "source", 0, "source: must be yaml, api, webui or cli");
	if (p->rpm_limit < 1 || p->rpm_limit > PROVIDER_RPM_MAX)
		return sc_err_set(e, "rpm_limit", 0, "rpm_limit: must be a positive integer (1 to %d)", PROVIDER_RPM_MAX);
	if (p->tpm_limit < 0 || p->tpm_limit > PROVIDER_TPM_MAX)
		return sc_err_set(e, "tpm_limit", 0, "tpm_limit: must be a non-negative integer (0 to %d, 0 = no limit)",
		    PROVIDER_TPM_MAX);
	if (!isfinite(p->weight) || p->weight <= 0 || p->weight > PROVIDER_WEIGHT_MAX)
		return sc_err_set(e, "weight", 0, "weight: must be a number greater than 0 and at most %g",
		    PROVIDER_WEIGHT_MAX);
	if (!isfinite(p->cost_per_1k) || p->cost_per_1k < 0 || p->cost_per_1k > PROVIDER_COST_MAX)
		return sc_err_set(e, "cost_per_1k", 0, "cost_per_1k: must be a non-negative number (at most %g)",
		    PROVIDER_COST_MAX);
	if (provider_validate_metadata(p->metadata, e) == -1)
		return -1;
	return 0;
}

static void
provider_model_rpm_clear(struct provider *c)
{
	for (size_t i = 0; i < c->n_model_rpm; i++)
		free(c->model_rpm[i].model);
	free(c->model_rpm);
	c->model_rpm = NULL;
	c->n_model_rpm = 0;
}

static int
provider_model_rpm_cmp(const void *a, const void *b)
{
	return strcmp(((const struct provider_model_rpm *)a)->model, ((const struct provider_model_rpm *)b)->model);
}

/* metadata.model_rpm_limits: an object of model name -> requests per window. */
static int
provider_model_rpm_parse(struct json_object *md, struct provider *c, struct sc_err *e)
{
	struct json_object *v;
	size_t n;

	if (!json_object_object_get_ex(md, "model_rpm_limits", &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return sc_err_set(e, "model_rpm_limits", 0, "model_rpm_limits: must be an object of model: rpm");
	n = (size_t)json_object_object_length(v);
	if (n > PROVIDER_MODEL_RPM_MAX)
		return sc_err_set(e, "model_rpm_limits", 0, "model_rpm_limits: at most %d models", PROVIDER_MODEL_RPM_MAX);
	c->model_rpm = calloc(n ? n : 1, sizeof(*c->model_rpm));
	if (c->model_rpm == NULL)
		abort();
	json_object_object_foreach(v, model, lim) {
		int64_t rpm;

		if (*model == '\0' || strlen(model) > 256)
			return sc_err_set(e, "model_rpm_limits", 0, "model_rpm_limits: a model name must be 1 to 256 bytes");
		if (!json_object_is_type(lim, json_type_int) || (rpm = json_object_get_int64(lim)) < 1 || rpm > 100000)
			return sc_err_set(e, "model_rpm_limits", 0,
			    "model_rpm_limits: %.64s must be an integer from 1 to 100000", model);
		c->model_rpm[c->n_model_rpm].model = sc_xstrdup(model);
		c->model_rpm[c->n_model_rpm].rpm = (int)rpm;
		c->n_model_rpm++;
	}
	qsort(c->model_rpm, c->n_model_rpm, sizeof(*c->model_rpm), provider_model_rpm_cmp);
	return 0;
}

/* Read one optional boolean compat option; absent leaves *out as it is. */
static int
provider_compat_bool(struct json_object *md, const char *key, bool *out, struct sc_err *e)
{
	struct json_object *v;

	if (!json_object_object_get_ex(md, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return sc_err_set(e, "metadata", 0, "metadata: %s must be true or false", key);
	*out = json_object_get_boolean(v) != 0;
	return 0;
}

int
provider_parse_compat(struct provider *p, struct sc_err *e)
{
	struct json_object *md;
	int ret = 0;

	provider_model_rpm_clear(p);
	p->compat.max_tokens_field = false;
	p->compat.flatten_content = false;
	p->compat.stream_usage = true;
	if (p->metadata == NULL || *p->metadata == '\0')
		return 0;
	md = json_tokener_parse(p->metadata);
	if (md == NULL || !json_object_is_type(md, json_type_object)) {
		json_object_put(md);
		return sc_err_set(e, "metadata", 0, "metadata: must be a JSON object");
	}
	if (provider_compat_bool(md, "max_tokens_field", &p->compat.max_tokens_field, e) == -1 ||
	    provider_compat_bool(md, "flatten_content", &p->compat.flatten_content, e) == -1 ||
	    provider_compat_bool(md, "stream_usage", &p->compat.stream_usage, e) == -1 ||
	    provider_model_rpm_parse(md, p, e) == -1)
		ret = -1;
	if (ret == -1)
		provider_model_rpm_clear(p);
	json_object_put(md);
	return ret;
}

/* Only the known-public shape of a key is kept: a lowercase vendor prefix
 * such as "nvapi-" or "sk-", then at most 4 + 4 characters of the secret. */
void
provider_mask_key(const char *key, char out[], size_t outlen)
{
	size_t len, pre = 0, body;

	if (out == NULL || outlen == 0)
		return;
	out[0] = '\0';
	if (key == NULL) {
		snprintf(out, outlen, "****");
		return;
	}
	len = strlen(key);
	while (pre < len && key[pre] >= 'a' && key[pre] <= 'z')
		pre++;
	if (pre > 0 && pre < len && key[pre] == '-' && pre + 1 <= 8)
		pre++;
	else
		pre = 0;
	body = len - pre;
	/* Below 12 secret characters, 4 + 4 would show most of the key. */
	if (body < 12 || outlen < pre + 4 + 3 + 4 + 1) {
		snprintf(out, outlen, "****");
		return;
	}
	snprintf(out, outlen, "%.*s%.4s\xe2\x80\xa6%s", (int)pre, key, key + pre, key + len - 4);
}

/* Owned copy of a column's text ("" for NULL). */
static char *
provider_col_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return sc_xstrdup(t ? (const char *)t : "");
}

/* Fill out from a row of PROVIDER_COLUMNS, decrypting the key when k is set. */
static int
provider_from_row(sqlite3_stmt *st, const struct crypto_key *k, struct provider *out, struct sc_err *e)
{
	const char *t;
	int64_t ts;

	provider_init(out);
	snprintf(out->id, sizeof(out->id), "%s", (const char *)sqlite3_column_text(st, 0));
	out->name = provider_col_dup(st, 1);
	out->api_key_mask = provider_col_dup(st, 3);
	out->endpoint_url = provider_col_dup(st, 4);
	out->model_prefix = provider_col_dup(st, 5);
	if (provider_pool_parse((const char *)sqlite3_column_text(st, 6), &out->pool) == -1)
		out->pool = POOL_MAIN;
	if (provider_status_parse((const char *)sqlite3_column_text(st, 7), &out->status) == -1)
		out->status = PSTATUS_INVALID;
	out->status_reason = provider_col_dup(st, 8);
	out->source = provider_col_dup(st, 9);
	out->rpm_limit = sqlite3_column_int(st, 10);
	out->tpm_limit = sqlite3_column_int(st, 11);
	out->weight = sqlite3_column_double(st, 12);
	out->cost_per_1k = sqlite3_column_double(st, 13);
	t = (const char *)sqlite3_column_text(st, 14);
	out->cooldown_until = (t != NULL && sc_ts_parse(t, &ts) == 0) ? ts : 0;
	out->consecutive_429 = sqlite3_column_int(st, 15);
	out->metadata = provider_col_dup(st, 16);
	snprintf(out->created_at, sizeof(out->created_at), "%s",
	    sqlite3_column_text(st, 17) ? (const char *)sqlite3_column_text(st, 17) : "");
	snprintf(out->updated_at, sizeof(out->updated_at), "%s",
	    sqlite3_column_text(st, 18) ? (const char *)sqlite3_column_text(st, 18) : "");
	if (provider_parse_compat(out, NULL) == -1) {
		out->compat.max_tokens_field = false;
		out->compat.flatten_content = false;
		out->compat.stream_usage = true;
	}
	if (k != NULL && crypto_decrypt(k, out->id, (const char *)sqlite3_column_text(st, 2),
	    &out->api_key, NULL, NULL) == -1) {
		/* A rekey since the program loaded its key says so (503 upstairs). */
		if (crypto_check_current(sqlite3_db_handle(st), k, e) == 0)
			sc_err_set(e, "api_key", 0, "provider %s: key does not decrypt "
			    "(wrong encryption key or damaged row)", out->name);
		provider_clear(out);
		return -1;
	}
	return 0;
}

/* Drop trailing slashes so "…/v1/" and "…/v1" are the same endpoint. */
static void
provider_normalize(struct provider *p)
{
	size_t n;

	if (p->endpoint_url == NULL)
		return;
	n = strlen(p->endpoint_url);
	while (n > 8 && p->endpoint_url[n - 1] == '/')
		p->endpoint_url[--n] = '\0';
}

/* Encrypt p->api_key under p->id and refresh the mask; *stored is malloc'd.
 * Inside the write transaction, so a rekey that committed since the program
 * loaded k is seen here and nothing unreadable is written. */
static int
provider_seal(sqlite3 *db, const struct crypto_key *k, struct provider *p, char **stored, struct sc_err *e)
{
	char mask[64];

	*stored = NULL;
	if (crypto_check_current(db, k, e) == -1)
		return -1;
	*stored = crypto_encrypt(k, p->id, p->api_key, strlen(p->api_key));
	if (*stored == NULL)
		return sc_err_set(e, "api_key", 0, "api_key: encryption failed");
	provider_mask_key(p->api_key, mask, sizeof(mask));
	free(p->api_key_mask);
	p->api_key_mask = sc_xstrdup(mask);
	return 0;
}

/* A failed write: name the field for UNIQUE(name), else SQLite's reason. */
static int
provider_write_err(sqlite3 *db, int rc, const struct provider *p, struct sc_err *e)
{
	if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE &&
	    strstr(sqlite3_errmsg(db), "providers.name") != NULL)
		return sc_err_set(e, "name", 0, "name: a provider named \"%s\" already exists", p->name);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return sc_err_set(e, NULL, 0, "provider %s: %s", p->name, sqlite3_errmsg(db));
	return db_set_err(db, rc, e, "storing provider");
}

/* Bind the fields shared by INSERT and UPDATE as ?2..?14. */
static void
provider_bind_fields(sqlite3_stmt *st, const struct provider *p)
{
	sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, p->endpoint_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, p->model_prefix, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, provider_pool_name(p->pool), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, provider_status_name(p->status), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, p->status_reason ? p->status_reason : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, p->source ? p->source : "api", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 9, p->rpm_limit);
	sqlite3_bind_int(st, 10, p->tpm_limit);
	sqlite3_bind_double(st, 11, p->weight);
	sqlite3_bind_double(st, 12, p->cost_per_1k);
	sqlite3_bind_text(st, 13, p->metadata ? p->metadata : "{}", -1, SQLITE_STATIC);
}

int
provider_insert(sqlite3 *db, const struct crypto_key *k, struct provider *p, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char *stored = NULL;
	int rc, ret = -1;

	provider_normalize(p);
	if (p->api_key == NULL)
		return sc_err_set(e, "api_key", 0, "api_key: required");
	if (p->id[0] == '\0')
		sc_uuid(p->id);
	if (provider_validate(p, e) == -1 || provider_parse_compat(p, e) == -1)
		return -1;
	if (provider_seal(db, k, p, &stored, e) == -1)
		return -1;
	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO providers (id, name, endpoint_url, model_prefix, pool, status, status_reason, "
	    "source, rpm_limit, tpm_limit, weight, cost_per_1k, metadata, api_key, api_key_mask) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		db_set_err(db, rc, e, "storing provider");
		goto fail;
	}
	sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
	provider_bind_fields(st, p);
	sqlite3_bind_text(st, 14, stored, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 15, p->api_key_mask, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		provider_write_err(db, rc, p, e);
		goto fail;
	}
	ret = 0;
fail:
	sqlite3_finalize(st);
	free(stored);
	return ret;
}

/* Cooldown state (cooldown_until, consecutive_429) belongs to the data plane
 * and is left alone here, so an edit never revives a cooling key. */
int
provider_update(sqlite3 *db, const struct crypto_key *k, struct provider *p, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	char *stored = NULL;
	int rc, ret = -1;

	provider_normalize(p);
	if (p->id[0] == '\0')
		return sc_err_set(e, "id", 0, "provider has no id");
	if (provider_validate(p, e) == -1 || provider_parse_compat(p, e) == -1)
		return -1;
	if (p->api_key != NULL && provider_seal(db, k, p, &stored, e) == -1)
		return -1;
	rc = sqlite3_prepare_v2(db,
	    "UPDATE providers SET name = ?2, endpoint_url = ?3, model_prefix = ?4, pool = ?5, "
	    "status = ?6, status_reason = ?7, source = ?8, rpm_limit = ?9, tpm_limit = ?10, "
	    "weight = ?11, cost_per_1k = ?12, metadata = ?13, "
	    "api_key = coalesce(?14, api_key), api_key_mask = coalesce(?15, api_key_mask), "
	    "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		db_set_err(db, rc, e, "storing provider");
		goto fail;
	}
	sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
	provider_bind_fields(st, p);
	if (stored != NULL) {
		sqlite3_bind_text(st, 14, stored, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 15, p->api_key_mask, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		provider_write_err(db, rc, p, e);
		goto fail;
	}
	if (sqlite3_changes(db) == 0) {
		sc_err_set(e, "id", 0, "provider not found");
		goto fail;
	}
	ret = 0;
fail:
	sqlite3_finalize(st);
	free(stored);
	return ret;
}

/* One UPDATE/DELETE by id; "not found" when it touched no row. */
static int
provider_exec_id(sqlite3 *db, const char *sql, const char *id, const char *a, const char *b,
    struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "provider");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (a != NULL)
		sqlite3_bind_text(st, 2, a, -1, SQLITE_STATIC);
	if (b != NULL)
		sqlite3_bind_text(st, 3, b, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "provider");
	if (sqlite3_changes(db) == 0)
		return sc_err_set(e, "id", 0, "provider not found");
	return 0;
}

int
provider_delete(sqlite3 *db, const char *id, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (provider_exec_id(db, "DELETE FROM providers WHERE id = ?1", id, NULL, NULL, e) == -1)
		return -1;
	/* The operator's cooldown-reset counter (admin API) goes with the row. */
	rc = sqlite3_prepare_v2(db, "DELETE FROM meta WHERE key = 'cooldown_reset:' || ?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_set_err(db, rc, e, "deleting provider");
}

int
provider_set_status(sqlite3 *db, const char *id, enum provider_status st, const char *reason,
    struct sc_err *e)
{
	if ((unsigned)st > PSTATUS_INVALID)
		return sc_err_set(e, "status", 0, "status: must be active, disabled or invalid");
	if (reason != NULL && strlen(reason) > PROVIDER_REASON_MAX)
		return sc_err_set(e, "status_reason", 0, "status_reason: at most %d bytes", PROVIDER_REASON_MAX);
	return provider_exec_id(db,
	    "UPDATE providers SET status = ?2, status_reason = ?3, "
	    "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?1",
	    id, provider_status_name(st), reason ? reason : "", e);
}

int
provider_get(sqlite3 *db, const struct crypto_key *k, const char *which, const char *value,
    struct provider *out, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	const char *sql;
	int rc, ret;

	provider_init(out);
	if (which != NULL && strcmp(which, "name") == 0)
		sql = "SELECT " PROVIDER_COLUMNS " FROM providers WHERE name = ?1";
	else if (which != NULL && strcmp(which, "id") == 0)
		sql = "SELECT " PROVIDER_COLUMNS " FROM providers WHERE id = ?1";
	else
		return sc_err_set(e, NULL, 0, "provider_get: which must be \"id\" or \"name\"");
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "reading provider");
	sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = provider_from_row(st, k, out, e);
	else if (rc == SQLITE_DONE)
		ret = 1;
	else
		ret = db_set_err(db, rc, e, "reading provider");
	sqlite3_finalize(st);
	return ret;
}

int
provider_list(sqlite3 *db, const struct crypto_key *k, struct provider_list *out, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	size_t alloc = 0;
	int rc;

	out->v = NULL;
	out->n = 0;
	rc = sqlite3_prepare_v2(db, "SELECT " PROVIDER_COLUMNS " FROM providers ORDER BY name", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "listing providers");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out->n == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			out->v = sc_xrealloc(out->v, alloc * sizeof(*out->v));
		}
		if (provider_from_row(st, k, &out->v[out->n], e) == -1)
			goto fail;
		out->n++;
	}
	if (rc != SQLITE_DONE) {
		db_set_err(db, rc, e, "listing providers");
		goto fail;
	}
	sqlite3_finalize(st);
	return 0;
fail:
	sqlite3_finalize(st);
	provider_list_free(out);
	return -1;
}

/* Re-encrypt every key from oldk to newk; inside the caller's transaction,
 * together with crypto_check_store(newk), so a rekey is all or nothing. */
int
provider_rekey_all(sqlite3 *db, const struct crypto_key *oldk, const struct crypto_key *newk,
    int *count, struct sc_err *e)
{
	struct provider_list l;
	sqlite3_stmt *st = NULL;
	char *stored;
	int rc, ret = -1;

	if (count != NULL)
		*count = 0;
	/* Two rekeys at once: the second finds the first's check value. */
	if (crypto_check_current(db, oldk, e) == -1)
		return -1;
	if (provider_list(db, oldk, &l, e) == -1)
		return -1;
	rc = sqlite3_prepare_v2(db, "UPDATE providers SET api_key = ?2 WHERE id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		db_set_err(db, rc, e, "rekey");
		goto fail;
	}
	for (size_t i = 0; i < l.n; i++) {
		stored = crypto_encrypt(newk, l.v[i].id, l.v[i].api_key, strlen(l.v[i].api_key));
		if (stored == NULL) {
			sc_err_set(e, NULL, 0, "rekey: encryption failed");
			goto fail;
		}
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, l.v[i].id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, stored, -1, SQLITE_TRANSIENT);
		free(stored);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			db_set_err(db, rc, e, "rekey");
			goto fail;
		}
		if (count != NULL)
			(*count)++;
	}
	ret = 0;
fail:
	sqlite3_finalize(st);
	provider_list_free(&l);
	return ret;
}
