/*
 * streamload: the benchmark load generator for streams and fixed-rate
 * latency (bench/run). One thread, one epoll set, thousands of keep-alive
 * HTTP/1.1 connections to one loopback address, each sending the same POST
 * again and again, so the client costs little next to what it measures.
 *
 * Two ways to pace requests:
 *   closed loop (default): each connection sends its next request as soon as
 *     the previous response is complete, until --requests or --duration;
 *   fixed rate (--rate R): request slots are due every 1/R s; a due slot takes
 *     an idle connection or waits for one, and its latency is counted from the
 *     moment it was due (no coordinated omission, like wrk2).
 *
 * What it measures, per request: time to the first response byte (TTFB), to
 * the first SSE "data:" event and to the last byte, the X-Sidecar-Queue-Ms
 * header when present, the status, and for streams (--chunks N with
 * --interval-ms I, --first-delay-ms F, which it also sends to the mock as
 * X-Mock-* headers) the delay of every content event i against the mock's
 * schedule: arrival - (request start + F + i * I). The same schedule through
 * the mock directly gives the floor; a proxy's added delay is its figure
 * minus the floor. Errors are counted by kind; a 200 stream that ends with
 * fewer events than --chunks counts as "short" (dropped).
 *
 * The summary is one JSON object on stdout. Only libc; builds with
 *   cc -O2 -Wall -o streamload streamload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (16 * 1024)		/* response header block cap, bytes */
#define SIZE_LINE_MAX 128		/* chunk-size line cap, bytes */
#define LINE_PREFIX 12			/* bytes of each SSE line kept: "data: [DONE]" */
#define EXTRA_HDRS_MAX (64 * 1024)	/* -H bytes in total */
#define READ_BUF (256 * 1024)		/* one read() */
#define CONNS_MAX 100000
#define SAMPLES_MAX (50u * 1000 * 1000)	/* per series, then samples are dropped */

enum cstate {
	C_IDLE,		/* connected (or not yet), no request */
	C_CONNECTING,
	C_SENDING,
	C_HEAD,		/* reading the status line and headers */
	C_BODY_LEN,	/* Content-Length body */
	C_BODY_EOF,	/* body until the server closes */
	C_CHUNK_SIZE,	/* chunked: size line */
	C_CHUNK_DATA,
	C_CHUNK_CRLF,	/* CRLF after chunk data */
	C_TRAILER,	/* trailer lines until an empty one */
};

/* One client connection and the request on it. */
struct conn {
	int fd;			/* -1 = closed */
	enum cstate st;
	bool keep;		/* response allowed keep-alive */
	bool busy;		/* a request is in progress */
	bool reused;		/* the request went out on a kept-alive connection */
	uint64_t due_us;	/* when this request should have started (rate mode) */
	uint64_t start_us;	/* first byte of the request written (or connect begun) */
	uint64_t ttfb_us;	/* first response byte; 0 = none yet */
	uint64_t first_ev_us;	/* first SSE data event; 0 = none yet */
	size_t sent;		/* request bytes written */
	char head[HEAD_MAX];
	size_t head_len;
	int status;
	int64_t queue_ms;	/* X-Sidecar-Queue-Ms; -1 = absent */
	uint64_t remain;	/* Content-Length or chunk bytes left */
	char sline[SIZE_LINE_MAX];
	size_t sline_len;
	char lp[LINE_PREFIX];	/* start of the current SSE line */
	size_t lp_len;
	bool line_done;		/* current line already judged */
	uint32_t events;	/* SSE data events seen (not [DONE]) */
};

/* A growable array of signed microsecond samples. */
struct series {
	int64_t *v;
	size_t n, cap;
	uint64_t dropped;
};

static struct {
	struct sockaddr_in addr;
	char *req;		/* the whole request, owned */
	size_t req_len;
	int conns;
	uint64_t requests;	/* 0 = until --duration */
	double duration_s;	/* 0 = until --requests */
	double rate;		/* 0 = closed loop */
	uint64_t ramp_us;
	bool stream;
	uint32_t chunks;
	uint64_t interval_us, first_delay_us;
	uint64_t timeout_us;
	bool verbose;

