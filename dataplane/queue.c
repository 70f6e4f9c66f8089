/*
 * Bounded priority wait queue: three intrusive doubly linked FIFO lists, one
 * per priority. See queue.h for the contract.
 */
#include <strings.h>

#include "queue.h"

static const char *const queue_prio_names[QUEUE_NPRIO] = { "high", "normal", "low" };

void
queue_init(struct queue *q)
{
	for (int p = 0; p < QUEUE_NPRIO; p++) {
		q->head[p].next = q->head[p].prev = &q->head[p];
		q->head[p].queued = false;
		q->unordered[p] = false;
	}
	q->len = 0;
}

void
queue_node_init(struct queue_node *n, void *owner)
{
	n->prev = n->next = NULL;
	n->owner = owner;
	n->enqueued_ms = n->deadline_ms = 0;
	n->prio = QUEUE_NORMAL;
	n->queued = false;
}

int
queue_prio_parse(const char *s, enum queue_prio *out)
{
	if (s == NULL || *s == '\0') {
		*out = QUEUE_NORMAL;
		return 0;
	}
	for (int p = 0; p < QUEUE_NPRIO; p++) {
		if (strcasecmp(s, queue_prio_names[p]) == 0) {
			*out = (enum queue_prio)p;
			return 0;
		}
	}
	return -1;
}

const char *
queue_prio_name(enum queue_prio p)
{
	return (unsigned)p < QUEUE_NPRIO ? queue_prio_names[p] : "?";
}

int
queue_push(struct queue *q, struct queue_node *n, enum queue_prio prio, int64_t now,
    int64_t timeout_ms, size_t capacity)
{
	struct queue_node *h;

	if (n->queued || q->len >= capacity)
		return -1;
	if ((unsigned)prio >= QUEUE_NPRIO)
		prio = QUEUE_NORMAL;
	h = &q->head[prio];
	n->prio = prio;
	n->enqueued_ms = now;
	n->deadline_ms = now + (timeout_ms > 0 ? timeout_ms : 0);
	/* FIFO with one timeout keeps deadlines sorted; a shorter timeout after
	 * a reload does not, and then deadline queries scan this list. */
	if (h->prev != h && h->prev->deadline_ms > n->deadline_ms)
		q->unordered[prio] = true;
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
	n->queued = true;
	q->len++;
	return 0;
}

void
queue_remove(struct queue *q, struct queue_node *n)
{
	if (!n->queued)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
	n->queued = false;
	q->len--;
	if (q->head[n->prio].next == &q->head[n->prio])
		q->unordered[n->prio] = false;
}

size_t
queue_len(const struct queue *q)
{
	return q->len;
}

size_t
queue_len_prio(const struct queue *q, enum queue_prio p)
{
	size_t k = 0;

	if ((unsigned)p >= QUEUE_NPRIO)
		return 0;
	for (const struct queue_node *n = q->head[p].next; n != &q->head[p]; n = n->next)
		k++;
	return k;
}

/* First node of priority p or lower-priority lists; NULL at the end. */
static struct queue_node *
queue_first_from(const struct queue *q, int p)
{
	for (; p < QUEUE_NPRIO; p++) {
		if (q->head[p].next != &q->head[p])
			return q->head[p].next;
	}
	return NULL;
}

struct queue_node *
queue_first(const struct queue *q)
{
	return queue_first_from(q, 0);
}

struct queue_node *
queue_next(const struct queue *q, const struct queue_node *n)
{
	if (n->next != &q->head[n->prio])
		return n->next;
	return queue_first_from(q, (int)n->prio + 1);
}

/* Waiter with the earliest deadline in list p (first one on ties), or NULL. */
static struct queue_node *
queue_earliest(const struct queue *q, int p)
{
	struct queue_node *best = NULL;
	const struct queue_node *h = &q->head[p];

	if (h->next == h)
		return NULL;
	if (!q->unordered[p])
		return h->next;
	for (struct queue_node *n = h->next; n != h; n = n->next) {
		if (best == NULL || n->deadline_ms < best->deadline_ms)
			best = n;
	}
	return best;
}

int64_t
queue_next_deadline(const struct queue *q)
{
	int64_t t = INT64_MAX;

	for (int p = 0; p < QUEUE_NPRIO; p++) {
		struct queue_node *n = queue_earliest(q, p);

		if (n != NULL && n->deadline_ms < t)
			t = n->deadline_ms;
	}
	return t;
}

struct queue_node *
queue_pop_expired(struct queue *q, int64_t now)
{
	for (int p = 0; p < QUEUE_NPRIO; p++) {
		struct queue_node *n = queue_earliest(q, p);

		if (n != NULL && n->deadline_ms <= now) {
			queue_remove(q, n);
			return n;
		}
	}
	return NULL;
}
