/*
 * Unit tests for cooldown and retry decisions (dataplane/cooldown.c): the
 * backoff sequence with its cap, Retry-After, reset on success, episodes
 * (in-flight, emergency and same-millisecond 429s add one step per overload),
 * half-open recovery, invalid keys, passive health and probes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cooldown.h"

/* The design's defaults (system_config), without linking common/. */
/* The design's defaults (common/config.c), as a fresh database has them. */
static void
test_config(struct config *c)
{
	config_defaults(c);
}

/* An answer `status` to an attempt sent at `sent` with cd as it is now. */
static struct cooldown_outcome
status_at(int status, const struct cooldown *cd, int64_t sent)
{
	struct cooldown_outcome o;

	memset(&o, 0, sizeof(o));
	o.failure = COOLDOWN_FAIL_NONE;
	o.status = status;
	o.sent = cooldown_stamp_at(cd, sent, false);
	o.retry_after_ms = -1;
	return o;
}

/* An answer to an attempt whose stamp was taken earlier. */
static struct cooldown_outcome
answer(int status, struct cooldown_stamp sent)
{
	struct cooldown_outcome o;

	memset(&o, 0, sizeof(o));
	o.status = status;
	o.sent = sent;
	o.retry_after_ms = -1;
	return o;
}

/* 30, 60, 120, 240, 480, then capped at 600. */
static void
test_backoff_sequence(void **state)
{
	struct config c;
	struct cooldown cd;
	const int want[8] = { 30, 60, 120, 240, 480, 600, 600, 600 };
	int64_t now = 1000;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	for (int i = 0; i < 8; i++) {
		struct cooldown_outcome o = status_at(429, &cd, now);
		struct cooldown_result r = cooldown_on_outcome(&cd, &c, now, &o);

		assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
		assert_true(r.cooldown_started);
		assert_int_equal(r.count, i + 1);
		assert_int_equal(r.cooldown_seconds, want[i]);
		assert_int_equal(r.cooldown_until_ms, now + want[i] * 1000LL);
		assert_true(cooldown_is_cooling(&cd, now + want[i] * 1000LL - 1));
		assert_false(cooldown_is_cooling(&cd, now + want[i] * 1000LL));
		/* The next 429 comes from a request sent after this cooldown ended. */
		now += want[i] * 1000LL + 5;
	}
	assert_int_equal(cooldown_backoff_ms(&c, 0), 0);
	assert_int_equal(cooldown_backoff_ms(&c, 1), 30000);
	assert_int_equal(cooldown_backoff_ms(&c, 5), 480000);
	assert_int_equal(cooldown_backoff_ms(&c, 1000000), 600000);	/* no overflow */
}

/* Upstream Retry-After wins when longer, not when shorter. */
static void
test_retry_after(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	o = status_at(429, &cd, 0);
	o.retry_after_ms = 90000;
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_int_equal(r.cooldown_seconds, 90);
	assert_int_equal(cd.cooldown_until_ms, 100 + 90000);

	cooldown_init(&cd);
	o.retry_after_ms = 10000;
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_int_equal(r.cooldown_seconds, 30);
	assert_int_equal(cd.cooldown_until_ms, 100 + 30000);

	/* Longer than the cap still wins (the upstream knows best)... */
	cooldown_init(&cd);
	o.retry_after_ms = 3600 * 1000;
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_int_equal(r.cooldown_seconds, 3600);
	/* ...up to a sanity cap. */
	cooldown_init(&cd);
	o.retry_after_ms = 365LL * 24 * 3600 * 1000;
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_int_equal(r.cooldown_until_ms, 100 + COOLDOWN_RETRY_AFTER_CAP_MS);
	/* Fractional seconds round up for persistence. */
	cooldown_init(&cd);
	o.retry_after_ms = 45001;
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_int_equal(r.cooldown_seconds, 46);
}

