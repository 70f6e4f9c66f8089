/*
 * The dispatcher: the one owner of every provider's runtime state and of the
 * decisions made with it. It keeps
 *   - one struct prov_rt per provider id (window, cooldown, health, emergency
 *     budget, in-flight count), created and carried across reloads through
 *     the registry hooks; the registry holds a typed pointer to it;
 *   - the routes (providers by model_prefix), rebuilt after every reload, so
 *     a decision never scans the registry;
 *   - the wait queue and its one timer (queue deadlines, provider changes,
 *     health probes), and the health probes themselves;
 *   - applying an upstream outcome (429 → cooldown, 401/403 → invalid,
 *     failures → health) and persisting what changed;
 *   - per-key admission behind struct dispatch_admission (the exact sliding
 *     window today), which may answer later (a window shared through Redis).
 *
 * The request side (proxy.c) embeds a struct dispatch_ticket, asks with
 * dispatch_ask, reports with dispatch_report, and never touches cooldown or
 * window state itself. Nothing outside dispatch.c writes a prov_rt field;
 * metrics, status, /health and the model list read it (read-only) or ask
 * dispatch_rt_state. The policy it applies lives in the pure modules
 * (sched.h, ratelimit.h, balancer.h, cooldown.h, queue.h).
 */
#ifndef SC_DISPATCH_H
#define SC_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cooldown.h"
#include "queue.h"
#include "sched.h"

struct loop;
struct reg_provider;

/* The runtime state of one provider id. Written only by dispatch.c. */
struct prov_rt {
	struct sched_provider sched;	/* owned: window, emergency budget, cooldown, health, WRR */
	int      in_flight;		/* upstream attempts in progress */
	unsigned serial;		/* dense, never reused: listeners index their tables by it */
	unsigned refs;			/* the registry's + one per ticket, route and probe holding it */
	int      unsaved;		/* starts since the windows were last persisted */
	bool     retired;		/* its provider left the registry: outcomes are not applied */
	char     fp[33];		/* the key's fingerprint (hex SHA-256 prefix), "" without a key:
					 * how a shared store names the key, never the key itself */
	int64_t  cluster_episode;	/* start (shared clock, ms) of the latest shared cooldown applied */
};

/* A route: the providers of one model_prefix, as of the last reload. */
struct dispatch_route;

enum dispatch_verdict {
	DISPATCH_GO,		/* ticket->prov / rt / pool hold the provider, its start is reserved */
	DISPATCH_WAIT,		/* parked: the answer comes later through ticket->answer */
	DISPATCH_REJECT,	/* ticket->reject says why */
};

enum dispatch_reject {
	DISPATCH_REJ_NONE,
	DISPATCH_REJ_NO_PROVIDER,	/* nothing usable: none with a key, all tried, invalid, unhealthy */
	DISPATCH_REJ_EXHAUSTED,		/* the emergency budget is used up or was tried */
	DISPATCH_REJ_BUSY,		/* the windows kept filling between decision and reservation */
	DISPATCH_REJ_QUEUE_FULL,	/* the wait queue is at queue_capacity */
	DISPATCH_REJ_QUEUE_TIMEOUT,	/* waited queue_timeout_seconds */
	DISPATCH_REJ_DRAINING,		/* the data plane is shutting down: nothing waits any more */
};

/* What one request holds of the dispatcher. Embedded in the request; the
 * fields are the dispatcher's (the request reads them). */
struct dispatch_ticket {
	struct queue_node      qn;		/* wait-queue link while parked */
	enum queue_prio        prio;
	struct sched_request   srq;		/* tried-set and attempts across retries */
	struct dispatch_route *route;		/* ref held */
	int64_t                t_wait;		/* monotonic ms when parked, 0 when not */
	int64_t                queue_ms;	/* total time parked */
	bool                   admitting;	/* an asynchronous admission answer is awaited */
	int64_t                admit_ms;	/* the admission's (shared) clock at the grant, ms; 0 = local.
						 * Written by the admission */
	/* The current or last attempt's provider (GO). */
	struct reg_provider   *prov;		/* ref held */
	struct prov_rt        *rt;		/* ref held */
	enum sched_pool        pool;
	bool                   running;		/* counted in rt->in_flight */
	int64_t                t_attempt;	/* when the attempt started (monotonic ms) */
	/* REJECT. */
	enum dispatch_reject   reject;
	int                    retry_after_s;	/* for the Retry-After header, >= 1 */
	/* Called from the dispatcher's timer with DISPATCH_GO or DISPATCH_REJECT
	 * for a ticket that was told DISPATCH_WAIT. */
	void                 (*answer)(struct dispatch_ticket *t, enum dispatch_verdict v);
};

