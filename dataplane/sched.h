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

/* Live scheduling state of one provider. */
struct sched_provider {
	const struct provider *cfg;	/* borrowed: static config, owned by the caller's list */
	struct ratelimit rl;		/* owned: RPM/TPM window */
	struct ratelimit emergency;	/* owned: emergency-channel starts, same span */
	struct cooldown  cd;		/* 429 cooldown, invalid, health */
	struct balancer_node bn;	/* smooth-WRR current weight */
	enum provider_status seen_status;	/* cfg->status at the last sync */
	int              saved_status;	/* upstream status last persisted (provider_health.last_status_code) */
};

/* Per-request memory across attempts. */
struct sched_request {
	char tried[SCHED_MAX_TRIED][37];	/* provider ids already attempted */
	int  ntried;
	int  attempts;			/* sched_commit calls so far */
	bool emergency_used;		/* the emergency channel was tried once */
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
};

void sched_provider_init(struct sched_provider *p, const struct provider *cfg, const struct config *c);
void sched_provider_free(struct sched_provider *p);
enum sched_state sched_provider_state(struct sched_provider *p, const struct config *c, int64_t now);
const char *sched_state_name(enum sched_state s);
const char *sched_pool_name(enum sched_pool p);

void sched_request_init(struct sched_request *rq);
bool sched_request_tried(const struct sched_request *rq, const struct sched_provider *p);
/* Another attempt allowed (the caller also checks that nothing was sent). */
bool sched_may_retry(const struct sched_request *rq, const struct config *c);

/* THE decision for one attempt among the route's candidates (any order;
 * both pools mixed; rq may be NULL for "a fresh request"). O(candidates).
 * Advances the chosen pool's WRR state on GO, so call it when you mean it. */
struct sched_decision sched_decide(struct sched_provider *const cand[], size_t n,
    const struct sched_request *rq, const struct config *c, int64_t now);
/* Reserve the start at `now` (the moment of sending) on p's window, and on
 * its emergency budget for SCHED_POOL_EMERGENCY; remember p in rq. 0, or -1
 * when the window has no room any more (nothing recorded: decide again). */
int sched_commit(struct sched_provider *p, enum sched_pool pool, struct sched_request *rq,
    const struct config *c, int64_t now);

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