	int ep;
	int tfd;		/* timerfd for due slots and ramp starts, µs precision */
	struct conn *c;
	uint64_t t0;
	uint64_t issued, completed, ok;
	uint64_t status[600];
	uint64_t err_connect, err_closed, err_timeout, err_parse, short_streams;
	uint64_t stale_retries;	/* requests resent after a keep-alive close race */
	uint64_t events;
	uint64_t bytes_in;
	int active, peak_active;	/* requests in progress */
	/* rate mode: due slots waiting for an idle connection */
	uint64_t *pend;
	size_t pend_head, pend_len, pend_cap;
	uint64_t slots;			/* slots generated */
	struct series lat, ttfb, first_ev, chunk_delay, queue_ms;
} g;

static volatile sig_atomic_t g_stop;

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
die(const char *what)
{
	fprintf(stderr, "streamload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
series_add(struct series *s, int64_t v)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		int64_t *nv;

		if (ncap > SAMPLES_MAX || (nv = realloc(s->v, ncap * sizeof(*nv))) == NULL) {
			s->dropped++;
			return;
		}
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = v;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted series. */
static int64_t
pct(const struct series *s, double p)
{
	size_t i;

	if (!s->n)
		return 0;
	i = (size_t)(p / 100.0 * (double)s->n + 0.5);
	if (i < 1)
		i = 1;
	if (i > s->n)
		i = s->n;
	return s->v[i - 1];
}

static void
series_json(FILE *f, const char *name, struct series *s, bool last)
{
	double sum = 0;
	size_t i;

	qsort(s->v, s->n, sizeof(*s->v), cmp_i64);
	for (i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%" PRId64 ",\"p90\":%" PRId64 ",\"p99\":%" PRId64
	    ",\"p999\":%" PRId64 ",\"max\":%" PRId64 ",\"min\":%" PRId64 ",\"mean\":%.1f,\"dropped\":%" PRIu64 "}%s\n",
	    name, s->n, pct(s, 50), pct(s, 90), pct(s, 99), pct(s, 99.9), s->n ? s->v[s->n - 1] : 0,
	    s->n ? s->v[0] : 0, s->n ? sum / (double)s->n : 0.0, s->dropped, last ? "" : ",");
}

static void
ep_set(struct conn *c, uint32_t ev, int op)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (epoll_ctl(g.ep, op, c->fd, &e) < 0)
		die("epoll_ctl");
}

static void
conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);	/* also leaves the epoll set */
		c->fd = -1;
	}
	c->st = C_IDLE;
}

/* The request on c ended (ok or not); count it and free the connection. */
static void
req_end(struct conn *c, bool complete)
{
	uint64_t t = now_us();
	uint64_t from = g.rate > 0 ? c->due_us : c->start_us;

	if (!c->busy)
		return;
	c->busy = false;
	g.active--;
	g.completed++;
	if (complete) {
		if (c->status >= 0 && c->status < 600)
			g.status[c->status]++;
		if (c->status >= 200 && c->status < 300) {
			g.ok++;
			series_add(&g.lat, (int64_t)(t - from));
			if (c->ttfb_us)
				series_add(&g.ttfb, (int64_t)(c->ttfb_us - from));
			if (c->first_ev_us)
				series_add(&g.first_ev, (int64_t)(c->first_ev_us - from));
			if (g.stream && g.chunks && c->events < g.chunks)
				g.short_streams++;
			if (c->queue_ms >= 0)
				series_add(&g.queue_ms, c->queue_ms);
		}
	}
	if (!complete || !c->keep)
		conn_close(c);
	else
		c->st = C_IDLE;
}

static void
req_fail(struct conn *c, uint64_t *counter)
{
	(*counter)++;
	req_end(c, false);
	conn_close(c);
}

/* One byte of SSE body: judge each line by its first bytes. */
static void
sse_byte(struct conn *c, char ch, uint64_t t)
{
	if (ch == '\n') {
		if (!c->line_done && c->lp_len >= 5 && memcmp(c->lp, "data:", 5) == 0)
			goto judge;
		c->lp_len = 0;
		c->line_done = false;
		return;
	}
	if (c->line_done)
		return;
	c->lp[c->lp_len++] = ch;
	if (c->lp_len < LINE_PREFIX)
		return;
judge:
	c->line_done = true;
	if (memcmp(c->lp, "data:", 5) == 0 &&
	    !(c->lp_len >= 12 && memcmp(c->lp, "data: [DONE]", 12) == 0)) {
		if (!c->first_ev_us)
			c->first_ev_us = t;
		if (g.chunks && c->events < g.chunks) {
			uint64_t exp = c->start_us + g.first_delay_us + (uint64_t)c->events * g.interval_us;

			series_add(&g.chunk_delay, (int64_t)t - (int64_t)exp);
		}
		c->events++;
		g.events++;
	}
	if (ch == '\n') {
		c->lp_len = 0;
		c->line_done = false;
	}
}

