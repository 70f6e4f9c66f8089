/*
 * The per-attempt scheduling decision: see sched.h for how the data plane
 * drives it and docs/scheduling.md for the reasoning behind the order.
 *
 * Decision order (SPEC §5.5), over the candidates not excluded (disabled,
 * invalid, unhealthy, already tried by this request):
 *   1. main providers with window room and not cooling → GO main by WRR;
 *   2. a main provider that only lacks window room → WAIT (ordinary queueing:
 *      the window slides; never spill to fallback because demand is high);
 *      a cooling main provider that frees within recover_wait_seconds → WAIT;
 *   3. fallback providers with room, not cooling → GO fallback by WRR;
 *   4. a fallback provider that only lacks window room → WAIT;
 *   5. the cooling provider (any pool) whose cooldown ends soonest, if its
 *      emergency budget and window have room and the request has not used
 *      the emergency channel yet → GO emergency;
 *   6. REJECT with the seconds until the earliest provider frees.
 */
#include <math.h>
#include <string.h>

#include "sched.h"

static int64_t
sched_min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static int64_t
sched_max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static int64_t
sched_span_ms(const struct config *c)
{
	int64_t span = (int64_t)c->rpm_window_seconds * 1000 + c->rpm_window_margin_ms;

	return span > 0 ? span : 1;
}

/* max(1, floor(rpm_limit × emergency_rpm_ratio)). */
static int
sched_emergency_budget(const struct provider *cfg, const struct config *c)
{
	double b = floor((double)cfg->rpm_limit * c->emergency_rpm_ratio);

	if (!(b >= 1))
		return 1;
	return b > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : (int)b;
}

static void sched_provider_sync(struct sched_provider *p, const struct config *c);

void
sched_provider_init(struct sched_provider *p, const struct provider *cfg, const struct config *c)
{
	memset(p, 0, sizeof(*p));
	ratelimit_init(&p->rl);
	ratelimit_init(&p->emergency);
	cooldown_init(&p->cd);
	p->cfg = cfg;
	p->seen_status = cfg->status;
	sched_provider_sync(p, c);
}

void
sched_provider_free(struct sched_provider *p)
{
	ratelimit_free(&p->rl);
	ratelimit_free(&p->emergency);
	p->cfg = NULL;
}

/* Apply p->cfg and c to the windows (limit, span, TPM, emergency budget),
 * keeping history; clears a stale invalid mark when the operator makes an
 * invalid/disabled key active again. Cheap; every entry point calls it. */
static void
sched_provider_sync(struct sched_provider *p, const struct config *c)
{
	int64_t span = sched_span_ms(c);

	ratelimit_configure(&p->rl, p->cfg->rpm_limit, span, p->cfg->tpm_limit);
	ratelimit_configure(&p->emergency, sched_emergency_budget(p->cfg, c), span, 0);
	if (p->cfg->status != p->seen_status) {
		/* The operator re-enabled (or replaced) the key: forget our own
		 * in-memory invalid mark, which the database no longer carries. */
		if (p->cfg->status == PSTATUS_ACTIVE)
			cooldown_clear_invalid(&p->cd);
		p->seen_status = p->cfg->status;
	}
}

/* Not disabled, not invalid, not unhealthy: may serve at some point. */
static bool
sched_usable(const struct sched_provider *p)
{
	return p->cfg->status == PSTATUS_ACTIVE && !p->cd.invalid && !p->cd.unhealthy;
}

/* When p (usable) can next take a start: cooldown end and window slot. */
static int64_t
sched_frees_at(struct sched_provider *p, int64_t now)
{
	int64_t t = ratelimit_next_free(&p->rl, now);

	if (cooldown_is_cooling(&p->cd, now))
		t = sched_max64(t, p->cd.cooldown_until_ms);
	return t;
}

enum sched_state
sched_provider_state(struct sched_provider *p, const struct config *c, int64_t now)
{
	sched_provider_sync(p, c);
	if (p->cfg->status == PSTATUS_DISABLED)
		return SCHED_ST_DISABLED;
	if (p->cfg->status == PSTATUS_INVALID || p->cd.invalid)
		return SCHED_ST_INVALID;
	if (p->cd.unhealthy)
		return SCHED_ST_UNHEALTHY;
	if (cooldown_is_cooling(&p->cd, now))
		return SCHED_ST_COOLING;
	if (!ratelimit_has_room(&p->rl, now))
		return SCHED_ST_FULL;
	return SCHED_ST_READY;
}