/* A success resets n: the next 429 starts from the base again. */
static void
test_success_resets(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;
	int64_t now = 0;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	for (int i = 0; i < 3; i++) {
		o = status_at(429, &cd, now);
		r = cooldown_on_outcome(&cd, &c, now, &o);
		now = r.cooldown_until_ms;
	}
	assert_int_equal(cd.consecutive_429, 3);
	o = status_at(200, &cd, now);
	r = cooldown_on_outcome(&cd, &c, now + 10, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_DELIVER);
	assert_true(r.streak_reset);
	assert_int_equal(r.count, 0);
	o = status_at(204, &cd, now + 20);
	r = cooldown_on_outcome(&cd, &c, now + 20, &o);
	assert_false(r.streak_reset);
	o = status_at(429, &cd, now + 30);
	r = cooldown_on_outcome(&cd, &c, now + 30, &o);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.cooldown_seconds, 30);
}

/* 429s of attempts already in flight when the cooldown began do not escalate. */
static void
test_inflight_429(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;
	struct cooldown_stamp before;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	before = cooldown_stamp_at(&cd, 950, false);	/* sent before the first 429 came back */
	o = status_at(429, &cd, 900);
	r = cooldown_on_outcome(&cd, &c, 1000, &o);
	assert_true(r.cooldown_started);
	assert_int_equal(r.count, 1);
	for (int i = 0; i < 5; i++) {
		o = answer(429, before);
		r = cooldown_on_outcome(&cd, &c, 1005 + i, &o);
		assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
		assert_false(r.cooldown_started);
		assert_false(r.cooldown_extended);
		assert_int_equal(r.count, 1);
		assert_int_equal(cd.cooldown_until_ms, 31000);
	}
	/* An in-flight one with a longer Retry-After extends without escalating. */
	o = answer(429, before);
	o.retry_after_ms = 60000;
	r = cooldown_on_outcome(&cd, &c, 1010, &o);
	assert_true(r.cooldown_extended);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.cooldown_seconds, 60);
	assert_int_equal(cd.cooldown_until_ms, 61010);
	/* One sent during the cooldown (the emergency channel) adds no step. */
	o = status_at(429, &cd, 2000);
	assert_true(o.sent.cooling);
	r = cooldown_on_outcome(&cd, &c, 2100, &o);
	assert_false(r.cooldown_started);
	assert_int_equal(r.count, 1);
	assert_int_equal(cd.cooldown_until_ms, 61010);
	/* The half-open probe after the end escalates: the next step. */
	assert_true(cooldown_probe_wanted(&cd, 61010));
	o = status_at(429, &cd, 61010);
	r = cooldown_on_outcome(&cd, &c, 61020, &o);
	assert_true(r.cooldown_started);
	assert_int_equal(r.count, 2);
	assert_int_equal(cd.cooldown_until_ms, 61020 + 60000);
}

/* Five emergency attempts on a cooling key, answered 429 within a second:
 * the cooldown stays at its first step (was 30 s -> 480 s). */
