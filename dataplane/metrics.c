/*
 * Prometheus text exposition for the metrics port. Counters live in memory;
 * rendering writes them into one buffer per scrape.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "proxy.h"

static unsigned long long metrics_by_class[6];	/* requests by status class 1xx..5xx; [0] other */

int
metrics_init(struct loop *l)
{
	return 0;
}

void
metrics_shutdown(void)
{
}

void
metrics_request_done(const struct proxy_result *r)
{
	int k = r->status / 100;

	metrics_by_class[k >= 1 && k <= 5 ? k : 0]++;
}

void
metrics_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	static const char *const cls[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };
	struct sc_buf b;
	int i;

	if (!http_slice_eq(req->method, "GET") || req->target.len < 8 ||
	    memcmp(req->target.p, "/metrics", 8) != 0 ||
	    (req->target.len > 8 && req->target.p[8] != '?')) {
		conn_respond(c, 404, NULL, "text/plain; charset=utf-8", "not found\n", 10);
		return;
	}
	sc_buf_init(&b, 1024 * 1024);
	sc_buf_printf(&b, "# HELP sidecar_up Whether the data plane is running.\n"
	    "# TYPE sidecar_up gauge\nsidecar_up 1\n"
	    "# HELP sidecar_requests_total Client requests finished, by status class.\n"
	    "# TYPE sidecar_requests_total counter\n");
	for (i = 0; i < 6; i++)
		sc_buf_printf(&b, "sidecar_requests_total{code=\"%s\"} %llu\n", cls[i], metrics_by_class[i]);
	conn_respond(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
	sc_buf_free(&b);
}
