/*
 * Observability of the data plane (SPEC §8): the Prometheus endpoint on the
 * metrics port and the counters and histograms behind it, fed as a listener
 * of events.h; a maintenance thread for the SQLite quick_check and the
 * backup outcome. docs/metrics.md lists every metric.
 */
#ifndef SC_METRICS_H
#define SC_METRICS_H

#include "conn.h"

struct event;

/* Start the maintenance thread on db_path; 0 or -1. metrics_shutdown stops it. */
int  metrics_init(const char *db_path);
void metrics_shutdown(void);

/* Listener (events.h): count requests, upstream outcomes, cooldowns and
 * queue rejections. */
void metrics_on_event(const struct event *ev);

/* The whole exposition (text format 0.0.4) into b. */
void metrics_render(struct sc_buf *b);
/* Append s to b as a label value (backslash, quote and newline escaped). */
void metrics_escape_label(struct sc_buf *b, const char *s);

/* conn_handler_fn for the metrics port: GET /metrics. */
void metrics_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);

#endif
