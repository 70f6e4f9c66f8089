/*
 * Server-sent-events scanner: finds event boundaries in a relayed stream and
 * collects each event's data payload, so the relay can time the first token,
 * read the usage chunk, spot [DONE] and drop the usage chunk it injected, all
 * without buffering or copying the stream itself (see sse.h for the loop).
 * Also the usage reader shared by streaming chunks and whole responses.
 */
#include <sanitizer/asan_interface.h>	/* no-ops without ASan */
#include <string.h>

#include <json-c/json.h>

#include "jscan.h"
#include "sse.h"

/* Line states, in the order a line passes through them. */
enum {
	S_LINE_START,	/* first byte of a line */
	S_NAME,		/* field name, up to ':' or the line end */
	S_VALUE_START,	/* right after ':': one SP is skipped */
	S_VALUE,	/* field value, up to the line end */
	S_LINE_CR,	/* a line ended in CR: an LF next belongs to it */
	S_END_CR,	/* a blank line ended in CR: the event is over, an LF next belongs to it */
};

/* Fields the scanner collects. */
enum { F_OTHER, F_DATA, F_EVENT };

/* Event buffers of streams between events (sse_buf_idle): a stream that
 * waits for its next event holds none, and its next event takes one from
 * here instead of calling malloc (freeing them per event would be cheap
 * with glibc, but it refilled ASan's quarantine in the back-pressure tests).
 * Poisoned while kept, so that ASan still sees a use after the idle call.
 * Only the event loop's thread relays streams. */
#define SSE_POOL_MAX 512
static struct {
	char  *data;
	size_t alloc;
} sse_pool[SSE_POOL_MAX];
static size_t sse_npool;

void
sse_init(struct sse_scanner *s, size_t max_event)
{
	memset(s, 0, sizeof(*s));
	s->max_event = max_event ? max_event : SSE_MAX_EVENT;
	s->state = S_LINE_START;
	sc_buf_init(&s->data, s->max_event);
}

void
sse_free(struct sse_scanner *s)
{
	sc_buf_free(&s->data);
}

/* Forget the event that was last returned (or abandoned). */
static void
sse_reset_event(struct sse_scanner *s)
{
	s->event_len = 0;
	s->has_data = 0;
	s->passing = 0;
	s->type_len = 0;
	s->emitted = 0;
	sc_buf_reset(&s->data);
}

void
sse_buf_idle(struct sc_buf *b, size_t keep)
{
	if (b->len > 0 || b->data == NULL)
		return;
	if (b->alloc > keep || sse_npool == SSE_POOL_MAX) {
		sc_buf_free(b);	/* keeps the cap: the next bytes allocate again */
		return;
	}
	ASAN_POISON_MEMORY_REGION(b->data, b->alloc);
	sse_pool[sse_npool].data = b->data;
	sse_pool[sse_npool++].alloc = b->alloc;
	b->data = NULL;
	b->alloc = 0;
}

void
sse_buf_ready(struct sc_buf *b)
{
	if (b->data != NULL || sse_npool == 0)
		return;
	sse_npool--;
	b->data = sse_pool[sse_npool].data;
	b->alloc = sse_pool[sse_npool].alloc;
	ASAN_UNPOISON_MEMORY_REGION(b->data, b->alloc);
	b->data[0] = '\0';
}

void
sse_idle(struct sse_scanner *s, size_t keep)
{
	if (s->emitted)
		sse_reset_event(s);
	sse_buf_idle(&s->data, keep);
}

/* Append to the event's payload (in a kept buffer when it has none). */
static void
sse_data_append(struct sse_scanner *s, const char *p, size_t n)
{
	sse_buf_ready(&s->data);
	(void)sc_buf_append(&s->data, p, n);
}

static void
sse_fill(const struct sse_scanner *s, struct sse_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->raw_len = s->event_len;
	if (s->passing)
		return;
	ev->has_data = s->has_data;
	ev->data = s->data.len > 0 ? s->data.data : "";
	ev->data_len = s->data.len;
	ev->done = s->has_data && s->data.len == 6 && memcmp(s->data.data, "[DONE]", 6) == 0;
	memcpy(ev->type, s->type, s->type_len);
	ev->type[s->type_len] = '\0';
}

