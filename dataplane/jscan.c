/*
 * Strict, allocation-free JSON syntax scanner (see jscan.h for the contract:
 * it accepts a subset of what json-c accepts, and reads the same values).
 * Recursive descent over the buffer, depth bounded by JSCAN_MAX_DEPTH, so the
 * stack stays small whatever the input. Nothing is decoded: callers get the
 * spans of the top-level members they asked for.
 */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "jscan.h"

/* p inside a string: the first byte at or after p that needs a closer look
 * ('"', '\\', a control byte or a non-ASCII byte), or e. Sixteen bytes at a
 * time where SSE2 is there (every x86-64): string text is most of a body. */
static const char *
jscan_plain_run(const char *p, const char *e)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);

	while (e - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* signed compare: bytes >= 0x80 are negative, so "< 0x20" catches them too */
		__m128i m = _mm_or_si128(_mm_cmplt_epi8(v, space),
		    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
		int mask = _mm_movemask_epi8(m);

		if (mask != 0)
			return p + __builtin_ctz((unsigned)mask);
		p += 16;
	}
#endif
	while (p < e) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
			return p;
		p++;
	}
	return e;
}

static const char *
jscan_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static int
jscan_hex4(const char *p, const char *e, unsigned *cp)
{
	unsigned v = 0;
	int i;

	if (e - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*cp = v;
	return 0;
}

/* p at a byte >= 0x80: the byte after one well-formed UTF-8 sequence
 * (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), or NULL. */
static const char *
jscan_utf8(const char *p, const char *e)
{
	const unsigned char *u = (const unsigned char *)p;
	unsigned char c = u[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 1;
	else if (c >= 0xe0 && c <= 0xef)
		n = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 3;
	else
		return NULL;
	if ((size_t)(e - p) <= n)
		return NULL;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (u[1] < lo || u[1] > hi)
		return NULL;
	for (i = 2; i <= n; i++)
		if (u[i] < 0x80 || u[i] > 0xbf)
			return NULL;
	return p + n + 1;
}

/* p at a '"': the byte after the closing quote, or NULL. *esc is set when
 * the string holds an escape. */
static const char *
jscan_string(const char *p, const char *e, int *esc)
{
	for (p++; p < e;) {
		unsigned char c;
		unsigned cp, lo;

		if ((p = jscan_plain_run(p, e)) == e)
			return NULL;
		c = (unsigned char)*p;
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c >= 0x80) {
			if ((p = jscan_utf8(p, e)) == NULL)
				return NULL;
			continue;
		}
		/* a backslash */
		*esc = 1;
		if (++p >= e)
			return NULL;
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p++;
			break;
		case 'u':
			if (jscan_hex4(p + 1, e, &cp) == -1 || cp == 0)
				return NULL;
			p += 5;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return NULL;	/* a lone low surrogate */
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (e - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    jscan_hex4(p + 2, e, &lo) == -1 || lo < 0xdc00 || lo > 0xdfff)
					return NULL;
				p += 6;
			}
			break;
		default:
			return NULL;
		}
	}
	return NULL;
}

/* p at '-' or a digit: the byte after the number, or NULL (also for the
 * forms refused on purpose: long integers, large exponents, long text). */
static const char *
jscan_number(const char *p, const char *e)
{
	const char *s = p, *d;
	int ex = 0;

	if (*p == '-')
		p++;
	if (p >= e)
		return NULL;
	d = p;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (p - d > 18)
		return NULL;
	if (p < e && *p == '.') {
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return NULL;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || *p < '0' || *p > '9')
			return NULL;
		while (p < e && *p >= '0' && *p <= '9') {
			ex = ex * 10 + (*p - '0');
			if (ex > 250)
				return NULL;
			p++;
		}
	}
	if (p - s > 40)
		return NULL;
	return p;
}

static const char *jscan_value(const char *p, const char *e, int depth);

/* p at '{' (depth: this object's level): the byte after its '}', or NULL.
 * When want is set, record the members named there. */
