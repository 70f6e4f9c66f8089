/*
 * Unit tests for the exact sliding window (dataplane/ratelimit.c) on a fake
 * clock: boundaries to the millisecond, a 100k-event property check against
 * a brute-force model, resizing with history, and TPM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "ratelimit.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* The limit-th start at t: the next start is admitted exactly at t + span. */
static void
test_boundary(void **state)
{
	struct ratelimit rl;
	const int64_t span = 1000 + 50;	/* window 1 s, margin 50 ms */

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 3, span, 0);
	assert_int_equal(ratelimit_reserve(&rl, 100), 0);
	assert_int_equal(ratelimit_reserve(&rl, 200), 0);
	assert_true(ratelimit_has_room(&rl, 300));
	assert_int_equal(ratelimit_next_free(&rl, 300), 300);
	assert_int_equal(ratelimit_reserve(&rl, 300), 0);	/* the limit-th */
	assert_int_equal(ratelimit_used(&rl, 300), 3);
	assert_false(ratelimit_has_room(&rl, 300));
	assert_int_equal(ratelimit_next_free(&rl, 300), 100 + span);
	assert_int_equal(ratelimit_reserve(&rl, 100 + span - 1), -1);	/* 1 ms early */
	assert_int_equal(ratelimit_used(&rl, 100 + span - 1), 3);
	assert_int_equal(ratelimit_used(&rl, 100 + span), 2);
	assert_int_equal(ratelimit_reserve(&rl, 100 + span), 0);	/* exactly on time */
	assert_int_equal(ratelimit_next_free(&rl, 100 + span), 200 + span);
	assert_int_equal(ratelimit_reserve(&rl, 200 + span - 1), -1);
	assert_int_equal(ratelimit_reserve(&rl, 200 + span), 0);
	ratelimit_free(&rl);
}

/* A burst at one instant: everything frees at once, span later. */
static void
test_burst_same_instant(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 40, 60500, 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(ratelimit_reserve(&rl, 5000), 0);
	assert_int_equal(ratelimit_reserve(&rl, 5000), -1);
	assert_int_equal(ratelimit_next_free(&rl, 5000), 65500);
	assert_int_equal(ratelimit_reserve(&rl, 65499), -1);
	for (int i = 0; i < 40; i++)
		assert_int_equal(ratelimit_reserve(&rl, 65500), 0);
	assert_int_equal(ratelimit_reserve(&rl, 65500), -1);
	assert_int_equal(ratelimit_used(&rl, 65500), 40);
	ratelimit_free(&rl);
}

/* Brute-force model: starts admitted so far, checked after every event. */
static void
test_property_random(void **state)
{
	const int limit = 7;
	const int64_t span = 1000;
	const int nev = 100000;
	int64_t *acc = malloc(sizeof(*acc) * (size_t)nev);
	int nacc = 0, lo = 0;
	int64_t now = 0;
	struct ratelimit rl;

	(void)state;
	assert_non_null(acc);
	ratelimit_init(&rl);
	ratelimit_configure(&rl, limit, span, 0);
	for (int e = 0; e < nev; e++) {
		int in_window, r;

		/* Bursty arrivals: often the same ms, sometimes long gaps. */
		switch (rng() % 4) {
		case 0: break;
		case 1: now += (int64_t)(rng() % 5); break;
		case 2: now += (int64_t)(rng() % 200); break;
		default: now += (int64_t)(rng() % 1500); break;
		}
		while (lo < nacc && acc[lo] <= now - span)
			lo++;
		in_window = nacc - lo;
		assert_int_equal(ratelimit_used(&rl, now), in_window);
		if (in_window >= limit)
			assert_int_equal(ratelimit_next_free(&rl, now), acc[nacc - limit] + span);
		else
			assert_int_equal(ratelimit_next_free(&rl, now), now);
		r = ratelimit_reserve(&rl, now);
		/* Exact: admitted iff fewer than limit starts in (now - span, now]. */
		assert_int_equal(r == 0, in_window < limit);
		if (r == 0)
			acc[nacc++] = now;
	}
	/* No window ever holds more than limit starts (two pointers). */
	for (int i = 0, j = 0; i < nacc; i++) {
		while (acc[j] <= acc[i] - span)
			j++;
		assert_true(i - j + 1 <= limit);
	}
	assert_true(nacc > nev / 10);
	ratelimit_free(&rl);
	free(acc);
}

