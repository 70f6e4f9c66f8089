/*
 * Unit tests for dataplane/respmodel.c: the client's model id spliced into
 * JSON responses (chat, completions, embeddings) and into SSE events as the
 * relay holds them — every other byte unchanged, escaping of odd ids, nested
 * "model" members untouched, refused or model-less documents left alone,
 * multi-line data events, every split of a real stream through sse_feed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "jscan.h"
#include "respmodel.h"
#include "sse.h"

#define CLIENT "nvidia/meta/llama-3.1-8b-instruct"

static void
lit_of(const char *model, struct sc_buf *lit)
{
	sc_buf_init(lit, 4096);
	assert_int_equal(respmodel_literal(model, strlen(model), lit), 0);
}

/* respmodel_json of in: the result (or in itself when nothing changed). */
static void
assert_json(const char *in, const char *model, int want_rc, const char *want)
{
	struct jscan_member m[3] = { { "model", NULL, 0, 0 }, { "usage", NULL, 0, 0 }, { "choices", NULL, 0, 0 } };
	struct sc_buf lit, out;
	int rc;

	lit_of(model, &lit);
	sc_buf_init(&out, 1 << 20);
	rc = respmodel_json(in, strlen(in), lit.data, lit.len, &out);
	assert_int_equal(rc, want_rc);
	if (rc == 1)
		assert_string_equal(out.data, want);
	else
		assert_int_equal(out.len, 0);
	sc_buf_free(&out);
	/* the same from a scan that also wanted what the proxy reads alongside */
	if (jscan_object(in, strlen(in), m, 3) == 0) {
		sc_buf_init(&out, 1 << 20);
		assert_int_equal(respmodel_json_member(in, strlen(in), &m[0], lit.data, lit.len, &out), want_rc);
		if (want_rc == 1)
			assert_string_equal(out.data, want);
		else
			assert_int_equal(out.len, 0);
		sc_buf_free(&out);
	}
	sc_buf_free(&lit);
}

