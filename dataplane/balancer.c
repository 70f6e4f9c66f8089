/*
 * Smooth weighted round-robin: see balancer.h. Kept tiny on purpose; the
 * scheduler decides who is eligible and with which effective weight.
 */
#include "balancer.h"

double
balancer_effective_weight(double weight, int limit, int used)
{
	double w;

	if (limit <= 0 || weight <= 0 || used >= limit)
		return 0;
	if (used < 0)
		used = 0;
	w = weight * (double)(limit - used) / (double)limit;
	return w > 0 ? w : 0;
}

void
balancer_begin(struct balancer_round *r)
{
	r->total = 0;
	r->best = NULL;
	r->best_index = -1;
}

void
balancer_offer(struct balancer_round *r, struct balancer_node *n, ssize_t index, double eff)
{
	if (!(eff > 0))		/* also rejects NaN */
		return;
	n->current += eff;
	r->total += eff;
	/* Strictly greater: on a tie the peer offered first wins. */
	if (r->best == NULL || n->current > r->best->current) {
		r->best = n;
		r->best_index = index;
	}
}

ssize_t
balancer_finish(struct balancer_round *r)
{
	if (r->best == NULL)
		return -1;
	r->best->current -= r->total;
	return r->best_index;
}

ssize_t
balancer_pick(struct balancer_node *const nodes[], const double eff[], size_t n)
{
	struct balancer_round r;

	balancer_begin(&r);
	for (size_t i = 0; i < n; i++)
		balancer_offer(&r, nodes[i], (ssize_t)i, eff[i]);
	return balancer_finish(&r);
}
