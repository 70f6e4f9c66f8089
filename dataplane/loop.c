/*
 * The event loop. File descriptors live in a dense pollfd array (what poll()
 * wants) plus a table indexed by fd that holds the callback and the fd's
 * position in the array, so add/modify/remove are O(1) (swap-remove). Ready
 * events are copied out before dispatch, tagged with a per-slot generation:
 * when a callback closes an fd and another object reuses the number in the
 * same iteration, the stale event is dropped instead of being delivered to
 * the newcomer. Timers are a binary min-heap; the poll timeout is the nearest
 * deadline. Signals are written to a self-pipe by the handler and dispatched
 * as ordinary callbacks.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "util.h"

struct loop_fdslot {
	int        pidx;		/* index in pfds, -1 when not registered */
	unsigned   gen;			/* bumped on every add */
	loop_fd_fn fn;
	void      *arg;
};

struct loop_ready {
	int      fd;
	short    revents;
	unsigned gen;
};

struct loop_sigslot {
	loop_signal_fn fn;
	void          *arg;
};

#define LOOP_NSIG 65

struct loop {
	struct pollfd      *pfds;	/* owned, npfds used */
	size_t              npfds, apfds;
	struct loop_fdslot *slots;	/* owned, indexed by fd, nslots long */
	size_t              nslots;
	struct loop_ready  *ready;	/* owned scratch, apfds long */
	struct loop_timer **heap;	/* owned array of borrowed timers */
	size_t              nheap, aheap;
	int64_t             now;	/* ms: read after poll() and again before the timers */
	size_t              nready;	/* descriptors ready in this iteration */
	int                 stop;
	int                 sigpipe[2];
	struct loop_sigslot sigs[LOOP_NSIG];
};

static int loop_sig_wfd = -1;	/* the write end for the signal handler */

struct loop *
loop_new(void)
{
	struct loop *l = sc_xcalloc(1, sizeof(*l));

	l->sigpipe[0] = l->sigpipe[1] = -1;
	l->now = sc_now_ms();
	return l;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	if (l->sigpipe[0] != -1) {
		close(l->sigpipe[0]);
		close(l->sigpipe[1]);
		loop_sig_wfd = -1;
	}
	free(l->pfds);
	free(l->slots);
	free(l->ready);
	free(l->heap);
	free(l);
}

int
loop_fd_add(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg)
{
	size_t i;

	if (fd < 0)
		return -1;
	if ((size_t)fd >= l->nslots) {
		size_t n = l->nslots ? l->nslots : 64;
		while (n <= (size_t)fd)
			n *= 2;
		l->slots = sc_xrealloc(l->slots, n * sizeof(*l->slots));
		for (i = l->nslots; i < n; i++) {
			l->slots[i].pidx = -1;
			l->slots[i].gen = 0;
		}
		l->nslots = n;
	}
	if (l->slots[fd].pidx != -1)
		return -1;
	if (l->npfds == l->apfds) {
		l->apfds = l->apfds ? l->apfds * 2 : 64;
		l->pfds = sc_xrealloc(l->pfds, l->apfds * sizeof(*l->pfds));
		l->ready = sc_xrealloc(l->ready, l->apfds * sizeof(*l->ready));
	}
	l->pfds[l->npfds].fd = fd;
	l->pfds[l->npfds].events = events;
	l->pfds[l->npfds].revents = 0;
	l->slots[fd].pidx = (int)l->npfds++;
	l->slots[fd].gen++;
	l->slots[fd].fn = fn;
	l->slots[fd].arg = arg;
	return 0;
}

void
loop_fd_set_events(struct loop *l, int fd, short events)
{
	if (fd >= 0 && (size_t)fd < l->nslots && l->slots[fd].pidx != -1)
		l->pfds[l->slots[fd].pidx].events = events;
}

short
loop_fd_events(struct loop *l, int fd)
{
	if (fd >= 0 && (size_t)fd < l->nslots && l->slots[fd].pidx != -1)
		return l->pfds[l->slots[fd].pidx].events;
	return 0;
}

void
loop_fd_del(struct loop *l, int fd)
{
	int idx;

	if (fd < 0 || (size_t)fd >= l->nslots || (idx = l->slots[fd].pidx) == -1)
		return;
	l->npfds--;
	if ((size_t)idx != l->npfds) {
		l->pfds[idx] = l->pfds[l->npfds];
		l->slots[l->pfds[idx].fd].pidx = idx;
	}
	l->slots[fd].pidx = -1;
	l->slots[fd].gen++;
}

/* Timers: a binary min-heap on when_ms, each timer knowing its index. */
static void
loop_heap_swap(struct loop *l, size_t a, size_t b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void
loop_heap_up(struct loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (l->heap[p]->when_ms <= l->heap[i]->when_ms)
			break;
		loop_heap_swap(l, i, p);
		i = p;
	}
}

