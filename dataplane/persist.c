/*
 * The flush/publish timer (persist.h). Building the snapshot (status.c) is
 * the only part that runs on the loop; the writer thread (stats.c) takes the
 * database's waits.
 */
#define _GNU_SOURCE

#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "persist.h"
#include "registry.h"
#include "stats.h"
#include "status.h"

static struct {
	struct loop      *loop;
	struct loop_timer tick;
	int64_t           next_flush;	/* monotonic ms */
	int64_t           next_publish;
	int64_t           build_max_us;	/* longest snapshot build on the loop */
	int               started;
} ps;

/* Monotonic microseconds, for the loop-side cost of the periodic work. */
static int64_t
persist_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
persist_tick(struct loop *l, void *arg)
{
	const struct config *cfg = registry_config();
	struct stats_settings set = { cfg->stats_retention_days, cfg->events_retention_days, cfg->request_log_rows };
	int64_t now = loop_now(l);
	int flush = now >= ps.next_flush, publish = now >= ps.next_publish;
	int64_t t0 = persist_now_us();
	char *json = publish ? status_build(sc_now_ms(), sc_wall_ms()) : NULL;

	(void)arg;
	if (publish && persist_now_us() - t0 > ps.build_max_us)
		ps.build_max_us = persist_now_us() - t0;
	stats_handoff(flush, json, &set);
	free(json);
	if (flush)
		ps.next_flush = now + cfg->stats_flush_ms;
	if (publish)
		ps.next_publish = now + cfg->status_publish_ms;
	/* A setting lowered meanwhile takes effect at once. */
	if (ps.next_flush > now + cfg->stats_flush_ms)
		ps.next_flush = now + cfg->stats_flush_ms;
	if (ps.next_publish > now + cfg->status_publish_ms)
		ps.next_publish = now + cfg->status_publish_ms;
	loop_timer_arm(l, &ps.tick, ps.next_flush < ps.next_publish ? ps.next_flush : ps.next_publish);
}

int
persist_init(struct loop *l, const char *db_path)
{
	struct sc_err e;

	sc_err_clear(&e);
	if (stats_start(db_path, &e) == -1) {
		log_error("statistics writer: %s", e.msg);
		return -1;
	}
	ps.loop = l;
	loop_timer_init(&ps.tick, persist_tick, NULL);
	ps.next_publish = loop_now(l);	/* the dashboard sees the start at once */
	ps.next_flush = loop_now(l) + registry_config()->stats_flush_ms;
	loop_timer_arm(l, &ps.tick, ps.next_publish);
	ps.started = 1;
	return 0;
}

void
persist_shutdown(void)
{
	char *json;

	if (!ps.started)
		return;
	ps.started = 0;
	loop_timer_cancel(ps.loop, &ps.tick);
	json = status_build(sc_now_ms(), sc_wall_ms());
	stats_stop(json);	/* everything counted, and the last snapshot */
	free(json);
}

double
persist_build_max_s(void)
{
	return (double)ps.build_max_us / 1e6;
}