static void
test_literal(void **state)
{
	struct sc_buf lit;

	(void)state;
	lit_of(CLIENT, &lit);
	assert_string_equal(lit.data, "\"" CLIENT "\"");
	sc_buf_free(&lit);
	lit_of("a\"b\\c/d\n\x01é", &lit);
	assert_string_equal(lit.data, "\"a\\\"b\\\\c/d\\n\\u0001é\"");
	sc_buf_free(&lit);
	/* plain ids (no json-c on the way) read as json-c writes them */
	{
		static const char *const ids[] = { CLIENT, "", "a/b", "é\x7f~ z", "x:y@1.5" };
		size_t i;

		for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
			struct json_object *o = json_object_new_string(ids[i]);
			lit_of(ids[i], &lit);
			assert_string_equal(lit.data,
			    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(o);
			sc_buf_free(&lit);
		}
	}
	/* ids of every length to 100 with an escape or a UTF-8 byte at every place
	 * (the plain check reads 16 bytes at a time) read as json-c writes them */
	{
		char id[128];
		size_t n, k, i;

		for (n = 1; n <= 100; n++)
			for (k = 0; k < n; k++) {
				struct json_object *o;

				for (i = 0; i < n; i++)
					id[i] = (char)('a' + i % 26);
				id[n] = '\0';
				id[k] = "\"\\\n\xc3/"[k % 5];
				if (id[k] == '\xc3' && k + 1 < n)
					id[k + 1] = '\xa9';
				o = json_object_new_string(id);
				lit_of(id, &lit);
				assert_string_equal(lit.data,
				    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
				json_object_put(o);
				sc_buf_free(&lit);
			}
	}
	/* appended after what out already holds */
	sc_buf_init(&lit, 64);
	sc_buf_append(&lit, "m=", 2);
	assert_int_equal(respmodel_literal("a/b", 3, &lit), 0);
	assert_string_equal(lit.data, "m=\"a/b\"");
	sc_buf_free(&lit);
	/* past the cap: refused, nothing appended; exactly at it: written */
	sc_buf_init(&lit, 4);
	assert_int_equal(respmodel_literal("abc", 3, &lit), -1);
	assert_int_equal(lit.len, 0);
	sc_buf_free(&lit);
	sc_buf_init(&lit, 5);
	assert_int_equal(respmodel_literal("abc", 3, &lit), 0);
	assert_string_equal(lit.data, "\"abc\"");
	sc_buf_free(&lit);
}

static void
test_json(void **state)
{
	(void)state;
	/* chat completion, model in the middle */
	assert_json("{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"meta/llama-3.1-8b-instruct\","
		    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"}}],"
		    "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
	    CLIENT, 1,
	    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"" CLIENT "\","
	    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"}}],"
	    "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}");
	/* embeddings: model last, after a nested "model" that must stay; whitespace kept */
	assert_json("{ \"object\" : \"list\", \"data\" : [ {\"model\":\"inner\",\"embedding\":[0.1,-2e-3]} ] ,\n"
		    "  \"model\" :  \"nvidia/nv-embedqa-e5-v5\" , \"usage\":{} }",
	    "nvidia/nvidia/nv-embedqa-e5-v5", 1,
	    "{ \"object\" : \"list\", \"data\" : [ {\"model\":\"inner\",\"embedding\":[0.1,-2e-3]} ] ,\n"
	    "  \"model\" :  \"nvidia/nvidia/nv-embedqa-e5-v5\" , \"usage\":{} }");
	/* completion, model first; an id that needs escaping */
	assert_json("{\"model\":\"m\",\"choices\":[]}", "p/\"q\"", 1, "{\"model\":\"p/\\\"q\\\"\",\"choices\":[]}");
	/* escapes in the upstream's value are replaced whole */
	assert_json("{\"model\":\"m\\u0041\\\"\"}", CLIENT, 1, "{\"model\":\"" CLIENT "\"}");
	/* nothing to change: same value, no model, model not a string, nested only */
	assert_json("{\"model\":\"" CLIENT "\",\"x\":1}", CLIENT, 0, NULL);
	assert_json("{\"id\":\"x\",\"choices\":[]}", CLIENT, 0, NULL);
	assert_json("{\"model\":null}", CLIENT, 0, NULL);
	assert_json("{\"model\":7}", CLIENT, 0, NULL);
	assert_json("{\"error\":{\"model\":\"m\"}}", CLIENT, 0, NULL);
	/* refused: not JSON, not an object, truncated, a second model member */
	assert_json("not json", CLIENT, 0, NULL);
	assert_json("[{\"model\":\"m\"}]", CLIENT, 0, NULL);
	assert_json("{\"model\":\"m\",\"choices\":[", CLIENT, 0, NULL);
	assert_json("{\"model\":\"m\",\"model\":\"n\"}", CLIENT, 0, NULL);
	assert_json("", CLIENT, 0, NULL);
}

static void
test_json_cap(void **state)
{
	struct sc_buf lit, out;
	const char *in = "{\"model\":\"m\",\"choices\":[]}";

	(void)state;
	lit_of(CLIENT, &lit);
	sc_buf_init(&out, 20);	/* too small for the result */
	assert_int_equal(sc_buf_append(&out, "keep", 4), 0);
	assert_int_equal(respmodel_json(in, strlen(in), lit.data, lit.len, &out), -1);
	assert_int_equal(out.len, 4);
	assert_string_equal(out.data, "keep");
	sc_buf_free(&out);
	sc_buf_free(&lit);
}

/* Relay stream[] through sse_feed split every `step` bytes, holding each
 * event until it ends and rewriting it the way the data plane does. */
static void
relay(const char *stream, size_t step, const char *model, struct sc_buf *sent)
{
	struct sse_scanner s;
	struct sse_event ev;
	struct sc_buf hold, scratch, lit;
	size_t len = strlen(stream), pos = 0;

	lit_of(model, &lit);
	sse_init(&s, 0);
	sc_buf_init(&hold, 1 << 20);
	sc_buf_init(&scratch, 1 << 20);
	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step;
		const char *p = stream + pos;

		pos += n;
		while (n > 0) {
			size_t used;
			enum sse_result r = sse_feed(&s, p, n, &used, &ev);

			assert_int_equal(sc_buf_append(&hold, p, used), 0);
			if (r == SSE_EVENT) {
				respmodel_sse(&hold, &ev, lit.data, lit.len, &scratch);
				assert_int_equal(sc_buf_append(sent, hold.data, hold.len), 0);
				sc_buf_reset(&hold);
			}
			p += used;
			n -= used;
		}
	}
	if (sse_finish(&s, &ev) == SSE_EVENT)
		respmodel_sse(&hold, &ev, lit.data, lit.len, &scratch);
	if (hold.len)
		assert_int_equal(sc_buf_append(sent, hold.data, hold.len), 0);
	sse_free(&s);
	sc_buf_free(&hold);
	sc_buf_free(&scratch);
	sc_buf_free(&lit);
}

