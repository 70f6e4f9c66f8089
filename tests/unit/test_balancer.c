/*
 * Unit tests for smooth weighted round-robin (dataplane/balancer.c): nginx's
 * reference sequence, shares over 10k picks, no starvation, determinism and
 * peers that drop in and out of eligibility.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "balancer.h"

#define NPEER 5

/* nginx's documented example: weights 5, 1, 1 give a a b a c a a. */
static void
test_nginx_sequence(void **state)
{
	struct balancer_node n[3];
	struct balancer_node *nodes[3] = { &n[0], &n[1], &n[2] };
	const double eff[3] = { 5, 1, 1 };
	const ssize_t want[7] = { 0, 0, 1, 0, 2, 0, 0 };

	(void)state;
	memset(n, 0, sizeof(n));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 7; i++)
			assert_int_equal(balancer_pick(nodes, eff, 3), want[i]);
	}
	/* After whole periods every current weight is back to 0. */
	for (int i = 0; i < 3; i++)
		assert_true(fabs(n[i].current) < 1e-9);
}

/* Shares converge to the effective weights (within 1% relative). */
static void
test_shares(void **state)
{
	struct balancer_node n[NPEER];
	struct balancer_node *nodes[NPEER];
	const double eff[NPEER] = { 1.0, 0.75, 0.3, 2.5, 0.025 * 40 * 0.5 };
	double total = 0;
	int count[NPEER] = { 0 };
	const int picks = 10000;

	(void)state;
	memset(n, 0, sizeof(n));
	for (int i = 0; i < NPEER; i++) {
		nodes[i] = &n[i];
		total += eff[i];
	}
	for (int k = 0; k < picks; k++) {
		ssize_t i = balancer_pick(nodes, eff, NPEER);

		assert_true(i >= 0 && i < NPEER);
		count[i]++;
	}
	for (int i = 0; i < NPEER; i++) {
		double want = picks * eff[i] / total;

		assert_true(fabs(count[i] - want) <= 0.01 * want);
	}
}

/* A tiny weight next to a huge one is still served once per period. */
static void
test_no_starvation(void **state)
{
	struct balancer_node n[2];
	struct balancer_node *nodes[2] = { &n[0], &n[1] };
	const double eff[2] = { 1000, 1 };
	int last = -1;

	(void)state;
	memset(n, 0, sizeof(n));
	for (int k = 0; k < 10010; k++) {
		if (balancer_pick(nodes, eff, 2) == 1) {
			if (last >= 0)
				assert_true(k - last <= 1001);
			last = k;
		}
	}
	assert_true(last >= 0);
}

/* Same inputs, same picks; ties go to the first offered. */
static void
test_deterministic_ties(void **state)
{
	struct balancer_node a[4], b[4];
	struct balancer_node *na[4] = { &a[0], &a[1], &a[2], &a[3] };
	struct balancer_node *nb[4] = { &b[0], &b[1], &b[2], &b[3] };
	const double eff[4] = { 1, 1, 1, 1 };

	(void)state;
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	for (int k = 0; k < 40; k++) {
		ssize_t x = balancer_pick(na, eff, 4);

		assert_int_equal(x, balancer_pick(nb, eff, 4));
		assert_int_equal(x, k % 4);	/* equal weights: plain rotation */
	}
}

/* Ineligible peers (eff <= 0) sit out and keep their state; none → -1. */
static void
test_eligibility(void **state)
{
	struct balancer_node n[3];
	struct balancer_node *nodes[3] = { &n[0], &n[1], &n[2] };
	double eff[3] = { 1, 0, 1 };
	const double none[3] = { 0, -1, NAN };
	double sum;

	(void)state;
	memset(n, 0, sizeof(n));
	assert_int_equal(balancer_pick(nodes, none, 3), -1);
	for (int k = 0; k < 1000; k++) {
		/* Peers come and go; the current weights always sum to zero. */
		eff[1] = (k / 7) % 2 ? 2 : 0;
		eff[2] = (k / 13) % 3 ? 1 : 0;
		assert_int_not_equal(balancer_pick(nodes, eff, 3), -1);
		sum = n[0].current + n[1].current + n[2].current;
		assert_true(fabs(sum) < 1e-6);
		for (int i = 0; i < 3; i++)
			assert_true(fabs(n[i].current) < 10);
	}
	eff[0] = 0;
	eff[1] = 0;
	eff[2] = 0.5;
	assert_int_equal(balancer_pick(nodes, eff, 3), 2);
}

static void
test_effective_weight(void **state)
{
	(void)state;
	assert_true(fabs(balancer_effective_weight(2, 40, 10) - 1.5) < 1e-12);
	assert_true(fabs(balancer_effective_weight(1, 40, 0) - 1.0) < 1e-12);
	assert_true(balancer_effective_weight(1, 40, 40) == 0);
	assert_true(balancer_effective_weight(1, 40, 41) == 0);
	assert_true(balancer_effective_weight(1, 0, 0) == 0);
	assert_true(balancer_effective_weight(0, 40, 0) == 0);
	assert_true(fabs(balancer_effective_weight(1, 40, -3) - 1.0) < 1e-12);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nginx_sequence),
		cmocka_unit_test(test_shares),
		cmocka_unit_test(test_no_starvation),
		cmocka_unit_test(test_deterministic_ties),
		cmocka_unit_test(test_eligibility),
		cmocka_unit_test(test_effective_weight),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
