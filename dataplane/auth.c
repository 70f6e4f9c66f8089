/*
 * The client-token check (auth.h). The token is copied out of the request
 * only long enough to hash it, then wiped.
 */
#define _GNU_SOURCE

#include <string.h>
#include <strings.h>

#include "auth.h"
#include "crypto.h"
#include "registry.h"

static int auth_public;	/* listening beyond loopback: a token is always required */

void
auth_set_public(int on)
{
	auth_public = on;
}

void
auth_refuse(struct conn *c, enum auth_verdict v, const char *rid)
{
	if (v == AUTH_FAILED)
		conn_respond_error(c, 500, rid, "token check failed", "internal_error", NULL);
	else
		conn_respond_error(c, 401, rid, "missing or invalid client token (Authorization: Bearer)",
		    "invalid_api_key", "WWW-Authenticate: Bearer\r\n");
}

enum auth_verdict
auth_check(struct conn *c, const struct http_request *req)
{
	const struct http_header *a;
	char tok[512], label[TOKENS_LABEL_MAX + 1];
	int r;

	conn_set_client(c, "");
	if (registry_client_tokens() <= 0 && !auth_public)
		return AUTH_OK;
	a = http_find_header(req, "authorization");
	if (a == NULL || a->value.len < 8 || strncasecmp(a->value.p, "Bearer ", 7) != 0 ||
	    a->value.len - 7 >= sizeof(tok))
		return AUTH_REFUSED;
	memcpy(tok, a->value.p + 7, a->value.len - 7);
	tok[a->value.len - 7] = '\0';
	r = registry_check_token(tok, label);
	crypto_wipe(tok, sizeof(tok));
	if (r == 1) {
		conn_set_trusted(c);	/* no longer a pending stranger (conn.c) */
		conn_set_client(c, label);	/* the request log names the client by its label */
		return AUTH_OK;
	}
	return r == -1 ? AUTH_FAILED : AUTH_REFUSED;
}
