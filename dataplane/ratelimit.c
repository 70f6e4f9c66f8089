/*
 * Exact sliding window per provider: see ratelimit.h for the contract and
 * docs/scheduling.md for why this is not a token bucket.
 *
 * The start ring is kept sorted (a start earlier than the newest one, which a
 * monotonic clock never produces, is recorded at the newest time: later is
 * the safe direction). Starts are never expired eagerly: the ring only ever
 * holds the newest `limit` starts, which is exactly what decides admission,
 * and keeping them lets a longer window configured later still see them.
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

/* Allocation failure is the one error we do not survive (STYLE 4). */
static void *
rl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		abort();
	return q;
}

static int64_t
rl_max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* Start time of the i-th oldest kept start. */
static int64_t
rl_at(const struct ratelimit *rl, int i)
{
	return rl->ring[(rl->head + i) % rl->limit];
}

static struct ratelimit_tok *
rl_tok_at(struct ratelimit *rl, int i)
{
	return &rl->tok[(rl->tok_head + i) % rl->tok_cap];
}

void
ratelimit_init(struct ratelimit *rl)
{
	memset(rl, 0, sizeof(*rl));
}

void
ratelimit_free(struct ratelimit *rl)
{
	free(rl->ring);
	free(rl->tok);
	memset(rl, 0, sizeof(*rl));
}

/* Re-linearise the start ring into `limit` slots, keeping the newest starts. */
static void
rl_resize_ring(struct ratelimit *rl, int limit)
{
	int64_t *n = rl_xrealloc(NULL, (size_t)limit * sizeof(*n));
	int keep = rl->count < limit ? rl->count : limit;
	int skip = rl->count - keep;

	for (int i = 0; i < keep; i++)
		n[i] = rl_at(rl, skip + i);
	free(rl->ring);
	rl->ring = n;
	rl->head = 0;
	rl->count = keep;
	rl->limit = limit;
}

/* Grow the token ring to at least cap slots, keeping order. */
static void
rl_resize_tok(struct ratelimit *rl, int cap)
{
	struct ratelimit_tok *n = rl_xrealloc(NULL, (size_t)cap * sizeof(*n));

	for (int i = 0; i < rl->tok_count; i++)
		n[i] = *rl_tok_at(rl, i);
	free(rl->tok);
	rl->tok = n;
	rl->tok_head = 0;
	rl->tok_cap = cap;
}

void
ratelimit_configure(struct ratelimit *rl, int limit, int64_t span_ms, int64_t tpm_limit)
{
	int64_t tcap;

	if (limit < 1)
		limit = 1;
	if (limit > RATELIMIT_MAX_LIMIT)
		limit = RATELIMIT_MAX_LIMIT;
	if (span_ms < 1)
		span_ms = 1;
	if (tpm_limit < 0)
		tpm_limit = 0;

	if (rl->ring == NULL || limit != rl->limit) {
		rl_resize_ring(rl, limit);
		rl->admit = limit;
	}
	rl->span_ms = span_ms;
	rl->tpm_limit = tpm_limit;

	/* Distinct 100 ms buckets inside one span: span / bucket + 1, plus one
	 * for the record being added. Never shrunk, so history is never lost. */
	tcap = span_ms / RATELIMIT_TPM_BUCKET_MS + 2;
	if (tcap > 1000000)
		tcap = 1000000;
	if (rl->tok == NULL || tcap > rl->tok_cap)
		rl_resize_tok(rl, (int)tcap);
}

void
ratelimit_set_admit(struct ratelimit *rl, int n)
{
	if (n < 1)
		n = 1;
	rl->admit = n < rl->limit ? n : rl->limit;
}

void
ratelimit_restore(struct ratelimit *rl, const int64_t *t, int n)
{
	int64_t *v;
	int i, j, total;

	if (rl->ring == NULL || n <= 0)
		return;
	/* Merge the kept starts and the restored ones, sorted, keep the newest. */
	total = rl->count + n;
	v = rl_xrealloc(NULL, (size_t)total * sizeof(*v));
	for (i = 0; i < rl->count; i++)
		v[i] = rl_at(rl, i);
	for (j = 0; j < n; j++)
		v[i + j] = t[j];
	for (i = 1; i < total; i++) {	/* insertion sort: n is at most a window's starts */
		int64_t x = v[i];
		for (j = i - 1; j >= 0 && v[j] > x; j--)
			v[j + 1] = v[j];
		v[j + 1] = x;
	}
	j = total > rl->limit ? total - rl->limit : 0;
	for (i = 0; i + j < total; i++)
		rl->ring[i] = v[i + j];
	rl->head = 0;
	rl->count = total - j;
	free(v);
}

/* The start that must leave the window before another is admitted: the
 * admit-th newest one (index into the kept starts), or -1 while fewer are kept. */
static int
rl_gate(const struct ratelimit *rl)
{
	int admit = rl->admit > 0 && rl->admit < rl->limit ? rl->admit : rl->limit;

	return rl->count >= admit ? rl->count - admit : -1;
}

