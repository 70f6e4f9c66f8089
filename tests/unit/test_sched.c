/*
 * Unit tests for the scheduling decision (dataplane/sched.c) on a fake
 * clock: every branch of the SPEC §5.5 order, the tried-set, commit,
 * reload sync, timers, probes, and a simulation of eleven 40-RPM keys under
 * twice their capacity driven exactly as the data plane will drive it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "queue.h"
#include "sched.h"
#include "winstore.h"

#define FX_MAX 16

struct fx {
	struct config          c;
	struct provider        pv[FX_MAX];	/* static config; only the fields sched reads */
	struct sched_provider  sp[FX_MAX];
	struct sched_provider *cand[FX_MAX];
	size_t                 n;
};

/* The design's defaults (system_config), without linking common/. */
/* The design's defaults (common/config.c), as a fresh database has them. */
static void
fx_config(struct config *c)
{
	config_defaults(c);
}

static struct fx *
fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fx_config(&f->c);
	return f;
}

static size_t
fx_add(struct fx *f, enum provider_pool pool, int rpm, double weight)
{
	size_t i = f->n++;
	struct provider *p = &f->pv[i];

	assert_true(i < FX_MAX);
	snprintf(p->id, sizeof(p->id), "00000000-0000-4000-8000-%012zu", i);
	p->pool = pool;
	p->status = PSTATUS_ACTIVE;
	p->rpm_limit = rpm;
	p->tpm_limit = 0;
	p->weight = weight;
	sched_provider_init(&f->sp[i], p, &f->c);
	f->cand[i] = &f->sp[i];
	return i;
}

static void
fx_free(struct fx *f)
{
	for (size_t i = 0; i < f->n; i++)
		sched_provider_free(&f->sp[i]);
	free(f);
}

static struct sched_decision
fx_decide(struct fx *f, const struct sched_request *rq, int64_t now)
{
	return sched_decide(f->cand, f->n, rq, &f->c, now);
}

/* Put provider i into a cooldown ending at `until`. */
static void
fx_cool(struct fx *f, size_t i, int64_t until)
{
	f->sp[i].cd.cooldown_until_ms = until;
	f->sp[i].cd.cooldown_started_ms = 1;
	f->sp[i].cd.consecutive_429 = 1;
}

/* Fill provider i's window at `now`. */
static void
fx_fill(struct fx *f, size_t i, int64_t now)
{
	struct sched_request rq;

	while (ratelimit_has_room(&f->sp[i].rl, now)) {
		sched_request_init(&rq);
		assert_int_equal(sched_commit(&f->sp[i], SCHED_POOL_MAIN, &rq, &f->c, now), 0);
	}
	assert_int_equal(ratelimit_used(&f->sp[i].rl, now), f->pv[i].rpm_limit);
}

/* Main pool with room: GO main, spread by WRR, never the fallback. */
static void
test_main_ok(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	int count[4] = { 0 };

	(void)state;
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	for (int k = 0; k < 30; k++) {
		struct sched_decision d;

		sched_request_init(&rq);
		d = fx_decide(f, &rq, 1000 + k);
		assert_int_equal(d.verdict, SCHED_GO);
		assert_int_equal(d.pool, SCHED_POOL_MAIN);
		assert_int_equal(d.why, SCHED_WHY_MAIN);
		assert_int_not_equal(d.index, 0);
		assert_int_equal(sched_commit(f->cand[d.index], d.pool, &rq, &f->c, 1000 + k), 0);
		count[d.index]++;
	}
	assert_int_equal(count[1], 10);
	assert_int_equal(count[2], 10);
	assert_int_equal(count[3], 10);
	/* No request state at all: a fresh request. */
	assert_int_equal(sched_decide(f->cand, f->n, NULL, &f->c, 2000).verdict, SCHED_GO);
	assert_int_equal(ratelimit_used(&f->sp[1].rl, 2000), 10);
	fx_free(f);
}

/* A shared window's hold (cluster admission) counts as a full window:
 * WAIT until it ends, FULL in the state, the next change at its end; the
 * alternatives list the other eligible keys of the pool, most room first;
 * sched_record keeps the books of a grant made elsewhere. */
static void
test_held_and_alternatives(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;
	size_t alt[8], k;

	(void)state;
	fx_add(f, POOL_MAIN, 10, 1);
	fx_add(f, POOL_MAIN, 10, 1);
	fx_add(f, POOL_MAIN, 10, 1);
	fx_add(f, POOL_FALLBACK, 10, 1);
	sched_request_init(&rq);
	/* Key 1 used 5 of 10, key 2 held: alternatives to key 0 are key 1 only. */
	for (int i = 0; i < 5; i++)
		sched_record(&f->sp[1], SCHED_POOL_MAIN, &rq, &f->c, 1000);
	f->sp[2].held_until_ms = 3000;
	k = sched_alternatives(f->cand, f->n, NULL, 0, SCHED_POOL_MAIN, 1000, alt, 8);
	assert_int_equal(k, 1);
	assert_int_equal(alt[0], 1);
	assert_int_equal(sched_provider_state(&f->sp[2], &f->c, 1000), SCHED_ST_FULL);
	assert_int_equal(sched_provider_state(&f->sp[2], &f->c, 3000), SCHED_ST_READY);
	/* Room order: with key 2 free again, it (empty) comes before key 1 (half used). */
	k = sched_alternatives(f->cand, f->n, NULL, 0, SCHED_POOL_MAIN, 3000, alt, 8);
	assert_int_equal(k, 2);
	assert_int_equal(alt[0], 2);
	assert_int_equal(alt[1], 1);
	assert_int_equal(sched_alternatives(f->cand, f->n, NULL, 0, SCHED_POOL_EMERGENCY, 3000, alt, 8), 0);
	assert_int_equal(sched_alternatives(f->cand, f->n, NULL, 0, SCHED_POOL_MAIN, 3000, alt, 1), 1);
	/* sched_record: the start is on the window, the key in the tried-set. */
	assert_int_equal(ratelimit_used(&f->sp[1].rl, 1000), 5);
	assert_int_equal(rq.attempts, 5);
	assert_true(sched_request_tried(&rq, &f->sp[1]));
	k = sched_alternatives(f->cand, f->n, &rq, 0, SCHED_POOL_MAIN, 3000, alt, 8);
	assert_int_equal(k, 1);
	/* Every main key held: WAIT until the first hold ends, not the fallback pool. */
	for (int i = 0; i < 3; i++)
		f->sp[i].held_until_ms = 5000 + i * 100;
	d = fx_decide(f, NULL, 4000);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_MAIN_FULL);
	assert_int_equal(d.until_ms, 5000);
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 4000), 5000);
	assert_int_equal(sched_next_free(f->cand, f->n, &f->c, 4000), 4000);	/* the fallback key is free */
	d = fx_decide(f, NULL, 5000);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.index, 0);
	fx_free(f);
}

