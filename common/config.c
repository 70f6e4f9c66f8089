/*
 * Typed access to system_config. The descriptor table below is the single
 * source of truth for each tunable's type, range and default; sql/schema.sql
 * seeds exactly the same keys and defaults (tests/unit/test_config.c compares
 * the two on a freshly created database). Values are stored as text and
 * checked strictly here, so a typo in the admin panel is refused rather than
 * read as 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "redisurl.h"

#define CFG(key, type, def, min, max, desc) \
	{ #key, type, def, min, max, offsetof(struct config, key), desc, NULL, 0 }
#define CFGS(key, def, check, secret, desc) \
	{ #key, CONFIG_STRING, def, 0, sizeof(((struct config *)0)->key) - 1, offsetof(struct config, key), \
	  desc, check, secret }

static int config_check_redis_url(const char *v, const char **why);
static int config_check_name(const char *v, const char **why);

static const struct config_desc config_table[] = {
	CFG(rpm_window_seconds, CONFIG_INT, "60", 1, 3600,
	    "Length of the sliding rate-limit window, seconds"),
	CFG(rpm_window_margin_ms, CONFIG_INT, "500", 0, 60000,
	    "Safety margin added to the window so network jitter never lets the upstream count more than rpm_limit, ms"),
	CFG(queue_capacity, CONFIG_INT, "500", 0, 100000,
	    "Requests that may wait for capacity at once; more are rejected with 503"),
	CFG(queue_timeout_seconds, CONFIG_INT, "30", 1, 3600,
	    "Longest a request waits in the queue before a 503"),
	CFG(retry_after_seconds, CONFIG_INT, "30", 1, 3600,
	    "Retry-After sent with queue rejections, seconds"),
	CFG(cooldown_base_seconds, CONFIG_INT, "30", 1, 86400,
	    "First cooldown after a 429; doubles with each consecutive 429"),
	CFG(cooldown_max_seconds, CONFIG_INT, "600", 1, 86400,
	    "Cap on the exponential cooldown (a longer upstream Retry-After still wins)"),
	CFG(max_attempts, CONFIG_INT, "3", 1, 20,
	    "Upstream attempts per request, retries on other providers included"),
	CFG(recover_wait_seconds, CONFIG_INT, "10", 0, 3600,
	    "Wait for a main-pool provider that recovers within this many seconds before using the fallback pool"),
	CFG(emergency_rpm_ratio, CONFIG_DOUBLE, "0.1", 0, 1,
	    "Share of rpm_limit the emergency channel may use while its provider is cooling"),
	CFG(learn_limits, CONFIG_INT, "1", 0, 1,
	    "1: lower a key's (or model's) effective limit when the upstream answers 429 below rpm_limit, 0: never"),
	CFG(upstream_connect_timeout, CONFIG_INT, "10", 1, 300,
	    "Upstream connect timeout, seconds"),
	CFG(upstream_ttfb_timeout, CONFIG_INT, "120", 1, 3600,
	    "Longest wait for the first response byte from upstream, seconds"),
	CFG(unhealthy_after_failures, CONFIG_INT, "3", 1, 1000,
	    "Consecutive failures (5xx, connect error, first-byte timeout) that make a provider unhealthy"),
	CFG(health_probe_interval_seconds, CONFIG_INT, "30", 1, 86400,
	    "Interval between active probes of an unhealthy provider, seconds"),
	CFG(max_body_bytes, CONFIG_INT64, "33554432", 1024, 1073741824.0,
	    "Largest request body accepted, bytes (413 beyond)"),
	CFG(header_timeout_seconds, CONFIG_INT, "10", 1, 600,
	    "Time a client has to send its request headers (408 beyond)"),
	CFG(max_connections, CONFIG_INT, "4096", 1, 1000000,
	    "Client connections held at once; more are refused cleanly"),
	CFG(max_pending_connections, CONFIG_INT, "1024", 1, 1000000,
	    "Connections sending a request without a valid client token held at once; beyond, or at max_connections, the oldest is closed"),
	CFG(body_timeout_seconds, CONFIG_INT, "10", 1, 3600,
	    "Time a client has to send a request body, plus 1 s per body_min_rate_bytes received (408 beyond)"),
	CFG(body_min_rate_bytes, CONFIG_INT64, "65536", 0, 1073741824.0,
	    "Bytes per second a request body must average past body_timeout_seconds (0: no extension)"),
	CFG(max_body_memory_bytes, CONFIG_INT64, "268435456", 1048576, 1e12,
	    "Memory all request bodies may hold together, bytes (a new body past it gets 503 with Retry-After)"),
	CFG(drain_timeout_seconds, CONFIG_INT, "30", 0, 3600,
	    "On SIGTERM, how long in-flight requests may take to finish"),
	CFG(models_cache_seconds, CONFIG_INT, "300", 0, 86400,
	    "How long upstream model lists are cached for GET /v1/models"),
	CFG(stats_flush_ms, CONFIG_INT, "1000", 100, 60000,
	    "Interval between statistics flushes to the database, ms"),
	CFG(status_publish_ms, CONFIG_INT, "1000", 100, 60000,
	    "Interval between live status snapshots for the dashboard, ms"),
	CFG(stats_retention_days, CONFIG_INT, "90", 1, 3650,
	    "Usage rows older than this are pruned daily"),
	CFG(events_retention_days, CONFIG_INT, "30", 1, 3650,
	    "Cooldown events older than this are pruned daily"),
	CFG(db_size_warn_bytes, CONFIG_INT64, "104857600", 1048576, 1e12,
	    "Database size past which the metrics warn (practical limit 100 MB)"),
	CFG(request_log_rows, CONFIG_INT, "20000", 0, 1000000,
	    "Requests kept in the request log (the most recent ones); 0 turns the log off"),
	CFGS(redis_url, "", config_check_redis_url, 1,
	    "Redis shared by several data planes, redis://[:password@]IP:port[/db]; empty = this host alone"),
	CFGS(cluster_namespace, "sidecar", config_check_name, 0,
	    "Prefix of this cluster's Redis keys, so two clusters can share one Redis"),
	CFGS(cluster_host_name, "", config_check_name, 0,
	    "This data plane's name in the cluster; empty = the host name"),
	CFG(cluster_reply_timeout_ms, CONFIG_INT, "500", 10, 60000,
	    "A Redis reply later than this counts as Redis unreachable, ms"),
	{ NULL, CONFIG_INT, NULL, 0, 0, 0, NULL, NULL, 0 }
};

/* "" or a redis:// URL to an IP literal (redisurl.h). */
static int
config_check_redis_url(const char *v, const char **why)
{
	struct redis_url u;

	if (*v == '\0')
		return 0;
	return redisurl_parse(v, &u, why);
}

