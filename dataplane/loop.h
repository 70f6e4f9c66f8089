/*
 * The data plane's event loop (Redis ae.c in spirit): one poll() over the
 * registered file descriptors, a min-heap of timers whose nearest deadline is
 * the poll timeout, and a self-pipe that turns signals into ordinary events.
 * Single-threaded; callbacks may add and remove fds and timers freely.
 */
#ifndef SC_LOOP_H
#define SC_LOOP_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* revents as poll() reported them (POLLIN, POLLOUT, POLLHUP, POLLERR, POLLRDHUP). */
typedef void (*loop_fd_fn)(struct loop *l, int fd, short revents, void *arg);
typedef void (*loop_timer_fn)(struct loop *l, void *arg);
typedef void (*loop_signal_fn)(struct loop *l, int signo, void *arg);

/* A timer lives inside its owner's struct; the loop only links it. */
struct loop_timer {
	int64_t       when_ms;		/* monotonic deadline (sc_now_ms clock) */
	size_t        heap_idx;		/* position in the heap, SIZE_MAX when not armed */
	loop_timer_fn fn;
	void         *arg;
};

struct loop *loop_new(void);
void         loop_free(struct loop *l);

/* Watch fd for events (POLLIN/POLLOUT/POLLRDHUP, 0 = errors only). 0 or -1. */
int  loop_fd_add(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg);
void loop_fd_set_events(struct loop *l, int fd, short events);
short loop_fd_events(struct loop *l, int fd);
void loop_fd_del(struct loop *l, int fd);

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *arg);
/* (Re)arm at an absolute monotonic time in ms. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, int64_t when_ms);
void loop_timer_arm_in(struct loop *l, struct loop_timer *t, int64_t delay_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
int  loop_timer_armed(const struct loop_timer *t);

/* Deliver signo through the loop (sigaction + self-pipe). 0 or -1. */
int loop_signal_watch(struct loop *l, int signo, loop_signal_fn fn, void *arg);

/* The monotonic time of the current iteration, in ms. */
int64_t loop_now(struct loop *l);
/* How many descriptors the current iteration's poll() reported ready: a
 * measure of load for callbacks that trade latency for batching. */
size_t  loop_ready_count(struct loop *l);
/* Run until loop_stop; 0. */
int  loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
