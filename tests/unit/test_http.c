/*
 * Unit tests for dataplane/http.c: every framing rule with the status it
 * answers, every prefix of valid requests being "incomplete", pipelining,
 * the limits (also on incomplete input), and the chunked decoder fed at every
 * split point.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "http.h"

static int
parse(const char *s, struct http_request *req)
{
	return http_parse_request(s, strlen(s), req);
}

/* Parsing s must fail with status. */
static void
expect_status(const char *s, int status)
{
	struct http_request req;
	int r = parse(s, &req);

	if (r != HTTP_ERROR || req.error_status != status)
		fail_msg("%s\n -> r=%d status=%d (want %d)", s, r, r == HTTP_ERROR ? req.error_status : 0, status);
}

static const char *const valid[] = {
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /v1/models?x=1 HTTP/1.0\r\n\r\n",
	("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9190\r\nContent-Type: application/json\r\n"
	    "Authorization: Bearer sk-TEST\r\nContent-Length: 13\r\nx-stainless-os: Linux\r\n\r\n"),
	"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
	"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
};

static void
test_valid_and_prefixes(void **state)
{
	size_t i, k;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		struct http_request req;
		size_t n = strlen(valid[i]);

		for (k = 0; k < n; k++) {
			int r = http_parse_request(valid[i], k, &req);

			if (r != HTTP_INCOMPLETE)
				fail_msg("valid[%zu] prefix %zu: r=%d status=%d", i, k, r, req.error_status);
		}
		assert_int_equal(http_parse_request(valid[i], n, &req), (int)n);
	}
}

static void
test_fields(void **state)
{
	struct http_request req;
	const struct http_header *h;

	assert_int_equal(parse(valid[2], &req), (int)strlen(valid[2]));
	assert_true(http_slice_eq(req.method, "POST"));
	assert_true(http_slice_eq(req.target, "/v1/chat/completions"));
	assert_int_equal(req.minor_version, 1);
	assert_int_equal(req.nheaders, 5);
	assert_int_equal(req.body_kind, HTTP_BODY_LENGTH);
	assert_int_equal(req.content_length, 13);
	assert_int_equal(req.keep_alive, 1);
	assert_int_equal(req.expect_continue, 0);
	h = http_find_header(&req, "content-type");
	assert_non_null(h);
	assert_true(http_slice_eq(h->value, "application/json"));
	assert_null(http_find_header(&req, "cookie"));

	assert_true(parse(valid[1], &req) > 0);
	assert_int_equal(req.minor_version, 0);
	assert_int_equal(req.keep_alive, 0);
	assert_int_equal(req.body_kind, HTTP_BODY_NONE);

	assert_true(parse(valid[3], &req) > 0);
	assert_int_equal(req.body_kind, HTTP_BODY_CHUNKED);
	assert_int_equal(req.keep_alive, 0);

	assert_true(parse(valid[4], &req) > 0);
	assert_true(http_slice_eq(req.target, "http://example.com/a"));
	h = http_find_header(&req, "x-empty");
	assert_non_null(h);
	assert_int_equal(h->value.len, 0);

	assert_true(parse(valid[5], &req) > 0);
	assert_int_equal(req.expect_continue, 1);

	/* OWS trimmed, values with inner spaces kept */
	assert_true(parse("GET / HTTP/1.1\r\nX-A:  a b \t\r\nHost: a\r\n\r\n", &req) > 0);
	assert_true(http_slice_eq(req.headers[0].value, "a b"));

	/* keep-alive semantics */
	assert_true(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) > 0);
	assert_int_equal(req.keep_alive, 1);
	assert_true(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &req) > 0);
	assert_int_equal(req.keep_alive, 0);
	assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n", &req) > 0);
	assert_int_equal(req.keep_alive, 0);
	assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\n\r\n", &req) > 0);
	assert_int_equal(req.keep_alive, 1);
	{
		struct http_slice s = { "X-Foo", 5 };
		struct http_slice t = { "X-Bar", 5 };

		assert_true(http_connection_lists(&req, s));
		assert_false(http_connection_lists(&req, t));
	}
	/* Expect: 100-continue is ignored in HTTP/1.0 */
	assert_true(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &req) > 0);
	assert_int_equal(req.expect_continue, 0);

	/* identical repeated Content-Length values are accepted */
	assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &req) > 0);
	assert_int_equal(req.content_length, 5);
	assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", &req) > 0);
	assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &req) > 0);
	assert_int_equal(req.body_kind, HTTP_BODY_LENGTH);
	assert_int_equal(req.content_length, 0);
	assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", &req) > 0);
	assert_true(req.content_length == INT64_MAX);
	/* Transfer-Encoding: chunked case-insensitively, also across lines of one */
	assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", &req) > 0);
	assert_int_equal(req.body_kind, HTTP_BODY_CHUNKED);
}

