/*
 * The data-plane port's front door (router.c): request ids, endpoint and
 * method routing, client authentication (auth.h), then /health (health.h),
 * /v1/models (models.h) or a proxied POST (proxy.h).
 */
#ifndef SC_ROUTER_H
#define SC_ROUTER_H

#include "conn.h"

/* conn_admit_fn for the data-plane port: the endpoint, the method and the
 * client token, decided on the head before any body is read. */
int  router_admit(struct conn *c, const struct http_request *req);
/* conn_handler_fn for the data-plane port (after router_admit). */
void router_handle(struct conn *c, const struct http_request *req, struct sc_buf *body);

#endif
