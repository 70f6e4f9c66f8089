/*
 * Unit tests for dataplane/sse.c: the same events whatever the input split
 * (one byte at a time, random splits, splits inside CRLF), the relay loop of
 * sse.h dropping the injected usage chunk with every other byte unchanged,
 * the event cap, and usage extraction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "jscan.h"
#include "sse.h"

#define CHUNK(x) "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" x "\"}}],\"usage\":null}"
#define USAGE "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46}}"

/* A stream mixing LF, CRLF and CR line endings, comments, multi-line data,
 * an event field, the usage-only chunk and [DONE]. */
static const char stream[] =
    ": keep-alive\n\n"
    CHUNK("Hel") "\n\n"
    CHUNK("lo") "\r\n\r\n"
    "event: delta\r\ndata: line1\r\ndata:line2\r\ndata\r\nid: 7\r\n\r\n"
    CHUNK("!") "\r\r\n"
    USAGE "\n\n"
    "\n"
    "data: [DONE]\n\n";

struct rec {
	enum sse_result r;
	size_t raw_len;
	char data[512];
	size_t data_len;
	int has_data, done;
	char type[32];
};

struct run {
	struct rec ev[32];
	size_t nev;
	size_t npass;		/* SSE_PASS results */
	char out[4096];		/* what the relay loop sends */
	size_t out_len;
	size_t sendable;
	int drop_usage;
	int idle;		/* run_idle: sse_idle after each piece, as the proxy does */
	size_t idle_empty;	/* ... and it left no payload buffer */
};

static void
run_event(struct run *rn, enum sse_result r, const struct sse_event *ev)
{
	struct rec *x;
	struct sse_usage u;

	if (r == SSE_PASS) {
		/* over the cap: released unparsed */
		assert_false(ev->has_data);
		rn->npass++;
		rn->sendable = rn->out_len;
		return;
	}
	assert_true(rn->nev < 32);
	x = &rn->ev[rn->nev++];
	x->r = r;
	x->raw_len = ev->raw_len;
	x->has_data = ev->has_data;
	x->done = ev->done;
	memcpy(x->type, ev->type, sizeof(x->type));
	if (r == SSE_EVENT) {
		assert_true(ev->data_len < sizeof(x->data));
		memcpy(x->data, ev->data, ev->data_len + 1);	/* NUL included */
		x->data_len = ev->data_len;
		assert_true(ev->raw_len <= rn->out_len);
		if (rn->drop_usage && ev->has_data && sse_usage_parse(ev->data, ev->data_len, &u) == 1 &&
		    u.usage_only) {
			rn->out_len -= ev->raw_len;
			return;
		}
	}
	rn->sendable = rn->out_len;
}

static int run_idle;	/* run_split calls sse_idle after each piece */
static size_t run_idle_keep;	/* ... with this keep */

/* The relay loop of sse.h over stream split at the given sizes (0-terminated
 * list, the last size repeated). */
static void
run_split(struct run *rn, const char *in, size_t len, const size_t *sizes, int drop, size_t max_event)
{
	struct sse_scanner s;
	struct sse_event ev;
	size_t pos = 0, k = 0;

	memset(rn, 0, sizeof(*rn));
	rn->drop_usage = drop;
	rn->idle = run_idle;
	sse_init(&s, max_event);
	while (pos < len) {
		size_t n = sizes[k], used;
		const char *p = in + pos;

		if (sizes[k + 1] != 0)
			k++;
		if (n > len - pos)
			n = len - pos;
		pos += n;
		while (n > 0) {
			enum sse_result r = sse_feed(&s, p, n, &used, &ev);

			assert_true(used <= n);
			assert_true(rn->out_len + used <= sizeof(rn->out));
			memcpy(rn->out + rn->out_len, p, used);
			rn->out_len += used;
			if (r != SSE_MORE)
				run_event(rn, r, &ev);
			else
				assert_int_equal(used, n);
			p += used;
			n -= used;
		}
		if (rn->idle) {
			sse_idle(&s, run_idle_keep);
			if (s.data.data == NULL)
				rn->idle_empty++;
		}
	}
	{
		enum sse_result r = sse_finish(&s, &ev);

		if (r != SSE_MORE)
			run_event(rn, r, &ev);
	}
	rn->sendable = rn->out_len;	/* end of stream: everything goes */
	sse_free(&s);
}

