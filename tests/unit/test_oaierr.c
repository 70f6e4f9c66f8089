/*
 * Unit tests for dataplane/oaierr.c: error bodies of our own (shape, types by
 * status, escaping), rewriting of NIM/HTML/empty upstream errors, OpenAI-shaped
 * bodies passed unchanged, key redaction, and the 503s that say why the
 * sidecar cannot serve (codes, messages naming the route, upstream statuses
 * about the sidecar's keys mapped to them).
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

#include "oaierr.h"
#include "redact.h"

/* Check out is {"error":{message,type,param,code}} with these values. */
static void
assert_err(const char *body, const char *msg, const char *type, const char *param, const char *code)
{
	struct json_object *root, *err, *v;

	root = json_tokener_parse(body);
	if (root == NULL)
		fail_msg("not JSON: %s", body);
	assert_true(json_object_object_get_ex(root, "error", &err));
	assert_int_equal(json_object_object_length(root), 1);
	assert_int_equal(json_object_object_length(err), 4);
	assert_true(json_object_object_get_ex(err, "message", &v));
	if (msg != NULL)
		assert_string_equal(json_object_get_string(v), msg);
	assert_true(json_object_object_get_ex(err, "type", &v));
	assert_string_equal(json_object_get_string(v), type);
	assert_true(json_object_object_get_ex(err, "param", &v));
	if (param == NULL)
		assert_null(v);
	else
		assert_string_equal(json_object_get_string(v), param);
	assert_true(json_object_object_get_ex(err, "code", &v));
	if (code == NULL)
		assert_null(v);
	else
		assert_string_equal(json_object_get_string(v), code);
	json_object_put(root);
}

static void
test_format(void **state)
{
	struct sc_buf out;

	sc_buf_init(&out, 4096);
	assert_int_equal(oaierr_format(&out, 400, "bad \"thing\"\n\\ </x>", "model", NULL), 0);
	assert_string_equal(out.data,
	    "{\"error\":{\"message\":\"bad \\\"thing\\\"\\n\\\\ </x>\",\"type\":\"invalid_request_error\","
	    "\"param\":\"model\",\"code\":null}}");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_format(&out, 503, "no provider available", NULL, "no_provider"), 0);
	assert_err(out.data, "no provider available", "server_error", NULL, "no_provider");
	sc_buf_reset(&out);
	/* invalid UTF-8 never reaches the JSON */
	assert_int_equal(oaierr_format(&out, 400, "x\xff\xc3(y\xe2\x82\xac", NULL, NULL), 0);
	assert_err(out.data, "x?" "?(y\xe2\x82\xac", "invalid_request_error", NULL, NULL);
	sc_buf_free(&out);
	/* past the cap */
	sc_buf_init(&out, 10);
	assert_int_equal(oaierr_format(&out, 400, "x", NULL, NULL), -1);
	sc_buf_free(&out);

	assert_string_equal(oaierr_type(400), "invalid_request_error");
	assert_string_equal(oaierr_type(401), "authentication_error");
	assert_string_equal(oaierr_type(403), "permission_error");
	assert_string_equal(oaierr_type(404), "not_found_error");
	assert_string_equal(oaierr_type(413), "invalid_request_error");
	assert_string_equal(oaierr_type(429), "rate_limit_error");
	assert_string_equal(oaierr_type(500), "server_error");
	assert_string_equal(oaierr_type(502), "server_error");
	assert_string_equal(oaierr_type(503), "server_error");
}

/* Rewrite and return the result (static), or NULL when unchanged. */
static const char *
rewrite(int status, const char *body, const char *key)
{
	static struct sc_buf out;
	int r;

	sc_buf_free(&out);
	sc_buf_init(&out, 1 << 16);
	r = oaierr_rewrite(status, body, strlen(body), key, &out);
	assert_int_not_equal(r, -1);
	if (r == 0) {
		assert_int_equal(out.len, 0);
		return NULL;
	}
	return out.data;
}

