/*
 * The one redactor for text that came from an upstream (error bodies, the
 * key test call's answer) before the sidecar stores, logs, returns or relays
 * it: upstreams have been seen to echo the caller's key, with or without its
 * vendor prefix, whole or in pieces.
 */
#ifndef SC_REDACT_H
#define SC_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include "util.h"

#define REDACT_MASK     "[REDACTED]"
#define REDACT_MIN_RUN  8	/* shortest piece of the key that is masked */

/* Copy s[0..len) to out with secrets replaced by REDACT_MASK:
 *  - when key is not NULL, every run of REDACT_MIN_RUN or more bytes that
 *    also occurs in key (the key whole, without its "nvapi-" prefix, or any
 *    8+ character piece of it, wherever it stands in the text);
 *  - key-like tokens of any key: "Bearer <token68>" (8+, "Bearer " kept),
 *    "nvapi-…" (4+ after the prefix), "sk-…" (16+), at a word start.
 * Returns the number of replacements, or -1 past out's cap. */
int redact_text(const char *s, size_t len, const char *key, struct sc_buf *out);
/* Whether redact_text would replace anything in s[0..len). */
bool redact_needed(const char *s, size_t len, const char *key);
/* redact_text on the NUL-terminated s in place (cap bytes), cut at a UTF-8
 * character boundary when the mask made it longer, then bytes that are not
 * UTF-8 scrubbed: for fixed message buffers headed for JSON and the database. */
void redact_str(char *s, size_t cap, const char *key);

#endif
