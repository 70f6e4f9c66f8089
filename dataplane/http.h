/*
 * HTTP/1.1 request parsing as pure functions over the caller's buffer
 * (picohttpparser's shape): they never read sockets or allocate, and return
 * bytes consumed, HTTP_INCOMPLETE, or HTTP_ERROR with the status to answer.
 * Strict per RFC 9112: see http.c for the framing rules.
 *
 * Use by the connection code:
 *   n = http_parse_request(in->data, in->len, &req);
 *   HTTP_INCOMPLETE: read more and call again with the whole buffer (the
 *     parser keeps no state; it already answers 414/431 once the buffered
 *     prefix is over a limit, so buffering never exceeds the caps + 2).
 *   HTTP_ERROR: answer req.error_status (reason req.error_reason) and close.
 *   n > 0: the head is in[0..n); slices in req point into in, so keep the
 *     bytes until done with req. Body: req.body_kind, then either
 *     content_length bytes or http_chunked_decode over the bytes after n.
 * Each call costs O(bytes scanned, at most the caps); calling it only when the
 * newly read bytes contain '\n' or the buffer passed a cap is enough.
 */
#ifndef SC_HTTP_H
#define SC_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

#define HTTP_INCOMPLETE (-1)
#define HTTP_ERROR      (-2)

#define HTTP_MAX_HEADERS     100
#define HTTP_MAX_REQLINE     8192		/* longer request line: 414 */
#define HTTP_MAX_HEAD_BYTES  (64 * 1024)	/* longer header section: 431 */

struct http_slice {
	const char *p;		/* points into the caller's buffer */
	size_t      len;
};

struct http_header {
	struct http_slice name;
	struct http_slice value;	/* leading/trailing OWS removed */
};

enum http_body_kind { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

struct http_request {
	struct http_slice method;
	struct http_slice target;
	int               minor_version;	/* 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t            nheaders;
	/* Framing and connection semantics derived from the headers: */
	enum http_body_kind body_kind;
	uint64_t          content_length;	/* when HTTP_BODY_LENGTH (<= INT64_MAX) */
	int               keep_alive;		/* 1.1 default yes, "Connection: close" no; 1.0 needs keep-alive */
	int               expect_continue;	/* "Expect: 100-continue" (HTTP/1.1 only) */
	int               error_status;		/* on HTTP_ERROR: 400, 414, 417, 431, 501, 505 */
	const char       *error_reason;		/* on HTTP_ERROR: short static text for the response */
};

/* Parse a request head (request line + headers + CRLF) from buf[0..len).
 * Returns the head's length, HTTP_INCOMPLETE, or HTTP_ERROR (req->error_*).
 * Empty lines (CRLF) before the request line are skipped and counted in the
 * returned length (RFC 9112 §2.2). */
int http_parse_request(const char *buf, size_t len, struct http_request *req);

/* The origin-form part (path and query) of a target: the target itself when
 * it starts with '/', else what follows "scheme://authority" ("/" when that
 * is empty; the query is kept: "http://h?q" gives "?q"). Route on this. */
struct http_slice http_target_path(struct http_slice target);


/* Eight bytes equal but for ASCII case, as one word: the bytes that differ
 * may differ only in 0x20, and where they do the byte must be a letter
 * (0x20 set, 0x80 clear, 'a'..'z' in the low seven bits; the two sums per
 * byte stay below 0x100, so no carry crosses bytes). */
static inline int
http_ieq_8(const char *a, const char *b)
{
	const uint64_t ones = 0x0101010101010101ULL;
	uint64_t x, y, d, l, l7, letter;

	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	if ((d = x ^ y) == 0)
		return 1;
	if ((d & ~(ones * 0x20)) != 0)
		return 0;
	l = x | ones * 0x20;
	l7 = l & ones * 0x7f;
	letter = (l7 + ones * (0x80 - 'a')) & ~(l7 + ones * (0x80 - 'z' - 1)) & ~l & ones * 0x80;
	return ((d << 2) & ~letter) == 0;	/* 0x20 << 2: the byte's 0x80 */
}

/* n bytes equal but for ASCII case (strncasecmp in the C locale, for bytes
 * without NUL). Inline, like the two below: called per header and per name
 * compared, mostly with literals whose length the compiler knows. From
 * eight bytes on, a word at a time (the last word overlaps the one before). */
static inline int
http_ieq_n(const char *a, const char *b, size_t n)
{
	size_t i;

	if (n >= 8) {
		for (i = 0;; i += 8) {
			if (i + 8 > n)
				i = n - 8;
			if (!http_ieq_8(a + i, b + i))
				return 0;
			if (i + 8 == n)
				return 1;
		}
	}
	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x != y && ((x | 0x20) != (y | 0x20) || (unsigned char)((x | 0x20) - 'a') > 'z' - 'a'))
			return 0;
	}
	return 1;
}