const char *
sched_state_name(enum sched_state s)
{
	switch (s) {
	case SCHED_ST_READY:		return "ok";	/* the name status, metrics and the dashboard show */
	case SCHED_ST_FULL:		return "full";
	case SCHED_ST_COOLING:		return "cooling";
	case SCHED_ST_UNHEALTHY:	return "unhealthy";
	case SCHED_ST_INVALID:		return "invalid";
	case SCHED_ST_DISABLED:		return "disabled";
	}
	return "?";
}

const char *
sched_pool_name(enum sched_pool p)
{
	switch (p) {
	case SCHED_POOL_MAIN:		return "main";
	case SCHED_POOL_FALLBACK:	return "fallback";
	case SCHED_POOL_EMERGENCY:	return "emergency";
	}
	return "?";
}

void
sched_request_init(struct sched_request *rq)
{
	memset(rq, 0, sizeof(*rq));
}

bool
sched_request_tried(const struct sched_request *rq, const struct sched_provider *p)
{
	if (rq == NULL)
		return false;
	for (int i = 0; i < rq->ntried; i++) {
		if (strcmp(rq->tried[i], p->cfg->id) == 0)
			return true;
	}
	return false;
}

bool
sched_may_retry(const struct sched_request *rq, const struct config *c)
{
	int max = c->max_attempts > 0 ? c->max_attempts : 1;

	if (max > SCHED_MAX_TRIED)
		max = SCHED_MAX_TRIED;
	return rq->attempts < max;
}

/* Offer every eligible provider of `pool` to a WRR round; index or -1. */
static ssize_t
sched_pick(struct sched_provider *const cand[], size_t n, const struct sched_request *rq,
    enum provider_pool pool, int64_t now)
{
	struct balancer_round r;

	balancer_begin(&r);
	for (size_t i = 0; i < n; i++) {
		struct sched_provider *p = cand[i];
		double eff;

		if (p->cfg->pool != pool || !sched_usable(p) || cooldown_is_cooling(&p->cd, now) ||
		    !ratelimit_has_room(&p->rl, now) || sched_request_tried(rq, p))
			continue;
		eff = balancer_effective_weight(p->cfg->weight, p->rl.limit, ratelimit_used(&p->rl, now));
		/* Eligible means pickable, even with a nonsensical weight. */
		if (!(eff > 1e-9))
			eff = 1e-9;
		balancer_offer(&r, &p->bn, (ssize_t)i, eff);
	}
	return balancer_finish(&r);
}

int64_t
sched_next_free(struct sched_provider *const cand[], size_t n, const struct config *c, int64_t now)
{
	int64_t t = INT64_MAX;

	for (size_t i = 0; i < n; i++) {
		sched_provider_sync(cand[i], c);
		if (sched_usable(cand[i]))
			t = sched_min64(t, sched_frees_at(cand[i], now));
	}
	return t;
}

int
sched_retry_after(struct sched_provider *const cand[], size_t n, const struct config *c, int64_t now)
{
	int64_t t = sched_next_free(cand, n, c, now);
	int64_t s;

	if (t == INT64_MAX)
		return c->retry_after_seconds > 0 ? c->retry_after_seconds : 1;
	s = (t - now + 999) / 1000;
	if (s < 1)
		s = 1;
	return s > INT32_MAX ? INT32_MAX : (int)s;
}