static void
body_bytes(struct conn *c, const char *p, size_t n, uint64_t t)
{
	size_t i;

	for (i = 0; i < n; i++)
		sse_byte(c, p[i], t);
}

/* Parse the header block in c->head. Returns -1 when malformed. */
static int
head_parse(struct conn *c)
{
	char *p = c->head, *end = c->head + c->head_len, *eol;
	bool chunked = false, have_len = false, close_tok = false;
	uint64_t len = 0;

	if (c->head_len < 12 || memcmp(p, "HTTP/1.", 7) != 0)
		return -1;
	c->status = atoi(p + 9);
	c->keep = p[7] == '1';
	c->queue_ms = -1;
	eol = memmem(p, (size_t)(end - p), "\r\n", 2);
	while (eol && eol + 2 < end) {
		char *line = eol + 2, *colon, *v;

		eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		if (!eol || eol == line)
			break;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			continue;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		*eol = '\0';
#define IS(name) ((size_t)(colon - line) == sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0)
		if (IS("content-length")) {
			have_len = true;
			len = strtoull(v, NULL, 10);
		} else if (IS("transfer-encoding")) {
			chunked = strcasestr(v, "chunked") != NULL;
		} else if (IS("connection")) {
			if (strcasestr(v, "close"))
				close_tok = true;
			else if (strcasestr(v, "keep-alive"))
				c->keep = true;
		} else if (IS("x-sidecar-queue-ms")) {
			c->queue_ms = strtoll(v, NULL, 10);
		}
#undef IS
		*eol = '\r';
	}
	if (close_tok)
		c->keep = false;
	c->lp_len = 0;
	c->line_done = false;
	c->events = 0;
	if (chunked) {
		c->st = C_CHUNK_SIZE;
		c->sline_len = 0;
	} else if (have_len) {
		c->st = C_BODY_LEN;
		c->remain = len;
	} else if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200)) {
		c->st = C_BODY_LEN;
		c->remain = 0;
	} else {
		c->st = C_BODY_EOF;
		c->keep = false;
	}
	return 0;
}