static void assert_same_events(const struct run *a, const struct run *b);

/* sse_idle between pieces changes nothing that is scanned, wherever the
 * input is split, and leaves no payload buffer between events: freed
 * (keep 0) or kept for the next payload, of this scanner or the next run's. */
static void
test_idle(void **state)
{
	static const size_t whole[] = { sizeof(stream) - 1, 0 }, ones[] = { 1, 0 }, odd[] = { 3, 7, 2, 11, 0 };
	static const size_t keeps[] = { 0, 4096 };
	const size_t *splits[] = { whole, ones, odd };
	struct run *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	size_t i, j;

	(void)state;
	for (j = 0; j < sizeof(keeps) / sizeof(keeps[0]); j++) {
		run_idle_keep = keeps[j];
		for (i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
			run_split(a, stream, sizeof(stream) - 1, splits[i], 1, 0);
			run_idle = 1;
			run_split(b, stream, sizeof(stream) - 1, splits[i], 1, 0);
			run_idle = 0;
			assert_same_events(a, b);
			assert_true(b->idle_empty > 0);
		}
	}
	run_idle_keep = 0;
	free(a);
	free(b);
}

/* A stream's other event buffer: given back only while empty, freed when a
 * big event grew it past keep, else kept and handed to the next one that
 * has none. */
static void
test_buf_idle(void **state)
{
	struct sc_buf a, b;
	char *kept;

	(void)state;
	sc_buf_init(&a, 1 << 20);
	sc_buf_init(&b, 1 << 20);
	assert_int_equal(sc_buf_append(&a, "data: x", 7), 0);
	sse_buf_idle(&a, 2048);
	assert_non_null(a.data);		/* holds bytes: stays */
	sc_buf_reset(&a);
	kept = a.data;
	sse_buf_idle(&a, 2048);
	assert_null(a.data);
	assert_int_equal(a.alloc, 0);
	sse_buf_ready(&b);
	assert_ptr_equal(b.data, kept);		/* the kept one, empty */
	assert_int_equal(b.len, 0);
	assert_int_equal(sc_buf_append(&b, "data: y\n\n", 9), 0);
	assert_string_equal(b.data, "data: y\n\n");
	sc_buf_reset(&b);
	assert_int_equal(sc_buf_append(&b, stream, sizeof(stream) - 1), 0);	/* grows past 64 bytes */
	sc_buf_reset(&b);
	sse_buf_idle(&b, 64);
	assert_null(b.data);			/* freed: larger than keep */
	sse_buf_ready(&a);			/* whatever an earlier test left kept, or none */
	assert_int_equal(sc_buf_append(&a, "z", 1), 0);
	assert_string_equal(a.data, "z");
	sc_buf_free(&a);
	sc_buf_free(&b);
}

static void
assert_same_events(const struct run *a, const struct run *b)
{
	size_t i;

	assert_int_equal(a->nev, b->nev);
	for (i = 0; i < a->nev; i++) {
		assert_int_equal(a->ev[i].r, b->ev[i].r);
		assert_int_equal(a->ev[i].raw_len, b->ev[i].raw_len);
		assert_int_equal(a->ev[i].has_data, b->ev[i].has_data);
		assert_int_equal(a->ev[i].done, b->ev[i].done);
		assert_string_equal(a->ev[i].type, b->ev[i].type);
		assert_int_equal(a->ev[i].data_len, b->ev[i].data_len);
		assert_memory_equal(a->ev[i].data, b->ev[i].data, a->ev[i].data_len);
	}
	assert_int_equal(a->out_len, b->out_len);
	assert_memory_equal(a->out, b->out, a->out_len);
}

