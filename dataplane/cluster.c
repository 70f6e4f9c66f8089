/*
 * Cluster admission through Redis (cluster.h, docs/cluster.md).
 *
 * Every Redis command is a struct cl_req. Asks wait in cl.waiting until a
 * slot of CL_MAX_ASKS is free and the connection is in sync; everything
 * sent is on cl.sent, oldest first, whose head's deadline arms the one
 * reply timer. A reply later than cluster_reply_timeout_ms makes Redis
 * "unreachable": the connection is dropped (a command written before may
 * still execute on Redis; a grant it makes is a slot wasted, never a start
 * sent), every pending ask is answered "no", and the mode goes to
 * quarantine. The connection is retried with a backoff; after it comes
 * back, the handshake (AUTH, SELECT, SCRIPT LOAD, TIME, the replay
 * of this host's recent grants, a heartbeat) completes before any ask is sent.
 *
 * Callbacks: hiredis calls cluster_on_reply from redisAsyncHandleRead and,
 * with reply == NULL, from redisAsyncFree for every command still pending.
 * A request is freed only there (exactly once). A ticket that leaves while
 * its ask is pending is forgotten (req->t = NULL), nothing more.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <openssl/sha.h>

#include "cluster.h"
#include "cluster_lua.h"
#include "crypto.h"
#include "dispatch.h"
#include "log.h"
#include "loop.h"
#include "redisurl.h"
#include "registry.h"
#include "util.h"

#define CL_MAX_ASKS      8	/* asks in flight at once; more wait (bounded by the queue) */
#define CL_MAX_CAND      8	/* candidates per ask */
#define CL_MAX_BEAT_KEYS 256	/* keys whose cluster window the heartbeat reads */
#define CL_MAX_HOSTS     64	/* hosts listed in the status */
#define CL_REPLAY_CHUNK  200	/* grants per replay command */
#define CL_RETRY_MIN_MS  100
#define CL_RETRY_MAX_MS  2000
#define CL_MEMBERSHIP_MS (10LL * 60 * 1000)	/* a host not seen for this long has left */
#define CL_RTT_N         10

static const double cl_rtt_bounds[CL_RTT_N] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
};

enum cl_kind { CL_AUTH, CL_SELECT, CL_LOAD, CL_TIME, CL_BEAT, CL_REPLAY, CL_ASK, CL_COOL, CL_OTHER };
enum cl_conn { CL_DOWN, CL_CONNECTING, CL_SYNCING, CL_UP };

/* One Redis command and what to do with its answer. */
struct cl_req {
	enum cl_kind kind;
	TAILQ_ENTRY(cl_req) link;		/* on cl.waiting or cl.sent */
	bool     sent, on_list;
	int64_t  sent_ms, deadline_ms;		/* monotonic */
	bool     eval;				/* sent again as EVAL after NOSCRIPT */
	int      argc, argcap;
	char   **argv;				/* owned array of owned strings */
	/* CL_ASK */
	struct dispatch_ticket *t;		/* NULL once answered or gone */
	size_t   n;
	struct prov_rt *rt[CL_MAX_CAND];	/* borrowed while t != NULL (its route holds them) */
	char     fp[CL_MAX_CAND][33];
	char     mh[CL_MAX_CAND][17];		/* the model window's name on each, "" = none */
	enum sched_pool pool;
	char     member[96];
	/* CL_COOL: rt held (dispatch_rt_hold); the local result if Redis fails */
	struct prov_rt *cool_rt;
	int      cool_n;
	int64_t  cool_until;			/* monotonic */
	int64_t  cool_len;
	char     summary[160];
	/* CL_BEAT: the fingerprints asked about, in order; n = 1: the handshake's */
	size_t   nbeat;
	char   (*beat_fp)[33];			/* owned */
};
TAILQ_HEAD(cl_reqs, cl_req);

/* One of this host's grants, kept one window for the replay. */
struct cl_grant {
	char    fp[33];
	char    mh[17];		/* its model window (cluster_model_hash), "" = none */
	char    member[96];
	int64_t shared_ms;	/* on Redis's clock (estimated for local-share grants) */
	int64_t local_ms;	/* monotonic */
	bool    emergency;
};

struct cl_host {
	char    name[65];
	int64_t age_ms;		/* since its last heartbeat, as of the last beat */
};

struct cl_keyview {
	char fp[33];
	int  used;		/* starts in the cluster's window at the last beat */
};

static struct {
	struct loop       *loop;
	bool               on;			/* redis_url set */
	char               url_raw[256];	/* as configured: compared on reload, never logged */
	struct redis_url   url;
	char               ns[65], host[65];
	char               prefix[80];		/* "sc:<namespace>:" */
	char               sha[41];		/* SHA1 of the script */
	redisAsyncContext *ac;
	int                fd;			/* registered with the loop, -1 none */
	short              events;
	enum cl_conn       conn;
	enum cluster_mode  mode;
	int64_t            last_good;		/* monotonic ms of the last good reply, 0 never */
	int64_t            beat_maybe;		/* monotonic: an unanswered heartbeat may act until then */
	int64_t            offset;		/* Redis clock - monotonic clock, ms, at most (deadlines) */
	int64_t            offset_hi;		/* the same, at least (local grants' times on Redis's clock) */
	bool               have_offset;		/* offset was measured */
	int64_t            connect_deadline;	/* monotonic, while CL_CONNECTING */
	int64_t            retry_ms;		/* reconnect backoff */
	struct loop_timer  reply_timer, beat_timer, mode_timer, retry_timer;
	struct cl_reqs     waiting, sent;
	size_t             asks_sent;
	uint64_t           seq;			/* grant member ids */
	int                hosts, live;		/* last beat: members, live */
	int                hosts_known;		/* the host count local shares use */
	int64_t            hosts_lower_since;
	struct cl_host     hostlist[CL_MAX_HOSTS];
	size_t             nhosts;
	struct cl_keyview *keys;		/* owned, nkeys */
	size_t             nkeys;
	struct cl_grant   *ring;		/* owned circular buffer of own grants */
	size_t             ring_cap, ring_head, ring_len;
	/* metrics */
	uint64_t           rtt_b[CL_RTT_N + 1], rtt_count;
	double             rtt_sum;
	uint64_t           script_errors, timeouts, reconnects, replayed, late_grants;
} cl = { .fd = -1 };

static struct admit_answer cluster_ask(struct prov_rt *const cand[], size_t n, enum sched_pool pool,
    struct dispatch_ticket *t, const struct config *c, int64_t now);
static void cluster_cancel(struct dispatch_ticket *t);
static bool cluster_outcome(struct prov_rt *rt, const struct dispatch_ticket *t, const struct cooldown_result *cr,
    int64_t retry_after_ms, const char *summary);
static void cluster_cleared(struct prov_rt *rt, bool all);
static const struct dispatch_admission cl_admission = {
	cluster_ask, cluster_cancel, cluster_outcome, cluster_cleared, CL_MAX_CAND,
};

static void cluster_send_waiting(void);
static void cluster_mode_eval(void);
static void cluster_fail(const char *why);
static void cluster_connect(void);

/* ---- small helpers ---- */

static int64_t
cluster_span(void)
{
	const struct config *c = registry_config();
	int64_t span = (int64_t)c->rpm_window_seconds * 1000 + c->rpm_window_margin_ms;

	return span > 0 ? span : 1;
}

/* A host is live while its heartbeat is younger than this. */
static int64_t
cluster_stale_ms(void)
{
	int64_t s = cluster_span() / 2;

	return s < 5000 ? s : 5000;
}

static int64_t
cluster_beat_ms(void)
{
	int64_t b = cluster_stale_ms() / 4;

	return b < 50 ? 50 : b > 1000 ? 1000 : b;
}

/* The latest Redis time at which a command sent now may still act (its
 * reply deadline on Redis's clock); 0 before the clock offset is known. */