/* The event ended with the byte before in[i]. */
static enum sse_result
sse_emit(struct sse_scanner *s, size_t i, size_t *consumed, struct sse_event *ev)
{
	int passing = s->passing;

	*consumed = i;
	sse_fill(s, ev);
	s->emitted = 1;
	s->state = S_LINE_START;
	return passing ? SSE_PASS : SSE_EVENT;
}

/* The field name is complete: decide what the line's value is for. */
static void
sse_field(struct sse_scanner *s)
{
	s->field = F_OTHER;
	if (s->name_len == 4 && memcmp(s->name, "data", 4) == 0) {
		s->field = F_DATA;
		if (!s->passing) {
			/* lines of one event join with "\n" */
			if (s->has_data)
				sse_data_append(s, "\n", 1);
			s->has_data = 1;
		}
	} else if (s->name_len == 5 && memcmp(s->name, "event", 5) == 0) {
		s->field = F_EVENT;
		s->type_len = 0;
	}
}

/* Count n more raw bytes; 1 when that just crossed the cap. */
static int
sse_count(struct sse_scanner *s, size_t n)
{
	s->event_len += n;
	if (!s->passing && s->event_len > s->max_event) {
		s->passing = 1;
		sc_buf_reset(&s->data);
		return 1;
	}
	return 0;
}

enum sse_result
sse_feed(struct sse_scanner *s, const char *in, size_t len, size_t *consumed, struct sse_event *ev)
{
	size_t i = 0;

	if (s->emitted)
		sse_reset_event(s);
	memset(ev, 0, sizeof(*ev));
	while (i < len) {
		unsigned char c = (unsigned char)in[i];

		switch (s->state) {
		case S_END_CR:
			if (c == '\n') {
				i++;
				s->event_len++;	/* may pass the cap by this LF: harmless */
			}
			return sse_emit(s, i, consumed, ev);
		case S_LINE_CR:
			s->state = S_LINE_START;
			if (c == '\n') {
				i++;
				if (sse_count(s, 1))
					goto pass;
			}
			break;
		case S_LINE_START:
			if (c == '\n' || c == '\r') {
				/* a blank line: the event ends here */
				i++;
				s->event_len++;
				if (c == '\n')
					return sse_emit(s, i, consumed, ev);
				s->state = S_END_CR;
				break;
			}
			s->name_len = 0;
			s->state = S_NAME;
			/* FALLTHROUGH */
		case S_NAME:
			if (c == ':' || c == '\r' || c == '\n') {
				if (s->name_len <= sizeof(s->name))
					sse_field(s);
				else
					s->field = F_OTHER;
				if (c == ':') {
					s->state = S_VALUE_START;
				} else {
					s->state = c == '\r' ? S_LINE_CR : S_LINE_START;
				}
			} else if (s->name_len < sizeof(s->name)) {
				s->name[s->name_len++] = (char)c;
			} else {
				s->name_len = sizeof(s->name) + 1;	/* too long for any field we read */
			}
			i++;
			if (sse_count(s, 1))
				goto pass;
			break;
		case S_VALUE_START:
			s->state = S_VALUE;
			if (c == ' ') {
				i++;
				if (sse_count(s, 1))
					goto pass;
				break;
			}
			/* FALLTHROUGH */
		case S_VALUE: {
			size_t run = 0, room;

			while (i + run < len && in[i + run] != '\n' && in[i + run] != '\r')
				run++;
			room = s->passing ? run : s->max_event - s->event_len;
			if (run > room)
				run = room + 1;	/* stop on the byte that crosses the cap */
			if (!s->passing) {
				if (s->field == F_DATA) {
					sse_data_append(s, in + i, run);
				} else if (s->field == F_EVENT) {
					size_t k = run;

					if (k > sizeof(s->type) - 1 - s->type_len)
						k = sizeof(s->type) - 1 - s->type_len;
					memcpy(s->type + s->type_len, in + i, k);
					s->type_len += k;
				}
			}
			i += run;
			if (sse_count(s, run))
				goto pass;
			if (i < len) {
				/* the line ends */
				s->state = in[i] == '\r' ? S_LINE_CR : S_LINE_START;
				i++;
				if (sse_count(s, 1))
					goto pass;
			}
			break;
		}
		default:
			s->state = S_LINE_START;
			break;
		}
	}
	*consumed = i;
	sse_fill(s, ev);
	return s->passing ? SSE_PASS : SSE_MORE;
pass:
	*consumed = i;
	sse_fill(s, ev);
	return SSE_PASS;
}