static void
test_errors(void **state)
{
	/* request line */
	expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
	expect_status("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /\r\n\r\n", 400);
	expect_status("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/11\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
	expect_status("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
	expect_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
	/* line endings */
	expect_status("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
	expect_status("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\n\rx", 400);
	expect_status("\n", 400);
	expect_status("\r\n\n", 400);
	/* header names and values */
	expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400);
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
		struct http_request req;

		assert_int_equal(http_parse_request(nul, sizeof(nul) - 1, &req), HTTP_ERROR);
		assert_int_equal(req.error_status, 400);
	}
	/* obs-fold, also as the first header line */
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
	/* Host */
	expect_status("GET / HTTP/1.1\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
	/* Content-Length */
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
	/* Transfer-Encoding */
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked x\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400);
	expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	/* Expect */
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
}

static void
test_limits(void **state)
{
	struct http_request req;
	char *buf = malloc(HTTP_MAX_HEAD_BYTES * 2 + HTTP_MAX_REQLINE * 2);
	size_t n, tlen, i;

	/* Request line of exactly the limit parses; one more byte is 414. */
	tlen = HTTP_MAX_REQLINE - strlen("GET  HTTP/1.1");
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', tlen - 1);
	n = 4 + tlen;
	memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
	n += 22;
	assert_int_equal(http_parse_request(buf, n, &req), (int)n);
	for (i = 0; i < n; i++)	/* and its prefixes are incomplete */
		assert_int_equal(http_parse_request(buf, i, &req), HTTP_INCOMPLETE);
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', tlen);
	n = 5 + tlen;
	memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
	n += 22;
	assert_int_equal(http_parse_request(buf, n, &req), HTTP_ERROR);
	assert_int_equal(req.error_status, 414);
	/* an incomplete over-long request line is 414 already */
	assert_int_equal(http_parse_request(buf, HTTP_MAX_REQLINE + 2, &req), HTTP_ERROR);
	assert_int_equal(req.error_status, 414);
	memset(buf, 'A', HTTP_MAX_REQLINE + 10);
	assert_int_equal(http_parse_request(buf, HTTP_MAX_REQLINE + 10, &req), HTTP_ERROR);
	assert_int_equal(req.error_status, 414);

	/* Header section of exactly the limit parses; one more byte is 431. */
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	{
		size_t hstart = 16, fill = HTTP_MAX_HEAD_BYTES - (n - hstart) - 4;

		memset(buf + n, 'v', fill);
		n += fill;
		memcpy(buf + n, "\r\n\r\n", 4);
		n += 4;
		assert_int_equal(n - hstart, HTTP_MAX_HEAD_BYTES);
		assert_int_equal(http_parse_request(buf, n, &req), (int)n);
		assert_int_equal(http_parse_request(buf, n - 1, &req), HTTP_INCOMPLETE);
		memcpy(buf + n - 4, "v\r\n\r\n", 5);
		n += 1;
		assert_int_equal(http_parse_request(buf, n, &req), HTTP_ERROR);
		assert_int_equal(req.error_status, 431);
		/* incomplete and over the limit: 431 too */
		assert_int_equal(http_parse_request(buf, hstart + HTTP_MAX_HEAD_BYTES, &req), HTTP_ERROR);
		assert_int_equal(req.error_status, 431);
	}

	/* Header count */
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_MAX_HEADERS; i++)
		n += (size_t)sprintf(buf + n, "%s: %zu\r\n", i == 0 ? "Host" : "X-H", i);
	memcpy(buf + n, "\r\n", 3);
	assert_int_equal(http_parse_request(buf, n + 2, &req), (int)n + 2);
	assert_int_equal(req.nheaders, HTTP_MAX_HEADERS);
	n += (size_t)sprintf(buf + n, "X-More: 1\r\n\r\n");
	assert_int_equal(http_parse_request(buf, n, &req), HTTP_ERROR);
	assert_int_equal(req.error_status, 431);
	free(buf);
}