static void
test_events(void **state)
{
	static const size_t whole[] = { 100000, 0 };
	struct run rn;
	size_t len = sizeof(stream) - 1, total = 0, i;

	run_split(&rn, stream, len, whole, 0, 0);
	assert_int_equal(rn.nev, 8);
	for (i = 0; i < rn.nev; i++) {
		assert_int_equal(rn.ev[i].r, SSE_EVENT);
		total += rn.ev[i].raw_len;
	}
	assert_int_equal(total, len);
	assert_false(rn.ev[0].has_data);
	assert_int_equal(rn.ev[0].raw_len, strlen(": keep-alive\n\n"));
	assert_true(rn.ev[1].has_data);
	assert_string_equal(rn.ev[1].data, &(CHUNK("Hel"))[6]);
	assert_int_equal(rn.ev[1].raw_len, strlen(CHUNK("Hel")) + 2);
	assert_string_equal(rn.ev[2].data, &(CHUNK("lo"))[6]);
	assert_int_equal(rn.ev[2].raw_len, strlen(CHUNK("lo")) + 4);
	assert_string_equal(rn.ev[3].type, "delta");
	assert_string_equal(rn.ev[3].data, "line1\nline2\n");
	/* CR, then CRLF: the LF belongs to the blank line */
	assert_string_equal(rn.ev[4].data, &(CHUNK("!"))[6]);
	assert_int_equal(rn.ev[4].raw_len, strlen(CHUNK("!")) + 3);
	assert_string_equal(rn.ev[5].data, &(USAGE)[6]);
	assert_false(rn.ev[5].done);
	/* a stray blank line is an event of its own, without data */
	assert_int_equal(rn.ev[6].raw_len, 1);
	assert_false(rn.ev[6].has_data);
	assert_true(rn.ev[7].done);
	assert_int_equal(rn.out_len, len);
	assert_memory_equal(rn.out, stream, len);
}

static void
test_splits(void **state)
{
	static const size_t whole[] = { 100000, 0 }, one[] = { 1, 0 };
	struct run ref, rn;
	size_t len = sizeof(stream) - 1, i, j;
	int drop;

	for (drop = 0; drop <= 1; drop++) {
		run_split(&ref, stream, len, whole, drop, 0);
		run_split(&rn, stream, len, one, drop, 0);
		assert_same_events(&ref, &rn);
		/* every single cut point, and pairs of cut points */
		for (i = 1; i < len; i++) {
			size_t two[] = { i, 100000, 0 };

			run_split(&rn, stream, len, two, drop, 0);
			assert_same_events(&ref, &rn);
			for (j = 1; j < 7; j++) {
				size_t three[] = { i, j, 100000, 0 };

				run_split(&rn, stream, len, three, drop, 0);
				assert_same_events(&ref, &rn);
			}
		}
		/* random splits */
		srand(42);
		for (i = 0; i < 500; i++) {
			size_t sizes[64], k;

			for (k = 0; k < 63; k++)
				sizes[k] = 1 + (size_t)(rand() % 40);
			sizes[63] = 0;
			run_split(&rn, stream, len, sizes, drop, 0);
			assert_same_events(&ref, &rn);
		}
	}
}

static void
test_drop_usage(void **state)
{
	static const size_t whole[] = { 100000, 0 }, one[] = { 1, 0 };
	struct run rn;
	size_t len = sizeof(stream) - 1;
	const char *u = strstr(stream, USAGE);
	size_t ulen = strlen(USAGE) + 2;
	char want[sizeof(stream)];

	memcpy(want, stream, (size_t)(u - stream));
	memcpy(want + (u - stream), u + ulen, len - (size_t)(u - stream) - ulen);
	run_split(&rn, stream, len, whole, 1, 0);
	assert_int_equal(rn.out_len, len - ulen);
	assert_memory_equal(rn.out, want, len - ulen);
	run_split(&rn, stream, len, one, 1, 0);
	assert_int_equal(rn.out_len, len - ulen);
	assert_memory_equal(rn.out, want, len - ulen);
}

