/*
 * The dispatcher (dispatch.h): per-provider runtime state, routes, the wait
 * queue and its timer, health probes, and applying and persisting upstream
 * outcomes. docs/scheduling.md explains the policy; this file is where it
 * meets the registry, the clock and the network.
 *
 * One timer serves the whole queue: it fires at the earliest of the next
 * queue deadline, the next moment a provider frees (window slot, cooldown
 * end; only while someone waits) and the next health probe. Then expired
 * waiters are rejected, the others are decided again in service order, due
 * probes start, and the timer is armed again.
 *
 * Lifetimes: a prov_rt lives as long as its provider id is in the registry
 * (carried from a changed row's old object to the new one) plus as long as a
 * ticket, route or probe holds it; once retired its config pointer is never
 * read again (outcomes of attempts that were running are not applied, as
 * the provider is gone). Routes are rebuilt after every reload; a ticket
 * holding an older route re-resolves its prefix at its next decision.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "dispatch.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "upstream.h"
#include "crypto.h"
#include "winstore.h"

#define DISP_MAX_CAND 256	/* providers of one route */
#define DISP_TRIES    4		/* decisions per ask when reservations keep failing */
#define DISP_MAX_ASK  8		/* candidates offered to one admission ask */

struct dispatch_route {
	unsigned               refs;	/* the route table's + one per ticket */
	bool                   stale;	/* a reload replaced the table */
	char                  *prefix;	/* owned; "" for the table of all providers */
	size_t                 n;
	struct reg_provider  **rp;	/* owned array of refs */
	struct prov_rt       **rt;	/* owned array of refs */
	struct sched_provider **sp;	/* owned array: &rt[i]->sched, for sched.h */
};

/* Active health probe of an unhealthy provider. */
struct disp_probe {
	struct reg_provider  *prov;	/* ref held */
	struct prov_rt       *rt;	/* ref held */
	struct upstream_xfer *xfer;
	int64_t               t0;
	TAILQ_ENTRY(disp_probe) link;
};
TAILQ_HEAD(disp_probes, disp_probe);

static struct admit_answer dispatch_local_ask(struct prov_rt *const cand[], size_t n, enum sched_pool pool,
    struct dispatch_ticket *t, const struct config *c, int64_t now);
static const struct dispatch_admission disp_local = { dispatch_local_ask, NULL, NULL, NULL, 1 };

static struct {
	struct loop                     *loop;
	struct queue                     queue;
	struct loop_timer                timer;	/* queue / provider-change / probe timer */
	struct disp_probes               probes;
	struct dispatch_route          **routes;	/* owned array of refs, one per model_prefix */
	size_t                           nroutes;
	struct dispatch_route           *all;	/* ref: every usable provider (timer, probes) */
	const struct dispatch_admission *admit;
	unsigned                         serial;	/* last prov_rt serial handed out */
	size_t                           in_flight;	/* attempts over all providers */
	bool                             draining;	/* dispatch_drain ran: nothing parks */
} disp = { .admit = &disp_local, .probes = TAILQ_HEAD_INITIALIZER(disp.probes) };

static void dispatch_fire(struct loop *l, void *arg);

static void dispatch_save_windows(struct prov_rt *rt, int64_t now, bool clean);

/* A start was recorded in rt's window: write ahead before the last record's
 * promise (its ahead) runs out. */
static void
dispatch_count_start(struct prov_rt *rt, int64_t now)
{
	if (++rt->unsaved >= winstore_ahead(&rt->sched))
		dispatch_save_windows(rt, now, false);
}

/* Persist rt's windows and learned limits (winstore.h): exact with clean
 * (a graceful stop), else as a write-ahead record. Synchronous on purpose. */
static void
dispatch_save_windows(struct prov_rt *rt, int64_t now, bool clean)
{
	char key[64], *v;

	if (rt->retired || rt->sched.cfg == NULL)
		return;
	snprintf(key, sizeof(key), "windows:%s", rt->sched.cfg->id);
	v = winstore_encode(&rt->sched, now, sc_wall_ms(), clean ? 0 : winstore_ahead(&rt->sched));
	/* Written, or (the database busy past 50 ms) queued for the writer
	 * thread: either way the next record is due N starts from now. */
	(void)registry_put_meta_now(key, v);
	rt->unsaved = 0;
	free(v);
}

/* ---- runtime objects ---- */

static void
dispatch_rt_ref(struct prov_rt *rt)
{
	rt->refs++;
}

static void
dispatch_rt_unref(struct prov_rt *rt)
{
	if (rt == NULL || --rt->refs > 0)
		return;
	sched_provider_free(&rt->sched);
	free(rt);
}

/* How a shared store names p's key: a prefix of its SHA-256, never the key. */
static void
dispatch_rt_fingerprint(struct prov_rt *rt, const struct reg_provider *p)
{
	char h[65];

	rt->fp[0] = '\0';
	if (p->p.api_key == NULL || p->p.api_key[0] == '\0')
		return;
	crypto_token_hash(p->p.api_key, h);
	memcpy(rt->fp, h, sizeof(rt->fp) - 1);
	rt->fp[sizeof(rt->fp) - 1] = '\0';
}

void
dispatch_rt_hold(struct prov_rt *rt)
{
	dispatch_rt_ref(rt);
}

void
dispatch_rt_drop(struct prov_rt *rt)
{
	dispatch_rt_unref(rt);
}

/* Registry hook: a provider appeared or changed. Its state survives a
 * change of the row; a new id restores what the database kept. */
