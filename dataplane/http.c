/*
 * Strict HTTP/1.1 request-head parser and chunked body decoder (RFC 9112).
 *
 * The data plane faces local clients, but a proxy that frames a request
 * differently from the upstream invites request smuggling, so anything
 * ambiguous is refused rather than guessed:
 *   - lines end in CRLF only; a bare CR or bare LF anywhere in the head is 400;
 *   - request line: method token SP target SP HTTP/1.x, single spaces, target
 *     in origin-form ("/...") or absolute-form ("scheme://..."), visible ASCII
 *     only; HTTP/x.y with other digits is 505, anything else 400; over
 *     HTTP_MAX_REQLINE bytes is 414 (as soon as the buffered prefix shows it);
 *   - header names are tokens directly followed by ':' (no whitespace), values
 *     carry no control characters; obs-fold (a line starting with SP/HT) is 400;
 *     over HTTP_MAX_HEAD_BYTES or HTTP_MAX_HEADERS is 431;
 *   - Content-Length: digits only, repeated values must be identical, at most
 *     INT64_MAX; with Transfer-Encoding: 400; Transfer-Encoding: only exactly
 *     "chunked" (501 for other codings we do not implement, 400 when chunked is
 *     not last, repeated, or the field is junk, or in an HTTP/1.0 request);
 *   - HTTP/1.1 needs exactly one Host; more than one Host is always 400, as is
 *     a Host value with whitespace, ',', '/', '\\', '@', '?' or '#';
 *   - Expect other than 100-continue is 417.
 * Nothing here allocates or keeps state between calls.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

#define HTTP_CHUNK_LINE_MAX    4096		/* size line with extensions, one trailer line */
#define HTTP_CHUNK_TRAILER_MAX (16 * 1024)	/* all trailer lines */
#define HTTP_CHUNK_DIGITS_MAX  16		/* hex digits in a chunk size */

/* Byte classes, one table lookup per byte (every method, header name and
 * Host byte comes here). */
#define HTTP_TCHAR     0x01	/* tchar per RFC 9110 §5.6.2: alphanumerics and "!#$%&'*+-.^_`|~" */
#define HTTP_HOST_BAD  0x02	/* not in a Host value: " \t,/\\@?#" (lists, paths, userinfo) and NUL */

static const unsigned char http_class[256] = {
	['0' ... '9'] = HTTP_TCHAR, ['A' ... 'Z'] = HTTP_TCHAR, ['a' ... 'z'] = HTTP_TCHAR,
	['!'] = HTTP_TCHAR, ['#'] = HTTP_TCHAR | HTTP_HOST_BAD, ['$'] = HTTP_TCHAR, ['%'] = HTTP_TCHAR,
	['&'] = HTTP_TCHAR, ['\''] = HTTP_TCHAR, ['*'] = HTTP_TCHAR, ['+'] = HTTP_TCHAR, ['-'] = HTTP_TCHAR,
	['.'] = HTTP_TCHAR, ['^'] = HTTP_TCHAR, ['_'] = HTTP_TCHAR, ['`'] = HTTP_TCHAR, ['|'] = HTTP_TCHAR,
	['~'] = HTTP_TCHAR,
	['\0'] = HTTP_HOST_BAD, [' '] = HTTP_HOST_BAD, ['\t'] = HTTP_HOST_BAD, [','] = HTTP_HOST_BAD,
	['/'] = HTTP_HOST_BAD, ['\\'] = HTTP_HOST_BAD, ['@'] = HTTP_HOST_BAD, ['?'] = HTTP_HOST_BAD,
};

static int
http_is_tchar(unsigned char c)
{
	return http_class[c] & HTTP_TCHAR;
}

