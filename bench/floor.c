/*
 * floor: the libcurl floor of bench/run (issue 20). A minimal HTTP client
 * that drives libcurl exactly the way the data plane does (dataplane/
 * upstream.c) and nothing else: one multi handle run by
 * curl_multi_socket_action from a poll() loop (CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION), C transfers at a time on easy handles that are
 * reused with their options (CURLOPT_NOSIGNAL, HTTP/1.1, TCP_NODELAY, the
 * data plane's buffer sizes) and connections kept alive in the multi's
 * cache. Each transfer POSTs the same body with the headers any client of
 * the upstream needs (Authorization, Content-Type, an empty Expect, as the
 * data plane sends them). The data plane also sends an X-Request-Id line
 * (SPEC): libcurl's cost of formatting it counts as the data plane's own.
 *
 * What one transfer costs here is what libcurl costs the data plane per
 * upstream request at the least; the data plane's figure minus this one is
 * its own share (the client side, routing, scheduling, accounting).
 *
 * Two phases: --warmup W transfers (connections opened, buffers allocated),
 * then --transfers N measured ones. Under valgrind --tool=callgrind the
 * counters are zeroed between the phases and dumped at the end of the
 * measured one (callgrind.h client requests, no-ops otherwise), so a dump
 * holds exactly the N measured transfers. The summary is one JSON object on
 * stdout: transfers, failures, wall time, utime + stime of this process over
 * the measured phase (getrusage) and per transfer, new connections opened,
 * peak RSS.
 *
 *   cc -O2 -g -Wall -o floor floor.c -lcurl
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(s)
#endif

#define FLOOR_FD_MAX 65536		/* descriptors tracked (fd-indexed table) */
#define FLOOR_CONC_MAX 20000		/* transfers at a time */
#define FLOOR_HDRS_MAX 32		/* -H headers */
#define FLOOR_RECV_BUF 4096L		/* CURLOPT_BUFFERSIZE: the data plane's UPSTREAM_RECV_BUF
					 * (--buffer-size 1024 for streams: its UPSTREAM_STREAM_BUF) */
#define FLOOR_UPLOAD_BUF 16384L		/* CURLOPT_UPLOAD_BUFFERSIZE: the data plane's */

/* One easy handle and the transfer running on it. */
struct floor_xfer {
	CURL    *easy;
	uint64_t bytes;			/* response body bytes of the current transfer */
	char     errbuf[CURL_ERROR_SIZE];
};

static struct {
	CURLM             *multi;
	struct pollfd     *pfd;		/* the sockets curl asked for, dense */
	int               *slot;		/* fd -> index in pfd, -1 = not watched */
	size_t             npfd;
	int64_t            timer_due_us;	/* curl's timeout, -1 = none */
	struct floor_xfer *xf;
	size_t             nxf;
	size_t            *idle;		/* indexes of idle handles (a stack) */
	size_t             nidle;
	struct curl_slist *headers;
	const char        *url;
	const char        *body;
	size_t             body_len;
	long               timeout_ms;	/* no transfer finished for this long: give up */
	long               connect_ms;	/* CURLOPT_CONNECTTIMEOUT_MS (TLS handshake included) */
	/* the phase running */
	uint64_t           want;		/* transfers to run */
	uint64_t           started;
	uint64_t           done;
	uint64_t           failures;
	uint64_t           bytes;
	long               connects;	/* new connections (CURLINFO_NUM_CONNECTS) */
	char               first_err[CURL_ERROR_SIZE + 64];
} g;

