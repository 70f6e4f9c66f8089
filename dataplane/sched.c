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
 *   6. everything tried, and a tried provider that has begun a cooldown since
 *      (a later episode) recovers within recover_wait_seconds → WAIT for it,
 *      then GO on it again (attempts permitting);
 *   7. REJECT with the seconds until the earliest provider frees.
 *
 * "Room" is the key's window and, for a model with its own window, that
 * window too; a half-open provider has room for one start (its probe) only.
 * Effective (learned) limits replace the configured ones in every window,
 * the weights and the emergency budget.
 */
#include <math.h>
#include <stdlib.h>
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

static void sched_provider_sync(struct sched_provider *p, const struct config *c);

/* max(1, floor(effective rpm limit × emergency_rpm_ratio)). */
static int
sched_emergency_budget(const struct sched_provider *p, const struct config *c)
{
	double b = floor((double)sched_limit_effective(p, c) * c->emergency_rpm_ratio);

	if (!(b >= 1))
		return 1;
	return b > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : (int)b;
}

/* ---- learned limits ---- */

int
sched_learn_limit(const struct sched_learn *l, int configured)
{
	return l->eff > 0 && l->eff < configured ? l->eff : configured;
}

bool
sched_learn_cut(struct sched_learn *l, int configured, int w, int64_t now)
{
	int cur = sched_learn_limit(l, configured), half = (cur + 1) / 2, n;

	l->mark_ms = now;	/* not a clean window */
	l->clean = 0;
	if (w >= cur)
		return false;	/* the window was at our limit: nothing to learn */
	n = w > half ? w : half;
	if (n < 1)
		n = 1;
	/* A count at least half the limit is believable as the upstream's limit:
	 * remember it so that recovery stops just below it. Below half, the 429
	 * is more likely an upstream hiccup: halve, but keep no ceiling. */
	if (w >= half)
		l->bad = w + 1;
	l->eff = n < configured ? n : 0;
	return n != cur;
}

bool
sched_learn_tick(struct sched_learn *l, int configured, int64_t span_ms, int64_t now)
{
	int64_t k;
	bool changed = false;

	if ((l->eff == 0 && l->bad == 0) || span_ms <= 0 || now - l->mark_ms < span_ms)
		return false;
	k = (now - l->mark_ms) / span_ms;
	if (k > 2 * SCHED_LEARN_FORGET + 10)
		k = 2 * SCHED_LEARN_FORGET + 10;	/* enough to forget and recover fully */
	l->mark_ms = k >= 2 * SCHED_LEARN_FORGET + 10 ? now : l->mark_ms + k * span_ms;
	while (k-- > 0) {
		int step = configured / 10 > 1 ? configured / 10 : 1, n;

		if (l->bad > 0 && ++l->clean >= SCHED_LEARN_FORGET) {
			l->bad = 0;
			l->clean = 0;
		}
		if (l->eff == 0)
			continue;
		n = l->eff + step;
		if (l->bad > 0 && n > l->bad - 1)
			n = l->bad - 1 > l->eff ? l->bad - 1 : l->eff;
		if (n != l->eff) {
			l->eff = n < configured ? n : 0;
			changed = true;
		}
	}
	return changed;
}

int
sched_limit_effective(const struct sched_provider *p, const struct config *c)
{
	int conf = p->cfg->rpm_limit > 0 ? p->cfg->rpm_limit : 1;

	return c->learn_limits ? sched_learn_limit(&p->learn, conf) : conf;
}

