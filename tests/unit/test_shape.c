/*
 * Unit tests for dataplane/shape.c: body checks with their messages, what is
 * extracted for routing, the byte-exact splice when only the model changes,
 * and each compat rewrite (max_tokens_field, flatten_content, stream_usage);
 * and the allocation-free scanner (dataplane/jscan.c) that reads bodies
 * without json-c: what it accepts, what it refuses, what it returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "jscan.h"
#include "shape.h"

static const struct provider_compat none = { false, false, false };
static const struct provider_compat usage_only = { false, false, true };

/* Shape body for compat c and model m; returns the new body (static). */
static const char *
build(const char *body, const struct provider_compat *c, const char *m, bool *injected)
{
	static struct sc_buf out;
	struct shape_req r;
	struct sc_err e;
	bool inj;

	if (shape_parse(&r, body, strlen(body), &e) != 0)
		fail_msg("parse failed: %s: %s", body, e.msg);
	sc_buf_free(&out);
	sc_buf_init(&out, 1 << 20);
	assert_int_equal(shape_build(&r, c, m, &out, &inj, &e), 0);
	if (injected != NULL)
		*injected = inj;
	shape_free(&r);
	return out.len ? out.data : "";
}

static void
expect_reject(const char *body, size_t len, const char *field, const char *msg_part)
{
	struct shape_req r;
	struct sc_err e;

	if (shape_parse(&r, body, len, &e) != -1)
		fail_msg("accepted: %.*s", (int)len, body);
	assert_string_equal(e.field, field);
	if (strstr(e.msg, msg_part) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", e.msg, msg_part);
	assert_null(r.root);
}

/* The scanner keeps a short model in the struct and a long one in its own
 * allocation; both read back whole, and shape_free releases the long one. */
static void
test_model_lengths(void **state)
{
	static const size_t lens[] = { 1, SHAPE_MODEL_INLINE - 1, SHAPE_MODEL_INLINE, 300 };
	struct shape_req r;
	struct sc_err e;
	char body[400], model[320];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(model, 'm', lens[i]);
		model[lens[i]] = '\0';
		snprintf(body, sizeof(body), "{\"model\":\"%s\",\"stream\":true}", model);
		assert_int_equal(shape_parse(&r, body, strlen(body), &e), 0);
		assert_null(r.root);	/* the scanner's reading */
		assert_string_equal(r.model, model);
		assert_true(r.stream);
		assert_true((r.model == r.model_small) == (lens[i] < SHAPE_MODEL_INLINE));
		shape_free(&r);
		assert_null(r.model);
	}
}