/* Feed received bytes to the response parser. Returns false when c was closed. */
static bool
conn_input(struct conn *c, const char *p, size_t n, uint64_t t)
{
	while (n > 0 || (c->st == C_BODY_LEN && c->remain == 0)) {
		switch (c->st) {
		case C_HEAD: {
			size_t take = n, scan_from = c->head_len >= 3 ? c->head_len - 3 : 0;
			char *e;

			if (take > HEAD_MAX - c->head_len)
				take = HEAD_MAX - c->head_len;
			memcpy(c->head + c->head_len, p, take);
			c->head_len += take;
			e = memmem(c->head + scan_from, c->head_len - scan_from, "\r\n\r\n", 4);
			if (!e) {
				if (c->head_len == HEAD_MAX) {
					req_fail(c, &g.err_parse);
					return false;
				}
				return true;
			}
			{
				size_t used = (size_t)(e + 4 - c->head) - (c->head_len - take);

				c->head_len = (size_t)(e + 4 - c->head);
				if (head_parse(c) < 0) {
					req_fail(c, &g.err_parse);
					return false;
				}
				p += used;
				n -= used;
			}
			break;
		}
		case C_BODY_LEN: {
			size_t take = n < c->remain ? n : (size_t)c->remain;

			body_bytes(c, p, take, t);
			p += take;
			n -= take;
			c->remain -= take;
			if (c->remain == 0) {
				req_end(c, true);
				if (n)	/* bytes past the response: not expected */
					conn_close(c);
				return c->fd >= 0;
			}
			break;
		}
		case C_BODY_EOF:
			body_bytes(c, p, n, t);
			n = 0;
			break;
		case C_CHUNK_SIZE:
			while (n > 0) {
				char ch = *p++;

				n--;
				if (ch == '\n') {
					char *endp;
					unsigned long long sz;

					c->sline[c->sline_len < SIZE_LINE_MAX ? c->sline_len : SIZE_LINE_MAX - 1] = '\0';
					sz = strtoull(c->sline, &endp, 16);
					if (endp == c->sline) {
						req_fail(c, &g.err_parse);
						return false;
					}
					c->sline_len = 0;
					if (sz == 0) {
						c->st = C_TRAILER;
					} else {
						c->remain = sz;
						c->st = C_CHUNK_DATA;
					}
					break;
				}
				if (c->sline_len >= SIZE_LINE_MAX - 1) {
					req_fail(c, &g.err_parse);
					return false;
				}
				c->sline[c->sline_len++] = ch;
			}
			break;
		case C_CHUNK_DATA: {
			size_t take = n < c->remain ? n : (size_t)c->remain;

			body_bytes(c, p, take, t);
			p += take;
			n -= take;
			c->remain -= take;
			if (c->remain == 0) {
				c->st = C_CHUNK_CRLF;
				c->sline_len = 0;
			}
			break;
		}
		case C_CHUNK_CRLF:
			while (n > 0 && c->st == C_CHUNK_CRLF) {
				char ch = *p++;

				n--;
				if (ch == '\n')
					c->st = C_CHUNK_SIZE;
			}
			break;
		case C_TRAILER:
			while (n > 0) {
				char ch = *p++;

				n--;
				if (ch == '\n') {
					if (c->sline_len == 0) {
						req_end(c, true);
						if (n)
							conn_close(c);
						return c->fd >= 0;
					}
					c->sline_len = 0;
				} else if (ch != '\r') {
					c->sline_len++;
				}
			}
			break;
		default:
			/* bytes while idle or sending: the server spoke out of turn */
			req_fail(c, &g.err_parse);
			return false;
		}
	}
	return true;
}

static void req_send(struct conn *c);

/*
 * The connection closed under a request. When the request went out on a
 * kept-alive connection and no response byte came back, the server most
 * likely closed the idle connection as we reused it (the keep-alive race):
 * send the request again on a fresh connection, as HTTP clients do, instead
 * of counting an error against the server.
 */
static void
closed_fail(struct conn *c)
{
	if (c->busy && c->reused && c->ttfb_us == 0) {
		conn_close(c);
		c->reused = false;
		g.stale_retries++;
		req_send(c);
		return;
	}
	req_fail(c, &g.err_closed);
}

static void
conn_write(struct conn *c)
{
	while (c->sent < g.req_len) {
		ssize_t w = write(c->fd, g.req + c->sent, g.req_len - c->sent);

		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				if (errno == EAGAIN)
					return;
				continue;
			}
			closed_fail(c);
			return;
		}
		c->sent += (size_t)w;
	}
	c->st = C_HEAD;
	c->head_len = 0;
	ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

/* Begin a request on c (connecting first when needed). */
static void
req_begin(struct conn *c, uint64_t due)
{
	uint64_t t = now_us();

	c->busy = true;
	g.active++;
	if (g.active > g.peak_active)
		g.peak_active = g.active;
	g.issued++;
	c->due_us = due ? due : t;
	c->start_us = t;
	c->ttfb_us = 0;
	c->first_ev_us = 0;
	c->sent = 0;
	c->status = 0;
	c->queue_ms = -1;
	c->head_len = 0;
	c->reused = c->fd >= 0;
	req_send(c);
}

/* Put the request of c on the wire, connecting first when c has no connection. */
static void
req_send(struct conn *c)
{
	c->sent = 0;
	c->head_len = 0;
	c->ttfb_us = 0;
	if (c->fd < 0) {
		int one = 1;

		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			req_fail(c, &g.err_connect);
			return;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(c->fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) < 0 && errno != EINPROGRESS) {
			req_fail(c, &g.err_connect);
			return;
		}
		c->st = C_CONNECTING;
		ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
		return;
	}
	c->st = C_SENDING;
	ep_set(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
	conn_write(c);
}

