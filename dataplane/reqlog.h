/*
 * The request log (issue 19, docs/admin-api.md GET /api/v2/requests): one
 * record per finished request — its id (the X-Request-Id the client got),
 * client token label, model, provider, pool, status, error code, every
 * upstream attempt with its outcome, queue wait, TTFB, latency, tokens, cost,
 * streamed, client disconnected — kept in the request_log ring of the most
 * recent request_log_rows rows. Never prompts, responses or keys.
 *
 * Three parts, each a plain function over plain structs:
 *   - the trail: the attempts of one request, filled while it runs
 *     (reqlog_trail_begin when an attempt starts, reqlog_trail_end when its
 *     outcome is known);
 *   - the record and the batch: a finished request copied into owned
 *     storage, and the records of one flush interval (filled on the loop
 *     thread, handed to the statistics writer with the usage aggregate);
 *   - reqlog_write: the INSERTs of a batch and the pruning to exactly N rows,
 *     inside the statistics writer's BEGIN IMMEDIATE transaction.
 */
#ifndef SC_REQLOG_H
#define SC_REQLOG_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "sched.h"
#include "util.h"

#define REQLOG_RID_MAX      128		/* = the data plane's request id cap */
#define REQLOG_LABEL_MAX    128		/* client token labels (tokens_create caps them) */
#define REQLOG_NAME_MAX     128		/* provider names (PROVIDER_NAME_MAX) */
#define REQLOG_MODEL_MAX    255		/* models are cut to this many bytes */
#define REQLOG_ATTEMPTS_MAX 20		/* max_attempts' upper bound; more are not kept */
#define REQLOG_BATCH_MAX    20000	/* records held between flushes; more are dropped and counted */

/* How one upstream attempt ended. One name table: reqlog_outcome_name. */
enum reqlog_outcome {
	REQLOG_PENDING,		/* still running (never stored: closed at the end of the request) */
	REQLOG_OK,		/* 2xx */
	REQLOG_RATE_LIMITED,	/* 429 */
	REQLOG_INVALID_KEY,	/* 401 / 403 */
	REQLOG_SERVER_ERROR,	/* 5xx (and a 2xx HTML page) */
	REQLOG_CLIENT_ERROR,	/* another 4xx, passed through */
	REQLOG_CONNECT_ERROR,	/* the connection failed */
	REQLOG_TTFB_TIMEOUT,	/* no first byte within upstream_ttfb_timeout */
	REQLOG_START_FAILED,	/* the transfer could not be started (shaping, URL) */
	REQLOG_CLIENT_CLOSED,	/* the client went away during the attempt */
	REQLOG_INTERRUPTED,	/* a 2xx whose body broke after it started */
	REQLOG_OUTCOME_N
};

struct reqlog_attempt {
	char                provider_id[37];
	char                provider_name[REQLOG_NAME_MAX + 1];
	enum sched_pool     pool;
	int                 status;		/* upstream HTTP status, 0 when none came */
	enum reqlog_outcome outcome;
	int64_t             start_ms;		/* from the request's arrival */
	int64_t             duration_ms;	/* start to answer (response head) or failure;
						 * to the end for client_closed / interrupted */
};

/* The attempts of one running request. Most make one: it is kept in the
 * trail itself (no allocation per request), more move to the heap. The
 * trail must not be copied (a may point into it). */
struct reqlog_trail {
	struct reqlog_attempt *a;	/* &first, or an owned array of cap */
	int                    n, cap;
	struct reqlog_attempt  first;	/* a's storage while cap is 1 */
};

/* One finished request. */
struct reqlog_record {
	char                   request_id[REQLOG_RID_MAX + 1];
	int64_t                finished_ms;	/* Unix ms */
	char                   client[REQLOG_LABEL_MAX + 1];
	char                   model[REQLOG_MODEL_MAX + 1];
	char                   provider_id[37];	/* "" when no provider was tried */
	char                   provider_name[REQLOG_NAME_MAX + 1];
	enum sched_pool        pool;		/* meaningful when provider_id is not "" */
	int                    status;		/* sent to the client; 499 = went away */
	char                   error_code[32];	/* "" on success */
	int64_t                queue_ms, ttfb_ms, latency_ms;	/* ttfb -1 none */
	int64_t                prompt_tokens, completion_tokens, total_tokens;	/* -1 unknown */
	double                 cost;
	bool                   streamed, client_disconnected;
	struct reqlog_attempt *att;		/* owned array of natt; NULL when the one
						 * attempt is in first (records move: no
						 * pointer into one) */
	int                    natt;
	struct reqlog_attempt  first;		/* the one attempt most requests make */
};