static int64_t
cluster_deadline(void)
{
	if (!cl.have_offset)
		return 0;
	return sc_now_ms() + cl.offset + registry_config()->cluster_reply_timeout_ms;
}

static const char *
cluster_conn_name(enum cl_conn c)
{
	switch (c) {
	case CL_DOWN:		return "down";
	case CL_CONNECTING:	return "connecting";
	case CL_SYNCING:	return "syncing";
	case CL_UP:		return "up";
	}
	return "?";
}

const char *
cluster_mode_name(enum cluster_mode m)
{
	switch (m) {
	case CLUSTER_OFF:		return "off";
	case CLUSTER_SHARED:		return "shared";
	case CLUSTER_QUARANTINE:	return "quarantine";
	case CLUSTER_LOCAL_SHARE:	return "local_share";
	}
	return "?";
}

enum cluster_mode
cluster_mode(void)
{
	return cl.mode;
}

int
cluster_hosts(void)
{
	return cl.hosts_known > 0 ? cl.hosts_known : 1;
}

static struct cl_req *
cluster_req_new(enum cl_kind kind)
{
	struct cl_req *r = sc_xcalloc(1, sizeof(*r));

	r->kind = kind;
	return r;
}

static void
cluster_arg(struct cl_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
cluster_arg(struct cl_req *r, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (r->argc == r->argcap) {
		r->argcap = r->argcap ? r->argcap * 2 : 16;
		r->argv = realloc(r->argv, (size_t)r->argcap * sizeof(*r->argv));
		if (r->argv == NULL)
			abort();
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	r->argv[r->argc++] = s;
}

/* A script call: EVALSHA sha numkeys, the keys and arguments follow. */
static struct cl_req *
cluster_script_req(enum cl_kind kind, int numkeys)
{
	struct cl_req *r = cluster_req_new(kind);

	cluster_arg(r, "EVALSHA");
	cluster_arg(r, "%s", cl.sha);
	cluster_arg(r, "%d", numkeys);
	return r;
}

static void
cluster_req_free(struct cl_req *r)
{
	if (r->on_list)
		TAILQ_REMOVE(r->sent ? &cl.sent : &cl.waiting, r, link);
	if (r->sent && r->kind == CL_ASK)
		cl.asks_sent--;
	for (int i = 0; i < r->argc; i++)
		free(r->argv[i]);
	free(r->argv);
	if (r->cool_rt != NULL)
		dispatch_rt_drop(r->cool_rt);
	free(r->beat_fp);
	free(r);
}

/* ---- the loop adapter for hiredis ---- */

static void
cluster_on_fd(struct loop *l, int fd, short revents, void *arg)
{
	redisAsyncContext *ac = cl.ac;

	(void)l;
	(void)fd;
	(void)arg;
	if (ac == NULL)
		return;
	if (revents & (POLLIN | POLLHUP | POLLERR))
		redisAsyncHandleRead(ac);
	if (cl.ac == ac && (revents & POLLOUT))
		redisAsyncHandleWrite(ac);
}

static void
cluster_ev_set(short add, short del)
{
	int fd = cl.ac != NULL ? cl.ac->c.fd : -1;

	if (fd < 0)
		return;
	if (cl.fd != fd) {
		if (cl.fd >= 0)
			loop_fd_del(cl.loop, cl.fd);
		cl.events = 0;
		if (loop_fd_add(cl.loop, fd, 0, cluster_on_fd, NULL) == -1)
			return;
		cl.fd = fd;
	}
	cl.events = (short)((cl.events | add) & ~del);
	loop_fd_set_events(cl.loop, fd, cl.events);
}

static void cluster_ev_add_read(void *p)  { (void)p; cluster_ev_set(POLLIN, 0); }
static void cluster_ev_del_read(void *p)  { (void)p; cluster_ev_set(0, POLLIN); }
static void cluster_ev_add_write(void *p) { (void)p; cluster_ev_set(POLLOUT, 0); }
static void cluster_ev_del_write(void *p) { (void)p; cluster_ev_set(0, POLLOUT); }

static void
cluster_ev_cleanup(void *p)
{
	(void)p;
	if (cl.fd >= 0)
		loop_fd_del(cl.loop, cl.fd);
	cl.fd = -1;
	cl.events = 0;
}

/* ---- the replay ring ---- */

static void
cluster_ring_prune(int64_t now)
{
	int64_t span = cluster_span();

	while (cl.ring_len > 0 && cl.ring[cl.ring_head].local_ms <= now - span) {
		cl.ring_head = (cl.ring_head + 1) % cl.ring_cap;
		cl.ring_len--;
	}
}

static void
cluster_ring_add(const char *fp, const char *mh, const char *member, int64_t shared_ms, bool emergency, int64_t now)
{
	struct cl_grant *g;

	cluster_ring_prune(now);
	if (cl.ring_len == cl.ring_cap) {
		size_t cap = cl.ring_cap ? cl.ring_cap * 2 : 256;
		struct cl_grant *n = sc_xcalloc(cap, sizeof(*n));
		for (size_t i = 0; i < cl.ring_len; i++)
			n[i] = cl.ring[(cl.ring_head + i) % cl.ring_cap];
		free(cl.ring);
		cl.ring = n;
		cl.ring_cap = cap;
		cl.ring_head = 0;
	}
	g = &cl.ring[(cl.ring_head + cl.ring_len) % cl.ring_cap];
	snprintf(g->fp, sizeof(g->fp), "%s", fp);
	snprintf(g->mh, sizeof(g->mh), "%s", mh);
	snprintf(g->member, sizeof(g->member), "%s", member);
	g->shared_ms = shared_ms;
	g->local_ms = now;
	g->emergency = emergency;
	cl.ring_len++;
}

/* How Redis names a model's window on a key: 16 hex digits of the SHA-256
 * of the model's name (bounded, whatever the name); "" for no window. */
static void
cluster_model_hash(const char *model, char out[17])
{
	char h[65];

	out[0] = '\0';
	if (model == NULL)
		return;
	crypto_token_hash(model, h);
	memcpy(out, h, 16);
	out[16] = '\0';
}

/* ---- sending ---- */

static void
cluster_rearm_reply_timer(void)
{
	struct cl_req *r = TAILQ_FIRST(&cl.sent);

	if (cl.conn == CL_CONNECTING)
		return;	/* the connect deadline holds the timer */
	if (r == NULL)
		loop_timer_cancel(cl.loop, &cl.reply_timer);
	else if (!loop_timer_armed(&cl.reply_timer) || cl.reply_timer.when_ms != r->deadline_ms)
		loop_timer_arm(cl.loop, &cl.reply_timer, r->deadline_ms);
}

static void cluster_on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Write r on the connection; false when it could not be (r is not freed). */
static bool
cluster_write(struct cl_req *r)
{
	size_t *lens;
	int64_t now = sc_now_ms();
	int rc;

	if (cl.ac == NULL)
		return false;
	lens = sc_xcalloc((size_t)r->argc, sizeof(*lens));
	for (int i = 0; i < r->argc; i++)
		lens[i] = strlen(r->argv[i]);
	rc = redisAsyncCommandArgv(cl.ac, cluster_on_reply, r, r->argc, (const char **)r->argv, lens);
	free(lens);
	if (rc != REDIS_OK)
		return false;
	r->sent = true;
	r->on_list = true;
	r->sent_ms = now;
	r->deadline_ms = now + registry_config()->cluster_reply_timeout_ms;
	TAILQ_INSERT_TAIL(&cl.sent, r, link);
	if (r->kind == CL_ASK)
		cl.asks_sent++;
	cluster_rearm_reply_timer();
	return true;
}

/* Send r now (handshake, beats, reports) or drop it when there is no connection. */
static void
cluster_send(struct cl_req *r)
{
	if (!cluster_write(r))
		cluster_req_free(r);
}

/* ---- answers to asks ---- */

/* No answer from Redis for an ask: deny, holding its candidates until the
 * mode may let them go (cluster_mode_eval releases holds on a change). */
static void
cluster_ask_denied_locally(struct cl_req *r, int64_t until)
{
	struct admit_answer a = { ADMIT_DENY, until, NULL, -1, -1 };
	struct dispatch_ticket *t = r->t;

	if (t == NULL)
		return;
	r->t = NULL;
	for (size_t i = 0; i < r->n; i++)
		dispatch_cluster_hold(r->rt[i], until);
	dispatch_admit_answer(t, &a);
}

/* A grant is sent only if its answer came within this of the ask's sending:
 * Redis recorded the start when it ran the ask, and the upstream must see
 * it within the window's margin of that (half of it: the upstream's own
 * delays take the rest), and never after the reply timeout. */
static int64_t
cluster_usable_ms(void)
{
	const struct config *c = registry_config();
	int64_t u = c->rpm_window_margin_ms / 2;

	if (u < 10)
		u = 10;
	return u < c->cluster_reply_timeout_ms ? u : c->cluster_reply_timeout_ms;
}

/* The end of the quarantine: one window plus stale after the last moment
 * Redis may have seen this host live. That is the last good reply, or a
 * heartbeat that got no answer, which may still have run until its
 * deadline: until then plus stale the others take this host for live and
 * do not keep its share, so their grants of that time may fill the whole
 * window, for one window. */
static int64_t
cluster_quarantine_end(void)
{
	int64_t base = cl.beat_maybe > cl.last_good ? cl.beat_maybe : cl.last_good;

	return base + cluster_span() + cluster_stale_ms();
}

/* When nothing may be sent before: the end of the quarantine, or soon when
 * it is not known yet (the queue deadline ends the wait). */
static int64_t
cluster_quiet_until(int64_t now)
{
	if (cl.last_good == 0)
		return now + 1000;
	int64_t q = cluster_quarantine_end();
	return q > now ? q : now + 1000;
}

static long long
cluster_int(const redisReply *e)
{
	if (e == NULL)
		return 0;
	if (e->type == REDIS_REPLY_INTEGER)
		return e->integer;
	if (e->type == REDIS_REPLY_STRING)
		return strtoll(e->str, NULL, 10);
	return 0;
}

static void
cluster_rtt(int64_t ms)
{
	double s = (double)ms / 1000.0;
	size_t k;

	for (k = 0; k < CL_RTT_N && s > cl_rtt_bounds[k]; k++)
		;
	cl.rtt_b[k]++;
	cl.rtt_count++;
	cl.rtt_sum += s;
}

static void
cluster_ask_reply(struct cl_req *r, const redisReply *rep, int64_t now)
{
	struct dispatch_ticket *t = r->t;
	struct admit_answer a = { ADMIT_DENY, INT64_MAX, NULL, -1, -1 };
	long long granted, shared_now;
	size_t looked;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 || (rep->elements - 4) % 8 != 0) {
		cl.script_errors++;
		log_warn("cluster: unexpected answer to an admission ask");
		cluster_ask_denied_locally(r, now + 1000);
		return;
	}
	granted = cluster_int(rep->element[0]);
	shared_now = cluster_int(rep->element[1]);
	looked = (rep->elements - 4) / 8;
	if (granted >= 1 && (size_t)granted <= r->n)
		cluster_ring_add(r->fp[granted - 1], r->mh[granted - 1], r->member, shared_now,
		    r->pool == SCHED_POOL_EMERGENCY, now);
	if (t == NULL)
		return;	/* answered already or gone: a granted slot is wasted, never sent twice */
	if (granted >= 1 && now - r->sent_ms > cluster_usable_ms()) {
		/* The grant is in the shared window since Redis ran the ask, up to
		 * a round trip ago: sent now, the start would reach the upstream
		 * later than the window's margin allows (a stalled host reading
		 * its answers late). A used slot, not sent: decide again. */
		cl.late_grants++;
		granted = 0;
		a.next_free_ms = now;
	}
	r->t = NULL;
	for (size_t i = 0; i < looked && i < r->n; i++) {
		redisReply **e = rep->element + 4 + 8 * i;
		long long state = cluster_int(e[0]), wait = cluster_int(e[1]);
		long long n = cluster_int(e[3]), started = cluster_int(e[4]), len = cluster_int(e[5]);
		long long mcount = cluster_int(e[6]), mwait = cluster_int(e[7]);

		/* The model's shared window: held on its own, so that other
		 * models of the key keep flowing while it is full. */
		if (r->mh[i][0] != '\0' && (state == 0 || state == 1 || state == 4))
			dispatch_cluster_model_hold(r->rt[i], t->srq.model, mwait > 0 ? now + mwait : 0);
		switch (state) {
		case 0:
			dispatch_cluster_hold(r->rt[i], 0);
			a.used = (int)cluster_int(e[2]) - 1;	/* e[2]: the count with this grant */
			a.model_used = mcount >= 1 ? (int)mcount - 1 : -1;
			break;
		case 1:
			dispatch_cluster_hold(r->rt[i], now + wait);
			/* This request needs both windows: the later of the two. */
			if (mwait > wait)
				wait = mwait;
			if (now + wait < a.next_free_ms)
				a.next_free_ms = now + wait;
			break;
		case 4:
			if (now + wait < a.next_free_ms)
				a.next_free_ms = now + wait;
			break;
		case 2:
			dispatch_cluster_cooldown(r->rt[i], (int)n, wait, len, started, shared_now - started,
			    "HTTP 429 on a host of the cluster");
			if (now + wait < a.next_free_ms)
				a.next_free_ms = now + wait;
			break;
		case 3:
			dispatch_cluster_invalid(r->rt[i], "the key answered 401/403 on a host of the cluster");
			break;
		}
	}
	if (granted >= 1 && (size_t)granted <= r->n) {
		a.verdict = ADMIT_GRANT;
		a.granted = r->rt[granted - 1];
		t->admit_ms = shared_now;
	}
	dispatch_admit_answer(t, &a);
}

/* ---- heartbeats ---- */

/* The runtime state of the provider whose key has fingerprint fp, or NULL. */
static struct prov_rt *
cluster_rt_of(const char *fp)
{
	for (size_t i = 0; i < registry_count(); i++) {
		struct reg_provider *p = registry_at(i);
		if (p->rt != NULL && strcmp(p->rt->fp, fp) == 0)
			return p->rt;
	}
	return NULL;
}


static void
cluster_beat_reply(struct cl_req *r, const redisReply *rep, int64_t now)
{
	const redisReply *list;
	int members;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 || rep->element[3]->type != REDIS_REPLY_ARRAY) {
		cl.script_errors++;
		return;
	}
	members = (int)cluster_int(rep->element[1]);
	cl.hosts = members;
	cl.live = (int)cluster_int(rep->element[2]);
	/* The host count of the local share only shrinks after a host has been
	 * gone for the whole membership time: a restarted, empty Redis must not
	 * make the survivors forget a host that may be running on its share. */
	if (members >= cl.hosts_known) {
		cl.hosts_known = members;
		cl.hosts_lower_since = 0;
	} else if (cl.hosts_lower_since == 0)
		cl.hosts_lower_since = now;
	else if (now - cl.hosts_lower_since >= CL_MEMBERSHIP_MS) {
		cl.hosts_known = members;
		cl.hosts_lower_since = 0;
	}
	list = rep->element[3];
	cl.nhosts = 0;
	for (size_t i = 0; i + 1 < list->elements && cl.nhosts < CL_MAX_HOSTS; i += 2) {
		struct cl_host *h = &cl.hostlist[cl.nhosts++];
		snprintf(h->name, sizeof(h->name), "%s", list->element[i]->type == REDIS_REPLY_STRING ?
		    list->element[i]->str : "?");
		h->age_ms = cluster_int(list->element[i + 1]);
	}
	free(cl.keys);
	cl.keys = sc_xcalloc(r->nbeat + 1, sizeof(*cl.keys));
	cl.nkeys = 0;
	for (size_t i = 0; i < r->nbeat && 4 + 6 * i + 5 < rep->elements; i++) {
		redisReply **e = rep->element + 4 + 6 * i;
		long long ttl = cluster_int(e[1]), n = cluster_int(e[2]), started = cluster_int(e[3]);
		struct prov_rt *rt = cluster_rt_of(r->beat_fp[i]);

		snprintf(cl.keys[i].fp, sizeof(cl.keys[i].fp), "%s", r->beat_fp[i]);
		cl.keys[i].used = (int)cluster_int(e[0]);
		cl.nkeys++;
		if (rt == NULL)
			continue;
		if (ttl > 0)
			dispatch_cluster_cooldown(rt, (int)n, ttl, cluster_int(e[4]), started,
			    cluster_int(rep->element[0]) - started, "HTTP 429 on a host of the cluster");
		if (cluster_int(e[5]) == 1)
			dispatch_cluster_invalid(rt, "the key answered 401/403 on a host of the cluster");
	}
}

