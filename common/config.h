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
	int    request_log_rows;	/* requests kept in request_log; 0 = log off */
};

enum config_type { CONFIG_INT, CONFIG_DOUBLE, CONFIG_INT64 };	/* int, double, int64_t fields */

struct config_desc {
	const char      *key;
	enum config_type type;
	const char      *def;		/* default, as stored */
	double           min, max;	/* inclusive range */
	size_t           offset;	/* into struct config */
	const char      *description;
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
 * ".5" and "0x1p-1" are stored as "0.5". out holds CONFIG_VALUE_MAX bytes.
 * 0, or -1 as config_validate. */
#define CONFIG_VALUE_MAX 40
int config_canonical(const char *key, const char *value, char *out, size_t outlen, struct sc_err *e);
/* Validate and store one value in its canonical form (own transaction). 0 or -1. */
int config_set(sqlite3 *db, const char *key, const char *value, struct sc_err *e);
/* Current stored value (malloc'd) or NULL. */
char *config_get(sqlite3 *db, const char *key);

#endif
