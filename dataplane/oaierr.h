/*
 * OpenAI-shaped error bodies:
 *   {"error":{"message":"...","type":"...","param":null,"code":null}}
 * for errors the sidecar produces itself, and for upstream errors that come
 * in another shape (NIM's {"status":429,"title":"Too Many Requests"}, HTML,
 * empty bodies). The HTTP status is always the caller's to keep; messages
 * never carry anything that looks like a key.
 */
#ifndef SC_OAIERR_H
#define SC_OAIERR_H

#include <stddef.h>
#include "util.h"

/* "type" for a status: 400 invalid_request_error, 401 authentication_error,
 * 403 permission_error, 404 not_found_error, 429 rate_limit_error, other 4xx
 * invalid_request_error, 5xx (and anything else) server_error. */
const char *oaierr_type(int status);

/* Append an error body to out. param and code may be NULL (JSON null).
 * The message is redacted (redact_text, common/redact.h) and escaped. 0, or -1 past out's cap. */
int oaierr_format(struct sc_buf *out, int status, const char *message, const char *param,
    const char *code);

/* An upstream error response body body[0..len) with HTTP status status.
 * Returns 0 when the body is already in OpenAI shape and holds nothing
 * key-like (send it unchanged; out untouched), 1 when out received a
 * replacement body (the original's message kept where one is found,
 * redacted), -1 past out's cap. key, when not NULL, is the provider key the
 * request used: it is redacted too, whole or any 8+ character piece of it. */
int oaierr_rewrite(int status, const char *body, size_t len, const char *key, struct sc_buf *out);

/*
 * Why the sidecar cannot serve a request although the client did nothing
 * wrong: every answer here is a 503 with its own `code`, and a message that
 * names the route (the model prefix), never a key. 401 and 403 stay reserved
 * for the client's own token: a client such as OpenClaw reads them as "my
 * credentials for this provider are wrong" and stops using the sidecar.
 */
enum oaierr_unavail {
	OAIERR_RATE_LIMITED,	/* every key of the route busy (window, cooldown): "rate_limited" */
	OAIERR_QUEUE_TIMEOUT,	/* waited queue_timeout_seconds for a key: "queue_timeout" */
	OAIERR_QUEUE_FULL,	/* the wait queue is at queue_capacity: "queue_full" */
	OAIERR_DRAINING,	/* the data plane is shutting down: "draining" */
	OAIERR_NO_PROVIDER,	/* the route has no provider that could serve: "no_provider" */
	OAIERR_NO_VALID_KEY,	/* every key of the route is invalid or disabled: "no_valid_key" */
	OAIERR_AUTH_FAILED,	/* the upstream answered 401/403 on every key tried: "upstream_auth_failed" */
	OAIERR_QUOTA,		/* the upstream answered 402 (quota, billing): "upstream_quota" */
};

/* The `code` of an oaierr_unavail. */
const char *oaierr_unavail_code(enum oaierr_unavail why);

/* An upstream status that speaks about the sidecar's key rather than the
 * client's request, as the reason to tell the client when no other key can
 * serve: 401/403 OAIERR_AUTH_FAILED, 402 OAIERR_QUOTA, 429
 * OAIERR_RATE_LIMITED; -1 for any other status (passed through). */
int oaierr_unavail_from_upstream(int status);

/* Append the 503 body for why to out: the message says what the client is
 * waiting for, e.g. "all 11 keys of nvidia/ are rate limited; the next frees
 * in 17 s". route is the model prefix; nkeys the route's keys (0 when not
 * known); wait_s the Retry-After being sent; wait_known whether it is the
 * time until a key frees (else the configured fallback: "retry in N s");
 * upstream_status the status that caused AUTH_FAILED/QUOTA. 0, or -1 past
 * out's cap. */
int oaierr_unavailable(struct sc_buf *out, enum oaierr_unavail why, const char *route, int nkeys,
    int wait_s, int wait_known, int upstream_status);

#endif
