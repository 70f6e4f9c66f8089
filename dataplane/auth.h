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
enum auth_verdict {
	AUTH_OK,	/* the request may go on */
	AUTH_REFUSED,	/* no token, or not a valid one: 401 */
	AUTH_FAILED,	/* the check itself failed: 500 */
};
/* Whether the request may go on. A valid token also makes c trusted
 * (conn_set_trusted) and names the request's client (conn_set_client with
 * the token's label, "" without tokens). Nothing is answered here: a
 * refusal is auth_refuse's, with the request id the caller makes for it. */
enum auth_verdict auth_check(struct conn *c, const struct http_request *req);
/* Answer a refusal of auth_check (AUTH_REFUSED or AUTH_FAILED) on c. */
void auth_refuse(struct conn *c, enum auth_verdict v, const char *rid);

#endif