void
dispatch_on_publish(struct reg_provider *p, struct reg_provider *old, void *arg)
{
	struct prov_rt *rt;
	int64_t now = sc_now_ms(), wall_ms = sc_wall_ms(), wall = wall_ms / 1000;
	int unhealthy = 0, failures = 0;

	(void)arg;
	if (old != NULL && old->rt != NULL) {
		rt = old->rt;
		old->rt = NULL;
		rt->sched.cfg = &p->p;
		/* Listeners count per provider name: a renamed provider is a new series. */
		if (strcmp(old->p.name, p->p.name) != 0)
			rt->serial = ++disp.serial;
		p->rt = rt;
		dispatch_rt_fingerprint(rt, p);
		/* The operator made the key active again: the shared marks go too. */
		if (old->p.status != PSTATUS_ACTIVE && p->p.status == PSTATUS_ACTIVE && disp.admit->cleared != NULL)
			disp.admit->cleared(rt, true);
		return;
	}
	rt = sc_xcalloc(1, sizeof(*rt));
	rt->refs = 1;
	rt->serial = ++disp.serial;
	dispatch_rt_fingerprint(rt, p);
	sched_provider_init(&rt->sched, &p->p, registry_config());
	/* A restart keeps cooldowns, consecutive 429 counts and health. */
	if (p->p.cooldown_until > wall || p->p.consecutive_429 > 0)
		cooldown_restore(&rt->sched.cd, now,
		    p->p.cooldown_until > wall ? p->p.cooldown_until * 1000 - wall_ms : 0, p->p.consecutive_429);
	{
		char key[64], *v;

		snprintf(key, sizeof(key), "windows:%s", p->p.id);
		if ((v = registry_get_meta(key)) != NULL) {
			if (winstore_restore(&rt->sched, v, now, wall_ms) == -1)
				log_warn("provider %s: stored windows unreadable, starting empty", p->p.name);
			free(v);
		}
		/* The first record of this run: a crash from now on loses at most its ahead. */
		dispatch_save_windows(rt, now, false);
	}
	if (registry_load_health(p->p.id, &unhealthy, &failures) == 0) {
		rt->sched.cd.consecutive_failures = failures;
		if (unhealthy) {
			rt->sched.cd.unhealthy = true;
			rt->sched.cd.next_probe_ms = now;
		}
	}
	p->rt = rt;
}

/* Registry hook: the provider left the registry. */
void
dispatch_on_retire(struct reg_provider *p, void *arg)
{
	(void)arg;
	if (p->rt == NULL)
		return;
	p->rt->retired = true;
	dispatch_rt_unref(p->rt);
	p->rt = NULL;
}

/* Registry hook: the operator reset p's cooldown. */
void
dispatch_on_cooldown_reset(struct reg_provider *p, void *arg)
{
	(void)arg;
	if (p->rt == NULL)
		return;
	cooldown_reset(&p->rt->sched.cd);
	log_info("provider %s: cooldown reset by the operator", p->p.name);
	if (disp.admit->cleared != NULL)
		disp.admit->cleared(p->rt, false);
	/* dispatch_on_reloaded, which runs after every reload, wakes the waiters. */
}

/* ---- routes ---- */

static struct dispatch_route *
dispatch_route_new(const char *prefix)
{
	struct dispatch_route *r = sc_xcalloc(1, sizeof(*r));

	r->refs = 1;
	r->prefix = sc_xstrdup(prefix);
	r->rp = sc_xcalloc(DISP_MAX_CAND, sizeof(*r->rp));
	r->rt = sc_xcalloc(DISP_MAX_CAND, sizeof(*r->rt));
	r->sp = sc_xcalloc(DISP_MAX_CAND, sizeof(*r->sp));
	return r;
}

static void
dispatch_route_add(struct dispatch_route *r, struct reg_provider *p)
{
	if (r->n == DISP_MAX_CAND)
		return;
	reg_provider_ref(p);
	dispatch_rt_ref(p->rt);
	r->rp[r->n] = p;
	r->rt[r->n] = p->rt;
	r->sp[r->n] = &p->rt->sched;
	r->n++;
}

static void
dispatch_route_unref(struct dispatch_route *r)
{
	size_t i;

	if (r == NULL || --r->refs > 0)
		return;
	for (i = 0; i < r->n; i++) {
		reg_provider_unref(r->rp[i]);
		dispatch_rt_unref(r->rt[i]);
	}
	free(r->rp);
	free(r->rt);
	free(r->sp);
	free(r->prefix);
	free(r);
}

static void
dispatch_routes_free(void)
{
	size_t i;

	for (i = 0; i < disp.nroutes; i++) {
		disp.routes[i]->stale = true;
		dispatch_route_unref(disp.routes[i]);
	}
	free(disp.routes);
	disp.routes = NULL;
	disp.nroutes = 0;
	if (disp.all != NULL)
		disp.all->stale = true;
	dispatch_route_unref(disp.all);
	disp.all = NULL;
}

/* The route of exactly this prefix in the current table, or NULL. */
static struct dispatch_route *
dispatch_route_exact(const char *prefix)
{
	size_t i;

	for (i = 0; i < disp.nroutes; i++)
		if (strcmp(disp.routes[i]->prefix, prefix) == 0)
			return disp.routes[i];
	return NULL;
}

/* One route per model_prefix of any provider (so a route whose keys are all
 * disabled still exists and answers 503, not 404); its candidates are the
 * providers with a usable key. */