struct sched_decision
sched_decide(struct sched_provider *const cand[], size_t n, const struct sched_request *rq,
    const struct config *c, int64_t now)
{
	struct sched_decision d;
	int64_t main_free = INT64_MAX, fb_free = INT64_MAX, em_until = INT64_MAX;
	int64_t recover_ms = (int64_t)c->recover_wait_seconds * 1000;
	bool main_full = false, fb_full = false;
	ssize_t em = -1, k;

	memset(&d, 0, sizeof(d));

	/* One pass classifies everything not excluded and picks the main pool
	 * by WRR. The fallback round runs only when it is needed, because
	 * offering a peer advances its WRR state. */
	for (size_t i = 0; i < n; i++) {
		struct sched_provider *p = cand[i];
		bool cooling;
		int64_t t;

		sched_provider_sync(p, c);
		if (!sched_usable(p) || sched_request_tried(rq, p))
			continue;
		cooling = cooldown_is_cooling(&p->cd, now);
		if (!cooling && ratelimit_has_room(&p->rl, now))
			continue;	/* eligible: offered by sched_pick */
		t = sched_frees_at(p, now);
		if (p->cfg->pool == POOL_MAIN) {
			main_free = sched_min64(main_free, t);
			main_full |= !cooling;
		} else {
			fb_free = sched_min64(fb_free, t);
			fb_full |= !cooling;
		}
		if (cooling && p->cd.cooldown_until_ms < em_until) {
			em_until = p->cd.cooldown_until_ms;
			em = (ssize_t)i;
		}
	}

	if ((k = sched_pick(cand, n, rq, POOL_MAIN, now)) >= 0) {
		d.verdict = SCHED_GO;
		d.why = SCHED_WHY_MAIN;
		d.index = (size_t)k;
		d.pool = SCHED_POOL_MAIN;
		return d;
	}
	if (main_full || (main_free != INT64_MAX && main_free - now <= recover_ms)) {
		d.verdict = SCHED_WAIT;
		d.why = main_full ? SCHED_WHY_MAIN_FULL : SCHED_WHY_MAIN_RECOVERING;
		d.until_ms = main_free;
		return d;
	}
	if ((k = sched_pick(cand, n, rq, POOL_FALLBACK, now)) >= 0) {
		d.verdict = SCHED_GO;
		d.why = SCHED_WHY_FALLBACK;
		d.index = (size_t)k;
		d.pool = SCHED_POOL_FALLBACK;
		return d;
	}
	if (fb_full) {
		d.verdict = SCHED_WAIT;
		d.why = SCHED_WHY_FALLBACK_FULL;
		d.until_ms = sched_min64(main_free, fb_free);
		return d;
	}
	if (em >= 0 && (rq == NULL || !rq->emergency_used)) {
		struct sched_provider *p = cand[em];

		if (ratelimit_has_room(&p->emergency, now) && ratelimit_has_room(&p->rl, now)) {
			d.verdict = SCHED_GO;
			d.why = SCHED_WHY_EMERGENCY;
			d.index = (size_t)em;
			d.pool = SCHED_POOL_EMERGENCY;
			return d;
		}
	}
	d.verdict = SCHED_REJECT;
	d.why = em >= 0 ? SCHED_WHY_EXHAUSTED : SCHED_WHY_NO_PROVIDER;
	d.retry_after_seconds = sched_retry_after(cand, n, c, now);
	return d;
}

int
sched_commit(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now)
{
	sched_provider_sync(p, c);
	if (!ratelimit_has_room(&p->rl, now))
		return -1;
	if (pool == SCHED_POOL_EMERGENCY && !ratelimit_has_room(&p->emergency, now))
		return -1;
	(void)ratelimit_reserve(&p->rl, now);
	if (pool == SCHED_POOL_EMERGENCY) {
		(void)ratelimit_reserve(&p->emergency, now);
		rq->emergency_used = true;
	}
	if (rq->ntried < SCHED_MAX_TRIED && !sched_request_tried(rq, p)) {
		memcpy(rq->tried[rq->ntried], p->cfg->id, sizeof(rq->tried[0]));
		rq->tried[rq->ntried][sizeof(rq->tried[0]) - 1] = '\0';
		rq->ntried++;
	}
	rq->attempts++;
	return 0;
}

int64_t
sched_next_change(struct sched_provider *const all[], size_t n, const struct config *c, int64_t now)
{
	int64_t t = INT64_MAX;

	for (size_t i = 0; i < n; i++) {
		struct sched_provider *p = all[i];
		int64_t f;

		sched_provider_sync(p, c);
		if (!sched_usable(p))
			continue;
		f = sched_frees_at(p, now);
		if (f > now)
			t = sched_min64(t, f);
	}
	return t;
}

int64_t
sched_next_probe(struct sched_provider *const all[], size_t n)
{
	int64_t t = INT64_MAX;

	for (size_t i = 0; i < n; i++) {
		const struct sched_provider *p = all[i];

		if (p->cfg->status == PSTATUS_ACTIVE && !p->cd.invalid && p->cd.unhealthy)
			t = sched_min64(t, p->cd.next_probe_ms);
	}
	return t;
}

bool
sched_probe_start(struct sched_provider *p, const struct config *c, int64_t now)
{
	sched_provider_sync(p, c);
	if (p->cfg->status != PSTATUS_ACTIVE || p->cd.invalid || !cooldown_probe_due(&p->cd, now))
		return false;
	if (ratelimit_reserve(&p->rl, now) != 0) {
		/* Window full: probe as soon as a slot frees instead. */
		p->cd.next_probe_ms = ratelimit_next_free(&p->rl, now);
		return false;
	}
	p->cd.next_probe_ms = now + (int64_t)c->health_probe_interval_seconds * 1000;
	return true;
}