enum sse_result
sse_finish(struct sse_scanner *s, struct sse_event *ev)
{
	enum sse_result r = SSE_MORE;

	if (s->emitted)
		sse_reset_event(s);
	if (s->state == S_END_CR) {
		size_t dummy;

		r = sse_emit(s, 0, &dummy, ev);
	} else {
		sse_fill(s, ev);
		if (s->passing)
			r = SSE_PASS;
	}
	s->state = S_LINE_START;
	s->emitted = 1;	/* the next feed starts a new stream */
	return r;
}

/* Whether text might hold a non-null "usage" member: every "usage" key
 * followed by null is skipped, so only chunks that carry usage get parsed. */
static int
sse_maybe_usage(const char *p, size_t len)
{
	const char *e = p + len;

	while (p < e) {
		const char *q = sc_memfind(p, (size_t)(e - p), "\"usage\"", 7, 4);

		if (q == NULL)
			return 0;
		q += 7;
		while (q < e && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
			q++;
		if (q < e && *q == ':') {
			q++;
			while (q < e && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
				q++;
			if (!(e - q >= 4 && memcmp(q, "null", 4) == 0))
				return 1;
		}
		p = q;
	}
	return 0;
}

static int64_t
sse_int_field(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return -1;
	return json_object_get_int64(v);
}

/* An integer member found by the scanner, -1 when absent or not an integer
 * (json-c's json_type_int: no fraction, no exponent). */
static int64_t
sse_scan_int(const struct jscan_member *m)
{
	int64_t v;

	if (jscan_type(m->val) != JSCAN_NUMBER || jscan_int64(m->val, m->val_len, &v) == -1)
		return -1;
	return v;
}

/* The fast path: the scanner reads the top-level "usage" object's counts
 * and "choices" in one pass. 1 or 0 as sse_usage_parse, -1 when the scanner
 * refused the text (json-c decides). */
static int
sse_usage_scan(const char *data, size_t len, struct sse_usage *u)
{
	struct jscan_member m[2] = { JSCAN_WANT("usage"), JSCAN_WANT("choices") };
	struct jscan_member f[3] = SSE_USAGE_FIELDS;

	if (jscan_object_in(data, len, m, 2, &m[0], f, 3) == -1)
		return -1;
	return sse_usage_fields(&m[0], f, &m[1], u);
}

int
sse_usage_members(const struct jscan_member *usage, const struct jscan_member *choices, struct sse_usage *u)
{
	struct jscan_member f[3] = SSE_USAGE_FIELDS;

	if (jscan_type(usage->val) == JSCAN_OBJECT && jscan_object(usage->val, usage->val_len, f, 3) == -1)
		return -1;
	return sse_usage_fields(usage, f, choices, u);
}

int
sse_usage_fields(const struct jscan_member *usage, const struct jscan_member *f,
    const struct jscan_member *choices, struct sse_usage *u)
{
	const char *p;

	memset(u, 0, sizeof(*u));
	u->prompt_tokens = u->completion_tokens = u->total_tokens = -1;
	if (jscan_type(usage->val) != JSCAN_OBJECT)
		return 0;
	u->prompt_tokens = sse_scan_int(&f[0]);
	u->completion_tokens = sse_scan_int(&f[1]);
	u->total_tokens = sse_scan_int(&f[2]);
	if (u->total_tokens < 0 && u->prompt_tokens >= 0 && u->completion_tokens >= 0)
		u->total_tokens = u->prompt_tokens + u->completion_tokens;
	u->usage_only = choices->val == NULL;
	if (jscan_type(choices->val) == JSCAN_ARRAY) {
		for (p = choices->val + 1; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'; p++)
			;
		u->usage_only = *p == ']';
	}
	return 1;
}

int
sse_usage_parse(const char *data, size_t len, struct sse_usage *u)
{
	struct json_tokener *tok;
	struct json_object *root = NULL, *usage, *choices;
	int ret = 0;

	memset(u, 0, sizeof(*u));
	u->prompt_tokens = u->completion_tokens = u->total_tokens = -1;
	if (len == 0 || len > INT32_MAX || !sse_maybe_usage(data, len))
		return 0;
	if ((ret = sse_usage_scan(data, len, u)) != -1)
		return ret;
	memset(u, 0, sizeof(*u));
	u->prompt_tokens = u->completion_tokens = u->total_tokens = -1;
	ret = 0;
	if ((tok = json_tokener_new_ex(64)) == NULL)
		return 0;
	root = json_tokener_parse_ex(tok, data, (int)len);
	if (root == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(root, json_type_object))
		goto out;
	if (!json_object_object_get_ex(root, "usage", &usage) ||
	    !json_object_is_type(usage, json_type_object))
		goto out;
	u->prompt_tokens = sse_int_field(usage, "prompt_tokens");
	u->completion_tokens = sse_int_field(usage, "completion_tokens");
	u->total_tokens = sse_int_field(usage, "total_tokens");
	if (u->total_tokens < 0 && u->prompt_tokens >= 0 && u->completion_tokens >= 0)
		u->total_tokens = u->prompt_tokens + u->completion_tokens;
	u->usage_only = !json_object_object_get_ex(root, "choices", &choices) ||
	    (json_object_is_type(choices, json_type_array) && json_object_array_length(choices) == 0);
	ret = 1;
out:
	json_object_put(root);
	json_tokener_free(tok);
	return ret;
}

/* Whether v is 429, as a number or a string. */
static int
sse_is_429(struct json_object *v)
{
	if (json_object_is_type(v, json_type_int))
		return json_object_get_int64(v) == 429;
	return json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), "429") == 0;
}

/* Whether o's member key is a string equal to one of the NULL-ended list. */
static int
sse_str_in(struct json_object *o, const char *key, const char *const *list)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

int
sse_rate_limited(const char *data, size_t len)
{
	static const char *const types[] = { "rate_limit_error", "rate_limit_exceeded", "requests", "tokens", NULL };
	static const char *const codes[] = { "rate_limit_exceeded", "rate_limit_error", NULL };
	struct json_tokener *tok;
	struct json_object *root = NULL, *err, *v;
	int hit = 0;

	if (len == 0 || len > INT32_MAX ||
	    (sc_memfind(data, len, "429", 3, 0) == NULL && sc_memfind(data, len, "rate_limit", 10, 4) == NULL))
		return 0;
	if ((tok = json_tokener_new_ex(16)) == NULL)
		return 0;
	root = json_tokener_parse_ex(tok, data, (int)len);
	if (root != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(root, json_type_object)) {
		if ((json_object_object_get_ex(root, "status", &v) && sse_is_429(v)) ||
		    (json_object_object_get_ex(root, "code", &v) && sse_is_429(v)))
			hit = 1;
		if (json_object_object_get_ex(root, "error", &err) && json_object_is_type(err, json_type_object) &&
		    (sse_str_in(err, "code", codes) || sse_str_in(err, "type", types) ||
		    (json_object_object_get_ex(err, "code", &v) && sse_is_429(v)) ||
		    (json_object_object_get_ex(err, "status", &v) && sse_is_429(v))))
			hit = 1;
	}
	json_object_put(root);
	json_tokener_free(tok);
	return hit;
}