/* Live effective weights: a half-used key gets half the share. */
static void
test_effective_weights(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	int count[2] = { 0 };

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_fill(f, 1, 0);
	/* Free half of key 1's window by resizing it: 20 used of 40. */
	sched_provider_free(&f->sp[1]);
	sched_provider_init(&f->sp[1], &f->pv[1], &f->c);
	for (int k = 0; k < 20; k++) {
		sched_request_init(&rq);
		assert_int_equal(sched_commit(&f->sp[1], SCHED_POOL_MAIN, &rq, &f->c, 0), 0);
	}
	sched_request_init(&rq);
	for (int k = 0; k < 3000; k++) {
		struct sched_decision d = fx_decide(f, &rq, 10);	/* decide only, no commit */

		assert_int_equal(d.verdict, SCHED_GO);
		count[d.index]++;
	}
	assert_int_equal(count[0], 2000);
	assert_int_equal(count[1], 1000);
	fx_free(f);
}

/* Every main key merely full (demand above capacity): WAIT for the window to
 * slide, never the fallback pool. */
static void
test_main_full_waits(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;
	const int64_t span = 60500;

	(void)state;
	fx_add(f, POOL_MAIN, 2, 1);
	fx_add(f, POOL_MAIN, 2, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_fill(f, 0, 100);
	fx_fill(f, 1, 200);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 300);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_MAIN_FULL);
	assert_int_equal(d.until_ms, 100 + span);
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 300), 100 + span);
	/* Even with a main key cooling for long, a full one means WAIT. */
	fx_cool(f, 1, 1000000);
	d = fx_decide(f, &rq, 300);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.until_ms, 100 + span);
	/* Exactly when the slot frees: GO on that key. */
	d = fx_decide(f, &rq, 100 + span - 1);
	assert_int_equal(d.verdict, SCHED_WAIT);
	d = fx_decide(f, &rq, 100 + span);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.index, 0);
	assert_int_equal(d.pool, SCHED_POOL_MAIN);
	fx_free(f);
}

/* All main cooling, one recovers in 8 s: WAIT for it (recover_wait 10 s). */
static void
test_main_recovers_soon_waits(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_cool(f, 0, 1000 + 30000);
	fx_cool(f, 1, 1000 + 8000);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 1000);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_MAIN_RECOVERING);
	assert_int_equal(d.until_ms, 9000);
	/* Exactly 10 s away still waits; the boundary is inclusive. */
	fx_cool(f, 1, 1000 + 10000);
	d = fx_decide(f, &rq, 1000);
	assert_int_equal(d.verdict, SCHED_WAIT);
	d = fx_decide(f, &rq, 11000);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.index, 1);
	assert_int_equal(d.pool, SCHED_POOL_MAIN);
	fx_free(f);
}

/* All main cooling, the soonest recovers in 20 s: GO fallback. */
static void
test_main_recovers_late_fallback(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_cool(f, 0, 1000 + 20000);
	fx_cool(f, 1, 1000 + 25000);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 1000);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.pool, SCHED_POOL_FALLBACK);
	assert_int_equal(d.why, SCHED_WHY_FALLBACK);
	assert_int_equal(d.index, 2);
	d = fx_decide(f, &rq, 1000);
	assert_int_equal(d.index, 3);		/* WRR within the fallback pool */
	/* 10 s before the main key recovers the decision turns to WAIT. */
	d = fx_decide(f, &rq, 11000);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.until_ms, 21000);
	/* Main keys unusable (unhealthy, invalid, disabled): fallback, no wait. */
	f->sp[0].cd.unhealthy = true;
	f->sp[1].cd.invalid = true;
	d = fx_decide(f, &rq, 11000);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.pool, SCHED_POOL_FALLBACK);
	f->sp[1].cd.invalid = false;
	f->pv[1].status = PSTATUS_DISABLED;
	d = fx_decide(f, &rq, 11000);
	assert_int_equal(d.pool, SCHED_POOL_FALLBACK);
	/* Fallback keys merely full: WAIT for their windows. */
	fx_fill(f, 2, 11000);
	fx_fill(f, 3, 11500);
	d = fx_decide(f, &rq, 12000);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_FALLBACK_FULL);
	assert_int_equal(d.until_ms, 11000 + 60500);
	fx_free(f);
}

/* Fallback all cooling: the emergency channel on the key whose cooldown ends
 * soonest, max(1, floor(40 × 0.1)) = 4 starts per window, then REJECT. */
static void
test_emergency(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;
	const int64_t now = 1000;

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	fx_cool(f, 0, now + 120000);
	fx_cool(f, 1, now + 45000);		/* ends soonest */
	fx_cool(f, 2, now + 60000);
	for (int k = 0; k < 4; k++) {
		sched_request_init(&rq);
		d = fx_decide(f, &rq, now + k);
		assert_int_equal(d.verdict, SCHED_GO);
		assert_int_equal(d.pool, SCHED_POOL_EMERGENCY);
		assert_int_equal(d.why, SCHED_WHY_EMERGENCY);
		assert_int_equal(d.index, 1);
		assert_int_equal(sched_commit(f->cand[1], d.pool, &rq, &f->c, now + k), 0);
		assert_true(rq.emergency_used);
	}
	/* The emergency starts count in the key's own window too. */
	assert_int_equal(ratelimit_used(&f->sp[1].rl, now + 4), 4);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, now + 10);
	assert_int_equal(d.verdict, SCHED_REJECT);
	assert_int_equal(d.why, SCHED_WHY_EXHAUSTED);
	/* Retry-After: until the earliest key frees (45 s − 10 ms, rounded up). */
	assert_int_equal(d.retry_after_seconds, 45);
	/* Commit refuses a stale emergency decision. */
	assert_int_equal(sched_commit(f->cand[1], SCHED_POOL_EMERGENCY, &rq, &f->c, now + 10), -1);
	assert_int_equal(ratelimit_used(&f->sp[1].rl, now + 10), 4);
	fx_free(f);
}

