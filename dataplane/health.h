/*
 * GET /health of the data-plane port (SPEC §4): overall status, providers by
 * state, queue depth and capacity.
 */
#ifndef SC_HEALTH_H
#define SC_HEALTH_H

#include "conn.h"

/* Answer on c: 200 while any provider can serve (ready, or full and about to free), else 503. */
void health_handle(struct conn *c, const char *rid);

#endif
