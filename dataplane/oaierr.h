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
 * The message is redacted (oaierr_redact) and escaped. 0, or -1 past out's cap. */
int oaierr_format(struct sc_buf *out, int status, const char *message, const char *param,
    const char *code);

/* An upstream error response body body[0..len) with HTTP status status.
 * Returns 0 when the body is already in OpenAI shape and holds nothing
 * key-like (send it unchanged; out untouched), 1 when out received a
 * replacement body (the original's message kept where one is found,
 * redacted), -1 past out's cap. key, when not NULL, is the provider key the
 * request used: its exact occurrences are redacted too. */
int oaierr_rewrite(int status, const char *body, size_t len, const char *key, struct sc_buf *out);

/* Copy s[0..len) to out with key-like substrings replaced by "[REDACTED]":
 * "Bearer <token>" (8+ characters), "nvapi-..." (4+), "sk-..." (16+), and key (when
 * not NULL and at least 8 characters). Returns the number of replacements,
 * or -1 past out's cap. */
int oaierr_redact(const char *s, size_t len, const char *key, struct sc_buf *out);

#endif
