/*
 * The scheduling decision for one request attempt (SPEC §5.5): which provider
 * now, or wait, or give up. This is the one entry point the data plane calls;
 * it combines the exact window (ratelimit), the weighted round-robin
 * (balancer) and the penalties (cooldown). Pure: plain structs, the clock
 * passed in as monotonic ms, no I/O, no globals. docs/scheduling.md explains
 * the order and the subtle cases.
 *
 * How the data plane uses it (dataplane/dispatch.c, its only caller):
 *   - one struct sched_provider per provider id inside its struct prov_rt,
 *     for the process lifetime (windows survive a reload); on reload ->cfg
 *     points at the new struct provider (every entry point re-applies limits
 *     and settings itself);
 *   - per request a struct sched_request in the request's dispatch_ticket;
 *     d = sched_decide(route's candidates):
 *       GO     → the admission (sched_commit locally) right when the attempt
 *                is sent;
 *       WAIT   → the wait queue (a full queue → 503 queue_full);
 *       REJECT → 503 with Retry-After: d.retry_after_seconds;
 *   - on the upstream outcome: cooldown_on_outcome(&p->cd, ...); on RETRY and
 *     nothing sent to the client and sched_may_retry: decide again (the
 *     tried-set keeps it off the providers it already used);
 *   - fairness: while the queue holds waiters, a new request is pushed behind
 *     them instead of deciding first, else it would steal freed slots;
 *   - timer: min(queue_next_deadline, sched_next_change, sched_next_probe)
 *     over all providers; when it fires pop expired waiters (503), then walk
 *     the queue in service order deciding each.
 */
#ifndef SC_SCHED_H
#define SC_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balancer.h"
#include "../common/config.h"	/* not the autoconf config.h */
#include "cooldown.h"
#include "../common/providers.h"
#include "ratelimit.h"

#define SCHED_MAX_TRIED 16	/* providers remembered per request (caps attempts too) */

#define SCHED_LEARN_FORGET 10	/* clean windows after which a known-bad count is forgotten */

/* A learned limit (docs/scheduling.md "Learned limits"): a 429 that came while
 * the window held fewer starts than the limit sets the effective limit to
 * that count, but at most halves it per episode; every clean window (no 429
 * for a whole span) gives back a tenth of the configured limit, never above
 * a count known to meet 429 until SCHED_LEARN_FORGET clean windows passed. */
struct sched_learn {
	int     eff;		/* effective limit, 0 = the configured one */
	int     bad;		/* lowest window count known to meet a 429, 0 = none */
	int     clean;		/* clean windows since the last 429 */
	int64_t mark_ms;	/* start of the current clean window (monotonic ms) */
};

/* A per-model window (provider metadata model_rpm_limits). */
struct sched_model {
	char              *model;	/* owned: as the upstream knows it */
	int                limit;	/* configured starts per window */
	struct ratelimit   rl;		/* owned */
	struct sched_learn learn;
	int64_t            held_until_ms;	/* the shared model window (cluster admission) has no
					 * room before this monotonic ms; 0 = none */
};

/* Live scheduling state of one provider. */
struct sched_provider {
	const struct provider *cfg;	/* borrowed: static config, owned by the caller's list */
	struct ratelimit rl;		/* owned: RPM/TPM window */
	struct ratelimit emergency;	/* owned: emergency-channel starts, same span */
	struct cooldown  cd;		/* 429 cooldown, invalid, health, half-open */
	struct balancer_node bn;	/* smooth-WRR current weight */
	enum provider_status seen_status;	/* cfg->status at the last sync */
	int64_t held_until_ms;		/* a shared window (cluster admission) has no room before
					 * this monotonic ms; 0 = none. Counts like a full window */
	struct sched_learn learn;	/* the key window's learned limit */
	struct sched_model *models;	/* owned array, sorted by model, from cfg->model_rpm */
	size_t nmodels;
	const struct provider *models_of;	/* the cfg the model windows were built from */
	int              saved_status;	/* upstream status last persisted (provider_health.last_status_code) */
	/* What the last sync applied to the key and emergency windows; the
	 * next one returns at once while these are unchanged (see sched.c). */
	struct {
		bool    valid;		/* set by a full sync */
		int     rpm_limit;	/* cfg->rpm_limit */
		int     tpm_limit;	/* cfg->tpm_limit */
		int64_t span_ms;
		int     effective;	/* sched_limit_effective */
		double  emergency_ratio;	/* config emergency_rpm_ratio */
	} synced;
};

