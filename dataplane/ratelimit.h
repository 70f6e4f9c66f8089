/*
 * Exact sliding-window rate limiting for one provider (SPEC §5.2).
 *
 * A start is admitted at `now` iff fewer than `limit` earlier starts lie in
 * (now - span, now], where span = rpm_window_seconds * 1000 +
 * rpm_window_margin_ms. Only the newest `limit` starts can ever decide that,
 * so the history is a ring of exactly `limit` start times: reserve and
 * has_room are O(1), used() is a binary search, and memory is bounded by the
 * limit. TPM is enforced on tokens reported after the response: records are
 * coalesced per RATELIMIT_TPM_BUCKET_MS, so that ring holds at most
 * span / bucket + 2 entries. Clocks are monotonic milliseconds passed in by
 * the caller; nothing here reads a clock, sleeps or logs.
 */
#ifndef SC_RATELIMIT_H
#define SC_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_MAX_LIMIT     100000	/* starts per window; larger limits are clamped */
#define RATELIMIT_TPM_BUCKET_MS 100	/* token records closer than this are merged */

/* One coalesced token record. */
struct ratelimit_tok {
	int64_t t_ms;		/* latest completion time merged into this record */
	int64_t tokens;		/* tokens reported in this 100 ms bucket */
};

struct ratelimit {
	int64_t *ring;		/* owned: start times (ms), oldest at head, `limit` slots */
	int      head;		/* index of the oldest kept start */
	int      count;		/* kept starts, <= limit */
	int      limit;		/* ring size: the configured starts per span, >= 1 */
	int      admit;		/* starts admitted per span, 1..limit (a learned limit may be lower) */
	int64_t  span_ms;	/* window + safety margin, ms, >= 1 */
	int64_t  tpm_limit;	/* tokens per span, 0 = not enforced */
	struct ratelimit_tok *tok;	/* owned ring of token records, tok_cap slots */
	int      tok_cap;
	int      tok_head;	/* oldest record */
	int      tok_count;
	int64_t  tok_sum;	/* tokens over the kept records */
};

/* Empty limiter; configure before use (a zeroed struct is also valid). */
void ratelimit_init(struct ratelimit *rl);
void ratelimit_free(struct ratelimit *rl);

/* Set or change the limits. The history of starts and tokens is kept: the
 * newest min(count, limit) starts survive a smaller limit, times are absolute
 * so a new span applies to the old starts at once. No-op when unchanged. */
void ratelimit_configure(struct ratelimit *rl, int limit, int64_t span_ms, int64_t tpm_limit);

/* Admit at most n (1..limit) starts per span from now on, keeping the ring
 * (and so the history) at the configured size: raising it again later still
 * sees every start that can matter. Configure resets it to the limit. */
void ratelimit_set_admit(struct ratelimit *rl, int n);
/* Add starts at the given times (ascending or not; restored after a restart):
 * they count like reserved ones, even past the admitted limit. */
void ratelimit_restore(struct ratelimit *rl, const int64_t *t, int n);

/* True iff a start at `now` would be admitted (RPM and TPM). O(1) for RPM. */
bool ratelimit_has_room(struct ratelimit *rl, int64_t now);
/* Record a start at `now` if admitted: 0, or -1 (nothing recorded). */
int  ratelimit_reserve(struct ratelimit *rl, int64_t now);
/* Earliest instant >= now at which a start would be admitted, assuming no
 * further starts or tokens. `now` itself when there is room. */
int64_t ratelimit_next_free(struct ratelimit *rl, int64_t now);
/* Earliest instant >= now at which fewer than cap starts lie in the window
 * (a share of the limit, cap <= limit); INT64_MAX when cap < 1. RPM only. */
int64_t ratelimit_next_free_below(const struct ratelimit *rl, int64_t now, int cap);
/* Starts in (now - span, now]. */
int ratelimit_used(const struct ratelimit *rl, int64_t now);

/* Tokens reported by a completed response (usage). Ignored when <= 0. */
void ratelimit_record_tokens(struct ratelimit *rl, int64_t now, int64_t tokens);
/* Tokens recorded in (now - span, now]. */
int64_t ratelimit_tokens_used(struct ratelimit *rl, int64_t now);

#endif