static void
test_reject(void **state)
{
	char deep[300];
	int i, n;

	expect_reject("", 0, "", "parse the JSON");
	expect_reject("{", 1, "", "parse the JSON");
	expect_reject("{\"model\":\"a\"} x", 15, "", "parse the JSON");
	expect_reject("{\"model\":\"a\"}{}", 15, "", "parse the JSON");
	expect_reject("{'model':'a'}", 13, "", "parse the JSON");
	expect_reject("{\"model\":\"a\",}", 14, "", "parse the JSON");
	expect_reject("[1,2]", 5, "", "JSON object");
	expect_reject("\"model\"", 7, "", "JSON object");
	expect_reject("{\"messages\":[]}", 15, "model", "provide a model");
	expect_reject("{\"model\":null}", 14, "model", "provide a model");
	expect_reject("{\"model\":42}", 12, "model", "must be a string");
	expect_reject("{\"model\":[\"a\"]}", 15, "model", "must be a string");
	expect_reject("{\"model\":\"a\xff\"}", 14, "", "UTF-8");
	expect_reject("{\"model\":\"a\",\"x\":\"\xc3\x28\"}", 22, "", "UTF-8");
	/* nesting: 64 levels pass, 65 do not */
	n = sprintf(deep, "{\"model\":\"a\",\"x\":");
	for (i = 0; i < 63; i++)
		deep[n++] = '[';
	for (i = 0; i < 63; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	build(deep, &none, "b", NULL);
	n = sprintf(deep, "{\"model\":\"a\",\"x\":");
	for (i = 0; i < 64; i++)
		deep[n++] = '[';
	for (i = 0; i < 64; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	expect_reject(deep, (size_t)n, "", "nested too deeply");
}

static void
test_extract(void **state)
{
	struct shape_req r;
	struct sc_err e;
	const char *b;

	b = "{\"model\":\"nim/meta/llama\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
	assert_int_equal(shape_parse(&r, b, strlen(b), &e), 0);
	assert_string_equal(r.model, "nim/meta/llama");
	assert_true(r.stream);
	assert_true(r.include_usage);
	shape_free(&r);
	b = " {\"stream\":\"yes\",\"model\":\"x\",\"stream_options\":{\"include_usage\":1}}\n";
	assert_int_equal(shape_parse(&r, b, strlen(b), &e), 0);
	assert_false(r.stream);
	assert_false(r.include_usage);
	shape_free(&r);
	b = "{\"model\":\"x\",\"stream\":false}";
	assert_int_equal(shape_parse(&r, b, strlen(b), &e), 0);
	assert_false(r.stream);
	shape_free(&r);
}

/* body with every occurrence of from replaced by to (one expected). */
static char *
replace(const char *body, const char *from, const char *to)
{
	const char *p = strstr(body, from);
	char *out;

	assert_non_null(p);
	out = malloc(strlen(body) + strlen(to) + 1);
	memcpy(out, body, (size_t)(p - body));
	strcpy(out + (p - body), to);
	strcat(out, p + strlen(from));
	return out;
}

static void
test_splice(void **state)
{
	static const char *const bodies[] = {
		"{\"model\":\"nim/meta/llama-3.1-8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		("{ \"messages\" : [ {\"role\":\"user\",\"content\":\"say \\\"model\\\": \\\"nim/x\\\"\",\"model\":\"nim/inner\"} ] ,\n"
		"  \"temperature\" : 0.70 , \"seed\": 12345678901234567890, \"n\": 1e2,\n"
		"  \"model\"\t:\t\"nim/meta/llama-3.1-8b\" , \"stop\": [\"}\", \"]\", \"\\\\\"], \"x\": {\"model\": 1} }\n"),
		("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],\"model\":\"nim/meta/llama-3.1-8b\","
		"\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_completion_tokens\":100}"),
		"{\"model\":\"nim/meta/llama-3.1-8b\",\"u\":\"caf\\u00e9 \xe2\x82\xac \\ud83d\\ude00\",\"e\":[],\"o\":{},\"t\":true,\"f\":false,\"z\":null}",
	};
	bool injected;
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		char *want = replace(bodies[i], "\"nim/meta/llama-3.1-8b\"", "\"meta/llama-3.1-8b\"");
		bool inj = true;

		assert_string_equal(build(bodies[i], &none, "meta/llama-3.1-8b", &inj), want);
		assert_false(inj);
		/* stream_usage without a stream, or with usage asked: same */
		assert_string_equal(build(bodies[i], &usage_only, "meta/llama-3.1-8b", &inj), want);
		assert_false(inj);
		free(want);
	}
	/* the new name is escaped */
	assert_string_equal(build("{\"model\":\"p/x\"}", &none, "a\"b\\c/d\n", NULL),
	    "{\"model\":\"a\\\"b\\\\c/d\\n\"}");
	/* UTF-8 and DEL go as they are (as json-c writes them); with the usage
	 * inserted too, and an escaped name */
	assert_string_equal(build("{\"model\":\"p/x\"}", &none, "caf\xc3\xa9\x7f", NULL), "{\"model\":\"caf\xc3\xa9\x7f\"}");
	assert_string_equal(build("{ \"model\" : \"p/x\" ,\"stream\":true}", &usage_only, "a\"b", &injected),
	    "{\"stream_options\":{\"include_usage\":true}, \"model\" : \"a\\\"b\" ,\"stream\":true}");
	assert_true(injected);
	assert_string_equal(build("{ \"model\" : \"p/x\" ,\"stream\":true}", &usage_only, "ab", &injected),
	    "{\"stream_options\":{\"include_usage\":true}, \"model\" : \"ab\" ,\"stream\":true}");
}

/* Parse both and compare as JSON values. */
static void
assert_json_equal(const char *got, const char *want)
{
	struct json_object *a = json_tokener_parse(got), *b = json_tokener_parse(want);

	assert_non_null(a);
	assert_non_null(b);
	if (!json_object_equal(a, b))
		fail_msg("JSON differs:\n got  %s\n want %s", got, want);
	json_object_put(a);
	json_object_put(b);
}

static void
test_fallback(void **state)
{
	/* duplicate model keys: the last one counts (json-c), one remains */
	assert_json_equal(build("{\"model\":1,\"model\":\"p/x\",\"a\":[1,2]}", &none, "x", NULL),
	    "{\"model\":\"x\",\"a\":[1,2]}");
	/* an escaped key might be "model": rebuilt */
	assert_json_equal(build("{\"mod\\u0065l\":\"p/x\",\"a\":0.5}", &none, "x", NULL),
	    "{\"model\":\"x\",\"a\":0.5}");
	/* number text is kept when re-serialising */
	assert_string_equal(build("{\"model\":\"p/x\",\"t\":0.70,\"n\":1e2,\"max_completion_tokens\":5}",
	    &(struct provider_compat){ true, false, false }, "x", NULL),
	    "{\"model\":\"x\",\"t\":0.70,\"n\":1e2,\"max_tokens\":5}");
}

static void
test_max_tokens(void **state)
{
	const struct provider_compat mt = { true, false, false };
	const char *b = "{\"model\":\"p/x\",\"max_completion_tokens\":100,\"messages\":[]}";

	assert_json_equal(build(b, &mt, "x", NULL), "{\"model\":\"x\",\"max_tokens\":100,\"messages\":[]}");
	assert_json_equal(build(b, &none, "x", NULL), "{\"model\":\"x\",\"max_completion_tokens\":100,\"messages\":[]}");
	/* both sent: the newer field wins */
	assert_json_equal(build("{\"model\":\"p/x\",\"max_tokens\":7,\"max_completion_tokens\":100}", &mt, "x", NULL),
	    "{\"model\":\"x\",\"max_tokens\":100}");
	/* nothing to rename: the splice keeps the bytes */
	assert_string_equal(build("{\"model\":\"p/x\", \"max_tokens\":7}", &mt, "x", NULL),
	    "{\"model\":\"x\", \"max_tokens\":7}");
}

static void
test_flatten(void **state)
{
	const struct provider_compat fl = { false, true, false };
	const char *b =
	    "{\"model\":\"p/x\",\"messages\":["
	    "{\"role\":\"system\",\"content\":\"plain\"},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]},"
	    "{\"role\":\"user\",\"content\":[]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":[{\"type\":\"text\",\"text\":\"r\"}]}]}";
	const char *want =
	    "{\"model\":\"x\",\"messages\":["
	    "{\"role\":\"system\",\"content\":\"plain\"},"
	    "{\"role\":\"user\",\"content\":\"one\\ntwo\"},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]},"
	    "{\"role\":\"user\",\"content\":[]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}]}";

	assert_json_equal(build(b, &fl, "x", NULL), want);
	/* nothing to flatten: the splice keeps the bytes */
	assert_string_equal(build("{\"model\":\"p/x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", &fl, "x", NULL),
	    "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}");
}

static void
test_stream_usage(void **state)
{
	bool inj;
	const char *b = "{\"model\":\"p/x\",\"stream\":true,\"messages\":[]}";

	/* no stream_options: inserted by the splice */
	assert_string_equal(build(b, &usage_only, "x", &inj),
	    "{\"stream_options\":{\"include_usage\":true},\"model\":\"x\",\"stream\":true,\"messages\":[]}");
	assert_true(inj);
	/* not allowed by the provider */
	assert_string_equal(build(b, &none, "x", &inj), "{\"model\":\"x\",\"stream\":true,\"messages\":[]}");
	assert_false(inj);
	/* stream_options without include_usage, or with false: set to true */
	assert_json_equal(build("{\"model\":\"p/x\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
	    &usage_only, "x", &inj), "{\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	assert_true(inj);
	assert_json_equal(build("{\"model\":\"p/x\",\"stream\":true,\"stream_options\":{}}",
	    &usage_only, "x", &inj), "{\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	assert_true(inj);
	/* a stream_options that is not an object is left to the upstream */
	assert_string_equal(build("{\"model\":\"p/x\",\"stream\":true,\"stream_options\":5}", &usage_only, "x", &inj),
	    "{\"model\":\"x\",\"stream\":true,\"stream_options\":5}");
	assert_false(inj);
	/* all options together */
	assert_json_equal(build("{\"model\":\"p/x\",\"stream\":true,\"max_completion_tokens\":3,"
	    "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]}",
	    &(struct provider_compat){ true, true, true }, "x", &inj),
	    "{\"model\":\"x\",\"stream\":true,\"max_tokens\":3,\"stream_options\":{\"include_usage\":true},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}");
	assert_true(inj);
}

static void
test_retries_and_cap(void **state)
{
	const char *b = "{\"model\":\"p/x\",\"max_completion_tokens\":3,\"stream\":true}";
	const struct provider_compat mt = { true, false, true };
	struct shape_req r;
	struct sc_err e;
	struct sc_buf out;
	bool inj;

	assert_int_equal(shape_parse(&r, b, strlen(b), &e), 0);
	sc_buf_init(&out, 1 << 16);
	/* a rewrite for one provider leaves the parsed body as it was */
	assert_int_equal(shape_build(&r, &mt, "one", &out, &inj, &e), 0);
	assert_json_equal(out.data, "{\"model\":\"one\",\"max_tokens\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	sc_buf_reset(&out);
	assert_int_equal(shape_build(&r, &none, "two", &out, &inj, &e), 0);
	assert_string_equal(out.data, "{\"model\":\"two\",\"max_completion_tokens\":3,\"stream\":true}");
	assert_false(inj);
	sc_buf_free(&out);
	/* too small an output cap: 413, out unchanged */
	sc_buf_init(&out, 10);
	assert_int_equal(shape_build(&r, &none, "two", &out, &inj, &e), 413);
	assert_int_equal(out.len, 0);
	assert_int_equal(shape_build(&r, &mt, "two", &out, &inj, &e), 413);
	assert_int_equal(out.len, 0);
	sc_buf_free(&out);
	shape_free(&r);
}

static int
scan(const char *doc)
{
	return jscan_object(doc, strlen(doc), NULL, 0);
}

static void
test_jscan_syntax(void **state)
{
	static const char *const ok[] = {
		"{}", " {\"a\":1} \r\n", "{\"a\":[1,2.5,-0,1e5,1E-2,0.5e+3,true,false,null,\"s\",{},[]]}",
		"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}", "{\"u\":\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
		"{\"\":\"\"}",
	};
	static const char *const bad[] = {
		"", " ", "[]", "1", "\"x\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}",
		"{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":NaN}",
		"{\"a\":tru}", "{\"a\":True}", "{'a':1}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\x01\"}",
		"{\"a\":\"\xc3\"}", "{\"a\":\"\xc0\x80\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}",
		"{\"a\":1}x", "{\"a\":1}{}", "{\"a\":1}\f", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":1/*c*/}",
		/* refused on purpose: json-c decides */
		"{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\u0000\"}", "{\"a\":1234567890123456789}",
		"{\"a\":1e999}",
	};
	char deep[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (scan(ok[i]) != 0)
			fail_msg("refused: %s", ok[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan(bad[i]) != -1)
			fail_msg("accepted: %s", bad[i]);
	/* nesting: JSCAN_MAX_DEPTH levels in all are accepted, one more is not */
	memset(deep, 0, sizeof(deep));
	deep[0] = '{';
	strcat(deep, "\"a\":");
	for (i = 1; i < JSCAN_MAX_DEPTH; i++)
		strcat(deep, "[");
	for (i = 1; i < JSCAN_MAX_DEPTH; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	assert_int_equal(scan(deep), 0);
	memmove(deep + 6, deep + 5, strlen(deep + 5) + 1);
	deep[5] = '[';
	memmove(deep + strlen(deep), "]}", 3);
	deep[strlen(deep) - 3] = ']';
	assert_int_equal(scan(deep), -1);
}

static int
scan_want(const char *doc, struct jscan_member *one)
{
	return jscan_object(doc, strlen(doc), one, 1);
}

static void
test_jscan_members(void **state)
{
	const char *doc = "{\"model\" : \"m/x\", \"n\":-42,\"f\":1.5,\"o\":{\"model\":\"inner\"},"
	    "\"e\":\"a\\nb\", \"t\":true}";
	struct jscan_member m[6] = {
		{ "model", NULL, 0, 0 }, { "n", NULL, 0, 0 }, { "f", NULL, 0, 0 }, { "o", NULL, 0, 0 }, { "e", NULL, 0, 0 },
		{ "absent", NULL, 0, 0 },
	};
	struct jscan_member dup[1] = { { "a", NULL, 0, 0 } };
	const char *s;
	size_t n;
	int64_t v;

	(void)state;
	assert_int_equal(jscan_object(doc, strlen(doc), m, 6), 0);
	assert_int_equal(jscan_plain_string(m[0].val, m[0].val_len, &s, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(s, "m/x", 3);
	assert_int_equal(jscan_type(m[1].val), JSCAN_NUMBER);
	assert_int_equal(jscan_int64(m[1].val, m[1].val_len, &v), 0);
	assert_int_equal(v, -42);
	assert_int_equal(jscan_int64(m[2].val, m[2].val_len, &v), -1);
	assert_int_equal(jscan_type(m[3].val), JSCAN_OBJECT);
	assert_int_equal(m[3].val_len, strlen("{\"model\":\"inner\"}"));
	assert_int_equal(jscan_type(m[4].val), JSCAN_STRING);
	assert_int_equal(jscan_plain_string(m[4].val, m[4].val_len, &s, &n), -1);
	assert_null(m[5].val);
	assert_int_equal(jscan_type(NULL), JSCAN_NONE);
	/* a wanted key twice, or a top-level key with escapes: refused */
	assert_int_equal(scan_want("{\"a\":1,\"a\":2}", dup), -1);
	assert_int_equal(scan_want("{\"a\":1,\"b\":2,\"b\":3}", dup), 0);
	assert_int_equal(scan_want("{\"\\u0061\":1}", dup), -1);
}

/* jscan_object on an exact-size copy, so that ASan sees any read past the end. */
static int
scan_copy(const char *doc, size_t len, struct jscan_member *m, size_t n)
{
	char *c = malloc(len ? len : 1);
	int rc;

	memcpy(c, doc, len);
	rc = jscan_object(c, len, m, n);
	/* the spans point into the copy: make them point into doc */
	for (size_t i = 0; i < n; i++)
		if (m[i].val != NULL)
			m[i].val = doc + (m[i].val - c);
	free(c);
	return rc;
}

/* Strings of every length around the scanner's 16- and 64-byte steps, with
 * what ends them (a quote, an escape, UTF-8, a refused byte) at every
 * place, near the buffer's end too: accepted or refused exactly as a byte
 * by byte reading says; jscan_plain_len agrees with that reading. */
static void
test_jscan_strings(void **state)
{
	static const struct {
		const char *ins;	/* put at position k of the string's text */
		int         ok;		/* the document stays valid */
		int         esc;	/* the string then holds an escape */
	} cases[] = {
		{ "", 1, 0 }, { "\\\"", 1, 1 }, { "\\\\", 1, 1 }, { "\\n", 1, 1 }, { "\\u00e9", 1, 1 },
		{ "\\ud83d\\ude00", 1, 1 }, { "\xc3\xa9", 1, 0 }, { "\xf0\x9f\x98\x80", 1, 0 }, { "\x7f", 1, 0 },
		{ "\x01", 0, 0 }, { "\x1f", 0, 0 }, { "\\x", 0, 0 }, { "\\u12x", 0, 0 }, { "\\udc00", 0, 0 },
		{ "\\ud800x", 0, 0 }, { "\xc3", 0, 0 }, { "\xc0\x80", 0, 0 }, { "\xed\xa0\x80", 0, 0 },
		{ "\"", 0, 0 },
	};
	char doc[512], text[300];
	size_t len, k, c, i;

	(void)state;
	for (len = 0; len <= 140; len++) {
		for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			for (k = 0; k <= len; k += (len > 20 && k + 1 < len - 10) ? 7 : 1) {
				struct jscan_member m[2] = { { "s", NULL, 0, 0 }, { "t", NULL, 0, 0 } };
				size_t dl, tl;
				int rc;

				for (i = 0; i < len; i++)
					text[i] = (char)('a' + i % 26);
				text[len] = '\0';
				tl = (size_t)snprintf(doc, sizeof(doc), "%.*s%s%s", (int)k, text, cases[c].ins, text + k);
				assert_true(tl < sizeof(text));
				memcpy(text, doc, tl + 1);
				/* the string as the value, then as the last member */
				dl = (size_t)snprintf(doc, sizeof(doc), "{\"t\":1,\"s\":\"%s\"}", text);
				rc = scan_copy(doc, dl, m, 2);
				if (rc != (cases[c].ok ? 0 : -1))
					fail_msg("len %zu at %zu, case %zu: %d for %s", len, k, c, rc, doc);
				if (rc == 0) {
					assert_ptr_equal(m[1].val, doc + 5);
					assert_ptr_equal(m[0].val, doc + 11);
					assert_int_equal(m[0].val_len, tl + 2);
					assert_int_equal(jscan_plain_string(m[0].val, m[0].val_len, &(const char *){ NULL },
					    &(size_t){ 0 }), cases[c].esc ? -1 : 0);
				}
				/* as a key: one with an escape is refused at the top level */
				dl = (size_t)snprintf(doc, sizeof(doc), "{\"%s\":{\"%s\":0}}", text, text);
				rc = scan_copy(doc, dl, m, 2);
				if (rc != (cases[c].ok && !cases[c].esc ? 0 : -1))
					fail_msg("key len %zu at %zu, case %zu: %d for %s", len, k, c, rc, doc);
				rc = scan_copy(doc, dl, NULL, 0);
				if (rc != (cases[c].ok ? 0 : -1))
					fail_msg("key len %zu at %zu, case %zu, nothing wanted: %d for %s", len, k, c, rc, doc);
				/* jscan_plain_len: the first byte a byte-by-byte reading stops at */
				for (i = 0; i < tl; i++) {
					unsigned char b = (unsigned char)text[i];

					if (b < 0x20 || b >= 0x80 || b == '"' || b == '\\')
						break;
				}
				assert_int_equal(jscan_plain_len(text, tl), i);
			}
		}
	}
}

/* Whitespace anywhere between tokens (and only the four of RFC 8259),
 * containers empty and nested at the top level, every prefix of a valid
 * document refused, and the limit on members asked for. */
static void
test_jscan_layout(void **state)
{
	static const char spaced[] = " \t\r\n{ \"a\" :\n[ 1 ,\t{ \"b\" : \"c\" } , [ ] , { } ] ,\r\n\"d\"\t:\ttrue , "
	    "\"e\" : { } , \"f\" : [ ] , \"g\" : -1.5e3 }\n ";
	static const char tight[] = "{\"a\":[1,{\"b\":\"c\"},[],{}],\"d\":true,\"e\":{},\"f\":[],\"g\":-1.5e3}";
	struct jscan_member m[5] = {
		{ "a", NULL, 0, 0 }, { "d", NULL, 0, 0 }, { "e", NULL, 0, 0 }, { "f", NULL, 0, 0 }, { "g", NULL, 0, 0 },
	};
	struct jscan_member many[JSCAN_MAX_WANT + 1];
	const char *doc;
	size_t i, len;
	int pass;

	(void)state;
	for (pass = 0; pass < 2; pass++) {
		doc = pass ? tight : spaced;
		len = strlen(doc);
		assert_int_equal(scan_copy(doc, len, m, 5), 0);
		assert_int_equal(m[0].val_len, strlen(pass ? "[1,{\"b\":\"c\"},[],{}]" : "[ 1 ,\t{ \"b\" : \"c\" } , [ ] , { } ]"));
		assert_int_equal(m[0].val[0], '[');
		assert_memory_equal(m[1].val, "true", 4);
		assert_int_equal(m[1].val_len, 4);
		assert_int_equal(m[2].val_len, pass ? 2 : 3);
		assert_int_equal(m[3].val_len, pass ? 2 : 3);
		assert_memory_equal(m[4].val, "-1.5e3", 6);
		assert_int_equal(m[4].val_len, 6);
		/* every proper prefix is refused, and read within its length (ASan) */
		for (i = 0; i < len; i++)
			if (scan_copy(doc, i, m, 5) != -1 && (pass || strspn(doc + i, " \t\r\n") != len - i))
				fail_msg("prefix of %zu bytes accepted: %.*s", i, (int)i, doc);
	}
	/* other whitespace is not */
	assert_int_equal(scan("{\"a\":\v1}"), -1);
	assert_int_equal(scan("{\"a\":1\f}"), -1);
	assert_int_equal(scan("\xc2\xa0{}"), -1);
	/* closers must match their openers, at every depth */
	assert_int_equal(scan("{\"a\":[1}}"), -1);
	assert_int_equal(scan("{\"a\":{\"b\":1]}"), -1);
	assert_int_equal(scan("{\"a\":[]]}"), -1);
	assert_int_equal(scan("{\"a\":{}}}"), -1);
	assert_int_equal(scan("{\"a\":1]"), -1);
	assert_int_equal(scan("{\"a\":{}"), -1);
	assert_int_equal(scan("{\"a\":[{}"), -1);
	assert_int_equal(scan("{\"a\":\"}"), -1);
	assert_int_equal(scan("{\"a\":1}  }"), -1);
	/* a nested member named like a wanted one is not it */
	assert_int_equal(scan_copy("{\"x\":{\"a\":1},\"a\":2}", 19, m, 1), 0);
	assert_memory_equal(m[0].val, "2", 1);
	/* at most JSCAN_MAX_WANT members asked for */
	for (i = 0; i < JSCAN_MAX_WANT + 1; i++)
		many[i] = (struct jscan_member){ "a", NULL, 0, 0 };
	assert_int_equal(jscan_object("{}", 2, many, JSCAN_MAX_WANT), 0);
	assert_int_equal(jscan_object("{}", 2, many, JSCAN_MAX_WANT + 1), -1);
}

/* What the scanner refuses still gets json-c's answer (and the same result). */
static void
test_scanner_fallback(void **state)
{
	struct shape_req r;
	struct sc_err e;
	const char *esc = "{\"model\":\"a\\u002fb\",\"stream\":true}";
	const char *dupm = "{\"model\":\"a\",\"model\":\"b\"}";
	const char *big = "{\"model\":\"m\",\"seed\":12345678901234567890}";

	(void)state;
	assert_int_equal(shape_parse(&r, esc, strlen(esc), &e), 0);
	assert_non_null(r.root);
	assert_string_equal(r.model, "a/b");
	assert_true(r.stream);
	shape_free(&r);
	assert_int_equal(shape_parse(&r, dupm, strlen(dupm), &e), 0);
	assert_string_equal(r.model, "b");
	shape_free(&r);
	assert_int_equal(shape_parse(&r, big, strlen(big), &e), 0);
	assert_non_null(r.root);
	shape_free(&r);
	/* the plain case never builds a tree */
	assert_int_equal(shape_parse(&r, "{\"model\":\"m\"}", 13, &e), 0);
	assert_null(r.root);
	assert_string_equal(r.model, "m");
	shape_free(&r);
}

/* A model with an escaped NUL is refused, not cut short at the NUL. */
static void
test_model_nul(void **state)
{
	static const char b1[] = "{\"model\":\"t/x/ok\\u0000evil\",\"messages\":[]}";
	static const char b2[] = "{\"model\":\"\\u0000\"}";
	static const char b3[] = "{\"model\":\"t/\\u00e9\"}";
	struct shape_req r;
	struct sc_err e;

	(void)state;
	expect_reject(b1, sizeof(b1) - 1, "model", "NUL");
	expect_reject(b2, sizeof(b2) - 1, "model", "NUL");
	/* Other escapes still parse. */
	assert_int_equal(shape_parse(&r, b3, sizeof(b3) - 1, &e), 0);
	assert_string_equal(r.model, "t/\xc3\xa9");
	shape_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_model_lengths),
		cmocka_unit_test(test_jscan_syntax),
		cmocka_unit_test(test_jscan_members),
		cmocka_unit_test(test_jscan_strings),
		cmocka_unit_test(test_jscan_layout),
		cmocka_unit_test(test_scanner_fallback),
		cmocka_unit_test(test_extract),
		cmocka_unit_test(test_splice),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_max_tokens),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_stream_usage),
		cmocka_unit_test(test_retries_and_cap),
		cmocka_unit_test(test_model_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
