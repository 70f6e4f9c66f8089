/*
 * The listener table behind events.h: a fixed array, filled at start-up by
 * main.c (metrics, statistics, live status), walked on every event.
 */
#include <stddef.h>

#include "events.h"

static event_listener_fn ev_fn[EVENTS_MAX_LISTENERS];
static size_t            ev_n;

int
events_listen(event_listener_fn fn)
{
	if (ev_n == EVENTS_MAX_LISTENERS)
		return -1;
	ev_fn[ev_n++] = fn;
	return 0;
}

void
events_emit(const struct event *ev)
{
	size_t i;

	for (i = 0; i < ev_n; i++)
		ev_fn[i](ev);
}