/* The heartbeat: this host, and every key's window as the cluster sees it. */
static struct cl_req *
cluster_beat_req(void)
{
	size_t i, n = registry_count(), k = 0;
	struct cl_req *r;
	char (*fps)[33] = sc_xcalloc(n + 1, sizeof(*fps));

	for (i = 0; i < n && k < CL_MAX_BEAT_KEYS; i++) {
		struct reg_provider *p = registry_at(i);
		if (p->rt == NULL || p->rt->fp[0] == '\0')
			continue;
		memcpy(fps[k++], p->rt->fp, 33);
	}
	r = cluster_script_req(CL_BEAT, (int)(3 * k + 1));
	cluster_arg(r, "%shosts", cl.prefix);
	for (i = 0; i < k; i++) {
		cluster_arg(r, "%sw:%s", cl.prefix, fps[i]);
		cluster_arg(r, "%sc:%s", cl.prefix, fps[i]);
		cluster_arg(r, "%si:%s", cl.prefix, fps[i]);
	}
	cluster_arg(r, "beat");
	cluster_arg(r, "%s", cl.host);
	cluster_arg(r, "%lld", (long long)cluster_span());
	cluster_arg(r, "%lld", (long long)cluster_stale_ms());
	cluster_arg(r, "%lld", (long long)CL_MEMBERSHIP_MS);
	cluster_arg(r, "%lld", (long long)cluster_deadline());
	r->beat_fp = fps;
	r->nbeat = k;
	return r;
}

