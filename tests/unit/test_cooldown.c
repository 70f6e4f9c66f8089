/*
 * Unit tests for cooldown and retry decisions (dataplane/cooldown.c): the
 * backoff sequence with its cap, Retry-After, reset on success, in-flight
 * 429s, invalid keys, passive health and probes.
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

static struct cooldown_outcome
status_at(int status, int64_t started)
{
	struct cooldown_outcome o;

	memset(&o, 0, sizeof(o));
	o.failure = COOLDOWN_FAIL_NONE;
	o.status = status;
	o.started_ms = started;
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
		struct cooldown_outcome o = status_at(429, now - 200);
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
	o = status_at(429, 0);
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
		o = status_at(429, now);
		r = cooldown_on_outcome(&cd, &c, now, &o);
		now = r.cooldown_until_ms;
	}
	assert_int_equal(cd.consecutive_429, 3);
	o = status_at(200, now);
	r = cooldown_on_outcome(&cd, &c, now + 10, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_DELIVER);
	assert_true(r.streak_reset);
	assert_int_equal(r.count, 0);
	o = status_at(204, now + 20);
	r = cooldown_on_outcome(&cd, &c, now + 20, &o);
	assert_false(r.streak_reset);
	o = status_at(429, now + 30);
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

	(void)state;
	test_config(&c);
	cooldown_init(&cd);
	o = status_at(429, 900);
	r = cooldown_on_outcome(&cd, &c, 1000, &o);
	assert_true(r.cooldown_started);
	assert_int_equal(r.count, 1);
	for (int i = 0; i < 5; i++) {
		o = status_at(429, 950 + i);		/* sent before t=1000 */
		r = cooldown_on_outcome(&cd, &c, 1005 + i, &o);
		assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
		assert_false(r.cooldown_started);
		assert_false(r.cooldown_extended);
		assert_int_equal(r.count, 1);
		assert_int_equal(cd.cooldown_until_ms, 31000);
	}
	/* An in-flight one with a longer Retry-After extends without escalating. */
	o = status_at(429, 990);
	o.retry_after_ms = 60000;
	r = cooldown_on_outcome(&cd, &c, 1010, &o);
	assert_true(r.cooldown_extended);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.cooldown_seconds, 60);
	assert_int_equal(cd.cooldown_until_ms, 61010);
	/* One sent during the cooldown (the emergency channel) does escalate. */
	o = status_at(429, 2000);
	r = cooldown_on_outcome(&cd, &c, 2100, &o);
	assert_true(r.cooldown_started);
	assert_int_equal(r.count, 2);
	/* max(current end, now + 60 s): the longer Retry-After end is kept. */
	assert_int_equal(cd.cooldown_until_ms, 62100);
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
	o = status_at(401, 0);
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
	o = status_at(403, 0);
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
	o = status_at(500, 0);
	r = cooldown_on_outcome(&cd, &c, 10, &o);
	assert_int_equal(r.action, COOLDOWN_ACT_RETRY);
	assert_int_equal(r.failures, 1);
	o = status_at(502, 0);
	r = cooldown_on_outcome(&cd, &c, 20, &o);
	assert_int_equal(r.failures, 2);
	o = status_at(200, 0);
	r = cooldown_on_outcome(&cd, &c, 30, &o);
	assert_int_equal(r.failures, 0);

	o = status_at(503, 0);
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
		struct cooldown_outcome o = status_at(st[i], 0);
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
	o = status_at(429, 50000);
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
	o = status_at(429, 3000);
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
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_pass_through),
		cmocka_unit_test(test_restore),
		cmocka_unit_test(test_operator_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
