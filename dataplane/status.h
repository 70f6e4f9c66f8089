/*
 * The live status snapshot the dashboard reads (docs/status-snapshot.md):
 * per-provider state, window use, cooldowns and in-flight counts, the queue,
 * and rolling request/token counts for the last minute and the last hour by
 * minute. The counts are kept here as events arrive (a listener of
 * events.h, loop thread); status_build turns them and the dispatcher's live
 * state into the JSON that the writer thread stores in live_status every
 * status_publish_ms (persist.c).
 */
#ifndef SC_STATUS_H
#define SC_STATUS_H

#include <stdint.h>

struct event;

/* Remember when the process started (for "started_at"). */
void status_init(int64_t wall_ms);
/* Listener (events.h): finished requests, upstream 429s, queue rejections. */
void status_on_event(const struct event *ev);
/* The snapshot as a JSON string (malloc'd); now: monotonic ms, wall_ms: Unix ms. */
char *status_build(int64_t now, int64_t wall_ms);

#endif
