/*
 * Usage statistics (SPEC §6) and the data plane's database writer: every
 * finished request (a listener of events.h) is added to an in-memory
 * aggregate per (provider, model, hour) and per (date, pool); the writer
 * thread — the one thread of the data plane that writes the database, with
 * its own connection — flushes the aggregate every stats_flush_ms in one
 * BEGIN IMMEDIATE transaction of UPSERTs, together with the live status
 * snapshot (status.h; persist.c runs the timer), prunes old rows once a day,
 * and runs the registry's writes (cooldowns, health, invalid keys: stats_submit).
 *
 * The event loop never waits for SQLite: stats_handoff only moves the
 * aggregate into a one-slot hand-off (merging when the writer is still busy
 * with the previous one) and wakes the writer. What the writer cannot write
 * (SQLITE_BUSY past the retry budget, a read-only disk) stays pending and is
 * merged into the next attempt, up to STATS_MAX_ENTRIES rows; beyond that
 * new rows are dropped, counted and logged, never silently.
 *
 * The same transaction writes the request log (reqlog.h): each finished
 * request's record travels with the aggregate through the same hand-off and
 * pending batch, and reqlog_write inserts it and prunes the ring to
 * request_log_rows rows.
 *
 * The aggregate functions (stats_agg_*, stats_write, stats_prune) are plain
 * code over plain structs and a connection, for the unit tests.
 */
#ifndef SC_STATS_H
#define SC_STATS_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "sched.h"
#include "util.h"

#define STATS_MAX_ENTRIES 50000	/* usage rows held in memory at most (about 10 MB) */
#define STATS_MODEL_MAX   255	/* model names are cut to this many bytes */

struct event;
struct request_result;

/* One request as the statistics see it. */
struct stats_sample {
	char    provider_id[37];
	char    model[STATS_MODEL_MAX + 1];	/* as forwarded */
	enum sched_pool pool;
	int64_t wall_s;			/* when it finished, Unix seconds */
	int64_t prompt_tokens;		/* >= 0 */
	int64_t completion_tokens;
	int64_t total_tokens;
	double  cost;
	int     error;
	int     unknown_usage;		/* a 2xx whose token counts were never reported */
	int64_t latency_ms;		/* TTFT for streams, whole response otherwise; queue time excluded */
};

/* Sum of one (provider, model, hour bucket). */
struct stats_usage {
	char    provider_id[37];
	char   *model;			/* owned */
	char    hour[14];		/* YYYY-MM-DDTHH */
	int64_t prompt_tokens, completion_tokens, total_tokens;
	double  cost;
	int64_t requests, errors, unknown_usage, latency_sum_ms;
};

/* Sum of one (date, pool). */
struct stats_daily {
	char    date[11];		/* YYYY-MM-DD */
	enum sched_pool pool;
	int64_t requests, errors, tokens;
	double  cost;
};

struct stats_agg {
	struct stats_usage *u;		/* owned array */
	size_t              nu, cu;
	uint32_t           *idx;	/* owned: open-addressing hash of u, 0 = empty, else index + 1 */
	size_t              nidx;	/* power of two, >= 2 * nu */
	size_t              last;	/* index + 1 of the row the last sample went to, 0 = none:
					 * looked at before the hash (most samples repeat it) */
	struct stats_daily *d;		/* owned array (few entries: days × 3 pools) */
	size_t              nd, cd;
	uint64_t            dropped;	/* samples refused at the cap */
	/* The UTC hour the last sample fell in, formatted once per hour (not
	 * per sample: gmtime + strftime cost more than the rest of an add). */
	bool                bucket_set;
	int64_t             bucket_hour;	/* wall_s / 3600 of hour and date below */
	char                hour[14];
	char                date[11];
};

/* Fill s from a finished request; 0, or -1 when it is not counted (no
 * provider was ever chosen, so there is no row it could belong to). */
