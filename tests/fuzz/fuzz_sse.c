/*
 * libFuzzer harness for the SSE scanner (dataplane/sse.c). The first byte
 * picks the split size and the event cap; the stream is scanned whole and in
 * pieces through the relay loop of sse.h (dropping usage-only chunks), and
 * both must yield the same events and the same output bytes. Every event's
 * payload also goes through sse_usage_parse and sse_rate_limited.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct sc_buf out;	/* relayed bytes */
	uint64_t hash;		/* of the events seen */
	size_t nev;
};

static void
mix(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *u = p;

	while (n--)
		*h = (*h ^ *u++) * 1099511628211ULL;
}

static void
on_event(struct run *rn, enum sse_result r, const struct sse_event *ev)
{
	struct sse_usage u;

	if (ev->raw_len > rn->out.len)
		abort();
	if (r == SSE_PASS)
		return;	/* how many PASS results depends on the split */
	rn->nev++;
	mix(&rn->hash, &ev->raw_len, sizeof(ev->raw_len));
	mix(&rn->hash, &ev->has_data, sizeof(ev->has_data));
	mix(&rn->hash, ev->type, strlen(ev->type));
	if (ev->data_len != strlen(ev->data) && memchr(ev->data, 0, ev->data_len) == NULL)
		abort();
	mix(&rn->hash, ev->data, ev->data_len);
	if (ev->has_data && (unsigned)sse_rate_limited(ev->data, ev->data_len) > 1)
		abort();
	if (ev->has_data && sse_usage_parse(ev->data, ev->data_len, &u) == 1 && u.usage_only) {
		rn->out.len -= ev->raw_len;	/* drop: the event is the tail */
		mix(&rn->hash, "drop", 4);
	}
}

static void
scan(const char *in, size_t len, size_t step, size_t cap, struct run *rn)
{
	struct sse_scanner s;
	struct sse_event ev;
	size_t pos = 0;

	sse_init(&s, cap);
	while (pos < len) {
		size_t n = step == 0 || step > len - pos ? len - pos : step;
		const char *p = in + pos;

		pos += n;
		while (n > 0) {
			size_t used;
			enum sse_result r = sse_feed(&s, p, n, &used, &ev);

			if (used > n || (r == SSE_MORE && used != n))
				abort();
			if (sc_buf_append(&rn->out, p, used) == -1)
				abort();
			if (r != SSE_MORE)
				on_event(rn, r, &ev);
			p += used;
			n -= used;
		}
	}
	{
		enum sse_result r = sse_finish(&s, &ev);

		if (r != SSE_MORE)
			on_event(rn, r, &ev);
	}
	sse_free(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run a, b;
	size_t step, cap;

	if (size < 1)
		return 0;
	step = (size_t)(data[0] & 0x0f) + 1;
	cap = data[0] & 0x10 ? 32 : 0;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	sc_buf_init(&a.out, 1 << 22);
	sc_buf_init(&b.out, 1 << 22);
	scan((const char *)data + 1, size - 1, 0, cap, &a);
	scan((const char *)data + 1, size - 1, step, cap, &b);
	if (a.hash != b.hash || a.nev != b.nev)
		abort();
	if (a.out.len != b.out.len || (a.out.len && memcmp(a.out.data, b.out.data, a.out.len) != 0))
		abort();
	sc_buf_free(&a.out);
	sc_buf_free(&b.out);
	return 0;
}