static void
test_pipelined(void **state)
{
	const char *two = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
	    "GET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTT";
	struct http_request req;
	size_t off = 0, len = strlen(two);
	int r;

	r = http_parse_request(two, len, &req);
	assert_true(r > 0);
	assert_true(http_slice_eq(req.target, "/a"));
	off = (size_t)r + req.content_length;
	r = http_parse_request(two + off, len - off, &req);
	assert_true(r > 0);
	assert_true(http_slice_eq(req.target, "/b"));
	off += (size_t)r;
	assert_int_equal(http_parse_request(two + off, len - off, &req), HTTP_INCOMPLETE);
}

/* Decode in with the input split at split (and again at split2). */
static int
decode_split(const char *in, size_t len, size_t split, size_t split2, struct sc_buf *out,
    size_t *used, int *status)
{
	struct http_chunked c;
	size_t cuts[3] = { split, split2, len }, pos = 0, k;
	int r = 0;

	http_chunked_init(&c);
	for (k = 0; k < 3; k++) {
		size_t end = cuts[k] < pos ? pos : cuts[k], consumed;

		if (end > len)
			end = len;
		r = http_chunked_decode(&c, in + pos, end - pos, &consumed, out, status);
		if (r == HTTP_ERROR)
			return r;
		pos += consumed;
		if (r == 1)
			break;
		assert_int_equal(pos, end);
	}
	*used = pos;
	return r;
}

static void
test_chunked(void **state)
{
	static const char body[] = "5;ext=\"x y\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
	    "000\r\nX-Trailer: t\r\nY: z\r\n\r\nNEXT";
	size_t len = strlen(body), i, j, used;
	int st;

	for (i = 0; i <= len; i++) {
		for (j = i; j <= len; j += 3) {
			struct sc_buf out;

			sc_buf_init(&out, 1024);
			assert_int_equal(decode_split(body, len, i, j, &out, &used, &st), 1);
			assert_int_equal(used, len - 4);
			assert_int_equal(out.len, 31);
			assert_memory_equal(out.data, "helloabcdefghijklmnopqrstuvwxyz", 31);
			sc_buf_free(&out);
		}
	}
}

static int
chunked_status(const char *in, size_t cap)
{
	struct http_chunked c;
	struct sc_buf out;
	size_t used;
	int st = 0, r;

	http_chunked_init(&c);
	sc_buf_init(&out, cap);
	r = http_chunked_decode(&c, in, strlen(in), &used, &out, &st);
	sc_buf_free(&out);
	if (r == HTTP_ERROR)
		return st;
	return r == 1 ? 200 : 0;
}