/* The records of one flush interval, oldest first. */
struct reqlog_batch {
	struct reqlog_record *r;	/* owned array */
	size_t                n, cap;
	uint64_t              dropped;	/* records refused at REQLOG_BATCH_MAX */
};

const char *reqlog_outcome_name(enum reqlog_outcome o);
/* The outcome of an upstream answer (failed: no answer came; ttfb: because
 * of the first-byte timeout). */
enum reqlog_outcome reqlog_outcome_of(bool failed, bool ttfb, int status);

void reqlog_trail_init(struct reqlog_trail *t);
void reqlog_trail_free(struct reqlog_trail *t);
/* An attempt starts at start_ms after the request's arrival. */
void reqlog_trail_begin(struct reqlog_trail *t, const char *provider_id, const char *provider_name,
    enum sched_pool pool, int64_t start_ms);
/* The running attempt ended (no-op when none runs); now_ms is from the arrival too. */
void reqlog_trail_end(struct reqlog_trail *t, enum reqlog_outcome o, int status, int64_t now_ms);
/* The request ended (now_ms from its arrival). how: REQLOG_CLIENT_CLOSED
 * (the client went away), REQLOG_INTERRUPTED (the response broke after it
 * began) or REQLOG_PENDING (it ended normally). An attempt still running
 * ends so (as interrupted when how is PENDING); a last attempt that had
 * answered 2xx takes how, its duration running to now. */
void reqlog_trail_finish(struct reqlog_trail *t, enum reqlog_outcome how, int status, int64_t now_ms);
/* A failure the last attempt reported after it had answered 2xx (a
 * rate-limit error event inside its stream): its outcome becomes o and its
 * status the failure's. No-op unless that attempt ended ok. */
void reqlog_trail_late(struct reqlog_trail *t, enum reqlog_outcome o, int status);
/* The running attempt, or NULL. */
struct reqlog_attempt *reqlog_trail_open(struct reqlog_trail *t);

void reqlog_record_free(struct reqlog_record *r);

void reqlog_batch_init(struct reqlog_batch *b);
void reqlog_batch_free(struct reqlog_batch *b);
/* Take a new slot at the end (zeroed), or NULL at REQLOG_BATCH_MAX (b->dropped++). */
struct reqlog_record *reqlog_batch_add(struct reqlog_batch *b);
/* Append src to dst (src is left empty); records past the cap are dropped oldest first. */
void reqlog_batch_merge(struct reqlog_batch *dst, struct reqlog_batch *src);

struct request_result;
/* Fill r (zeroed by reqlog_batch_add) from a finished request (the
 * request-done event, events.h) at wall_ms; the attempts are copied. */
void reqlog_record_fill(struct reqlog_record *r, const struct request_result *res, int64_t wall_ms);

/* The statistics writer's handle on its connection for the request log:
 * made once for the connection's life (reqlog_writer_new: NULL with e),
 * freed before the connection is closed. */
struct reqlog_writer;
struct reqlog_writer *reqlog_writer_new(sqlite3 *db, struct sc_err *e);
void reqlog_writer_free(struct reqlog_writer *w);
/* Insert the newest min(b->n, keep) records of b and delete every row but
 * the newest keep (keep 0 empties the log), inside the caller's write
 * transaction on w's connection. 0 or -1 with e. */
int reqlog_write(struct reqlog_writer *w, const struct reqlog_batch *b, int keep, struct sc_err *e);
/* db_write_txn for the transaction that calls reqlog_write, with SQLite's
 * foreign-key enforcement off for its length (reqlog.c says why). Every
 * statement in fn must keep the keys itself. 0 or -1 with e. */
int reqlog_write_txn(sqlite3 *db, db_txn_fn fn, void *arg, struct sc_err *e);

#endif
