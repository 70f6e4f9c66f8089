/*
 * The Prometheus endpoint on the metrics port (SPEC §8). A minimal body for
 * now: the process is up, and requests counted by status class; the full set
 * of metrics is added here later.
 */
#ifndef SC_METRICS_H
#define SC_METRICS_H

#include "conn.h"

struct loop;
struct proxy_result;

/* Set up (timers for periodic work such as statistics flushes) once the
 * registry is open; 0 or -1. metrics_shutdown runs after the loop ends, on
 * a graceful stop: the place for a final flush. */
int  metrics_init(struct loop *l);
void metrics_shutdown(void);

/* One finished request (proxy.h: struct proxy_result). */
void metrics_request_done(const struct proxy_result *r);
/* conn_handler_fn for the metrics port: GET /metrics. */
void metrics_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);

#endif
