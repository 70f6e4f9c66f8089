/*
 * Typed access to the system_config table. One descriptor per tunable (name,
 * type, default, range, description) is the single source of truth for
 * validation; sql/schema.sql seeds the same keys with the same defaults.
 */
#ifndef SC_CONFIG_H
#define SC_CONFIG_H

#include <sqlite3.h>
#include <stdint.h>
#include "util.h"

/* A snapshot of every tunable, loaded at start and re-read on change. */
struct config {
	int    rpm_window_seconds;
	int    rpm_window_margin_ms;
	int    queue_capacity;
	int    queue_timeout_seconds;
	int    retry_after_seconds;
	int    cooldown_base_seconds;
	int    cooldown_max_seconds;
	int    max_attempts;
	int    recover_wait_seconds;
	double emergency_rpm_ratio;
	int    learn_limits;		/* 0/1: learn lower limits from 429s (sched.h) */
	int    upstream_connect_timeout;
	int    upstream_ttfb_timeout;
	int    unhealthy_after_failures;
	int    health_probe_interval_seconds;
	int64_t max_body_bytes;
	int    header_timeout_seconds;
	int    max_connections;
	int    max_pending_connections;
	int    body_timeout_seconds;
	int64_t body_min_rate_bytes;
	int64_t max_body_memory_bytes;
	int    drain_timeout_seconds;
	int    models_cache_seconds;
	int    stats_flush_ms;
	int    status_publish_ms;
	int    stats_retention_days;
	int    events_retention_days;
	int64_t db_size_warn_bytes;
	/* Cluster admission through Redis (docs/cluster.md). */
	char   redis_url[256];		/* "" = single host; secret (password): show with config_display */
	char   cluster_namespace[65];	/* prefix of every Redis key: two clusters may share one Redis */
	char   cluster_host_name[65];	/* this host in the cluster; "" = the host name */
	int    cluster_reply_timeout_ms;	/* a Redis reply later than this counts as Redis unreachable */
	int    request_log_rows;	/* requests kept in request_log; 0 = log off */
};

/* int, double, int64_t fields; CONFIG_STRING: a char array of max + 1 bytes. */
enum config_type { CONFIG_INT, CONFIG_DOUBLE, CONFIG_INT64, CONFIG_STRING };

struct config_desc {
	const char      *key;
	enum config_type type;
	const char      *def;		/* default, as stored */
	double           min, max;	/* inclusive range; CONFIG_STRING: max = longest length */
	size_t           offset;	/* into struct config */
	const char      *description;
	/* CONFIG_STRING: 0 when value is acceptable, else -1 with why set. */
	int            (*check)(const char *value, const char **why);
	int              secret;	/* holds a password: shown only through config_display */
};

/* The descriptor table, terminated by a NULL key. */
const struct config_desc *config_descs(void);
const struct config_desc *config_find(const char *key);

/* Defaults only (no database). */
void config_defaults(struct config *c);
/* Load every row; unknown keys are ignored, invalid values keep the default
 * and are logged. 0 or -1 on a database error. */
int config_load(sqlite3 *db, struct config *c, struct sc_err *e);
/* Check a value against its descriptor (type, range). 0 or -1 with e->field set. */
int config_validate(const char *key, const char *value, struct sc_err *e);
/* The canonical text of a valid value (what every writer stores): integers
 * in decimal, doubles in the shortest %g form that reads back the same, so
 * ".5" and "0x1p-1" are stored as "0.5"; strings as given. out holds CONFIG_VALUE_MAX bytes.
 * 0, or -1 as config_validate. */
#define CONFIG_VALUE_MAX 300	/* a redis_url fits (REDISURL_MAX) */
int config_canonical(const char *key, const char *value, char *out, size_t outlen, struct sc_err *e);
/* Validate and store one value in its canonical form (own transaction). 0 or -1. */
int config_set(sqlite3 *db, const char *key, const char *value, struct sc_err *e);
/* value as it may be shown (admin API, sidecarctl, logs): a secret's
 * password masked. Writes at most n bytes to out, NUL-terminated. */
void config_display(const struct config_desc *d, const char *value, char *out, size_t n);
/* Current stored value (malloc'd) or NULL. */
char *config_get(sqlite3 *db, const char *key);

#endif
