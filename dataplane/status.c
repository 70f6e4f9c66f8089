/*
 * The live status snapshot (status.h, docs/status-snapshot.md).
 *
 * Rolling counts live in rings indexed by wall-clock second (the last
 * minute) and minute (the last hour): a slot remembers which second or
 * minute it holds and is cleared when reused, so no timer is needed and an
 * idle period costs nothing. Per-provider counts are kept by provider id, so
 * a reload or an edit of the row keeps them; an event finds its provider's
 * entry through the prov_rt serial (an array index), by id only the first
 * time a serial is seen. The counts arrive as events (events.h); the live
 * state is read from the dispatcher when the snapshot is built.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sc_autoconf.h"
#include "cluster.h"
#include "dispatch.h"
#include "events.h"
#include "registry.h"
#include "sched.h"
#include "status.h"

#define ST_SECS      60		/* the last minute, by second */
#define ST_MINS      60		/* the last hour, by minute */
#define ST_MAX_PROV  4096	/* providers remembered (ids ever seen) */

struct st_sec {
	int64_t  sec;			/* Unix second this slot holds */
	uint32_t requests, errors, fallback, emergency, upstream_429;
	int64_t  prompt_tokens, completion_tokens, total_tokens;
	double   cost;
};

struct st_min {
	int64_t  min;			/* Unix minute (seconds / 60) */
	uint32_t requests, errors;
	int64_t  total_tokens;
};

struct st_psec {
	int64_t  sec;
	uint32_t requests, errors;
};

/* One minute of a provider's finished requests, for its 5-minute success rate. */
struct st_pmin {
	int64_t  min;			/* Unix minute */
	uint32_t requests, errors;
};

#define ST_RATE_MINS 5

struct st_prov {
	char           id[37];
	int64_t        last_latency_ms;	/* -1 none yet */
	struct st_psec ring[ST_SECS];
	struct st_pmin mins[ST_RATE_MINS];	/* success_rate_5m */
};

static struct {
	int64_t         started_ms;	/* wall */
	struct st_sec   sec[ST_SECS];
	struct st_min   min[ST_MINS];
	struct st_prov *prov;		/* owned array */
	size_t          nprov, cprov;
	uint32_t       *by_serial;	/* owned: prov_rt serial -> index + 1 into prov, 0 = not seen */
	size_t          nserial;
	uint64_t        rejected_full, rejected_timeout;	/* the wait queue's 503s since start */
} st;

void
status_init(int64_t wall_ms)
{
	st.started_ms = wall_ms;
}

static struct st_sec *
status_sec(int64_t s)
{
	struct st_sec *x = &st.sec[s % ST_SECS];

	if (x->sec != s) {
		memset(x, 0, sizeof(*x));
		x->sec = s;
	}
	return x;
}

static struct st_prov *
status_prov(const char *id)
{
	size_t i;

	for (i = 0; i < st.nprov; i++)
		if (strcmp(st.prov[i].id, id) == 0)
			return &st.prov[i];
	if (st.nprov >= ST_MAX_PROV)
		return NULL;
	if (st.nprov == st.cprov) {
		st.cprov = st.cprov ? st.cprov * 2 : 16;
		st.prov = sc_xrealloc(st.prov, st.cprov * sizeof(*st.prov));
	}
	memset(&st.prov[st.nprov], 0, sizeof(st.prov[0]));
	snprintf(st.prov[st.nprov].id, sizeof(st.prov[0].id), "%s", id);
	st.prov[st.nprov].last_latency_ms = -1;
	return &st.prov[st.nprov++];
}