/* Letters, digits and ._- (used inside Redis key names and labels); "" allowed. */
static int
config_check_name(const char *v, const char **why)
{
	for (const char *p = v; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '_' || *p == '-')) {
			*why = "only letters, digits, '.', '_' and '-'";
			return -1;
		}
	return 0;
}

/* A string setting's value: 0, or -1 with why set. */
static int
config_parse_string(const struct config_desc *d, const char *value, const char **why)
{
	*why = NULL;
	if (value == NULL || strlen(value) > (size_t)d->max) {
		*why = "too long";
		return -1;
	}
	return d->check != NULL ? d->check(value, why) : 0;
}

static void
config_store_string(struct config *c, const struct config_desc *d, const char *value)
{
	snprintf((char *)c + d->offset, (size_t)d->max + 1, "%s", value);
}

void
config_display(const struct config_desc *d, const char *value, char *out, size_t n)
{
	if (d != NULL && d->secret)
		redisurl_mask(value, out, (unsigned)n);
	else
		snprintf(out, n, "%s", value != NULL ? value : "");
}

const struct config_desc *
config_descs(void)
{
	return config_table;
}

const struct config_desc *
config_find(const char *key)
{
	if (key == NULL)
		return NULL;
	for (const struct config_desc *d = config_table; d->key != NULL; d++)
		if (strcmp(d->key, key) == 0)
			return d;
	return NULL;
}

/* Parse value strictly for d: the whole string, no spaces, in range. */
static int
config_parse(const struct config_desc *d, const char *value, double *out)
{
	char *end = NULL;
	long long ll;
	double v;

	if (value == NULL || *value == '\0' || strlen(value) > 32)
		return -1;
	errno = 0;
	if (d->type == CONFIG_DOUBLE) {
		v = strtod(value, &end);
		if (!isfinite(v))
			return -1;
	} else {
		ll = strtoll(value, &end, 10);
		v = (double)ll;
	}
	/* strtod/strtoll skip leading space and take "+1": the stored text
	 * must be the canonical form, so neither is accepted as input. */
	if (errno != 0 || end == value || *end != '\0' || isspace((unsigned char)value[0]) ||
	    value[0] == '+')
		return -1;
	if (v < d->min || v > d->max)
		return -1;
	*out = v;
	return 0;
}