static void
dispatch_routes_build(void)
{
	size_t i, n = registry_count();

	dispatch_routes_free();
	disp.routes = sc_xcalloc(n + 1, sizeof(*disp.routes));
	disp.all = dispatch_route_new("");
	for (i = 0; i < n; i++) {
		struct reg_provider *p = registry_at(i);
		struct dispatch_route *r = dispatch_route_exact(p->p.model_prefix);

		if (r == NULL) {
			r = dispatch_route_new(p->p.model_prefix);
			disp.routes[disp.nroutes++] = r;
		}
		if (p->rt == NULL || !p->usable)
			continue;
		dispatch_route_add(r, p);
		dispatch_route_add(disp.all, p);
	}
}

/* Registry hook: after every reload (settings included). */
void
dispatch_on_reloaded(void *arg)
{
	(void)arg;
	dispatch_routes_build();
	registry_prune_windows();	/* records of providers deleted meanwhile */
	/* Limits or cooldowns may have changed: let the waiters try again. */
	if (disp.loop != NULL)
		loop_timer_arm(disp.loop, &disp.timer, 0);
}

struct dispatch_route *
dispatch_route_find(const char *model)
{
	struct dispatch_route *best = NULL;
	size_t i, bl = 0;

	for (i = 0; i < disp.nroutes; i++) {
		size_t l = strlen(disp.routes[i]->prefix);
		if (l > bl && strncmp(model, disp.routes[i]->prefix, l) == 0) {
			best = disp.routes[i];
			bl = l;
		}
	}
	return best;
}

const char *
dispatch_route_prefix(const struct dispatch_route *r)
{
	return r->prefix;
}

/* A ticket's route as of the last reload: the same prefix's new route, or
 * no candidates at all when the prefix is gone. */
static const struct dispatch_route *
dispatch_ticket_route(struct dispatch_ticket *t)
{
	struct dispatch_route *cur;

	if (!t->route->stale)
		return t->route;
	cur = dispatch_route_exact(t->route->prefix);
	if (cur == NULL)
		return NULL;
	cur->refs++;
	dispatch_route_unref(t->route);
	t->route = cur;
	return cur;
}

/* ---- the decision ---- */

static struct admit_answer
dispatch_local_ask(struct prov_rt *const cand[], size_t n, enum sched_pool pool, struct dispatch_ticket *t,
    const struct config *c, int64_t now)
{
	struct admit_answer a = { ADMIT_GRANT, INT64_MAX, NULL, -1, -1 };
	struct prov_rt *rt = cand[0];
	struct sched_model *m;

	(void)n;
	if (sched_commit(&rt->sched, pool, &t->srq, c, now) == 0)
		return a;
	a.verdict = ADMIT_DENY;
	a.next_free_ms = ratelimit_next_free(&rt->sched.rl, now);
	if ((m = sched_model_of(&rt->sched, t->srq.model)) != NULL && ratelimit_next_free(&m->rl, now) > a.next_free_ms)
		a.next_free_ms = ratelimit_next_free(&m->rl, now);
	return a;
}

void
dispatch_set_admission(const struct dispatch_admission *a)
{
	disp.admit = a != NULL ? a : &disp_local;
}

/* t goes to provider i of route r, its start reserved. */
static void
dispatch_grant(struct dispatch_ticket *t, const struct dispatch_route *r, size_t i, enum sched_pool pool)
{
	reg_provider_ref(r->rp[i]);
	dispatch_rt_ref(r->rt[i]);
	reg_provider_unref(t->prov);
	dispatch_rt_unref(t->rt);
	t->prov = r->rp[i];
	t->rt = r->rt[i];
	t->pool = pool;
}

/* The last attempt was t's half-open probe and is over without an answer
 * (or its answer is in): the next request may probe. */
static void
dispatch_probe_drop(struct dispatch_ticket *t)
{
	if (t->rt != NULL && t->srq.stamp.probe) {
		cooldown_probe_release(&t->rt->sched.cd, &t->srq.stamp);
		t->srq.stamp.probe = false;
		/* A waiter may be the next probe (this may run in a curl callback: only arm). */
		if (disp.loop != NULL && queue_len(&disp.queue) > 0)
			loop_timer_arm(disp.loop, &disp.timer, 0);
	}
}

/* The window a start of srq on sp counts against for learning: the model's
 * when it has one, else the key's. Its effective limit; *conf the configured. */
static int
dispatch_learned_limit(const struct sched_provider *sp, const struct config *cfg, const struct sched_request *srq,
    int *conf)
{
	int eff;

	if (sched_model_of(sp, srq->model) != NULL) {
		sched_model_limits(sp, srq->model, cfg, conf, &eff);
		return eff;
	}
	*conf = sp->cfg->rpm_limit;
	return sched_limit_effective(sp, cfg);
}

void
dispatch_admit_limits(const struct prov_rt *rt, const struct dispatch_ticket *t, struct dispatch_limits *out)
{
	const struct config *cfg = registry_config();

	out->key_configured = rt->sched.cfg->rpm_limit;
	out->key_effective = sched_limit_effective(&rt->sched, cfg);
	out->model = sched_model_of(&rt->sched, t->srq.model) != NULL ? t->srq.model : NULL;
	sched_model_limits(&rt->sched, t->srq.model, cfg, &out->model_configured, &out->model_effective);
}

/* Which provider, now, later, or never (SPEC §5): sched_decide over the
 * route's providers, then the admission for the chosen one. */
