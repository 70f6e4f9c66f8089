/*
 * Client authentication of the data-plane port (SPEC §4): when client tokens
 * exist (or the port listens beyond loopback) a request must carry one as
 * Authorization: Bearer; the registry checks it against the stored hashes.
 */
#ifndef SC_AUTH_H
#define SC_AUTH_H

#include "conn.h"

/* The port listens beyond loopback: refuse requests without a valid token
 * even if every token was revoked after the start. */
void auth_set_public(int on);
/* 1 when the request may go on (a valid token also makes c trusted:
 * conn_set_trusted, and names the request's client: conn_set_client with
 * the token's label, "" without tokens); else the 401/500 answer is
 * already on c. */
int  auth_check(struct conn *c, const struct http_request *req, const char *rid);

#endif
