/*
 * Redaction of upstream text (see redact.h). Pieces of the provider's own key
 * are found with a sorted table of the key's 8-byte windows: each position of
 * the text costs one binary search, and a hit is extended to the longest run
 * the key holds (over at most REDACT_CANDIDATES key positions), so the cost
 * stays linear in the text whatever it holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "redact.h"

#define REDACT_KEY_MAX 4096	/* longer keys are matched on their first 4 KiB */

#define REDACT_CANDIDATES 64	/* key positions tried per hit (keys like "aaaa…" repeat windows) */

/* One window of REDACT_MIN_RUN bytes of the key and where it starts. */
struct redact_win {
	uint64_t w;
	size_t   at;
};

/* The key's windows, sorted by value then position. */
struct redact_key {
	const char        *k;		/* borrowed */
	size_t             klen;
	struct redact_win *win;		/* owned, klen - 7 entries (wiped: they spell the key) */
	size_t             nwin;
};

static uint64_t
redact_window(const char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

static int
redact_cmp(const void *a, const void *b)
{
	const struct redact_win *x = a, *y = b;

	if (x->w != y->w)
		return x->w < y->w ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

static void
redact_key_init(struct redact_key *rk, const char *key)
{
	memset(rk, 0, sizeof(*rk));
	if (key == NULL)
		return;
	rk->k = key;
	rk->klen = strnlen(key, REDACT_KEY_MAX);
	if (rk->klen < REDACT_MIN_RUN)
		return;
	rk->nwin = rk->klen - REDACT_MIN_RUN + 1;
	rk->win = sc_xmalloc(rk->nwin * sizeof(*rk->win));
	for (size_t i = 0; i < rk->nwin; i++) {
		rk->win[i].w = redact_window(key + i);
		rk->win[i].at = i;
	}
	qsort(rk->win, rk->nwin, sizeof(*rk->win), redact_cmp);
}

static void
redact_key_free(struct redact_key *rk)
{
	if (rk->win != NULL) {
		crypto_wipe(rk->win, rk->nwin * sizeof(*rk->win));
		free(rk->win);
	}
	memset(rk, 0, sizeof(*rk));
}

/* Length of the longest run at s[i..len) that the key also holds (0 when
 * shorter than REDACT_MIN_RUN): the first window is looked up, then each key
 * position holding it is extended. */
static size_t
redact_key_run(const struct redact_key *rk, const char *s, size_t len, size_t i)
{
	size_t lo = 0, hi, best = 0, tried;
	uint64_t w;

	if (rk->nwin == 0 || len - i < REDACT_MIN_RUN)
		return 0;
	w = redact_window(s + i);
	hi = rk->nwin;
	while (lo < hi) {	/* first entry with value >= w */
		size_t mid = lo + (hi - lo) / 2;

		if (rk->win[mid].w < w)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (tried = 0; lo < rk->nwin && rk->win[lo].w == w && tried < REDACT_CANDIDATES; lo++, tried++) {
		size_t j = rk->win[lo].at, n = REDACT_MIN_RUN;

		while (i + n < len && j + n < rk->klen && s[i + n] == rk->k[j + n])
			n++;
		if (n > best)
			best = n;
	}
	return best;
}

static int
redact_keychar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '_';
}

/* token68 (RFC 9110 §11.2), what follows "Bearer ". */
static int
redact_token68char(unsigned char c)
{
	return redact_keychar(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

/* Length of the secret at s[i..len) to mask, 0 for none; *keep is how many of
 * its leading bytes stay visible ("Bearer "). */
static size_t
redact_match(const char *s, size_t len, size_t i, const struct redact_key *rk, size_t *keep)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t j, n;

	*keep = 0;
	if ((n = redact_key_run(rk, s, len, i)) > 0)
		return n;
	if (i > 0 && redact_keychar(u[i - 1]))
		return 0;	/* not at a word start */
	if (len - i > 7 && strncasecmp(s + i, "bearer", 6) == 0 && (s[i + 6] == ' ' || s[i + 6] == '\t')) {
		j = i + 6;
		while (j < len && (s[j] == ' ' || s[j] == '\t'))
			j++;
		*keep = j - i;
		while (j < len && redact_token68char(u[j]))
			j++;
		return j - i >= *keep + 8 ? j - i : 0;	/* shorter is no credential */
	}
	if (len - i > 6 && strncasecmp(s + i, "nvapi-", 6) == 0) {
		for (j = i + 6; j < len && redact_keychar(u[j]); j++)
			;
		return j - i >= 10 ? j - i : 0;
	}
	if (len - i > 3 && memcmp(s + i, "sk-", 3) == 0) {
		for (j = i + 3; j < len && redact_keychar(u[j]); j++)
			;
		return j - i >= 19 ? j - i : 0;
	}
	return 0;
}

int
redact_text(const char *s, size_t len, const char *key, struct sc_buf *out)
{
	struct redact_key rk;
	size_t i = 0, run = 0, keep, m;
	int n = 0;

	redact_key_init(&rk, key);
	while (i < len) {
		if ((m = redact_match(s, len, i, &rk, &keep)) == 0) {
			i++;
			run++;
			continue;
		}
		if (sc_buf_append(out, s + i - run, run + keep) == -1 ||
		    sc_buf_append(out, REDACT_MASK, sizeof(REDACT_MASK) - 1) == -1) {
			n = -1;
			goto out;
		}
		i += m;
		run = 0;
		n++;
	}
	if (sc_buf_append(out, s + i - run, run) == -1)
		n = -1;
out:
	redact_key_free(&rk);
	return n;
}

bool
redact_needed(const char *s, size_t len, const char *key)
{
	struct redact_key rk;
	size_t i, keep;
	bool found = false;

	redact_key_init(&rk, key);
	for (i = 0; i < len && !found; i++)
		found = redact_match(s, len, i, &rk, &keep) > 0;
	redact_key_free(&rk);
	return found;
}

void
redact_str(char *s, size_t cap, const char *key)
{
	struct sc_buf b;
	size_t n;

	if (s == NULL || cap == 0 || !redact_needed(s, strlen(s), key)) {
		if (s != NULL)
			sc_utf8_scrub(s);
		return;
	}
	sc_buf_init(&b, strlen(s) * 2 + sizeof(REDACT_MASK) * 8 + 16);
	if (redact_text(s, strlen(s), key, &b) < 0 || b.len == 0) {
		/* Cannot happen with that cap; mask everything rather than leak. */
		snprintf(s, cap, "%s", REDACT_MASK);
		sc_buf_free(&b);
		return;
	}
	n = b.len < cap - 1 ? b.len : cap - 1;
	/* Do not end inside a UTF-8 sequence. */
	if (n < b.len)
		while (n > 0 && ((unsigned char)b.data[n] & 0xc0) == 0x80)
			n--;
	memcpy(s, b.data, n);
	s[n] = '\0';
	crypto_wipe(b.data, b.alloc);
	sc_buf_free(&b);
	sc_utf8_scrub(s);
}