/* Budget floor: a 5-RPM key still gets one emergency start per window, and
 * the budget comes back when the window slides. */
static void
test_emergency_budget_floor(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 5, 1);
	fx_cool(f, 0, 10000000);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 0);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.pool, SCHED_POOL_EMERGENCY);
	assert_int_equal(sched_commit(f->cand[0], d.pool, &rq, &f->c, 0), 0);
	/* The same request may not use the emergency channel twice. */
	d = fx_decide(f, &rq, 60500);
	assert_int_equal(d.verdict, SCHED_REJECT);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 60499);
	assert_int_equal(d.verdict, SCHED_REJECT);
	d = fx_decide(f, &rq, 60500);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.pool, SCHED_POOL_EMERGENCY);
	/* A reload raising the ratio raises the budget. */
	f->c.emergency_rpm_ratio = 0.5;		/* floor(2.5) = 2 */
	assert_int_equal(sched_commit(f->cand[0], d.pool, &rq, &f->c, 60500), 0);
	sched_request_init(&rq);
	assert_int_equal(fx_decide(f, &rq, 60501).verdict, SCHED_GO);
	fx_free(f);
}

/* The tried-set keeps a retry off the keys it used; covering all → REJECT. */
static void
test_tried_set(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 0);
	assert_int_equal(d.index, 0);
	assert_int_equal(sched_commit(f->cand[0], d.pool, &rq, &f->c, 0), 0);
	assert_true(sched_request_tried(&rq, f->cand[0]));
	assert_true(sched_may_retry(&rq, &f->c));
	d = fx_decide(f, &rq, 5);
	assert_int_equal(d.index, 1);
	assert_int_equal(sched_commit(f->cand[1], d.pool, &rq, &f->c, 5), 0);
	/* Both main keys tried (and still fine): the fallback serves the retry. */
	d = fx_decide(f, &rq, 10);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(d.index, 2);
	assert_int_equal(d.pool, SCHED_POOL_FALLBACK);
	assert_int_equal(sched_commit(f->cand[2], d.pool, &rq, &f->c, 10), 0);
	assert_false(sched_may_retry(&rq, &f->c));	/* max_attempts = 3 */
	/* Everything tried: REJECT (keys are free, so Retry-After is short). */
	d = fx_decide(f, &rq, 15);
	assert_int_equal(d.verdict, SCHED_REJECT);
	assert_int_equal(d.why, SCHED_WHY_NO_PROVIDER);
	assert_int_equal(d.retry_after_seconds, 1);
	/* A tried key that is full does not make the request wait. */
	sched_request_free(&rq);
	sched_request_init(&rq);
	fx_fill(f, 1, 20);
	assert_int_equal(sched_commit(f->cand[0], SCHED_POOL_MAIN, &rq, &f->c, 20), 0);
	d = fx_decide(f, &rq, 20);
	assert_int_equal(d.verdict, SCHED_WAIT);		/* key 1 is untried and full */
	assert_int_equal(sched_commit(f->cand[1], SCHED_POOL_MAIN, &rq, &f->c, 20), -1);
	rq.ntried = 2;
	memcpy(rq.tried[1].id, f->pv[1].id, sizeof(rq.tried[1].id));
	d = fx_decide(f, &rq, 20);
	assert_int_equal(d.pool, SCHED_POOL_FALLBACK);
	sched_request_free(&rq);
	fx_free(f);
}

/* Nothing usable at all: REJECT with the default Retry-After. */
static void
test_reject_default(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 0);			/* no candidates */
	assert_int_equal(d.verdict, SCHED_REJECT);
	assert_int_equal(d.retry_after_seconds, 30);
	fx_add(f, POOL_MAIN, 40, 1);
	fx_add(f, POOL_FALLBACK, 40, 1);
	f->sp[0].cd.unhealthy = true;
	f->pv[1].status = PSTATUS_INVALID;
	d = fx_decide(f, &rq, 0);
	assert_int_equal(d.verdict, SCHED_REJECT);
	assert_int_equal(d.why, SCHED_WHY_NO_PROVIDER);
	assert_int_equal(d.retry_after_seconds, 30);
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 0), INT64_MAX);
	fx_free(f);
}

/* States for /health, the timer helper and probes. */
static void
test_states_timer_probe(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;

	(void)state;
	for (int i = 0; i < 6; i++)
		fx_add(f, POOL_MAIN, 2, 1);
	fx_fill(f, 1, 0);
	fx_cool(f, 2, 5000);
	f->sp[3].cd.unhealthy = true;
	f->sp[3].cd.next_probe_ms = 30000;
	f->sp[4].cd.invalid = true;
	f->pv[5].status = PSTATUS_DISABLED;
	assert_int_equal(sched_provider_state(f->cand[0], &f->c, 100), SCHED_ST_READY);
	assert_int_equal(sched_provider_state(f->cand[1], &f->c, 100), SCHED_ST_FULL);
	assert_int_equal(sched_provider_state(f->cand[2], &f->c, 100), SCHED_ST_COOLING);
	assert_int_equal(sched_provider_state(f->cand[3], &f->c, 100), SCHED_ST_UNHEALTHY);
	assert_int_equal(sched_provider_state(f->cand[4], &f->c, 100), SCHED_ST_INVALID);
	assert_int_equal(sched_provider_state(f->cand[5], &f->c, 100), SCHED_ST_DISABLED);
	assert_string_equal(sched_state_name(SCHED_ST_COOLING), "cooling");
	assert_string_equal(sched_pool_name(SCHED_POOL_EMERGENCY), "emergency");
	/* Next change: the cooldown end (5000) before key 1's slot (60500). */
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 100), 5000);
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 5000), 60500);
	assert_int_equal(sched_next_probe(f->cand, f->n), 30000);
	/* Probe: not before it is due; then it takes a window slot. */
	assert_false(sched_probe_start(f->cand[3], &f->c, 29999));
	assert_true(sched_probe_start(f->cand[3], &f->c, 30000));
	assert_int_equal(ratelimit_used(&f->sp[3].rl, 30000), 1);
	assert_int_equal(f->sp[3].cd.next_probe_ms, 60000);
	assert_false(sched_probe_start(f->cand[3], &f->c, 30001));
	/* A probe never overruns the window: it waits for a slot. */
	sched_request_init(&rq);
	assert_int_equal(sched_commit(f->cand[3], SCHED_POOL_MAIN, &rq, &f->c, 59000), 0);
	assert_false(sched_probe_start(f->cand[3], &f->c, 60000));
	assert_int_equal(f->sp[3].cd.next_probe_ms, 30000 + 60500);
	fx_free(f);
}