static enum dispatch_verdict
dispatch_decide(struct dispatch_ticket *t, int64_t now)
{
	const struct config *cfg = registry_config();
	const struct dispatch_route *r = dispatch_ticket_route(t);
	int i;

	dispatch_probe_drop(t);
	t->reject = DISPATCH_REJ_NO_PROVIDER;
	t->retry_after_s = cfg->retry_after_seconds;
	if (r == NULL || r->n == 0)
		return DISPATCH_REJECT;
	for (i = 0; i < DISP_TRIES; i++) {
		struct sched_decision d = sched_decide(r->sp, r->n, &t->srq, cfg, now);
		struct admit_answer a;

		struct prov_rt *cand[DISP_MAX_ASK];
		size_t alt[DISP_MAX_ASK], nc = 1, k;

		switch (d.verdict) {
		case SCHED_GO:
			cand[0] = r->rt[d.index];
			if (disp.admit->max_candidates > 1) {
				size_t max = disp.admit->max_candidates < DISP_MAX_ASK ? disp.admit->max_candidates :
				    DISP_MAX_ASK;
				k = sched_alternatives(r->sp, r->n, &t->srq, d.index, d.pool, now, alt, max - 1);
				for (size_t j = 0; j < k; j++)
					cand[nc++] = r->rt[alt[j]];
			}
			a = disp.admit->ask(cand, nc, d.pool, t, cfg, now);
			if (a.verdict == ADMIT_DENY)
				continue;	/* the window filled meanwhile: decide again */
			dispatch_grant(t, r, d.index, d.pool);
			if (a.verdict == ADMIT_PENDING) {
				t->admitting = true;
				return DISPATCH_WAIT;
			}
			dispatch_count_start(t->rt, now);	/* recorded on cand[0] by the ask */
			return DISPATCH_GO;
		case SCHED_WAIT:
			return DISPATCH_WAIT;
		case SCHED_REJECT:
			t->reject = d.why == SCHED_WHY_EXHAUSTED ? DISPATCH_REJ_EXHAUSTED : DISPATCH_REJ_NO_PROVIDER;
			t->retry_after_s = d.retry_after_seconds;
			return DISPATCH_REJECT;
		}
	}
	t->reject = DISPATCH_REJ_BUSY;
	return DISPATCH_REJECT;
}

static void
dispatch_unpark(struct dispatch_ticket *t, int64_t now)
{
	queue_remove(&disp.queue, &t->qn);
	if (t->t_wait != 0) {
		t->queue_ms += now - t->t_wait;
		t->t_wait = 0;
	}
}

/* Park t in the wait queue; false (t->reject set) when the queue is full. */
static bool
dispatch_park(struct dispatch_ticket *t, int64_t now)
{
	const struct config *cfg = registry_config();
	struct event ev;

	if (t->qn.queued)
		return true;
	if (disp.draining) {
		t->reject = DISPATCH_REJ_DRAINING;
		t->retry_after_s = dispatch_route_retry_after(t->route, now);
		return false;
	}
	if (queue_push(&disp.queue, &t->qn, t->prio, now, (int64_t)cfg->queue_timeout_seconds * 1000,
	    (size_t)cfg->queue_capacity) == 0) {
		t->t_wait = now;
		return true;
	}
	t->reject = DISPATCH_REJ_QUEUE_FULL;
	t->retry_after_s = dispatch_route_retry_after(t->route, now);
	ev.kind = EVENT_QUEUE_REJECTED;
	ev.u.rejected = DISPATCH_REJ_QUEUE_FULL;
	events_emit(&ev);
	return false;
}

/* Arm the one timer: next queue deadline, next provider change (only
 * matters with waiters), next probe. */
static void
dispatch_rearm(void)
{
	size_t n = disp.all != NULL ? disp.all->n : 0;
	struct sched_provider **sp = disp.all != NULL ? disp.all->sp : NULL;
	int64_t now = sc_now_ms(), t = INT64_MAX, x;

	if (queue_len(&disp.queue) > 0) {
		t = queue_next_deadline(&disp.queue);
		x = sched_next_change(sp, n, registry_config(), now);
		if (x < t)
			t = x;
	}
	x = sched_next_probe(sp, n);
	if (x < t)
		t = x;
	if (t == INT64_MAX) {
		loop_timer_cancel(disp.loop, &disp.timer);
		return;
	}
	if (!loop_timer_armed(&disp.timer) || disp.timer.when_ms != t)
		loop_timer_arm(disp.loop, &disp.timer, t);
}

enum dispatch_verdict
dispatch_ask(struct dispatch_ticket *t, bool fresh)
{
	int64_t now = sc_now_ms();
	enum dispatch_verdict v;

	if (t->admitting)
		return DISPATCH_WAIT;
	if (fresh && queue_len(&disp.queue) > 0) {
		/* Others are waiting: line up behind them instead of taking the slot
		 * the timer is about to hand out, then let the queue walk decide. */
		if (!dispatch_park(t, now))
			return DISPATCH_REJECT;
		loop_timer_arm(disp.loop, &disp.timer, 0);
		return DISPATCH_WAIT;
	}
	v = dispatch_decide(t, now);
	switch (v) {
	case DISPATCH_GO:
	case DISPATCH_REJECT:
		dispatch_unpark(t, now);
		break;
	case DISPATCH_WAIT:
		if (!dispatch_park(t, now))
			return DISPATCH_REJECT;
		dispatch_rearm();
		break;
	}
	return v;
}