static void
cluster_on_beat_timer(struct loop *l, void *arg)
{
	(void)arg;
	if (cl.conn == CL_UP)
		cluster_send(cluster_beat_req());
	loop_timer_arm_in(l, &cl.beat_timer, cluster_beat_ms());
}

/* ---- the replay ---- */

/* Re-add this host's grants of the last window (ZADD NX: nothing twice):
 * after a failover the new master may have lost them, after local-share
 * running Redis never saw them. The last command's answer ends the sync. */
static void
cluster_send_replay(void)
{
	int64_t now = sc_now_ms();
	size_t i = 0, total;
	struct cl_req *r;

	cluster_ring_prune(now);
	total = cl.ring_len;
	do {
		size_t k = total - i < CL_REPLAY_CHUNK ? total - i : CL_REPLAY_CHUNK;
		r = cluster_script_req(CL_REPLAY, (int)(3 * k));
		for (size_t j = 0; j < k; j++) {
			const struct cl_grant *g = &cl.ring[(cl.ring_head + i + j) % cl.ring_cap];
			cluster_arg(r, "%sw:%s", cl.prefix, g->fp);
			cluster_arg(r, "%se:%s", cl.prefix, g->fp);
			cluster_arg(r, "%sm:%s:%s", cl.prefix, g->fp, g->mh);
		}
		cluster_arg(r, "replay");
		cluster_arg(r, "%lld", (long long)cluster_span());
		for (size_t j = 0; j < k; j++) {
			const struct cl_grant *g = &cl.ring[(cl.ring_head + i + j) % cl.ring_cap];
			cluster_arg(r, "%lld", (long long)g->shared_ms);
			cluster_arg(r, "%s", g->member);
			cluster_arg(r, "%d", g->emergency ? 1 : 0);
			cluster_arg(r, "%d", g->mh[0] != '\0' ? 1 : 0);
		}
		i += k;
		cluster_send(r);
	} while (i < total);
}

/* The replay, then the heartbeat whose answer ends the sync. The replay
 * comes first: once this host is live again, the others stop keeping its
 * share, so its grants must be in Redis before. Asks are held while
 * syncing (cluster_ask), so no grant is made after the replay is built. */
static void
cluster_send_sync(void)
{
	struct cl_req *r;

	cluster_send_replay();
	r = cluster_beat_req();
	r->n = 1;	/* its answer completes the sync */
	cluster_send(r);
}

/* Redis's clock (ms) as answered to r, received at now (monotonic): the
 * command ran between r's sending and now, so the offset lies in
 * [shared - now, shared - sent]. Deadlines use the low end (a command
 * never acts after this host gave up on it), local grants the high end. */
static void
cluster_offset(long long shared, const struct cl_req *r, int64_t now)
{
	cl.offset = shared - now;
	cl.offset_hi = shared - r->sent_ms;
	cl.have_offset = true;
}

/* ---- replies ---- */

static bool
cluster_noscript(const redisReply *rep)
{
	return rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* Send r again as EVAL with the script's text (the script cache is empty:
 * a restarted Redis, or a replica promoted by a failover). */
static bool
cluster_resend_eval(struct cl_req *r)
{
	if (r->eval || r->argc < 2 || strcmp(r->argv[0], "EVALSHA") != 0)
		return false;
	TAILQ_REMOVE(&cl.sent, r, link);
	r->on_list = false;
	r->sent = false;
	if (r->kind == CL_ASK)
		cl.asks_sent--;
	free(r->argv[0]);
	free(r->argv[1]);
	r->argv[0] = sc_xstrdup("EVAL");
	r->argv[1] = sc_xstrdup(cluster_lua_source);
	r->eval = true;
	return cluster_write(r);
}

static void
cluster_sync_done(void)
{
	int64_t now = sc_now_ms();

	cl.conn = CL_UP;
	cl.retry_ms = CL_RETRY_MIN_MS;
	log_info("cluster: in sync with Redis %s:%d as host %s (%d hosts, %zu grants replayed)", cl.url.host,
	    cl.url.port, cl.host, cl.hosts, cl.ring_len);
	cl.last_good = now;
	cluster_mode_eval();
	cluster_send_waiting();
}

/* A request that got no usable answer (the connection went, or an error). */
static void
cluster_req_failed(struct cl_req *r)
{
	int64_t now = sc_now_ms();

	switch (r->kind) {
	case CL_ASK:
		cluster_ask_denied_locally(r, cluster_quiet_until(now));
		break;
	case CL_BEAT:
		/* It may still run on Redis until its deadline, and make this host
		 * look live to the others: the quarantine counts from there. */
		if (r->sent && r->deadline_ms > cl.beat_maybe)
			cl.beat_maybe = r->deadline_ms;
		break;
	case CL_COOL:
		/* Keep this host's own view: it is the cooldown that applies here. */
		if (r->cool_rt != NULL)
			dispatch_cluster_cooldown(r->cool_rt, r->cool_n, r->cool_until - now, r->cool_len, -now, 0,
			    r->summary);
		break;
	default:
		break;
	}
}

