/*
 * libFuzzer harness for the chunked body decoder (dataplane/http.c). The first
 * input byte picks a split pattern; the rest is decoded once whole and once in
 * pieces, and both runs must agree on result, bytes consumed and body bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP (256 * 1024)

/* Decode in[0..len) fed in pieces of `step` bytes (0: whole). */
static int
decode(const char *in, size_t len, size_t step, struct sc_buf *out, size_t *used, int *status)
{
	struct http_chunked c;
	size_t pos = 0;
	int r = 0;

	http_chunked_init(&c);
	*status = 0;
	while (pos < len) {
		size_t n = step == 0 || step > len - pos ? len - pos : step, consumed;

		r = http_chunked_decode(&c, in + pos, n, &consumed, out, status);
		if (consumed > n)
			abort();
		pos += consumed;
		if (r != 0)
			break;
		if (consumed != n)
			abort();
	}
	*used = pos;
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sc_buf a, b;
	size_t ua, ub, step;
	int ra, rb, sa, sb;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	sc_buf_init(&a, CAP);
	sc_buf_init(&b, CAP);
	ra = decode((const char *)data + 1, size - 1, 0, &a, &ua, &sa);
	rb = decode((const char *)data + 1, size - 1, step, &b, &ub, &sb);
	if (ra != rb || (ra == HTTP_ERROR && sa != sb))
		abort();
	if (ra != HTTP_ERROR && (ua != ub || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)))
		abort();
	if (ra == HTTP_ERROR && sa != 400 && sa != 413)
		abort();
	sc_buf_free(&a);
	sc_buf_free(&b);
	return 0;
}