struct sched_model *
sched_model_of(const struct sched_provider *p, const char *model)
{
	size_t lo = 0, hi = p->nmodels;

	if (model == NULL)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(model, p->models[mid].model);

		if (d == 0)
			return &p->models[mid];
		if (d < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void
sched_model_limits(const struct sched_provider *p, const char *model, const struct config *c, int *configured,
    int *effective)
{
	const struct sched_model *m = sched_model_of(p, model);

	*configured = m != NULL ? m->limit : 0;
	*effective = m == NULL ? 0 : c->learn_limits ? sched_learn_limit(&m->learn, m->limit) : m->limit;
}

/* Rebuild the model windows from p->cfg, keeping the history of models that stay. */
static void
sched_models_sync(struct sched_provider *p)
{
	const struct provider *pc = p->cfg;
	struct sched_model *nv = pc->n_model_rpm ? calloc(pc->n_model_rpm, sizeof(*nv)) : NULL;
	size_t i;

	if (pc->n_model_rpm && nv == NULL)
		abort();
	for (i = 0; i < pc->n_model_rpm; i++) {
		struct sched_model *old = sched_model_of(p, pc->model_rpm[i].model);

		if (old != NULL) {
			nv[i] = *old;
			memset(old, 0, sizeof(*old));	/* moved */
		} else {
			nv[i].model = strdup(pc->model_rpm[i].model);
			if (nv[i].model == NULL)
				abort();
			ratelimit_init(&nv[i].rl);
		}
		nv[i].limit = pc->model_rpm[i].rpm;
	}
	for (i = 0; i < p->nmodels; i++) {
		free(p->models[i].model);
		ratelimit_free(&p->models[i].rl);
	}
	free(p->models);
	p->models = nv;
	p->nmodels = pc->n_model_rpm;
	p->models_of = p->cfg;
}

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
	for (size_t i = 0; i < p->nmodels; i++) {
		free(p->models[i].model);
		ratelimit_free(&p->models[i].rl);
	}
	free(p->models);
	p->models = NULL;
	p->nmodels = 0;
	p->cfg = NULL;
	p->synced.valid = false;
}

/* Apply p->cfg and c to the windows (limit, span, TPM, emergency budget),
 * keeping history; clears a stale invalid mark when the operator makes an
 * invalid/disabled key active again. Every entry point calls it, so a
 * provider without model windows whose inputs are what the last call
 * applied (p->synced; the usual case: they change with a reload or a
 * learned limit) returns after comparing them. */
static void
sched_provider_sync(struct sched_provider *p, const struct config *c)
{
	int64_t span = sched_span_ms(c);
	int eff = sched_limit_effective(p, c);

	if (p->synced.valid && p->nmodels == 0 && p->models_of == p->cfg && p->cfg->status == p->seen_status &&
	    p->synced.rpm_limit == p->cfg->rpm_limit && p->synced.tpm_limit == p->cfg->tpm_limit &&
	    p->synced.span_ms == span && p->synced.effective == eff &&
	    p->synced.emergency_ratio == c->emergency_rpm_ratio)
		return;
	ratelimit_configure(&p->rl, p->cfg->rpm_limit, span, p->cfg->tpm_limit);
	ratelimit_set_admit(&p->rl, eff);
	ratelimit_configure(&p->emergency, sched_emergency_budget(p, c), span, 0);
	p->synced.valid = true;
	p->synced.rpm_limit = p->cfg->rpm_limit;
	p->synced.tpm_limit = p->cfg->tpm_limit;
	p->synced.span_ms = span;
	p->synced.effective = eff;
	p->synced.emergency_ratio = c->emergency_rpm_ratio;
	if (p->models_of != p->cfg)
		sched_models_sync(p);
	for (size_t i = 0; i < p->nmodels; i++) {
		struct sched_model *m = &p->models[i];

		ratelimit_configure(&m->rl, m->limit, span, 0);
		ratelimit_set_admit(&m->rl, c->learn_limits ? sched_learn_limit(&m->learn, m->limit) : m->limit);
	}
	if (p->cfg->status != p->seen_status) {
		/* The operator re-enabled (or replaced) the key: forget our own
		 * in-memory invalid mark, which the database no longer carries. */
		if (p->cfg->status == PSTATUS_ACTIVE)
			cooldown_clear_invalid(&p->cd);
		p->seen_status = p->cfg->status;
	}
}

/* sync, after letting clean windows give learned capacity back. */
static void
sched_refresh(struct sched_provider *p, const struct config *c, int64_t now)
{
	int64_t span = sched_span_ms(c);

	if (c->learn_limits) {
		sched_learn_tick(&p->learn, p->cfg->rpm_limit, span, now);
		for (size_t i = 0; i < p->nmodels; i++)
			sched_learn_tick(&p->models[i].learn, p->models[i].limit, span, now);
	}
	sched_provider_sync(p, c);
}

/* Not disabled, not invalid, not unhealthy: may serve at some point. */
static bool
sched_usable(const struct sched_provider *p)
{
	return p->cfg->status == PSTATUS_ACTIVE && !p->cd.invalid && !p->cd.unhealthy;
}

/* Half-open with its probe out: no start until the probe answers (the
 * answer, not a clock, is the next change). */
static bool
sched_probe_out(const struct sched_provider *p, int64_t now)
{
	return cooldown_is_probing(&p->cd, now) && p->cd.probe_busy;
}

/* Room in p's key window: its own, and the shared one's as last seen. */
static bool
sched_room(struct sched_provider *p, int64_t now)
{
	return now >= p->held_until_ms && ratelimit_has_room(&p->rl, now);
}

/* Room in a model's window: its own, and the shared one's as last seen. */
static bool
sched_model_room(struct sched_model *m, int64_t now)
{
	return now >= m->held_until_ms && ratelimit_has_room(&m->rl, now);
}

/* Not cooling and a start for rq's model fits now: key window (own and
 * shared), model window, probe slot. */
static bool
sched_has_room(struct sched_provider *p, const struct sched_request *rq, int64_t now)
{
	struct sched_model *m = sched_model_of(p, rq != NULL ? rq->model : NULL);

	return !cooldown_is_cooling(&p->cd, now) && !sched_probe_out(p, now) && sched_room(p, now) &&
	    (m == NULL || sched_model_room(m, now));
}

/* When p (usable) can next take a start for rq's model: cooldown end, hold
 * and window slots; INT64_MAX while its probe is out. */
static int64_t
sched_frees_at(struct sched_provider *p, const struct sched_request *rq, int64_t now)
{
	struct sched_model *m = sched_model_of(p, rq != NULL ? rq->model : NULL);
	int64_t t = sched_max64(ratelimit_next_free(&p->rl, now), p->held_until_ms);

	if (m != NULL)
		t = sched_max64(t, sched_max64(ratelimit_next_free(&m->rl, now), m->held_until_ms));
	if (cooldown_is_cooling(&p->cd, now))
		t = sched_max64(t, p->cd.cooldown_until_ms);
	else if (sched_probe_out(p, now))
		t = INT64_MAX;
	return t;
}

enum sched_state
sched_provider_state(struct sched_provider *p, const struct config *c, int64_t now)
{
	sched_refresh(p, c, now);
	if (p->cfg->status == PSTATUS_DISABLED)
		return SCHED_ST_DISABLED;
	if (p->cfg->status == PSTATUS_INVALID || p->cd.invalid)
		return SCHED_ST_INVALID;
	if (p->cd.unhealthy)
		return SCHED_ST_UNHEALTHY;
	if (cooldown_is_cooling(&p->cd, now))
		return SCHED_ST_COOLING;
	if (cooldown_is_probing(&p->cd, now))
		return SCHED_ST_PROBING;
	if (!sched_room(p, now))
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
	case SCHED_ST_PROBING:		return "probing";
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

/* Frees what the tried set allocated; rq may be initialised again. */
void
sched_request_free(struct sched_request *rq)
{
	free(rq->more);
	rq->more = NULL;
}

/* Entry i (< SCHED_MAX_TRIED) of rq's tried set. */
static const struct sched_tried *
sched_tried_at(const struct sched_request *rq, int i)
{
	return i < SCHED_TRIED_INLINE ? &rq->tried[i] : &rq->more[i - SCHED_TRIED_INLINE];
}

static struct sched_tried *
sched_tried_slot(struct sched_request *rq, int i)
{
	return i < SCHED_TRIED_INLINE ? &rq->tried[i] : &rq->more[i - SCHED_TRIED_INLINE];
}

/* rq's tried-set index of p, or -1. */
static int
sched_tried_index(const struct sched_request *rq, const struct sched_provider *p)
{
	for (int i = 0; rq != NULL && i < rq->ntried; i++)
		if (strcmp(sched_tried_at(rq, i)->id, p->cfg->id) == 0)
			return i;
	return -1;
}

bool
sched_request_tried(const struct sched_request *rq, const struct sched_provider *p)
{
	return sched_tried_index(rq, p) >= 0;
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

		if (p->cfg->pool != pool || !sched_usable(p) || !sched_has_room(p, rq, now) ||
		    sched_request_tried(rq, p))
			continue;
		/* Remaining capacity against the effective limit. */
		eff = balancer_effective_weight(p->cfg->weight, p->rl.admit, ratelimit_used(&p->rl, now));
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
		sched_refresh(cand[i], c, now);
		if (sched_usable(cand[i]))
			t = sched_min64(t, sched_frees_at(cand[i], NULL, now));
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

/* Step 6: everything left was tried. A tried provider that began a cooldown
 * after this request tried it (its episode moved on) and frees within
 * recover_wait_seconds is worth waiting for: WAIT until then, GO once it can
 * take a start. Providers that only failed otherwise (5xx, connect) are not
 * tried twice. true when d was filled. */
static bool
sched_revisit(struct sched_provider *const cand[], size_t n, const struct sched_request *rq,
    const struct config *c, int64_t now, struct sched_decision *d)
{
	int64_t recover_ms = (int64_t)c->recover_wait_seconds * 1000, best = INT64_MAX;
	ssize_t go = -1;
	bool wait = false;

	if (rq == NULL || rq->ntried == 0 || !sched_may_retry(rq, c))
		return false;
	for (size_t i = 0; i < n; i++) {
		struct sched_provider *p = cand[i];
		int k = sched_tried_index(rq, p);
		int64_t t;

		if (k < 0 || !sched_usable(p) || p->cd.episode == sched_tried_at(rq, k)->episode)
			continue;
		if (sched_has_room(p, rq, now)) {
			go = (ssize_t)i;
			break;
		}
		/* INT64_MAX: its half-open probe is out; the probe's answer wakes us. */
		t = sched_frees_at(p, rq, now);
		if (t != INT64_MAX && t - now > recover_ms)
			continue;
		best = sched_min64(best, t);
		wait = true;
	}
	memset(d, 0, sizeof(*d));
	d->why = SCHED_WHY_REVISIT;
	if (go >= 0) {
		d->verdict = SCHED_GO;
		d->index = (size_t)go;
		d->pool = cand[go]->cfg->pool == POOL_MAIN ? SCHED_POOL_MAIN : SCHED_POOL_FALLBACK;
		return true;
	}
	if (!wait)
		return false;
	d->verdict = SCHED_WAIT;
	d->until_ms = best;
	return true;
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

		sched_refresh(p, c, now);
		if (!sched_usable(p) || sched_request_tried(rq, p))
			continue;
		cooling = cooldown_is_cooling(&p->cd, now);
		if (sched_has_room(p, rq, now))
			continue;	/* eligible: offered by sched_pick */
		t = sched_frees_at(p, rq, now);
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

		struct sched_model *m = sched_model_of(p, rq != NULL ? rq->model : NULL);

		if (ratelimit_has_room(&p->emergency, now) && sched_room(p, now) &&
		    (m == NULL || sched_model_room(m, now))) {
			d.verdict = SCHED_GO;
			d.why = SCHED_WHY_EMERGENCY;
			d.index = (size_t)em;
			d.pool = SCHED_POOL_EMERGENCY;
			return d;
		}
	}
	if (sched_revisit(cand, n, rq, c, now, &d))
		return d;
	d.verdict = SCHED_REJECT;
	d.why = em >= 0 ? SCHED_WHY_EXHAUSTED : SCHED_WHY_NO_PROVIDER;
	d.retry_after_seconds = sched_retry_after(cand, n, c, now);
	return d;
}

/* sched_record on a provider refreshed at now. */
static int
sched_record_refreshed(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq, int64_t now)
{
	struct sched_model *m;
	bool probe;
	int k;

	if (pool != SCHED_POOL_EMERGENCY && sched_probe_out(p, now))
		return -1;	/* half-open: the one probe is already out */
	m = sched_model_of(p, rq->model);
	probe = pool != SCHED_POOL_EMERGENCY && cooldown_probe_wanted(&p->cd, now);
	rq->stamp = cooldown_stamp_at(&p->cd, now, probe);
	rq->sent_used = ratelimit_used(&p->rl, now);
	rq->sent_model_used = m != NULL ? ratelimit_used(&m->rl, now) : -1;
	if (probe)
		p->cd.probe_busy = true;
	(void)ratelimit_reserve(&p->rl, now);
	if (m != NULL)
		(void)ratelimit_reserve(&m->rl, now);
	if (pool == SCHED_POOL_EMERGENCY) {
		(void)ratelimit_reserve(&p->emergency, now);
		rq->emergency_used = true;
	}
	if ((k = sched_tried_index(rq, p)) < 0 && rq->ntried < SCHED_MAX_TRIED) {
		struct sched_tried *t;

		if (rq->ntried == SCHED_TRIED_INLINE && rq->more == NULL &&
		    (rq->more = calloc(SCHED_MAX_TRIED - SCHED_TRIED_INLINE, sizeof(*rq->more))) == NULL)
			abort();	/* allocation failure is the one error we do not survive (STYLE 4) */
		k = rq->ntried++;
		t = sched_tried_slot(rq, k);
		memcpy(t->id, p->cfg->id, sizeof(t->id));
		t->id[sizeof(t->id) - 1] = '\0';
	}
	if (k >= 0)
		sched_tried_slot(rq, k)->episode = p->cd.episode;
	rq->attempts++;
	return 0;
}

int
sched_commit(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now)
{
	struct sched_model *m;

	sched_refresh(p, c, now);
	m = sched_model_of(p, rq->model);
	if (!ratelimit_has_room(&p->rl, now) || (m != NULL && !ratelimit_has_room(&m->rl, now)))
		return -1;
	if (pool == SCHED_POOL_EMERGENCY && !ratelimit_has_room(&p->emergency, now))
		return -1;
	return sched_record_refreshed(p, pool, rq, now);
}

int
sched_record(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now)
{
	sched_refresh(p, c, now);
	return sched_record_refreshed(p, pool, rq, now);
}

size_t
sched_alternatives(struct sched_provider *const cand[], size_t n, const struct sched_request *rq,
    size_t first, enum sched_pool pool, int64_t now, size_t out[], size_t max)
{
	double room[64];
	size_t k = 0;

	if (pool == SCHED_POOL_EMERGENCY || first >= n)
		return 0;
	if (max > 64)
		max = 64;
	for (size_t i = 0; i < n && k < max; i++) {
		struct sched_provider *p = cand[i];
		double r;
		size_t j;

		if (i == first || p->cfg->pool != cand[first]->cfg->pool || !sched_usable(p) ||
		    !sched_has_room(p, rq, now) || sched_request_tried(rq, p))
			continue;
		r = balancer_effective_weight(p->cfg->weight, p->rl.admit, ratelimit_used(&p->rl, now));
		/* Insertion by room, largest first. */
		for (j = k; j > 0 && room[j - 1] < r; j--) {
			room[j] = room[j - 1];
			out[j] = out[j - 1];
		}
		room[j] = r;
		out[j] = i;
		k++;
	}
	return k;
}

int64_t
sched_next_change(struct sched_provider *const all[], size_t n, const struct config *c, int64_t now)
{
	int64_t t = INT64_MAX;

	for (size_t i = 0; i < n; i++) {
		struct sched_provider *p = all[i];
		int64_t f;

		sched_refresh(p, c, now);
		if (!sched_usable(p))
			continue;
		f = sched_frees_at(p, NULL, now);
		if (f > now)
			t = sched_min64(t, f);
		/* A full model window frees on its own clock: wake its waiters then. */
		for (size_t k = 0; k < p->nmodels; k++) {
			f = sched_max64(ratelimit_next_free(&p->models[k].rl, now), p->models[k].held_until_ms);
			if (f > now)
				t = sched_min64(t, f);
		}
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
sched_note_outcome(struct sched_provider *p, const struct config *c, const struct sched_request *rq,
    const struct cooldown_result *cr, int status, int64_t now)
{
	struct sched_model *m;
	struct sched_learn *l;
	int conf, w;
	bool changed;

	if (status != 429 || !c->learn_limits)
		return false;
	m = sched_model_of(p, rq->model);
	l = m != NULL ? &m->learn : &p->learn;
	conf = m != NULL ? m->limit : p->cfg->rpm_limit;
	w = m != NULL ? rq->sent_model_used : rq->sent_used;
	if (!cr->cooldown_started || w < 0) {
		/* Not the first 429 of its episode: no new lesson, but not a clean window either. */
		l->mark_ms = now;
		l->clean = 0;
		return false;
	}
	changed = sched_learn_cut(l, conf, w, now);
	sched_provider_sync(p, c);
	return changed;
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
