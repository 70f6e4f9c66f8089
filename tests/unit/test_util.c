#define _GNU_SOURCE	/* memmem, the reference for sc_memfind */
/*
 * Unit tests for common/util.c (error records, UTC time strings, UUIDs, the
 * capped buffer) and common/log.c (levels, line format, reopen).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "util.h"

static void
test_err(void **state)
{
	struct sc_err e;

	(void)state;
	sc_err_clear(&e);
	assert_int_equal(sc_err_set(&e, "rpm_limit", 12, "rpm_limit: must be %s", "positive"), -1);
	assert_string_equal(e.msg, "rpm_limit: must be positive");
	assert_string_equal(e.field, "rpm_limit");
	assert_int_equal(e.line, 12);
	sc_err_clear(&e);
	assert_string_equal(e.msg, "");
	assert_int_equal(e.line, 0);
	assert_int_equal(sc_err_set(NULL, NULL, 0, "x"), -1);
}

static void
test_time(void **state)
{
	char ts[SC_TS_LEN], hb[14], d[11];
	int64_t t = 0;

	(void)state;
	sc_ts_format(1764145000, ts);	/* 2025-11-26T08:16:40Z */
	assert_string_equal(ts, "2025-11-26T08:16:40Z");
	assert_int_equal(sc_ts_parse(ts, &t), 0);
	assert_int_equal(t, 1764145000);
	sc_hour_bucket(1764145000, hb);
	assert_string_equal(hb, "2025-11-26T08");
	sc_date(1764145000, d);
	assert_string_equal(d, "2025-11-26");
	assert_int_equal(sc_ts_parse("2025-11-26 08:16:40", &t), -1);
	assert_int_equal(sc_ts_parse("2025-11-26T08:16:40Zx", &t), -1);
	assert_int_equal(sc_ts_parse("", &t), -1);
	assert_int_equal(sc_ts_parse(NULL, &t), -1);
	assert_true(sc_now_ms() > 0);
	assert_true(sc_wall_ms() > 1700000000000LL);
}

/* The printf-free text helpers give what snprintf gives. */
static void
test_text(void **state)
{
	static const int64_t ints[] = { 0, 1, -1, 9, 10, 1234567890123LL, INT64_MAX, INT64_MIN };
	static const uint64_t hexes[] = { 0, 1, 0xf, 0x10, 0xabcdef, 0x123456789abcULL, UINT64_MAX };
	char a[32], b[32], small[4];
	size_t i;
	int w;

	(void)state;
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		snprintf(b, sizeof(b), "%lld", (long long)ints[i]);
		assert_int_equal(sc_fmt_i64(ints[i], a), strlen(b));
		assert_string_equal(a, b);
	}
	for (i = 0; i < sizeof(hexes) / sizeof(hexes[0]); i++)
		for (w = 0; w <= 16; w += 4) {
			snprintf(b, sizeof(b), "%0*llx", w, (unsigned long long)hexes[i]);
			assert_int_equal(sc_fmt_hex(hexes[i], w, a), strlen(b));
			assert_string_equal(a, b);
		}
	assert_int_equal(sc_strlcpy(a, "hello", sizeof(a)), 5);
	assert_string_equal(a, "hello");
	assert_int_equal(sc_strlcpy(small, "hello", sizeof(small)), 5);
	assert_string_equal(small, "hel");
	assert_int_equal(sc_strlcpy(small, "", sizeof(small)), 0);
	assert_string_equal(small, "");
	assert_int_equal(sc_strlcpy(small, "abc", sizeof(small)), 3);
	assert_string_equal(small, "abc");
	small[0] = 'x';
	assert_int_equal(sc_strlcpy(small, "abc", 0), 3);
	assert_int_equal(small[0], 'x');	/* size 0 writes nothing */
}