/* Store a parsed value in the struct field the descriptor points to. */
static void
config_store(struct config *c, const struct config_desc *d, double v)
{
	char *p = (char *)c + d->offset;

	switch (d->type) {
	case CONFIG_INT:
		*(int *)(void *)p = (int)v;
		break;
	case CONFIG_INT64:
		*(int64_t *)(void *)p = (int64_t)v;
		break;
	case CONFIG_DOUBLE:
		*(double *)(void *)p = v;
		break;
	case CONFIG_STRING:	/* config_store_string */
		break;
	}
}

void
config_defaults(struct config *c)
{
	double v;

	memset(c, 0, sizeof(*c));
	for (const struct config_desc *d = config_table; d->key != NULL; d++) {
		if (d->type == CONFIG_STRING)
			config_store_string(c, d, d->def);
		else if (config_parse(d, d->def, &v) == 0)
			config_store(c, d, v);
	}
}

int
config_validate(const char *key, const char *value, struct sc_err *e)
{
	const struct config_desc *d = config_find(key);
	double v;

	if (d == NULL)
		return sc_err_set(e, key, 0, "%s: unknown setting", key ? key : "(null)");
	if (d->type == CONFIG_STRING) {
		const char *why;
		if (config_parse_string(d, value, &why) == -1)
			return sc_err_set(e, key, 0, "%s: %s", key, why ? why : "invalid");
		return 0;
	}
	if (config_parse(d, value, &v) == -1) {
		if (d->type == CONFIG_DOUBLE)
			return sc_err_set(e, key, 0, "%s: must be a number between %g and %g",
			    key, d->min, d->max);
		return sc_err_set(e, key, 0, "%s: must be an integer between %.0f and %.0f",
		    key, d->min, d->max);
	}
	return 0;
}

int
config_canonical(const char *key, const char *value, char *out, size_t outlen, struct sc_err *e)
{
	const struct config_desc *d;
	double v;

	if (config_validate(key, value, e) == -1)
		return -1;
	d = config_find(key);
	if (d->type == CONFIG_STRING) {
		snprintf(out, outlen, "%s", value);
		return 0;
	}
	(void)config_parse(d, value, &v);
	if (d->type != CONFIG_DOUBLE) {
		snprintf(out, outlen, "%lld", (long long)v);
		return 0;
	}
	sc_fmt_double(v, out, outlen);
	return 0;
}

int
config_load(sqlite3 *db, struct config *c, struct sc_err *e)
{
	sqlite3_stmt *st = NULL;
	const struct config_desc *d;
	const char *key, *value;
	double v;
	int rc;

	config_defaults(c);
	rc = sqlite3_prepare_v2(db, "SELECT key, value FROM system_config", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "loading settings");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		key = (const char *)sqlite3_column_text(st, 0);
		value = (const char *)sqlite3_column_text(st, 1);
		if ((d = config_find(key)) == NULL)
			continue;
		if (d->type == CONFIG_STRING) {
			const char *why;
			if (config_parse_string(d, value, &why) == -1) {
				log_warn("setting %s has an invalid value (%s); using the default", d->key, why);
				continue;
			}
			config_store_string(c, d, value);
			continue;
		}
		if (config_parse(d, value, &v) == -1) {
			log_warn("setting %s has an invalid value; using the default %s", d->key, d->def);
			continue;
		}
		config_store(c, d, v);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "loading settings");
	return 0;
}

struct config_set_arg {
	const struct config_desc *d;
	const char *value;
};

static int
config_set_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct config_set_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO system_config (key, value, description) VALUES (?1, ?2, ?3) "
	    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
	    "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE value IS NOT excluded.value",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_set_err(db, rc, e, "storing setting");
	sqlite3_bind_text(st, 1, a->d->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->value, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->d->description, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_set_err(db, rc, e, "storing setting");
	return 0;
}

int
config_set(sqlite3 *db, const char *key, const char *value, struct sc_err *e)
{
	struct config_set_arg a;
	char canon[CONFIG_VALUE_MAX];

	if (config_canonical(key, value, canon, sizeof(canon), e) == -1)
		return -1;
	a.d = config_find(key);
	a.value = canon;
	return db_write_txn(db, config_set_txn, &a, e);
}

char *
config_get(sqlite3 *db, const char *key)
{
	return db_query_text(db, "SELECT value FROM system_config WHERE key = ?1", key);
}
