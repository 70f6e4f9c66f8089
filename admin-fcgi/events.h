/*
 * sidecar-events: the Server-Sent Events stream behind GET /api/v2/events.
 *
 * This header is the part without libfcgi: the per-stream state machine that
 * turns what the database shows (the live status snapshot, the config version,
 * cooldown rows) into SSE text, and the read-only queries that fetch those
 * observations. events_main.c is the thin FastCGI glue around it.
 *
 * Event ids. The browser sends back only the last id it saw (Last-Event-ID),
 * whatever event carried it, so every event carries the whole resume cursor:
 *
 *     id: <cooldown cursor>-<status sequence>
 *
 * The cooldown cursor is the rowid of the newest cooldown_events row already
 * delivered (a reconnect resumes after it, so no cooldown start is lost); the
 * status sequence increases with every status event. Both parts only grow.
 *
 * "event: request" carries one new request_log row (the JSON of reqrow.h) as
 * the data plane's statistics writer commits it. Its cursor (the row's seq)
 * is not part of the id: a stream that opens or reconnects starts at the
 * newest row, and the page reloads the list through GET /api/v2/requests.
 * A stream that falls more than EVENTS_REQUEST_LAG rows behind skips ahead
 * to the newest EVENTS_REQUEST_BATCH (the page is told to reload).
 */
#ifndef SC_EVENTS_H
#define SC_EVENTS_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

#define EVENTS_MAX_ACTIVE      256		/* cooldowns tracked per stream for their end event */
#define EVENTS_HEARTBEAT_MS    10000	/* ": ping" when nothing else was written for this long */
#define EVENTS_RETRY_MS        2000	/* "retry:" sent to the browser */
#define EVENTS_SNAPSHOT_MAX    (4 * 1024 * 1024)	/* largest snapshot we relay, bytes */
#define EVENTS_BUF_CAP         (8 * 1024 * 1024)	/* cap on one batch of output, bytes */
#define EVENTS_COOLDOWN_BATCH  64	/* new cooldown rows read per tick */
#define EVENTS_REQUEST_BATCH   100	/* new request rows sent per tick at most */
#define EVENTS_REQUEST_LAG     1000	/* rows behind past which a stream skips ahead */

/* A cooldown that has started and whose end event is still owed. */
struct events_active {
	int64_t rowid;			/* cooldown_events rowid */
	char    provider_id[37];
	char    provider_name[128];
	int64_t end_ms;			/* planned end, Unix ms (0 = unknown) */
};

/* The state of one open stream. */
struct events_stream {
	int64_t  status_seq;		/* id part of the last status event sent */
	uint64_t status_hash;		/* FNV-1a of the last snapshot sent */
	int      status_sent;		/* a snapshot was sent on this stream */
	int64_t  config_version;	/* last seen meta.config_version, -1 before the first */
	int64_t  cooldown_cursor;	/* highest cooldown rowid delivered */
	int      cursor_known;		/* 0 until resumed or set from the table's max rowid */
	int64_t  request_cursor;	/* highest request_log seq delivered */
	int      request_known;		/* 0 until set from the table's max seq */
	int64_t  last_write_ms;		/* monotonic ms of the last output (heartbeat timer) */
	struct events_active active[EVENTS_MAX_ACTIVE];
	size_t   nactive;
};

/* One cooldown_events row as read from the database. Strings are owned by
 * the caller (they point into a struct events_cooldown_row's storage). */
struct events_cooldown_row {
	int64_t rowid;
	char    id[64];			/* the row's TEXT id */
	char    provider_id[37];
	char    provider_name[128];
	int64_t consecutive_count;
	int64_t cooldown_seconds;
	char    summary[256];		/* response_summary, truncated */
	char    started_at[SC_TS_LEN];
	char    ended_at[SC_TS_LEN];	/* "" when NULL */
};

/* Parse a Last-Event-ID value ("C-S", or a bare "C"); unknown shapes give 0/0.
 * Returns 0 when it was understood, -1 otherwise. */
int events_id_parse(const char *s, int64_t *cooldown_cursor, int64_t *status_seq);

/* Start a stream: resume cursors from last_event_id (may be NULL). The
 * cooldown cursor is what the caller must read after. */
void events_stream_init(struct events_stream *s, const char *last_event_id, int64_t now_ms);

/* Append one SSE event; data may hold newlines (each line becomes a "data:"
 * line). The id is the stream's current cursor pair. 0, or -1 past the cap. */
int events_format(struct events_stream *s, struct sc_buf *out, const char *event, const char *data);