/* sc_text: pieces that fit are kept, one that does not is dropped whole. */
static void
test_text_build(void **state)
{
	struct sc_text t;
	char buf[16];

	(void)state;
	sc_text_init(&t, buf, sizeof(buf));
	assert_string_equal(buf, "");
	sc_text_add(&t, "Len: ");
	sc_text_i64(&t, -42);
	sc_text_addn(&t, "\r\nxyz", 2);
	assert_string_equal(buf, "Len: -42\r\n");
	assert_int_equal(t.len, 10);
	assert_false(t.overflow);
	sc_text_add(&t, "123456");	/* 16 with the NUL: does not fit */
	assert_true(t.overflow);
	assert_string_equal(buf, "Len: -42\r\n");
	sc_text_add(&t, "12345");	/* fits exactly */
	assert_string_equal(buf, "Len: -42\r\n12345");
	assert_int_equal(t.len, 15);
}

static void
test_uuid(void **state)
{
	char a[37], b[37];

	(void)state;
	sc_uuid(a);
	sc_uuid(b);
	assert_int_equal(strlen(a), 36);
	assert_true(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
	assert_int_equal(a[14], '4');
	assert_true(strchr("89ab", a[19]) != NULL);
	assert_string_not_equal(a, b);
}

static void
test_buf(void **state)
{
	struct sc_buf b;

	(void)state;
	sc_buf_init(&b, 10);
	assert_int_equal(sc_buf_append(&b, "hello", 5), 0);
	assert_int_equal(sc_buf_printf(&b, "%d", 12345), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "hello12345");
	/* Past the cap: refused, contents unchanged. */
	assert_int_equal(sc_buf_append(&b, "x", 1), -1);
	assert_int_equal(sc_buf_printf(&b, "y"), -1);
	assert_string_equal(b.data, "hello12345");
	sc_buf_consume(&b, 5);
	assert_string_equal(b.data, "12345");
	assert_int_equal(sc_buf_append(&b, "abcde", 5), 0);
	assert_string_equal(b.data, "12345abcde");
	sc_buf_consume(&b, 100);
	assert_int_equal(b.len, 0);
	sc_buf_reset(&b);
	assert_int_equal(sc_buf_append(&b, "", 0), 0);
	sc_buf_free(&b);
	assert_null(b.data);
	/* Fit: the allocation shrinks to the contents and still grows after. */
	sc_buf_init(&b, 1000);
	assert_int_equal(sc_buf_append(&b, "abc", 3), 0);
	assert_true(b.alloc > 4);
	sc_buf_fit(&b);
	assert_int_equal(b.alloc, 4);
	assert_string_equal(b.data, "abc");
	assert_int_equal(sc_buf_append(&b, "defg", 4), 0);
	assert_string_equal(b.data, "abcdefg");
	sc_buf_reset(&b);
	sc_buf_fit(&b);
	assert_null(b.data);
	assert_int_equal(b.alloc, 0);
	assert_int_equal(sc_buf_append(&b, "x", 1), 0);
	assert_string_equal(b.data, "x");
	sc_buf_free(&b);
	/* A small cap is allocated whole at the first growth; a big one grows. */
	sc_buf_init(&b, 300);
	assert_int_equal(sc_buf_append(&b, "ab", 2), 0);
	assert_int_equal(b.alloc, 301);
	assert_int_equal(sc_buf_append(&b, "cd", 2), 0);
	assert_int_equal(b.alloc, 301);
	assert_string_equal(b.data, "abcd");
	sc_buf_free(&b);
	sc_buf_init(&b, SC_BUF_WHOLE_CAP);
	assert_int_equal(sc_buf_append(&b, "ab", 2), 0);
	assert_int_equal(b.alloc, 256);
	sc_buf_free(&b);
	/* Presize: the exact room at once, nothing reallocated while it fills;
	 * ignored with storage already there or past the cap; grows after. */
	sc_buf_init(&b, 10);
	sc_buf_presize(&b, 11);
	assert_null(b.data);
	sc_buf_presize(&b, 5);
	assert_int_equal(b.alloc, 6);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	{
		char *p = b.data;
		assert_int_equal(sc_buf_append(&b, "ab", 2), 0);
		assert_int_equal(sc_buf_append(&b, "cde", 3), 0);
		assert_ptr_equal(b.data, p);
	}
	assert_int_equal(b.alloc, 6);
	sc_buf_presize(&b, 9);
	assert_int_equal(b.alloc, 6);
	assert_int_equal(sc_buf_append(&b, "fgh", 3), 0);
	assert_string_equal(b.data, "abcdefgh");
	assert_int_equal(sc_buf_append(&b, NULL, 0), 0);	/* nothing to copy, from nowhere */
	assert_string_equal(b.data, "abcdefgh");
	sc_buf_free(&b);
	sc_buf_init(&b, 10);
	sc_buf_presize(&b, 5);
	assert_int_equal(sc_buf_append(&b, NULL, 0), 0);	/* room allocated: the inline path */
	assert_int_equal(b.len, 0);
	sc_buf_free(&b);
	/* Extend: room for the caller to fill, NUL after it; past the cap NULL
	 * and nothing changed. */
	sc_buf_init(&b, 8);
	{
		char *p = sc_buf_extend(&b, 3);
		assert_non_null(p);
		memcpy(p, "abc", 3);
		assert_int_equal(b.len, 3);
		assert_string_equal(b.data, "abc");
		p = sc_buf_extend(&b, 5);
		assert_ptr_equal(p, b.data + 3);
		memcpy(p, "defgh", 5);
		assert_string_equal(b.data, "abcdefgh");
		assert_null(sc_buf_extend(&b, 1));
		assert_int_equal(b.len, 8);
		assert_string_equal(b.data, "abcdefgh");
		assert_non_null(sc_buf_extend(&b, 0));
		assert_int_equal(b.len, 8);
	}
	sc_buf_free(&b);
}

/* common/log.c: levels, the line format, and reopening after logrotate. */
static void
test_log(void **state)
{
	char path[] = "/tmp/sc-test-log-XXXXXX", moved[64], line[512];
	enum log_level lv;
	FILE *fp;
	int fd;

	(void)state;
	assert_int_equal(log_level_parse("debug", &lv), 0);
	assert_int_equal(lv, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("WARN", &lv), 0);
	assert_int_equal(lv, LOG_LVL_WARN);
	assert_int_equal(log_level_parse("loud", &lv), -1);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_init("test-prog", LOG_LVL_INFO, path), 0);
	assert_true(log_enabled(LOG_LVL_WARN));
	assert_false(log_enabled(LOG_LVL_DEBUG));
	log_debug("hidden %d", 1);
	log_info("first line\nwith a newline");
	snprintf(moved, sizeof(moved), "%s.1", path);
	assert_int_equal(rename(path, moved), 0);
	assert_int_equal(log_reopen(), 0);
	log_error("second %s", "file");

	fp = fopen(moved, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof(line), fp));
	/* 2026-11-26T08:16:00.123Z test-prog[1234] INFO first line with a newline */
	assert_int_equal(line[4], '-');
	assert_int_equal(line[10], 'T');
	assert_int_equal(line[23], 'Z');
	assert_non_null(strstr(line, " test-prog["));
	assert_non_null(strstr(line, "] INFO first line with a newline\n"));
	assert_null(fgets(line, sizeof(line), fp));	/* nothing else, debug was off */
	fclose(fp);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof(line), fp));
	assert_non_null(strstr(line, "] ERROR second file\n"));
	fclose(fp);
	unlink(path);
	unlink(moved);
	log_init("test-prog", LOG_LVL_INFO, NULL);
}