static void
loop_heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;
		if (c < l->nheap && l->heap[c]->when_ms < l->heap[m]->when_ms)
			m = c;
		if (c + 1 < l->nheap && l->heap[c + 1]->when_ms < l->heap[m]->when_ms)
			m = c + 1;
		if (m == i)
			break;
		loop_heap_swap(l, i, m);
		i = m;
	}
}

void
loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *arg)
{
	t->when_ms = 0;
	t->heap_idx = SIZE_MAX;
	t->fn = fn;
	t->arg = arg;
}

int
loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx != SIZE_MAX;
}

void
loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->heap_idx = i;
		loop_heap_down(l, i);
		loop_heap_up(l, i);
	}
}

void
loop_timer_arm(struct loop *l, struct loop_timer *t, int64_t when_ms)
{
	loop_timer_cancel(l, t);
	if (l->nheap == l->aheap) {
		l->aheap = l->aheap ? l->aheap * 2 : 64;
		l->heap = sc_xrealloc(l->heap, l->aheap * sizeof(*l->heap));
	}
	t->when_ms = when_ms;
	t->heap_idx = l->nheap;
	l->heap[l->nheap++] = t;
	loop_heap_up(l, t->heap_idx);
}

void
loop_timer_arm_in(struct loop *l, struct loop_timer *t, int64_t delay_ms)
{
	loop_timer_arm(l, t, sc_now_ms() + delay_ms);
}

int64_t
loop_now(struct loop *l)
{
	return l->now;
}

size_t
loop_ready_count(struct loop *l)
{
	return l->nready;
}

static void
loop_sig_handler(int signo)
{
	int saved = errno;
	unsigned char b = (unsigned char)signo;

	if (loop_sig_wfd != -1)
		(void)!write(loop_sig_wfd, &b, 1);
	errno = saved;
}

/* Drain the self-pipe and run the handlers of the signals that arrived. */
static void
loop_sig_read(struct loop *l, int fd, short revents, void *arg)
{
	unsigned char b[64];
	ssize_t n, i;

	while ((n = read(fd, b, sizeof(b))) > 0) {
		for (i = 0; i < n; i++) {
			if (b[i] < LOOP_NSIG && l->sigs[b[i]].fn != NULL)
				l->sigs[b[i]].fn(l, b[i], l->sigs[b[i]].arg);
		}
	}
}

int
loop_signal_watch(struct loop *l, int signo, loop_signal_fn fn, void *arg)
{
	struct sigaction sa;

	if (signo <= 0 || signo >= LOOP_NSIG)
		return -1;
	if (l->sigpipe[0] == -1) {
		if (pipe2(l->sigpipe, O_NONBLOCK | O_CLOEXEC) == -1)
			return -1;
		loop_sig_wfd = l->sigpipe[1];
		if (loop_fd_add(l, l->sigpipe[0], POLLIN, loop_sig_read, NULL) == -1)
			return -1;
	}
	l->sigs[signo].fn = fn;
	l->sigs[signo].arg = arg;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = loop_sig_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(signo, &sa, NULL);
}

void
loop_stop(struct loop *l)
{
	l->stop = 1;
}

/* Fire every timer whose deadline has passed, by the clock read after the
 * descriptors' callbacks: a timer they armed for "now" (libcurl's timeout 0
 * after a transfer was added) fires in this iteration, not after another
 * poll(..., 0). A timer re-armed for "now" from its own callback waits for
 * the next iteration. */
static void
loop_run_timers(struct loop *l)
{
	int64_t now;
	size_t budget = l->nheap;

	if (l->nheap == 0)
		return;
	now = l->now = sc_now_ms();

	while (l->nheap > 0 && l->heap[0]->when_ms <= now && budget-- > 0) {
		struct loop_timer *t = l->heap[0];
		loop_timer_cancel(l, t);
		t->fn(l, t->arg);
	}
}

int
loop_run(struct loop *l)
{
	while (!l->stop) {
		int timeout = -1, n;
		size_t i, nready = 0;

		l->now = sc_now_ms();
		if (l->nheap > 0) {
			int64_t d = l->heap[0]->when_ms - l->now;
			timeout = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
		}
		n = poll(l->pfds, l->npfds, timeout);
		if (n == -1) {
			if (errno != EINTR) {
				log_error("poll: %s", strerror(errno));
				return -1;
			}
			n = 0;
		}
		l->now = sc_now_ms();
		for (i = 0; i < l->npfds && nready < (size_t)n; i++) {
			if (l->pfds[i].revents == 0)
				continue;
			l->ready[nready].fd = l->pfds[i].fd;
			l->ready[nready].revents = l->pfds[i].revents;
			l->ready[nready].gen = l->slots[l->pfds[i].fd].gen;
			nready++;
		}
		l->nready = nready;
		for (i = 0; i < nready; i++) {
			struct loop_fdslot *s = &l->slots[l->ready[i].fd];
			if (s->pidx == -1 || s->gen != l->ready[i].gen)
				continue;
			s->fn(l, l->ready[i].fd, l->ready[i].revents, s->arg);
		}
		loop_run_timers(l);
	}
	return 0;
}
