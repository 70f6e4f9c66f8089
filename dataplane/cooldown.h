/*
 * Per-provider penalties and the retry decision for one upstream outcome
 * (SPEC §5.5): 429 cooldown with exponential backoff, invalid keys (401/403),
 * passive health (5xx, connect error, first-byte timeout) and active probes.
 *
 * Pure state machine over struct cooldown with the clock passed in. It says
 * what happened in a struct cooldown_result; persisting it
 * (providers.cooldown_until, cooldown_events, provider_health,
 * providers.status) and logging are the caller's job.
 */
#ifndef SC_COOLDOWN_H
#define SC_COOLDOWN_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/config.h"	/* not the autoconf config.h */

#define COOLDOWN_REASON_MAX         160	/* bytes kept of an invalid-key reason */
#define COOLDOWN_RETRY_AFTER_CAP_MS (24LL * 3600 * 1000)	/* sanity cap on upstream Retry-After */

struct cooldown {
	int      consecutive_429;	/* n of the backoff; reset by a 2xx */
	int64_t  cooldown_until_ms;	/* monotonic ms; cooling while now < this */
	int64_t  cooldown_started_ms;	/* when the latest cooldown began, 0 = never */
	uint32_t episode;		/* cooldowns begun so far: an attempt's stamp compares to it */
	bool     half_open;		/* a cooldown ended and no later attempt answered yet (probing) */
	bool     probe_busy;		/* half-open: the one probe attempt is out */
	int     consecutive_failures;	/* 5xx / connect error / first-byte timeout */
	bool    unhealthy;		/* skipped until a probe succeeds */
	int64_t next_probe_ms;		/* when unhealthy: next active probe is due */
	bool    invalid;		/* 401/403 seen: never used until re-enabled */
	char    invalid_reason[COOLDOWN_REASON_MAX];	/* NUL-terminated, "" if none */
};

/* What an attempt remembers of the cooldown state when it was sent: an
 * escalation needs an attempt sent in the current episode, outside a cooldown. */
struct cooldown_stamp {
	uint32_t episode;	/* cd->episode at the send */
	bool     cooling;	/* sent while cooling (the emergency channel) */
	bool     probe;		/* sent as the half-open probe */
};

/* How an attempt ended, as the caller saw it. */
enum cooldown_failure {
	COOLDOWN_FAIL_NONE,		/* an HTTP status arrived: see status */
	COOLDOWN_FAIL_CONNECT,		/* connect/TLS/DNS error, reset before any byte */
	COOLDOWN_FAIL_TTFB,		/* no first byte within upstream_ttfb_timeout */
};

struct cooldown_outcome {
	enum cooldown_failure failure;
	int         status;		/* HTTP status when failure == NONE */
	struct cooldown_stamp sent;	/* taken by cooldown_stamp_at when it was sent */
	int64_t     retry_after_ms;	/* upstream Retry-After as a duration, < 0 when absent;
					 * the caller parses seconds or an HTTP-date */
	const char *reason;		/* 401/403: short text for status_reason, may be NULL */
};

enum cooldown_action {
	COOLDOWN_ACT_DELIVER,		/* success: relay the response */
	COOLDOWN_ACT_RETRY,		/* try another provider if nothing was sent yet */
	COOLDOWN_ACT_PASS_THROUGH,	/* relay as is (other 4xx): no retry, no penalty */
};

/* What changed, for persistence, logs and metrics. */
struct cooldown_result {
	enum cooldown_action action;
	bool    cooldown_started;	/* a new cooldown began (write cooldown_events): one backoff step */
	bool    cooldown_extended;	/* an in-flight 429 lengthened the current one */
	int     cooldown_seconds;	/* length of the new/extended cooldown, rounded up */
	int64_t cooldown_until_ms;	/* its end (monotonic ms) */
	int     count;			/* consecutive 429 count n after this outcome */
	bool    streak_reset;		/* a 2xx reset a non-zero n */
	bool    became_invalid;
	bool    became_unhealthy;
	bool    became_healthy;
	bool    recovered;		/* the half-open probe answered other than 429: full capacity again */
	int     failures;		/* consecutive failures after this outcome */
};

void cooldown_init(struct cooldown *cd);

/* base × 2^(n−1) capped at cooldown_max_seconds, in ms; 0 for n < 1. */
int64_t cooldown_backoff_ms(const struct config *cfg, int n);

/* The stamp of an attempt sent at `now` (probe: it is the half-open probe). */
struct cooldown_stamp cooldown_stamp_at(const struct cooldown *cd, int64_t now, bool probe);
/* Half-open: the cooldown is over but the one probe has not answered yet. */
bool cooldown_is_probing(const struct cooldown *cd, int64_t now);
/* Half-open and the probe slot is free: the next start is the probe. */
bool cooldown_probe_wanted(const struct cooldown *cd, int64_t now);
/* The probe attempt ended without an answer (cancelled, could not start):
 * the next request becomes the probe. No-op for any other stamp. */
void cooldown_probe_release(struct cooldown *cd, const struct cooldown_stamp *s);

/* Apply one upstream outcome at `now`. An attempt is current when its stamp
 * has the current episode and it was not sent during a cooldown.
 *   2xx: DELIVER; a current attempt resets n; any resets the failure count
 *        (an active cooldown still runs out).
 *   429: RETRY; a current attempt escalates: a new episode, n+1, cooldown
 *        max(backoff(n), Retry-After), half-open once it ends. Any other
 *        (in flight when the cooldown began, sent in an earlier episode, or
 *        sent during the cooldown through the emergency channel) adds no
 *        step: it only extends a running cooldown with a longer Retry-After.
 *   any answer other than 429 to a current attempt ends half-open.
 *   401/403: RETRY; invalid with the reason.
 *   5xx, connect error, first-byte timeout: RETRY; failure count, unhealthy
 *        after unhealthy_after_failures (first probe due one interval later).
 *   other statuses: PASS_THROUGH, nothing changes. */
struct cooldown_result cooldown_on_outcome(struct cooldown *cd, const struct config *cfg, int64_t now,
    const struct cooldown_outcome *o);
/* An active probe (GET {endpoint}/models) finished: success makes the
 * provider healthy again, failure schedules the next probe. */
struct cooldown_result cooldown_on_probe(struct cooldown *cd, const struct config *cfg, int64_t now, bool ok);

bool cooldown_is_cooling(const struct cooldown *cd, int64_t now);
/* Unhealthy and its probe is due. */
bool cooldown_probe_due(const struct cooldown *cd, int64_t now);
/* Clear the invalid mark (the operator re-enabled or replaced the key). */
void cooldown_clear_invalid(struct cooldown *cd);
/* The operator reset the cooldown (admin API): not cooling, backoff back to n = 0. */
void cooldown_reset(struct cooldown *cd);
/* After a restart: a cooldown with remaining_ms left (from the persisted
 * wall-clock cooldown_until) and the persisted n. */
void cooldown_restore(struct cooldown *cd, int64_t now, int64_t remaining_ms, int consecutive_429);

#endif