/* log_value: plain values as they are, others quoted and escaped, cut to fit. */
static void
test_log_value(void **state)
{
	char out[64], small[12];

	(void)state;
	assert_string_equal(log_value("mock/meta/llama-3.1-8b@x+y:z_1", out, sizeof(out)), "mock/meta/llama-3.1-8b@x+y:z_1");
	assert_string_equal(log_value("", out, sizeof(out)), "\"\"");
	assert_string_equal(log_value("a b", out, sizeof(out)), "\"a b\"");
	assert_string_equal(log_value("x provider=FAKE", out, sizeof(out)), "\"x provider=FAKE\"");
	assert_string_equal(log_value("q\"\\", out, sizeof(out)), "\"q\\\"\\\\\"");
	assert_string_equal(log_value("a\nb\x7f\xc3\xa9", out, sizeof(out)), "\"a\\x0ab\\x7f\\xc3\\xa9\"");
	assert_string_equal(log_value("abcdefghijklmnop", small, sizeof(small)), "\"abcdef...\"");
	assert_string_equal(log_value("\n\n\n", small, sizeof(small)), "\"\\x0a...\"");
	assert_true(strlen(log_value("a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9", out, sizeof(out))) < sizeof(out));
}

/* UTF-8 per RFC 3629: what is refused, where, and how it is scrubbed. */
static void
test_utf8(void **state)
{
	static const struct { const char *s; size_t n; long bad; } cases[] = {
		{ "plain", 5, -1 },
		{ "\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x99\x82", 9, -1 },
		{ "\xef\xbf\xbd\xf4\x8f\xbf\xbf", 7, -1 },		/* U+FFFD, U+10FFFF */
		{ "a\xff", 2, 1 },
		{ "ab\x80", 3, 2 },				/* stray continuation */
		{ "\xc3", 1, 0 },				/* cut */
		{ "\xe6\xbc", 2, 0 },
		{ "\xc0\xaf", 2, 0 },				/* overlong */
		{ "\xe0\x80\xaf", 3, 0 },
		{ "\xed\xa0\x80", 3, 0 },			/* surrogate */
		{ "\xf4\x90\x80\x80", 4, 0 },			/* past U+10FFFF */
		{ "\xf8\x88\x80\x80\x80", 5, 0 },		/* 5-byte form */
		{ "a\0b", 3, 1 },				/* NUL */
	};
	char s[32];
	uint32_t cp;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (sc_utf8_check(cases[i].s, cases[i].n) != cases[i].bad)
			fail_msg("case %zu: %ld, want %ld", i, sc_utf8_check(cases[i].s, cases[i].n), cases[i].bad);
		assert_int_equal(sc_utf8_valid(cases[i].s, cases[i].n), cases[i].bad == -1);
	}
	assert_int_equal(sc_utf8_next((const unsigned char *)"\xf0\x9f\x99\x82", 4, &cp), 4);
	assert_int_equal(cp, 0x1f642);
	snprintf(s, sizeof(s), "a\xff\xc3\xa9\xed\xa0\x80z\xc3");
	sc_utf8_scrub(s);
	assert_string_equal(s, "a?\xc3\xa9???z?");
}

