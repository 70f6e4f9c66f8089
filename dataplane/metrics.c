/*
 * Prometheus text exposition for the metrics port (metrics.h; every metric
 * is described in docs/metrics.md).
 *
 * Counters and histograms live in memory on the loop thread, per provider
 * NAME (never a key, never a prompt), fed by the events of events.h: a
 * listener only increments. The entry of a provider is found through its
 * prov_rt serial (an array index), by name only the first time a serial is
 * seen. Gauges of live state (window use, provider state, queue) are read
 * from the dispatcher at scrape time. What needs the database is kept off
 * the loop: a maintenance thread with its own connection runs PRAGMA
 * quick_check every few minutes and reads the newest backup outcome every
 * few seconds; a scrape only copies their last results and stat()s the
 * database files.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sc_autoconf.h"
#include "cluster.h"
#include "db.h"
#include "log.h"
#include "dispatch.h"
#include "events.h"
#include "metrics.h"
#include "persist.h"
#include "registry.h"
#include "sched.h"
#include "stats.h"

#define MX_MAX_PROV        1024		/* provider names with counters; more share the "" entry */
#define MX_QUICK_CHECK_S   300		/* PRAGMA quick_check interval */
#define MX_BACKUP_POLL_S   5		/* backups table poll interval */
#define MX_RENDER_CAP      (4 * 1024 * 1024)

/* Histogram bucket bounds (seconds). */
#define MX_LAT_N 12
static const double mx_lat_bounds[MX_LAT_N] = {
	0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120,
};
#define MX_WAIT_N 10
static const double mx_wait_bounds[MX_WAIT_N] = {
	0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

struct mx_hist {
	uint64_t b[MX_LAT_N + 1];	/* non-cumulative; the last one is +Inf */
	uint64_t count;
	double   sum;			/* seconds */
};

/* The pools of enum sched_pool, then requests no provider took. */
#define MX_POOL_NONE (SCHED_POOL_EMERGENCY + 1)
#define MX_POOLS     (MX_POOL_NONE + 1)
#define MX_CLASSES 6
static const char *const mx_class_names[MX_CLASSES] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };
enum { MX_UP_2XX, MX_UP_429, MX_UP_4XX, MX_UP_5XX, MX_UP_OTHER, MX_UP_CONNECT, MX_UP_TIMEOUT, MX_UP_N };
static const char *const mx_up_names[MX_UP_N] = {
	"2xx", "429", "4xx", "5xx", "other", "connect_error", "timeout",
};

/* Counters of one provider name. */
struct mx_prov {
	char          *name;			/* owned; "" = requests no provider took */
	uint64_t       req[MX_POOLS][MX_CLASSES];
	struct mx_hist lat;			/* upstream latency: whole response, queue excluded */
	struct mx_hist ttft;			/* streams: time to first token, queue excluded */
	uint64_t       up[MX_UP_N];		/* upstream attempts by outcome */
	uint64_t       cooldowns;
	uint64_t       fallback, emergency;	/* requests served by those pools */
	uint64_t       prompt_tokens, completion_tokens;
	double         cost;
	uint64_t       no_usage;		/* 2xx streams that ended without usage */
};

static struct {
	struct mx_prov   *prov;		/* owned array */
	size_t            nprov, cprov;
	uint32_t         *by_serial;	/* owned: prov_rt serial -> index + 1 into prov, 0 = not seen */
	size_t            nserial;
	uint64_t          rejected_full, rejected_timeout;	/* the wait queue's 503s */
	struct mx_hist    wait;		/* queue wait (uses the first MX_WAIT_N bounds slots) */
	double            start_time_s;	/* process start, Unix seconds */
	char              db_path[4096];
	int               started;
} mx;

/* The maintenance thread and what it found (under mu). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	pthread_t       th;
	int             running, stop;
	int             integrity_known, integrity_ok;
	int64_t         integrity_ts;		/* Unix seconds of the last check */
	int             backup_known, backup_success;
	int             backup_have_ok;
	int64_t         backup_ok_ts;		/* Unix seconds of the last successful finish */
} mt = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* ---- counters ---- */

static struct mx_prov *
metrics_prov(const char *name)
{
	size_t i;

	if (name == NULL)
		name = "";
	for (i = 0; i < mx.nprov; i++)
		if (strcmp(mx.prov[i].name, name) == 0)
			return &mx.prov[i];
	if (mx.nprov >= MX_MAX_PROV)
		return metrics_prov(NULL);
	if (mx.nprov == mx.cprov) {
		mx.cprov = mx.cprov ? mx.cprov * 2 : 16;
		mx.prov = sc_xrealloc(mx.prov, mx.cprov * sizeof(*mx.prov));
	}
	memset(&mx.prov[mx.nprov], 0, sizeof(mx.prov[0]));
	mx.prov[mx.nprov].name = sc_xstrdup(name);
	return &mx.prov[mx.nprov++];
}