/* The entry of a provider known by its prov_rt serial (0: by id only). */
static struct st_prov *
status_prov_of(unsigned serial, const char *id)
{
	struct st_prov *p;

	if (serial == 0)
		return status_prov(id);
	if (serial < st.nserial && st.by_serial[serial] != 0)
		return &st.prov[st.by_serial[serial] - 1];
	if ((p = status_prov(id)) == NULL)
		return NULL;
	if (serial >= st.nserial) {
		size_t n = st.nserial ? st.nserial : 64;
		while (n <= serial)
			n *= 2;
		st.by_serial = sc_xrealloc(st.by_serial, n * sizeof(*st.by_serial));
		memset(st.by_serial + st.nserial, 0, (n - st.nserial) * sizeof(*st.by_serial));
		st.nserial = n;
	}
	st.by_serial[serial] = (uint32_t)(p - st.prov) + 1;
	return p;
}

static void
status_record(const struct request_result *r, int64_t wall_ms)
{
	int64_t s = wall_ms / 1000, m = s / 60;
	struct st_sec *x = status_sec(s);
	struct st_min *y = &st.min[m % ST_MINS];
	int64_t tok = r->total_tokens > 0 ? r->total_tokens : 0;

	x->requests++;
	x->errors += r->error != 0;
	x->prompt_tokens += r->prompt_tokens > 0 ? r->prompt_tokens : 0;
	x->completion_tokens += r->completion_tokens > 0 ? r->completion_tokens : 0;
	x->total_tokens += tok;
	x->cost += (double)tok / 1000.0 * r->cost_per_1k;
	if (r->provider_id != NULL && r->pool == SCHED_POOL_FALLBACK)
		x->fallback++;
	else if (r->provider_id != NULL && r->pool == SCHED_POOL_EMERGENCY)
		x->emergency++;
	if (y->min != m) {
		memset(y, 0, sizeof(*y));
		y->min = m;
	}
	y->requests++;
	y->errors += r->error != 0;
	y->total_tokens += tok;
	if (r->provider_id != NULL && r->upstream_sent) {
		struct st_prov *p = status_prov_of(r->serial, r->provider_id);
		if (p != NULL) {
			struct st_psec *ps = &p->ring[s % ST_SECS];
			int64_t lat = r->stream && r->ttfb_ms >= 0 ? r->ttfb_ms : r->latency_ms;
			if (ps->sec != s) {
				memset(ps, 0, sizeof(*ps));
				ps->sec = s;
			}
			struct st_pmin *pm = &p->mins[m % ST_RATE_MINS];
			ps->requests++;
			ps->errors += r->error != 0;
			if (pm->min != m) {
				memset(pm, 0, sizeof(*pm));
				pm->min = m;
			}
			pm->requests++;
			pm->errors += r->error != 0;
			lat -= r->queue_ms > 0 ? r->queue_ms : 0;
			p->last_latency_ms = lat > 0 ? lat : 0;
		}
	}
}

void
status_on_event(const struct event *ev)
{
	switch (ev->kind) {
	case EVENT_REQUEST_DONE:
		status_record(ev->u.request, sc_wall_ms());
		break;
	case EVENT_UPSTREAM_OUTCOME:
		if (ev->u.outcome.fail == COOLDOWN_FAIL_NONE && ev->u.outcome.status == 429)
			status_sec(sc_wall_ms() / 1000)->upstream_429++;
		break;
	case EVENT_COOLDOWN_STARTED:
		break;
	case EVENT_QUEUE_REJECTED:
		if (ev->u.rejected == DISPATCH_REJ_QUEUE_TIMEOUT)
			st.rejected_timeout++;
		else
			st.rejected_full++;
		break;
	}
}

static void
status_add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void
status_add_str(struct json_object *o, const char *k, const char *v)
{
	char *copy;

	if (v == NULL || sc_utf8_valid(v, strlen(v))) {
		json_object_object_add(o, k, v != NULL ? json_object_new_string(v) : NULL);
		return;
	}
	/* A name stored before the admin programs checked UTF-8: the snapshot
	 * goes to browsers as JSON and must stay valid. */
	copy = sc_xstrdup(v);
	sc_utf8_scrub(copy);
	json_object_object_add(o, k, json_object_new_string(copy));
	free(copy);
}

