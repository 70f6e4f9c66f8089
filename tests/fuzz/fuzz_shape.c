/*
 * libFuzzer harness for request-body shaping (dataplane/shape.c) and the
 * upstream error rewriter (dataplane/oaierr.c). Every accepted body must
 * shape, for every compat combination, into valid JSON whose model is the
 * new name; without rewrites the result must equal the original apart from
 * the model. Every rewritten error body must be valid JSON.
 *
 * The allocation-free scanner (dataplane/jscan.c) is checked against json-c
 * on every input: whatever it accepts json-c must accept (strict, UTF-8
 * checked), with the same members, types and values; shape_parse's reading
 * and sse_usage_parse's answer must equal what json-c's tree says.
 *
 * The response model rewrite (dataplane/respmodel.c) runs on every input as
 * if it were an upstream response: a rewritten document must parse (json-c,
 * strict) with the client's model and otherwise the same members.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "jscan.h"
#include "oaierr.h"
#include "respmodel.h"
#include "shape.h"
#include "sse.h"

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

/* json-c as shape_parse uses it: strict, UTF-8 checked, only whitespace after. */
static struct json_object *
parse_shape(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(SHAPE_MAX_DEPTH);
	struct json_object *o;
	size_t end;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (json_tokener_get_error(tok) != json_tokener_success)
		goto bad;
	for (; end < len; end++)
		if (s[end] != ' ' && s[end] != '\t' && s[end] != '\n' && s[end] != '\r')
			goto bad;
	json_tokener_free(tok);
	return o;
bad:
	json_object_put(o);
	json_tokener_free(tok);
	return NULL;
}

/* One member found by the scanner against json-c's value of it. */
static void
check_member(const struct jscan_member *m, struct json_object *obj)
{
	struct json_object *v;
	int64_t n;
	const char *s;
	size_t sl;

	if (!json_object_object_get_ex(obj, m->key, &v)) {
		if (m->val != NULL)
			abort();
		return;
	}
	if (m->val == NULL)
		abort();
	switch (jscan_type(m->val)) {
	case JSCAN_OBJECT: if (!json_object_is_type(v, json_type_object)) abort(); break;
	case JSCAN_ARRAY:  if (!json_object_is_type(v, json_type_array)) abort(); break;
	case JSCAN_NULL:   if (v != NULL) abort(); break;
	case JSCAN_TRUE:   if (!json_object_is_type(v, json_type_boolean) || !json_object_get_boolean(v)) abort(); break;
	case JSCAN_FALSE:  if (!json_object_is_type(v, json_type_boolean) || json_object_get_boolean(v)) abort(); break;
	case JSCAN_STRING:
		if (!json_object_is_type(v, json_type_string))
			abort();
		if (jscan_plain_string(m->val, m->val_len, &s, &sl) == 0 &&
		    ((size_t)json_object_get_string_len(v) != sl || memcmp(json_object_get_string(v), s, sl) != 0))
			abort();
		break;
	case JSCAN_NUMBER:
		if (jscan_int64(m->val, m->val_len, &n) == 0) {
			if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != n)
				abort();
		} else if (!json_object_is_type(v, json_type_double)) {
			abort();
		}
		break;
	default:
		abort();
	}
}

/* The scanner against json-c on the same text. */
static void
check_scanner(const char *body, size_t size)
{
	struct jscan_member m[6] = {
		{ "model", NULL, 0, 0 }, { "stream", NULL, 0, 0 }, { "stream_options", NULL, 0, 0 },
		{ "usage", NULL, 0, 0 }, { "choices", NULL, 0, 0 }, { "n", NULL, 0, 0 },
	};
	struct json_object *o;
	size_t i;

	if (jscan_object(body, size, m, 6) != 0)
		return;
	if ((o = parse_shape(body, size)) == NULL || !json_object_is_type(o, json_type_object))
		abort();
	for (i = 0; i < 6; i++)
		check_member(&m[i], o);
	json_object_put(o);
}