/* Reload: limits change with history kept; re-enabling clears our invalid mark. */
static void
test_reload_sync(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 4, 1);
	fx_fill(f, 0, 0);
	sched_request_init(&rq);
	assert_int_equal(fx_decide(f, &rq, 10).verdict, SCHED_WAIT);
	f->pv[0].rpm_limit = 6;				/* operator raised the limit */
	d = fx_decide(f, &rq, 10);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(sched_commit(f->cand[0], d.pool, &rq, &f->c, 10), 0);
	assert_int_equal(ratelimit_used(&f->sp[0].rl, 10), 5);
	f->c.rpm_window_seconds = 3;			/* window shortened */
	f->c.rpm_window_margin_ms = 0;
	sched_request_init(&rq);
	assert_int_equal(fx_decide(f, &rq, 2999).verdict, SCHED_GO);
	assert_int_equal(ratelimit_used(&f->sp[0].rl, 3000), 1);

	/* 401 → invalid in memory; the database says invalid; the operator
	 * fixes the key and sets it active: usable again. */
	f->sp[0].cd.invalid = true;
	assert_int_equal(fx_decide(f, &rq, 5000).verdict, SCHED_REJECT);
	f->pv[0].status = PSTATUS_INVALID;
	assert_int_equal(fx_decide(f, &rq, 5000).verdict, SCHED_REJECT);
	f->pv[0].status = PSTATUS_ACTIVE;
	assert_int_equal(fx_decide(f, &rq, 5000).verdict, SCHED_GO);
	fx_free(f);
}

/* Every entry point re-applies the settings, but returns at once while they
 * are what it applied last: each input, changed in place between two
 * decisions, still takes effect at the next one (a TPM limit set after the
 * provider was added, a longer margin, a lower learned limit and back). */
static void
test_sync_inputs(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;

	(void)state;
	fx_add(f, POOL_MAIN, 4, 1);
	sched_request_init(&rq);
	assert_int_equal(sched_commit(f->cand[0], SCHED_POOL_MAIN, &rq, &f->c, 0), 0);
	assert_int_equal(f->sp[0].rl.tpm_limit, 0);
	f->pv[0].tpm_limit = 1000;
	ratelimit_record_tokens(&f->sp[0].rl, 10, 1500);
	sched_request_init(&rq);
	assert_int_equal(fx_decide(f, &rq, 20).verdict, SCHED_WAIT);	/* over the new TPM limit */
	assert_int_equal(f->sp[0].rl.tpm_limit, 1000);
	f->pv[0].tpm_limit = 0;
	assert_int_equal(fx_decide(f, &rq, 20).verdict, SCHED_GO);
	f->c.rpm_window_margin_ms = 700;
	assert_int_equal(fx_decide(f, &rq, 20).verdict, SCHED_GO);
	assert_int_equal(f->sp[0].rl.span_ms, (int64_t)f->c.rpm_window_seconds * 1000 + 700);
	f->c.learn_limits = 1;
	f->sp[0].learn.eff = 1;				/* learned: one start per window */
	assert_int_equal(fx_decide(f, &rq, 20).verdict, SCHED_WAIT);
	assert_int_equal(f->sp[0].rl.admit, 1);
	f->sp[0].learn.eff = 0;				/* given back */
	assert_int_equal(fx_decide(f, &rq, 20).verdict, SCHED_GO);
	assert_int_equal(f->sp[0].rl.admit, 4);
	fx_free(f);
}

/* TPM in the decision: a key over its token budget waits like a full one. */
static void
test_tpm_wait(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;

	(void)state;
	f->pv[0].tpm_limit = 1000;			/* set before add */
	fx_add(f, POOL_MAIN, 40, 1);
	f->pv[0].tpm_limit = 1000;
	sched_request_init(&rq);
	assert_int_equal(sched_commit(f->cand[0], SCHED_POOL_MAIN, &rq, &f->c, 0), 0);
	ratelimit_record_tokens(&f->sp[0].rl, 2000, 1500);
	sched_request_init(&rq);
	d = fx_decide(f, &rq, 2500);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_MAIN_FULL);
	assert_int_equal(d.until_ms, 2000 + 60500);
	fx_free(f);
}

/* ---- simulation ---- */

struct simreq {
	struct queue_node    qn;
	struct sched_request rq;
	int64_t              arrived;
	int                  fate;	/* 0 pending, 1 served, 2 rejected full, 3 timed out, 4 rejected */
};

struct sim {
	struct fx   *f;
	struct queue q;
	int64_t     *starts[FX_MAX];	/* per provider, in order */
	int          nstarts[FX_MAX];
	int64_t      max_wait;
};

static void
sim_go(struct sim *s, struct simreq *r, const struct sched_decision *d, int64_t now)
{
	size_t i = d->index;

	assert_int_equal(sched_commit(s->f->cand[i], d->pool, &r->rq, &s->f->c, now), 0);
	assert_int_equal(d->pool, SCHED_POOL_MAIN);
	s->starts[i][s->nstarts[i]++] = now;
	r->fate = 1;
	if (now - r->arrived > s->max_wait)
		s->max_wait = now - r->arrived;
}