/* Cost rounded to a micro-unit, so the JSON shows 0.012 rather than 0.012000000000000001. */
static struct json_object *
status_cost(double c)
{
	char b[64];

	snprintf(b, sizeof(b), "%.6f", c);
	return json_object_new_double_s(c, b);
}

static struct json_object *
status_provider(struct reg_provider *rp, const struct config *cfg, int64_t now, int64_t wall_ms, int64_t s)
{
	struct json_object *o = json_object_new_object();
	const struct sched_provider *sp = rp->rt != NULL ? &rp->rt->sched : NULL;	/* read-only */
	struct st_prov *sp_st = NULL;
	uint32_t req = 0, err = 0, req5 = 0, err5 = 0;
	enum sched_state state = SCHED_ST_INVALID;
	int64_t rem = 0;
	size_t i;
	char ts[SC_TS_LEN];

	for (i = 0; i < st.nprov; i++)
		if (strcmp(st.prov[i].id, rp->p.id) == 0)
			sp_st = &st.prov[i];
	if (sp_st != NULL)
		for (i = 0; i < ST_SECS; i++)
			if (sp_st->ring[i].sec > s - ST_SECS && sp_st->ring[i].sec <= s) {
				req += sp_st->ring[i].requests;
				err += sp_st->ring[i].errors;
			}
	if (sp_st != NULL)
		for (i = 0; i < ST_RATE_MINS; i++)
			if (sp_st->mins[i].min > s / 60 - ST_RATE_MINS && sp_st->mins[i].min <= s / 60) {
				req5 += sp_st->mins[i].requests;
				err5 += sp_st->mins[i].errors;
			}
	state = dispatch_rt_state(rp, now);
	if (sp != NULL) {
		if (cooldown_is_cooling(&sp->cd, now))
			rem = sp->cd.cooldown_until_ms - now;
	}
	status_add_str(o, "id", rp->p.id);
	status_add_str(o, "name", rp->p.name);
	status_add_str(o, "pool", provider_pool_name(rp->p.pool));
	status_add_str(o, "status", provider_status_name(rp->p.status));
	status_add_str(o, "state", sched_state_name(state));
	status_add_int(o, "rpm_used", sp != NULL ? ratelimit_used(&sp->rl, now) : 0);
	status_add_int(o, "rpm_limit", rp->p.rpm_limit);
	status_add_int(o, "rpm_limit_effective", sp != NULL ? sched_limit_effective(sp, cfg) : rp->p.rpm_limit);
	if (sp != NULL && sp->nmodels > 0) {
		struct json_object *ms = json_object_new_object();

		for (i = 0; i < sp->nmodels; i++) {
			struct json_object *m = json_object_new_object();
			int conf, eff;

			sched_model_limits(sp, sp->models[i].model, cfg, &conf, &eff);
			status_add_int(m, "rpm_used", ratelimit_used(&sp->models[i].rl, now));
			status_add_int(m, "rpm_limit", conf);
			status_add_int(m, "rpm_limit_effective", eff);
			json_object_object_add(ms, sp->models[i].model, m);
		}
		json_object_object_add(o, "models", ms);
	}
	status_add_int(o, "cooldown_remaining_ms", rem);
	if (rem > 0) {
		sc_ts_format((wall_ms + rem + 999) / 1000, ts);
		status_add_str(o, "cooldown_until", ts);
	} else {
		status_add_str(o, "cooldown_until", NULL);
	}
	status_add_int(o, "consecutive_429", sp != NULL ? sp->cd.consecutive_429 : 0);
	status_add_int(o, "consecutive_failures", sp != NULL ? sp->cd.consecutive_failures : 0);
	status_add_str(o, "health", sp != NULL && sp->cd.unhealthy ? "unhealthy" : "healthy");
	if (sp_st != NULL && sp_st->last_latency_ms >= 0)
		status_add_int(o, "last_latency_ms", sp_st->last_latency_ms);
	else
		json_object_object_add(o, "last_latency_ms", NULL);
	status_add_int(o, "inflight", rp->rt != NULL ? rp->rt->in_flight : 0);
	status_add_int(o, "requests_1m", req);
	status_add_int(o, "errors_1m", err);
	/* Share of the last five minutes' requests that did not fail; null
	 * before the first one. Also persisted to provider_health by the flush. */
	json_object_object_add(o, "success_rate_5m",
	    req5 > 0 ? json_object_new_double((double)(req5 - err5) / req5) : NULL);
	return o;
}