static void
test_sse_stream(void **state)
{
	static const char in[] =
	    ": keep-alive comment\n\n"
	    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"meta/llama\","
	    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\r\n\r\n"
	    "id: 7\nevent: message\ndata:{\"model\":\"meta/llama\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
	    "data: {\"model\":\"meta/llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
	    "\"total_tokens\":5}}\n\n"
	    "data: [DONE]\n\n";
	static const char want[] =
	    ": keep-alive comment\n\n"
	    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"" CLIENT "\","
	    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\r\n\r\n"
	    "id: 7\nevent: message\ndata:{\"model\":\"" CLIENT "\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
	    "data: {\"model\":\"" CLIENT "\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
	    "\"total_tokens\":5}}\n\n"
	    "data: [DONE]\n\n";
	struct sc_buf sent;

	(void)state;
	for (size_t step = 1; step <= sizeof(in); step++) {
		sc_buf_init(&sent, 1 << 20);
		relay(in, step, CLIENT, &sent);
		assert_string_equal(sent.data, want);
		sc_buf_free(&sent);
	}
}

static void
test_sse_multiline(void **state)
{
	static const char in[] = "event: chunk\ndata: {\"model\":\"m\",\ndata: \"x\":1}\n\n";
	struct sc_buf sent;

	(void)state;
	sc_buf_init(&sent, 4096);
	relay(in, sizeof(in), "p/m", &sent);
	assert_string_equal(sent.data, "event: chunk\ndata: {\"model\":\"p/m\",\ndata: \"x\":1}\n\n");
	sc_buf_free(&sent);
}

static void
test_sse_untouched(void **state)
{
	static const char in[] =
	    "data: {\"choices\":[]}\n\n"		/* no model */
	    "data: not json\n\n"
	    "data: {\"error\":{\"message\":\"x\"}}\n\n"
	    "event: ping\n\n"
	    "data: [DONE]\n\n";
	struct sc_buf sent;

	(void)state;
	sc_buf_init(&sent, 4096);
	relay(in, 5, CLIENT, &sent);
	assert_string_equal(sent.data, in);
	sc_buf_free(&sent);
}

/* No room in hold for the longer event: left as it was. */
static void
test_sse_cap(void **state)
{
	static const char ev_text[] = "data: {\"model\":\"m\"}\n\n";
	struct sse_scanner s;
	struct sse_event ev;
	struct sc_buf hold, scratch, lit;
	size_t used;

	(void)state;
	lit_of(CLIENT, &lit);
	sse_init(&s, 0);
	sc_buf_init(&hold, sizeof(ev_text) + 4);
	sc_buf_init(&scratch, 4096);
	assert_int_equal(sse_feed(&s, ev_text, sizeof(ev_text) - 1, &used, &ev), SSE_EVENT);
	assert_int_equal(sc_buf_append(&hold, ev_text, used), 0);
	assert_int_equal(respmodel_sse(&hold, &ev, lit.data, lit.len, &scratch), 0);
	assert_string_equal(hold.data, ev_text);
	sse_free(&s);
	sc_buf_free(&hold);
	sc_buf_free(&scratch);
	sc_buf_free(&lit);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_json_cap),
		cmocka_unit_test(test_sse_stream),
		cmocka_unit_test(test_sse_multiline),
		cmocka_unit_test(test_sse_untouched),
		cmocka_unit_test(test_sse_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
