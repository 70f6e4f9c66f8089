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

#ifdef __SSE2__
/* The bytes of v that need a closer look, as 0xff: v ^ 2 maps '"' (0x22) to
 * 0x20 and the control bytes among themselves, so one signed "< 0x21" finds
 * '"', the control bytes and (being negative) the bytes >= 0x80; a second
 * compare finds '\\'. */
static inline __m128i
jscan_stops(__m128i v)
{
	return _mm_or_si128(_mm_cmplt_epi8(_mm_xor_si128(v, _mm_set1_epi8(2)), _mm_set1_epi8(0x21)),
	    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
}

static inline __m128i
jscan_load(const char *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}
#endif

/* p inside a string: the first byte at or after p that needs a closer look
 * ('"', '\\', a control byte or a non-ASCII byte), or e; [lo, e) is
 * readable (lo <= p). With SSE2 (every x86-64) 64 bytes a round, then
 * sixteen at a time, and the last few bytes in the sixteen that end at e
 * when those are in the buffer: string text is most of a body. */
static const char *
jscan_plain_run(const char *lo, const char *p, const char *e)
{
#ifdef __SSE2__
	unsigned mask;

	while (e - p >= 64) {
		__m128i m = _mm_or_si128(_mm_or_si128(jscan_stops(jscan_load(p)), jscan_stops(jscan_load(p + 16))),
		    _mm_or_si128(jscan_stops(jscan_load(p + 32)), jscan_stops(jscan_load(p + 48))));

		if (_mm_movemask_epi8(m) != 0)
			break;	/* found again below, sixteen at a time */
		p += 64;
	}
	while (e - p >= 16) {
		if ((mask = (unsigned)_mm_movemask_epi8(jscan_stops(jscan_load(p)))) != 0)
			return p + __builtin_ctz(mask);
		p += 16;
	}
	if (p < e && e - lo >= 16) {
		/* the window's bytes before p are shifted out */
		mask = (unsigned)_mm_movemask_epi8(jscan_stops(jscan_load(e - 16))) >> (16 - (e - p));
		return mask != 0 ? p + __builtin_ctz(mask) : e;
	}
#else
	(void)lo;
#endif
	while (p < e) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
			return p;
		p++;
	}
	return e;
}

static inline int
jscan_is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* The four whitespace bytes of RFC 8259. No bound: jscan_object only calls
 * it where a non-whitespace byte (the document's final '}') is still ahead.
 * The first test passes over the usual case, a token right after the last,
 * in one compare. */
static inline const char *
jscan_ws(const char *p)
{
	while ((unsigned char)*p <= ' ' && jscan_is_ws(*p))
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
 * stopped at ([lo, e) readable): the byte after the closing quote, or NULL.
 * Escapes and non-ASCII text come here; *esc is set when the string holds
 * an escape. */
static const char *
jscan_string_rest(const char *lo, const char *p, const char *e, int *esc)
{
	for (;;) {
		unsigned char c;
		unsigned cp, low;

		if ((p = jscan_plain_run(lo, p, e)) == e)
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
				    jscan_hex4(p + 2, e, &low) == -1 || low < 0xdc00 || low > 0xdfff)
					return NULL;
				p += 6;
			}
			break;
		default:
			return NULL;
		}
	}
}

/* p at a '"' ([lo, e) readable): the byte after the closing quote, or NULL.
 * *esc is set when the string holds an escape. Most strings (keys, roles, ids) are plain
 * ASCII and shorter than sixteen bytes: one SSE2 compare here finds their
 * end without a call. */
static inline const char *
jscan_string(const char *lo, const char *p, const char *e, int *esc)
{
	p++;
#ifdef __SSE2__
	if (e - p >= 16) {
		int mask = _mm_movemask_epi8(jscan_stops(jscan_load(p)));

		if (mask == 0)
			return jscan_string_rest(lo, p + 16, e, esc);
		p += __builtin_ctz((unsigned)mask);
		if (*p == '"')
			return p + 1;
	}
#endif
	return jscan_string_rest(lo, p, e, esc);
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

/* n bytes of a and b equal (keys are short: no call, a word or two). */
static inline int
jscan_key_eq(const char *a, const char *b, size_t n)
{
	uint64_t x, y, x2, y2;
	uint32_t u, v, u2, v2;

	if (n >= 8) {
		if (n > 16)
			return memcmp(a, b, n) == 0;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		memcpy(&x2, a + n - 8, 8);
		memcpy(&y2, b + n - 8, 8);
		return ((x ^ y) | (x2 ^ y2)) == 0;
	}
	if (n >= 4) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		memcpy(&u2, a + n - 4, 4);
		memcpy(&v2, b + n - 4, 4);
		return ((u ^ v) | (u2 ^ v2)) == 0;
	}
	while (n > 0 && *a == *b)
		n--, a++, b++;
	return n == 0;
}

/* The wanted keys of one level: the members, their key lengths, and those
 * lengths as a bit set (bit l: some key is l bytes; longer keys set bit 63),
 * which passes over most keys of a document in one test. */
struct jscan_want {
	struct jscan_member *m;
	size_t               n;
	size_t               len[JSCAN_MAX_WANT];
	uint64_t             lens;
};

/* The member of w named k[0..klen), or NULL. */
static inline struct jscan_member *
jscan_wanted(const struct jscan_want *w, const char *k, size_t klen)
{
	size_t i;

	if ((w->lens & ((uint64_t)1 << (klen < 63 ? klen : 63))) == 0)
		return NULL;
	for (i = 0; i < w->n; i++)
		if (w->len[i] == klen && jscan_key_eq(w->m[i].key, k, klen))
			return &w->m[i];
	return NULL;
}