char *
status_build(int64_t now, int64_t wall_ms)
{
	const struct config *cfg = registry_config();
	struct json_object *root = json_object_new_object(), *o, *a;
	struct st_sec lm;
	int64_t s = wall_ms / 1000, m = s / 60, t;
	const char *demo = getenv("SIDECAR_DEMO");
	size_t i;
	char ts[SC_TS_LEN];
	char *out;

	sc_ts_format(s, ts);
	status_add_str(root, "ts", ts);
	status_add_int(root, "ts_ms", wall_ms);
	status_add_int(root, "pid", (int64_t)getpid());
	sc_ts_format(st.started_ms / 1000, ts);
	status_add_str(root, "started_at", ts);
	status_add_str(root, "version", PACKAGE_VERSION);
	json_object_object_add(root, "demo",
	    json_object_new_boolean(demo != NULL && *demo != '\0' && strcmp(demo, "0") != 0));
	status_add_int(root, "inflight", (int64_t)dispatch_in_flight());

	o = json_object_new_object();
	status_add_int(o, "depth", (int64_t)dispatch_queue_depth());
	status_add_int(o, "capacity", cfg->queue_capacity);
	status_add_int(o, "rejected_overflow", (int64_t)st.rejected_full);
	status_add_int(o, "rejected_timeout", (int64_t)st.rejected_timeout);
	json_object_object_add(root, "queue", o);

	memset(&lm, 0, sizeof(lm));
	for (i = 0; i < ST_SECS; i++) {
		const struct st_sec *x = &st.sec[i];
		if (x->sec <= s - ST_SECS || x->sec > s)
			continue;
		lm.requests += x->requests;
		lm.errors += x->errors;
		lm.prompt_tokens += x->prompt_tokens;
		lm.completion_tokens += x->completion_tokens;
		lm.total_tokens += x->total_tokens;
		lm.cost += x->cost;
		lm.fallback += x->fallback;
		lm.emergency += x->emergency;
		lm.upstream_429 += x->upstream_429;
	}
	o = json_object_new_object();
	status_add_int(o, "requests", lm.requests);
	status_add_int(o, "errors", lm.errors);
	status_add_int(o, "prompt_tokens", lm.prompt_tokens);
	status_add_int(o, "completion_tokens", lm.completion_tokens);
	status_add_int(o, "total_tokens", lm.total_tokens);
	json_object_object_add(o, "cost", status_cost(lm.cost));
	status_add_int(o, "fallback", lm.fallback);
	status_add_int(o, "emergency", lm.emergency);
	status_add_int(o, "upstream_429", lm.upstream_429);
	json_object_object_add(root, "last_minute", o);

	a = json_object_new_array();
	for (t = m - ST_MINS + 1; t <= m; t++) {
		const struct st_min *y = &st.min[t % ST_MINS];
		o = json_object_new_object();
		status_add_int(o, "t", t * 60);
		status_add_int(o, "requests", y->min == t ? y->requests : 0);
		status_add_int(o, "errors", y->min == t ? y->errors : 0);
		status_add_int(o, "total_tokens", y->min == t ? y->total_tokens : 0);
		json_object_array_add(a, o);
	}
	json_object_object_add(root, "minutes", a);

	a = json_object_new_array();
	for (i = 0; i < registry_count(); i++)
		json_object_array_add(a, status_provider(registry_at(i), cfg, now, wall_ms, s));
	json_object_object_add(root, "providers", a);
	if ((o = cluster_status_json()) != NULL)
		json_object_object_add(root, "cluster", o);

	out = sc_xstrdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return out;
}