int  stats_sample_from(const struct request_result *r, int64_t wall_s, struct stats_sample *s);

void stats_agg_init(struct stats_agg *a);
void stats_agg_free(struct stats_agg *a);
int  stats_agg_empty(const struct stats_agg *a);
/* 0, or -1 when a new usage row would pass STATS_MAX_ENTRIES (a->dropped++). */
int  stats_agg_add(struct stats_agg *a, const struct stats_sample *s);
/* Move everything of src into dst (src is left empty). */
void stats_agg_merge(struct stats_agg *dst, struct stats_agg *src);

/* The UPSERTs of a (inside the caller's transaction); rows of providers that
 * no longer exist are skipped. unique_providers of the touched days is
 * recomputed from provider_usage_logs. 0 or -1 with e. */
int  stats_write(sqlite3 *db, const struct stats_agg *a, struct sc_err *e);
/* Replace the live_status row (inside the caller's transaction). */
int  stats_write_snapshot(sqlite3 *db, const char *json, int64_t wall_s, struct sc_err *e);
/* Delete usage and daily rows older than stats_days and cooldown events
 * older than events_days before now_s (own transaction). Rows deleted, or -1. */
int64_t stats_prune(sqlite3 *db, int64_t now_s, int stats_days, int events_days, struct sc_err *e);

/* The writer thread. */
struct stats_settings {
	int stats_retention_days;
	int events_retention_days;
	int request_log_rows;		/* 0: no request log (records are not even collected) */
};
/* Open the writer's connection to db_path and start the thread. 0 or -1 with e. */
int  stats_start(const char *db_path, struct sc_err *e);
/* The writer's connection as stats_start opens it (bench/reqlog_write opens
 * the same). NULL with e. */
sqlite3 *stats_writer_db_open(const char *db_path, struct sc_err *e);
/* Loop thread: count one finished request; stats_on_event is the listener
 * that calls it. */
void stats_record(const struct request_result *r);
void stats_on_event(const struct event *ev);
/* Loop thread: hand what was counted (with_stats) and/or a snapshot (json,
 * may be NULL) to the writer; never blocks on the database. */
void stats_handoff(int with_stats, const char *json, const struct stats_settings *s);
/* Final flush of everything and of json (may be NULL), then stop the thread. */
void stats_stop(const char *json);

/* Other writes of the data plane (cooldowns, health, invalid keys) go
 * through the same thread so that a locked database never stalls the loop:
 * fn runs in its own write transaction on the writer's connection, in
 * submission order, as soon as the writer is free; free_arg(arg) follows.
 * what names the write in the log line of a failure. 0, or -1 when the
 * writer does not run (the caller writes itself; arg is untouched). */
#define STATS_MAX_JOBS 10000	/* queued writes at most; more are dropped and logged */
int  stats_submit(int (*fn)(sqlite3 *db, void *arg, struct sc_err *e), void *arg, void (*free_arg)(void *),
    const char *what);

/* For the metrics. */
#define STATS_FLUSH_BUCKETS 10
extern const double stats_flush_bounds[STATS_FLUSH_BUCKETS];	/* seconds */
struct stats_info {
	uint64_t flush_bucket[STATS_FLUSH_BUCKETS];	/* non-cumulative counts */
	uint64_t flush_count;
	double   flush_sum_s;
	double   flush_max_s;
	uint64_t flush_failures;	/* transactions that did not commit */
	uint64_t dropped;		/* samples lost at the memory cap */
	uint64_t pending;		/* usage rows waiting for a successful write */
	uint64_t rows_pruned;
	uint64_t jobs_failed;		/* submitted writes that failed or were dropped */
	double   handoff_max_s;	/* longest stats_handoff on the loop thread */
	uint64_t log_written;		/* request log records written */
	uint64_t log_dropped;		/* request log records lost at the memory cap */
};
void stats_get_info(struct stats_info *out);

#endif