/* Changing limit or window keeps the history of starts. */
static void
test_resize_keeps_history(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 5, 1000, 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(ratelimit_reserve(&rl, 10 * i), 0);	/* 0..40 */
	assert_false(ratelimit_has_room(&rl, 50));
	ratelimit_configure(&rl, 10, 1000, 0);		/* grow */
	assert_int_equal(ratelimit_used(&rl, 50), 5);
	for (int i = 5; i < 10; i++)
		assert_int_equal(ratelimit_reserve(&rl, 10 * i), 0);	/* 50..90 */
	assert_int_equal(ratelimit_reserve(&rl, 100), -1);
	assert_int_equal(ratelimit_next_free(&rl, 100), 1000);
	ratelimit_configure(&rl, 3, 1000, 0);		/* shrink: newest 3 kept (70, 80, 90) */
	assert_int_equal(ratelimit_used(&rl, 100), 3);
	assert_false(ratelimit_has_room(&rl, 1069));
	assert_int_equal(ratelimit_next_free(&rl, 100), 1070);
	assert_int_equal(ratelimit_reserve(&rl, 1070), 0);
	ratelimit_configure(&rl, 3, 1000, 0);		/* unchanged: no-op */
	assert_int_equal(ratelimit_used(&rl, 1070), 3);
	ratelimit_free(&rl);

	/* A longer window applies to starts made under the shorter one. */
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 2, 1000, 0);
	assert_int_equal(ratelimit_reserve(&rl, 0), 0);
	assert_int_equal(ratelimit_reserve(&rl, 500), 0);
	assert_true(ratelimit_has_room(&rl, 1200));
	ratelimit_configure(&rl, 2, 2000, 0);
	assert_false(ratelimit_has_room(&rl, 1200));
	assert_int_equal(ratelimit_next_free(&rl, 1200), 2000);
	ratelimit_configure(&rl, 2, 1000, 0);
	assert_true(ratelimit_has_room(&rl, 1200));
	ratelimit_free(&rl);
}

/* TPM: starts are refused while the window's reported tokens reach the limit. */
static void
test_tpm(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 100, 1000, 1000);
	assert_int_equal(ratelimit_reserve(&rl, 0), 0);
	ratelimit_record_tokens(&rl, 10, 600);
	assert_true(ratelimit_has_room(&rl, 20));
	ratelimit_record_tokens(&rl, 250, 500);
	assert_int_equal(ratelimit_tokens_used(&rl, 300), 1100);
	assert_false(ratelimit_has_room(&rl, 300));
	assert_int_equal(ratelimit_reserve(&rl, 300), -1);
	/* Dropping the 600 at t=10 brings the sum under the limit. */
	assert_int_equal(ratelimit_next_free(&rl, 300), 1010);
	assert_false(ratelimit_has_room(&rl, 1009));
	assert_true(ratelimit_has_room(&rl, 1010));
	assert_int_equal(ratelimit_tokens_used(&rl, 1010), 500);
	ratelimit_record_tokens(&rl, 1011, 0);		/* ignored */
	ratelimit_record_tokens(&rl, 1011, -5);		/* ignored */
	assert_int_equal(ratelimit_tokens_used(&rl, 1011), 500);
	ratelimit_free(&rl);

	/* RPM and TPM together: next_free is the later of the two. */
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 1, 1000, 100);
	assert_int_equal(ratelimit_reserve(&rl, 0), 0);
	ratelimit_record_tokens(&rl, 400, 100);
	assert_int_equal(ratelimit_next_free(&rl, 500), 1400);
	ratelimit_configure(&rl, 1, 1000, 0);		/* TPM switched off */
	assert_int_equal(ratelimit_next_free(&rl, 500), 1000);
	ratelimit_free(&rl);
}

/* Token records coalesce per 100 ms: memory stays bounded by span / 100. */
static void
test_tpm_bounded(void **state)
{
	struct ratelimit rl;
	int cap;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 10, 1000, 1000000000);
	cap = rl.tok_cap;
	assert_true(cap <= 1000 / RATELIMIT_TPM_BUCKET_MS + 2);
	for (int64_t t = 0; t < 100000; t++) {
		ratelimit_record_tokens(&rl, t, 1);
		assert_true(rl.tok_count <= cap);
	}
	assert_int_equal(rl.tok_cap, cap);
	/* Coalescing only ever counts tokens longer: (99000, 99999] holds 999
	 * records plus at most one bucket's worth. */
	assert_true(ratelimit_tokens_used(&rl, 99999) >= 999);
	assert_true(ratelimit_tokens_used(&rl, 99999) <= 999 + RATELIMIT_TPM_BUCKET_MS);
	ratelimit_free(&rl);
}