static void
test_held_back(void **state)
{
	struct sse_scanner s;
	struct sse_event ev;
	size_t used;

	sse_init(&s, 0);
	/* an unfinished event: everything consumed, nothing released */
	assert_int_equal(sse_feed(&s, "data: {\"a\"", 10, &used, &ev), SSE_MORE);
	assert_int_equal(used, 10);
	assert_int_equal(ev.raw_len, 10);
	assert_int_equal(sse_feed(&s, ":1}\n\ndata: x\n", 13, &used, &ev), SSE_EVENT);
	assert_int_equal(used, 5);
	assert_int_equal(ev.raw_len, 15);
	assert_string_equal(ev.data, "{\"a\":1}");
	assert_int_equal(sse_feed(&s, "data: x\n", 8, &used, &ev), SSE_MORE);
	/* end of stream with an unfinished event: released as is */
	assert_int_equal(sse_finish(&s, &ev), SSE_MORE);
	assert_int_equal(ev.raw_len, 8);
	/* lone-CR endings complete at the next byte, or at finish */
	assert_int_equal(sse_feed(&s, "data: a\r\r", 9, &used, &ev), SSE_MORE);
	assert_int_equal(sse_feed(&s, "data: b\r\r", 9, &used, &ev), SSE_EVENT);
	assert_int_equal(used, 0);
	assert_string_equal(ev.data, "a");
	assert_int_equal(ev.raw_len, 9);
	assert_int_equal(sse_feed(&s, "data: b\r\r", 9, &used, &ev), SSE_MORE);
	assert_int_equal(sse_finish(&s, &ev), SSE_EVENT);
	assert_string_equal(ev.data, "b");
	assert_int_equal(ev.raw_len, 9);
	/* a new stream after finish */
	assert_int_equal(sse_feed(&s, "data: c\n\n", 9, &used, &ev), SSE_EVENT);
	assert_string_equal(ev.data, "c");
	assert_int_equal(ev.raw_len, 9);
	sse_free(&s);
}

static void
test_cap(void **state)
{
	static const size_t whole[] = { 100000, 0 }, one[] = { 1, 0 }, seven[] = { 7, 0 };
	char in[1024];
	struct run a, b;
	size_t n = 0, i;

	n += (size_t)sprintf(in + n, "data: small\n\n");
	n += (size_t)sprintf(in + n, "data: ");
	for (i = 0; i < 200; i++)
		in[n++] = 'x';
	n += (size_t)sprintf(in + n, "\ndata: more\r\n\r\n");
	n += (size_t)sprintf(in + n, "data: after\n\n");
	run_split(&a, in, n, whole, 1, 64);
	/* the big event is passed through, not held, not parsed */
	assert_int_equal(a.nev, 2);
	assert_true(a.npass >= 1);
	assert_string_equal(a.ev[0].data, "small");
	assert_string_equal(a.ev[1].data, "after");
	assert_int_equal(a.out_len, n);
	assert_memory_equal(a.out, in, n);
	/* whatever the split, the same bytes come out and the next event parses */
	run_split(&b, in, n, one, 1, 64);
	assert_int_equal(b.out_len, n);
	assert_memory_equal(b.out, in, n);
	assert_int_equal(b.nev, 2);
	assert_string_equal(b.ev[1].data, "after");
	run_split(&b, in, n, seven, 1, 64);
	assert_int_equal(b.out_len, n);
	assert_int_equal(b.nev, 2);
	assert_string_equal(b.ev[1].data, "after");
	/* SSE_PASS comes as soon as the cap is crossed: at most cap+1 held */
	{
		struct sse_scanner s;
		struct sse_event ev;
		size_t used;

		sse_init(&s, 64);
		assert_int_equal(sse_feed(&s, in + 13, n - 13, &used, &ev), SSE_PASS);
		assert_int_equal(used, 65);
		sse_free(&s);
	}
}

/* sse_usage_members on a document scanned by the caller reads what
 * sse_usage_parse reads (where the scanner accepts the document and its
 * usage object). */