/* Walk the queue in service order; GO unlinks and starts. */
static void
sim_service(struct sim *s, int64_t now)
{
	struct queue_node *n, *next;

	for (n = queue_first(&s->q); n != NULL; n = next) {
		struct simreq *r = n->owner;
		struct sched_decision d;

		next = queue_next(&s->q, n);
		d = sched_decide(s->f->cand, s->f->n, &r->rq, &s->f->c, now);
		if (d.verdict == SCHED_WAIT)
			continue;
		queue_remove(&s->q, n);
		if (d.verdict == SCHED_GO)
			sim_go(s, r, &d, now);
		else
			r->fate = 4;
	}
}

/* Eleven 40-RPM keys on a 3 s window (+20 ms margin), demand twice the
 * capacity for eight windows, driven as the data plane will: decide on
 * arrival when nobody waits, else queue; one timer at min(next deadline,
 * next provider change); the queue is only looked at on arrivals and when
 * that timer fires. No window may exceed a limit; the keys must be busy. */
static void
test_simulation(void **state)
{
	struct sim s;
	const int nkeys = 11, rpm = 40;
	const int64_t span = 3000 + 20;
	const int nreq = 8 * 2 * nkeys * rpm;	/* 2× capacity per window, 8 windows */
	const int64_t horizon = 8 * 3000;
	struct simreq *reqs = calloc((size_t)nreq, sizeof(*reqs));
	int next_arrival = 0, fates[5] = { 0 };
	int64_t now = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.f = fx_new();
	s.f->c.rpm_window_seconds = 3;
	s.f->c.rpm_window_margin_ms = 20;
	s.f->c.queue_timeout_seconds = 3;
	queue_init(&s.q);
	for (int i = 0; i < nkeys; i++) {
		fx_add(s.f, POOL_MAIN, rpm, 1);
		s.starts[i] = calloc((size_t)nreq, sizeof(int64_t));
	}
	assert_non_null(reqs);

	for (;;) {
		int64_t t_arr = next_arrival < nreq ? (int64_t)next_arrival * horizon / nreq : INT64_MAX;
		int64_t t_timer = INT64_MAX;
		struct queue_node *n;

		if (queue_len(&s.q) > 0) {
			t_timer = queue_next_deadline(&s.q);
			int64_t t2 = sched_next_change(s.f->cand, s.f->n, &s.f->c, now);
			if (t2 < t_timer)
				t_timer = t2;
		}
		now = t_arr < t_timer ? t_arr : t_timer;
		if (now == INT64_MAX)
			break;
		while ((n = queue_pop_expired(&s.q, now)) != NULL)
			((struct simreq *)n->owner)->fate = 3;
		while (next_arrival < nreq && (int64_t)next_arrival * horizon / nreq == now) {
			struct simreq *r = &reqs[next_arrival++];

			r->arrived = now;
			sched_request_init(&r->rq);
			queue_node_init(&r->qn, r);
			if (queue_len(&s.q) == 0) {
				struct sched_decision d = sched_decide(s.f->cand, s.f->n, &r->rq, &s.f->c, now);

				if (d.verdict == SCHED_GO) {
					sim_go(&s, r, &d, now);
					continue;
				}
				assert_int_equal(d.verdict, SCHED_WAIT);
			}
			if (queue_push(&s.q, &r->qn, QUEUE_NORMAL, now,
			    (int64_t)s.f->c.queue_timeout_seconds * 1000, (size_t)s.f->c.queue_capacity) != 0)
				r->fate = 2;
		}
		sim_service(&s, now);
	}

	for (int k = 0; k < nreq; k++) {
		assert_true(reqs[k].fate >= 1 && reqs[k].fate <= 3);
		fates[reqs[k].fate]++;
	}
	assert_true(s.max_wait <= 3000);
	assert_int_equal(fates[1] + fates[2] + fates[3], nreq);
	assert_true(fates[2] > 0);		/* overflow happened: demand really was 2× */

	for (int i = 0; i < nkeys; i++) {
		int64_t *st = s.starts[i];

		/* No window of span (so none of the nominal 3 s) holds more than rpm. */
		for (int a = 0, b = 0; a < s.nstarts[i]; a++) {
			while (st[b] <= st[a] - span)
				b++;
			assert_true(a - b + 1 <= rpm);
		}
		/* Busy: every span-long period of the overloaded run is full. */
		for (int w = 0; w < 7; w++) {
			int cnt = 0;

			for (int a = 0; a < s.nstarts[i]; a++)
				cnt += st[a] >= w * span && st[a] < (w + 1) * span;
			assert_true(cnt >= rpm * 99 / 100);
		}
	}
	/* Utilisation over the whole overloaded run: at least 99% of what the
	 * exact window allows, keys × rpm per span. */
	{
		int total = 0;
		const int64_t run = 7 * span;

		for (int i = 0; i < nkeys; i++)
			for (int a = 0; a < s.nstarts[i]; a++)
				total += s.starts[i][a] < run;
		assert_true((double)total >= 0.99 * nkeys * rpm * 7);
	}

	for (int i = 0; i < nkeys; i++)
		free(s.starts[i]);
	free(reqs);
	fx_free(s.f);
}

/* Commit one attempt of rq on provider i at now (the caller's decision). */
static void
fx_send(struct fx *f, size_t i, struct sched_request *rq, int64_t now)
{
	assert_int_equal(sched_commit(f->cand[i], SCHED_POOL_MAIN, rq, &f->c, now), 0);
}

/* 429 answered at now to rq's last commit on provider i: cooldown + learning. */
static struct cooldown_result
fx_answer(struct fx *f, size_t i, const struct sched_request *rq, int status, int64_t now)
{
	struct cooldown_outcome o;
	struct cooldown_result r;

	memset(&o, 0, sizeof(o));
	o.status = status;
	o.sent = rq->stamp;
	o.retry_after_ms = -1;
	r = cooldown_on_outcome(&f->sp[i].cd, &f->c, now, &o);
	sched_note_outcome(&f->sp[i], &f->c, rq, &r, status, now);
	return r;
}

/* The learned-limit rule on its own: a believable 429 (>= half) sets the
 * limit to the window count and caps recovery below the bad count until it
 * is forgotten; an isolated 429 at 2 of 40 costs at most half for one
 * window and is fully back after five clean windows. */