/* Per-key admission: may rt take one start now? The local implementation
 * (the exact sliding window of ratelimit.h through sched_commit) answers at
 * once. One that answers later returns ADMIT_PENDING and calls
 * dispatch_admit_answer from the loop when its answer arrives; the ticket
 * meanwhile waits in the queue (its deadline applies; cancel is called if
 * it leaves first). Granting means the start is recorded: in the window and
 * in t->srq (sched_commit does both locally). */
enum admit_verdict { ADMIT_GRANT, ADMIT_DENY, ADMIT_PENDING };
struct admit_answer {
	enum admit_verdict verdict;
	int64_t            next_free_ms;	/* DENY: when a slot frees (monotonic ms), INT64_MAX unknown */
	struct prov_rt    *granted;		/* GRANT through dispatch_admit_answer: which candidate
						 * (NULL = the first) */
	int                used;		/* GRANT through dispatch_admit_answer: the starts the
						 * shared window held before it (what a 429 on it is
						 * judged by, learned limits); -1 = the local count */
	int                model_used;		/* the same for the shared model window, -1 = none
						 * or the local count */
};
/* cand[0] is the dispatcher's choice, the others (same pool, also eligible)
 * follow in its preference order; an admission may grant any one of them
 * (the first with room) or only look at cand[0]. */

/* The limits an admission must apply to a start of t on rt: the key's
 * window and, when t's model has a window of its own on rt, that window
 * (model NULL when not). Effective = learned (docs/scheduling.md). */
struct dispatch_limits {
	int         key_configured, key_effective;
	const char *model;		/* borrowed from t */
	int         model_configured, model_effective;
};
void dispatch_admit_limits(const struct prov_rt *rt, const struct dispatch_ticket *t, struct dispatch_limits *out);

struct dispatch_admission {
	struct admit_answer (*ask)(struct prov_rt *const cand[], size_t n, enum sched_pool pool,
	    struct dispatch_ticket *t, const struct config *c, int64_t now);
	void (*cancel)(struct dispatch_ticket *t);	/* forget a pending ask; may be NULL */
	/* An attempt's outcome changed rt's penalties (cr); true when the
	 * admission persists the cooldown itself (dispatch_cluster_cooldown).
	 * May be NULL. */
	bool (*outcome)(struct prov_rt *rt, const struct dispatch_ticket *t, const struct cooldown_result *cr,
	    int64_t retry_after_ms, const char *summary);
	/* The operator reset rt's cooldown (all = false) or made its key active again (true). May be NULL. */
	void (*cleared)(struct prov_rt *rt, bool all);
	size_t max_candidates;			/* cand[] length it wants, >= 1 */
};

int  dispatch_init(struct loop *l);
void dispatch_shutdown(void);
/* Replace the admission (NULL: the local window). */
void dispatch_set_admission(const struct dispatch_admission *a);

/* Registry hooks (registry.h): runtime state per id, kept across reloads. */
void dispatch_on_publish(struct reg_provider *p, struct reg_provider *old, void *arg);
void dispatch_on_retire(struct reg_provider *p, void *arg);
void dispatch_on_cooldown_reset(struct reg_provider *p, void *arg);
void dispatch_on_reloaded(void *arg);

/* The longest model_prefix that model starts with; NULL when none. The
 * prefix string stays valid while the route is held. */
struct dispatch_route *dispatch_route_find(const char *model);
const char *dispatch_route_prefix(const struct dispatch_route *rt);

/* A new request's ticket on route (takes a ref); t must be zeroed (the
 * request that embeds it is calloc'd). model: as the upstream knows it
 * (prefix stripped), borrowed for the ticket's life. */