static void
conn_event(struct conn *c, uint32_t ev)
{
	static char buf[READ_BUF];

	if (c->st == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			req_fail(c, &g.err_connect);
			return;
		}
		c->st = C_SENDING;
		c->start_us = now_us();
		ep_set(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
	}
	if (c->st == C_SENDING && (ev & EPOLLOUT))
		conn_write(c);
	if (c->fd < 0 || c->st == C_CONNECTING)	/* closed, or resent on a new connection */
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			ssize_t r = read(c->fd, buf, sizeof(buf));
			uint64_t t;

			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				if (c->busy)
					closed_fail(c);
				else
					conn_close(c);
				return;
			}
			if (r == 0) {
				if (c->busy && c->st == C_BODY_EOF)
					req_end(c, true);
				else if (c->busy) {
					closed_fail(c);
					return;
				}
				conn_close(c);
				return;
			}
			t = now_us();
			g.bytes_in += (uint64_t)r;
			if (!c->busy) {	/* the server closed an idle keep-alive or spoke out of turn */
				conn_close(c);
				return;
			}
			if (!c->ttfb_us)
				c->ttfb_us = t;
			if (!conn_input(c, buf, (size_t)r, t))
				return;
			if (!c->busy)	/* response complete; leave what follows for the next round */
				return;
			if ((size_t)r < sizeof(buf))
				break;
		}
	}
}

static bool
want_more(uint64_t t)
{
	if (g_stop)
		return false;
	if (g.duration_s > 0 && (double)(t - g.t0) >= g.duration_s * 1e6)
		return false;
	if (g.requests && (g.rate > 0 ? g.slots : g.issued) >= g.requests)
		return false;
	return true;
}

static void
pend_push(uint64_t due)
{
	if (g.pend_len == g.pend_cap) {
		size_t ncap = g.pend_cap ? g.pend_cap * 2 : 1024, i;
		uint64_t *np = malloc(ncap * sizeof(*np));

		if (!np)
			die("malloc");
		for (i = 0; i < g.pend_len; i++)
			np[i] = g.pend[(g.pend_head + i) % g.pend_cap];
		free(g.pend);
		g.pend = np;
		g.pend_head = 0;
		g.pend_cap = ncap;
	}
	g.pend[(g.pend_head + g.pend_len) % g.pend_cap] = due;
	g.pend_len++;
}

/* Start work on idle connections; returns µs until the next thing is due (-1 none). */
static int64_t
schedule(void)
{
	uint64_t t = now_us();
	int64_t next = -1;
	int i;

	if (g.rate > 0) {
		double per = 1e6 / g.rate;

		while (want_more(t)) {
			uint64_t due = g.t0 + (uint64_t)((double)g.slots * per);

			if (due > t) {
				next = (int64_t)(due - t);
				break;
			}
			pend_push(due);
			g.slots++;
		}
		/* bounded: slots still waiting for a connection a timeout past the end are abandoned as timeouts */
		if (g.pend_len && g.duration_s > 0 && (double)(t - g.t0) > g.duration_s * 1e6 + (double)g.timeout_us) {
			g.err_timeout += g.pend_len;
			g.completed += g.pend_len;
			g.issued += g.pend_len;
			g.pend_len = 0;
		}
		for (i = 0; i < g.conns && g.pend_len; i++) {
			struct conn *c = &g.c[i];

			if (c->busy)
				continue;
			req_begin(c, g.pend[g.pend_head]);
			g.pend_head = (g.pend_head + 1) % g.pend_cap;
			g.pend_len--;
		}
		return next;
	}
	for (i = 0; i < g.conns; i++) {
		struct conn *c = &g.c[i];
		uint64_t start = g.t0 + (g.conns > 1 ? g.ramp_us * (uint64_t)i / (uint64_t)(g.conns - 1) : 0);

		if (c->busy)
			continue;
		if (!want_more(t))
			break;
		if (start > t) {
			int64_t d = (int64_t)(start - t);

			if (next < 0 || d < next)
				next = d;
			continue;
		}
		req_begin(c, 0);
	}
	return next;
}

