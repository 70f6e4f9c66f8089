/*
 * The client's model id in responses (see respmodel.h). Streams are the hot
 * path: one jscan pass per chunk, which the usage observer already pays for
 * the chunks it looks at, and a splice of the event that the relay holds
 * anyway until it ends; no json-c tree, no buffering beyond one event.
 */
#define _GNU_SOURCE	/* memmem */
#include <string.h>

#include <json-c/json.h>

#include "jscan.h"
#include "respmodel.h"

int
respmodel_literal(const char *model, size_t len, struct sc_buf *out)
{
	struct json_object *s;
	const char *t;
	int rc;

	/* An id with nothing to escape (the usual case) is itself in quotes:
	 * what json-c writes for it, without building a json-c string. */
	if (jscan_plain_len(model, len) == len) {
		char *d;

		if (out->len + len + 2 > out->cap)
			return -1;	/* leaving out as it was */
		sc_buf_presize(out, len + 2);
		d = sc_buf_extend(out, len + 2);
		d[0] = '"';
		memcpy(d + 1, model, len);
		d[len + 1] = '"';
		return 0;
	}
	if ((s = json_object_new_string_len(model, (int)len)) == NULL)
		return -1;
	t = json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = t != NULL ? sc_buf_append(out, t, strlen(t)) : -1;
	json_object_put(s);
	return rc;
}

int
respmodel_json(const char *json, size_t len, const char *lit, size_t lit_len, struct sc_buf *out)
{
	struct jscan_member m = JSCAN_WANT("model");

	if (jscan_object(json, len, &m, 1) != 0)
		return 0;
	return respmodel_json_member(json, len, &m, lit, lit_len, out);
}

int
respmodel_json_span(const char *json, const struct jscan_member *m, const char *lit, size_t lit_len, size_t *at,
    size_t *n)
{
	if (jscan_type(m->val) != JSCAN_STRING)
		return 0;
	if (m->val_len == lit_len && memcmp(m->val, lit, lit_len) == 0)
		return 0;
	*at = (size_t)(m->val - json);
	*n = m->val_len;
	return 1;
}

int
respmodel_json_member(const char *json, size_t len, const struct jscan_member *m, const char *lit, size_t lit_len,
    struct sc_buf *out)
{
	size_t keep = out->len, head, vlen, tail;

	if (respmodel_json_span(json, m, lit, lit_len, &head, &vlen) == 0)
		return 0;
	tail = len - head - vlen;
	sc_buf_presize(out, head + lit_len + tail);	/* an empty out: one allocation */
	if (sc_buf_append(out, json, head) == -1 || sc_buf_append(out, lit, lit_len) == -1 ||
	    sc_buf_append(out, m->val + vlen, tail) == -1) {
		out->len = keep;
		if (out->data != NULL)
			out->data[keep] = '\0';
		return -1;
	}
	return 1;
}

/* An event whose data is split over several lines, rebuilt into scratch as
 * its event type and its data lines (other fields of such an event are
 * lost; no OpenAI-compatible server sends one). 1, or 0 when not rewritten. */
static int
respmodel_multiline(const struct sse_event *ev, const char *lit, size_t lit_len, struct sc_buf *scratch)
{
	struct sc_buf pl;
	size_t i, from;
	int rc = 0;

	sc_buf_init(&pl, scratch->cap);
	if (respmodel_json(ev->data, ev->data_len, lit, lit_len, &pl) != 1)
		goto out;
	if (ev->type[0] != '\0' && sc_buf_printf(scratch, "event: %s\n", ev->type) == -1)
		goto out;
	for (i = from = 0; i <= pl.len; i++) {
		if (i < pl.len && pl.data[i] != '\n')
			continue;
		if (sc_buf_append(scratch, "data: ", 6) == -1 || sc_buf_append(scratch, pl.data + from, i - from) == -1 ||
		    sc_buf_append(scratch, "\n", 1) == -1)
			goto out;
		from = i + 1;
	}
	rc = sc_buf_append(scratch, "\n", 1) == 0;
out:
	sc_buf_free(&pl);
	return rc;
}

int
respmodel_sse(struct sc_buf *hold, const struct sse_event *ev, const char *lit, size_t lit_len,
    struct sc_buf *scratch)
{
	const char *raw, *at;
	size_t start, off, after;

	if (!ev->has_data || ev->done || ev->raw_len > hold->len)
		return 0;
	start = hold->len - ev->raw_len;
	raw = hold->data + start;
	sc_buf_reset(scratch);
	/* The payload as it stands in the raw bytes: one data line, which is
	 * what every OpenAI-compatible server sends, nearly always first. A JSON
	 * object's payload cannot start inside "data: " (no '{' there), so when
	 * it follows that prefix this is where memmem would find it first. */
	at = NULL;
	if (ev->data_len > 0) {
		size_t pre = ev->raw_len > 5 && memcmp(raw, "data:", 5) == 0 ? (raw[5] == ' ' ? 6 : 5) : 0;

		if (pre > 0 && ev->data[0] == '{' && ev->raw_len - pre >= ev->data_len &&
		    memcmp(raw + pre, ev->data, ev->data_len) == 0)
			at = raw + pre;
		else
			at = memmem(raw, ev->raw_len, ev->data, ev->data_len);
	}
	if (at != NULL) {
		off = (size_t)(at - raw);
		after = off + ev->data_len;
		if (respmodel_json(ev->data, ev->data_len, lit, lit_len, scratch) != 1 ||
		    sc_buf_append(scratch, raw + after, ev->raw_len - after) == -1)
			return 0;
		start += off;
	} else if (respmodel_multiline(ev, lit, lit_len, scratch) != 1) {
		return 0;
	}
	if (start + scratch->len > hold->cap)
		return 0;
	hold->len = start;
	return sc_buf_append(hold, scratch->data, scratch->len) == 0 ? 1 : 0;
}
