/*
 * The live status snapshot the dashboard reads (docs/status-snapshot.md):
 * per-provider state, window use, cooldowns and in-flight counts, the queue,
 * and rolling request/token counts for the last minute and the last hour by
 * minute. The counts are kept here as finished requests arrive (loop thread);
 * status_build turns them and the scheduler's live state into the JSON that
 * stats.c writes to live_status every status_publish_ms.
 */
#ifndef SC_STATUS_H
#define SC_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct proxy_result;

/* Queue figures the snapshot reports (from proxy.c and the metrics). */
struct status_queue {
	size_t   depth;
	int      capacity;
	uint64_t rejected_overflow;	/* totals since start */
	uint64_t rejected_timeout;
};

/* Remember when the process started (for "started_at"). */
void status_init(int64_t wall_ms);
/* One finished request (wall_ms: when it ended). */
void status_record(const struct proxy_result *r, int64_t wall_ms);
/* One upstream 429 answer (for last_minute.upstream_429). */
void status_upstream_429(int64_t wall_ms);
/* The snapshot as a JSON string (malloc'd); now: monotonic ms, wall_ms: Unix ms. */
char *status_build(int64_t now, int64_t wall_ms, const struct status_queue *q);
/* Forget everything (tests). */
void status_reset(void);

#endif
