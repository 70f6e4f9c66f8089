/*
 * Small helpers shared by every program: error reporting, UTC time strings,
 * a growable buffer with a hard cap, and random identifiers.
 */
#ifndef SC_UTIL_H
#define SC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An error for the caller to show: a message, and where known the field
 * (admin API "field", YAML key) and the input line (YAML import). */
struct sc_err {
	char msg[256];
	char field[64];
	int  line;		/* 1-based input line, 0 when not applicable */
};

/* Fill *e (if e is not NULL); returns -1 so callers can `return sc_err_set(...)`. */
int sc_err_set(struct sc_err *e, const char *field, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sc_err_clear(struct sc_err *e);

/* Monotonic clock in milliseconds (for scheduling), and wall clock. Inline:
 * a request reads the clock a dozen times. */
static inline int64_t
sc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
sc_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* UTC text forms: "YYYY-MM-DDTHH:MM:SSZ" (21 bytes with NUL), hour bucket
 * "YYYY-MM-DDTHH" (14), date "YYYY-MM-DD" (11). t is Unix seconds. */
#define SC_TS_LEN 21
void sc_ts_format(int64_t t, char out[SC_TS_LEN]);
int  sc_ts_parse(const char *s, int64_t *t);	/* 0 or -1 */
void sc_hour_bucket(int64_t t, char out[14]);
void sc_date(int64_t t, char out[11]);

/* The shortest %g text of a finite v that reads back as the same double
 * ("0.5", "1e-05", "0", never "-0"): valid JSON and YAML, and the canonical
 * form every writer stores. */
void sc_fmt_double(double v, char *out, size_t outlen);

/* UTF-8 (RFC 3629). sc_utf8_next: the length (1-4) of the well-formed
 * character at s[0..n), with its code point in *cp; 0 when the bytes there are
 * not one (stray continuation, overlong form, surrogate, past U+10FFFF,
 * truncated). sc_utf8_valid: s[0..n) is well-formed UTF-8 without NUL, the
 * rule for every text field the programs store. */
size_t sc_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
bool   sc_utf8_valid(const char *s, size_t n);
/* Offset of the first byte of s[0..n) that is not well-formed UTF-8 (NUL
 * included), or -1 when it all is. */
long   sc_utf8_check(const char *s, size_t n);
/* Replace, in place, every byte of the NUL-terminated s that is not part of
 * a well-formed character by '?': for text from outside (upstream bodies,
 * echoed input) about to go into JSON, a log line or the database. */
void   sc_utf8_scrub(char *s);

/* Random UUID v4 as 36 characters + NUL, from the OS random source. */
void sc_uuid(char out[37]);

/* Text without printf, for the request path (snprintf costs about a
 * thousand instructions a call there). sc_strlcpy: BSD strlcpy, i.e.
 * snprintf(dst, size, "%s", src) — copies what fits, always terminates
 * (size > 0), returns strlen(src). sc_fmt_i64 / sc_fmt_hex: the decimal
 * form of v (at most 20 characters + NUL) and the lower-case hex form of v
 * zero-padded to at least width digits (width <= 16, 16 + NUL at most);
 * both return the length written. */
static inline size_t
sc_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t k = n < size - 1 ? n : size - 1;
		memcpy(dst, src, k);
		dst[k] = '\0';
	}
	return n;
}
size_t sc_fmt_i64(int64_t v, char out[21]);
size_t sc_fmt_hex(uint64_t v, int width, char out[17]);

/* Text assembled piece by piece into the caller's array, without printf:
 * data stays NUL-terminated with len < cap; a piece that does not fit whole
 * is dropped and sets overflow (the caller decides what that means). */
struct sc_text {
	char   *data;	/* the caller's array of cap bytes */
	size_t  len;
	size_t  cap;
	bool    overflow;
};
void sc_text_init(struct sc_text *t, char *buf, size_t cap);
void sc_text_i64(struct sc_text *t, int64_t v);

/* Inline: most pieces are literals, whose length and copy the compiler
 * then works out at the call site (no strlen, no memcpy call). */
static inline void
sc_text_addn(struct sc_text *t, const char *s, size_t n)
{
	if (t->len + n >= t->cap) {
		t->overflow = true;
		return;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

static inline void
sc_text_add(struct sc_text *t, const char *s)
{
	sc_text_addn(t, s, strlen(s));
}

/* A byte buffer that refuses to grow past its cap (curl's dynbuf idea).
 * One whose cap is under SC_BUF_WHOLE_CAP gets all of it at its first
 * growth; a bigger one starts at 256 bytes and doubles. */
#define SC_BUF_WHOLE_CAP 4096
struct sc_buf {
	char   *data;	/* owned; always NUL-terminated when len > 0 */
	size_t  len;
	size_t  alloc;
	size_t  cap;	/* hard limit on len, set at init */
};
/* init, reset and free are inline: a request sets up and frees a dozen
 * buffers, most of them never used. */
static inline void
sc_buf_init(struct sc_buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}
/* 0, or -1 past cap. Inline while the bytes fit what is allocated (most
 * appends: buffers are sized once); sc_buf_append_grow does the rest. */
int  sc_buf_append_grow(struct sc_buf *b, const void *p, size_t n);
static inline int
sc_buf_append(struct sc_buf *b, const void *p, size_t n)
{
	if (n == 0 || n > b->cap - b->len || b->len + n >= b->alloc)
		return sc_buf_append_grow(b, p, n);	/* (p may be NULL when n is 0) */
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}
/* n more bytes at the end for the caller to fill (a line built of several
 * pieces: one growth check, not one per piece), NUL-terminated after them;
 * NULL past cap (b unchanged). */
char *sc_buf_extend(struct sc_buf *b, size_t n);
int  sc_buf_printf(struct sc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sc_buf_consume(struct sc_buf *b, size_t n);	/* drop n bytes from the front */
static inline void
sc_buf_reset(struct sc_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}
static inline void
sc_buf_free(struct sc_buf *b)
{
	if (b->data != NULL)
		free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}
/* Shrink the allocation to the contents (a buffer that will not grow and is
 * kept a long time); an empty buffer is freed. */
void sc_buf_fit(struct sc_buf *b);
/* Give a buffer without storage room for n bytes (plus the NUL) at once:
 * what it will hold when the caller knows, instead of growing by doubling.
 * No-op when b already has storage or n is past its cap. */
void sc_buf_presize(struct sc_buf *b, size_t n);

/* The first occurrence of needle (nl bytes) in hay (n bytes), or NULL: memchr
 * on needle[rare], a byte chosen to be rare in the text searched, then one
 * memcmp per candidate. For the short needles of the per-event SSE checks
 * this costs a fraction of memmem's set-up and hashing. rare < nl. */
const char *sc_memfind(const char *hay, size_t n, const char *needle, size_t nl, size_t rare);

/* Allocation that aborts on out-of-memory, the one failure we do not survive. */
void *sc_xmalloc(size_t n);
void *sc_xcalloc(size_t n, size_t m);
void *sc_xrealloc(void *p, size_t n);
char *sc_xstrdup(const char *s);

#endif
