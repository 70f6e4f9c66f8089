/*
 * Unit tests of the data plane's event loop (dataplane/loop.c): timer order,
 * cancel and re-arm in the heap, fd readiness, removing another fd from a
 * callback in the same iteration, fd number reuse not receiving a stale
 * event, and signals delivered through the self-pipe.
 */
#define _GNU_SOURCE

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "util.h"

static int order[64];
static int norder;

struct tcase {
	struct loop *l;
	int          id;
};

static void
record_timer(struct loop *l, void *arg)
{
	struct tcase *t = arg;

	order[norder++] = t->id;
	if (t->id == 99)
		loop_stop(l);
}

static void
test_timer_order(void **state)
{
	struct loop *l = loop_new();
	struct loop_timer t[6], stop;
	struct tcase c[6], cs = { l, 99 };
	int64_t now = sc_now_ms();
	int delays[6] = { 50, 10, 30, 20, 40, 5 };
	int i;

	norder = 0;
	for (i = 0; i < 6; i++) {
		c[i].l = l;
		c[i].id = i;
		loop_timer_init(&t[i], record_timer, &c[i]);
		loop_timer_arm(l, &t[i], now + delays[i]);
	}
	loop_timer_cancel(l, &t[2]);			/* 30 ms: cancelled */
	loop_timer_arm(l, &t[0], now + 1);		/* re-armed earlier */
	assert_false(loop_timer_armed(&t[2]));
	assert_true(loop_timer_armed(&t[0]));
	loop_timer_init(&stop, record_timer, &cs);
	loop_timer_arm(l, &stop, now + 80);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(norder, 6);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 5);
	assert_int_equal(order[2], 1);
	assert_int_equal(order[3], 3);
	assert_int_equal(order[4], 4);
	assert_int_equal(order[5], 99);
	assert_true(sc_now_ms() - now >= 80);
	loop_free(l);
}

struct fdcase {
	struct loop *l;
	int          fds[2][2];	/* two pipes */
	int          hits[2];
	int          reused;	/* fd number of a new pipe that took a closed one's number */
};

static void
fd_cb(struct loop *l, int fd, short revents, void *arg)
{
	struct fdcase *f = arg;
	int which = fd == f->fds[0][0] ? 0 : 1;
	char b;

	assert_true(revents & POLLIN);
	assert_int_equal(read(fd, &b, 1), 1);
	f->hits[which]++;
	/* The first one to run removes and closes the other, then opens a new
	 * pipe that reuses the closed number: its stale event must not arrive. */
	if (f->hits[0] + f->hits[1] == 1) {
		int other = 1 - which, np[2];
		loop_fd_del(l, f->fds[other][0]);
		close(f->fds[other][0]);
		close(f->fds[other][1]);
		assert_int_equal(pipe(np), 0);
		f->reused = np[0];
		f->fds[other][0] = np[0];
		f->fds[other][1] = np[1];
		assert_int_equal(loop_fd_add(l, np[0], POLLIN, fd_cb, f), 0);
	}
}

static void
stop_cb(struct loop *l, void *arg)
{
	loop_stop(l);
}

static void
test_fd_events_and_reuse(void **state)
{
	struct fdcase f;
	struct loop_timer stop;
	char b = 'x';

	memset(&f, 0, sizeof(f));
	f.l = loop_new();
	assert_int_equal(pipe(f.fds[0]), 0);
	assert_int_equal(pipe(f.fds[1]), 0);
	assert_int_equal(loop_fd_add(f.l, f.fds[0][0], POLLIN, fd_cb, &f), 0);
	assert_int_equal(loop_fd_add(f.l, f.fds[1][0], POLLIN, fd_cb, &f), 0);
	assert_int_equal(loop_fd_add(f.l, f.fds[1][0], POLLIN, fd_cb, &f), -1);	/* twice: refused */
	assert_int_equal(write(f.fds[0][1], &b, 1), 1);
	assert_int_equal(write(f.fds[1][1], &b, 1), 1);
	loop_timer_init(&stop, stop_cb, NULL);
	loop_timer_arm_in(f.l, &stop, 50);
	loop_run(f.l);
	/* Exactly one callback ran: the other fd was removed, and its number's
	 * new owner (an empty pipe) got no event. */
	assert_int_equal(f.hits[0] + f.hits[1], 1);
	assert_int_equal(loop_fd_events(f.l, f.reused), POLLIN);
	loop_fd_set_events(f.l, f.reused, 0);
	assert_int_equal(loop_fd_events(f.l, f.reused), 0);
	loop_fd_del(f.l, f.fds[0][0]);
	loop_fd_del(f.l, f.fds[1][0]);
	close(f.fds[0][0]);
	close(f.fds[0][1]);
	close(f.fds[1][0]);
	close(f.fds[1][1]);
	loop_free(f.l);
}

static int got_signal;

static void
sig_cb(struct loop *l, int signo, void *arg)
{
	got_signal = signo;
	loop_stop(l);
}

static void
test_signal_self_pipe(void **state)
{
	struct loop *l = loop_new();
	struct loop_timer stop;

	got_signal = 0;
	assert_int_equal(loop_signal_watch(l, SIGUSR1, sig_cb, NULL), 0);
	loop_timer_init(&stop, stop_cb, NULL);
	loop_timer_arm_in(l, &stop, 2000);	/* safety net */
	raise(SIGUSR1);
	loop_run(l);
	assert_int_equal(got_signal, SIGUSR1);
	assert_true(loop_timer_armed(&stop));
	loop_timer_cancel(l, &stop);
	signal(SIGUSR1, SIG_DFL);
	loop_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_fd_events_and_reuse),
		cmocka_unit_test(test_signal_self_pipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