static int64_t
floor_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
floor_die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *
floor_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (p == NULL)
		floor_die("calloc");
	return p;
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's wishes into the pollfd array. */
static int
floor_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
	short ev = 0;
	int i;

	(void)e;
	(void)userp;
	(void)sockp;
	if (s < 0 || s >= FLOOR_FD_MAX) {
		fprintf(stderr, "floor: descriptor %d out of range\n", (int)s);
		exit(1);
	}
	i = g.slot[s];
	if (what == CURL_POLL_REMOVE) {
		if (i >= 0) {
			g.pfd[i] = g.pfd[--g.npfd];
			g.slot[g.pfd[i].fd] = i;
			g.slot[s] = -1;
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= POLLIN;
	if (what & CURL_POLL_OUT)
		ev |= POLLOUT;
	if (i < 0) {
		i = (int)g.npfd++;
		g.pfd[i].fd = s;
		g.slot[s] = i;
	}
	g.pfd[i].events = ev;
	g.pfd[i].revents = 0;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 cancels, otherwise call back in timeout_ms. */
static int
floor_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	(void)userp;
	g.timer_due_us = timeout_ms < 0 ? -1 : floor_now_us() + (int64_t)timeout_ms * 1000;
	return 0;
}

static size_t
floor_header_cb(char *p, size_t sz, size_t nm, void *arg)
{
	(void)p;
	(void)arg;
	return sz * nm;
}

static size_t
floor_write_cb(char *p, size_t sz, size_t nm, void *arg)
{
	struct floor_xfer *x = arg;

	(void)p;
	x->bytes += sz * nm;
	return sz * nm;
}

/* The options every transfer shares, set once per handle (as the data
 * plane's upstream_easy_setup does): those that name the transfer (a pooled
 * handle keeps its transfer struct) and those the data plane sets on a
 * pooled handle only when they differ from its last transfer's (URL,
 * connect timeout, POST: here always the same). */
static void
floor_easy_setup(struct floor_xfer *x, const char *cafile, int insecure, long recv_buf)
{
	CURL *e = x->easy;

	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* the data plane's, when the environment names no proxy (as here) */
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	if (cafile != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
	if (insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, FLOOR_UPLOAD_BUF);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, recv_buf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, floor_header_cb);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, floor_write_cb);
	curl_easy_setopt(e, CURLOPT_URL, g.url);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, g.connect_ms);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
}

/* Start one transfer on an idle handle: what the data plane sets per request. */
static void
floor_start(void)
{
	struct floor_xfer *x = &g.xf[g.idle[--g.nidle]];
	CURL *e = x->easy;

	x->bytes = 0;
	x->errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, g.headers);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)g.body_len);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, g.body);
	if (curl_multi_add_handle(g.multi, e) != CURLM_OK) {
		fprintf(stderr, "floor: curl_multi_add_handle failed\n");
		exit(1);
	}
	g.started++;
}

/* Collect finished transfers; start the next ones. */
static void
floor_check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(g.multi, &left)) != NULL) {
		struct floor_xfer *x = NULL;
		long code = 0, nc = 0;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_getinfo(m->easy_handle, CURLINFO_NUM_CONNECTS, &nc);
		g.connects += nc;
		if (m->data.result != CURLE_OK || code != 200 || x->bytes == 0) {
			if (g.failures++ == 0)
			{
				char *c;

				snprintf(g.first_err, sizeof(g.first_err), "%s (HTTP %ld): %s",
				    curl_easy_strerror(m->data.result), code, x->errbuf);
				for (c = g.first_err; *c; c++)	/* it goes into a JSON string */
					if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
						*c = '\'';
			}
		}
		g.bytes += x->bytes;
		curl_multi_remove_handle(g.multi, m->easy_handle);
		g.idle[g.nidle++] = (size_t)(x - g.xf);
		g.done++;
		if (g.started < g.want)
			floor_start();
	}
}