static const char *
jscan_members(const char *p, const char *e, int depth, struct jscan_member *want, size_t n)
{
	if (depth > JSCAN_MAX_DEPTH)
		return NULL;
	p = jscan_ws(p + 1, e);
	if (p < e && *p == '}')
		return p + 1;
	for (;;) {
		const char *k, *v;
		size_t klen, i;
		int esc = 0;

		if (p >= e || *p != '"')
			return NULL;
		k = p + 1;
		if ((p = jscan_string(p, e, &esc)) == NULL)
			return NULL;
		klen = (size_t)(p - 1 - k);
		p = jscan_ws(p, e);
		if (p >= e || *p != ':')
			return NULL;
		v = jscan_ws(p + 1, e);
		if ((p = jscan_value(v, e, depth)) == NULL)
			return NULL;
		if (want != NULL) {
			if (esc)
				return NULL;	/* an escaped key could spell a wanted one */
			for (i = 0; i < n; i++) {
				if (strlen(want[i].key) != klen || memcmp(want[i].key, k, klen) != 0)
					continue;
				if (want[i].val != NULL)
					return NULL;	/* twice: json-c keeps the last, let it decide */
				want[i].val = v;
				want[i].val_len = (size_t)(p - v);
			}
		}
		p = jscan_ws(p, e);
		if (p >= e)
			return NULL;
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = jscan_ws(p + 1, e);
	}
}

static const char *
jscan_elements(const char *p, const char *e, int depth)
{
	if (depth > JSCAN_MAX_DEPTH)
		return NULL;
	p = jscan_ws(p + 1, e);
	if (p < e && *p == ']')
		return p + 1;
	for (;;) {
		if ((p = jscan_value(p, e, depth)) == NULL)
			return NULL;
		p = jscan_ws(p, e);
		if (p >= e)
			return NULL;
		if (*p == ']')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = jscan_ws(p + 1, e);
	}
}

static const char *
jscan_literal(const char *p, const char *e, const char *lit, size_t n)
{
	if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
		return NULL;
	return p + n;
}

/* p at a value inside a container of level depth: the byte after it, or NULL. */
static const char *
jscan_value(const char *p, const char *e, int depth)
{
	int esc = 0;

	if (p >= e)
		return NULL;
	switch (*p) {
	case '{':
		return jscan_members(p, e, depth + 1, NULL, 0);
	case '[':
		return jscan_elements(p, e, depth + 1);
	case '"':
		return jscan_string(p, e, &esc);
	case 't':
		return jscan_literal(p, e, "true", 4);
	case 'f':
		return jscan_literal(p, e, "false", 5);
	case 'n':
		return jscan_literal(p, e, "null", 4);
	default:
		if (*p == '-' || (*p >= '0' && *p <= '9'))
			return jscan_number(p, e);
		return NULL;
	}
}

int
jscan_object(const char *buf, size_t len, struct jscan_member *want, size_t n)
{
	const char *e = buf + len, *p;
	size_t i;

	for (i = 0; i < n; i++) {
		want[i].val = NULL;
		want[i].val_len = 0;
	}
	p = jscan_ws(buf, e);
	if (p >= e || *p != '{')
		return -1;
	if ((p = jscan_members(p, e, 1, want, n)) == NULL)
		return -1;
	return jscan_ws(p, e) == e ? 0 : -1;
}

enum jscan_type
jscan_type(const char *val)
{
	if (val == NULL)
		return JSCAN_NONE;
	switch (*val) {
	case '{': return JSCAN_OBJECT;
	case '[': return JSCAN_ARRAY;
	case '"': return JSCAN_STRING;
	case 't': return JSCAN_TRUE;
	case 'f': return JSCAN_FALSE;
	case 'n': return JSCAN_NULL;
	default:  return JSCAN_NUMBER;
	}
}

int
jscan_int64(const char *val, size_t len, int64_t *out)
{
	size_t i = 0;
	int64_t v = 0;
	int neg = 0;

	if (val == NULL || len == 0)
		return -1;
	if (val[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i >= len || len - i > 18)
		return -1;
	for (; i < len; i++) {
		if (val[i] < '0' || val[i] > '9')
			return -1;
		v = v * 10 + (val[i] - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

int
jscan_plain_string(const char *val, size_t len, const char **s, size_t *n)
{
	if (val == NULL || len < 2 || val[0] != '"' || val[len - 1] != '"' ||
	    memchr(val + 1, '\\', len - 2) != NULL)
		return -1;
	*s = val + 1;
	*n = len - 2;
	return 0;
}
