/*
 * Incremental server-sent-events scanner for relaying OpenAI-style streams.
 *
 * The scanner never holds relayed bytes: it reads the stream as it passes and
 * says where each event ends, keeping only the event's joined `data:` payload
 * (for observation: TTFT, usage, [DONE]). Input may be split anywhere, also
 * inside a CRLF. Lines end in CRLF, LF or CR, an empty line ends an event
 * (WHATWG HTML §9.2.6). Every byte belongs to exactly one "event" in raw terms:
 * comment-only and stray blank lines come out as events without data.
 *
 * Relay loop (the append is the only copy of relayed bytes):
 *
 *   while (n > 0) {
 *       r = sse_feed(&s, p, n, &used, &ev);
 *       sc_buf_append(out, p, used);
 *       if (r == SSE_EVENT && drop_it(&ev))
 *           truncate out by ev.raw_len;      // the event is exactly out's tail
 *       else if (r != SSE_MORE)
 *           sendable = out->len;             // release everything so far
 *       p += used; n -= used;
 *   }
 *
 * A caller that may drop events sends only up to `sendable`, so the event in
 * progress is held back until it ends; the cap (max_event) bounds how much is
 * ever held: past it the scanner returns SSE_PASS and the event is relayed
 * unparsed. A caller that never drops sends everything at once and only looks
 * at ev. At the end of the stream call sse_finish: an event ended by a lone CR
 * is only known complete then; any other unfinished tail is just released.
 */
#ifndef SC_SSE_H
#define SC_SSE_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

#define SSE_MAX_EVENT (1024 * 1024)	/* default cap on one event's raw bytes */

enum sse_result {
	SSE_MORE,	/* all input consumed; the event in progress has not ended */
	SSE_EVENT,	/* an event ended with the last consumed byte; ev filled */
	SSE_PASS,	/* the event in progress is over the cap: release the bytes, unparsed */
};

struct sse_event {
	size_t      raw_len;	/* raw bytes of the event, blank line included, over all feeds */
	const char *data;	/* joined data payload ("\n" between lines), NUL-terminated,
				 * owned by the scanner, valid until the next sse_feed/finish */
	size_t      data_len;
	int         has_data;	/* at least one data field */
	int         done;	/* the payload is exactly "[DONE]" */
	char        type[32];	/* the event field (truncated), "" when absent */
};

struct sse_scanner {
	int          state;		/* private: line state */
	int          field;		/* private: field of the current line */
	int          passing;		/* private: current event is over the cap */
	int          emitted;		/* private: the last call returned an event */
	size_t       event_len;		/* raw bytes of the event in progress */
	size_t       max_event;		/* cap on event_len */
	char         name[8];		/* private: field name being read */
	size_t       name_len;
	char         type[32];		/* private: event field */
	size_t       type_len;
	int          has_data;
	struct sc_buf data;		/* owned: joined payload, cap max_event */
};

/* max_event 0 means SSE_MAX_EVENT. */
void sse_init(struct sse_scanner *s, size_t max_event);
void sse_free(struct sse_scanner *s);
/* The caller is done with the last event (its ev is no longer read): while
 * no payload is held, give back the payload buffer (freed when larger than
 * keep bytes, grown by a big event; else kept for the next payload of any
 * scanner). Scanning goes on as if not called. */
void sse_idle(struct sse_scanner *s, size_t keep);
/* The same for a stream's other event buffer b (empty between events):
 * sse_buf_idle gives it back while empty, sse_buf_ready gives it a kept
 * buffer before its next bytes when it has none. */
void sse_buf_idle(struct sc_buf *b, size_t keep);
void sse_buf_ready(struct sc_buf *b);

/* Scan in[0..len). Consumes up to the end of the first event that ends in it
 * (possibly 0 bytes, when a lone-CR blank line ended the previous call's
 * bytes), or all of it; *consumed tells how much. See the loop above. */
enum sse_result sse_feed(struct sse_scanner *s, const char *in, size_t len, size_t *consumed,
    struct sse_event *ev);
/* At end of stream: SSE_EVENT when the pending bytes formed a complete event
 * (ended by a lone CR), else SSE_MORE with ev->raw_len = pending bytes. The
 * scanner is reset either way. */
enum sse_result sse_finish(struct sse_scanner *s, struct sse_event *ev);

/* Token counts of an OpenAI response or stream chunk. */
struct sse_usage {
	int64_t prompt_tokens;		/* -1 when absent */
	int64_t completion_tokens;	/* -1 when absent */
	int64_t total_tokens;		/* -1 when absent and not derivable */
	int     usage_only;		/* "choices" absent or empty: a usage-only chunk */
};
/* Parse a JSON object (a chunk's data payload, or a whole non-streaming
 * response body) for a non-null "usage" object: 1 with *u filled, 0 when there
 * is none or data is not a JSON object. Cheap for chunks without usage
 * (or with "usage":null): those are rejected without a JSON parse. */
int sse_usage_parse(const char *data, size_t len, struct sse_usage *u);
/* The same from the top-level "usage" and "choices" members of a document
 * the caller has already scanned (jscan_object; a member not present has
 * val NULL): 1 or 0 as above, -1 when the scanner refuses the usage object
 * (then sse_usage_parse on the whole document decides, as json-c does). */
struct jscan_member;
int sse_usage_members(const struct jscan_member *usage, const struct jscan_member *choices, struct sse_usage *u);
/* The same when that scan also read the usage object's members into f
 * (jscan_object_in with usage as in, f initialised with SSE_USAGE_FIELDS):
 * one pass over the document, 1 or 0. */
#define SSE_USAGE_FIELDS \
	{ JSCAN_WANT("prompt_tokens"), JSCAN_WANT("completion_tokens"), JSCAN_WANT("total_tokens") }
int sse_usage_fields(const struct jscan_member *usage, const struct jscan_member *f,
    const struct jscan_member *choices, struct sse_usage *u);

/* Whether an event's data is an error that says "rate limited": NIM's shape
 * ({"status":429,"title":"Too Many Requests",...}) or OpenAI's
 * ({"error":{"type":"rate_limit_error"|"requests"|"tokens",
 * "code":"rate_limit_exceeded"|429,...}}), also with "status"/"code" 429
 * inside "error". 1 or 0. Cheap for ordinary chunks: those without "429"
 * or "rate_limit" are rejected without a JSON parse. */
int sse_rate_limited(const char *data, size_t len);

#endif
