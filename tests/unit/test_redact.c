/*
 * Unit tests for common/redact.c: the provider's key is masked whole, without
 * its prefix, and as any piece of 8 or more characters wherever it stands;
 * key-like tokens of other keys too; 7-character pieces and ordinary words
 * are left alone; redact_str stays within its buffer, ends on a character
 * boundary and leaves valid UTF-8; long texts cost linear time.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redact.h"

#define KEY "nvapi-TEST-0007-ggggHIJKLMNOPqrs"

/* redact_text into a fresh buffer; the result is static. */
static const char *
red(const char *s, const char *key, int *n)
{
	static char out[4096];
	struct sc_buf b;

	sc_buf_init(&b, sizeof(out) - 1);
	*n = redact_text(s, strlen(s), key, &b);
	snprintf(out, sizeof(out), "%s", b.len ? b.data : "");
	sc_buf_free(&b);
	return out;
}

static void
test_key_pieces(void **state)
{
	static const struct { const char *in, *out; int n; } cases[] = {
		{ "whole " KEY " here", "whole [REDACTED] here", 1 },
		{ "no prefix TEST-0007-ggggHIJKLMNOPqrs.", "no prefix [REDACTED].", 1 },
		{ "glued token=" KEY "&x=1", "glued token=[REDACTED]&x=1", 1 },
		{ "start TEST-0007-, end NOPqrs!", "start TEST-0007-, end NOPqrs!", 0 },	/* 7+ but "TEST-0007-" is 10: see next */
		{ "middle 0007-gggg!", "middle [REDACTED]!", 1 },
		{ "eight HIJKLMNO|", "eight [REDACTED]|", 1 },
		{ "seven HIJKLMN|", "seven HIJKLMN|", 0 },
		{ "twice TEST-0007-ggggHIJKLMNOPqrsTEST-0007-ggggHIJKLMNOPqrs", "twice [REDACTED][REDACTED]", 2 },
		{ "unrelated words only", "unrelated words only", 0 },
		{ "other keys nvapi-abcdefgh and sk-abcdefghijklmnopqrstu and Bearer abc.def-ghi",
		  "other keys [REDACTED] and [REDACTED] and Bearer [REDACTED]", 3 },
		{ "task-123 disk-usage bearer nvapi- risk-free", "task-123 disk-usage bearer nvapi- risk-free", 0 },
	};
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = red(cases[i].in, KEY, &n);
		/* case 3: "TEST-0007-" is a 10-character piece of the key */
		if (i == 3) {
			assert_int_equal(n, 1);
			assert_string_equal(got, "start [REDACTED], end NOPqrs!");
			assert_true(redact_needed(cases[i].in, strlen(cases[i].in), KEY));
			continue;
		}
		if (strcmp(got, cases[i].out) != 0 || n != cases[i].n)
			fail_msg("case %zu: \"%s\" (%d), want \"%s\" (%d)", i, got, n, cases[i].out, cases[i].n);
		assert_int_equal(redact_needed(cases[i].in, strlen(cases[i].in), KEY), cases[i].n > 0);
	}
	/* Without a key only key-like tokens go. */
	assert_string_equal(red("secret TEST-0007-ggggHIJKLMNOPqrs", NULL, &n), "secret TEST-0007-ggggHIJKLMNOPqrs");
	assert_int_equal(n, 0);
	/* A key shorter than a piece is matched by the token rules only. */
	assert_string_equal(red("short abcdefg", "abcdefg", &n), "short abcdefg");
}

static void
test_redact_str(void **state)
{
	char s[64];

	(void)state;
	snprintf(s, sizeof(s), "k=%s", "TEST-0007-gggg");
	redact_str(s, sizeof(s), KEY);
	assert_string_equal(s, "k=[REDACTED]");
	/* Growing past the buffer: cut, never on a partial character. */
	snprintf(s, sizeof(s), "é HIJKLMNO é HIJKLMNO é HIJKLMNO éé");
	redact_str(s, 30, KEY);
	assert_true(strlen(s) < 30);
	assert_true(sc_utf8_valid(s, strlen(s)));
	assert_null(strstr(s, "HIJKLMNO"));
	/* Bytes that are not UTF-8 are scrubbed even when nothing is masked. */
	snprintf(s, sizeof(s), "bad \xff byte");
	redact_str(s, sizeof(s), KEY);
	assert_string_equal(s, "bad ? byte");
}

/* A text made of the key's own characters over and over: still fast. */
static void
test_linear(void **state)
{
	const size_t len = 1 << 18;
	char *big = malloc(len + 1), key[257];
	struct sc_buf b;
	int n;

	(void)state;
	memset(key, 'a', 256);
	key[256] = '\0';
	memset(big, 'a', len);
	for (size_t i = 0; i < len; i += 100)
		big[i] = 'b';
	big[len] = '\0';
	sc_buf_init(&b, len * 2);
	n = redact_text(big, len, key, &b);
	assert_true(n > 0);
	assert_null(memmem(b.data, b.len, "aaaaaaaa", 8));
	sc_buf_free(&b);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_pieces),
		cmocka_unit_test(test_redact_str),
		cmocka_unit_test(test_linear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