/* s is exactly lit. */
static inline int
http_slice_eq(struct http_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* s is lit but for ASCII case. */
static inline int
http_slice_ieq(struct http_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && http_ieq_n(s.p, lit, n);
}

/* Case-insensitive header lookup (first match); NULL when absent. Inline:
 * the name is a literal, its length known at compile time. */
static inline const struct http_header *
http_find_header(const struct http_request *req, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < req->nheaders; i++)
		if (req->headers[i].name.len == n && http_ieq_n(req->headers[i].name.p, name, n))
			return &req->headers[i];
	return NULL;
}

/* Incremental chunked body decoder (chunk extensions ignored, trailers
 * read and dropped, sizes checked for overflow). Bounds: at most 16 hex
 * digits per size, 4 KiB per size or trailer line, 16 KiB of trailers. */
struct http_chunked {
	int      state;		/* private */
	uint64_t remaining;	/* bytes left in the current chunk */
	size_t   line_len;	/* private: length of the size/trailer line so far */
	size_t   trailer_len;	/* private: bytes of trailers so far */
	int      ndigits;	/* private: hex digits of the current size */
};
void http_chunked_init(struct http_chunked *c);
/* Feed in[0..inlen); data bytes are appended to out (NULL: discarded), whose
 * cap bounds the body. *consumed receives the input bytes used: on 1 the bytes
 * after the body (a pipelined request) are not consumed. Returns 1 when the
 * body is complete, 0 when more input is needed (all input consumed),
 * HTTP_ERROR with *status set (400 bad framing, 413 past out's cap). */
int http_chunked_decode(struct http_chunked *c, const char *in, size_t inlen, size_t *consumed,
    struct sc_buf *out, int *status);

/* Hop-by-hop headers, which a proxy never forwards (RFC 9110 §7.6.1):
 * Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade, Proxy-Authenticate, Proxy-Authorization. Headers named in the
 * request's Connection field are hop-by-hop too: check with
 * http_connection_lists. */
int http_is_hop_by_hop(struct http_slice name);
/* Whether the request's Connection header(s) list name as an option. */
int http_connection_lists(const struct http_request *req, struct http_slice name);

/* Longest Retry-After honoured, seconds (one day; docs/scheduling.md). */
#define HTTP_RETRY_AFTER_MAX 86400

/* An upstream Retry-After value (RFC 9110 §10.2.3) as a delay in seconds
 * from now_s (Unix time): delta-seconds, or an HTTP-date in the IMF-fixdate,
 * obsolete RFC 850 or asctime form (§5.6.7). Larger delays are capped at
 * HTTP_RETRY_AFTER_MAX, a date in the past is 0; -1 when v is neither. */
int http_retry_after(const char *v, size_t len, int64_t now_s);

/* Reason phrase for a status code ("OK", "Too Many Requests"...); "Unknown"
 * for codes it does not know. */
const char *http_reason(int status);
/* "<status> <reason>" (what "%d %s" with http_reason gives), NUL-terminated,
 * into out; returns its length. Without snprintf: a status line and an
 * outcome summary are made per request. */
#define HTTP_STATUS_TEXT_MAX 48
size_t http_status_text(int status, char out[HTTP_STATUS_TEXT_MAX]);
/* "Retry-After: <seconds>\r\n" into buf (seconds below 1 become 1): the one
 * place the header is formatted. Returns buf. */
char *http_retry_after_line(char *buf, size_t n, int seconds);
#define HTTP_RETRY_AFTER_LINE_MAX 32

#endif