/* An unconfigured limiter admits nothing and never frees. */
static void
test_unconfigured(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	assert_false(ratelimit_has_room(&rl, 0));
	assert_int_equal(ratelimit_reserve(&rl, 0), -1);
	assert_int_equal(ratelimit_next_free(&rl, 0), INT64_MAX);
	assert_int_equal(ratelimit_next_free_below(&rl, 0, 1), INT64_MAX);
	assert_int_equal(ratelimit_used(&rl, 0), 0);
	ratelimit_free(&rl);
}

/* A share of the limit (the cluster's local share): when fewer than cap
 * starts are in the window. */
static void
test_next_free_below(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 10, 1000, 0);
	assert_int_equal(ratelimit_next_free_below(&rl, 100, 3), 100);
	assert_int_equal(ratelimit_reserve(&rl, 100), 0);
	assert_int_equal(ratelimit_reserve(&rl, 200), 0);
	assert_int_equal(ratelimit_next_free_below(&rl, 250, 3), 250);
	assert_int_equal(ratelimit_reserve(&rl, 300), 0);
	/* 3 in (−700, 300]: the oldest of them (100) leaves at 1100. */
	assert_int_equal(ratelimit_next_free_below(&rl, 300, 3), 1100);
	assert_int_equal(ratelimit_next_free_below(&rl, 300, 2), 1200);
	assert_int_equal(ratelimit_next_free_below(&rl, 300, 1), 1300);
	assert_int_equal(ratelimit_next_free_below(&rl, 1100, 3), 1100);
	assert_int_equal(ratelimit_next_free_below(&rl, 300, 0), INT64_MAX);
	/* A cap above the limit is the limit. */
	assert_int_equal(ratelimit_next_free_below(&rl, 300, 50), 300);
	ratelimit_free(&rl);
}

/* A lower admitted limit (learned) keeps the ring at the configured size:
 * raised again, every start that matters is still counted. */
static void
test_admit_lower(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 10, 1000, 0);
	ratelimit_set_admit(&rl, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ratelimit_reserve(&rl, 100 + i), 0);
	assert_false(ratelimit_has_room(&rl, 200));
	assert_int_equal(ratelimit_reserve(&rl, 200), -1);
	assert_int_equal(ratelimit_next_free(&rl, 200), 100 + 1000);	/* the 4th newest leaves */
	assert_true(ratelimit_has_room(&rl, 1100));
	/* Raised to 6 at 500: the 4 starts still count, 2 more fit, not 6. */
	ratelimit_set_admit(&rl, 6);
	assert_int_equal(ratelimit_reserve(&rl, 500), 0);
	assert_int_equal(ratelimit_reserve(&rl, 501), 0);
	assert_int_equal(ratelimit_reserve(&rl, 502), -1);
	assert_int_equal(ratelimit_used(&rl, 502), 6);
	/* Never above the configured limit, never below 1. */
	ratelimit_set_admit(&rl, 50);
	assert_int_equal(rl.admit, 10);
	ratelimit_set_admit(&rl, 0);
	assert_int_equal(rl.admit, 1);
	ratelimit_free(&rl);
}

/* Restored starts count like reserved ones, in time order, the newest kept. */
static void
test_restore_starts(void **state)
{
	struct ratelimit rl;
	const int64_t t[] = { 300, 100, 200, 250, 50, 400 };

	(void)state;
	ratelimit_init(&rl);
	ratelimit_configure(&rl, 5, 1000, 0);
	assert_int_equal(ratelimit_reserve(&rl, 150), 0);
	ratelimit_restore(&rl, t, 6);
	assert_int_equal(rl.count, 5);			/* the ring keeps the newest 5 of 7 */
	assert_int_equal(ratelimit_used(&rl, 400), 5);
	assert_false(ratelimit_has_room(&rl, 400));
	assert_int_equal(ratelimit_next_free(&rl, 400), 150 + 1000);	/* kept: 150 200 250 300 400 */
	ratelimit_free(&rl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boundary),
		cmocka_unit_test(test_burst_same_instant),
		cmocka_unit_test(test_property_random),
		cmocka_unit_test(test_resize_keeps_history),
		cmocka_unit_test(test_tpm),
		cmocka_unit_test(test_tpm_bounded),
		cmocka_unit_test(test_unconfigured),
		cmocka_unit_test(test_next_free_below),
		cmocka_unit_test(test_admit_lower),
		cmocka_unit_test(test_restore_starts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