static void
cluster_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct cl_req *r = priv;
	const redisReply *rep = reply;
	int64_t now = sc_now_ms();

	(void)ac;
	if (rep == NULL) {
		/* The connection is going away: hiredis hands back every pending command. */
		cluster_req_failed(r);
		cluster_req_free(r);
		return;
	}
	if (cluster_noscript(rep) && cluster_resend_eval(r))
		return;
	cluster_rtt(now - r->sent_ms);
	if (rep->type == REDIS_REPLY_ERROR) {
		enum cl_kind kind = r->kind;
		if (kind == CL_AUTH) {
			log_error("cluster: Redis refused the password (AUTH failed)");
		} else if (kind == CL_SELECT) {
			log_error("cluster: Redis refused SELECT %d", cl.url.db);
		} else {
			cl.script_errors++;
			log_warn("cluster: Redis error: %.200s", rep->str);
		}
		cluster_req_failed(r);
		cluster_req_free(r);
		if (kind == CL_AUTH || kind == CL_SELECT || cl.conn != CL_UP)
			cluster_fail("handshake refused");
		else
			cluster_send_waiting();
		return;
	}
	/* A good reply (the "last good reply" of the quarantine rule). */
	cl.last_good = now;
	switch (r->kind) {
	case CL_ASK:
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2)
			cluster_offset(cluster_int(rep->element[1]), r, now);
		cluster_ask_reply(r, rep, now);
		break;
	case CL_BEAT:
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1)
			cluster_offset(cluster_int(rep->element[0]), r, now);
		cluster_beat_reply(r, rep, now);
		if (r->n == 1 && cl.conn == CL_SYNCING) {
			cluster_req_free(r);
			cluster_sync_done();
			return;
		}
		break;
	case CL_TIME:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
			cluster_req_free(r);
			cluster_fail("unexpected answer to TIME");
			return;
		}
		cluster_offset(cluster_int(rep->element[0]) * 1000 + cluster_int(rep->element[1]) / 1000, r, now);
		if (cl.conn == CL_SYNCING)
			cluster_send_sync();
		break;
	case CL_REPLAY:
		cl.replayed += (uint64_t)cluster_int(rep);
		break;
	case CL_COOL:
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 5 && r->cool_rt != NULL) {
			long long n = cluster_int(rep->element[1]), remaining = cluster_int(rep->element[2]);
			long long started = cluster_int(rep->element[3]), len = cluster_int(rep->element[4]);
			if (remaining > 0 || cluster_int(rep->element[0]) == 1)
				dispatch_cluster_cooldown(r->cool_rt, (int)n, remaining, len, started,
			    now + cl.offset - started, r->summary);
		}
		break;
	default:
		break;
	}
	cluster_req_free(r);
	cluster_rearm_reply_timer();
	cluster_send_waiting();
}

static void
cluster_on_reply_timer(struct loop *l, void *arg)
{
	struct cl_req *r = TAILQ_FIRST(&cl.sent);

	(void)l;
	(void)arg;
	if (cl.conn == CL_CONNECTING) {
		if (sc_now_ms() >= cl.connect_deadline) {
			cl.timeouts++;
			cluster_fail("connect timed out");
		} else
			loop_timer_arm(cl.loop, &cl.reply_timer, cl.connect_deadline);
		return;
	}
	if (r == NULL)
		return;
	if (r->deadline_ms > sc_now_ms()) {
		cluster_rearm_reply_timer();
		return;
	}
	cl.timeouts++;
	cluster_fail("no reply within cluster_reply_timeout_ms");
}

/* ---- connection ---- */

static void
cluster_on_connect(const redisAsyncContext *ac, int status)
{
	struct cl_req *r;

	if (ac != cl.ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		log_warn("cluster: cannot connect to Redis %s:%d: %s", cl.url.host, cl.url.port,
		    ac->errstr[0] ? ac->errstr : "error");
		cl.ac = NULL;
		cl.conn = CL_DOWN;
		loop_timer_cancel(cl.loop, &cl.reply_timer);
		loop_timer_arm_in(cl.loop, &cl.retry_timer, cl.retry_ms);
		cluster_mode_eval();
		return;
	}
	cl.conn = CL_SYNCING;
	loop_timer_cancel(cl.loop, &cl.reply_timer);
	if (cl.url.password[0] != '\0') {
		r = cluster_req_new(CL_AUTH);
		cluster_arg(r, "AUTH");
		if (cl.url.user[0] != '\0')
			cluster_arg(r, "%s", cl.url.user);
		cluster_arg(r, "%s", cl.url.password);
		cluster_send(r);
	}
	if (cl.url.db != 0) {
		r = cluster_req_new(CL_SELECT);
		cluster_arg(r, "SELECT");
		cluster_arg(r, "%d", cl.url.db);
		cluster_send(r);
	}
	r = cluster_req_new(CL_LOAD);
	cluster_arg(r, "SCRIPT");
	cluster_arg(r, "LOAD");
	cluster_arg(r, "%s", cluster_lua_source);
	cluster_send(r);
	/* Redis's clock first: the heartbeat's deadline needs it, and the
	 * replay's times of local-share grants are converted with it. */
	r = cluster_req_new(CL_TIME);
	cluster_arg(r, "TIME");
	cluster_send(r);
}

static void
cluster_on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	if (ac != cl.ac)
		return;
	log_warn("cluster: connection to Redis %s:%d lost", cl.url.host, cl.url.port);
	cl.ac = NULL;
	cl.conn = CL_DOWN;
	loop_timer_cancel(cl.loop, &cl.reply_timer);
	loop_timer_arm_in(cl.loop, &cl.retry_timer, cl.retry_ms);
	cluster_mode_eval();
}

/* A connect attempt; its answer comes through cluster_on_connect. */
static void
cluster_connect(void)
{
	redisAsyncContext *ac;

	if (!cl.on || cl.ac != NULL)
		return;
	ac = redisAsyncConnect(cl.url.host, cl.url.port);
	if (ac == NULL || ac->err) {
		log_warn("cluster: cannot connect to Redis %s:%d: %s", cl.url.host, cl.url.port,
		    ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		loop_timer_arm_in(cl.loop, &cl.retry_timer, cl.retry_ms);
		return;
	}
	cl.ac = ac;
	cl.conn = CL_CONNECTING;
	cl.reconnects++;
	/* Hooks first: setting the connect callback already asks to write. */
	ac->ev.data = NULL;
	ac->ev.addRead = cluster_ev_add_read;
	ac->ev.delRead = cluster_ev_del_read;
	ac->ev.addWrite = cluster_ev_add_write;
	ac->ev.delWrite = cluster_ev_del_write;
	ac->ev.cleanup = cluster_ev_cleanup;
	redisAsyncSetConnectCallback(ac, cluster_on_connect);
	redisAsyncSetDisconnectCallback(ac, cluster_on_disconnect);
	/* The connect deadline is the reply timer's while connecting. */
	cl.connect_deadline = sc_now_ms() + registry_config()->cluster_reply_timeout_ms + 1000;
	loop_timer_arm(cl.loop, &cl.reply_timer, cl.connect_deadline);
	cl.retry_ms = cl.retry_ms * 2 > CL_RETRY_MAX_MS ? CL_RETRY_MAX_MS : cl.retry_ms * 2;
}

static void
cluster_on_retry_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	cluster_connect();
}

/* Drop the connection (Redis unreachable, late, or refusing): pending
 * commands come back through cluster_on_reply with NULL. */
static void
cluster_fail(const char *why)
{
	redisAsyncContext *ac = cl.ac;

	if (ac == NULL) {
		/* A connect that never answered. */
		cluster_mode_eval();
		return;
	}
	log_warn("cluster: Redis %s:%d unreachable (%s)", cl.url.host, cl.url.port, why);
	cl.conn = CL_DOWN;
	loop_timer_cancel(cl.loop, &cl.reply_timer);
	cl.ac = NULL;
	redisAsyncFree(ac);	/* deferred by hiredis when inside one of its callbacks */
	cluster_ev_cleanup(NULL);
	loop_timer_arm_in(cl.loop, &cl.retry_timer, cl.retry_ms);
	cluster_mode_eval();
}

