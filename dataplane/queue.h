/*
 * The wait queue (SPEC §5.4): requests that no provider can take yet wait
 * here, highest priority first and FIFO within a priority, for at most
 * queue_timeout_seconds. A full queue refuses at once (the caller answers
 * 503 + Retry-After). Nodes are intrusive: the caller embeds a queue_node in
 * its request struct and points `owner` at the request, so a client that
 * disconnects is unlinked in O(1) without searching and without allocation.
 *
 * The queue never reads a clock: times are monotonic ms from the caller.
 * The caller arms one timer for min(queue_next_deadline,
 * sched_next_change) and, when it fires, pops expired waiters and walks the
 * rest in service order (queue_first / queue_next) asking sched_decide.
 */
#ifndef SC_QUEUE_H
#define SC_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum queue_prio { QUEUE_HIGH, QUEUE_NORMAL, QUEUE_LOW, QUEUE_NPRIO };

/* Embedded in the caller's request; zero it (or queue_node_init) before use. */
struct queue_node {
	struct queue_node *prev, *next;	/* list links while queued */
	void             *owner;	/* the caller's request; not owned */
	int64_t           enqueued_ms;	/* when pushed */
	int64_t           deadline_ms;	/* enqueued + queue_timeout_seconds */
	enum queue_prio   prio;
	bool              queued;	/* linked into a queue */
};

struct queue {
	struct queue_node head[QUEUE_NPRIO];	/* circular list sentinels */
	bool              unordered[QUEUE_NPRIO];	/* deadlines not monotone in list order
							 * (timeout changed by a reload) */
	size_t            len;		/* waiters in all priorities */
};

void queue_init(struct queue *q);
void queue_node_init(struct queue_node *n, void *owner);

/* "high" | "normal" | "low" (case-insensitive; NULL or empty = normal). 0, or
 * -1 for anything else (the caller may answer 400 or use normal). */
int queue_prio_parse(const char *s, enum queue_prio *out);
const char *queue_prio_name(enum queue_prio p);

/* Append n at the back of its priority with deadline now + timeout_ms.
 * 0, or -1 when len >= capacity (nothing changes) or n is already queued. */
int queue_push(struct queue *q, struct queue_node *n, enum queue_prio prio, int64_t now,
    int64_t timeout_ms, size_t capacity);
/* Unlink n; harmless when it is not queued. O(1). */
void queue_remove(struct queue *q, struct queue_node *n);

size_t queue_len(const struct queue *q);
/* Waiters of one priority, O(len): for /health and metrics. */
size_t queue_len_prio(const struct queue *q, enum queue_prio p);
/* Service order: all high in FIFO order, then normal, then low. NULL at end.
 * To remove while walking, fetch queue_next before queue_remove. */
struct queue_node *queue_first(const struct queue *q);
struct queue_node *queue_next(const struct queue *q, const struct queue_node *n);

/* Earliest deadline of any waiter; INT64_MAX when empty. O(1) unless a reload
 * changed the timeout while requests waited (then O(len) until they drain). */
int64_t queue_next_deadline(const struct queue *q);
/* Unlink and return one waiter whose deadline is <= now (higher priority
 * first, then earliest deadline); NULL when none. Call until NULL. */
struct queue_node *queue_pop_expired(struct queue *q, int64_t now);

#endif
