/*
 * One request_log row as JSON: the shape that GET /api/v2/requests lists,
 * GET /api/v2/requests/{id} details and sidecar-events sends as
 * "event: request" (docs/admin-api.md). One column list and one builder, so
 * the three never disagree.
 */
#ifndef SC_ADMIN_REQROW_H
#define SC_ADMIN_REQROW_H

#include <sqlite3.h>
#include <json-c/json.h>

/* The columns reqrow_json reads, in order, from request_log (alias-free). */
#define REQROW_COLS \
	"seq, request_id, finished_at, finished_ms, client, model, provider_id, provider_name, pool, " \
	"status, error_code, attempts, queue_ms, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, " \
	"total_tokens, cost, streamed, client_disconnected"
#define REQROW_NCOLS 21

/* An error: the client got >= 400, or the response broke after it began. */
#define REQROW_ERROR_SQL "(status >= 400 OR error_code <> '')"

/* The row at the statement's current step (columns REQROW_COLS from 0). */
json_object *reqrow_json(sqlite3_stmt *st);

#endif