/* The entry of a provider known by its prov_rt serial (0: by name only). */
static struct mx_prov *
metrics_prov_of(unsigned serial, const char *name)
{
	struct mx_prov *p;

	if (serial == 0)
		return metrics_prov(name);
	if (serial < mx.nserial && mx.by_serial[serial] != 0)
		return &mx.prov[mx.by_serial[serial] - 1];
	if (serial >= mx.nserial) {
		size_t n = mx.nserial ? mx.nserial : 64;
		while (n <= serial)
			n *= 2;
		mx.by_serial = sc_xrealloc(mx.by_serial, n * sizeof(*mx.by_serial));
		memset(mx.by_serial + mx.nserial, 0, (n - mx.nserial) * sizeof(*mx.by_serial));
		mx.nserial = n;
	}
	p = metrics_prov(name);
	mx.by_serial[serial] = (uint32_t)(p - mx.prov) + 1;
	return p;
}

static void
metrics_observe(struct mx_hist *h, const double *bounds, size_t n, double v)
{
	size_t k;

	for (k = 0; k < n && v > bounds[k]; k++)
		;
	h->b[k]++;
	h->count++;
	h->sum += v;
}

static void
metrics_request_done(const struct request_result *r)
{
	struct mx_prov *p = r->provider_id != NULL ? metrics_prov_of(r->serial, r->provider_name) : metrics_prov(NULL);
	int k = r->status / 100, pool = MX_POOL_NONE, ok = r->status >= 200 && r->status < 300;
	int64_t q = r->queue_ms > 0 ? r->queue_ms : 0;

	if (r->provider_id != NULL)
		pool = (int)r->pool;
	p->req[pool][k >= 1 && k <= 5 ? k : 0]++;
	if (r->upstream_sent && r->provider_id != NULL) {
		metrics_observe(&p->lat, mx_lat_bounds, MX_LAT_N,
		    (double)(r->latency_ms - q > 0 ? r->latency_ms - q : 0) / 1000.0);
		if (r->stream && r->ttfb_ms >= 0)
			metrics_observe(&p->ttft, mx_lat_bounds, MX_LAT_N,
			    (double)(r->ttfb_ms - q > 0 ? r->ttfb_ms - q : 0) / 1000.0);
		if (pool == SCHED_POOL_FALLBACK)
			p->fallback++;
		else if (pool == SCHED_POOL_EMERGENCY)
			p->emergency++;
		if (r->prompt_tokens > 0)
			p->prompt_tokens += (uint64_t)r->prompt_tokens;
		if (r->completion_tokens > 0)
			p->completion_tokens += (uint64_t)r->completion_tokens;
		if (r->total_tokens > 0)
			p->cost += (double)r->total_tokens / 1000.0 * r->cost_per_1k;
		if (r->stream && ok && r->total_tokens < 0)
			p->no_usage++;
	}
	if (r->upstream_sent || q > 0)
		metrics_observe(&mx.wait, mx_wait_bounds, MX_WAIT_N, (double)q / 1000.0);
}

static void
metrics_upstream_outcome(const struct event_outcome *o)
{
	struct mx_prov *p = metrics_prov_of(o->serial, o->provider_name);
	int k, status = o->status;

	if (o->fail == COOLDOWN_FAIL_CONNECT)
		k = MX_UP_CONNECT;
	else if (o->fail == COOLDOWN_FAIL_TTFB)
		k = MX_UP_TIMEOUT;
	else if (status == 429)
		k = MX_UP_429;
	else if (status >= 200 && status < 300)
		k = MX_UP_2XX;
	else if (status >= 400 && status < 500)
		k = MX_UP_4XX;
	else if (status >= 500 && status < 600)
		k = MX_UP_5XX;
	else
		k = MX_UP_OTHER;
	p->up[k]++;
}

void
metrics_on_event(const struct event *ev)
{
	switch (ev->kind) {
	case EVENT_REQUEST_DONE:
		metrics_request_done(ev->u.request);
		break;
	case EVENT_UPSTREAM_OUTCOME:
		metrics_upstream_outcome(&ev->u.outcome);
		break;
	case EVENT_COOLDOWN_STARTED:
		metrics_prov_of(ev->u.outcome.serial, ev->u.outcome.provider_name)->cooldowns++;
		break;
	case EVENT_QUEUE_REJECTED:
		if (ev->u.rejected == DISPATCH_REJ_QUEUE_TIMEOUT)
			mx.rejected_timeout++;
		else
			mx.rejected_full++;
		break;
	}
}