void
dispatch_admit_answer(struct dispatch_ticket *t, const struct admit_answer *a)
{
	if (!t->admitting)
		return;
	t->admitting = false;
	if (a->verdict == ADMIT_GRANT) {
		int64_t now = sc_now_ms();
		/* t->route is the one the ask was built from (a ticket awaiting an
		 * answer is not decided again), so it holds every candidate. */
		struct dispatch_route *r = t->route;
		struct prov_rt *g = a->granted != NULL ? a->granted : t->rt;
		size_t i;

		for (i = 0; i < r->n && r->rt[i] != g; i++)
			;
		if (i == r->n || g->retired) {
			/* Granted on a key that left meanwhile: the slot is lost, decide again. */
			loop_timer_arm(disp.loop, &disp.timer, 0);
			return;
		}
		if (sched_record(&g->sched, t->pool, &t->srq, registry_config(), now) != 0) {
			/* Half-open with its probe already out (granted to two asks at
			 * once): the shared slot is lost, never a second probe. */
			loop_timer_arm(disp.loop, &disp.timer, 0);
			return;
		}
		if (a->used >= 0)
			t->srq.sent_used = a->used;	/* the cluster's window, not this host's share of it */
		if (a->model_used >= 0 && t->srq.sent_model_used >= 0)
			t->srq.sent_model_used = a->model_used;
		dispatch_grant(t, r, i, t->pool);
		dispatch_count_start(g, now);
		dispatch_unpark(t, now);
		t->answer(t, DISPATCH_GO);
		return;
	}
	/* Denied: the queue walk decides it again (the timer reflects next_free). */
	if (a->next_free_ms != INT64_MAX && (!loop_timer_armed(&disp.timer) || a->next_free_ms < disp.timer.when_ms))
		loop_timer_arm(disp.loop, &disp.timer, a->next_free_ms);
}

/* ---- tickets ---- */

void
dispatch_ticket_init(struct dispatch_ticket *t, struct dispatch_route *route, const char *model,
    enum queue_prio prio, void (*answer)(struct dispatch_ticket *, enum dispatch_verdict))
{
	queue_node_init(&t->qn, t);
	sched_request_init(&t->srq);
	t->srq.model = model;
	t->prio = prio;
	t->route = route;
	route->refs++;
	t->answer = answer;
}

void
dispatch_attempt_started(struct dispatch_ticket *t, int64_t t0)
{
	t->running = true;
	t->t_attempt = t0;
	t->rt->in_flight++;
	disp.in_flight++;
}

void
dispatch_attempt_ended(struct dispatch_ticket *t)
{
	dispatch_probe_drop(t);
	if (!t->running)
		return;
	t->running = false;
	t->rt->in_flight--;
	disp.in_flight--;
}

void
dispatch_ticket_release(struct dispatch_ticket *t)
{
	queue_remove(&disp.queue, &t->qn);
	if (t->admitting && disp.admit->cancel != NULL)
		disp.admit->cancel(t);
	t->admitting = false;
	dispatch_probe_drop(t);
	dispatch_attempt_ended(t);
	reg_provider_unref(t->prov);
	dispatch_rt_unref(t->rt);
	dispatch_route_unref(t->route);
	sched_request_free(&t->srq);
	t->prov = NULL;
	t->rt = NULL;
	t->route = NULL;
}

bool
dispatch_may_retry(const struct dispatch_ticket *t)
{
	return sched_may_retry(&t->srq, registry_config());
}

/* ---- outcomes ---- */

static int
dispatch_retryable_status(int st)
{
	return st == 429 || st == 401 || st == 403 || st >= 500;
}

