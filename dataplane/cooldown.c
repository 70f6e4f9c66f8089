/*
 * Cooldown, invalid keys and passive/active health: see cooldown.h. The
 * numbers come from struct config on every call, so a settings reload
 * applies to the next outcome without touching this state.
 */
#include <stdio.h>
#include <string.h>

#include "cooldown.h"

void
cooldown_init(struct cooldown *cd)
{
	memset(cd, 0, sizeof(*cd));
}

int64_t
cooldown_backoff_ms(const struct config *cfg, int n)
{
	int64_t ms = (int64_t)cfg->cooldown_base_seconds * 1000;
	int64_t cap = (int64_t)cfg->cooldown_max_seconds * 1000;

	if (n < 1 || ms <= 0)
		return 0;
	/* Double n−1 times, stopping at the cap so nothing overflows. */
	for (int i = 1; i < n && ms < cap; i++)
		ms *= 2;
	return ms < cap ? ms : cap;
}

static int
cooldown_ceil_seconds(int64_t ms)
{
	if (ms <= 0)
		return 0;
	return (int)((ms + 999) / 1000);
}

bool
cooldown_is_cooling(const struct cooldown *cd, int64_t now)
{
	return now < cd->cooldown_until_ms;
}

bool
cooldown_probe_due(const struct cooldown *cd, int64_t now)
{
	return cd->unhealthy && now >= cd->next_probe_ms;
}

struct cooldown_stamp
cooldown_stamp_at(const struct cooldown *cd, int64_t now, bool probe)
{
	struct cooldown_stamp s = { cd->episode, cooldown_is_cooling(cd, now), probe };

	return s;
}

bool
cooldown_is_probing(const struct cooldown *cd, int64_t now)
{
	return cd->half_open && !cooldown_is_cooling(cd, now);
}

bool
cooldown_probe_wanted(const struct cooldown *cd, int64_t now)
{
	return cooldown_is_probing(cd, now) && !cd->probe_busy;
}

void
cooldown_probe_release(struct cooldown *cd, const struct cooldown_stamp *s)
{
	if (s->probe && s->episode == cd->episode)
		cd->probe_busy = false;
}

/* Sent in the current episode, outside a cooldown: its answer is news. */
static bool
cooldown_current(const struct cooldown *cd, const struct cooldown_stamp *s)
{
	return s->episode == cd->episode && !s->cooling;
}

void
cooldown_clear_invalid(struct cooldown *cd)
{
	cd->invalid = false;
	cd->invalid_reason[0] = '\0';
}

void
cooldown_reset(struct cooldown *cd)
{
	cd->consecutive_429 = 0;
	cd->cooldown_until_ms = 0;
	cd->half_open = false;
	cd->probe_busy = false;
	cd->episode++;	/* answers of attempts sent before the reset are old news */
}

void
cooldown_restore(struct cooldown *cd, int64_t now, int64_t remaining_ms, int consecutive_429)
{
	cd->consecutive_429 = consecutive_429 > 0 ? consecutive_429 : 0;
	if (remaining_ms > 0) {
		cd->cooldown_until_ms = now + remaining_ms;
		cd->cooldown_started_ms = now;
	}
	/* The last answer was a 429 and none better came since: probe first. */
	cd->half_open = remaining_ms > 0 || cd->consecutive_429 > 0;
	cd->probe_busy = false;
}

/* 429: a current attempt starts the next episode (one backoff step); any
 * other only extends a running cooldown with a longer Retry-After. */
static void
cooldown_on_429(struct cooldown *cd, const struct config *cfg, int64_t now,
    const struct cooldown_outcome *o, struct cooldown_result *r)
{
	int64_t ra = o->retry_after_ms;
	int64_t ms;

	if (ra > COOLDOWN_RETRY_AFTER_CAP_MS)
		ra = COOLDOWN_RETRY_AFTER_CAP_MS;
	if (!cooldown_current(cd, &o->sent)) {
		/* In flight when this episode began, or sent during it: the same
		 * overload, not a new one. */
		if (cooldown_is_cooling(cd, now) && ra > 0 && now + ra > cd->cooldown_until_ms) {
			cd->cooldown_until_ms = now + ra;
			r->cooldown_extended = true;
			r->cooldown_seconds = cooldown_ceil_seconds(ra);
		}
	} else {
		cd->consecutive_429++;
		ms = cooldown_backoff_ms(cfg, cd->consecutive_429);
		if (ra > ms)
			ms = ra;
		if (now + ms > cd->cooldown_until_ms)
			cd->cooldown_until_ms = now + ms;
		cd->cooldown_started_ms = now;
		cd->episode++;
		cd->half_open = true;
		cd->probe_busy = false;
		r->cooldown_started = true;
		r->cooldown_seconds = cooldown_ceil_seconds(cd->cooldown_until_ms - now);
	}
	r->cooldown_until_ms = cd->cooldown_until_ms;
}

