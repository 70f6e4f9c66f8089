/*
 * Unit tests for the wait queue (dataplane/queue.c): service order,
 * capacity, deadlines and expiry, O(1) removal from the middle.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue.h"

/* A caller's request with the node embedded. */
struct req {
	int               id;
	struct queue_node qn;
};

static void
req_init(struct req *r, int id)
{
	r->id = id;
	queue_node_init(&r->qn, r);
}

static int
owner_id(const struct queue_node *n)
{
	return ((const struct req *)n->owner)->id;
}

/* Priority first, FIFO within a priority. */
static void
test_order(void **state)
{
	struct queue q;
	struct req r[6];
	const enum queue_prio pr[6] = { QUEUE_LOW, QUEUE_NORMAL, QUEUE_HIGH, QUEUE_NORMAL, QUEUE_HIGH, QUEUE_LOW };
	const int want[6] = { 2, 4, 1, 3, 0, 5 };
	int k = 0;

	(void)state;
	queue_init(&q);
	assert_null(queue_first(&q));
	for (int i = 0; i < 6; i++) {
		req_init(&r[i], i);
		assert_int_equal(queue_push(&q, &r[i].qn, pr[i], 100 + i, 30000, 500), 0);
	}
	assert_int_equal(queue_len(&q), 6);
	assert_int_equal(queue_len_prio(&q, QUEUE_HIGH), 2);
	assert_int_equal(queue_len_prio(&q, QUEUE_NORMAL), 2);
	assert_int_equal(queue_len_prio(&q, QUEUE_LOW), 2);
	for (struct queue_node *n = queue_first(&q); n != NULL; n = queue_next(&q, n))
		assert_int_equal(owner_id(n), want[k++]);
	assert_int_equal(k, 6);
	/* Pushing a node that is already queued is refused. */
	assert_int_equal(queue_push(&q, &r[0].qn, QUEUE_HIGH, 200, 30000, 500), -1);
	assert_int_equal(queue_len(&q), 6);
}

/* A full queue refuses at once; room comes back when a waiter leaves. */
static void
test_capacity(void **state)
{
	struct queue q;
	struct req r[4];

	(void)state;
	queue_init(&q);
	for (int i = 0; i < 4; i++)
		req_init(&r[i], i);
	for (int i = 0; i < 3; i++)
		assert_int_equal(queue_push(&q, &r[i].qn, QUEUE_NORMAL, 0, 1000, 3), 0);
	assert_int_equal(queue_push(&q, &r[3].qn, QUEUE_HIGH, 0, 1000, 3), -1);
	assert_false(r[3].qn.queued);
	assert_int_equal(queue_len(&q), 3);
	queue_remove(&q, &r[1].qn);
	assert_int_equal(queue_push(&q, &r[3].qn, QUEUE_HIGH, 0, 1000, 3), 0);
	/* Capacity lowered by a reload: waiters stay, newcomers are refused. */
	queue_remove(&q, &r[3].qn);
	assert_int_equal(queue_push(&q, &r[3].qn, QUEUE_HIGH, 0, 1000, 1), -1);
	assert_int_equal(queue_len(&q), 2);
}

/* Deadlines: next_deadline is the earliest; expiry happens at the deadline. */
static void
test_deadlines(void **state)
{
	struct queue q;
	struct req a, b, c;
	struct queue_node *n;

	(void)state;
	queue_init(&q);
	assert_int_equal(queue_next_deadline(&q), INT64_MAX);
	req_init(&a, 1);
	req_init(&b, 2);
	req_init(&c, 3);
	assert_int_equal(queue_push(&q, &a.qn, QUEUE_LOW, 1000, 30000, 10), 0);
	assert_int_equal(queue_push(&q, &b.qn, QUEUE_HIGH, 2000, 30000, 10), 0);
	assert_int_equal(queue_push(&q, &c.qn, QUEUE_LOW, 3000, 30000, 10), 0);
	assert_int_equal(a.qn.deadline_ms, 31000);
	assert_int_equal(a.qn.enqueued_ms, 1000);
	assert_int_equal(queue_next_deadline(&q), 31000);
	assert_null(queue_pop_expired(&q, 30999));
	n = queue_pop_expired(&q, 31000);
	assert_ptr_equal(n, &a.qn);
	assert_false(a.qn.queued);
	assert_null(queue_pop_expired(&q, 31000));
	assert_int_equal(queue_next_deadline(&q), 32000);
	/* Both overdue: both come out, the higher priority first. */
	assert_ptr_equal(queue_pop_expired(&q, 40000), &b.qn);
	assert_ptr_equal(queue_pop_expired(&q, 40000), &c.qn);
	assert_null(queue_pop_expired(&q, 40000));
	assert_int_equal(queue_len(&q), 0);
	assert_int_equal(queue_next_deadline(&q), INT64_MAX);
}