/* ---- the mode ---- */

static void
cluster_on_mode_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	cluster_mode_eval();
}

static void
cluster_mode_eval(void)
{
	int64_t now = sc_now_ms(), span = cluster_span();
	int64_t q_end = cluster_quarantine_end();
	int64_t l_end = cl.last_good + CL_MEMBERSHIP_MS - span;
	enum cluster_mode m, old = cl.mode;
	int64_t next = 0;

	if (!cl.on)
		m = CLUSTER_OFF;
	else if (cl.conn == CL_UP)
		m = CLUSTER_SHARED;
	else if (cl.last_good == 0 || cl.hosts_known == 0 || now < q_end) {
		/* Never in sync (no heartbeat answered: the host count of a
		 * share is unknown), or inside the quarantine. */
		m = CLUSTER_QUARANTINE;
		next = cl.last_good == 0 || cl.hosts_known == 0 ? 0 : q_end;
	} else if (now < l_end) {
		m = CLUSTER_LOCAL_SHARE;
		next = l_end;
	} else
		m = CLUSTER_QUARANTINE;
	if (next != 0)
		loop_timer_arm(cl.loop, &cl.mode_timer, next);
	else
		loop_timer_cancel(cl.loop, &cl.mode_timer);
	if (m == old)
		return;
	cl.mode = m;
	switch (m) {
	case CLUSTER_SHARED:
		log_warn("cluster: shared mode: the cluster's windows decide (%d hosts)", cl.hosts);
		break;
	case CLUSTER_QUARANTINE:
		log_warn("cluster: QUARANTINE: Redis unreachable; nothing is sent until %lld ms after the last good "
		    "reply", (long long)(span + cluster_stale_ms()));
		break;
	case CLUSTER_LOCAL_SHARE:
		log_warn("cluster: LOCAL SHARE: Redis still unreachable; each key serves floor(limit / %d) per window "
		    "on this host", cluster_hosts());
		break;
	case CLUSTER_OFF:
		log_info("cluster: off (no redis_url): this host's own windows decide");
		break;
	}
	/* What was held under the old mode no longer says anything. */
	dispatch_cluster_release_holds();
	cluster_send_waiting();
}

/* ---- the admission ---- */

static struct admit_answer
cluster_local_share(struct prov_rt *rt, enum sched_pool pool, struct dispatch_ticket *t, const struct config *c,
    int64_t now)
{
	struct admit_answer a = { ADMIT_DENY, INT64_MAX, NULL, -1, -1 };
	int h = cluster_hosts();
	int share = rt->sched.rl.admit / h, eshare = rt->sched.emergency.limit / h;
	int64_t free_at;
	struct sched_model *m;
	char member[96], mh[17];

	free_at = ratelimit_next_free_below(&rt->sched.rl, now, share);
	if ((m = sched_model_of(&rt->sched, t->srq.model)) != NULL) {
		/* The model's window: a share of its (effective) limit too. A
		 * full share holds the whole key until it frees (other models
		 * included: degraded mode costs capacity, never overshoots). */
		int64_t f = ratelimit_next_free_below(&m->rl, now, m->rl.admit / h);
		if (f > free_at)
			free_at = f;
	}
	if (pool == SCHED_POOL_EMERGENCY) {
		int64_t e = ratelimit_next_free_below(&rt->sched.emergency, now, eshare);
		if (e > free_at)
			free_at = e;
	}
	if (free_at <= now && sched_commit(&rt->sched, pool, &t->srq, c, now) == 0) {
		snprintf(member, sizeof(member), "%s:%llu", cl.host, (unsigned long long)++cl.seq);
		cluster_model_hash(m != NULL ? t->srq.model : NULL, mh);
		/* On Redis's clock, late rather than early: the replay's
		 * entry then stays in the shared window at least as long. */
		cluster_ring_add(rt->fp, mh, member, now + cl.offset_hi, pool == SCHED_POOL_EMERGENCY, now);
		t->admit_ms = 0;
		a.verdict = ADMIT_GRANT;
		return a;
	}
	if (free_at == INT64_MAX || free_at <= now)
		free_at = now + cluster_span();	/* a share of 0: nothing on this host until Redis is back */
	dispatch_cluster_hold(rt, free_at);
	a.next_free_ms = free_at;
	return a;
}

static struct admit_answer
cluster_ask(struct prov_rt *const cand[], size_t n, enum sched_pool pool, struct dispatch_ticket *t,
    const struct config *c, int64_t now)
{
	struct admit_answer a = { ADMIT_DENY, INT64_MAX, NULL, -1, -1 };
	struct dispatch_limits lim[CL_MAX_CAND];
	struct cl_req *r;
	size_t i;

	if (n > CL_MAX_CAND)
		n = CL_MAX_CAND;
	switch (cl.mode) {
	case CLUSTER_OFF:
	case CLUSTER_SHARED:
		break;
	case CLUSTER_QUARANTINE:
		a.next_free_ms = cluster_quiet_until(now);
		for (i = 0; i < n; i++)
			dispatch_cluster_hold(cand[i], a.next_free_ms);
		return a;
	case CLUSTER_LOCAL_SHARE:
		if (cl.conn == CL_SYNCING) {
			/* The replay is on its way: a grant made now would be in no
			 * replay and, once this host looks live, in nobody's reserve. */
			a.next_free_ms = now + c->cluster_reply_timeout_ms;
			for (i = 0; i < n; i++)
				dispatch_cluster_hold(cand[i], a.next_free_ms);
			return a;
		}
		return cluster_local_share(cand[0], pool, t, c, now);
	}
	r = cluster_script_req(CL_ASK, (int)(1 + 5 * n));
	r->t = t;
	r->n = n;
	r->pool = pool;
	snprintf(r->member, sizeof(r->member), "%s:%llu", cl.host, (unsigned long long)++cl.seq);
	cluster_arg(r, "%shosts", cl.prefix);
	for (i = 0; i < n; i++) {
		dispatch_admit_limits(cand[i], t, &lim[i]);
		r->rt[i] = cand[i];
		snprintf(r->fp[i], sizeof(r->fp[i]), "%s", cand[i]->fp);
		cluster_model_hash(lim[i].model, r->mh[i]);
		cluster_arg(r, "%sw:%s", cl.prefix, cand[i]->fp);
		cluster_arg(r, "%se:%s", cl.prefix, cand[i]->fp);
		cluster_arg(r, "%sc:%s", cl.prefix, cand[i]->fp);
		cluster_arg(r, "%si:%s", cl.prefix, cand[i]->fp);
		cluster_arg(r, "%sm:%s:%s", cl.prefix, cand[i]->fp, r->mh[i]);
	}
	cluster_arg(r, "ask");
	cluster_arg(r, "%lld", (long long)cluster_span());
	cluster_arg(r, "%s", r->member);
	cluster_arg(r, "%s", pool == SCHED_POOL_EMERGENCY ? "emergency" : "main");
	cluster_arg(r, "%d", cl.hosts_known);
	cluster_arg(r, "%lld", (long long)cluster_stale_ms());
	cluster_arg(r, "%lld", (long long)CL_MEMBERSHIP_MS);
	cluster_arg(r, "%lld", (long long)cluster_deadline());
	for (i = 0; i < n; i++) {
		cluster_arg(r, "%d", lim[i].key_effective);
		cluster_arg(r, "%d", lim[i].key_configured);
		cluster_arg(r, "%d", cand[i]->sched.emergency.limit);
		cluster_arg(r, "%d", lim[i].model != NULL ? lim[i].model_effective : 0);
		cluster_arg(r, "%d", lim[i].model != NULL ? lim[i].model_configured : 0);
	}
	if (cl.asks_sent < CL_MAX_ASKS && TAILQ_EMPTY(&cl.waiting)) {
		if (!cluster_write(r)) {
			/* Never answer through dispatch_admit_answer from inside an ask. */
			cluster_req_free(r);
			a.next_free_ms = now + 1000;
			for (i = 0; i < n; i++)
				dispatch_cluster_hold(cand[i], a.next_free_ms);
			return a;
		}
	} else {
		r->on_list = true;
		TAILQ_INSERT_TAIL(&cl.waiting, r, link);
	}
	a.verdict = ADMIT_PENDING;
	return a;
}