/* The stream preamble: a "retry:" line, a comment, and "event: hello" with
 * {"demo":…} (no id line, so the browser's resume cursor is untouched).
 * demo: started by scripts/run --demo ($SIDECAR_DEMO=1), shown as a banner
 * even before the data plane's first snapshot says so. */
int events_preamble(struct events_stream *s, struct sc_buf *out, int demo);

/* A snapshot was read (NULL when the row is missing): append a status event
 * when it differs from the last one sent. 1 if appended, 0 if not, -1 on cap. */
int events_on_status(struct events_stream *s, struct sc_buf *out, const char *snapshot);

/* meta.config_version was read: the first value is remembered silently; a
 * change appends "event: provider". 1, 0 or -1 as above. */
int events_on_config(struct events_stream *s, struct sc_buf *out, int64_t version);

/* A new cooldown row (rowid above the cursor): appends its start event and
 * tracks it for the end event. now_ms is the wall clock (Unix ms); a row
 * whose planned end already passed gets its end event at once. 1 or -1. */
int events_on_cooldown_start(struct events_stream *s, struct sc_buf *out,
    const struct events_cooldown_row *r, int64_t now_wall_ms);

/* How a tracked cooldown's provider looks now: its cooldown_until in Unix ms
 * (0 = none), and the newest cooldown rowid of that provider. */
typedef int (*events_provider_fn)(void *arg, const char *provider_id,
    int64_t *cooldown_until_ms, int64_t *latest_rowid);

/* Append end events for tracked cooldowns that are over: the planned end
 * passed, the provider's cooldown was cleared (reset) or it was superseded by
 * a newer cooldown, or the provider is gone (lookup returns 1). Returns the
 * number of events appended, or -1 on cap. */
int events_expire_cooldowns(struct events_stream *s, struct sc_buf *out, int64_t now_wall_ms,
    events_provider_fn lookup, void *arg);

/* Append ": ping" when nothing was written for EVENTS_HEARTBEAT_MS. 1, 0, -1. */
int events_heartbeat(struct events_stream *s, struct sc_buf *out, int64_t now_ms);

/* Note that the batch in out was written at now_ms (resets the heartbeat timer). */
void events_written(struct events_stream *s, int64_t now_ms);

/*
 * Database reads. Each prepares, steps and resets at once, so no read
 * transaction stays open between ticks and the WAL can be checkpointed.
 */
struct events_db {
	sqlite3      *db;		/* borrowed; one per thread */
	sqlite3_stmt *snap;		/* live_status */
	sqlite3_stmt *cfg;		/* meta.config_version */
	sqlite3_stmt *cool;		/* new cooldown rows */
	sqlite3_stmt *prov;		/* one provider's cooldown state */
	sqlite3_stmt *maxrow;		/* highest cooldown rowid */
	sqlite3_stmt *reqs;		/* new request_log rows */
	sqlite3_stmt *maxreq;		/* highest request_log seq */
};

int  events_db_init(struct events_db *d, sqlite3 *db, struct sc_err *e);
void events_db_free(struct events_db *d);
/* The snapshot text (malloc'd) or NULL when there is no row. -1 on error. */
int  events_db_snapshot(struct events_db *d, char **out);
/* meta.config_version, or -1 on error. */
int64_t events_db_config_version(struct events_db *d);
/* Highest cooldown rowid (0 when none), -1 on error. */
int64_t events_db_max_cooldown(struct events_db *d);
/* Up to max rows with rowid > after, oldest first; returns the count or -1. */
int  events_db_cooldowns(struct events_db *d, int64_t after, struct events_cooldown_row *rows, size_t max);
/* Highest request_log seq (0 when none), -1 on error. */
int64_t events_db_max_request(struct events_db *d);
/* Append "event: request" for up to EVENTS_REQUEST_BATCH rows after the
 * stream's request cursor (skipping ahead when it lags by more than
 * EVENTS_REQUEST_LAG: then "event: requests_skipped" first). Count or -1. */
int  events_requests(struct events_stream *s, struct events_db *d, struct sc_buf *out);
/* events_provider_fn over struct events_db: 0 found, 1 gone, -1 error. */
int  events_db_provider(void *arg, const char *provider_id, int64_t *cooldown_until_ms, int64_t *latest_rowid);

/* One tick of a stream: read everything and append due events to out.
 * On the first tick of a stream without a resume cursor, cooldowns that
 * started before the stream opened are not replayed (the page loads history
 * through the admin API). Returns the number of events appended, -1 on error. */
int events_tick(struct events_stream *s, struct events_db *d, struct sc_buf *out,
    int64_t now_ms, int64_t now_wall_ms);

#endif