static void
test_chunked_errors(void **state)
{
	char big[8192];

	assert_int_equal(chunked_status("0\r\n\r\n", 10), 200);
	assert_int_equal(chunked_status("3\r\nabc\r\n0\r\n\r\n", 10), 200);
	assert_int_equal(chunked_status("3\r\nabc\r\n", 10), 0);
	assert_int_equal(chunked_status("ffffffffffffffff\r\n", 10), 0);	/* 16 digits: size fine, cap later */
	assert_int_equal(chunked_status("0000000000000003\r\nabc\r\n0\r\n\r\n", 10), 200);
	assert_int_equal(chunked_status("10000000000000000\r\n", 10), 400);	/* 17 digits */
	assert_int_equal(chunked_status("00000000000000003\r\n", 10), 400);
	assert_int_equal(chunked_status("\r\n", 10), 400);
	assert_int_equal(chunked_status("g\r\n", 10), 400);
	assert_int_equal(chunked_status("-1\r\n", 10), 400);
	assert_int_equal(chunked_status("0x3\r\n", 10), 400);
	assert_int_equal(chunked_status("3\nabc\r\n", 10), 400);
	assert_int_equal(chunked_status("3\rabc\r\n", 10), 400);
	assert_int_equal(chunked_status("3\r\nabcd\r\n", 10), 400);
	assert_int_equal(chunked_status("3\r\nabc\n0\r\n\r\n", 10), 400);
	assert_int_equal(chunked_status("3;a\x01\r\nabc\r\n", 10), 400);
	assert_int_equal(chunked_status("3 x\r\nabc\r\n", 10), 400);
	assert_int_equal(chunked_status("3 \t ;x=1\r\nabc\r\n0\r\n\r\n", 10), 200);
	assert_int_equal(chunked_status("3 \r\nabc\r\n0 \r\n\r\n", 10), 200);
	assert_int_equal(chunked_status("0\r\nX: y\n\r\n", 10), 400);
	assert_int_equal(chunked_status("0\r\n folded\r\n\r\n", 10), 400);
	assert_int_equal(chunked_status("0\r\n\r\r", 10), 400);
	assert_int_equal(chunked_status("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 10), 413);
	assert_int_equal(chunked_status("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 10), 200);
	/* bounded extension and trailer lines */
	memset(big, 'x', sizeof(big));
	memcpy(big, "1;", 2);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	assert_int_equal(chunked_status(big, 10), 400);
	memcpy(big, "0\r\nX: ", 6);
	assert_int_equal(chunked_status(big, 10), 400);
	/* NULL out discards */
	{
		struct http_chunked c;
		size_t used;
		int st;

		http_chunked_init(&c);
		assert_int_equal(http_chunked_decode(&c, "3\r\nabc\r\n0\r\n\r\n", 13, &used, NULL, &st), 1);
		assert_int_equal(used, 13);
		/* complete: further input is not consumed */
		assert_int_equal(http_chunked_decode(&c, "GET", 3, &used, NULL, &st), 1);
		assert_int_equal(used, 0);
	}
}

static void
test_misc(void **state)
{
	struct http_slice s;

	s.p = "Transfer-Encoding";
	s.len = strlen(s.p);
	assert_true(http_is_hop_by_hop(s));
	s.p = "proxy-authorization";
	s.len = strlen(s.p);
	assert_true(http_is_hop_by_hop(s));
	s.p = "TE";
	s.len = 2;
	assert_true(http_is_hop_by_hop(s));
	s.p = "Authorization";
	s.len = strlen(s.p);
	assert_false(http_is_hop_by_hop(s));
	s.p = "Content-Type";
	s.len = strlen(s.p);
	assert_false(http_is_hop_by_hop(s));
	s.p = "tex";
	s.len = 2;
	assert_true(http_is_hop_by_hop(s));	/* "te" */
	{	/* every hop-by-hop name (RFC 9110 §7.6.1 and the proxy ones), any case */
		static const char *const hop[] = {
			"Connection", "KEEP-ALIVE", "proxy-connection", "te", "Trailer", "transfer-encoding",
			"Upgrade", "Proxy-Authenticate", "proxy-authorization",
		};
		size_t k;

		for (k = 0; k < sizeof(hop) / sizeof(hop[0]); k++) {
			s.p = hop[k];
			s.len = strlen(hop[k]);
			assert_true(http_is_hop_by_hop(s));
			s.len--;
			assert_false(http_is_hop_by_hop(s));
		}
	}
	{
		static const char *const cases[][2] = {
			{ "/v1/models?a=b", "/v1/models?a=b" },
			{ "http://h:9190/v1/chat/completions", "/v1/chat/completions" },
			{ "https://h", "/" },
			{ "http://h?x=1", "?x=1" },
		};
		size_t i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct http_slice t = { cases[i][0], strlen(cases[i][0]) };

			assert_true(http_slice_eq(http_target_path(t), cases[i][1]));
		}
	}
	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(429), "Too Many Requests");
	assert_string_equal(http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(http_reason(799), "Unknown");
	{	/* http_status_text is "%d %s" of the status and its reason */
		static const int odd[] = { INT_MIN, -1, 0, 7, 99, 1000, 12345, INT_MAX };
		char want[64], got[HTTP_STATUS_TEXT_MAX];
		int st;
		size_t i;

		for (st = 100; st <= 999; st++) {
			snprintf(want, sizeof(want), "%d %s", st, http_reason(st));
			assert_int_equal(http_status_text(st, got), strlen(want));
			assert_string_equal(got, want);
		}
		for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
			snprintf(want, sizeof(want), "%d %s", odd[i], http_reason(odd[i]));
			assert_int_equal(http_status_text(odd[i], got), strlen(want));
			assert_string_equal(got, want);
		}
	}
}

/* Every byte value at every position of a header value and of a request
 * target, so that both the 8-bytes-at-a-time checks and the byte loops after
 * them see each one: allowed bytes parse, CR and LF are bare line ends,
 * anything else is the invalid-character error. The same for a byte of a
 * Host value and of a header name (the byte-class table). */
static void
test_byte_classes(void **state)
{
	char buf[128], pad[32];
	struct http_request req;
	unsigned b;
	size_t pos;

	memset(pad, 'a', sizeof(pad));
	for (b = 0; b < 256; b++) {	/* (snprintf's %c writes a NUL too, and counts it) */
		for (pos = 0; pos <= 20; pos++) {
			int n, r;
			int value_ok = b == '\t' || (b >= 0x20 && b != 0x7f);
			int target_ok = b > 0x20 && b < 0x7f;

			/* value: "a" + pos × "a" + b + (20 - pos) × "a" + "a" (OWS never at the ends) */
			n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-V: a%.*s%c%.*sa\r\n\r\n", (int)pos, pad,
			    (char)b, (int)(20 - pos), pad);
			r = http_parse_request(buf, (size_t)n, &req);
			if (value_ok) {
				if (r != n || req.nheaders != 2 || req.headers[1].value.len != 23)
					fail_msg("value byte 0x%02x at %zu: r=%d", b, pos, r);
			} else if (r != HTTP_ERROR || req.error_status != 400 ||
			    strcmp(req.error_reason, b == '\r' || b == '\n' ? "bare CR or LF in header section" :
			    "invalid character in header field value") != 0) {
				fail_msg("value byte 0x%02x at %zu: r=%d", b, pos, r);
			}

			if (pos == 0) {
				/* a Host value: the value bytes less " \t,/\\@?#" */
				int host_ok = value_ok && strchr(" \t,/\\@?#", (int)b) == NULL;
				/* a header name: tchar only (':' ends the name "X", the rest is the value) */
				int tchar = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') ||
				    (b != 0 && strchr("!#$%&'*+-.^_`|~", (int)b) != NULL);

				n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a%cb\r\n\r\n", (char)b);
				r = http_parse_request(buf, (size_t)n, &req);
				if (host_ok ? r != n : r != HTTP_ERROR || req.error_status != 400 ||
				    strcmp(req.error_reason, !value_ok ? (b == '\r' || b == '\n' ?
				    "bare CR or LF in header section" : "invalid character in header field value") :
				    "invalid Host header") != 0)
					fail_msg("Host byte 0x%02x: r=%d", b, r);
				n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX%cY: v\r\n\r\n", (char)b);
				r = http_parse_request(buf, (size_t)n, &req);
				if (tchar || b == ':' ? r != n || req.headers[1].name.len != (b == ':' ? 1u : 3u) :
				    r != HTTP_ERROR || req.error_status != 400 || strcmp(req.error_reason,
				    b == '\r' || b == '\n' ? "bare CR or LF in header section" : "malformed header field name") != 0)
					fail_msg("name byte 0x%02x: r=%d", b, r);
			}

			/* target: "/" + pos × "a" + b + (20 - pos) × "a" */
			n = snprintf(buf, sizeof(buf), "GET /%.*s%c%.*s HTTP/1.1\r\nHost: a\r\n\r\n", (int)pos, pad, (char)b,
			    (int)(20 - pos), pad);
			r = http_parse_request(buf, (size_t)n, &req);
			if (target_ok) {
				if (r != n || req.target.len != 22)
					fail_msg("target byte 0x%02x at %zu: r=%d", b, pos, r);
			} else if (r != HTTP_ERROR || req.error_status != 400 ||
			    strcmp(req.error_reason, b == '\r' || b == '\n' ? "bare CR or LF in request line" :
			    b == ' ' ? "malformed HTTP version" : "invalid character in request target") != 0) {
				fail_msg("target byte 0x%02x at %zu: r=%d %s", b, pos, r, r == HTTP_ERROR ? req.error_reason : "");
			}
		}
	}
}

/* The parser does not clear the header table: a request struct used for
 * one head and then another carries nothing over. */
static void
test_reused_request(void **state)
{
	struct http_request req;
	const char *first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
	    "X-1: 1\r\nX-2: 2\r\n\r\n";
	const char *second = "GET /b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";

	assert_int_equal(parse(first, &req), (int)strlen(first));
	assert_int_equal(req.nheaders, 5);
	assert_int_equal(req.body_kind, HTTP_BODY_LENGTH);
	assert_int_equal(req.expect_continue, 1);
	assert_int_equal(parse(second, &req), (int)strlen(second));
	assert_int_equal(req.nheaders, 2);
	assert_int_equal(req.body_kind, HTTP_BODY_NONE);
	assert_int_equal(req.content_length, 0);
	assert_int_equal(req.expect_continue, 0);
	assert_int_equal(req.keep_alive, 0);
	assert_int_equal(req.error_status, 0);
	assert_null(req.error_reason);
	assert_null(http_find_header(&req, "x-1"));
	assert_non_null(http_find_header(&req, "CONNECTION"));
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	assert_int_equal(parse(second, &req), (int)strlen(second));
	assert_int_equal(req.error_status, 0);
}

/* Retry-After (RFC 9110 §10.2.3): delta-seconds and the three HTTP-date
 * forms, capped at a day, past dates 0, garbage -1. */
static void
test_retry_after(void **state)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT */
	const int64_t t = 784111777;

	(void)state;
#define RA(str, now) http_retry_after((str), strlen(str), (now))
	assert_int_equal(RA("120", t), 120);
	assert_int_equal(RA(" 0 ", t), 0);
	assert_int_equal(RA("86399", t), 86399);
	assert_int_equal(RA("86400", t), HTTP_RETRY_AFTER_MAX);
	assert_int_equal(RA("999999999999999999999999", t), HTTP_RETRY_AFTER_MAX);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 GMT", t - 90), 90);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 GMT", t - 7200), 7200);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 GMT", t + 5), 0);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 GMT", t - 200000), HTTP_RETRY_AFTER_MAX);
	assert_int_equal(RA("Sunday, 06-Nov-94 08:49:37 GMT", t - 90), 90);
	assert_int_equal(RA("Sun Nov  6 08:49:37 1994", t - 90), 90);
	assert_int_equal(RA("Wed Nov 16 08:49:37 1994", t), HTTP_RETRY_AFTER_MAX);	/* 10 days ahead */
	/* Leap years and month ends: Thu, 29 Feb 2024 23:59:59 GMT = 1709251199. */
	assert_int_equal(RA("Thu, 29 Feb 2024 23:59:59 GMT", 1709251199 - 1), 1);
	assert_int_equal(RA("Wed, 31 Dec 2025 00:00:00 GMT", 1767139200 - 60), 60);
	/* RFC 850 two-digit years: more than 50 years ahead means the past century. */
	assert_int_equal(RA("Tuesday, 01-Dec-26 19:00:00 GMT", 1796151600 - 30), 30);
	assert_int_equal(RA("Thursday, 01-Dec-77 19:00:00 GMT", 1796151600), 0);	/* 1977 */
	/* Not a Retry-After. */
	assert_int_equal(RA("x", t), -1);
	assert_int_equal(RA("", t), -1);
	assert_int_equal(RA("-5", t), -1);
	assert_int_equal(RA("1.5", t), -1);
	assert_int_equal(RA("12 s", t), -1);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 UTC", t), -1);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37", t), -1);
	assert_int_equal(RA("Sun, 6 Nov 1994 08:49:37 GMT", t), -1);
	assert_int_equal(RA("Sun, 06 Foo 1994 08:49:37 GMT", t), -1);
	assert_int_equal(RA("Sun, 06 Nov 1994 24:49:37 GMT", t), -1);
	assert_int_equal(RA("Sun, 32 Nov 1994 08:49:37 GMT", t), -1);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:37 GMT trailing", t), -1);
	assert_int_equal(RA("Sunday, 06-Nov-1994 08:49:37 GMT", t), -1);
	assert_int_equal(RA("Sun Nov 6 08:49:37 1994", t), -1);
	/* A prefix of a valid date is never valid (no reads past the end). */
	{
		const char *full = "Sun, 06 Nov 1994 08:49:37 GMT";
		size_t i;
		for (i = 1; i < strlen(full); i++)
			assert_int_equal(http_retry_after(full, i, t), -1);
	}