static void
test_learn_rule(void **state)
{
	struct sched_learn l;
	const int64_t span = 1000;

	(void)state;
	memset(&l, 0, sizeof(l));
	assert_true(sched_learn_cut(&l, 40, 25, 0));
	assert_int_equal(sched_learn_limit(&l, 40), 25);
	assert_int_equal(l.bad, 26);
	/* Clean windows: capped at 25 (26 met a 429) ... */
	for (int w = 1; w < SCHED_LEARN_FORGET; w++) {
		sched_learn_tick(&l, 40, span, w * span);
		assert_int_equal(sched_learn_limit(&l, 40), 25);
	}
	/* ... until it is forgotten; then a tenth of 40 per clean window. */
	sched_learn_tick(&l, 40, span, SCHED_LEARN_FORGET * span);
	assert_int_equal(sched_learn_limit(&l, 40), 29);
	assert_int_equal(l.bad, 0);
	sched_learn_tick(&l, 40, span, (SCHED_LEARN_FORGET + 3) * span);
	assert_int_equal(sched_learn_limit(&l, 40), 40);
	assert_int_equal(l.eff, 0);

	/* Isolated 429 at 2 of 40: halved, not 2, and no ceiling kept. */
	memset(&l, 0, sizeof(l));
	assert_true(sched_learn_cut(&l, 40, 2, 0));
	assert_int_equal(sched_learn_limit(&l, 40), 20);
	assert_int_equal(l.bad, 0);
	sched_learn_tick(&l, 40, span, 999);
	assert_int_equal(sched_learn_limit(&l, 40), 20);	/* not a full window yet */
	for (int w = 1; w <= 5; w++)
		sched_learn_tick(&l, 40, span, w * span);
	assert_int_equal(sched_learn_limit(&l, 40), 40);
	/* At most halve per cut: 40 -> 20 -> 10 -> 5 -> 3 -> 2 -> 1, never 0. */
	memset(&l, 0, sizeof(l));
	for (int k = 0; k < 8; k++)
		sched_learn_cut(&l, 40, 0, 0);
	assert_int_equal(sched_learn_limit(&l, 40), 1);
	/* A 429 at the limit itself teaches nothing. */
	memset(&l, 0, sizeof(l));
	assert_false(sched_learn_cut(&l, 40, 40, 0));
	assert_int_equal(sched_learn_limit(&l, 40), 40);
}

/* Through sched: the 26th start of a 40 key meets 429 -> effective 25, used
 * by admission, weights and the emergency budget; the in-flight 429s of the
 * same burst (same episode) add no step and no second cut; learning off
 * keeps the configured limit. */
static void
test_learned_in_sched(void **state)
{
	struct fx *f = fx_new();
	struct sched_request rq[40];
	struct cooldown_result r;
	int steps = 0;

	(void)state;
	f->c.rpm_window_seconds = 1;
	f->c.rpm_window_margin_ms = 0;
	f->c.cooldown_base_seconds = 1;
	fx_add(f, POOL_MAIN, 40, 1);
	for (int i = 0; i < 40; i++) {
		sched_request_init(&rq[i]);
		fx_send(f, 0, &rq[i], 0);	/* all in the same millisecond */
	}
	assert_int_equal(rq[25].sent_used, 25);
	for (int i = 25; i < 40; i++) {
		r = fx_answer(f, 0, &rq[i], 429, 0);	/* answered in the same millisecond */
		steps += r.cooldown_started;
	}
	assert_int_equal(steps, 1);
	assert_int_equal(f->sp[0].cd.consecutive_429, 1);
	assert_int_equal(sched_limit_effective(&f->sp[0], &f->c), 25);
	assert_int_equal(f->sp[0].emergency.limit, 2);		/* floor(25 * 0.1) */
	/* After the cooldown and the window: 25 starts, not 40. */
	{
		struct sched_request q;
		int n = 0;

		sched_request_init(&q);
		while (sched_commit(f->cand[0], SCHED_POOL_MAIN, &q, &f->c, 1000) == 0 && n < 100) {
			n++;
			if (n == 1) {	/* the half-open probe answers 200: full capacity */
				r = fx_answer(f, 0, &q, 200, 1000);
				assert_true(r.recovered);
			}
		}
		assert_int_equal(n, 25);
	}
	/* Learning off: the configured limit is in force again. */
	f->c.learn_limits = 0;
	assert_int_equal(sched_limit_effective(&f->sp[0], &f->c), 40);
	(void)sched_provider_state(&f->sp[0], &f->c, 0);	/* syncs */
	assert_int_equal(f->sp[0].rl.admit, 40);
	fx_free(f);
}

/* Half-open in sched: after a cooldown one request goes (the probe); the
 * others WAIT until it answers; state "probing". */
static void
test_half_open_sched(void **state)
{
	struct fx *f = fx_new();
	struct sched_request a, b;
	struct sched_decision d;

	(void)state;
	fx_add(f, POOL_MAIN, 40, 1);
	sched_request_init(&a);
	fx_send(f, 0, &a, 0);
	(void)fx_answer(f, 0, &a, 429, 10);
	assert_int_equal(sched_provider_state(&f->sp[0], &f->c, 20), SCHED_ST_COOLING);
	assert_int_equal(sched_provider_state(&f->sp[0], &f->c, 30010), SCHED_ST_PROBING);
	assert_string_equal(sched_state_name(SCHED_ST_PROBING), "probing");
	sched_request_init(&a);
	sched_request_init(&b);
	d = fx_decide(f, &a, 30010);
	assert_int_equal(d.verdict, SCHED_GO);
	fx_send(f, 0, &a, 30010);
	assert_true(a.stamp.probe);
	d = fx_decide(f, &b, 30010);
	assert_int_equal(d.verdict, SCHED_WAIT);		/* the probe is out */
	assert_int_equal(sched_commit(f->cand[0], SCHED_POOL_MAIN, &b, &f->c, 30010), -1);
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 30010), INT64_MAX);	/* the answer wakes */
	(void)fx_answer(f, 0, &a, 200, 30020);
	d = fx_decide(f, &b, 30020);
	assert_int_equal(d.verdict, SCHED_GO);
	assert_int_equal(sched_provider_state(&f->sp[0], &f->c, 30020), SCHED_ST_READY);
	fx_free(f);
}

