/*
 * Small helpers shared by every program: the error record callers show to
 * operators, UTC time strings in the one format the database uses, a byte
 * buffer with a hard size cap, random UUIDs, and allocation that aborts on
 * out-of-memory (the one failure no program here tries to survive).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* strptime, timegm */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util.h"

int
sc_err_set(struct sc_err *e, const char *field, int line, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	if (field != e->field)	/* callers may pass e->field back: keep it */
		snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	e->line = line;
	return -1;
}

void
sc_err_clear(struct sc_err *e)
{
	if (e == NULL)
		return;
	e->msg[0] = '\0';
	e->field[0] = '\0';
	e->line = 0;
}

/* Break t down as UTC; out-of-range values clamp to the epoch. */
static void
sc_gmtime(int64_t t, struct tm *tm)
{
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, tm);
	}
}

void
sc_ts_format(int64_t t, char out[SC_TS_LEN])
{
	struct tm tm;

	sc_gmtime(t, &tm);
	strftime(out, SC_TS_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Strict parse of "YYYY-MM-DDTHH:MM:SSZ"; anything else is -1. */
int
sc_ts_parse(const char *s, int64_t *t)
{
	struct tm tm;
	const char *end;
	time_t tt;

	if (s == NULL || strlen(s) != SC_TS_LEN - 1)
		return -1;
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return -1;
	tt = timegm(&tm);
	if (tt == (time_t)-1)
		return -1;
	*t = (int64_t)tt;
	return 0;
}

void
sc_hour_bucket(int64_t t, char out[14])
{
	struct tm tm;

	sc_gmtime(t, &tm);
	strftime(out, 14, "%Y-%m-%dT%H", &tm);
}

void
sc_date(int64_t t, char out[11])
{
	struct tm tm;

	sc_gmtime(t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

size_t
sc_fmt_i64(int64_t v, char out[21])
{
	char tmp[20];
	/* via the unsigned magnitude, so INT64_MIN has one too */
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		out[len++] = '-';
	while (n > 0)
		out[len++] = tmp[--n];
	out[len] = '\0';
	return len;
}

size_t
sc_fmt_hex(uint64_t v, int width, char out[17])
{
	static const char digits[] = "0123456789abcdef";
	int n = v != 0 ? (67 - __builtin_clzll(v)) / 4 : 1, i;	/* its hex digits */

	if (n < width)
		n = width > 16 ? 16 : width;
	for (i = n - 1; i >= 0; i--) {
		out[i] = digits[v & 0xf];
		v >>= 4;
	}
	out[n] = '\0';
	return (size_t)n;
}

void
sc_text_init(struct sc_text *t, char *buf, size_t cap)
{
	t->data = buf;
	t->len = 0;
	t->cap = cap;
	t->overflow = false;
	if (cap > 0)
		buf[0] = '\0';
}

void
sc_text_i64(struct sc_text *t, int64_t v)
{
	char num[21];

	sc_text_addn(t, num, sc_fmt_i64(v, num));
}

/* Fill buf from the kernel's random source; no entropy at all is fatal. */
static void
sc_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	ssize_t r;

	while (n > 0) {
		r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "getrandom: %s\n", strerror(errno));
			abort();
		}
		p += r;
		n -= (size_t)r;
	}
}

void
sc_uuid(char out[37])
{
	unsigned char b[16];

	sc_random(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);	/* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
	    b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Make room for n more bytes plus the NUL; -1 when that would pass the cap. */
static int
sc_buf_reserve(struct sc_buf *b, size_t n)
{
	size_t want, na;

	if (n > b->cap || b->len > b->cap - n)
		return -1;
	want = b->len + n + 1;
	if (want <= b->alloc)
		return 0;
	/* A cap this small is about what the buffer is meant to hold: all of
	 * it at the first growth, not 256 bytes and doubling. */
	na = b->alloc ? b->alloc : b->cap < SC_BUF_WHOLE_CAP ? b->cap + 1 : 256;
	while (na < want)
		na = na > SIZE_MAX / 2 ? want : na * 2;
	if (na > b->cap + 1)
		na = b->cap + 1;
	b->data = sc_xrealloc(b->data, na);
	b->alloc = na;
	return 0;
}

int
sc_buf_append_grow(struct sc_buf *b, const void *p, size_t n)
{
	if (sc_buf_reserve(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

char *
sc_buf_extend(struct sc_buf *b, size_t n)
{
	char *at;

	if (sc_buf_reserve(b, n) == -1)
		return NULL;
	at = b->data + b->len;
	b->len += n;
	b->data[b->len] = '\0';
	return at;
}

int
sc_buf_printf(struct sc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sc_buf_reserve(b, (size_t)n) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
sc_buf_consume(struct sc_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->data != NULL)
			b->data[0] = '\0';
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void
sc_buf_fit(struct sc_buf *b)
{
	if (b->len == 0) {
		sc_buf_free(b);
		return;
	}
	if (b->alloc > b->len + 1) {
		b->data = sc_xrealloc(b->data, b->len + 1);
		b->alloc = b->len + 1;
	}
}

const char *
sc_memfind(const char *hay, size_t n, const char *needle, size_t nl, size_t rare)
{
	const char *p, *last;

	if (nl == 0 || nl > n || rare >= nl)
		return nl == 0 ? hay : NULL;
	p = hay + rare;
	last = hay + (n - nl) + rare;	/* where needle[rare] sits in the last start */
	while (p <= last && (p = memchr(p, (unsigned char)needle[rare], (size_t)(last - p) + 1)) != NULL) {
		if (memcmp(p - rare, needle, nl) == 0)
			return p - rare;
		p++;
	}
	return NULL;
}

void
sc_buf_presize(struct sc_buf *b, size_t n)
{
	if (b->data != NULL || n > b->cap)
		return;
	b->data = sc_xmalloc(n + 1);
	b->alloc = n + 1;
	b->data[0] = '\0';
}

void *
sc_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return p;
}

void *
sc_xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);

	if (p == NULL) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return p;
}

void *
sc_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return q;
}

char *
sc_xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");

	if (p == NULL) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return p;
}

void
sc_fmt_double(double v, char *out, size_t outlen)
{
	int prec;

	if (v == 0)
		v = 0;	/* -0 prints as "0" */
	for (prec = 1; prec <= 17; prec++) {
		snprintf(out, outlen, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			break;
	}
}

size_t
sc_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c, min;
	size_t len, i;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

long
sc_utf8_check(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t cp;
	size_t i = 0, len;

	while (i < n) {
		if (u[i] == 0)
			return (long)i;
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((len = sc_utf8_next(u + i, n - i, &cp)) == 0)
			return (long)i;
		i += len;
	}
	return -1;
}

bool
sc_utf8_valid(const char *s, size_t n)
{
	return sc_utf8_check(s, n) == -1;
}

void
sc_utf8_scrub(char *s)
{
	unsigned char *u = (unsigned char *)s;
	size_t n = strlen(s), i = 0, len;
	uint32_t cp;

	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((len = sc_utf8_next(u + i, n - i, &cp)) == 0) {
			u[i++] = '?';
			continue;
		}
		i += len;
	}
}
