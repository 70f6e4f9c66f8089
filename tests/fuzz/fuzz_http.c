/*
 * libFuzzer harness for the HTTP request-head parser (dataplane/http.c).
 * Besides crashes it checks the parser's contract: a parsed head's length is
 * within the input, the same bytes parse again to the same length, the head
 * minus its last byte is "incomplete", errors carry a status, and a chunked
 * body after the head decodes without overrunning anything. The same input
 * also goes to http_retry_after (the upstream Retry-After parser: numbers
 * and HTTP-dates), whose answer must be -1 or a delay within the cap, and
 * must not grow when the clock moves forward.
 */
#include <stdint.h>
#include <stdlib.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req, again;
	const char *buf = (const char *)data;
	int r = http_parse_request(buf, size, &req);
	int ra = http_retry_after(buf, size, 1796151600), later = http_retry_after(buf, size, 1796151600 + 60);

	if (ra < -1 || ra > HTTP_RETRY_AFTER_MAX || (ra == -1) != (later == -1) || later > ra)
		abort();

	if (r == HTTP_ERROR) {
		if (req.error_status < 400 || req.error_status > 505 || req.error_reason == NULL)
			abort();
		return 0;
	}
	if (r == HTTP_INCOMPLETE)
		return 0;
	if (r <= 0 || (size_t)r > size)
		abort();
	if (http_parse_request(buf, (size_t)r, &again) != r)
		abort();
	if (http_parse_request(buf, (size_t)r - 1, &again) != HTTP_INCOMPLETE)
		abort();
	if (req.nheaders > HTTP_MAX_HEADERS || (req.minor_version != 0 && req.minor_version != 1))
		abort();
	(void)http_find_header(&req, "host");
	{
		struct http_slice path = http_target_path(req.target);

		if (path.len == 0 || (path.p[0] != '/' && path.p[0] != '?') ||
		    (path.p != req.target.p + req.target.len - path.len && !http_slice_eq(path, "/")))
			abort();
	}
	if (req.body_kind == HTTP_BODY_CHUNKED) {
		struct http_chunked c;
		struct sc_buf out;
		size_t used;
		int st;

		http_chunked_init(&c);
		sc_buf_init(&out, 1 << 16);
		if (http_chunked_decode(&c, buf + r, size - (size_t)r, &used, &out, &st) != HTTP_ERROR &&
		    used > size - (size_t)r)
			abort();
		sc_buf_free(&out);
	}
	return 0;
}
