/*
 * libFuzzer harness for request-body shaping (dataplane/shape.c) and the
 * upstream error rewriter (dataplane/oaierr.c). Every accepted body must
 * shape, for every compat combination, into valid JSON whose model is the
 * new name; without rewrites the result must equal the original apart from
 * the model. Every rewritten error body must be valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "oaierr.h"
#include "shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_object *
parse_strict(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(SHAPE_MAX_DEPTH + 2);
	struct json_object *o;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

#define KEY "nvapi-FUZZ-KEY-00000000"

/* An OpenAI error body whose decoded message holds no key (the JSON text may:
 * "To\\nvapi-..." is "To", a newline, "vapi-..."). */
static void
check_error(const char *s, size_t len)
{
	struct json_object *o = parse_strict(s, len), *err, *msg;

	if (o == NULL || !json_object_object_get_ex(o, "error", &err) ||
	    !json_object_object_get_ex(err, "message", &msg) ||
	    !json_object_is_type(msg, json_type_string) ||
	    strstr(json_object_get_string(msg), KEY) != NULL)
		abort();
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct shape_req r;
	struct sc_err e;
	struct sc_buf out;
	int i;

	sc_buf_init(&out, 1 << 22);
	switch (oaierr_rewrite(400 + (size & 0xff), body, size, KEY, &out)) {
	case 1:
		check_error(out.data, out.len);
		break;
	case 0:
		/* passed unchanged: must be OpenAI-shaped and hold no key */
		if (out.len != 0)
			abort();
		check_error(body, size);
		break;
	default:
		abort();
	}
	sc_buf_free(&out);

	if (shape_parse(&r, body, size, &e) != 0)
		return 0;
	for (i = 0; i < 8; i++) {
		struct provider_compat c = { (i & 1) != 0, (i & 2) != 0, (i & 4) != 0 };
		struct json_object *o, *m;
		bool inj;

		sc_buf_init(&out, 1 << 22);
		if (shape_build(&r, &c, "fuzz/\"model\"", &out, &inj, &e) != 0)
			abort();
		o = parse_strict(out.data, out.len);
		if (o == NULL || !json_object_object_get_ex(o, "model", &m) ||
		    strcmp(json_object_get_string(m), "fuzz/\"model\"") != 0)
			abort();
		if (inj && !r.stream)
			abort();
		if (i == 0) {
			/* no rewrite: the original with the model replaced */
			struct json_object *orig = NULL;

			if (json_object_deep_copy(r.root, &orig, NULL) != 0)
				abort();
			json_object_object_add(orig, "model", json_object_new_string("fuzz/\"model\""));
			if (!json_object_equal(orig, o))
				abort();
			json_object_put(orig);
		}
		json_object_put(o);
		sc_buf_free(&out);
	}
	shape_free(&r);
	return 0;
}
