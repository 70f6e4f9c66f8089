/*
 * Smooth weighted round-robin (nginx's algorithm, SPEC §5.3) with live
 * effective weights. Each round every eligible peer's current weight grows by
 * its effective weight; the peer with the largest current weight is chosen
 * and loses the round's total. Over any run of picks with fixed weights each
 * peer's share converges to weight / total, and picks are spread out instead
 * of bursting (a,a,a,b becomes a,b,a,a ...). Deterministic: ties go to the
 * peer offered first.
 *
 * The round is incremental (begin, offer each eligible peer, finish) so the
 * scheduler needs no temporary arrays; balancer_pick wraps it for arrays.
 */
#ifndef SC_BALANCER_H
#define SC_BALANCER_H

#include <stddef.h>
#include <sys/types.h>

/* Per-peer state, embedded in the scheduler's provider struct. */
struct balancer_node {
	double current;		/* smooth-WRR current weight; 0 for a new peer */
};

/* One selection round in progress. */
struct balancer_round {
	double                total;	/* sum of effective weights offered */
	struct balancer_node *best;	/* highest current weight so far */
	ssize_t               best_index;	/* caller's index of best, -1 none */
};

/* weight × (limit − used) / limit, clamped to >= 0: a provider with an empty
 * window counts fully, a full one not at all. */
double balancer_effective_weight(double weight, int limit, int used);

void balancer_begin(struct balancer_round *r);
/* Offer an eligible peer; eff <= 0 is ignored (the peer sits this round out
 * and keeps its current weight). */
void balancer_offer(struct balancer_round *r, struct balancer_node *n, ssize_t index, double eff);
/* Choose: the best peer's current weight drops by the total. Its index, or
 * -1 when nothing positive was offered. */
ssize_t balancer_finish(struct balancer_round *r);

/* The same over arrays: nodes[i] with effective weight eff[i] (<= 0: not
 * eligible). Index picked, or -1. */
ssize_t balancer_pick(struct balancer_node *const nodes[], const double eff[], size_t n);

#endif
