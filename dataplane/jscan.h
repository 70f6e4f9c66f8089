/*
 * A small, strict, allocation-free JSON scanner for the hot path: it checks
 * the syntax of a whole document (RFC 8259: strings with their escapes and
 * UTF-8, numbers, literals, nesting) and returns where chosen members of the
 * top-level object are, without building a tree.
 *
 * It is deliberately stricter than json-c: whatever it accepts, json-c
 * (strict mode, UTF-8 checked) accepts too and reads the same values, but it
 * refuses some valid documents it does not want to reason about (nesting
 * deeper than JSCAN_MAX_DEPTH, integers of more than 18 digits, exponents
 * past ±250, escaped top-level keys, a wanted key twice, lone surrogate
 * escapes, whitespace other than the four of RFC 8259). A caller treats a
 * refusal as "ask json-c", which decides and words the error; so the scanner
 * only ever makes the common case faster. tests/fuzz/fuzz_shape.c compares
 * the two on every input.
 *
 * Use:
 *   struct jscan_member m[2] = { JSCAN_WANT("model"), JSCAN_WANT("stream") };
 *   if (jscan_object(buf, len, m, 2) == 0)
 *       m[0].val .. m[0].val + m[0].val_len is the model value's text (quotes
 *       included when a string), NULL when absent.
 */
#ifndef SC_JSCAN_H
#define SC_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 32	/* deeper documents are refused (json-c decides) */
#define JSCAN_MAX_WANT  8	/* members one call can ask for */

struct jscan_member {
	const char *key;	/* in: the member name wanted (plain ASCII) */
	const char *val;	/* out: its value's first byte, NULL when absent */
	size_t      val_len;	/* out: the value's length in bytes */
	size_t      key_len;	/* in: strlen(key), or 0 to have it counted per call */
};
/* A wanted member with its key's length known: { JSCAN_WANT("model"), ... } */
#define JSCAN_WANT(k) { (k), NULL, 0, sizeof(k) - 1 }

/* What a value is, from its first byte. */
enum jscan_type {
	JSCAN_NONE, JSCAN_OBJECT, JSCAN_ARRAY, JSCAN_STRING, JSCAN_NUMBER,
	JSCAN_TRUE, JSCAN_FALSE, JSCAN_NULL,
};

/* Check that buf[0..len) is exactly one JSON object (surrounding whitespace
 * allowed) and fill in the members named in want[0..n), n at most
 * JSCAN_MAX_WANT. 0, or -1 when refused (invalid, one of the cases above, or
 * n too large). */
int jscan_object(const char *buf, size_t len, struct jscan_member *want, size_t n);

/* The same, and when the value of want member *in (one of want[0..n)) is an
 * object, fill in the members of that object named in sub[0..nsub) (nsub at
 * most JSCAN_MAX_WANT) in the same pass; sub's members stay absent when *in
 * is absent or not an object. Escaped keys in that object are refused too. */
int jscan_object_in(const char *buf, size_t len, struct jscan_member *want, size_t n,
    const struct jscan_member *in, struct jscan_member *sub, size_t nsub);

/* The type of a value found by jscan_object (JSCAN_NONE for NULL). */
static inline enum jscan_type
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

/* An integer value's number (no fraction, no exponent): 0 with *out, or -1. */
int jscan_int64(const char *val, size_t len, int64_t *out);

/* A string value (quotes included) without escapes: 0 with [*s, *s + *n)
 * the text between the quotes, -1 when it holds a backslash or is not a string. */
int jscan_plain_string(const char *val, size_t len, const char **s, size_t *n);

/* How many of s[0..n)'s first bytes a JSON string holds as they are: the
 * length of the prefix without '"', '\\', control or non-ASCII bytes (n when
 * s can go between quotes unchanged). */
size_t jscan_plain_len(const char *s, size_t n);

#endif
