/*
 * The /health answer (health.h), from the dispatcher's view of each
 * provider. "no_key" counts active providers whose key does not decrypt;
 * the other counts are the dispatcher's states (sched_state), under the
 * field names the API has always used ("ready" for SCHED_ST_READY, whose
 * state name elsewhere is "ok").
 */
#define _GNU_SOURCE

#include <stdio.h>

#include "cluster.h"
#include "dispatch.h"
#include "health.h"
#include "proxy.h"
#include "registry.h"

void
health_handle(struct conn *c, const char *rid)
{
	size_t i, cnt[SCHED_ST_COUNT] = { 0 }, total = 0, nokey = 0, serve;
	const struct config *cfg = registry_config();
	int64_t now = sc_now_ms();
	const char *st;
	enum cluster_mode cm;
	char body[1024], h[256], cluster[128];
	int n;

	for (i = 0; i < registry_count(); i++) {
		struct reg_provider *p = registry_at(i);
		total++;
		if (p->rt == NULL || (!p->usable && p->p.status == PSTATUS_ACTIVE))
			nokey++;
		else
			cnt[dispatch_rt_state(p, now)]++;
	}
	serve = cnt[SCHED_ST_READY] + cnt[SCHED_ST_FULL] + cnt[SCHED_ST_PROBING];
	/* A cluster host that cannot reach Redis serves less (or nothing): degraded. */
	cm = cluster_mode();
	st = serve == 0 ? "unavailable" :
	    (cnt[SCHED_ST_COOLING] + cnt[SCHED_ST_UNHEALTHY] + cnt[SCHED_ST_FULL] + cnt[SCHED_ST_PROBING] > 0 ||
	    (cm != CLUSTER_OFF && cm != CLUSTER_SHARED)) ? "degraded" : "ok";
	if (cm != CLUSTER_OFF)
		snprintf(cluster, sizeof(cluster), ",\"cluster\":{\"mode\":\"%s\",\"hosts\":%d}", cluster_mode_name(cm),
		    cluster_hosts());
	else
		cluster[0] = '\0';
	n = snprintf(body, sizeof(body),
	    "{\"status\":\"%s\",\"providers\":{\"total\":%zu,\"ready\":%zu,\"full\":%zu,\"cooling\":%zu,"
	    "\"probing\":%zu,\"unhealthy\":%zu,\"invalid\":%zu,\"disabled\":%zu,\"no_key\":%zu},"
	    "\"queue\":{\"depth\":%zu,\"capacity\":%d},\"in_flight\":%zu%s}",
	    st, total, cnt[SCHED_ST_READY], cnt[SCHED_ST_FULL], cnt[SCHED_ST_COOLING], cnt[SCHED_ST_PROBING],
	    cnt[SCHED_ST_UNHEALTHY], cnt[SCHED_ST_INVALID], cnt[SCHED_ST_DISABLED], nokey,
	    dispatch_queue_depth(), cfg->queue_capacity, proxy_in_flight(), cluster);
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\nCache-Control: no-store\r\n", rid);
	conn_respond(c, serve > 0 ? 200 : 503, h, "application/json", body, (size_t)n);
}
