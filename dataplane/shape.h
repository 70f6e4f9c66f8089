/*
 * Request-body shaping (SPEC §5.6): read what routing needs from a client's
 * OpenAI request body (model, stream, stream_options.include_usage), then
 * build the body for one provider: model replaced by the prefix-stripped
 * name, and the provider's compat rewrites (max_tokens_field,
 * flatten_content, stream_usage).
 *
 * Use:
 *   struct shape_req r;
 *   if (shape_parse(&r, body, len, &e) == -1)
 *       answer 400 with oaierr_format(out, 400, e.msg, e.field[0] ? e.field : NULL, NULL);
 *   route on r.model; for each provider tried:
 *       shape_build(&r, &p->compat, stripped_model, &upbody, &injected, &e);
 *       (injected: we asked for stream usage the client did not; drop that chunk)
 *   shape_free(&r);
 * The body is read by a strict allocation-free scanner (jscan.h); json-c
 * parses it only when the scanner refuses it (json-c then decides and words
 * the 400) or when a provider's rewrite needs the tree.
 * Only a rewrite re-serialises the body; replacing the model (and adding
 * stream_options when absent) splices the original bytes, so such a body is
 * the client's byte for byte apart from those.
 */
#ifndef SC_SHAPE_H
#define SC_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include "providers.h"
#include "util.h"

#define SHAPE_MAX_DEPTH 64	/* JSON nesting accepted in a request body */
#define SHAPE_MODEL_INLINE 64	/* a model shorter than this is kept in the struct */

struct json_object;

struct shape_req {
	struct json_object *root;	/* owned: json-c's tree of the body; NULL while only
					 * the scanner (jscan) has read it, built on demand */
	const char *body;		/* borrowed: the client's bytes; unchanged until shape_free */
	size_t      body_len;
	const char *model;		/* the client's model, in root, model_small or model_own */
	char       *model_own;		/* owned: the model's text when the scanner read a long one */
	char        model_small[SHAPE_MODEL_INLINE];	/* ... a short one (no allocation) */
	bool        stream;		/* "stream": true */
	bool        include_usage;	/* "stream_options": {"include_usage": true} */
	/* private: where the splice goes, when the raw scan understood the body */
	bool        splice_ok;
	bool        has_stream_options;
	bool        so_not_object;	/* "stream_options" present and not an object */
	bool        has_mct;		/* "max_completion_tokens" present (scanner) */
	bool        has_messages;	/* "messages" present (scanner) */
	size_t      obj_open;		/* offset just after the top-level '{' */
	size_t      model_start;	/* model value, quotes included: [start, end) */
	size_t      model_end;
};

/* Parse and check a request body. 0, or -1 with e->msg (OpenAI-style text
 * for a 400) and e->field ("model" when about the model, else ""). body must
 * stay alive and unchanged until shape_free. */
int shape_parse(struct shape_req *r, const char *body, size_t len, struct sc_err *e);

/* Append the upstream body for a provider with compat c to out (whose cap
 * bounds it). *usage_injected: stream_options.include_usage was added.
 * 0, or an HTTP status (413 when out's cap is too small) with e->msg. */
int shape_build(struct shape_req *r, const struct provider_compat *c, const char *model,
    struct sc_buf *out, bool *usage_injected, struct sc_err *e);

void shape_free(struct shape_req *r);

#endif