static void
test_emergency_no_step(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	o = status_at(429, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_int_equal(r.count, 1);
	for (int i = 0; i < 5; i++) {
		o = status_at(429, &cd, 100 + i * 100);
		r = cooldown_on_outcome(&cd, &c, 150 + i * 100, &o);
		assert_false(r.cooldown_started);
		assert_int_equal(r.count, 1);
	}
	assert_int_equal(cd.cooldown_until_ms, 10 + 30000);
	/* Their successes do not reset the streak either (the key is still cooling). */
	o = status_at(200, &cd, 700);
	r = cooldown_on_outcome(&cd, &c, 710, &o);
	assert_false(r.streak_reset);
	assert_int_equal(cd.consecutive_429, 1);
}

/* Sends and answers in the same millisecond: 16 attempts sent at t, all
 * answered 429 at t. The first escalates, the fifteen others (sent in the
 * same episode, before it began) add nothing; over several rounds each
 * episode adds exactly one step. */
static void
test_same_millisecond(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_stamp s[16];
	struct cooldown_result r;
	int64_t t = 5000;

	(void)state;
	test_config(&c);
	c.cooldown_base_seconds = 1;
	cooldown_init(&cd);
	for (int round = 1; round <= 4; round++) {
		int started = 0;

		for (int i = 0; i < 16; i++)
			s[i] = cooldown_stamp_at(&cd, t, false);
		for (int i = 0; i < 16; i++) {
			struct cooldown_outcome o = answer(429, s[i]);
			r = cooldown_on_outcome(&cd, &c, t, &o);
			started += r.cooldown_started;
		}
		assert_int_equal(started, 1);
		assert_int_equal(cd.consecutive_429, round);
		assert_int_equal(cd.episode, (uint32_t)round);
		t = cd.cooldown_until_ms;	/* the next round is sent the instant it ends */
	}
}

/* Half-open: after a cooldown one probe; others wait until it answers; a
 * non-429 answer ends it, a 429 is the next step, a lost probe frees the slot. */
static void
test_half_open(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;
	struct cooldown_stamp probe;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	assert_false(cooldown_is_probing(&cd, 0));
	o = status_at(429, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 0, &o);
	assert_true(cooldown_is_cooling(&cd, 29999));
	assert_false(cooldown_is_probing(&cd, 29999));		/* cooling, not probing yet */
	assert_true(cooldown_is_probing(&cd, 30000));
	assert_true(cooldown_probe_wanted(&cd, 30000));
	/* The probe goes out: no second one. */
	probe = cooldown_stamp_at(&cd, 30000, true);
	cd.probe_busy = true;
	assert_false(cooldown_probe_wanted(&cd, 30001));
	/* It is lost (client gone): the slot is free again, still half-open. */
	cooldown_probe_release(&cd, &probe);
	assert_true(cooldown_probe_wanted(&cd, 30002));
	/* A 429 on the probe: the next step, cooling again. */
	probe = cooldown_stamp_at(&cd, 30003, true);
	cd.probe_busy = true;
	o = answer(429, probe);
	r = cooldown_on_outcome(&cd, &c, 30004, &o);
	assert_true(r.cooldown_started);
	assert_int_equal(r.count, 2);
	assert_false(cd.probe_busy);
	assert_true(cooldown_is_cooling(&cd, 30004 + 59999));
	/* A 503 on the next probe also ends half-open (an answer other than 429). */
	probe = cooldown_stamp_at(&cd, 90004, true);
	cd.probe_busy = true;
	o = answer(503, probe);
	r = cooldown_on_outcome(&cd, &c, 90005, &o);
	assert_true(r.recovered);
	assert_false(cd.half_open);
	assert_false(cooldown_is_probing(&cd, 90006));
	/* A restart with the last answer a 429 probes first. */
	cooldown_init(&cd);
	cooldown_restore(&cd, 0, 0, 2);
	assert_true(cooldown_is_probing(&cd, 1));
	/* A late answer from before the cooldown does not end half-open. */
	cooldown_init(&cd);
	probe = cooldown_stamp_at(&cd, 0, false);
	o = status_at(429, &cd, 0);
	(void)cooldown_on_outcome(&cd, &c, 1, &o);
	o = answer(200, probe);
	r = cooldown_on_outcome(&cd, &c, 40000, &o);
	assert_false(r.recovered);
	assert_true(cooldown_is_probing(&cd, 40001));
}

/* 401/403: invalid with the reason, retried elsewhere. */
static void
test_invalid(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;
	char longreason[400];

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	o = status_at(401, &cd, 0);
	o.reason = "401 Unauthorized: Authentication failed";
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
	assert_true(r.became_invalid);
	assert_true(cd.invalid);
	assert_string_equal(cd.invalid_reason, "401 Unauthorized: Authentication failed");
	r = cooldown_on_outcome(&cd, &c, 20, &o);
	assert_false(r.became_invalid);		/* already */
	assert_false(cooldown_is_cooling(&cd, 20));	/* invalid is not a cooldown */

	cooldown_init(&cd);
	o = status_at(403, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_true(r.became_invalid);
	assert_string_equal(cd.invalid_reason, "upstream answered 403");
	cooldown_clear_invalid(&cd);
	assert_false(cd.invalid);
	assert_string_equal(cd.invalid_reason, "");

	memset(longreason, 'x', sizeof(longreason) - 1);
	longreason[sizeof(longreason) - 1] = '\0';
	o.reason = longreason;
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_int_equal(strlen(cd.invalid_reason), COOLDOWN_REASON_MAX - 1);
}

/* Failures → unhealthy → probe → healthy; a 2xx resets the count. */
static void
test_health(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	o = status_at(500, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
	assert_int_equal(r.failures, 1);
	o = status_at(502, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 20, &o);
	assert_int_equal(r.failures, 2);
	o = status_at(200, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 30, &o);
	assert_int_equal(r.failures, 0);

	o = status_at(503, &cd, 0);
	r = cooldown_on_outcome(&cd, &c, 100, &o);
	assert_false(r.became_unhealthy);
	o.failure = COOLDOWN_FAIL_CONNECT;
	o.status = 0;
	r = cooldown_on_outcome(&cd, &c, 200, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
	assert_false(r.became_unhealthy);
	o.failure = COOLDOWN_FAIL_TTFB;
	r = cooldown_on_outcome(&cd, &c, 300, &o);
	assert_true(r.became_unhealthy);
	assert_int_equal(r.failures, 3);
	assert_true(cd.unhealthy);
	assert_int_equal(cd.next_probe_ms, 300 + 30000);
	r = cooldown_on_outcome(&cd, &c, 400, &o);
	assert_false(r.became_unhealthy);		/* reported once */
	assert_false(cooldown_probe_due(&cd, 30299));
	assert_true(cooldown_probe_due(&cd, 30300));

	r = cooldown_on_probe(&cd, &c, 30400, false);
	assert_false(r.became_healthy);
	assert_true(cd.unhealthy);
	assert_int_equal(cd.next_probe_ms, 30400 + 30000);
	r = cooldown_on_probe(&cd, &c, 60400, true);
	assert_true(r.became_healthy);
	assert_false(cd.unhealthy);
	assert_int_equal(cd.consecutive_failures, 0);
	assert_false(cooldown_probe_due(&cd, 100000));
}

/* Other 4xx: passed through, no retry, no penalty. */
static void
test_pass_through(void **state)
{
	struct config c;
	struct cooldown cd, before;
	const int st[6] = { 400, 404, 408, 413, 422, 302 };

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	cd.consecutive_429 = 2;
	cd.consecutive_failures = 1;
	before = cd;
	for (int i = 0; i < 6; i++) {
		struct cooldown_outcome o = status_at(st[i], &cd, 0);
		struct cooldown_result r = cooldown_on_outcome(&cd, &c, 10, &o);

		assert_int_equal(r.action, COOLDOWN_ACT_PASS_THROUGH);
		assert_false(r.cooldown_started || r.became_invalid || r.became_unhealthy);
		assert_memory_equal(&cd, &before, sizeof(cd));
	}
}

/* A persisted cooldown is back in force after a restart. */
static void
test_restore(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	cooldown_restore(&cd, 5000, 42000, 2);
	assert_true(cooldown_is_cooling(&cd, 5000 + 41999));
	assert_false(cooldown_is_cooling(&cd, 5000 + 42000));
	o = status_at(429, &cd, 50000);
	r = cooldown_on_outcome(&cd, &c, 50000, &o);
	assert_int_equal(r.count, 3);
	assert_int_equal(r.cooldown_seconds, 120);
}

/* The operator's reset ends the cooldown at once and restarts the backoff at 30 s. */
static void
test_operator_reset(void **state)
{
	struct config c;
	struct cooldown cd;
	struct cooldown_outcome o;
	struct cooldown_result r;

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	cooldown_restore(&cd, 1000, 120000, 3);
	assert_true(cooldown_is_cooling(&cd, 2000));
	cooldown_reset(&cd);
	assert_false(cooldown_is_cooling(&cd, 2000));
	o = status_at(429, &cd, 3000);
	r = cooldown_on_outcome(&cd, &c, 3000, &o);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.cooldown_seconds, 30);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_sequence),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_success_resets),
		cmocka_unit_test(test_inflight_429),
		cmocka_unit_test(test_emergency_no_step),
		cmocka_unit_test(test_same_millisecond),
		cmocka_unit_test(test_half_open),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_pass_through),
		cmocka_unit_test(test_restore),
		cmocka_unit_test(test_operator_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
