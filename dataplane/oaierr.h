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

#endif