enum cooldown_action
dispatch_report(struct dispatch_ticket *t, enum cooldown_failure fail, int status, int retry_after_s,
    const char *detail)
{
	const struct reg_provider *p = t->prov;
	struct prov_rt *rt = t->rt;
	struct sched_provider *sp = &rt->sched;
	const struct config *cfg = registry_config();
	struct cooldown_outcome o;
	struct cooldown_result cr;
	int64_t now = sc_now_ms(), wall_ms = sc_wall_ms();
	int prev_failures, prev_eff, conf;
	bool shared;
	char summary[160];	/* > 5 + HTTP_STATUS_TEXT_MAX */
	struct event ev;

	ev.kind = EVENT_UPSTREAM_OUTCOME;
	ev.u.outcome.serial = rt->serial;
	ev.u.outcome.provider_name = p->p.name;
	ev.u.outcome.fail = fail;
	ev.u.outcome.status = status;
	events_emit(&ev);
	if (rt->retired)
		return status >= 200 && status < 300 ? COOLDOWN_ACT_DELIVER :
		    (fail != COOLDOWN_FAIL_NONE || dispatch_retryable_status(status)) ? COOLDOWN_ACT_RETRY :
		    COOLDOWN_ACT_PASS_THROUGH;
	memset(&o, 0, sizeof(o));
	o.failure = fail;
	o.status = status;
	o.sent = t->srq.stamp;
	o.retry_after_ms = retry_after_s >= 0 ? (int64_t)retry_after_s * 1000 : -1;
	if (fail != COOLDOWN_FAIL_NONE) {
		sc_strlcpy(summary, detail ? detail : "transfer failed", sizeof(summary));
	} else {
		/* "HTTP %d %s", without snprintf's cost on every answer */
		memcpy(summary, "HTTP ", 5);
		(void)http_status_text(status, summary + 5);
	}
	o.reason = summary;
	prev_failures = sp->cd.consecutive_failures;
	prev_eff = dispatch_learned_limit(sp, cfg, &t->srq, &conf);
	cr = cooldown_on_outcome(&sp->cd, cfg, now, &o);
	t->srq.stamp.probe = false;	/* its slot was freed by the outcome */
	if (sched_note_outcome(sp, cfg, &t->srq, &cr, status, now)) {
		bool model = sched_model_of(sp, t->srq.model) != NULL;

		log_warn("provider %s%s%s: 429 with %d starts in the window, effective limit %d of %d (was %d)",
		    p->p.name, model ? " model " : "", model ? t->srq.model : "",
		    model ? t->srq.sent_model_used : t->srq.sent_used, dispatch_learned_limit(sp, cfg, &t->srq, &conf),
		    conf, prev_eff);
		dispatch_save_windows(rt, now, false);
	}
	if (cr.recovered)
		log_info("provider %s: half-open probe answered %d, full capacity again", p->p.name, status);
	/* A shared admission may own the cooldown's persistence: the cluster's
	 * backoff step, not this host's, is what gets recorded. */
	shared = disp.admit->outcome != NULL && disp.admit->outcome(rt, t, &cr, o.retry_after_ms, summary);
	if (!shared && (cr.cooldown_started || cr.cooldown_extended || cr.streak_reset)) {
		/* A success that resets the streak (a request sent before the 429)
		 * leaves a running cooldown in force: keep its persisted end (-1). */
		int64_t until = cr.cooldown_started || cr.cooldown_extended ?
		    (wall_ms + cr.cooldown_until_ms - now + 999) / 1000 : cooldown_is_cooling(&sp->cd, now) ? -1 : 0;
		if (cr.cooldown_started) {
			ev.kind = EVENT_COOLDOWN_STARTED;
			events_emit(&ev);
		}
		if (cr.cooldown_started || cr.cooldown_extended)
			log_warn("provider %s: %d from upstream, cooling down for %d s (consecutive %d)",
			    p->p.name, status, cr.cooldown_seconds, cr.count);
		registry_save_cooldown(p->p.id, until, cr.count, cr.cooldown_started ? cr.cooldown_seconds : 0,
		    summary);
	}
	if (cr.became_invalid) {
		log_warn("provider %s: upstream answered %d, key marked invalid", p->p.name, status);
		registry_save_invalid(p->p.id, summary);
	}
	/* Persisted when the health changes, and when the answer's status does
	 * (not per request: one write per change of last_status_code). */
	if (cr.became_unhealthy || cr.became_healthy || cr.failures != prev_failures || status != sp->saved_status) {
		if (cr.became_unhealthy)
			log_warn("provider %s: unhealthy after %d failures", p->p.name, cr.failures);
		registry_save_health(p->p.id, sp->cd.unhealthy, cr.failures, status, now - t->t_attempt,
		    fail != COOLDOWN_FAIL_NONE || status >= 500 ? summary : "", 0);
		sp->saved_status = status;
	}
	/* Waiters may go now, or a provider's state changed: decide again and
	 * re-arm from the timer (never here: this may run inside a curl callback). */
	if (queue_len(&disp.queue) > 0 || cr.cooldown_started || cr.cooldown_extended || cr.became_invalid ||
	    cr.became_unhealthy || cr.became_healthy)
		loop_timer_arm(disp.loop, &disp.timer, 0);
	return cr.action;
}

/* ---- what a shared admission learned ---- */

void
dispatch_cluster_hold(struct prov_rt *rt, int64_t until)
{
	rt->sched.held_until_ms = until;
}

void
dispatch_cluster_model_hold(struct prov_rt *rt, const char *model, int64_t until)
{
	struct sched_model *m = sched_model_of(&rt->sched, model);

	if (m != NULL)
		m->held_until_ms = until;
}

void
dispatch_cluster_release_holds(void)
{
	size_t i;

	for (i = 0; disp.all != NULL && i < disp.all->n; i++) {
		struct sched_provider *sp = &disp.all->rt[i]->sched;

		sp->held_until_ms = 0;
		for (size_t k = 0; k < sp->nmodels; k++)
			sp->models[k].held_until_ms = 0;
	}
	if (disp.loop != NULL)
		loop_timer_arm(disp.loop, &disp.timer, 0);
}