void dispatch_ticket_init(struct dispatch_ticket *t, struct dispatch_route *route, const char *model,
    enum queue_prio prio, void (*answer)(struct dispatch_ticket *, enum dispatch_verdict));
/* Leave the queue, end a running attempt, drop the refs. */
void dispatch_ticket_release(struct dispatch_ticket *t);
/* Ask for a provider. fresh: a new request, which lines up behind waiters
 * instead of taking the slot the timer is about to hand out. */
enum dispatch_verdict dispatch_ask(struct dispatch_ticket *t, bool fresh);
/* An admission answer that came later (ADMIT_PENDING). */
void dispatch_admit_answer(struct dispatch_ticket *t, const struct admit_answer *a);

/* The attempt of a GO is running / ended (the in-flight count). */
void dispatch_attempt_started(struct dispatch_ticket *t, int64_t t0);	/* t0: when it was sent */
void dispatch_attempt_ended(struct dispatch_ticket *t);
/* How the attempt ended: applied to the provider's state and persisted; the
 * listeners hear of it. Safe inside curl callbacks (it only arms the timer).
 * retry_after_s: upstream Retry-After, -1 none; detail: failure text. */
enum cooldown_action dispatch_report(struct dispatch_ticket *t, enum cooldown_failure fail, int status,
    int retry_after_s, const char *detail);
/* Tokens a finished response reported (the provider's TPM window). */
void dispatch_report_tokens(struct dispatch_ticket *t, int64_t tokens);

/* Earliest monotonic ms at which some candidate of route could take a
 * request (window slot, cooldown end); INT64_MAX when none is known to. */
int64_t dispatch_route_next_free(const struct dispatch_route *route, int64_t now);
/* The same as whole seconds from now for Retry-After, >= 1;
 * retry_after_seconds when nothing is known. */
int dispatch_route_retry_after(const struct dispatch_route *route, int64_t now);
/* The route's candidates (providers with a usable key), and in *valid
 * those of them whose key is not marked invalid. */
size_t dispatch_route_keys(const struct dispatch_route *route, size_t *valid);
/* Shutting down: every parked ticket is answered DISPATCH_REJ_DRAINING now,
 * and none is parked from here on. */
void dispatch_drain(void);
/* Another attempt allowed for this ticket (the caller checks nothing was sent). */
bool dispatch_may_retry(const struct dispatch_ticket *t);

/* For a shared admission (cluster.c): what the cluster knows of a key,
 * applied by the one writer of prov_rt. */
void dispatch_rt_hold(struct prov_rt *rt);	/* keep rt alive across a callback */
void dispatch_rt_drop(struct prov_rt *rt);
/* The shared window has no room for rt before until (monotonic ms). */
void dispatch_cluster_hold(struct prov_rt *rt, int64_t until);
/* The shared window of model on rt has no room before until (monotonic ms);
 * a model without a window of its own on rt is ignored. */
void dispatch_cluster_model_hold(struct prov_rt *rt, const char *model, int64_t until);
/* Forget every hold (the admission's mode changed) and decide again. */
void dispatch_cluster_release_holds(void);
/* A cooldown episode the cluster knows: n-th step, remaining_ms left of
 * length_ms, started (shared clock ms) started_ago_ms ago. Applied and
 * persisted (a cooldown event) once per episode. */
void dispatch_cluster_cooldown(struct prov_rt *rt, int n, int64_t remaining_ms, int64_t length_ms,
    int64_t episode, int64_t started_ago_ms, const char *summary);
/* The cluster marked rt's key invalid (401/403 on some host). */
void dispatch_cluster_invalid(struct prov_rt *rt, const char *reason);

/* Read side. */
size_t dispatch_queue_depth(void);
size_t dispatch_in_flight(void);	/* upstream attempts over all providers */
/* Coarse state of p (SCHED_ST_INVALID when it has no runtime state or no key). */
enum sched_state dispatch_rt_state(const struct reg_provider *p, int64_t now);
/* Usable for a model-list fetch: has a key, not invalid, not unhealthy. */
bool dispatch_rt_can_fetch(const struct reg_provider *p);

#endif