/* sched_record (a grant made by a shared window) keeps sched_commit's
 * books: the episode stamp and window counts a 429 is judged by, the model
 * window, the half-open probe; a second grant while the probe is out
 * records nothing. */
static void
test_record_books(void **state)
{
	struct fx *f = fx_new();
	struct provider_model_rpm mr[1];
	struct sched_request a, b;
	struct cooldown_result r;
	struct sched_model *m;

	(void)state;
	mr[0].model = (char *)"big";
	mr[0].rpm = 3;
	fx_add(f, POOL_MAIN, 40, 1);
	f->pv[0].model_rpm = mr;
	f->pv[0].n_model_rpm = 1;
	f->sp[0].models_of = NULL;
	(void)sched_provider_state(&f->sp[0], &f->c, 0);
	m = sched_model_of(&f->sp[0], "big");
	assert_non_null(m);
	sched_request_init(&a);
	a.model = "big";
	assert_int_equal(sched_record(&f->sp[0], SCHED_POOL_MAIN, &a, &f->c, 0), 0);
	assert_int_equal(a.sent_used, 0);
	assert_int_equal(a.sent_model_used, 0);
	assert_int_equal(ratelimit_used(&m->rl, 0), 1);
	assert_int_equal(ratelimit_used(&f->sp[0].rl, 0), 1);
	assert_int_equal(a.attempts, 1);
	assert_true(sched_request_tried(&a, &f->sp[0]));
	/* Its 429 is current: one episode, cooling, then half-open. */
	r = fx_answer(f, 0, &a, 429, 10);
	assert_true(r.cooldown_started);
	assert_int_equal(sched_provider_state(&f->sp[0], &f->c, 30010), SCHED_ST_PROBING);
	sched_request_init(&a);
	sched_request_init(&b);
	assert_int_equal(sched_record(&f->sp[0], SCHED_POOL_MAIN, &a, &f->c, 30010), 0);
	assert_true(a.stamp.probe);
	assert_int_equal(a.stamp.episode, f->sp[0].cd.episode);
	assert_int_equal(a.sent_used, 1);	/* the first start is still in the 60 s window */
	assert_int_equal(a.sent_model_used, -1);	/* no model: no model window */
	assert_int_equal(sched_record(&f->sp[0], SCHED_POOL_MAIN, &b, &f->c, 30010), -1);
	assert_int_equal(b.attempts, 0);
	assert_int_equal(ratelimit_used(&f->sp[0].rl, 30010), 2);
	/* The probe's 200 reopens the key: the next grant is no probe. */
	(void)fx_answer(f, 0, &a, 200, 30020);
	assert_int_equal(sched_record(&f->sp[0], SCHED_POOL_MAIN, &b, &f->c, 30020), 0);
	assert_false(b.stamp.probe);
	fx_free(f);
}

/* Per-model windows: a model with its own limit waits when its window is
 * full while other models flow; both windows must have room; the timer
 * wakes at the model window's exact free instant; learning cuts the model
 * window, not the key's. */
static void
test_model_windows(void **state)
{
	struct fx *f = fx_new();
	struct provider_model_rpm mr[1];
	struct sched_request q;
	struct sched_decision d;
	int conf, eff;

	(void)state;
	f->c.rpm_window_seconds = 1;
	f->c.rpm_window_margin_ms = 0;
	mr[0].model = (char *)"big";
	mr[0].rpm = 3;
	fx_add(f, POOL_MAIN, 10, 1);
	f->pv[0].model_rpm = mr;
	f->pv[0].n_model_rpm = 1;
	f->sp[0].models_of = NULL;	/* as after a reload */
	(void)sched_provider_state(&f->sp[0], &f->c, 0);	/* syncs */
	assert_int_equal(f->sp[0].nmodels, 1);
	for (int i = 0; i < 3; i++) {
		sched_request_init(&q);
		q.model = "big";
		d = fx_decide(f, &q, 100 + i);
		assert_int_equal(d.verdict, SCHED_GO);
		fx_send(f, 0, &q, 100 + i);
	}
	sched_request_init(&q);
	q.model = "big";
	d = fx_decide(f, &q, 200);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.until_ms, 1100);		/* the first "big" start leaves */
	assert_int_equal(sched_next_change(f->cand, f->n, &f->c, 200), 1100);
	/* Another model on the same key flows; so does no model. */
	for (int i = 0; i < 7; i++) {
		sched_request_init(&q);
		q.model = i % 2 ? "small" : NULL;
		d = fx_decide(f, &q, 300);
		assert_int_equal(d.verdict, SCHED_GO);
		fx_send(f, 0, &q, 300);
	}
	/* Key full now (10): "small" waits for the key. */
	sched_request_init(&q);
	q.model = "small";
	assert_int_equal(fx_decide(f, &q, 400).verdict, SCHED_WAIT);
	/* A 429 for "big" at 1 of 3 cuts big's window (to 2: at most half), not the key. */
	sched_request_init(&q);
	q.model = "big";
	fx_send(f, 0, &q, 1100);
	assert_int_equal(q.sent_model_used, 2);
	(void)fx_answer(f, 0, &q, 429, 1101);
	sched_model_limits(&f->sp[0], "big", &f->c, &conf, &eff);
	assert_int_equal(conf, 3);
	assert_int_equal(eff, 2);
	assert_int_equal(sched_limit_effective(&f->sp[0], &f->c), 10);
	sched_model_limits(&f->sp[0], "small", &f->c, &conf, &eff);
	assert_int_equal(conf, 0);
	f->pv[0].model_rpm = NULL;
	f->pv[0].n_model_rpm = 0;
	fx_free(f);
}

/* Revisit: one key, cooling 1 s, recover_wait 10 s: a request that tried it
 * waits for it and goes again (as the probe); a key that only failed with a
 * 5xx is not tried twice; cooldown beyond recover_wait -> REJECT. */