/*
 * One pass over the document without recursion: depth is the level of the
 * innermost open container (the top-level object is level 1), bit d of
 * arrays tells whether level d is an array, in_array whether level depth
 * is. Four places in the loop: key (p at a member's name), value (p at a
 * value's first byte), after (a value ended at p: a ',' or its container's
 * end follows) and close (p at a container's end). Whitespace is skipped
 * only where the byte expected is not there. A top-level member that is
 * wanted is recorded when its value ends back at level 1; a member of in's
 * object (level 2) likewise when its value ends back at level 2.
 *
 * Bounds: e is first moved back over trailing whitespace, and the byte
 * before it must be '}'. Every token (string, number, literal) is scanned
 * with its own bound and cannot end past that '}', and ':', ',', '{', '['
 * are never that byte, so p can only reach e by stepping past a closer:
 * close checks it there, and nowhere else needs a bound.
 */
int
jscan_object(const char *buf, size_t len, struct jscan_member *want, size_t n)
{
	return jscan_object_in(buf, len, want, n, NULL, NULL, 0);
}

/* Set members[0..n) to absent and describe them in w; -1 when n is too
 * large. */
static inline int
jscan_want_init(struct jscan_member *want, size_t n, struct jscan_want *w)
{
	size_t i, l;

	if (n > JSCAN_MAX_WANT)
		return -1;
	w->m = want;
	w->n = n;
	w->lens = 0;
	for (i = 0; i < n; i++) {
		want[i].val = NULL;
		want[i].val_len = 0;
		l = want[i].key_len != 0 ? want[i].key_len : strlen(want[i].key);
		w->len[i] = l;
		w->lens |= (uint64_t)1 << (l < 63 ? l : 63);
	}
	return 0;
}

int
jscan_object_in(const char *buf, size_t len, struct jscan_member *want, size_t n,
    const struct jscan_member *in, struct jscan_member *sub, size_t nsub)
{
	const char *e = buf + len, *p, *k, *v = NULL, *v2 = NULL;
	struct jscan_member *cur = NULL;	/* the wanted top-level member being read */
	struct jscan_member *scur = NULL;	/* the wanted member of in's object being read */
	uint64_t arrays = 0;
	int depth = 1, in_array = 0, esc = 0;
	struct jscan_want top, in_obj;

	if (jscan_want_init(want, n, &top) == -1 || jscan_want_init(sub, nsub, &in_obj) == -1)
		return -1;
	while (e > buf && jscan_is_ws(e[-1]))
		e--;
	if (e == buf || e[-1] != '}')
		return -1;
	p = jscan_ws(buf);
	if (*p != '{')
		return -1;
	p = jscan_ws(p + 1);
	if (*p == '}')
		goto close;
key:
	if (*p != '"') {
		p = jscan_ws(p);
		if (*p != '"')
			return -1;
	}
	k = p + 1;
	esc = 0;
	if ((p = jscan_string(buf, p, e, &esc)) == NULL)
		return -1;
	if (depth == 1 ? want != NULL : depth == 2 && cur != NULL && cur == in) {
		struct jscan_member *w;

		if (esc)
			return -1;	/* an escaped key could spell a wanted one */
		w = jscan_wanted(depth == 1 ? &top : &in_obj, k, (size_t)(p - 1 - k));
		if (w != NULL && w->val != NULL)
			return -1;	/* twice: json-c keeps the last, let it decide */
		if (depth == 1)
			cur = w;
		else
			scur = w;
	}
	if (*p != ':') {
		p = jscan_ws(p);
		if (*p != ':')
			return -1;
	}
	p++;
value:
	if (depth == 1)
		v = p;
	else if (depth == 2)
		v2 = p;
	switch (*p) {
	case ' ': case '\t': case '\n': case '\r':
		p = jscan_ws(p);
		goto value;
	case '{':
	case '[':
		if (depth >= JSCAN_MAX_DEPTH)
			return -1;
		depth++;
		in_array = *p == '[';
		arrays |= (uint64_t)in_array << depth;
		p = jscan_ws(p + 1);
		if (*p == (in_array ? ']' : '}'))
			goto close;
		if (in_array)
			goto value;
		goto key;
	case '"':
		p = jscan_string(buf, p, e, &esc);
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
	if (cur != NULL && depth == 1) {
		cur->val = v;
		cur->val_len = (size_t)(p - v);
		cur = NULL;
	} else if (scur != NULL && depth == 2) {
		scur->val = v2;
		scur->val_len = (size_t)(p - v2);
		scur = NULL;
	}
	switch (*p) {
	case ',':
		p++;
		if (in_array)
			goto value;
		goto key;
	case '}':
	case ']':
		if (*p != (in_array ? ']' : '}'))
			return -1;
		goto close;
	case ' ': case '\t': case '\n': case '\r':
		p = jscan_ws(p);
		goto after;
	default:
		return -1;
	}
close:
	p++;
	arrays &= ~((uint64_t)1 << depth);
	if (--depth == 0)
		return p == e ? 0 : -1;	/* [p, e) would end in '}': not whitespace */
	if (p == e)
		return -1;
	in_array = (int)(arrays >> depth) & 1;
	goto after;
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

size_t
jscan_plain_len(const char *s, size_t n)
{
	return (size_t)(jscan_plain_run(s, s, s + n) - s);
}
