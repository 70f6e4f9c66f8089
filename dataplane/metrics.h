/*
 * Observability of the data plane (SPEC §6, §8): the Prometheus endpoint on
 * the metrics port, the counters and histograms behind it, and the periodic
 * work that feeds the database — the statistics flush (stats.h) and the live
 * status snapshot (status.h) on one timer, and a maintenance thread for the
 * SQLite quick_check and the backup outcome. docs/metrics.md lists every
 * metric.
 */
#ifndef SC_METRICS_H
#define SC_METRICS_H

#include "conn.h"

struct loop;
struct proxy_result;

/* Set up once the registry is open: start the statistics writer and the
 * maintenance thread, arm the flush/publish timer; 0 or -1. metrics_shutdown
 * runs after the loop ends on a graceful stop: the final flush. */
int  metrics_init(struct loop *l);
void metrics_shutdown(void);

/* One finished request (proxy.h: struct proxy_result): metrics, statistics
 * and the live counts. */
void metrics_request_done(const struct proxy_result *r);

/* Hooks from the request path (proxy.c). */
enum metrics_reject { METRICS_REJECT_OVERFLOW, METRICS_REJECT_TIMEOUT };
void metrics_queue_rejected(enum metrics_reject why);
/* How one upstream attempt ended: fail 0 = an HTTP status arrived (status),
 * 1 = connection failed, 2 = no first byte in time. */
void metrics_upstream_outcome(const char *provider_name, int fail, int status);
void metrics_cooldown_started(const char *provider_name);

/* The whole exposition (text format 0.0.4) into b. */
void metrics_render(struct sc_buf *b);
/* Append s to b as a label value (backslash, quote and newline escaped). */
void metrics_escape_label(struct sc_buf *b, const char *s);

/* conn_handler_fn for the metrics port: GET /metrics. */
void metrics_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);

#endif