/* Per-request memory across attempts. */
/* A provider a request has attempted. */
struct sched_tried {
	char     id[37];		/* the provider's id */
	uint32_t episode;		/* its cooldown episode when last tried */
};

/* Most requests try one or two providers: those are held here, the rest of
 * the tried set (up to SCHED_MAX_TRIED) is allocated at the next one. */
#define SCHED_TRIED_INLINE 2

struct sched_request {
	struct sched_tried  tried[SCHED_TRIED_INLINE];	/* the first providers attempted */
	struct sched_tried *more;	/* owned: tried[SCHED_TRIED_INLINE..SCHED_MAX_TRIED), NULL
					 * until needed (sched_request_free) */
	int  ntried;
	int  attempts;			/* sched_commit calls so far */
	bool emergency_used;		/* the emergency channel was tried once */
	const char *model;		/* borrowed: model as the upstream knows it, NULL = none */
	/* The last commit (the attempt being sent or answered). */
	struct cooldown_stamp stamp;
	int  sent_used;			/* key window starts before it */
	int  sent_model_used;		/* its model window's starts before it, -1 = no model window */
};

enum sched_verdict { SCHED_GO, SCHED_WAIT, SCHED_REJECT };
enum sched_pool { SCHED_POOL_MAIN, SCHED_POOL_FALLBACK, SCHED_POOL_EMERGENCY };

/* Why a decision came out as it did (for logs and metrics). */
enum sched_why {
	SCHED_WHY_MAIN,			/* GO main */
	SCHED_WHY_FALLBACK,		/* GO fallback: main all cooling past recover_wait */
	SCHED_WHY_EMERGENCY,		/* GO emergency */
	SCHED_WHY_MAIN_FULL,		/* WAIT: a main provider only lacks window room */
	SCHED_WHY_MAIN_RECOVERING,	/* WAIT: a main provider recovers within recover_wait */
	SCHED_WHY_REVISIT,		/* WAIT/GO: everything tried; one cooled since and recovers within recover_wait */
	SCHED_WHY_FALLBACK_FULL,	/* WAIT: a fallback provider only lacks window room */
	SCHED_WHY_EXHAUSTED,		/* REJECT: emergency budget used up / already tried */
	SCHED_WHY_NO_PROVIDER,		/* REJECT: nothing usable (all tried, invalid, unhealthy, disabled) */
};

struct sched_decision {
	enum sched_verdict verdict;
	enum sched_why     why;
	size_t             index;	/* GO: into the candidate array */
	enum sched_pool    pool;	/* GO */
	int64_t            until_ms;	/* WAIT: when the answer may change (monotonic ms) */
	int                retry_after_seconds;	/* REJECT: for the Retry-After header, >= 1 */
};

/* Coarse state for /health, metrics and the dashboard. */
enum sched_state {
	SCHED_ST_READY, SCHED_ST_FULL, SCHED_ST_COOLING, SCHED_ST_UNHEALTHY,
	SCHED_ST_INVALID, SCHED_ST_DISABLED,
	SCHED_ST_PROBING,	/* half-open after a cooldown: one request until it answers */
};
#define SCHED_ST_COUNT (SCHED_ST_PROBING + 1)

void sched_provider_init(struct sched_provider *p, const struct provider *cfg, const struct config *c);
void sched_provider_free(struct sched_provider *p);
enum sched_state sched_provider_state(struct sched_provider *p, const struct config *c, int64_t now);
const char *sched_state_name(enum sched_state s);
const char *sched_pool_name(enum sched_pool p);

/* The limits in force: configured, and effective (learned; = configured when
 * learning is off or nothing was learned). model: the request's model; its
 * window's limits, or both 0 when it has no window of its own. */