static void
check_timeouts(uint64_t t)
{
	int i;

	for (i = 0; i < g.conns; i++) {
		struct conn *c = &g.c[i];

		if (c->busy && t - c->start_us > g.timeout_us)
			req_fail(c, &g.err_timeout);
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void
usage(FILE *f)
{
	fputs("usage: streamload --url http://127.0.0.1:PORT/PATH [--body FILE] [-H 'Name: value']...\n"
	      "         [--conns N] [--requests N] [--duration S] [--rate R] [--ramp-ms MS]\n"
	      "         [--chunks N --interval-ms MS --first-delay-ms MS] [--timeout-s S] [--verbose]\n"
	      "POSTs the body (GET without one) over N keep-alive connections; prints a JSON summary.\n"
	      "--rate: fixed rate with latency counted from each request's due time; else closed loop.\n"
	      "--chunks: stream mode: adds \"X-Mock-Chunks\" etc. and measures per-event delay.\n", f);
}

/* Parse http://HOST:PORT/PATH (HOST an IPv4 literal or localhost). */
static int
parse_url(const char *url, char *host, size_t hostsz, int *port, const char **path)
{
	const char *p, *colon, *slash;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	p = url + 7;
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (!slash || !colon || colon > slash || (size_t)(colon - p) >= hostsz)
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*port = atoi(colon + 1);
	*path = slash;
	return *port > 0 && *port < 65536 ? 0 : -1;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	long n;

	if (!f)
		die(path);
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
		die(path);
	if ((b = malloc((size_t)n + 1)) == NULL)
		die("malloc");
	if (n && fread(b, 1, (size_t)n, f) != (size_t)n)
		die(path);
	fclose(f);
	*len = (size_t)n;
	return b;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "body", required_argument, NULL, 'b' },
		{ "header", required_argument, NULL, 'H' },
		{ "conns", required_argument, NULL, 'c' },
		{ "requests", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "ramp-ms", required_argument, NULL, 'R' },
		{ "chunks", required_argument, NULL, 'k' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "first-delay-ms", required_argument, NULL, 'f' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = NULL, *body_file = NULL, *path;
	char host[256], extra[EXTRA_HDRS_MAX], *body = NULL;
	size_t extra_len = 0, body_len = 0;
	struct epoll_event evs[1024];
	struct rlimit rl;
	uint64_t last_check, t_end;
	int opt, port, i, n, hl;

	g.conns = 1;
	g.timeout_us = 60 * 1000000ull;
	extra[0] = '\0';
	while ((opt = getopt_long(argc, argv, "H:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': url = optarg; break;
		case 'b': body_file = optarg; break;
		case 'H':
			hl = snprintf(extra + extra_len, sizeof(extra) - extra_len, "%s\r\n", optarg);
			if (hl < 0 || (size_t)hl >= sizeof(extra) - extra_len) {
				fprintf(stderr, "streamload: too many header bytes\n");
				return 2;
			}
			extra_len += (size_t)hl;
			break;
		case 'c': g.conns = atoi(optarg); break;
		case 'n': g.requests = strtoull(optarg, NULL, 10); break;
		case 'd': g.duration_s = atof(optarg); break;
		case 'r': g.rate = atof(optarg); break;
		case 'R': g.ramp_us = strtoull(optarg, NULL, 10) * 1000; break;
		case 'k': g.chunks = (uint32_t)strtoul(optarg, NULL, 10); g.stream = true; break;
		case 'i': g.interval_us = strtoull(optarg, NULL, 10) * 1000; break;
		case 'f': g.first_delay_us = strtoull(optarg, NULL, 10) * 1000; break;
		case 't': g.timeout_us = (uint64_t)(atof(optarg) * 1e6); break;
		case 'v': g.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!url || parse_url(url, host, sizeof(host), &port, &path) < 0 || g.conns < 1 || g.conns > CONNS_MAX ||
	    (!g.requests && g.duration_s <= 0)) {
		usage(stderr);
		return 2;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	g.addr.sin_family = AF_INET;
	g.addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &g.addr.sin_addr) != 1) {
		fprintf(stderr, "streamload: host must be an IPv4 literal: %s\n", host);
		return 2;
	}
	if (body_file)
		body = read_file(body_file, &body_len);
	if (g.stream) {
		hl = snprintf(extra + extra_len, sizeof(extra) - extra_len,
		    "X-Mock-Chunks: %u\r\nX-Mock-Interval-Ms: %" PRIu64 "\r\nX-Mock-First-Delay-Ms: %" PRIu64 "\r\n",
		    g.chunks, g.interval_us / 1000, g.first_delay_us / 1000);
		if (hl < 0 || (size_t)hl >= sizeof(extra) - extra_len)
			return 2;
		extra_len += (size_t)hl;
	}
	{
		size_t cap = 512 + strlen(path) + strlen(host) + extra_len + body_len;

		if ((g.req = malloc(cap)) == NULL)
			die("malloc");
		if (body)
			hl = snprintf(g.req, cap, "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
			    "Content-Length: %zu\r\n%s\r\n", path, host, port, body_len, extra);
		else
			hl = snprintf(g.req, cap, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port, extra);
		if (hl < 0 || (size_t)hl + body_len >= cap)
			return 2;
		if (body)
			memcpy(g.req + hl, body, body_len);
		g.req_len = (size_t)hl + body_len;
		free(body);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if ((g.c = calloc((size_t)g.conns, sizeof(*g.c))) == NULL)
		die("calloc");
	for (i = 0; i < g.conns; i++)
		g.c[i].fd = -1;
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	if ((g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		die("timerfd_create");
	{
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };

		if (epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &e) < 0)
			die("epoll_ctl");
	}

	g.t0 = last_check = now_us();
	for (;;) {
		int64_t next = schedule();
		int timeout;
		uint64_t t = now_us();

		if (!want_more(t) && g.active == 0 && g.pend_len == 0)
			break;
		if (g_stop && g.active == 0)
			break;
		/* µs-precise wake-up for the next due start; epoll's own timeout only for the timeout scan */
		if (next >= 0) {
			struct itimerspec its = { { 0, 0 }, { 0, 0 } };

			if (next < 1)
				next = 1;
			its.it_value.tv_sec = next / 1000000;
			its.it_value.tv_nsec = (next % 1000000) * 1000;
			timerfd_settime(g.tfd, 0, &its, NULL);
		}
		timeout = 100;
		n = epoll_wait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t x;

				if (read(g.tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					die("timerfd read");
				continue;
			}
			conn_event(evs[i].data.ptr, evs[i].events);
		}
		t = now_us();
		if (t - last_check > 100000) {
			check_timeouts(t);
			last_check = t;
			if (g_stop) {	/* second chance: abandon what is left */
				for (i = 0; i < g.conns; i++)
					if (g.c[i].busy)
						req_fail(&g.c[i], &g.err_timeout);
			}
		}
	}
	t_end = now_us();
	for (i = 0; i < g.conns; i++)
		conn_close(&g.c[i]);

	{
		double el = (double)(t_end - g.t0) / 1e6;
		bool first = true;

		printf("{\"elapsed_s\":%.3f,\"conns\":%d,\"rate\":%.1f,\"issued\":%" PRIu64 ",\"completed\":%" PRIu64
		    ",\"ok\":%" PRIu64 ",\"rps\":%.1f,\"peak_active\":%d,\"events\":%" PRIu64 ",\"bytes_in\":%" PRIu64
		    ",\"short_streams\":%" PRIu64 ",\"stale_retries\":%" PRIu64 ",\n",
		    el, g.conns, g.rate, g.issued, g.completed, g.ok, el > 0 ? (double)g.ok / el : 0.0, g.peak_active,
		    g.events, g.bytes_in, g.short_streams, g.stale_retries);
		printf("\"errors\":{\"connect\":%" PRIu64 ",\"closed\":%" PRIu64 ",\"timeout\":%" PRIu64
		    ",\"parse\":%" PRIu64 "},\n\"status\":{", g.err_connect, g.err_closed, g.err_timeout, g.err_parse);
		for (i = 0; i < 600; i++) {
			if (!g.status[i])
				continue;
			printf("%s\"%d\":%" PRIu64, first ? "" : ",", i, g.status[i]);
			first = false;
		}
		printf("},\n");
		series_json(stdout, "lat_us", &g.lat, false);
		series_json(stdout, "ttfb_us", &g.ttfb, false);
		series_json(stdout, "first_event_us", &g.first_ev, false);
		series_json(stdout, "chunk_delay_us", &g.chunk_delay, false);
		series_json(stdout, "queue_ms", &g.queue_ms, true);
		printf("}\n");
	}
	return 0;
}