/* field-vchar / SP / HTAB (obs-text allowed, as the RFC says recipients must). */
static int
http_is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Word-at-a-time checks (8 bytes per step) for the long runs of a head: the
 * request target and the header values. The tests are exact as yes/no
 * answers for the whole word ("some byte is below n" for n <= 0x80, "some
 * byte is 0x7f"); a word that fails goes to the byte loop, which decides
 * which byte it is.
 */
#define HTTP_ONES  0x0101010101010101ULL
#define HTTP_HIGHS 0x8080808080808080ULL

/* Some byte of x below n (n <= 0x80; a byte >= 0x80 never counts). */
static uint64_t
http_word_below(uint64_t x, unsigned n)
{
	return (x - HTTP_ONES * n) & ~x & HTTP_HIGHS;
}

/* Some byte of x is 0x7f. */
static uint64_t
http_word_del(uint64_t x)
{
	return http_word_below(x ^ (HTTP_ONES * 0x7f), 1);
}

/* The first byte of [p, e) that is a control character or DEL (anything
 * but SP, visible ASCII and obs-text), or e. */
static const char *
http_skip_text(const char *p, const char *e)
{
	uint64_t x;

	for (; e - p >= 8; p += 8) {
		memcpy(&x, p, 8);
		if (http_word_below(x, 0x20) | http_word_del(x))
			break;
	}
	while (p < e && http_is_value_char((unsigned char)*p) && *p != '\t')
		p++;
	return p;
}

/* The first byte of [p, e) that is not visible ASCII (0x21-0x7e), or e. */
static const char *
http_skip_visible(const char *p, const char *e)
{
	uint64_t x;

	for (; e - p >= 8; p += 8) {
		memcpy(&x, p, 8);
		if (http_word_below(x, 0x21) | http_word_del(x) | (x & HTTP_HIGHS))
			break;
	}
	while (p < e && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
		p++;
	return p;
}

static int
http_fail(struct http_request *req, int status, const char *reason)
{
	req->error_status = status;
	req->error_reason = reason;
	return HTTP_ERROR;
}

/* Find the CRLF ending the line that starts at p, looking at [p, lim).
 * 1: found, *eol at the CR, *next after the LF; 0: not within lim;
 * -1: a bare CR or LF. A CR at lim - 1 is "not found": its LF may follow. */
static inline int
http_line(const char *p, const char *lim, const char **eol, const char **next)
{
	/* memchr, not a byte loop: the first CR, and any LF before it */
	const char *cr = memchr(p, '\r', (size_t)(lim - p));

	if (memchr(p, '\n', (size_t)((cr != NULL ? cr : lim) - p)) != NULL)
		return -1;
	if (cr == NULL || cr + 1 == lim)
		return 0;
	if (cr[1] != '\n')
		return -1;
	*eol = cr;
	*next = cr + 2;
	return 1;
}

/* A byte a Host value may not hold. */
static int
http_host_refused(unsigned char c)
{
	return http_class[c] & HTTP_HOST_BAD;
}

/* Trim OWS (SP / HTAB) on both sides. */
static struct http_slice
http_trim(const char *p, const char *e)
{
	struct http_slice s;

	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	s.p = p;
	s.len = (size_t)(e - p);
	return s;
}

struct http_slice
http_target_path(struct http_slice t)
{
	const char *p, *e = t.p + t.len, *s;
	struct http_slice r;

	if (t.len == 0 || t.p[0] == '/')
		return t;
	s = memchr(t.p, ':', t.len);
	p = s != NULL && e - s >= 3 ? s + 3 : e;	/* after "://" */
	while (p < e && *p != '/' && *p != '?')
		p++;
	if (p == e) {
		r.p = "/";
		r.len = 1;
	} else {
		r.p = p;
		r.len = (size_t)(e - p);
	}
	return r;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t
http_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* Read exactly n digits at *p (advanced); -1 when they are not there. */
static int64_t
http_digits(const char **p, const char *e, int n)
{
	int64_t v = 0;
	int i;

	for (i = 0; i < n; i++, (*p)++) {
		if (*p >= e || **p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

/* Match the literal lit at *p (advanced): 1, else 0. */
static int
http_lit(const char **p, const char *e, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(e - *p) < n || memcmp(*p, lit, n) != 0)
		return 0;
	*p += n;
	return 1;
}

/* A three-letter month name at *p (advanced): 1-12, or -1. */
static int
http_month(const char **p, const char *e)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int i;

	if (e - *p < 3)
		return -1;
	for (i = 0; i < 12; i++)
		if (memcmp(*p, months + 3 * i, 3) == 0) {
			*p += 3;
			return i + 1;
		}
	return -1;
}

/* "HH:MM:SS" at *p (advanced): seconds of the day, or -1. */
static int64_t
http_clock(const char **p, const char *e)
{
	int64_t h = http_digits(p, e, 2), m, s;

	if (h < 0 || !http_lit(p, e, ":") || (m = http_digits(p, e, 2)) < 0 || !http_lit(p, e, ":") ||
	    (s = http_digits(p, e, 2)) < 0 || h > 23 || m > 59 || s > 60)
		return -1;
	return h * 3600 + m * 60 + s;
}

/* Skip a day name ("Sun" or "Sunday") up to and including the separator sep. */
static int
http_skip_day(const char **p, const char *e, const char *sep)
{
	while (*p < e && ((**p >= 'A' && **p <= 'Z') || (**p >= 'a' && **p <= 'z')))
		(*p)++;
	return http_lit(p, e, sep);
}

/* An HTTP-date in any of its three forms: Unix time, or -1. now_s resolves
 * the RFC 850 form's two-digit year (RFC 9110 §5.6.7: a year more than 50
 * years ahead is the most recent past one with the same last digits). */
static int64_t
http_date(const char *v, size_t len, int64_t now_s)
{
	const char *p = v, *e = v + len, *q;
	int64_t day, year, tod;
	int mon;

	q = memchr(v, ',', len);
	if (q != NULL && q - v == 3) {	/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
		if (!http_skip_day(&p, e, ", ") || (day = http_digits(&p, e, 2)) < 0 || !http_lit(&p, e, " ") ||
		    (mon = http_month(&p, e)) < 0 || !http_lit(&p, e, " ") || (year = http_digits(&p, e, 4)) < 0 ||
		    !http_lit(&p, e, " ") || (tod = http_clock(&p, e)) < 0 || !http_lit(&p, e, " GMT"))
			return -1;
	} else if (q != NULL) {		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
		int64_t now_year = 1970 + now_s / 31556952;
		if (!http_skip_day(&p, e, ", ") || (day = http_digits(&p, e, 2)) < 0 || !http_lit(&p, e, "-") ||
		    (mon = http_month(&p, e)) < 0 || !http_lit(&p, e, "-") || (year = http_digits(&p, e, 2)) < 0 ||
		    !http_lit(&p, e, " ") || (tod = http_clock(&p, e)) < 0 || !http_lit(&p, e, " GMT"))
			return -1;
		year += now_year - now_year % 100;
		if (year > now_year + 50)
			year -= 100;
	} else {			/* asctime: Sun Nov  6 08:49:37 1994 */
		if (!http_skip_day(&p, e, " ") || (mon = http_month(&p, e)) < 0 || !http_lit(&p, e, " "))
			return -1;
		if (http_lit(&p, e, " "))
			day = http_digits(&p, e, 1);
		else
			day = http_digits(&p, e, 2);
		if (day < 0 || !http_lit(&p, e, " ") || (tod = http_clock(&p, e)) < 0 || !http_lit(&p, e, " ") ||
		    (year = http_digits(&p, e, 4)) < 0)
			return -1;
	}
	if (p != e || day < 1 || day > 31)
		return -1;
	return http_days_from_civil(year, mon, (int)day) * 86400 + tod;
}

int
http_retry_after(const char *v, size_t len, int64_t now_s)
{
	int64_t t;
	size_t i;

	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	if (len == 0)
		return -1;
	for (i = 0; i < len && v[i] >= '0' && v[i] <= '9'; i++)
		;
	if (i == len) {			/* delta-seconds, however many digits */
		int64_t s = 0;
		for (i = 0; i < len && s <= HTTP_RETRY_AFTER_MAX; i++)
			s = s * 10 + (v[i] - '0');
		return s > HTTP_RETRY_AFTER_MAX ? HTTP_RETRY_AFTER_MAX : (int)s;
	}
	if ((t = http_date(v, len, now_s)) < 0)
		return -1;
	t -= now_s;
	return t <= 0 ? 0 : t > HTTP_RETRY_AFTER_MAX ? HTTP_RETRY_AFTER_MAX : (int)t;
}

/* Iterate over the comma-separated elements of a list-valued field: returns 1
 * with the next element (OWS trimmed, possibly empty) in *elem, 0 at the end. */
static int
http_list_next(struct http_slice *rest, struct http_slice *elem)
{
	const char *p = rest->p, *e, *c;

	if (p == NULL)
		return 0;
	e = p + rest->len;
	c = memchr(p, ',', (size_t)(e - p));
	if (c == NULL) {
		*elem = http_trim(p, e);
		rest->p = NULL;
		rest->len = 0;
	} else {
		*elem = http_trim(p, c);
		rest->p = c + 1;
		rest->len = (size_t)(e - c - 1);
	}
	return 1;
}

/* Parse a decimal Content-Length element: 0 with *v, or -1 on junk/overflow. */
static int
http_parse_length(struct http_slice s, uint64_t *v)
{
	uint64_t n = 0;
	size_t i;

	if (s.len == 0)
		return -1;
	for (i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c < '0' || c > '9')
			return -1;
		if (n > ((uint64_t)INT64_MAX - (c - '0')) / 10)
			return -1;
		n = n * 10 + (c - '0');
	}
	*v = n;
	return 0;
}

/* The request line [p, e): method SP target SP HTTP-version. */
static int
http_parse_reqline(const char *p, const char *e, struct http_request *req)
{
	const char *m = p, *t, *v;

	while (p < e && http_is_tchar((unsigned char)*p))
		p++;
	if (p == m || p == e || *p != ' ')
		return http_fail(req, 400, "malformed request method");
	req->method.p = m;
	req->method.len = (size_t)(p - m);

	t = ++p;
	p = http_skip_visible(t, e);	/* the target ends at the first byte that is not visible */
	if (p < e && *p != ' ')
		return http_fail(req, 400, "invalid character in request target");
	if (p == t || p == e)
		return http_fail(req, 400, "malformed request target");
	req->target.p = t;
	req->target.len = (size_t)(p - t);
	if (t[0] != '/') {
		/* absolute-form: scheme "://" ... (no authority-form, no "*") */
		const char *s = t;

		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return http_fail(req, 400, "unsupported request target form");
		while (s < p && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.'))
			s++;
		if (p - s < 3 || memcmp(s, "://", 3) != 0)
			return http_fail(req, 400, "unsupported request target form");
	}

	v = ++p;
	if (e - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
	    v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
		return http_fail(req, 400, "malformed HTTP version");
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return http_fail(req, 505, "HTTP version not supported");
	req->minor_version = v[7] - '0';
	return 0;
}

/* One header line [p, e) into req->headers. */
static int
http_parse_header(const char *p, const char *e, struct http_request *req)
{
	const char *n = p, *c;
	struct http_header *h;

	if (*p == ' ' || *p == '\t')
		return http_fail(req, 400, "obsolete line folding");
	while (p < e && http_is_tchar((unsigned char)*p))
		p++;
	if (p == e || *p != ':')
		return http_fail(req, 400, "malformed header field name");
	if (p == n)
		return http_fail(req, 400, "empty header field name");
	for (c = http_skip_text(p + 1, e); c < e; c = http_skip_text(c + 1, e))
		if (*c != '\t')	/* HTAB is the one control character a value may hold */
			return http_fail(req, 400, "invalid character in header field value");
	if (req->nheaders == HTTP_MAX_HEADERS)
		return http_fail(req, 431, "too many header fields");
	h = &req->headers[req->nheaders++];
	h->name.p = n;
	h->name.len = (size_t)(p - n);
	h->value = http_trim(p + 1, e);
	return 0;
}

/* Transfer-Encoding: every field line, in order, must list exactly "chunked". */
static int
http_check_te(struct http_request *req)
{
	size_t i, ncodings = 0;
	int chunked = 0, other = 0;

	for (i = 0; i < req->nheaders; i++) {
		struct http_slice rest, el;

		if (!http_slice_ieq(req->headers[i].name, "transfer-encoding"))
			continue;
		rest = req->headers[i].value;
		if (rest.len == 0)
			return http_fail(req, 400, "empty Transfer-Encoding");
		while (http_list_next(&rest, &el)) {
			size_t k = 0;

			/* a coding is a token, optionally with ;parameters */
			while (k < el.len && http_is_tchar((unsigned char)el.p[k]))
				k++;
			if (k == 0)
				return http_fail(req, 400, "malformed Transfer-Encoding");
			{
				struct http_slice after = http_trim(el.p + k, el.p + el.len);

				if (after.len > 0 && after.p[0] != ';')
					return http_fail(req, 400, "malformed Transfer-Encoding");
			}
			if (chunked)
				return http_fail(req, 400, "chunked is not the final transfer coding");
			ncodings++;
			el.len = k;
			if (http_slice_ieq(el, "chunked"))
				chunked = 1;
			else
				other = 1;
		}
	}
	if (ncodings == 0)
		return 0;
	if (req->minor_version == 0)
		return http_fail(req, 400, "Transfer-Encoding in an HTTP/1.0 request");
	if (!chunked)
		return http_fail(req, other ? 501 : 400, "transfer coding not implemented");
	if (other)
		return http_fail(req, 501, "transfer coding not implemented");
	req->body_kind = HTTP_BODY_CHUNKED;
	return 1;
}

/* Derive framing and connection semantics once every header is read. */
static int
http_semantics(struct http_request *req)
{
	size_t i, i2, nhost = 0;
	int have_cl = 0, te, close = 0, keep = 0;
	uint64_t cl = 0;

	if ((te = http_check_te(req)) == HTTP_ERROR)
		return HTTP_ERROR;
	for (i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		struct http_slice rest, el;

		if (http_slice_ieq(h->name, "host")) {
			/* uri-host [":" port]: no lists, paths or userinfo */
			for (i2 = 0; i2 < h->value.len; i2++)
				if (http_host_refused((unsigned char)h->value.p[i2]))
					return http_fail(req, 400, "invalid Host header");
			nhost++;
		} else if (http_slice_ieq(h->name, "content-length")) {
			rest = h->value;
			while (http_list_next(&rest, &el)) {
				uint64_t v;

				if (http_parse_length(el, &v) == -1)
					return http_fail(req, 400, "invalid Content-Length");
				if (have_cl && v != cl)
					return http_fail(req, 400, "conflicting Content-Length values");
				cl = v;
				have_cl = 1;
			}
		} else if (http_slice_ieq(h->name, "connection")) {
			rest = h->value;
			while (http_list_next(&rest, &el)) {
				if (http_slice_ieq(el, "close"))
					close = 1;
				else if (http_slice_ieq(el, "keep-alive"))
					keep = 1;
			}
		} else if (http_slice_ieq(h->name, "expect")) {
			if (!http_slice_ieq(h->value, "100-continue"))
				return http_fail(req, 417, "unsupported expectation");
			if (req->minor_version == 1)
				req->expect_continue = 1;
		}
	}
	if (te && have_cl)
		return http_fail(req, 400, "both Content-Length and Transfer-Encoding");
	if (nhost > 1)
		return http_fail(req, 400, "more than one Host header");
	if (nhost == 0 && req->minor_version == 1)
		return http_fail(req, 400, "missing Host header");
	if (have_cl) {
		req->body_kind = HTTP_BODY_LENGTH;
		req->content_length = cl;
	}
	if (req->minor_version == 1)
		req->keep_alive = !close;
	else
		req->keep_alive = keep && !close;
	return 0;
}

int
http_parse_request(const char *buf, size_t len, struct http_request *req)
{
	const char *p = buf, *end = buf + len, *lim, *eol, *next, *hstart;
	int r;

	/* Every field but the header table (3 KiB, read only up to nheaders). */
	memset(req, 0, offsetof(struct http_request, headers));
	req->nheaders = 0;
	req->body_kind = HTTP_BODY_NONE;
	req->content_length = 0;
	req->keep_alive = 0;
	req->expect_continue = 0;
	req->error_status = 0;
	req->error_reason = NULL;

	/* RFC 9112 §2.2: ignore empty lines before the request line. */
	while (end - p >= 2 && p[0] == '\r' && p[1] == '\n' && p - buf < HTTP_MAX_REQLINE)
		p += 2;

	lim = (size_t)(end - p) > HTTP_MAX_REQLINE + 2 ? p + HTTP_MAX_REQLINE + 2 : end;
	r = http_line(p, lim, &eol, &next);
	if (r == -1)
		return http_fail(req, 400, "bare CR or LF in request line");
	if (r == 0)
		return lim - p == HTTP_MAX_REQLINE + 2 ?
		    http_fail(req, 414, "request line too long") : HTTP_INCOMPLETE;
	if (eol == p)
		return http_fail(req, 400, "empty request line");
	if (http_parse_reqline(p, eol, req) == HTTP_ERROR)
		return HTTP_ERROR;

	hstart = p = next;
	lim = (size_t)(end - hstart) > HTTP_MAX_HEAD_BYTES ? hstart + HTTP_MAX_HEAD_BYTES : end;
	for (;;) {
		r = http_line(p, lim, &eol, &next);
		if (r == -1)
			return http_fail(req, 400, "bare CR or LF in header section");
		if (r == 0)
			return lim - hstart == HTTP_MAX_HEAD_BYTES ?
			    http_fail(req, 431, "header section too large") : HTTP_INCOMPLETE;
		if (eol == p)
			break;
		if (http_parse_header(p, eol, req) == HTTP_ERROR)
			return HTTP_ERROR;
		p = next;
	}
	if (http_semantics(req) == HTTP_ERROR)
		return HTTP_ERROR;
	return (int)(next - buf);
}

/* Chunked decoder states, in the order a body passes through them. */
enum {
	CH_SIZE,	/* hex digits of a chunk size */
	CH_SIZE_BWS,	/* whitespace after the size, before ';' */
	CH_EXT,		/* after a ';': extensions up to CR */
	CH_SIZE_LF,	/* CR seen after the size line */
	CH_DATA,	/* chunk data, c->remaining bytes left */
	CH_DATA_CR,	/* CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER,	/* at the start of a trailer line (or the final CRLF) */
	CH_TRAILER_LINE,/* inside a trailer line */
	CH_TRAILER_LF,	/* CR seen at the end of a trailer line */
	CH_END_LF,	/* CR seen on the empty line ending the body */
	CH_DONE
};

void
http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

static int
http_hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int
http_chunked_fail(int *status, int code)
{
	*status = code;
	return HTTP_ERROR;
}

int
http_chunked_decode(struct http_chunked *c, const char *in, size_t inlen, size_t *consumed,
    struct sc_buf *out, int *status)
{
	size_t i = 0;

	*consumed = 0;
	*status = 0;
	while (i < inlen && c->state != CH_DONE) {
		unsigned char ch = (unsigned char)in[i];
		int hv;

		switch (c->state) {
		case CH_SIZE:
			if ((hv = http_hexval(ch)) >= 0) {
				if (c->ndigits == HTTP_CHUNK_DIGITS_MAX)
					return http_chunked_fail(status, 400);
				c->remaining = (c->remaining << 4) | (uint64_t)hv;
				c->ndigits++;
				c->line_len++;
				i++;
				break;
			}
			if (c->ndigits == 0)
				return http_chunked_fail(status, 400);
			/* FALLTHROUGH */
		case CH_SIZE_BWS:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == ';')
				c->state = CH_EXT;
			else if (ch == ' ' || ch == '\t')
				c->state = CH_SIZE_BWS;
			else
				return http_chunked_fail(status, 400);
			if (++c->line_len > HTTP_CHUNK_LINE_MAX)
				return http_chunked_fail(status, 400);
			i++;
			break;
		case CH_EXT:
			/* chunk-ext: skipped, but bounded and free of control bytes */
			if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (!http_is_value_char(ch)) {
				return http_chunked_fail(status, 400);
			}
			if (++c->line_len > HTTP_CHUNK_LINE_MAX)
				return http_chunked_fail(status, 400);
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return http_chunked_fail(status, 400);
			i++;
			c->line_len = 0;
			c->ndigits = 0;
			c->state = c->remaining == 0 ? CH_TRAILER : CH_DATA;
			break;
		case CH_DATA: {
			size_t n = inlen - i;

			if ((uint64_t)n > c->remaining)
				n = (size_t)c->remaining;
			if (out != NULL && sc_buf_append(out, in + i, n) == -1)
				return http_chunked_fail(status, 413);
			i += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return http_chunked_fail(status, 400);
			c->state = CH_DATA_LF;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return http_chunked_fail(status, 400);
			c->state = CH_SIZE;
			i++;
			break;
		case CH_TRAILER:
			if (ch == '\r') {
				c->state = CH_END_LF;
				i++;
				break;
			}
			if (ch == ' ' || ch == '\t' || ch == '\n')
				return http_chunked_fail(status, 400);
			c->line_len = 0;
			c->state = CH_TRAILER_LINE;
			/* FALLTHROUGH */
		case CH_TRAILER_LINE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (!http_is_value_char(ch))
				return http_chunked_fail(status, 400);
			if (++c->line_len > HTTP_CHUNK_LINE_MAX ||
			    ++c->trailer_len > HTTP_CHUNK_TRAILER_MAX)
				return http_chunked_fail(status, 400);
			i++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return http_chunked_fail(status, 400);
			c->state = CH_TRAILER;
			i++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return http_chunked_fail(status, 400);
			c->state = CH_DONE;
			i++;
			break;
		default:
			return http_chunked_fail(status, 400);
		}
	}
	*consumed = i;
	return c->state == CH_DONE ? 1 : 0;
}

int
http_is_hop_by_hop(struct http_slice name)
{
	/* by length first: every forwarded header comes here, and most names
	 * have a length no hop-by-hop name has */
	switch (name.len) {
	case 2:
		return http_slice_ieq(name, "te");
	case 7:
		return http_slice_ieq(name, "trailer") || http_slice_ieq(name, "upgrade");
	case 10:
		return http_slice_ieq(name, "connection") || http_slice_ieq(name, "keep-alive");
	case 16:
		return http_slice_ieq(name, "proxy-connection");
	case 17:
		return http_slice_ieq(name, "transfer-encoding");
	case 18:
		return http_slice_ieq(name, "proxy-authenticate");
	case 19:
		return http_slice_ieq(name, "proxy-authorization");
	default:
		return 0;
	}
}

int
http_connection_lists(const struct http_request *req, struct http_slice name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++) {
		struct http_slice rest, el;

		if (!http_slice_ieq(req->headers[i].name, "connection"))
			continue;
		rest = req->headers[i].value;
		while (http_list_next(&rest, &el))
			if (el.len == name.len && el.len > 0 && http_ieq_n(el.p, name.p, el.len))
				return 1;
	}
	return 0;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return "Unknown";
	}
}

size_t
http_status_text(int status, char out[HTTP_STATUS_TEXT_MAX])
{
	const char *reason = http_reason(status);
	size_t n, rlen = strlen(reason);	/* at most 31 bytes */

	if (status >= 100 && status <= 999) {
		out[0] = (char)('0' + status / 100);
		out[1] = (char)('0' + status / 10 % 10);
		out[2] = (char)('0' + status % 10);
		n = 3;
	} else {
		n = sc_fmt_i64(status, out);	/* at most 11 bytes for an int */
	}
	out[n++] = ' ';
	memcpy(out + n, reason, rlen + 1);
	return n + rlen;
}

char *
http_retry_after_line(char *buf, size_t n, int seconds)
{
	snprintf(buf, n, "Retry-After: %d\r\n", seconds > 0 ? seconds : 1);
	return buf;
}
