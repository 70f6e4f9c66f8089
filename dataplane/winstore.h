/*
 * What of a provider's scheduling state outlives the process (SPEC §5.2,
 * docs/scheduling.md "Windows across restarts"): the recent starts of its key
 * window and of each model window, and the learned limits. Encoded as one
 * small JSON text per provider, stored by the dispatcher in
 * meta('windows:<provider id>').
 *
 * Write-ahead: a record says "ahead": N, a promise that at most N starts
 * follow before the next record is written. A graceful stop writes the
 * exact state with ahead 0. On restore the N possibly lost starts are
 * assumed to have happened at the restart, so no window can hold more than
 * its limit; it costs at most N starts of capacity for one window, never an
 * overshoot. Pure: the clocks are passed in.
 */
#ifndef SC_WINSTORE_H
#define SC_WINSTORE_H

#include <stdint.h>

#include "sched.h"

/* JSON text (malloc'd) of p's windows at now (monotonic) / wall_ms (Unix ms). */
char *winstore_encode(const struct sched_provider *p, int64_t now, int64_t wall_ms, int ahead);
/* Apply a record to p (windows configured already, sched_provider_init):
 * starts still inside their window plus the assumed ones, learned limits.
 * 0, or -1 when the text is not a record (p unchanged). */
int winstore_restore(struct sched_provider *p, const char *json, int64_t now, int64_t wall_ms);
/* Starts a record may run ahead for p: a tenth of its smallest limit, >= 1. */
int winstore_ahead(const struct sched_provider *p);

#endif