/* Run n transfers, at most g.nxf at a time, to the end. */
static void
floor_phase(uint64_t n)
{
	struct pollfd ready[1024];
	int64_t progress = floor_now_us();
	uint64_t seen = 0;
	int running;

	g.want = n;
	g.started = g.done = 0;
	while (g.started < g.want && g.nidle > 0)
		floor_start();
	/* adding handles armed curl's timer: it starts them */
	while (g.done < g.want) {
		int64_t now = floor_now_us();
		int timeout = 1000, nr, i, nready = 0;

		if (g.timer_due_us >= 0)
			timeout = g.timer_due_us <= now ? 0 : (int)((g.timer_due_us - now + 999) / 1000);
		nr = poll(g.pfd, g.npfd, timeout);
		if (nr < 0 && errno != EINTR)
			floor_die("poll");
		/* the callbacks change the array: act on a copy of what is ready */
		for (i = 0; nr > 0 && i < (int)g.npfd && nready < (int)(sizeof(ready) / sizeof(ready[0])); i++)
			if (g.pfd[i].revents)
				ready[nready++] = g.pfd[i];
		for (i = 0; i < nready; i++) {
			int flags = 0;

			if (ready[i].revents & (POLLIN | POLLHUP))
				flags |= CURL_CSELECT_IN;
			if (ready[i].revents & POLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (ready[i].revents & (POLLERR | POLLNVAL))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(g.multi, ready[i].fd, flags, &running);
			floor_check_done();
		}
		if (g.timer_due_us >= 0 && g.timer_due_us <= floor_now_us()) {
			g.timer_due_us = -1;
			curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
			floor_check_done();
		}
		if (g.done != seen) {
			seen = g.done;
			progress = now;
		} else if (now - progress > (int64_t)g.timeout_ms * 1000) {
			fprintf(stderr, "floor: no transfer finished in %ld ms (%" PRIu64 " of %" PRIu64 " done)\n",
			    g.timeout_ms, g.done, g.want);
			exit(1);
		}
	}
}

static double
floor_tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static char *
floor_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	if (f == NULL)
		floor_die(path);
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
		floor_die(path);
	b = floor_xcalloc(1, (size_t)n + 1);
	if (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n)
		floor_die(path);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void
floor_usage(FILE *f)
{
	fputs("usage: floor --url URL --body FILE [-H 'Name: value']... [--transfers N] [--concurrency C]\n"
	      "             [--warmup W] [--cacert FILE | --insecure] [--timeout-s S] [--connect-timeout-s S]\n"
	      "             [--buffer-size BYTES]\n"
	      "POSTs the body N times, C at a time, with libcurl's multi interface driven by\n"
	      "curl_multi_socket_action from a poll() loop (as the data plane does); prints a JSON\n"
	      "summary: transfers, failures, wall time, this process's utime+stime per transfer.\n"
	      "Defaults: N 100000, C 32, W 1000, receive buffer 4096 (the data plane's; 1024 for its\n"
	      "streams), connect timeout 10 s (TLS handshake included; raise\n"
	      "it under valgrind), --timeout-s 60 (no transfer finished for that long: exit 1).\n"
	      "With no -H, sends an Authorization header with a test key, as the data plane\n"
	      "does upstream.\n", f);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "body", required_argument, NULL, 'b' },
		{ "header", required_argument, NULL, 'H' },
		{ "transfers", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "cacert", required_argument, NULL, 'C' },
		{ "insecure", no_argument, NULL, 'k' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "connect-timeout-s", required_argument, NULL, 'T' },
		{ "buffer-size", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *body_file = NULL, *cafile = NULL, *hdrs[FLOOR_HDRS_MAX];
	uint64_t transfers = 100000, warmup = 1000;
	long conc = 32, recv_buf = FLOOR_RECV_BUF;
	int opt, insecure = 0, nhdrs = 0, i;
	struct rlimit rl;
	struct rusage r0, r1;
	int64_t t0, t1;
	double wall, ut, st;

	g.timeout_ms = 60000;
	g.connect_ms = 10000;	/* the data plane's default connect_timeout */
	while ((opt = getopt_long(argc, argv, "H:kh", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': g.url = optarg; break;
		case 'b': body_file = optarg; break;
		case 'H':
			if (nhdrs == FLOOR_HDRS_MAX) {
				fprintf(stderr, "floor: at most %d -H\n", FLOOR_HDRS_MAX);
				return 2;
			}
			hdrs[nhdrs++] = optarg;
			break;
		case 'n': transfers = strtoull(optarg, NULL, 10); break;
		case 'c': conc = strtol(optarg, NULL, 10); break;
		case 'w': warmup = strtoull(optarg, NULL, 10); break;
		case 'C': cafile = optarg; break;
		case 'k': insecure = 1; break;
		case 't': g.timeout_ms = (long)(atof(optarg) * 1000); break;
		case 'T': g.connect_ms = (long)(atof(optarg) * 1000); break;
		case 'B': recv_buf = strtol(optarg, NULL, 10); break;
		case 'h': floor_usage(stdout); return 0;
		default: floor_usage(stderr); return 2;
		}
	}
	if (g.url == NULL || body_file == NULL || transfers == 0 || conc < 1 || conc > FLOOR_CONC_MAX ||
	    g.timeout_ms <= 0 || g.connect_ms <= 0 || recv_buf < 1024 || recv_buf > 10485760 || optind != argc) {
		floor_usage(stderr);
		return 2;
	}
	g.body = floor_read_file(body_file, &g.body_len);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* the headers any upstream client needs, in the data plane's order */
	if (nhdrs == 0)
		hdrs[nhdrs++] = "Authorization: Bearer nvapi-TEST-0001-xxxxxxxxxxxxxxxx";
	for (i = 0; i < nhdrs; i++)
		g.headers = curl_slist_append(g.headers, hdrs[i]);
	g.headers = curl_slist_append(g.headers, "Content-Type: application/json");
	g.headers = curl_slist_append(g.headers, "Expect:");
	if (g.headers == NULL) {
		fprintf(stderr, "floor: curl_slist_append failed\n");
		return 1;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (g.multi = curl_multi_init()) == NULL) {
		fprintf(stderr, "floor: libcurl initialisation failed\n");
		return 1;
	}
	curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, floor_sock_cb);
	curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, floor_timer_cb);
	curl_multi_setopt(g.multi, CURLMOPT_MAXCONNECTS, conc > 512 ? conc : 512L);
	curl_multi_setopt(g.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	curl_multi_setopt(g.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	g.timer_due_us = -1;
	g.slot = floor_xcalloc(FLOOR_FD_MAX, sizeof(*g.slot));
	for (i = 0; i < FLOOR_FD_MAX; i++)
		g.slot[i] = -1;
	g.pfd = floor_xcalloc((size_t)conc * 2 + 16, sizeof(*g.pfd));
	g.nxf = (size_t)conc;
	g.xf = floor_xcalloc(g.nxf, sizeof(*g.xf));
	g.idle = floor_xcalloc(g.nxf, sizeof(*g.idle));
	for (i = 0; i < conc; i++) {
		if ((g.xf[i].easy = curl_easy_init()) == NULL) {
			fprintf(stderr, "floor: curl_easy_init failed\n");
			return 1;
		}
		floor_easy_setup(&g.xf[i], cafile, insecure, recv_buf);
		g.idle[g.nidle++] = (size_t)(conc - 1 - i);
	}

	if (warmup > 0)
		floor_phase(warmup);
	if (g.failures > 0) {
		fprintf(stderr, "floor: %" PRIu64 " of %" PRIu64 " warm-up transfers failed; first: %s\n",
		    g.failures, warmup, g.first_err);
		return 1;
	}
	g.connects = 0;
	g.bytes = 0;
	CALLGRIND_ZERO_STATS;
	getrusage(RUSAGE_SELF, &r0);
	t0 = floor_now_us();
	floor_phase(transfers);
	t1 = floor_now_us();
	getrusage(RUSAGE_SELF, &r1);
	CALLGRIND_DUMP_STATS_AT("measured transfers");

	wall = (double)(t1 - t0) / 1e6;
	ut = floor_tv_s(r1.ru_utime) - floor_tv_s(r0.ru_utime);
	st = floor_tv_s(r1.ru_stime) - floor_tv_s(r0.ru_stime);
	printf("{\"transfers\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"concurrency\":%ld,\"warmup\":%" PRIu64
	    ",\"wall_s\":%.3f,\"rps\":%.1f,\"utime_s\":%.3f,\"stime_s\":%.3f,\"cpu_us_per_transfer\":%.2f"
	    ",\"new_connections\":%ld,\"body_bytes\":%" PRIu64 ",\"maxrss_kb\":%ld%s%s%s}\n",
	    g.done, g.failures, conc, warmup, wall, wall > 0 ? (double)g.done / wall : 0.0, ut, st,
	    g.done ? (ut + st) * 1e6 / (double)g.done : 0.0, g.connects, g.bytes, r1.ru_maxrss,
	    g.failures ? ",\"first_error\":\"" : "", g.failures ? g.first_err : "", g.failures ? "\"" : "");

	for (i = 0; i < conc; i++)
		curl_easy_cleanup(g.xf[i].easy);
	curl_multi_cleanup(g.multi);
	curl_slist_free_all(g.headers);
	curl_global_cleanup();
	free(g.xf);
	free(g.idle);
	free(g.pfd);
	free(g.slot);
	free((void *)g.body);
	return g.failures ? 1 : 0;
}
