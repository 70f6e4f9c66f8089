/*
 * The client's model id in responses. A request for
 * "nvidia/meta/llama-3.1-8b-instruct" goes upstream as
 * "meta/llama-3.1-8b-instruct" (the route's prefix stripped), and the
 * upstream's answer names the latter; a client that compares the two
 * (OpenClaw marks such a turn "rerouted") must see the model it asked for.
 * So the top-level "model" of a JSON response (chat completions,
 * completions, embeddings) and of every streamed chunk is replaced by the
 * client's id.
 *
 * The rewrite is textual: jscan (no tree) finds where the member's value is,
 * and every other byte is copied unchanged. A document jscan refuses, or one
 * without a top-level string "model", is left alone.
 */
#ifndef SC_RESPMODEL_H
#define SC_RESPMODEL_H

#include <stddef.h>
#include "sse.h"
#include "util.h"

/* Append the client's model id as a JSON string literal (quotes included,
 * escaped) to out: what the other two functions splice in. Built once per
 * request. 0, or -1 past out's cap. */
int respmodel_literal(const char *model, size_t len, struct sc_buf *out);

/* json[0..len) with its top-level "model" string replaced by lit[0..lit_len)
 * (a literal from respmodel_literal), appended to out. 1 when out received
 * the rewritten document; 0 when there is nothing to change (no top-level
 * string "model", the same value already, or a document jscan refuses) and
 * out is untouched; -1 past out's cap (out truncated back). */
int respmodel_json(const char *json, size_t len, const char *lit, size_t lit_len, struct sc_buf *out);
/* The same for a document the caller has already scanned (jscan_object
 * accepted it): m is its top-level "model" member (val NULL when absent). */
struct jscan_member;
int respmodel_json_member(const char *json, size_t len, const struct jscan_member *m, const char *lit, size_t lit_len,
    struct sc_buf *out);
/* Where that rewrite splices, for a caller that sends the pieces itself: 1
 * and *at, *n (the offset and length of the value to replace by lit) when
 * m's value is a string other than lit, else 0 (nothing to change). */
int respmodel_json_span(const char *json, const struct jscan_member *m, const char *lit, size_t lit_len, size_t *at,
    size_t *n);

/* The SSE event ev (from sse_feed) whose raw bytes are the last ev->raw_len
 * bytes of hold: rewrite the model of its data payload in place, keeping the
 * event's other lines. scratch is the caller's reusable work buffer. 1 when
 * hold was changed, 0 when the event was left as it is (no data, [DONE], no
 * model, or no room in hold). */
int respmodel_sse(struct sc_buf *hold, const struct sse_event *ev, const char *lit, size_t lit_len,
    struct sc_buf *scratch);

#endif
