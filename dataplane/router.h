/*
 * The data-plane port's front door (router.c): request ids, endpoint and
 * method routing, client authentication (auth.h), then /health (health.h),
 * /v1/models (models.h) or a proxied POST (proxy.h).
 */
#ifndef SC_ROUTER_H
#define SC_ROUTER_H

#include "conn.h"

/* conn_handler_fn for the data-plane port. */
void router_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);

#endif