static void
test_rewrite(void **state)
{
	const char *ok;

	/* NIM shapes */
	assert_err(rewrite(429, "{\"status\":429,\"title\":\"Too Many Requests\"}", NULL),
	    "Too Many Requests", "rate_limit_error", NULL, NULL);
	assert_err(rewrite(401, "{\"status\":401,\"title\":\"Unauthorized\",\"detail\":\"Authentication failed\"}", NULL),
	    "Unauthorized: Authentication failed", "authentication_error", NULL, NULL);
	assert_err(rewrite(404, "{\"detail\":\"Not Found\"}", NULL), "Not Found", "not_found_error", NULL, NULL);
	assert_err(rewrite(400, "{\"error\":\"model x does not exist\"}", NULL),
	    "model x does not exist", "invalid_request_error", NULL, NULL);
	assert_err(rewrite(422, "{\"object\":\"error\",\"message\":\"bad value\",\"type\":\"BadRequestError\"}", NULL),
	    "bad value", "invalid_request_error", NULL, NULL);
	assert_err(rewrite(403, "{\"error\":{\"detail\":\"forbidden\"}}", NULL), "forbidden", "permission_error", NULL, NULL);
	/* HTML, text, empty, junk */
	assert_err(rewrite(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", NULL),
	    "Upstream error 502 Bad Gateway", "server_error", NULL, NULL);
	assert_err(rewrite(503, "upstream connect error or disconnect/reset before headers", NULL),
	    "Upstream error 503 Service Unavailable: upstream connect error or disconnect/reset before headers",
	    "server_error", NULL, NULL);
	assert_err(rewrite(500, "", NULL), "Upstream error 500 Internal Server Error", "server_error", NULL, NULL);
	assert_err(rewrite(500, "{\"a\":", NULL), "Upstream error 500 Internal Server Error", "server_error", NULL, NULL);
	assert_err(rewrite(500, "[1]", NULL), "Upstream error 500 Internal Server Error", "server_error", NULL, NULL);
	assert_err(rewrite(500, "{\"a\":1}", NULL), "Upstream error 500 Internal Server Error", "server_error", NULL, NULL);
	/* OpenAI-shaped: unchanged */
	ok = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
	assert_null(rewrite(429, ok, NULL));
	assert_null(rewrite(400, "{\n \"error\": {\"message\": \"x\"}\n}\n", NULL));
	/* ...unless it carries something key-like */
	assert_err(rewrite(401, "{\"error\":{\"message\":\"Incorrect API key provided: nvapi-TEST-0001-xxxxxxxxxxxxxxxx.\","
	    "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}", NULL),
	    "Incorrect API key provided: [REDACTED].", "invalid_request_error", NULL, "invalid_api_key");
	/* also when \u escapes hide it from the raw text */
	assert_err(rewrite(401, "{\"error\":{\"message\":\"key \\u006evapi-TEST-0001-xxxxxxxxxxxxxxxx\",\"type\":\"x\"}}", NULL),
	    "key [REDACTED]", "x", NULL, NULL);
}

static void
test_redact(void **state)
{
	const char *key = "nvapi-TEST-0001-xxxxxxxxxxxxxxxx";
	const char *r;
	struct sc_buf out;

	r = rewrite(401, "{\"status\":401,\"title\":\"Unauthorized\",\"detail\":\"bad header Authorization: Bearer abc.def/ghi= used\"}", NULL);
	assert_err(r, "Unauthorized: bad header Authorization: Bearer [REDACTED] used", "authentication_error", NULL, NULL);
	r = rewrite(401, "{\"detail\":\"key nvapi-TEST-0001-xxxxxxxxxxxxxxxx is invalid\"}", NULL);
	assert_err(r, "key [REDACTED] is invalid", "authentication_error", NULL, NULL);
	assert_null(strstr(r, "TEST-0001"));
	r = rewrite(401, "{\"detail\":\"key sk-proj-abcdefghijklmnopqrstuvwxyz is invalid\"}", NULL);
	assert_err(r, "key [REDACTED] is invalid", "authentication_error", NULL, NULL);
	/* the exact key, even without a known prefix */
	r = rewrite(401, "{\"detail\":\"key=QWERTYUIOPasdfghjkl rejected\"}", "QWERTYUIOPasdfghjkl");
	assert_err(r, "key=[REDACTED] rejected", "authentication_error", NULL, NULL);
	/* the key without its prefix, or a piece of 8+ characters of it */
	r = rewrite(401, "{\"status\":401,\"detail\":\"secret TEST-0007-ggggHIJKLMNOP and ...LMNOPqrs\"}",
	    "nvapi-TEST-0007-ggggHIJKLMNOPqrs");
	assert_err(r, "secret [REDACTED] and ...[REDACTED]", "authentication_error", NULL, NULL);
	/* an OpenAI-shaped body that echoes a piece is rewritten, not passed */
	r = rewrite(401, "{\"error\":{\"message\":\"bad key 0007-gggg\",\"type\":\"x\"}}",
	    "nvapi-TEST-0007-ggggHIJKLMNOPqrs");
	assert_err(r, "bad key [REDACTED]", "x", NULL, NULL);
	r = rewrite(400, "plain text with Bearer secret-token-123 inside", NULL);
	assert_null(strstr(r, "secret-token"));
	/* no false positives on ordinary words */
	sc_buf_init(&out, 1024);
	assert_int_equal(redact_text("task-123 disk-usage bearer nvapi- risk-free skip", 48, NULL, &out), 0);
	assert_string_equal(out.data, "task-123 disk-usage bearer nvapi- risk-free skip");
	sc_buf_reset(&out);
	assert_int_equal(redact_text(key, strlen(key), key, &out), 1);
	assert_string_equal(out.data, "[REDACTED]");
	sc_buf_free(&out);
	/* our own messages are redacted too */
	sc_buf_init(&out, 1024);
	assert_int_equal(oaierr_format(&out, 401, "Bearer nvapi-abcdefghijkl failed", NULL, NULL), 0);
	assert_err(out.data, "Bearer [REDACTED] failed", "authentication_error", NULL, NULL);
	sc_buf_free(&out);
}

static void
test_unavailable(void **state)
{
	struct sc_buf out;

	(void)state;
	sc_buf_init(&out, 4096);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_RATE_LIMITED, "nvidia/", 11, 17, 1, 0), 0);
	assert_err(out.data, "all 11 keys of nvidia/ are rate limited; the next frees in 17 s", "server_error", NULL,
	    "rate_limited");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_RATE_LIMITED, "nvidia/", 1, 4, 1, 0), 0);
	assert_err(out.data, "the key of nvidia/ is rate limited; the next frees in 4 s", "server_error", NULL,
	    "rate_limited");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_QUEUE_TIMEOUT, "nvidia/", 2, 8, 1, 0), 0);
	assert_err(out.data, "timed out waiting for a key: all 2 keys of nvidia/ are rate limited; the next frees in 8 s",
	    "server_error", NULL, "queue_timeout");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_QUEUE_FULL, "nvidia/", 3, 2, 1, 0), 0);
	assert_err(out.data, "the wait queue is full and all 3 keys of nvidia/ are rate limited; the next frees in 2 s",
	    "server_error", NULL, "queue_full");
	sc_buf_reset(&out);
	/* nothing known to free: the configured fallback, said as such */
	assert_int_equal(oaierr_unavailable(&out, OAIERR_NO_PROVIDER, "nvidia/", 0, 30, 0, 0), 0);
	assert_err(out.data, "no provider can serve nvidia/ now; retry in 30 s", "server_error", NULL, "no_provider");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_DRAINING, "nvidia/", 2, 5, 0, 0), 0);
	assert_err(out.data, "the sidecar is shutting down; retry in 5 s", "server_error", NULL, "draining");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_NO_VALID_KEY, "nvidia/", 2, 300, 0, 0), 0);
	assert_err(out.data, "no valid key for nvidia/: every key is invalid or disabled (the operator must replace them); "
	    "retry in 300 s", "server_error", NULL, "no_valid_key");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_AUTH_FAILED, "nvidia/", 2, 30, 0, 401), 0);
	assert_err(out.data, "the upstream rejected all 2 keys of nvidia/ (HTTP 401); the operator must replace them; "
	    "retry in 30 s", "server_error", NULL, "upstream_auth_failed");
	sc_buf_reset(&out);
	assert_int_equal(oaierr_unavailable(&out, OAIERR_QUOTA, "nvidia/", 1, 30, 0, 402), 0);
	assert_err(out.data, "the upstream refused the key of nvidia/ for quota or billing (HTTP 402); retry in 30 s",
	    "server_error", NULL, "upstream_quota");
	sc_buf_reset(&out);
	/* a route that looks like a key is still never shown */
	assert_int_equal(oaierr_unavailable(&out, OAIERR_RATE_LIMITED, "nvapi-abcdefghijklmnop/", 1, 1, 1, 0), 0);
	assert_null(strstr(out.data, "abcdefghijklmnop"));
	sc_buf_free(&out);

	/* upstream statuses about the sidecar's keys, and the others */
	assert_int_equal(oaierr_unavail_from_upstream(401), OAIERR_AUTH_FAILED);
	assert_int_equal(oaierr_unavail_from_upstream(403), OAIERR_AUTH_FAILED);
	assert_int_equal(oaierr_unavail_from_upstream(402), OAIERR_QUOTA);
	assert_int_equal(oaierr_unavail_from_upstream(429), OAIERR_RATE_LIMITED);
	assert_int_equal(oaierr_unavail_from_upstream(400), -1);
	assert_int_equal(oaierr_unavail_from_upstream(404), -1);
	assert_int_equal(oaierr_unavail_from_upstream(422), -1);
	assert_int_equal(oaierr_unavail_from_upstream(500), -1);
	assert_string_equal(oaierr_unavail_code(OAIERR_AUTH_FAILED), "upstream_auth_failed");
	assert_string_equal(oaierr_unavail_code(OAIERR_NO_VALID_KEY), "no_valid_key");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_unavailable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