/* Send waiting asks while slots are free; an ask whose candidates are all
 * held by now is answered "no" without a round trip. */
static void
cluster_send_waiting(void)
{
	struct cl_req *r;
	int64_t now = sc_now_ms();

	while (cl.conn == CL_UP && cl.asks_sent < CL_MAX_ASKS && (r = TAILQ_FIRST(&cl.waiting)) != NULL) {
		int64_t held = INT64_MAX;
		size_t i;

		TAILQ_REMOVE(&cl.waiting, r, link);
		r->on_list = false;
		if (r->t == NULL) {
			cluster_req_free(r);
			continue;
		}
		for (i = 0; i < r->n && r->rt[i]->sched.held_until_ms > now; i++)
			if (r->rt[i]->sched.held_until_ms < held)
				held = r->rt[i]->sched.held_until_ms;
		if (i == r->n) {
			struct admit_answer a = { ADMIT_DENY, held, NULL, -1, -1 };
			struct dispatch_ticket *t = r->t;
			cluster_req_free(r);
			dispatch_admit_answer(t, &a);
			continue;
		}
		if (!cluster_write(r)) {
			cluster_req_failed(r);
			cluster_req_free(r);
		}
	}
	if (cl.mode != CLUSTER_SHARED) {
		/* The mode changed under waiting asks: answer them now. */
		while ((r = TAILQ_FIRST(&cl.waiting)) != NULL) {
			TAILQ_REMOVE(&cl.waiting, r, link);
			r->on_list = false;
			cluster_req_failed(r);
			cluster_req_free(r);
		}
	}
}

static void
cluster_cancel(struct dispatch_ticket *t)
{
	struct cl_req *r;

	TAILQ_FOREACH(r, &cl.waiting, link)
		if (r->t == t)
			r->t = NULL;
	TAILQ_FOREACH(r, &cl.sent, link)
		if (r->t == t)
			r->t = NULL;
}

static bool
cluster_outcome(struct prov_rt *rt, const struct dispatch_ticket *t, const struct cooldown_result *cr,
    int64_t retry_after_ms, const char *summary)
{
	const struct config *c = registry_config();
	struct cl_req *r;

	if (cl.mode != CLUSTER_SHARED || rt->fp[0] == '\0')
		return false;
	if (cr->became_invalid) {
		r = cluster_script_req(CL_OTHER, 1);
		cluster_arg(r, "%si:%s", cl.prefix, rt->fp);
		cluster_arg(r, "inv");
		cluster_arg(r, "%s", summary);
		cluster_send(r);
	}
	if (cr->streak_reset) {
		r = cluster_script_req(CL_OTHER, 1);
		cluster_arg(r, "%sn:%s", cl.prefix, rt->fp);
		cluster_arg(r, "ok");
		cluster_send(r);
	}
	if (!cr->cooldown_started && !cr->cooldown_extended)
		return false;
	r = cluster_script_req(CL_COOL, 2);
	cluster_arg(r, "%sc:%s", cl.prefix, rt->fp);
	cluster_arg(r, "%sn:%s", cl.prefix, rt->fp);
	cluster_arg(r, "cool");
	cluster_arg(r, "%lld", (long long)t->admit_ms);
	cluster_arg(r, "%lld", (long long)c->cooldown_base_seconds * 1000);
	cluster_arg(r, "%lld", (long long)c->cooldown_max_seconds * 1000);
	cluster_arg(r, "%lld", (long long)(retry_after_ms > 0 ? retry_after_ms : -1));
	cluster_arg(r, "%d", cr->cooldown_started ? 1 : 0);
	dispatch_rt_hold(rt);
	r->cool_rt = rt;
	r->cool_n = cr->count;
	r->cool_until = cr->cooldown_until_ms;
	r->cool_len = (int64_t)cr->cooldown_seconds * 1000;
	snprintf(r->summary, sizeof(r->summary), "%s", summary);
	if (!cluster_write(r)) {
		cluster_req_failed(r);
		cluster_req_free(r);
	}
	return true;
}

static void
cluster_cleared(struct prov_rt *rt, bool all)
{
	struct cl_req *r;

	if (cl.conn != CL_UP || rt->fp[0] == '\0')
		return;
	r = cluster_script_req(CL_OTHER, 3);
	cluster_arg(r, "%sc:%s", cl.prefix, rt->fp);
	cluster_arg(r, "%sn:%s", cl.prefix, rt->fp);
	cluster_arg(r, "%si:%s", cl.prefix, rt->fp);
	cluster_arg(r, "clear");
	cluster_arg(r, "%s", all ? "all" : "cooldown");
	cluster_send(r);
}

/* ---- settings ---- */

static void
cluster_disconnect(void)
{
	redisAsyncContext *ac = cl.ac;

	cl.conn = CL_DOWN;
	loop_timer_cancel(cl.loop, &cl.reply_timer);
	loop_timer_cancel(cl.loop, &cl.retry_timer);
	if (ac != NULL) {
		cl.ac = NULL;
		redisAsyncFree(ac);
		cluster_ev_cleanup(NULL);
	}
}

void
cluster_on_reloaded(void)
{
	const struct config *c = registry_config();
	char host[65];
	const char *why;
	bool was_on = cl.on;

	if (cl.loop == NULL)
		return;	/* the first load, before cluster_init */
	if (!was_on && c->redis_url[0] == '\0')
		return;	/* a single host, and still one */
	if (c->cluster_host_name[0] != '\0')
		snprintf(host, sizeof(host), "%s", c->cluster_host_name);
	else if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "host-%d", (int)getpid());
	host[sizeof(host) - 1] = '\0';
	if (was_on && strcmp(cl.url_raw, c->redis_url) == 0 && strcmp(cl.ns, c->cluster_namespace) == 0 &&
	    strcmp(cl.host, host) == 0)
		return;
	cluster_disconnect();
	snprintf(cl.url_raw, sizeof(cl.url_raw), "%s", c->redis_url);
	snprintf(cl.ns, sizeof(cl.ns), "%s", c->cluster_namespace);
	snprintf(cl.host, sizeof(cl.host), "%s", host);
	snprintf(cl.prefix, sizeof(cl.prefix), "sc:%s:", cl.ns);
	cl.on = c->redis_url[0] != '\0';
	if (cl.on && redisurl_parse(c->redis_url, &cl.url, &why) == -1) {
		log_error("cluster: redis_url is not usable (%s); running as a single host", why);
		cl.on = false;
	}
	if (!cl.on) {
		dispatch_set_admission(NULL);
		cluster_mode_eval();
		return;
	}
	/* A new cluster (or a first start): what this host knew no longer applies. */
	cl.last_good = 0;
	cl.beat_maybe = 0;
	cl.have_offset = false;
	cl.hosts_known = 0;
	cl.ring_len = 0;
	cl.retry_ms = CL_RETRY_MIN_MS;
	dispatch_set_admission(&cl_admission);
	log_info("cluster: host %s, namespace %s, Redis %s:%d", cl.host, cl.ns, cl.url.host, cl.url.port);
	cluster_mode_eval();
	cluster_connect();
	if (!loop_timer_armed(&cl.beat_timer))
		loop_timer_arm_in(cl.loop, &cl.beat_timer, cluster_beat_ms());
}