/* ---- the maintenance thread ---- */

static void
metrics_quick_check(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int ok = 0, rc;

	if (sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL) == SQLITE_OK) {
		rc = sqlite3_step(st);
		ok = rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
		    strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
		if (!ok)
			log_error("database quick_check failed: %s", rc == SQLITE_ROW &&
			    sqlite3_column_text(st, 0) != NULL ? (const char *)sqlite3_column_text(st, 0) :
			    sqlite3_errmsg(db));
	} else {
		log_error("database quick_check could not run: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	pthread_mutex_lock(&mt.mu);
	mt.integrity_known = 1;
	mt.integrity_ok = ok;
	mt.integrity_ts = sc_wall_ms() / 1000;
	pthread_mutex_unlock(&mt.mu);
}

/* The newest backup's outcome and the last successful finish. */
static void
metrics_read_backups(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int known = 0, success = 0, have_ok = 0;
	int64_t ok_ts = 0;

	if (sqlite3_prepare_v2(db, "SELECT success FROM backups ORDER BY finished_at DESC, id DESC LIMIT 1",
	    -1, &st, NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(st) == SQLITE_ROW) {
		known = 1;
		success = sqlite3_column_int(st, 0) == 1;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db, "SELECT max(finished_at) FROM backups WHERE success = 1", -1, &st,
	    NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
	    sc_ts_parse((const char *)sqlite3_column_text(st, 0), &ok_ts) == 0)
		have_ok = 1;
	sqlite3_finalize(st);
	pthread_mutex_lock(&mt.mu);
	mt.backup_known = known;
	mt.backup_success = success;
	mt.backup_have_ok = have_ok;
	mt.backup_ok_ts = ok_ts;
	pthread_mutex_unlock(&mt.mu);
}

static void *
metrics_maint_main(void *arg)
{
	struct sc_err e;
	struct timespec ts;
	sqlite3 *db;
	int64_t last_check = 0, now;

	sc_err_clear(&e);
	db = db_open(mx.db_path, 0, &e);
	if (db == NULL) {
		log_error("metrics: cannot open a read connection: %s", e.msg);
		return NULL;
	}
	pthread_mutex_lock(&mt.mu);
	while (!mt.stop) {
		pthread_mutex_unlock(&mt.mu);
		now = sc_now_ms() / 1000;
		if (last_check == 0 || now - last_check >= MX_QUICK_CHECK_S) {
			metrics_quick_check(db);
			last_check = now;
		}
		metrics_read_backups(db);
		pthread_mutex_lock(&mt.mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += MX_BACKUP_POLL_S;
		while (!mt.stop && pthread_cond_timedwait(&mt.cv, &mt.mu, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&mt.mu);
	db_close(db);
	return NULL;
}

/* Process start from /proc (Unix seconds), or now. */
static double
metrics_proc_start(void)
{
	char buf[4096], *p;
	unsigned long long start_ticks = 0, btime = 0;
	long tck = sysconf(_SC_CLK_TCK);
	FILE *f;
	int i;

	if ((f = fopen("/proc/self/stat", "r")) == NULL)
		goto now;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p == NULL || (p = strrchr(buf, ')')) == NULL)
		goto now;
	/* Field 22 (starttime); after ") " comes field 3. */
	for (i = 3, p += 2; i < 22 && p != NULL; i++)
		if ((p = strchr(p, ' ')) != NULL)
			p++;
	if (p == NULL || sscanf(p, "%llu", &start_ticks) != 1)
		goto now;
	if ((f = fopen("/proc/stat", "r")) == NULL)
		goto now;
	while (fgets(buf, sizeof(buf), f) != NULL)
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (btime == 0 || tck <= 0)
		goto now;
	return (double)btime + (double)start_ticks / (double)tck;
now:
	return (double)sc_wall_ms() / 1000.0;
}

int
metrics_init(const char *db_path)
{
	mx.start_time_s = metrics_proc_start();
	snprintf(mx.db_path, sizeof(mx.db_path), "%s", db_path);
	if (pthread_create(&mt.th, NULL, metrics_maint_main, NULL) == 0)
		mt.running = 1;
	else
		log_warn("metrics: no maintenance thread; integrity and backup metrics are missing");
	mx.started = 1;
	return 0;
}

void
metrics_shutdown(void)
{
	size_t i;

	if (!mx.started)
		return;
	mx.started = 0;
	if (mt.running) {
		pthread_mutex_lock(&mt.mu);
		mt.stop = 1;
		pthread_cond_signal(&mt.cv);
		pthread_mutex_unlock(&mt.mu);
		pthread_join(mt.th, NULL);
		mt.running = 0;
	}
	for (i = 0; i < mx.nprov; i++)
		free(mx.prov[i].name);
	free(mx.prov);
	mx.prov = NULL;
	mx.nprov = mx.cprov = 0;
	free(mx.by_serial);
	mx.by_serial = NULL;
	mx.nserial = 0;
}

/* ---- rendering ---- */

/* A label value per the text exposition format: \\, \" and \n escaped, and
 * UTF-8 required, so a byte that is not part of a well-formed character
 * (a name stored before the admin programs checked) becomes U+FFFD rather
 * than making Prometheus reject the whole scrape. */
void
metrics_escape_label(struct sc_buf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, run = 0, len;
	uint32_t cp;

	while (i < n) {
		const char *rep = u[i] == '\\' ? "\\\\" : u[i] == '"' ? "\\\"" : u[i] == '\n' ? "\\n" : NULL;

		len = u[i] < 0x80 ? 1 : sc_utf8_next(u + i, n - i, &cp);
		if (rep == NULL && len > 0) {
			i += len;
			continue;
		}
		sc_buf_append(b, s + run, i - run);
		sc_buf_append(b, rep != NULL ? rep : "\xef\xbf\xbd", rep != NULL ? 2 : 3);
		run = ++i;
	}
	sc_buf_append(b, s + run, i - run);
}

static void
metrics_family(struct sc_buf *b, const char *name, const char *type, const char *help)
{
	sc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{provider="…"[,extra]} — extra is already escaped, may be NULL. */
static void
metrics_series(struct sc_buf *b, const char *name, const char *prov, const char *extra)
{
	sc_buf_printf(b, "%s{provider=\"", name);
	metrics_escape_label(b, prov);
	sc_buf_printf(b, "\"%s%s}", extra != NULL ? "," : "", extra != NULL ? extra : "");
}

static void
metrics_float(struct sc_buf *b, double v)
{
	sc_buf_printf(b, " %.9g\n", v);
}

static void
metrics_hist(struct sc_buf *b, const char *name, const char *prov, const struct mx_hist *h,
    const double *bounds, size_t n)
{
	uint64_t cum = 0;
	char le[64], bname[128];
	size_t k;

	snprintf(bname, sizeof(bname), "%s_bucket", name);
	for (k = 0; k <= n; k++) {
		cum += h->b[k];
		if (k < n)
			snprintf(le, sizeof(le), "le=\"%g\"", bounds[k]);
		else
			snprintf(le, sizeof(le), "le=\"+Inf\"");
		if (prov != NULL) {
			metrics_series(b, bname, prov, le);
			sc_buf_printf(b, " %llu\n", (unsigned long long)cum);
		} else {
			sc_buf_printf(b, "%s{%s} %llu\n", bname, le, (unsigned long long)cum);
		}
	}
	if (prov != NULL) {
		snprintf(bname, sizeof(bname), "%s_sum", name);
		metrics_series(b, bname, prov, NULL);
		metrics_float(b, h->sum);
		snprintf(bname, sizeof(bname), "%s_count", name);
		metrics_series(b, bname, prov, NULL);
		sc_buf_printf(b, " %llu\n", (unsigned long long)h->count);
	} else {
		sc_buf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
	}
}

/* The per-provider counters rendered by metrics_prov_counter. */
enum mx_ctr { MX_CTR_COOLDOWNS, MX_CTR_FALLBACK, MX_CTR_EMERGENCY, MX_CTR_PROMPT, MX_CTR_COMPLETION,
	MX_CTR_COST, MX_CTR_NO_USAGE };

static double
metrics_ctr_value(const struct mx_prov *p, enum mx_ctr k)
{
	switch (k) {
	case MX_CTR_COOLDOWNS:	return (double)p->cooldowns;
	case MX_CTR_FALLBACK:	return (double)p->fallback;
	case MX_CTR_EMERGENCY:	return (double)p->emergency;
	case MX_CTR_PROMPT:	return (double)p->prompt_tokens;
	case MX_CTR_COMPLETION:	return (double)p->completion_tokens;
	case MX_CTR_COST:	return p->cost;
	case MX_CTR_NO_USAGE:	return (double)p->no_usage;
	}
	return 0;
}

/* One counter per provider entry (skipping the no-provider entry). Integer
 * counters are printed as integers (exact up to 2^53). */
static void
metrics_prov_counter(struct sc_buf *b, const char *name, const char *help, enum mx_ctr k)
{
	size_t i;

	metrics_family(b, name, "counter", help);
	for (i = 0; i < mx.nprov; i++) {
		double v;
		if (mx.prov[i].name[0] == '\0')
			continue;
		metrics_series(b, name, mx.prov[i].name, NULL);
		v = metrics_ctr_value(&mx.prov[i], k);
		if (k == MX_CTR_COST)
			metrics_float(b, v);
		else
			sc_buf_printf(b, " %llu\n", (unsigned long long)v);
	}
}

static void
metrics_render_requests(struct sc_buf *b)
{
	char extra[96];
	size_t i;
	int pl, k;

	metrics_family(b, "sidecar_requests_total", "counter",
	    "Client requests finished, by provider (empty: none took it), pool and status class.");
	for (i = 0; i < mx.nprov; i++)
		for (pl = 0; pl < MX_POOLS; pl++)
			for (k = 0; k < MX_CLASSES; k++) {
				if (mx.prov[i].req[pl][k] == 0)
					continue;
				snprintf(extra, sizeof(extra), "pool=\"%s\",code=\"%s\"",
				    pl == MX_POOL_NONE ? "none" : sched_pool_name((enum sched_pool)pl), mx_class_names[k]);
				metrics_series(b, "sidecar_requests_total", mx.prov[i].name, extra);
				sc_buf_printf(b, " %llu\n", (unsigned long long)mx.prov[i].req[pl][k]);
			}
	metrics_family(b, "sidecar_upstream_responses_total", "counter",
	    "Upstream attempts by provider and outcome (status class, 429, connect_error, timeout).");
	for (i = 0; i < mx.nprov; i++)
		for (k = 0; k < MX_UP_N; k++) {
			if (mx.prov[i].up[k] == 0)
				continue;
			snprintf(extra, sizeof(extra), "result=\"%s\"", mx_up_names[k]);
			metrics_series(b, "sidecar_upstream_responses_total", mx.prov[i].name, extra);
			sc_buf_printf(b, " %llu\n", (unsigned long long)mx.prov[i].up[k]);
		}
	metrics_family(b, "sidecar_upstream_latency_seconds", "histogram",
	    "Response time of requests a provider served (whole response, queue wait excluded).");
	for (i = 0; i < mx.nprov; i++)
		if (mx.prov[i].lat.count > 0)
			metrics_hist(b, "sidecar_upstream_latency_seconds", mx.prov[i].name, &mx.prov[i].lat,
			    mx_lat_bounds, MX_LAT_N);
	metrics_family(b, "sidecar_ttft_seconds", "histogram",
	    "Time to first token of streamed responses (queue wait excluded).");
	for (i = 0; i < mx.nprov; i++)
		if (mx.prov[i].ttft.count > 0)
			metrics_hist(b, "sidecar_ttft_seconds", mx.prov[i].name, &mx.prov[i].ttft,
			    mx_lat_bounds, MX_LAT_N);
	metrics_prov_counter(b, "sidecar_cooldowns_total", "Cooldowns started after an upstream 429.",
	    MX_CTR_COOLDOWNS);
	metrics_prov_counter(b, "sidecar_fallback_requests_total", "Requests served by the fallback pool.",
	    MX_CTR_FALLBACK);
	metrics_prov_counter(b, "sidecar_emergency_requests_total",
	    "Requests served by the emergency channel (a cooling key's reserved share).",
	    MX_CTR_EMERGENCY);
	metrics_prov_counter(b, "sidecar_prompt_tokens_total", "Prompt tokens reported by upstream usage.",
	    MX_CTR_PROMPT);
	metrics_prov_counter(b, "sidecar_completion_tokens_total",
	    "Completion tokens reported by upstream usage.", MX_CTR_COMPLETION);
	metrics_prov_counter(b, "sidecar_cost_total", "Cost of reported tokens (total_tokens / 1000 x cost_per_1k).",
	    MX_CTR_COST);
	metrics_prov_counter(b, "sidecar_streams_without_usage_total",
	    "Successful streams that ended without a usage chunk (tokens unknown, not counted as 0).",
	    MX_CTR_NO_USAGE);
}

static void
metrics_render_providers(struct sc_buf *b)
{
	int64_t now = sc_now_ms();
	size_t i, n = registry_count(), k;
	char extra[64];

	/* Read-only: the runtime state is the dispatcher's. */
#define MX_EACH(stmt) for (i = 0; i < n; i++) { struct reg_provider *rp = registry_at(i); \
	const struct sched_provider *sp = rp->rt != NULL ? &rp->rt->sched : NULL; (void)sp; stmt; }
	metrics_family(b, "sidecar_provider_rpm_used", "gauge", "Requests started in the current rate window.");
	MX_EACH(metrics_series(b, "sidecar_provider_rpm_used", rp->p.name, NULL);
	    sc_buf_printf(b, " %d\n", sp != NULL ? ratelimit_used(&sp->rl, now) : 0));
	metrics_family(b, "sidecar_provider_rpm_limit", "gauge",
	    "Requests allowed per rate window: as configured, and in force (effective: learned from 429s).");
	MX_EACH(metrics_series(b, "sidecar_provider_rpm_limit", rp->p.name, "kind=\"configured\"");
	    sc_buf_printf(b, " %d\n", rp->p.rpm_limit));
	MX_EACH(metrics_series(b, "sidecar_provider_rpm_limit", rp->p.name, "kind=\"effective\"");
	    sc_buf_printf(b, " %d\n", sp != NULL ? sched_limit_effective(sp, registry_config()) : rp->p.rpm_limit));
	metrics_family(b, "sidecar_provider_state", "gauge",
	    "Live provider state: 1 for the current one of ok, full, cooling, unhealthy, invalid, disabled, probing.");
	for (i = 0; i < n; i++) {
		enum sched_state s = dispatch_rt_state(registry_at(i), now);
		for (k = 0; k < SCHED_ST_COUNT; k++) {
			snprintf(extra, sizeof(extra), "state=\"%s\"", sched_state_name((enum sched_state)k));
			metrics_series(b, "sidecar_provider_state", registry_at(i)->p.name, extra);
			sc_buf_printf(b, " %d\n", (size_t)s == k);
		}
	}
	metrics_family(b, "sidecar_provider_healthy", "gauge",
	    "1 while passive and active health checks consider the provider healthy.");
	MX_EACH(metrics_series(b, "sidecar_provider_healthy", rp->p.name, NULL);
	    sc_buf_printf(b, " %d\n", sp != NULL && !sp->cd.unhealthy));
	metrics_family(b, "sidecar_provider_cooldown_remaining_seconds", "gauge",
	    "Time left in the current 429 cooldown, 0 when not cooling.");
	MX_EACH(metrics_series(b, "sidecar_provider_cooldown_remaining_seconds", rp->p.name, NULL);
	    metrics_float(b, sp != NULL && cooldown_is_cooling(&sp->cd, now) ?
	    (double)(sp->cd.cooldown_until_ms - now) / 1000.0 : 0));
	metrics_family(b, "sidecar_provider_consecutive_429", "gauge", "Consecutive 429 answers (the backoff exponent).");
	MX_EACH(metrics_series(b, "sidecar_provider_consecutive_429", rp->p.name, NULL);
	    sc_buf_printf(b, " %d\n", sp != NULL ? sp->cd.consecutive_429 : 0));
	metrics_family(b, "sidecar_provider_inflight_requests", "gauge", "Upstream attempts in progress.");
	MX_EACH(metrics_series(b, "sidecar_provider_inflight_requests", rp->p.name, NULL);
	    sc_buf_printf(b, " %d\n", rp->rt != NULL ? rp->rt->in_flight : 0));
#undef MX_EACH
}

static long long
metrics_file_size(const char *path, const char *suffix)
{
	char p[4200];
	struct stat st;

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

static void
metrics_render_db(struct sc_buf *b)
{
	struct stats_info si;
	uint64_t cum = 0;
	size_t k;

	metrics_family(b, "sidecar_db_size_bytes", "gauge", "Size of the SQLite database file.");
	sc_buf_printf(b, "sidecar_db_size_bytes %lld\n", metrics_file_size(mx.db_path, ""));
	metrics_family(b, "sidecar_db_wal_size_bytes", "gauge", "Size of the write-ahead log (ceiling 500 MB).");
	sc_buf_printf(b, "sidecar_db_wal_size_bytes %lld\n", metrics_file_size(mx.db_path, "-wal"));
	metrics_family(b, "sidecar_db_size_warn_bytes", "gauge", "Setting db_size_warn_bytes (practical limit).");
	sc_buf_printf(b, "sidecar_db_size_warn_bytes %lld\n", (long long)registry_config()->db_size_warn_bytes);
	pthread_mutex_lock(&mt.mu);
	if (mt.integrity_known) {
		metrics_family(b, "sidecar_db_integrity_ok", "gauge",
		    "1 when the last PRAGMA quick_check (every 5 minutes) said ok.");
		sc_buf_printf(b, "sidecar_db_integrity_ok %d\n", mt.integrity_ok);
		metrics_family(b, "sidecar_db_integrity_check_timestamp_seconds", "gauge",
		    "When the last quick_check ran (Unix time).");
		sc_buf_printf(b, "sidecar_db_integrity_check_timestamp_seconds %lld\n", (long long)mt.integrity_ts);
	}
	if (mt.backup_known) {
		metrics_family(b, "sidecar_backup_success", "gauge", "1 when the newest recorded backup succeeded.");
		sc_buf_printf(b, "sidecar_backup_success %d\n", mt.backup_success);
	}
	if (mt.backup_have_ok) {
		metrics_family(b, "sidecar_backup_last_timestamp_seconds", "gauge",
		    "When the last successful backup finished (Unix time).");
		sc_buf_printf(b, "sidecar_backup_last_timestamp_seconds %lld\n", (long long)mt.backup_ok_ts);
	}
	pthread_mutex_unlock(&mt.mu);

	stats_get_info(&si);
	metrics_family(b, "sidecar_stats_flush_seconds", "histogram",
	    "Duration of statistics flush transactions (writer thread, lock waits included).");
	for (k = 0; k < STATS_FLUSH_BUCKETS; k++) {
		cum += si.flush_bucket[k];
		sc_buf_printf(b, "sidecar_stats_flush_seconds_bucket{le=\"%g\"} %llu\n", stats_flush_bounds[k],
		    (unsigned long long)cum);
	}
	sc_buf_printf(b, "sidecar_stats_flush_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "sidecar_stats_flush_seconds_sum %.9g\nsidecar_stats_flush_seconds_count %llu\n",
	    (unsigned long long)si.flush_count, si.flush_sum_s, (unsigned long long)si.flush_count);
	metrics_family(b, "sidecar_stats_flush_max_seconds", "gauge", "Longest statistics flush since the start.");
	sc_buf_printf(b, "sidecar_stats_flush_max_seconds %.9g\n", si.flush_max_s);
	metrics_family(b, "sidecar_stats_handoff_max_seconds", "gauge",
	    "Longest time the event loop spent handing statistics to the writer.");
	sc_buf_printf(b, "sidecar_stats_handoff_max_seconds %.9g\n", si.handoff_max_s);
	metrics_family(b, "sidecar_status_build_max_seconds", "gauge",
	    "Longest time the event loop spent building the live status snapshot.");
	sc_buf_printf(b, "sidecar_status_build_max_seconds %.9g\n", persist_build_max_s());
	metrics_family(b, "sidecar_stats_flush_failures_total", "counter",
	    "Statistics flushes that did not commit (rows kept for the next one).");
	sc_buf_printf(b, "sidecar_stats_flush_failures_total %llu\n", (unsigned long long)si.flush_failures);
	metrics_family(b, "sidecar_db_write_failures_total", "counter",
	    "Cooldown, health and invalid-key saves that failed or were dropped (the in-memory state stays right).");
	sc_buf_printf(b, "sidecar_db_write_failures_total %llu\n", (unsigned long long)si.jobs_failed);
	metrics_family(b, "sidecar_stats_pending_rows", "gauge", "Usage rows waiting for a successful flush.");
	sc_buf_printf(b, "sidecar_stats_pending_rows %llu\n", (unsigned long long)si.pending);
	metrics_family(b, "sidecar_stats_dropped_total", "counter",
	    "Requests whose statistics were dropped at the memory cap while the database refused writes.");
	sc_buf_printf(b, "sidecar_stats_dropped_total %llu\n", (unsigned long long)si.dropped);
	metrics_family(b, "sidecar_stats_pruned_rows_total", "counter", "Rows deleted by retention pruning.");
	sc_buf_printf(b, "sidecar_stats_pruned_rows_total %llu\n", (unsigned long long)si.rows_pruned);
	metrics_family(b, "sidecar_request_log_written_total", "counter",
	    "Request log records committed by the statistics writer.");
	sc_buf_printf(b, "sidecar_request_log_written_total %llu\n", (unsigned long long)si.log_written);
	metrics_family(b, "sidecar_request_log_dropped_total", "counter",
	    "Request log records dropped at the memory cap between flushes.");
	sc_buf_printf(b, "sidecar_request_log_dropped_total %llu\n", (unsigned long long)si.log_dropped);
}

static void
metrics_render_process(struct sc_buf *b)
{
	long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
	unsigned long long vsz = 0, rss = 0, ut = 0, stt = 0;
	struct rlimit rl;
	struct dirent *de;
	char buf[4096], *p;
	long fds = 0;
	FILE *f;
	DIR *d;
	int i;

	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(f);
	}
	if ((f = fopen("/proc/self/stat", "r")) != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
			for (i = 3, p += 2; i < 14 && p != NULL; i++)
				if ((p = strchr(p, ' ')) != NULL)
					p++;
			if (p == NULL || sscanf(p, "%llu %llu", &ut, &stt) != 2)
				ut = stt = 0;
		}
		fclose(f);
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				fds++;
		closedir(d);
		fds--;	/* the directory's own descriptor */
	}
	metrics_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	sc_buf_printf(b, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
	metrics_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	sc_buf_printf(b, "process_virtual_memory_bytes %llu\n", vsz * (unsigned long long)page);
	metrics_family(b, "sidecar_client_connections", "gauge", "Client connections open (both listeners).");
	sc_buf_printf(b, "sidecar_client_connections %zu\n", conn_count());
	metrics_family(b, "sidecar_client_buffer_bytes", "gauge",
	    "Bytes allocated for client connections' input and output buffers.");
	sc_buf_printf(b, "sidecar_client_buffer_bytes %zu\n", conn_buffer_bytes());
	metrics_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	sc_buf_printf(b, "process_open_fds %ld\n", fds > 0 ? fds : 0);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		metrics_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		sc_buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	metrics_family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
	sc_buf_printf(b, "process_cpu_seconds_total %.2f\n", tck > 0 ? (double)(ut + stt) / (double)tck : 0.0);
	metrics_family(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
	sc_buf_printf(b, "process_start_time_seconds %.2f\n", mx.start_time_s);
}

void
metrics_render(struct sc_buf *b)
{
	const struct config *cfg = registry_config();

	metrics_family(b, "sidecar_up", "gauge", "Whether the data plane is running.");
	sc_buf_printf(b, "sidecar_up 1\n");
	metrics_family(b, "sidecar_build_info", "gauge", "Build of the data plane (value 1).");
	sc_buf_printf(b, "sidecar_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	metrics_render_requests(b);
	metrics_family(b, "sidecar_inflight_requests", "gauge", "Requests being served upstream now.");
	sc_buf_printf(b, "sidecar_inflight_requests %zu\n", dispatch_in_flight());
	metrics_family(b, "sidecar_queue_depth", "gauge", "Requests waiting for a provider.");
	sc_buf_printf(b, "sidecar_queue_depth %zu\n", dispatch_queue_depth());
	metrics_family(b, "sidecar_queue_capacity", "gauge", "Setting queue_capacity.");
	sc_buf_printf(b, "sidecar_queue_capacity %d\n", cfg->queue_capacity);
	metrics_family(b, "sidecar_queue_rejected_total", "counter",
	    "Requests rejected by the wait queue (503): full on arrival (overflow) or waited too long (timeout).");
	sc_buf_printf(b, "sidecar_queue_rejected_total{reason=\"overflow\"} %llu\n"
	    "sidecar_queue_rejected_total{reason=\"timeout\"} %llu\n",
	    (unsigned long long)mx.rejected_full, (unsigned long long)mx.rejected_timeout);
	metrics_family(b, "sidecar_queue_wait_seconds", "histogram",
	    "Time requests spent in the wait queue (0 for those that went at once).");
	metrics_hist(b, "sidecar_queue_wait_seconds", NULL, &mx.wait, mx_wait_bounds, MX_WAIT_N);
	metrics_render_providers(b);
	cluster_render_metrics(b);
	metrics_render_db(b);
	metrics_render_process(b);
}

void
metrics_handle(struct conn *c, const struct http_request *req, struct sc_buf *body)
{
	struct sc_buf b;

	if (!(http_slice_eq(req->method, "GET") || http_slice_eq(req->method, "HEAD")) || req->target.len < 8 ||
	    memcmp(req->target.p, "/metrics", 8) != 0 ||
	    (req->target.len > 8 && req->target.p[8] != '?')) {
		conn_respond(c, 404, NULL, "text/plain; charset=utf-8", "not found\n", 10);
		return;
	}
	sc_buf_init(&b, MX_RENDER_CAP);
	metrics_render(&b);
	conn_respond(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
	sc_buf_free(&b);
}