static void
test_usage_members(void **state)
{
	static const char *const docs[] = {
		"{\"choices\":[{\"delta\":{}}],\"usage\" : {\"prompt_tokens\":1,\"completion_tokens\":2}}",
		"{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
		"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}",
		"{\"choices\":[ ],\"usage\":{\"prompt_tokens\":7,\"total_tokens\":9}}",
		"{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":\"2\"}}",
		"{\"choices\":[],\"usage\":null}",
		"{\"usage\":5}",
		"{\"usage\":{}}",
		"{\"model\":\"m\",\"x\":{\"usage\":{\"total_tokens\":3}}}",
		"{\"usage\":{\"total_tokens\":1,\"total_tokens\":2}}",	/* refused inside: -1 */
	};
	struct jscan_member m[2];
	struct sse_usage a, b;
	size_t i;
	int ra, rb;

	(void)state;
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		m[0] = (struct jscan_member){ "usage", NULL, 0, 0 };
		m[1] = (struct jscan_member){ "choices", NULL, 0, 0 };
		assert_int_equal(jscan_object(docs[i], strlen(docs[i]), m, 2), 0);
		ra = sse_usage_members(&m[0], &m[1], &a);
		rb = sse_usage_parse(docs[i], strlen(docs[i]), &b);
		if (ra == -1)
			continue;	/* the caller falls back to sse_usage_parse */
		assert_int_equal(ra, rb);
		assert_int_equal(a.prompt_tokens, b.prompt_tokens);
		assert_int_equal(a.completion_tokens, b.completion_tokens);
		assert_int_equal(a.total_tokens, b.total_tokens);
		if (ra == 1)
			assert_int_equal(a.usage_only, b.usage_only);
	}
	m[0] = (struct jscan_member){ "usage", NULL, 0, 0 };
	m[1] = (struct jscan_member){ "choices", NULL, 0, 0 };
	assert_int_equal(jscan_object(docs[8], strlen(docs[8]), m, 2), 0);
	assert_int_equal(sse_usage_members(&m[0], &m[1], &a), -1);
}

/* sse_usage_fields on one jscan_object_in pass reads what sse_usage_parse
 * reads; a usage object with a duplicate or escaped key refuses the pass. */
static void
test_usage_fields(void **state)
{
	static const char *const docs[] = {
		"{\"choices\":[{\"delta\":{}}],\"usage\" : {\"prompt_tokens\":1,\"completion_tokens\":2}}",
		"{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
		"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}",
		"{\"choices\":[ ],\"usage\":{\"prompt_tokens\":7,\"x\":{\"total_tokens\":1},\"total_tokens\":9}}",
		"{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":\"2\"}}",
		"{\"choices\":[],\"usage\":null}",
		"{\"usage\":[{\"total_tokens\":3}]}",
		"{\"usage\":{}}",
		"{\"model\":\"m\",\"x\":{\"total_tokens\":3},\"usage\":{\"total_tokens\":4}}",
	};
	static const char *const refused[] = {
		"{\"usage\":{\"total_tokens\":1,\"total_tokens\":2}}",
		"{\"usage\":{\"total_\\u0074okens\":1}}",
	};
	struct jscan_member m[2];
	struct jscan_member f[3] = SSE_USAGE_FIELDS;
	struct sse_usage a, b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		m[0] = (struct jscan_member){ "usage", NULL, 0, 0 };
		m[1] = (struct jscan_member){ "choices", NULL, 0, 0 };
		assert_int_equal(jscan_object_in(docs[i], strlen(docs[i]), m, 2, &m[0], f, 3), 0);
		assert_int_equal(sse_usage_fields(&m[0], f, &m[1], &a), sse_usage_parse(docs[i], strlen(docs[i]), &b));
		assert_int_equal(a.prompt_tokens, b.prompt_tokens);
		assert_int_equal(a.completion_tokens, b.completion_tokens);
		assert_int_equal(a.total_tokens, b.total_tokens);
		assert_int_equal(a.usage_only, b.usage_only);
	}
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		assert_int_equal(jscan_object_in(refused[i], strlen(refused[i]), m, 2, &m[0], f, 3), -1);
	/* the last document read the usage object's 4, not x's 3 */
	assert_int_equal(a.total_tokens, 4);
}