#undef RA
}

/* http_ieq_n (a word at a time from 8 bytes) answers what strncasecmp does
 * in the C locale, for bytes without NUL: random strings of the bytes where
 * a word-wide case test could go wrong (the letters' neighbours '@' '[' '`'
 * '{', bytes that differ from a letter only in 0x20 or 0x80, '-' and CR,
 * which differ in 0x20 too), each compared with a copy where some bytes were
 * changed, at every length up to 24 and both ways round. */
static void
test_ieq(void **state)
{
	static const unsigned char pool[] = { 'a', 'A', 'z', 'Z', 'm', 'M', '@', '[', '`', '{', '-', '\r',
	    0xc1, 0xe1, 0x80, 0xa0, '0', ' ', 0x7f, 0x5f };
	unsigned seed = 12345;
	int round;

	(void)state;
	for (round = 0; round < 200000; round++) {
		char a[24], b[24];
		size_t n = (size_t)round % 25, i;
		int want, got;

		for (i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			a[i] = (char)pool[(seed >> 16) % sizeof(pool)];
			b[i] = a[i];
			seed = seed * 1103515245u + 12345u;
			switch ((seed >> 16) % 8) {
			case 0:
				b[i] = (char)(b[i] ^ 0x20);	/* a case flip, or its look-alike */
				break;
			case 1:
				b[i] = (char)pool[(seed >> 20) % sizeof(pool)];
				break;
			default:
				break;
			}
		}
		want = n == 0 || strncasecmp(a, b, n) == 0;
		got = http_ieq_n(a, b, n);
		assert_int_equal(got, want);
		assert_int_equal(http_ieq_n(b, a, n), want);
	}
	assert_true(http_ieq_n("Content-Length", "content-length", 14));
	assert_false(http_ieq_n("Content\rLength", "content-length", 14));
	assert_false(http_ieq_n("content-lengtH@", "content-length`", 15));
	assert_true(http_ieq_n("X-REQUEST-ID", "x-request-id", 12));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_and_prefixes),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_chunked_errors),
		cmocka_unit_test(test_misc),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_byte_classes),
		cmocka_unit_test(test_reused_request),
		cmocka_unit_test(test_ieq),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