/* The shortest text that reads back as the same double. */
static void
test_fmt_double(void **state)
{
	static const struct { double v; const char *s; } cases[] = {
		{ 0.5, "0.5" }, { 0.1, "0.1" }, { 1, "1" }, { -0.0, "0" }, { 1e-7, "1e-07" },
		{ 0.30000000000000004, "0.30000000000000004" }, { 1234567.25, "1234567.25" }, { 1e21, "1e+21" },
	};
	char out[40];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sc_fmt_double(cases[i].v, out, sizeof(out));
		assert_string_equal(out, cases[i].s);
	}
}

/* sc_memfind finds what memmem finds (the first occurrence), for every rare
 * index, needles at the start, the end, overlapping and absent. */
static void
test_memfind(void **state)
{
	static const char *const needles[] = { "429", "rate_limit", "\"usage\"", "aa", "a", "aab" };
	char hay[64];
	unsigned seed = 7;
	size_t i, k, r, n;

	(void)state;
	assert_ptr_equal(sc_memfind("abc", 3, "abcd", 4, 0), NULL);
	assert_ptr_equal(sc_memfind("", 0, "a", 1, 0), NULL);
	for (i = 0; i < 20000; i++) {
		const char *nd = needles[i % (sizeof(needles) / sizeof(needles[0]))];
		size_t nl = strlen(nd);

		n = (size_t)(rand_r(&seed) % sizeof(hay));
		for (k = 0; k < n; k++)	/* mostly pieces of the needle, so matches and near misses are common */
			hay[k] = rand_r(&seed) % 3 == 0 ? "ab_429"[rand_r(&seed) % 6] : nd[rand_r(&seed) % nl];
		for (r = 0; r < nl; r++)
			assert_ptr_equal(sc_memfind(hay, n, nd, nl, r), memmem(hay, n, nd, nl));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_build),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_log_value),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_fmt_double),
		cmocka_unit_test(test_memfind),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
