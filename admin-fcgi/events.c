/*
 * The event-building side of sidecar-events: SSE framing, the per-stream
 * cursors (status sequence, cooldown rowid, config version, request seq),
 * cooldown start/end tracking, new request log rows, heartbeats, and the
 * read-only queries behind them.
 * Nothing here touches libfcgi, so tests/unit/test_events.c drives it with a
 * temporary database and plain buffers.
 */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "db.h"
#include "events.h"
#include "reqrow.h"

int
events_id_parse(const char *s, int64_t *cooldown_cursor, int64_t *status_seq)
{
	char *end;
	long long c, q = 0;

	*cooldown_cursor = 0;
	*status_seq = 0;
	if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 64)
		return -1;
	errno = 0;
	c = strtoll(s, &end, 10);
	if (errno != 0 || c < 0)
		return -1;
	if (*end == '-') {
		const char *p = end + 1;

		if (*p < '0' || *p > '9')
			return -1;
		q = strtoll(p, &end, 10);
		if (errno != 0 || q < 0)
			return -1;
	}
	if (*end != '\0')
		return -1;
	*cooldown_cursor = c;
	*status_seq = q;
	return 0;
}

void
events_stream_init(struct events_stream *s, const char *last_event_id, int64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->config_version = -1;
	s->last_write_ms = now_ms;
	if (last_event_id != NULL &&
	    events_id_parse(last_event_id, &s->cooldown_cursor, &s->status_seq) == 0)
		s->cursor_known = 1;
}

int
events_format(struct events_stream *s, struct sc_buf *out, const char *event, const char *data)
{
	const char *p, *nl;

	if (sc_buf_printf(out, "event: %s\nid: %" PRId64 "-%" PRId64 "\n",
	    event, s->cooldown_cursor, s->status_seq) == -1)
		return -1;
	/* One "data:" line per line of data; the browser joins them with "\n". */
	for (p = data; ; p = nl + 1) {
		size_t n;

		nl = strchr(p, '\n');
		n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (sc_buf_append(out, "data: ", 6) == -1 ||
		    sc_buf_append(out, p, n) == -1 ||
		    sc_buf_append(out, "\n", 1) == -1)
			return -1;
		if (nl == NULL)
			break;
	}
	return sc_buf_append(out, "\n", 1);
}

int
events_preamble(struct events_stream *s, struct sc_buf *out, int demo)
{
	(void)s;
	return sc_buf_printf(out, "retry: %d\n: sidecar-events\n\nevent: hello\ndata: {\"demo\":%s}\n\n",
	    EVENTS_RETRY_MS, demo ? "true" : "false");
}

/* FNV-1a, enough to tell "the snapshot changed" without keeping a copy. */
static uint64_t
events_hash(const char *p)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *p != '\0'; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ULL;
	}
	return h;
}

int
events_on_status(struct events_stream *s, struct sc_buf *out, const char *snapshot)
{
	uint64_t h;

	if (snapshot == NULL)
		return 0;
	h = events_hash(snapshot);
	if (s->status_sent && h == s->status_hash)
		return 0;
	s->status_seq++;
	if (events_format(s, out, "status", snapshot) == -1)
		return -1;
	s->status_hash = h;
	s->status_sent = 1;
	return 1;
}

int
events_on_config(struct events_stream *s, struct sc_buf *out, int64_t version)
{
	char data[64];

	if (version < 0)
		return 0;
	if (s->config_version < 0) {
		s->config_version = version;
		return 0;
	}
	if (version == s->config_version)
		return 0;
	s->config_version = version;
	snprintf(data, sizeof(data), "{\"config_version\":%" PRId64 "}", version);
	return events_format(s, out, "provider", data) == -1 ? -1 : 1;
}

/* Unix ms of a UTC text timestamp, 0 when empty or malformed. */
static int64_t
events_ts_ms(const char *ts)
{
	int64_t t;

	if (ts == NULL || *ts == '\0' || sc_ts_parse(ts, &t) == -1)
		return 0;
	return t * 1000;
}