int
cluster_init(struct loop *l)
{
	cl.loop = l;
	TAILQ_INIT(&cl.waiting);
	TAILQ_INIT(&cl.sent);
	loop_timer_init(&cl.reply_timer, cluster_on_reply_timer, NULL);
	loop_timer_init(&cl.beat_timer, cluster_on_beat_timer, NULL);
	loop_timer_init(&cl.mode_timer, cluster_on_mode_timer, NULL);
	loop_timer_init(&cl.retry_timer, cluster_on_retry_timer, NULL);
	{
		unsigned char md[SHA_DIGEST_LENGTH];
		SHA1((const unsigned char *)cluster_lua_source, strlen(cluster_lua_source), md);
		for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
			snprintf(cl.sha + 2 * i, 3, "%02x", md[i]);
	}
	cl.retry_ms = CL_RETRY_MIN_MS;
	cluster_on_reloaded();
	return 0;
}

void
cluster_shutdown(void)
{
	struct cl_req *r;

	if (cl.loop == NULL)
		return;
	cl.on = false;
	cluster_disconnect();	/* pending commands come back with NULL and are freed */
	while ((r = TAILQ_FIRST(&cl.waiting)) != NULL) {
		TAILQ_REMOVE(&cl.waiting, r, link);
		r->on_list = false;
		cluster_req_free(r);
	}
	loop_timer_cancel(cl.loop, &cl.beat_timer);
	loop_timer_cancel(cl.loop, &cl.mode_timer);
	dispatch_set_admission(NULL);
	free(cl.ring);
	free(cl.keys);
	cl.ring = NULL;
	cl.keys = NULL;
	cl.ring_cap = cl.ring_len = cl.nkeys = 0;
	cl.loop = NULL;
}

/* ---- observability ---- */

void
cluster_render_metrics(struct sc_buf *b)
{
	uint64_t cum = 0;
	size_t k;

	sc_buf_printf(b, "# HELP sidecar_cluster_enabled 1 when redis_url is set (several hosts share the keys)\n"
	    "# TYPE sidecar_cluster_enabled gauge\nsidecar_cluster_enabled %d\n", cl.on ? 1 : 0);
	if (!cl.on)
		return;
	sc_buf_printf(b, "# HELP sidecar_cluster_redis_connected 1 while the connection to Redis is in sync\n"
	    "# TYPE sidecar_cluster_redis_connected gauge\nsidecar_cluster_redis_connected %d\n",
	    cl.conn == CL_UP ? 1 : 0);
	sc_buf_printf(b, "# HELP sidecar_cluster_mode The admission mode (1 for the current one)\n"
	    "# TYPE sidecar_cluster_mode gauge\n");
	for (int m = CLUSTER_SHARED; m <= CLUSTER_LOCAL_SHARE; m++)
		sc_buf_printf(b, "sidecar_cluster_mode{mode=\"%s\"} %d\n", cluster_mode_name((enum cluster_mode)m),
		    cl.mode == (enum cluster_mode)m ? 1 : 0);
	sc_buf_printf(b, "# HELP sidecar_cluster_hosts Hosts of the cluster as last seen\n"
	    "# TYPE sidecar_cluster_hosts gauge\nsidecar_cluster_hosts %d\n", cluster_hosts());
	sc_buf_printf(b, "# HELP sidecar_cluster_hosts_live Hosts whose heartbeat is recent\n"
	    "# TYPE sidecar_cluster_hosts_live gauge\nsidecar_cluster_hosts_live %d\n", cl.live);
	sc_buf_printf(b, "# HELP sidecar_cluster_redis_rtt_seconds Round trip of Redis commands\n"
	    "# TYPE sidecar_cluster_redis_rtt_seconds histogram\n");
	for (k = 0; k < CL_RTT_N; k++) {
		cum += cl.rtt_b[k];
		sc_buf_printf(b, "sidecar_cluster_redis_rtt_seconds_bucket{le=\"%g\"} %llu\n", cl_rtt_bounds[k],
		    (unsigned long long)cum);
	}
	cum += cl.rtt_b[CL_RTT_N];
	sc_buf_printf(b, "sidecar_cluster_redis_rtt_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "sidecar_cluster_redis_rtt_seconds_sum %.9g\nsidecar_cluster_redis_rtt_seconds_count %llu\n",
	    (unsigned long long)cum, cl.rtt_sum, (unsigned long long)cl.rtt_count);
	sc_buf_printf(b, "# HELP sidecar_cluster_script_errors_total Error answers to the admission script\n"
	    "# TYPE sidecar_cluster_script_errors_total counter\nsidecar_cluster_script_errors_total %llu\n",
	    (unsigned long long)cl.script_errors);
	sc_buf_printf(b, "# HELP sidecar_cluster_redis_timeouts_total Redis replies later than "
	    "cluster_reply_timeout_ms\n# TYPE sidecar_cluster_redis_timeouts_total counter\n"
	    "sidecar_cluster_redis_timeouts_total %llu\n", (unsigned long long)cl.timeouts);
	sc_buf_printf(b, "# HELP sidecar_cluster_redis_connects_total Connection attempts to Redis\n"
	    "# TYPE sidecar_cluster_redis_connects_total counter\nsidecar_cluster_redis_connects_total %llu\n",
	    (unsigned long long)cl.reconnects);
	sc_buf_printf(b, "# HELP sidecar_cluster_late_grants_total Grants answered too late to be sent (slots wasted)\n"
	    "# TYPE sidecar_cluster_late_grants_total counter\nsidecar_cluster_late_grants_total %llu\n",
	    (unsigned long long)cl.late_grants);
	sc_buf_printf(b, "# HELP sidecar_cluster_replayed_total Own grants re-added to Redis after a reconnect\n"
	    "# TYPE sidecar_cluster_replayed_total counter\nsidecar_cluster_replayed_total %llu\n",
	    (unsigned long long)cl.replayed);
}

struct json_object *
cluster_status_json(void)
{
	struct json_object *o, *a, *h;
	size_t i, j, n = registry_count();

	if (!cl.on)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "mode", json_object_new_string(cluster_mode_name(cl.mode)));
	json_object_object_add(o, "connection", json_object_new_string(cluster_conn_name(cl.conn)));
	json_object_object_add(o, "host", json_object_new_string(cl.host));
	json_object_object_add(o, "namespace", json_object_new_string(cl.ns));
	json_object_object_add(o, "hosts_known", json_object_new_int(cluster_hosts()));
	json_object_object_add(o, "hosts_live", json_object_new_int(cl.live));
	a = json_object_new_array();
	for (i = 0; i < cl.nhosts; i++) {
		h = json_object_new_object();
		json_object_object_add(h, "name", json_object_new_string(cl.hostlist[i].name));
		json_object_object_add(h, "last_seen_ms_ago", json_object_new_int64(cl.hostlist[i].age_ms));
		json_object_object_add(h, "live", json_object_new_boolean(cl.hostlist[i].age_ms < cluster_stale_ms()));
		json_object_array_add(a, h);
	}
	json_object_object_add(o, "hosts", a);
	a = json_object_new_array();
	for (i = 0; i < n; i++) {
		struct reg_provider *p = registry_at(i);
		if (p->rt == NULL)
			continue;
		for (j = 0; j < cl.nkeys && strcmp(cl.keys[j].fp, p->rt->fp) != 0; j++)
			;
		if (j == cl.nkeys)
			continue;
		h = json_object_new_object();
		json_object_object_add(h, "provider", json_object_new_string(p->p.name));
		json_object_object_add(h, "cluster_used", json_object_new_int(cl.keys[j].used));
		json_object_object_add(h, "limit", json_object_new_int(p->p.rpm_limit));
		json_object_array_add(a, h);
	}
	json_object_object_add(o, "keys", a);
	return o;
}