/* A reload shortened the timeout: a newer waiter expires before an older one. */
static void
test_deadlines_unordered(void **state)
{
	struct queue q;
	struct req a, b, c;

	(void)state;
	queue_init(&q);
	req_init(&a, 1);
	req_init(&b, 2);
	req_init(&c, 3);
	assert_int_equal(queue_push(&q, &a.qn, QUEUE_NORMAL, 0, 30000, 10), 0);
	assert_int_equal(queue_push(&q, &b.qn, QUEUE_NORMAL, 10, 5000, 10), 0);
	assert_int_equal(queue_push(&q, &c.qn, QUEUE_NORMAL, 20, 5000, 10), 0);
	assert_int_equal(queue_next_deadline(&q), 5010);
	assert_null(queue_pop_expired(&q, 5009));
	assert_ptr_equal(queue_pop_expired(&q, 5010), &b.qn);
	assert_int_equal(queue_next_deadline(&q), 5020);
	assert_ptr_equal(queue_pop_expired(&q, 5020), &c.qn);
	assert_int_equal(queue_next_deadline(&q), 30000);
	/* Service order is still FIFO. */
	assert_ptr_equal(queue_first(&q), &a.qn);
}

/* Removal from the middle, while walking, and twice. */
static void
test_remove_middle(void **state)
{
	struct queue q;
	struct req r[5];
	struct queue_node *n, *next;
	int k = 0;
	const int want[3] = { 0, 2, 4 };

	(void)state;
	queue_init(&q);
	for (int i = 0; i < 5; i++) {
		req_init(&r[i], i);
		assert_int_equal(queue_push(&q, &r[i].qn, QUEUE_NORMAL, i, 1000, 10), 0);
	}
	queue_remove(&q, &r[1].qn);		/* a client disconnected */
	queue_remove(&q, &r[1].qn);		/* harmless twice */
	assert_int_equal(queue_len(&q), 4);
	/* Remove while walking: fetch next first. */
	for (n = queue_first(&q); n != NULL; n = next) {
		next = queue_next(&q, n);
		if (owner_id(n) == 3)
			queue_remove(&q, n);
	}
	for (n = queue_first(&q); n != NULL; n = queue_next(&q, n))
		assert_int_equal(owner_id(n), want[k++]);
	assert_int_equal(k, 3);
	assert_int_equal(queue_len(&q), 3);
	/* A removed node can be queued again, at the back. */
	assert_int_equal(queue_push(&q, &r[1].qn, QUEUE_NORMAL, 50, 1000, 10), 0);
	for (n = queue_first(&q); queue_next(&q, n) != NULL; n = queue_next(&q, n))
		;
	assert_ptr_equal(n, &r[1].qn);
	/* Empty the queue from the front. */
	while ((n = queue_first(&q)) != NULL)
		queue_remove(&q, n);
	assert_int_equal(queue_len(&q), 0);
}

static void
test_prio_parse(void **state)
{
	enum queue_prio p;

	(void)state;
	assert_int_equal(queue_prio_parse("high", &p), 0);
	assert_int_equal(p, QUEUE_HIGH);
	assert_int_equal(queue_prio_parse("LOW", &p), 0);
	assert_int_equal(p, QUEUE_LOW);
	assert_int_equal(queue_prio_parse(NULL, &p), 0);
	assert_int_equal(p, QUEUE_NORMAL);
	assert_int_equal(queue_prio_parse("", &p), 0);
	assert_int_equal(p, QUEUE_NORMAL);
	assert_int_equal(queue_prio_parse("urgent", &p), -1);
	assert_string_equal(queue_prio_name(QUEUE_NORMAL), "normal");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_deadlines),
		cmocka_unit_test(test_deadlines_unordered),
		cmocka_unit_test(test_remove_middle),
		cmocka_unit_test(test_prio_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