/* The JSON of one cooldown event ("start" or "end"). */
static int
events_cooldown_event(struct events_stream *s, struct sc_buf *out, const char *kind,
    const struct events_cooldown_row *r, const struct events_active *a)
{
	struct json_object *o = json_object_new_object();
	int rc;

	json_object_object_add(o, "kind", json_object_new_string(kind));
	if (r != NULL) {
		json_object_object_add(o, "seq", json_object_new_int64(r->rowid));
		json_object_object_add(o, "id", json_object_new_string(r->id));
		json_object_object_add(o, "provider_id", json_object_new_string(r->provider_id));
		json_object_object_add(o, "provider_name", json_object_new_string(r->provider_name));
		json_object_object_add(o, "consecutive_count", json_object_new_int64(r->consecutive_count));
		json_object_object_add(o, "cooldown_seconds", json_object_new_int64(r->cooldown_seconds));
		json_object_object_add(o, "response_summary", json_object_new_string(r->summary));
		json_object_object_add(o, "started_at", json_object_new_string(r->started_at));
		json_object_object_add(o, "ended_at",
		    r->ended_at[0] ? json_object_new_string(r->ended_at) : NULL);
	} else {
		json_object_object_add(o, "seq", json_object_new_int64(a->rowid));
		json_object_object_add(o, "provider_id", json_object_new_string(a->provider_id));
		json_object_object_add(o, "provider_name", json_object_new_string(a->provider_name));
	}
	rc = events_format(s, out, "cooldown",
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return rc;
}

/* Drop tracked entry i (order does not matter). */
static void
events_active_remove(struct events_stream *s, size_t i)
{
	s->active[i] = s->active[--s->nactive];
}

int
events_on_cooldown_start(struct events_stream *s, struct sc_buf *out,
    const struct events_cooldown_row *r, int64_t now_wall_ms)
{
	struct events_active *a;
	int64_t end_ms = events_ts_ms(r->ended_at);

	if (r->rowid > s->cooldown_cursor)
		s->cooldown_cursor = r->rowid;
	if (events_cooldown_event(s, out, "start", r, NULL) == -1)
		return -1;
	/* Replayed rows that are long over get no separate end event: the
	 * start event's ended_at already says when it ended. */
	if (end_ms != 0 && end_ms <= now_wall_ms)
		return 1;
	if (s->nactive == EVENTS_MAX_ACTIVE)
		events_active_remove(s, 0);	/* the page also learns ends from the snapshot */
	a = &s->active[s->nactive++];
	a->rowid = r->rowid;
	snprintf(a->provider_id, sizeof(a->provider_id), "%s", r->provider_id);
	snprintf(a->provider_name, sizeof(a->provider_name), "%s", r->provider_name);
	a->end_ms = end_ms;
	return 1;
}

int
events_expire_cooldowns(struct events_stream *s, struct sc_buf *out, int64_t now_wall_ms,
    events_provider_fn lookup, void *arg)
{
	size_t i = 0;
	int n = 0;

	while (i < s->nactive) {
		struct events_active *a = &s->active[i];
		int64_t until = 0, latest = 0;
		int over, rc;

		rc = lookup(arg, a->provider_id, &until, &latest);
		if (rc == -1)
			return -1;
		if (rc == 1)
			over = 1;			/* provider deleted */
		else if (latest > a->rowid)
			over = 1;			/* superseded by a newer cooldown */
		else
			/* cleared (reset) or expired; a longer upstream Retry-After
			 * that moved cooldown_until past the planned end keeps it on */
			over = until == 0 || until <= now_wall_ms;
		if (!over) {
			i++;
			continue;
		}
		if (events_cooldown_event(s, out, "end", NULL, a) == -1)
			return -1;
		n++;
		events_active_remove(s, i);
	}
	return n;
}

int
events_heartbeat(struct events_stream *s, struct sc_buf *out, int64_t now_ms)
{
	if (now_ms - s->last_write_ms < EVENTS_HEARTBEAT_MS)
		return 0;
	return sc_buf_append(out, ": ping\n\n", 8) == -1 ? -1 : 1;
}

void
events_written(struct events_stream *s, int64_t now_ms)
{
	s->last_write_ms = now_ms;
}

/*
 * Database side.
 */

int
events_db_init(struct events_db *d, sqlite3 *db, struct sc_err *e)
{
	static const struct {
		size_t off;
		const char *sql;
	} q[] = {
		{ offsetof(struct events_db, snap),
		  "SELECT snapshot FROM live_status WHERE id = 1" },
		{ offsetof(struct events_db, cfg),
		  "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'config_version'" },
		{ offsetof(struct events_db, cool),
		  "SELECT e.rowid, e.id, e.provider_id, COALESCE(p.name, ''), e.consecutive_count,"
		  " e.cooldown_seconds, e.response_summary, e.started_at, e.ended_at"
		  " FROM cooldown_events e LEFT JOIN providers p ON p.id = e.provider_id"
		  " WHERE e.rowid > ?1 ORDER BY e.rowid LIMIT ?2" },
		{ offsetof(struct events_db, prov),
		  "SELECT p.cooldown_until, (SELECT max(rowid) FROM cooldown_events c"
		  " WHERE c.provider_id = p.id) FROM providers p WHERE p.id = ?1" },
		{ offsetof(struct events_db, maxrow),
		  "SELECT COALESCE(max(rowid), 0) FROM cooldown_events" },
		{ offsetof(struct events_db, reqs),
		  "SELECT " REQROW_COLS " FROM request_log WHERE seq > ?1 ORDER BY seq LIMIT ?2" },
		{ offsetof(struct events_db, maxreq),
		  "SELECT COALESCE(max(seq), 0) FROM request_log" },
	};
	size_t i;

	memset(d, 0, sizeof(*d));
	d->db = db;
	for (i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		sqlite3_stmt **st = (sqlite3_stmt **)(void *)((char *)d + q[i].off);
		int rc = sqlite3_prepare_v3(db, q[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

		if (rc != SQLITE_OK) {
			db_set_err(db, rc, e, "prepare");
			events_db_free(d);
			return -1;
		}
	}
	return 0;
}

void
events_db_free(struct events_db *d)
{
	sqlite3_finalize(d->snap);
	sqlite3_finalize(d->cfg);
	sqlite3_finalize(d->cool);
	sqlite3_finalize(d->prov);
	sqlite3_finalize(d->maxrow);
	sqlite3_finalize(d->reqs);
	sqlite3_finalize(d->maxreq);
	memset(d, 0, sizeof(*d));
}

int
events_db_snapshot(struct events_db *d, char **out)
{
	int rc, ret = 0;

	*out = NULL;
	rc = sqlite3_step(d->snap);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(d->snap, 0);
		int n = sqlite3_column_bytes(d->snap, 0);

		if (t != NULL && n > 0 && n <= EVENTS_SNAPSHOT_MAX)
			*out = sc_xstrdup((const char *)t);
	} else if (rc != SQLITE_DONE) {
		ret = -1;
	}
	sqlite3_reset(d->snap);
	return ret;
}

/* First column of a one-row statement, reset at once; dflt when no row. */
static int64_t
events_db_int(sqlite3_stmt *st, int64_t dflt)
{
	int64_t v = dflt;
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		v = -1;
	sqlite3_reset(st);
	return v;
}

int64_t
events_db_config_version(struct events_db *d)
{
	return events_db_int(d->cfg, -1);
}

int64_t
events_db_max_cooldown(struct events_db *d)
{
	return events_db_int(d->maxrow, 0);
}

int64_t
events_db_max_request(struct events_db *d)
{
	return events_db_int(d->maxreq, 0);
}

int
events_requests(struct events_stream *s, struct events_db *d, struct sc_buf *out)
{
	int64_t max;
	int rc, n = 0;

	max = events_db_max_request(d);
	if (max < 0)
		return -1;
	if (!s->request_known) {
		/* A new stream starts at the newest row: the page has the list. */
		s->request_cursor = max;
		s->request_known = 1;
		return 0;
	}
	if (max <= s->request_cursor)
		return 0;
	if (max - s->request_cursor > EVENTS_REQUEST_LAG) {
		s->request_cursor = max - EVENTS_REQUEST_BATCH;
		if (events_format(s, out, "requests_skipped", "{}") == -1)
			return -1;
		n++;
	}
	sqlite3_bind_int64(d->reqs, 1, s->request_cursor);
	sqlite3_bind_int(d->reqs, 2, EVENTS_REQUEST_BATCH);
	while ((rc = sqlite3_step(d->reqs)) == SQLITE_ROW) {
		json_object *o = reqrow_json(d->reqs);
		int fr = events_format(s, out, "request",
		    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		s->request_cursor = sqlite3_column_int64(d->reqs, 0);
		json_object_put(o);
		if (fr == -1) {
			sqlite3_reset(d->reqs);
			return -1;
		}
		n++;
	}
	sqlite3_reset(d->reqs);
	return rc == SQLITE_DONE ? n : -1;
}

/* Copy column i as text into a fixed buffer (truncating). */
static void
events_col(sqlite3_stmt *st, int i, char *out, size_t outlen)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(out, outlen, "%s", t != NULL ? (const char *)t : "");
}

int
events_db_cooldowns(struct events_db *d, int64_t after, struct events_cooldown_row *rows, size_t max)
{
	size_t n = 0;
	int rc;

	sqlite3_bind_int64(d->cool, 1, after);
	sqlite3_bind_int64(d->cool, 2, (sqlite3_int64)max);
	while (n < max && (rc = sqlite3_step(d->cool)) == SQLITE_ROW) {
		struct events_cooldown_row *r = &rows[n++];

		r->rowid = sqlite3_column_int64(d->cool, 0);
		events_col(d->cool, 1, r->id, sizeof(r->id));
		events_col(d->cool, 2, r->provider_id, sizeof(r->provider_id));
		events_col(d->cool, 3, r->provider_name, sizeof(r->provider_name));
		r->consecutive_count = sqlite3_column_int64(d->cool, 4);
		r->cooldown_seconds = sqlite3_column_int64(d->cool, 5);
		events_col(d->cool, 6, r->summary, sizeof(r->summary));
		events_col(d->cool, 7, r->started_at, sizeof(r->started_at));
		events_col(d->cool, 8, r->ended_at, sizeof(r->ended_at));
	}
	if (n < max && rc != SQLITE_DONE) {
		sqlite3_reset(d->cool);
		return -1;
	}
	sqlite3_reset(d->cool);
	return (int)n;
}

int
events_db_provider(void *arg, const char *provider_id, int64_t *cooldown_until_ms, int64_t *latest_rowid)
{
	struct events_db *d = arg;
	int rc, ret = 1;

	*cooldown_until_ms = 0;
	*latest_rowid = 0;
	sqlite3_bind_text(d->prov, 1, provider_id, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(d->prov);
	if (rc == SQLITE_ROW) {
		*cooldown_until_ms = events_ts_ms((const char *)sqlite3_column_text(d->prov, 0));
		*latest_rowid = sqlite3_column_int64(d->prov, 1);
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = -1;
	}
	sqlite3_reset(d->prov);
	return ret;
}

int
events_tick(struct events_stream *s, struct events_db *d, struct sc_buf *out,
    int64_t now_ms, int64_t now_wall_ms)
{
	struct events_cooldown_row *rows = NULL;
	char *snap = NULL;
	int n = 0, k, i, rc;
	int64_t v;

	if (!s->cursor_known) {
		v = events_db_max_cooldown(d);
		if (v < 0)
			return -1;
		s->cooldown_cursor = v;
		s->cursor_known = 1;
	}
	/* Cooldowns first: their ids advance the cursor that the status
	 * event then carries too. */
	rows = sc_xcalloc(EVENTS_COOLDOWN_BATCH, sizeof(*rows));
	k = events_db_cooldowns(d, s->cooldown_cursor, rows, EVENTS_COOLDOWN_BATCH);
	if (k < 0)
		goto fail;
	for (i = 0; i < k; i++) {
		if (events_on_cooldown_start(s, out, &rows[i], now_wall_ms) == -1)
			goto fail;
		n++;
	}
	rc = events_expire_cooldowns(s, out, now_wall_ms, events_db_provider, d);
	if (rc < 0)
		goto fail;
	n += rc;

	if ((rc = events_requests(s, d, out)) < 0)
		goto fail;
	n += rc;

	v = events_db_config_version(d);
	if ((rc = events_on_config(s, out, v)) < 0)
		goto fail;
	n += rc;

	if (events_db_snapshot(d, &snap) == -1)
		goto fail;
	if ((rc = events_on_status(s, out, snap)) < 0)
		goto fail;
	n += rc;

	if (out->len == 0 && (rc = events_heartbeat(s, out, now_ms)) < 0)
		goto fail;
	free(snap);
	free(rows);
	return n;
fail:
	free(snap);
	free(rows);
	return -1;
}