/* sse_usage_parse (scanner first) against the same question put to json-c. */
static void
check_usage(const char *body, size_t size)
{
	struct sse_usage u;
	struct json_tokener *tok;
	struct json_object *root, *usage, *v, *ch;
	int r = sse_usage_parse(body, size, &u), want = 0;
	int64_t f[3] = { -1, -1, -1 };
	static const char *const names[3] = { "prompt_tokens", "completion_tokens", "total_tokens" };
	int i, only = 0;

	if (size == 0 || size > INT32_MAX)
		return;
	tok = json_tokener_new_ex(64);
	root = json_tokener_parse_ex(tok, body, (int)size);
	if (root != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "usage", &usage) && json_object_is_type(usage, json_type_object)) {
		want = 1;
		for (i = 0; i < 3; i++)
			if (json_object_object_get_ex(usage, names[i], &v) && json_object_is_type(v, json_type_int))
				f[i] = json_object_get_int64(v);
		if (f[2] < 0 && f[0] >= 0 && f[1] >= 0)
			f[2] = f[0] + f[1];
		only = !json_object_object_get_ex(root, "choices", &ch) ||
		    (json_object_is_type(ch, json_type_array) && json_object_array_length(ch) == 0);
	}
	json_object_put(root);
	json_tokener_free(tok);
	/* sse_usage_parse's cheap pre-filter may say 0 where json-c finds usage
	 * only in texts it does not look at ("usage" spelled with escapes) */
	if (r == 1 && (!want || u.prompt_tokens != f[0] || u.completion_tokens != f[1] ||
	    u.total_tokens != f[2] || u.usage_only != only))
		abort();
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

/* respmodel_json on body as an upstream response. */
static void
check_respmodel(const char *body, size_t size)
{
	static const char model[] = "fuzz/\"m\"\u00e9";
	struct sc_buf lit, out;
	struct json_object *a, *b, *v;
	int rc;

	sc_buf_init(&lit, 256);
	sc_buf_init(&out, 1 << 22);
	if (respmodel_literal(model, sizeof(model) - 1, &lit) != 0)
		abort();
	rc = respmodel_json(body, size, lit.data, lit.len, &out);
	if (rc == 1) {
		a = parse_strict(body, size);
		b = parse_strict(out.data, out.len);
		if (a == NULL || b == NULL || !json_object_object_get_ex(b, "model", &v) ||
		    strcmp(json_object_get_string(v), model) != 0 ||
		    json_object_object_length(a) != json_object_object_length(b))
			abort();
		json_object_object_del(a, "model");
		json_object_object_del(b, "model");
		if (!json_object_equal(a, b))
			abort();
		json_object_put(a);
		json_object_put(b);
	} else if (rc != 0 || out.len != 0) {
		abort();
	}
	sc_buf_free(&out);
	sc_buf_free(&lit);
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

	check_scanner(body, size);
	check_usage(body, size);
	check_respmodel(body, size);

	if (shape_parse(&r, body, size, &e) != 0)
		return 0;
	{
		/* what routing reads equals json-c's reading of the body */
		struct json_object *o = parse_shape(body, size), *v, *so;
		bool iu;

		if (o == NULL || !json_object_object_get_ex(o, "model", &v) ||
		    !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), r.model) != 0)
			abort();
		if (r.stream != (json_object_object_get_ex(o, "stream", &v) &&
		    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v)))
			abort();
		iu = json_object_object_get_ex(o, "stream_options", &so) && json_object_is_type(so, json_type_object) &&
		    json_object_object_get_ex(so, "include_usage", &v) && json_object_is_type(v, json_type_boolean) &&
		    json_object_get_boolean(v);
		if (r.include_usage != iu)
			abort();
		json_object_put(o);
	}
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
			struct json_object *orig = parse_shape(body, size);

			if (orig == NULL)
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