static void
test_usage(void **state)
{
	struct sse_usage u;
	const char *d;

	d = &(USAGE)[6];
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.prompt_tokens, 12);
	assert_int_equal(u.completion_tokens, 34);
	assert_int_equal(u.total_tokens, 46);
	assert_true(u.usage_only);
	/* usage riding on a content chunk */
	d = "{\"choices\":[{\"delta\":{}}],\"usage\" : {\"prompt_tokens\":1,\"completion_tokens\":2}}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.total_tokens, 3);
	assert_false(u.usage_only);
	/* a whole non-streaming response */
	d = "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
	    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.total_tokens, 6);
	/* none */
	d = &(CHUNK("x"))[6];
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	assert_int_equal(u.total_tokens, -1);
	d = "{\"choices\":[],\"usage\":null}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	d = "{\"choices\":[{\"delta\":{\"content\":\"the \\\"usage\\\": {x}\"}}]}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	d = "{\"usage\":5}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	d = "[DONE]";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	d = "{\"usage\":{\"prompt_tokens\":1";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	d = "{\"usage\":{}}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.prompt_tokens, -1);
	assert_int_equal(u.total_tokens, -1);
	assert_true(u.usage_only);
	/* read by the scanner: non-integers are absent, an empty choices list
	 * with spaces is empty, a nested "usage" is not the top-level one */
	d = "{\"choices\":[ ],\"usage\":{\"prompt_tokens\":2.0,\"completion_tokens\":-3,\"total_tokens\":1e1}}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.prompt_tokens, -1);
	assert_int_equal(u.completion_tokens, -3);
	assert_int_equal(u.total_tokens, -1);
	assert_true(u.usage_only);
	d = "{\"choices\":[{\"usage\":{\"prompt_tokens\":1}}]}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 0);
	/* refused by the scanner, read by json-c: the same answer as before */
	d = "{\"usage\":{\"prompt_tokens\":7,\"prompt_tokens\":8,\"completion_tokens\":1},\"seed\":123456789012345678901}";
	assert_int_equal(sse_usage_parse(d, strlen(d), &u), 1);
	assert_int_equal(u.prompt_tokens, 8);
	assert_int_equal(u.total_tokens, 9);
	assert_true(u.usage_only);
}

/* Rate-limit error events: NIM's and OpenAI's shapes and their variants;
 * ordinary chunks, other errors and non-JSON are not. */
static void
test_rate_limited(void **state)
{
	static const char *const yes[] = {
		"{\"status\":429,\"title\":\"Too Many Requests\"}",
		"{\"type\":\"about:blank\",\"status\":429,\"title\":\"Too Many Requests\",\"detail\":\"x\"}",
		"{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":\"requests\",\"param\":null,"
		"\"code\":\"rate_limit_exceeded\"}}",
		"{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}",
		"{\"error\":{\"message\":\"slow down\",\"code\":429}}",
		"{\"error\":{\"message\":\"slow down\",\"code\":\"429\"}}",
		"{\"error\":{\"status\":429}}",
		"{\"code\":429,\"message\":\"too many\"}",
		NULL,
	};
	static const char *const no[] = {
		"{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"status 429 rate_limit\"}}]}",
		"{\"status\":500,\"title\":\"Internal Server Error\"}",
		"{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\",\"code\":\"429x\"}}",
		"{\"error\":\"rate_limit\"}",
		"{\"status\":\"4290\"}",
		"[429]",
		"429",
		"{\"status\":429",
		"",
		"[DONE]",
		NULL,
	};
	size_t i;

	(void)state;
	for (i = 0; yes[i] != NULL; i++)
		if (sse_rate_limited(yes[i], strlen(yes[i])) != 1)
			fail_msg("not seen as rate limited: %s", yes[i]);
	for (i = 0; no[i] != NULL; i++)
		if (sse_rate_limited(no[i], strlen(no[i])) != 0)
			fail_msg("seen as rate limited: %s", no[i]);
	/* Only the given length counts. */
	assert_int_equal(sse_rate_limited(yes[0], 10), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_splits),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_buf_idle),
		cmocka_unit_test(test_drop_usage),
		cmocka_unit_test(test_held_back),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_usage_members),
		cmocka_unit_test(test_usage_fields),
		cmocka_unit_test(test_rate_limited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