/* 5xx, connect error, first-byte timeout. */
static void
cooldown_on_failure(struct cooldown *cd, const struct config *cfg, int64_t now, struct cooldown_result *r)
{
	int after = cfg->unhealthy_after_failures > 0 ? cfg->unhealthy_after_failures : 1;

	if (cd->consecutive_failures < INT32_MAX)
		cd->consecutive_failures++;
	if (!cd->unhealthy && cd->consecutive_failures >= after) {
		cd->unhealthy = true;
		cd->next_probe_ms = now + (int64_t)cfg->health_probe_interval_seconds * 1000;
		r->became_unhealthy = true;
	}
}

struct cooldown_result
cooldown_on_outcome(struct cooldown *cd, const struct config *cfg, int64_t now,
    const struct cooldown_outcome *o)
{
	struct cooldown_result r;
	int st = o->status;

	memset(&r, 0, sizeof(r));
	r.action = COOLDOWN_ACT_RETRY;
	/* The probe's slot is free again whatever it answered. */
	cooldown_probe_release(cd, &o->sent);
	if (o->failure == COOLDOWN_FAIL_NONE && st != 429 && cd->half_open && cooldown_current(cd, &o->sent) &&
	    !cooldown_is_cooling(cd, now)) {
		cd->half_open = false;
		r.recovered = true;
	}
	if (o->failure != COOLDOWN_FAIL_NONE) {
		cooldown_on_failure(cd, cfg, now, &r);
	} else if (st >= 200 && st <= 299) {
		r.action = COOLDOWN_ACT_DELIVER;
		if (cooldown_current(cd, &o->sent)) {
			r.streak_reset = cd->consecutive_429 > 0;
			cd->consecutive_429 = 0;
		}
		cd->consecutive_failures = 0;
	} else if (st == 429) {
		cooldown_on_429(cd, cfg, now, o, &r);
	} else if (st == 401 || st == 403) {
		if (!cd->invalid) {
			cd->invalid = true;
			r.became_invalid = true;
			if (o->reason != NULL && *o->reason != '\0')
				snprintf(cd->invalid_reason, sizeof(cd->invalid_reason), "%s", o->reason);
			else
				snprintf(cd->invalid_reason, sizeof(cd->invalid_reason), "upstream answered %d", st);
		}
	} else if (st >= 500 && st <= 599) {
		cooldown_on_failure(cd, cfg, now, &r);
	} else {
		/* Other 4xx (the request's fault), 1xx/3xx: relay, no penalty. */
		r.action = COOLDOWN_ACT_PASS_THROUGH;
	}
	r.count = cd->consecutive_429;
	r.failures = cd->consecutive_failures;
	if (!r.cooldown_started && !r.cooldown_extended)
		r.cooldown_until_ms = cd->cooldown_until_ms;
	return r;
}

struct cooldown_result
cooldown_on_probe(struct cooldown *cd, const struct config *cfg, int64_t now, bool ok)
{
	struct cooldown_result r;

	memset(&r, 0, sizeof(r));
	r.action = ok ? COOLDOWN_ACT_DELIVER : COOLDOWN_ACT_RETRY;
	if (ok) {
		r.became_healthy = cd->unhealthy;
		cd->unhealthy = false;
		cd->consecutive_failures = 0;
		cd->next_probe_ms = 0;
	} else if (cd->unhealthy) {
		cd->next_probe_ms = now + (int64_t)cfg->health_probe_interval_seconds * 1000;
	}
	r.count = cd->consecutive_429;
	r.failures = cd->consecutive_failures;
	r.cooldown_until_ms = cd->cooldown_until_ms;
	return r;
}