void
dispatch_cluster_cooldown(struct prov_rt *rt, int n, int64_t remaining_ms, int64_t length_ms, int64_t episode,
    int64_t started_ago_ms, const char *summary)
{
	struct cooldown *cd = &rt->sched.cd;
	int64_t now = sc_now_ms(), wall_ms = sc_wall_ms(), until = now + remaining_ms;
	bool longer = remaining_ms > 0 && until > cd->cooldown_until_ms;
	/* Heartbeats repeat what is known: persist a new end only when it moved. */
	bool moved = remaining_ms > 0 && until > cd->cooldown_until_ms + 1000;
	bool fresh = episode != rt->cluster_episode;
	struct event ev;

	if (rt->retired)
		return;
	if (fresh && !cooldown_is_cooling(cd, now)) {
		/* A cluster overload this host did not see start: a new local
		 * episode (its attempts in flight are the same overload, the key
		 * half-open at the end), as cooldown_on_429 does for its own. */
		cd->episode++;
		cd->half_open = true;
		cd->probe_busy = false;
	}
	cd->consecutive_429 = n > 0 ? n : 0;
	if (longer)
		cd->cooldown_until_ms = until;
	if (remaining_ms > 0)
		cd->cooldown_started_ms = now - (started_ago_ms > 0 ? started_ago_ms : 0);
	if (fresh) {
		/* One event per episode on every host: the cluster's step, once. */
		rt->cluster_episode = episode;
		memset(&ev, 0, sizeof(ev));
		ev.kind = EVENT_COOLDOWN_STARTED;
		ev.u.outcome.serial = rt->serial;
		ev.u.outcome.provider_name = rt->sched.cfg->name;
		ev.u.outcome.status = 429;
		events_emit(&ev);
		log_warn("provider %s: cooling down for %lld s (consecutive %d, shared by the cluster)",
		    rt->sched.cfg->name, (long long)((length_ms + 999) / 1000), n);
		registry_save_cooldown(rt->sched.cfg->id, remaining_ms > 0 ? (wall_ms + remaining_ms + 999) / 1000 : -1, n,
		    (int)((length_ms + 999) / 1000), summary);
	} else if (moved)
		registry_save_cooldown(rt->sched.cfg->id, (wall_ms + remaining_ms + 999) / 1000, n, 0, summary);
	if (disp.loop != NULL && (longer || fresh))
		loop_timer_arm(disp.loop, &disp.timer, 0);
}

void
dispatch_cluster_invalid(struct prov_rt *rt, const char *reason)
{
	struct cooldown *cd = &rt->sched.cd;

	if (rt->retired || cd->invalid)
		return;
	cd->invalid = true;
	snprintf(cd->invalid_reason, sizeof(cd->invalid_reason), "%s", reason);
	log_warn("provider %s: key marked invalid by another host of the cluster (%s)", rt->sched.cfg->name, reason);
	registry_save_invalid(rt->sched.cfg->id, reason);
	if (disp.loop != NULL)
		loop_timer_arm(disp.loop, &disp.timer, 0);
}

void
dispatch_report_tokens(struct dispatch_ticket *t, int64_t tokens)
{
	struct prov_rt *rt = t->rt;

	if (tokens <= 0 || rt == NULL || rt->retired)
		return;
	if (rt->sched.cfg->tpm_limit > 0)
		ratelimit_record_tokens(&rt->sched.rl, sc_now_ms(), tokens);
}

int64_t
dispatch_route_next_free(const struct dispatch_route *r, int64_t now)
{
	if (r == NULL || r->stale)
		r = r != NULL ? dispatch_route_exact(r->prefix) : NULL;
	if (r == NULL)
		return INT64_MAX;
	return sched_next_free(r->sp, r->n, registry_config(), now);
}

int
dispatch_route_retry_after(const struct dispatch_route *r, int64_t now)
{
	if (r == NULL || r->stale)
		r = r != NULL ? dispatch_route_exact(r->prefix) : NULL;
	if (r == NULL)
		return registry_config()->retry_after_seconds > 0 ? registry_config()->retry_after_seconds : 1;
	return sched_retry_after(r->sp, r->n, registry_config(), now);
}

size_t
dispatch_route_keys(const struct dispatch_route *r, size_t *valid)
{
	size_t i;

	*valid = 0;
	if (r == NULL || r->stale)
		r = r != NULL ? dispatch_route_exact(r->prefix) : NULL;
	if (r == NULL)
		return 0;
	for (i = 0; i < r->n; i++)
		if (r->sp[i]->cfg->status == PSTATUS_ACTIVE && !r->sp[i]->cd.invalid)
			(*valid)++;
	return r->n;
}

void
dispatch_drain(void)
{
	struct queue_node *qn;
	int64_t now = sc_now_ms();

	disp.draining = true;
	while ((qn = queue_first(&disp.queue)) != NULL) {
		struct dispatch_ticket *t = qn->owner;

		dispatch_unpark(t, now);
		if (t->admitting && disp.admit->cancel != NULL)
			disp.admit->cancel(t);
		t->admitting = false;
		t->reject = DISPATCH_REJ_DRAINING;
		t->retry_after_s = dispatch_route_retry_after(t->route, now);
		t->answer(t, DISPATCH_REJECT);
	}
}

/* ---- health probes ---- */

static int
dispatch_probe_on_head(void *arg, struct upstream_xfer *x)
{
	(void)arg;
	(void)x;
	return 0;
}

static size_t
dispatch_probe_on_data(void *arg, const char *p, size_t n)
{
	(void)arg;
	(void)p;
	return n;	/* the probe only needs the status */
}

static void
dispatch_probe_free(struct disp_probe *pr)
{
	TAILQ_REMOVE(&disp.probes, pr, link);
	reg_provider_unref(pr->prov);
	dispatch_rt_unref(pr->rt);
	free(pr);
}

static void
dispatch_probe_on_done(void *arg, struct upstream_xfer *x, enum upstream_result res)
{
	struct disp_probe *pr = arg;
	int ok = res == UPSTREAM_OK && upstream_status(x) >= 200 && upstream_status(x) < 300;
	int64_t now = sc_now_ms();

	if (!pr->rt->retired) {
		struct cooldown *cd = &pr->rt->sched.cd;
		struct cooldown_result cr = cooldown_on_probe(cd, registry_config(), now, ok);
		log_info("provider %s: health probe %s (status %d)%s", pr->prov->p.name, ok ? "ok" : "failed",
		    upstream_status(x), cr.became_healthy ? ", healthy again" : "");
		registry_save_health(pr->prov->p.id, cd->unhealthy, cd->consecutive_failures,
		    upstream_status(x), now - pr->t0, ok ? "" : upstream_error(x), 1);
		pr->rt->sched.saved_status = upstream_status(x);
	}
	dispatch_probe_free(pr);
	loop_timer_arm(disp.loop, &disp.timer, 0);
}