int sched_limit_effective(const struct sched_provider *p, const struct config *c);
void sched_model_limits(const struct sched_provider *p, const char *model, const struct config *c,
    int *configured, int *effective);
struct sched_model *sched_model_of(const struct sched_provider *p, const char *model);

/* An answer arrived for rq's last commit on p (after cooldown_on_outcome gave
 * cr): learn from a 429. true when a learned limit changed (persist it). */
bool sched_note_outcome(struct sched_provider *p, const struct config *c, const struct sched_request *rq,
    const struct cooldown_result *cr, int status, int64_t now);
/* The learned-limit rules on their own (pure, for tests and the restore):
 * a 429 at window count w, a tick at now. true when eff changed. */
int  sched_learn_limit(const struct sched_learn *l, int configured);
bool sched_learn_cut(struct sched_learn *l, int configured, int w, int64_t now);
bool sched_learn_tick(struct sched_learn *l, int configured, int64_t span_ms, int64_t now);

void sched_request_init(struct sched_request *rq);
void sched_request_free(struct sched_request *rq);
bool sched_request_tried(const struct sched_request *rq, const struct sched_provider *p);
/* Another attempt allowed (the caller also checks that nothing was sent). */
bool sched_may_retry(const struct sched_request *rq, const struct config *c);

/* THE decision for one attempt among the route's candidates (any order;
 * both pools mixed; rq may be NULL for "a fresh request"). O(candidates).
 * Advances the chosen pool's WRR state on GO, so call it when you mean it. */
struct sched_decision sched_decide(struct sched_provider *const cand[], size_t n,
    const struct sched_request *rq, const struct config *c, int64_t now);
/* Reserve the start at `now` (the moment of sending) on p's window (and on
 * rq->model's window when p has one), and on its emergency budget for
 * SCHED_POOL_EMERGENCY; remember p in rq with the attempt's stamp and window
 * counts; a half-open provider's first start becomes its probe. 0, or -1
 * when a window has no room any more (nothing recorded: decide again). */
int sched_commit(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now);

/* The attempt was admitted elsewhere (a shared window granted it): keep
 * the same books as sched_commit without its window checks — the start on
 * p's key and model windows, the episode stamp and window counts the
 * learned limits and escalation rule read, a half-open key's probe. -1
 * (nothing recorded) only when p is half-open with its probe already out;
 * sched_commit is its window checks, then this. */
int sched_record(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now);
/* The other providers of the same pool as cand[first] that sched_decide
 * would also have offered now (for an admission that takes the first of
 * several with room), most room first; pool emergency has none. Writes at
 * most max indices into out; returns how many. */
size_t sched_alternatives(struct sched_provider *const cand[], size_t n, const struct sched_request *rq,
    size_t first, enum sched_pool pool, int64_t now, size_t out[], size_t max);

/* Earliest instant > now at which some usable provider (active, valid,
 * healthy) that cannot take a start now becomes able to (window slot frees,
 * cooldown ends); INT64_MAX when none. Arm the queue timer with it. */
int64_t sched_next_change(struct sched_provider *const all[], size_t n, const struct config *c, int64_t now);
/* Earliest due time of an active probe over unhealthy providers; INT64_MAX none. */
int64_t sched_next_probe(struct sched_provider *const all[], size_t n);
/* If p's probe is due and its window has room, reserve the start and push the
 * next probe one interval out: true means "send GET {endpoint}/models now"
 * and report with cooldown_on_probe. */
bool sched_probe_start(struct sched_provider *p, const struct config *c, int64_t now);

/* Earliest instant at which some usable provider of cand (ignoring
 * tried-sets) can take a start: now when one can at once, else its window
 * slot or cooldown end; INT64_MAX when none is usable. */
int64_t sched_next_free(struct sched_provider *const cand[], size_t n, const struct config *c, int64_t now);
/* Seconds until the earliest usable provider (ignoring tried-sets) frees,
 * rounded up, >= 1; retry_after_seconds when nothing is known to free. */
int sched_retry_after(struct sched_provider *const cand[], size_t n, const struct config *c, int64_t now);

#endif