static void
test_revisit(void **state)
{
	struct fx *f = fx_new();
	struct sched_request q;
	struct sched_decision d;

	(void)state;
	f->c.cooldown_base_seconds = 1;
	fx_add(f, POOL_MAIN, 40, 1);
	sched_request_init(&q);
	fx_send(f, 0, &q, 0);
	(void)fx_answer(f, 0, &q, 429, 5);
	d = fx_decide(f, &q, 10);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_REVISIT);
	assert_int_equal(d.until_ms, 1005);
	d = fx_decide(f, &q, 1005);
	assert_int_equal(d.verdict, SCHED_GO);
	fx_send(f, 0, &q, 1005);
	assert_true(q.stamp.probe);
	assert_int_equal(q.attempts, 2);
	/* A 5xx does not start an episode: no second try on the same key. */
	(void)fx_answer(f, 0, &q, 500, 1010);
	d = fx_decide(f, &q, 1020);
	assert_int_equal(d.verdict, SCHED_REJECT);
	/* Cooling longer than recover_wait: REJECT at once. */
	f->c.cooldown_base_seconds = 60;
	sched_request_init(&q);
	fx_send(f, 0, &q, 2000);
	(void)fx_answer(f, 0, &q, 429, 2001);
	assert_int_equal(fx_decide(f, &q, 2002).verdict, SCHED_REJECT);
	fx_free(f);
}

/* More keys tried than a request holds in place (SCHED_TRIED_INLINE): the
 * rest of the tried-set is allocated and keeps retries off those keys too,
 * and a revisit sees the episode of one of them move on. */
static void
test_tried_set_many(void **state)
{
	enum { N = SCHED_TRIED_INLINE + 3 };
	struct fx *f = fx_new();
	struct sched_request rq;
	struct sched_decision d;
	bool seen[N] = { false };
	size_t last = 0;

	(void)state;
	f->c.max_attempts = N + 1;
	f->c.cooldown_base_seconds = 1;
	for (int i = 0; i < N; i++)
		fx_add(f, POOL_MAIN, 40, 1);
	sched_request_init(&rq);
	for (int i = 0; i < N; i++) {
		d = fx_decide(f, &rq, i);
		assert_int_equal(d.verdict, SCHED_GO);
		assert_true(d.index < N);
		last = (size_t)d.index;
		assert_false(seen[last]);
		assert_false(sched_request_tried(&rq, f->cand[last]));
		fx_send(f, last, &rq, i);
		seen[last] = true;
		assert_true(sched_request_tried(&rq, f->cand[last]));
	}
	assert_int_equal(rq.ntried, N);
	assert_non_null(rq.more);
	/* All tried and free: REJECT. */
	assert_int_equal(fx_decide(f, &rq, N).verdict, SCHED_REJECT);
	/* The last key (past the in-place entries) answers 429 and cools for
	 * 1 s: the request waits for it rather than giving up. */
	(void)fx_answer(f, last, &rq, 429, N);
	d = fx_decide(f, &rq, N + 1);
	assert_int_equal(d.verdict, SCHED_WAIT);
	assert_int_equal(d.why, SCHED_WHY_REVISIT);
	sched_request_free(&rq);
	assert_null(rq.more);
	fx_free(f);
}

/* The window store: a graceful stop restores exactly; a crash record
 * (ahead N) adds N starts at the restart; learned limits come back; a
 * garbage record is refused. */
static void
test_winstore(void **state)
{
	struct fx *f = fx_new(), *g = fx_new();
	struct sched_request q;
	char *rec;

	(void)state;
	f->c.rpm_window_seconds = 60;
	g->c.rpm_window_seconds = 60;
	fx_add(f, POOL_MAIN, 5, 1);
	fx_add(g, POOL_MAIN, 5, 1);
	for (int i = 0; i < 5; i++) {
		sched_request_init(&q);
		fx_send(f, 0, &q, 1000 + i);
	}
	f->sp[0].learn.eff = 4;
	/* Clean stop at monotonic 2000 = wall 1e12 + 2000; restart at monotonic 50, wall + 3000. */
	rec = winstore_encode(&f->sp[0], 2000, 1000000002000LL, 0);
	assert_int_equal(winstore_restore(&g->sp[0], rec, 50, 1000000005000LL), 0);
	free(rec);
	(void)sched_provider_state(&g->sp[0], &g->c, 50);
	assert_int_equal(ratelimit_used(&g->sp[0].rl, 50), 5);
	assert_int_equal(sched_limit_effective(&g->sp[0], &g->c), 4);
	/* The first restored start (wall +1000) leaves at its true time: restart + 58 s. */
	assert_int_equal(ratelimit_next_free(&g->sp[0].rl, 50), 50 - 4000 + 60500 + 1);
	/* A crash record with ahead 1 and no starts: one start assumed at the restart. */
	fx_free(g);
	g = fx_new();
	fx_add(g, POOL_MAIN, 5, 1);
	assert_int_equal(winstore_restore(&g->sp[0], "{\"v\":1,\"ahead\":1,\"starts\":[]}", 10, 5000), 0);
	assert_int_equal(ratelimit_used(&g->sp[0].rl, 10), 1);
	assert_int_equal(winstore_ahead(&g->sp[0]), 1);
	assert_int_equal(winstore_restore(&g->sp[0], "not json", 10, 5000), -1);
	assert_int_equal(winstore_restore(&g->sp[0], "{\"v\":2}", 10, 5000), -1);
	fx_free(f);
	fx_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_main_ok),
		cmocka_unit_test(test_held_and_alternatives),
		cmocka_unit_test(test_record_books),
		cmocka_unit_test(test_learn_rule),
		cmocka_unit_test(test_learned_in_sched),
		cmocka_unit_test(test_half_open_sched),
		cmocka_unit_test(test_model_windows),
		cmocka_unit_test(test_revisit),
		cmocka_unit_test(test_winstore),
		cmocka_unit_test(test_effective_weights),
		cmocka_unit_test(test_main_full_waits),
		cmocka_unit_test(test_main_recovers_soon_waits),
		cmocka_unit_test(test_main_recovers_late_fallback),
		cmocka_unit_test(test_emergency),
		cmocka_unit_test(test_emergency_budget_floor),
		cmocka_unit_test(test_tried_set),
		cmocka_unit_test(test_tried_set_many),
		cmocka_unit_test(test_reject_default),
		cmocka_unit_test(test_states_timer_probe),
		cmocka_unit_test(test_reload_sync),
		cmocka_unit_test(test_sync_inputs),
		cmocka_unit_test(test_tpm_wait),
		cmocka_unit_test(test_simulation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
