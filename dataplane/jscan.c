/*
 * Strict, allocation-free JSON syntax scanner (see jscan.h for the contract:
 * it accepts a subset of what json-c accepts, and reads the same values).
 * One loop over the buffer, without recursion (the open containers are a bit
 * stack, depth bounded by JSCAN_MAX_DEPTH) and without a call per value or per
 * whitespace run: a 1 KB body is scanned in about a thousand instructions.
 * Nothing is decoded: callers get the spans of the top-level members they
 * asked for.
 */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "jscan.h"

/* p inside a string: the first byte at or after p that needs a closer look
 * ('"', '\\', a control byte or a non-ASCII byte), or e. Sixteen bytes at a
 * time where SSE2 is there (every x86-64): string text is most of a body. */
static inline const char *
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

/* The four whitespace bytes of RFC 8259. The first test passes over the
 * usual case, a token right after the last, in one compare. */
static inline const char *
jscan_ws(const char *p, const char *e)
{
	while (p < e && (unsigned char)*p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
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

/* p just past a string's opening quote or at a byte jscan_plain_run
 * stopped at: the byte after the closing quote, or NULL. Escapes and
 * non-ASCII text come here; *esc is set when the string holds an escape. */
static const char *
jscan_string_rest(const char *p, const char *e, int *esc)
{
	for (;;) {
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
}

/* p at a '"': the byte after the closing quote, or NULL. *esc is set when
 * the string holds an escape. Plain ASCII text, what almost every string
 * is, ends in the first run. */
static inline const char *
jscan_string(const char *p, const char *e, int *esc)
{
	const char *q = jscan_plain_run(p + 1, e);

	if (q < e && *q == '"')
		return q + 1;
	return jscan_string_rest(q, e, esc);
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

/* p at a literal's first byte: the byte after lit[0..n), or NULL. */
static inline const char *
jscan_literal(const char *p, const char *e, const char *lit, size_t n)
{
	if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
		return NULL;
	return p + n;
}

/* The member of want[0..n) named k[0..klen), or NULL. k holds no NUL (the
 * scanner refuses control bytes in strings), so the compare stops at the
 * end of a shorter name by itself. */
static struct jscan_member *
jscan_wanted(struct jscan_member *want, size_t n, const char *k, size_t klen)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		const char *w = want[i].key;

		for (j = 0; j < klen && w[j] == k[j]; j++)
			;
		if (j == klen && w[j] == '\0')
			return &want[i];
	}
	return NULL;
}

/*
 * One pass over the document without recursion: depth is the level of the
 * innermost open container (the top-level object is level 1) and bit d of
 * arrays tells whether level d is an array. Three places in the loop:
 * key (p at a member's name), value (p at a value's first byte) and after
 * (a value ended at p: a ',' or its container's end follows). A top-level
 * member that is wanted is recorded when its value ends back at level 1.
 */
int
jscan_object(const char *buf, size_t len, struct jscan_member *want, size_t n)
{
	const char *e = buf + len, *p, *k, *v = NULL;
	struct jscan_member *cur = NULL;	/* the wanted top-level member being read */
	uint64_t arrays = 0;
	int depth = 1, esc = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		want[i].val = NULL;
		want[i].val_len = 0;
	}
	p = jscan_ws(buf, e);
	if (p >= e || *p != '{')
		return -1;
	p = jscan_ws(p + 1, e);
	if (p < e && *p == '}')
		return jscan_ws(p + 1, e) == e ? 0 : -1;
key:
	if (p >= e || *p != '"')
		return -1;
	k = p + 1;
	esc = 0;
	if ((p = jscan_string(p, e, &esc)) == NULL)
		return -1;
	if (depth == 1 && want != NULL) {
		if (esc)
			return -1;	/* an escaped key could spell a wanted one */
		cur = jscan_wanted(want, n, k, (size_t)(p - 1 - k));
		if (cur != NULL && cur->val != NULL)
			return -1;	/* twice: json-c keeps the last, let it decide */
	}
	p = jscan_ws(p, e);
	if (p >= e || *p != ':')
		return -1;
	p = jscan_ws(p + 1, e);
	if (depth == 1)
		v = p;
value:
	if (p >= e)
		return -1;
	switch (*p) {
	case '{':
		if (depth >= JSCAN_MAX_DEPTH)
			return -1;
		depth++;
		p = jscan_ws(p + 1, e);
		if (p < e && *p == '}') {
			p++;
			depth--;
			break;
		}
		goto key;
	case '[':
		if (depth >= JSCAN_MAX_DEPTH)
			return -1;
		depth++;
		arrays |= (uint64_t)1 << depth;
		p = jscan_ws(p + 1, e);
		if (p < e && *p == ']') {
			p++;
			arrays &= ~((uint64_t)1 << depth);
			depth--;
			break;
		}
		goto value;
	case '"':
		p = jscan_string(p, e, &esc);
		break;
	case 't':
		p = jscan_literal(p, e, "true", 4);
		break;
	case 'f':
		p = jscan_literal(p, e, "false", 5);
		break;
	case 'n':
		p = jscan_literal(p, e, "null", 4);
		break;
	default:
		if (*p != '-' && (*p < '0' || *p > '9'))
			return -1;
		p = jscan_number(p, e);
		break;
	}
	if (p == NULL)
		return -1;
after:
	if (depth == 1 && cur != NULL) {
		cur->val = v;
		cur->val_len = (size_t)(p - v);
		cur = NULL;
	}
	p = jscan_ws(p, e);
	if (p >= e)
		return -1;
	if (*p == ',') {
		p = jscan_ws(p + 1, e);
		if (arrays & ((uint64_t)1 << depth))
			goto value;
		goto key;
	}
	if (*p != (arrays & ((uint64_t)1 << depth) ? ']' : '}'))
		return -1;
	p++;
	arrays &= ~((uint64_t)1 << depth);
	if (--depth > 0)
		goto after;
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