bool
ratelimit_has_room(struct ratelimit *rl, int64_t now)
{
	int g;

	if (rl->ring == NULL)
		return false;
	if ((g = rl_gate(rl)) >= 0 && rl_at(rl, g) > now - rl->span_ms)
		return false;
	if (rl->tpm_limit > 0 && ratelimit_tokens_used(rl, now) >= rl->tpm_limit)
		return false;
	return true;
}

int
ratelimit_reserve(struct ratelimit *rl, int64_t now)
{
	int64_t t = now;

	if (!ratelimit_has_room(rl, now))
		return -1;
	if (rl->count > 0)
		t = rl_max64(t, rl_at(rl, rl->count - 1));
	if (rl->count < rl->limit) {
		rl->ring[(rl->head + rl->count) % rl->limit] = t;
		rl->count++;
	} else {
		/* The oldest start has left the window (has_room said so). */
		rl->ring[rl->head] = t;
		rl->head = (rl->head + 1) % rl->limit;
	}
	return 0;
}

int64_t
ratelimit_next_free_below(const struct ratelimit *rl, int64_t now, int cap)
{
	int64_t t;

	if (cap < 1 || rl->ring == NULL)
		return INT64_MAX;	/* unconfigured: never admits, as ratelimit_next_free */
	if (cap > rl->limit)
		cap = rl->limit;
	if (ratelimit_used(rl, now) < cap)
		return now;
	/* The cap-th newest start has to leave the window. */
	t = rl_at(rl, rl->count - cap) + rl->span_ms;
	return t > now ? t : now;
}

int
ratelimit_used(const struct ratelimit *rl, int64_t now)
{
	int64_t cut = now - rl->span_ms;
	int wrapped = rl->count - (rl->limit - rl->head);	/* kept starts in ring[0..wrapped) */
	const int64_t *seg;
	int lo = 0, hi, skipped = 0;

	if (rl->count == 0)
		return 0;
	/* The first kept start still inside (cut, now], by binary search over
	 * the one contiguous part of the ring that holds it: ring[head..] up
	 * to the end or the newest start, or the part that wrapped to ring[0]. */
	if (wrapped > 0 && rl->ring[0] <= cut) {
		seg = rl->ring;
		hi = wrapped;
		skipped = rl->count - wrapped;
	} else {
		seg = rl->ring + rl->head;
		hi = wrapped > 0 ? rl->limit - rl->head : rl->count;
	}
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (seg[mid] > cut)
			hi = mid;
		else
			lo = mid + 1;
	}
	return rl->count - skipped - lo;
}

/* Drop token records that have left the window. Amortised O(1). */
static void
rl_tok_expire(struct ratelimit *rl, int64_t now)
{
	while (rl->tok_count > 0) {
		struct ratelimit_tok *r = rl_tok_at(rl, 0);

		if (r->t_ms > now - rl->span_ms)
			break;
		rl->tok_sum -= r->tokens;
		rl->tok_head = (rl->tok_head + 1) % rl->tok_cap;
		rl->tok_count--;
	}
}

void
ratelimit_record_tokens(struct ratelimit *rl, int64_t now, int64_t tokens)
{
	struct ratelimit_tok *last;

	if (tokens <= 0 || rl->tok == NULL)
		return;
	rl_tok_expire(rl, now);
	last = rl->tok_count > 0 ? rl_tok_at(rl, rl->tok_count - 1) : NULL;
	/* Merge into the newest record when in the same bucket (or when the ring
	 * is somehow full): its time only moves later, so tokens are counted
	 * for longer, never shorter. */
	if (last != NULL && (now <= last->t_ms ||
	    now / RATELIMIT_TPM_BUCKET_MS == last->t_ms / RATELIMIT_TPM_BUCKET_MS ||
	    rl->tok_count == rl->tok_cap)) {
		last->t_ms = rl_max64(last->t_ms, now);
		last->tokens += tokens;
	} else {
		last = rl_tok_at(rl, rl->tok_count);
		last->t_ms = now;
		last->tokens = tokens;
		rl->tok_count++;
	}
	rl->tok_sum += tokens;
}

int64_t
ratelimit_tokens_used(struct ratelimit *rl, int64_t now)
{
	if (rl->tok == NULL)
		return 0;
	rl_tok_expire(rl, now);
	return rl->tok_sum;
}

int64_t
ratelimit_next_free(struct ratelimit *rl, int64_t now)
{
	int64_t t = now;
	int g;

	if (rl->ring == NULL)
		return INT64_MAX;
	/* RPM: the oldest of the newest `admit` starts must leave the window;
	 * start s is inside (now - span, now] until now = s + span. */
	if ((g = rl_gate(rl)) >= 0)
		t = rl_max64(t, rl_at(rl, g) + rl->span_ms);
	/* TPM: the oldest records must leave until the sum drops below the limit. */
	if (rl->tpm_limit > 0 && ratelimit_tokens_used(rl, now) >= rl->tpm_limit) {
		int64_t sum = rl->tok_sum;

		for (int i = 0; i < rl->tok_count; i++) {
			struct ratelimit_tok *r = rl_tok_at(rl, i);

			sum -= r->tokens;
			if (sum < rl->tpm_limit) {
				t = rl_max64(t, r->t_ms + rl->span_ms);
				break;
			}
		}
	}
	return t;
}