static const struct upstream_ops disp_probe_ops = {
	dispatch_probe_on_head, dispatch_probe_on_data, dispatch_probe_on_done,
};

/* GET {endpoint}/models with the provider's key. */
static void
dispatch_probe_start(struct reg_provider *p, struct prov_rt *rt)
{
	const struct config *cfg = registry_config();
	struct upstream_req rq;
	struct upstream_hdrs h;
	struct disp_probe *pr;
	char url[2048];

	upstream_hdrs_init(&h);
	if (upstream_hdrs_bearer(&h, p->p.api_key) == -1) {
		upstream_hdrs_free(&h);
		return;
	}
	snprintf(url, sizeof(url), "%s/models", p->p.endpoint_url);
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.headers = &h;
	rq.connect_timeout_ms = (long)cfg->upstream_connect_timeout * 1000;
	rq.ttfb_timeout_ms = (long)cfg->upstream_ttfb_timeout * 1000;
	pr = sc_xcalloc(1, sizeof(*pr));
	pr->prov = p;
	reg_provider_ref(p);
	pr->rt = rt;
	dispatch_rt_ref(rt);
	pr->t0 = sc_now_ms();
	TAILQ_INSERT_HEAD(&disp.probes, pr, link);
	pr->xfer = upstream_start(&rq, &disp_probe_ops, pr);
	if (pr->xfer == NULL)
		dispatch_probe_free(pr);
}

/* ---- the timer ---- */

/* Expire waiters, decide the others in service order, start due probes, re-arm. */
static void
dispatch_fire(struct loop *l, void *arg)
{
	const struct config *cfg = registry_config();
	struct queue_node *qn, *next;
	struct dispatch_route *all;
	int64_t now = sc_now_ms();
	struct event ev;
	size_t i;

	(void)l;
	(void)arg;
	while ((qn = queue_pop_expired(&disp.queue, now)) != NULL) {
		struct dispatch_ticket *t = qn->owner;
		dispatch_unpark(t, now);
		if (t->admitting && disp.admit->cancel != NULL)
			disp.admit->cancel(t);
		t->admitting = false;
		t->reject = DISPATCH_REJ_QUEUE_TIMEOUT;
		t->retry_after_s = dispatch_route_retry_after(t->route, now);
		ev.kind = EVENT_QUEUE_REJECTED;
		ev.u.rejected = DISPATCH_REJ_QUEUE_TIMEOUT;
		events_emit(&ev);
		t->answer(t, DISPATCH_REJECT);
	}
	for (qn = queue_first(&disp.queue); qn != NULL; qn = next) {
		struct dispatch_ticket *t = qn->owner;
		enum dispatch_verdict v;

		next = queue_next(&disp.queue, qn);
		if (t->admitting)
			continue;
		v = dispatch_decide(t, now);
		if (v == DISPATCH_WAIT)
			continue;
		dispatch_unpark(t, now);
		t->answer(t, v);
	}
	/* A probe's callbacks never run inside upstream_start, but hold the table anyway. */
	if ((all = disp.all) != NULL) {
		all->refs++;
		for (i = 0; i < all->n; i++)
			if (sched_probe_start(all->sp[i], cfg, now)) {
				dispatch_count_start(all->rt[i], now);	/* a start like any other */
				dispatch_probe_start(all->rp[i], all->rt[i]);
			}
		dispatch_route_unref(all);
	}
	dispatch_rearm();
}

/* ---- set-up and the read side ---- */

int
dispatch_init(struct loop *l)
{
	disp.loop = l;
	queue_init(&disp.queue);
	loop_timer_init(&disp.timer, dispatch_fire, NULL);
	if (disp.all == NULL)
		dispatch_routes_build();
	return 0;
}

void
dispatch_shutdown(void)
{
	struct disp_probe *pr;

	if (disp.loop != NULL)
		loop_timer_cancel(disp.loop, &disp.timer);
	/* A graceful stop: every window exactly as it is. */
	if (disp.all != NULL)
		for (size_t i = 0; i < disp.all->n; i++)
			dispatch_save_windows(disp.all->rt[i], sc_now_ms(), true);
	while ((pr = TAILQ_FIRST(&disp.probes)) != NULL) {
		upstream_cancel(pr->xfer);
		dispatch_probe_free(pr);
	}
	dispatch_routes_free();
}

size_t
dispatch_queue_depth(void)
{
	return queue_len(&disp.queue);
}

size_t
dispatch_in_flight(void)
{
	return disp.in_flight;
}

enum sched_state
dispatch_rt_state(const struct reg_provider *p, int64_t now)
{
	enum sched_state s;

	if (p->rt == NULL)
		return SCHED_ST_INVALID;
	s = sched_provider_state(&p->rt->sched, registry_config(), now);
	if (!p->usable && s != SCHED_ST_DISABLED)
		s = SCHED_ST_INVALID;	/* active but its key does not decrypt */
	return s;
}

bool
dispatch_rt_can_fetch(const struct reg_provider *p)
{
	/* A key found invalid or unhealthy would only fetch an error. */
	return p->usable && (p->rt == NULL || (!p->rt->sched.cd.invalid && !p->rt->sched.cd.unhealthy));
}
