/*
 * sidecar-events: the FastCGI program lighttpd runs for GET /api/v2/events.
 *
 * Each open dashboard holds one FastCGI request for as long as it stays, so
 * the program runs a pool of threads (--threads, default 64), each looping on
 * FCGX_Accept_r with its own read-only SQLite connection. A stream polls the
 * database every --poll-ms (default 500 ms), writes whatever events.c built,
 * and flushes; a failed flush means the browser is gone and frees the thread.
 * This is a separate program and socket from sidecar-admin, so streams never
 * hold up the admin API.
 */

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "auth.h"
#include "db.h"
#include "events.h"
#include "log.h"

#define EVENTS_THREADS_DEFAULT	64
#define EVENTS_THREADS_MAX	1024
#define EVENTS_POLL_MS_DEFAULT	500
#define EVENTS_REAUTH_MS	15000	/* a logged-out session's stream ends within this */

/* Process-wide settings, fixed after main parses the command line. */
static struct {
	const char *db_path;
	int         listen_fd;		/* 0 when spawned by lighttpd, else from --socket */
	int         poll_ms;
	int64_t     max_stream_ms;	/* 0 = unlimited; the browser reconnects and resumes */
	int         demo;		/* $SIDECAR_DEMO=1: started by scripts/run --demo */
} events_opt;

static pthread_mutex_t events_accept_lock = PTHREAD_MUTEX_INITIALIZER;

/* One worker thread: its request and its database connection. */
struct events_worker {
	pthread_t        thread;
	int              index;
	FCGX_Request     rq;
	sqlite3         *db;		/* owned, read-only; NULL until the first request opens it */
	struct events_db q;		/* statements on db */
};

static void
events_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Write a complete small response (errors before the stream starts). */
static void
events_reply(FCGX_Request *rq, const char *status, const char *extra, const char *json)
{
	FCGX_FPrintF(rq->out,
	    "Status: %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n%s\r\n%s\n",
	    status, extra != NULL ? extra : "", json);
}

/* Open the thread's connection on first use (the database may appear after
 * lighttpd started us). 0 or -1. */
static int
events_worker_db(struct events_worker *w)
{
	struct sc_err e;

	if (w->db != NULL)
		return 0;
	sc_err_clear(&e);
	w->db = db_open(events_opt.db_path, DB_OPEN_READONLY, &e);
	if (w->db == NULL) {
		log_error("thread %d: %s", w->index, e.msg);
		return -1;
	}
	if (events_db_init(&w->q, w->db, &e) == -1) {
		log_error("thread %d: %s", w->index, e.msg);
		db_close(w->db);
		w->db = NULL;
		return -1;
	}
	return 0;
}

/* Drop the connection after a database error, so the next request reopens it. */
static void
events_worker_db_close(struct events_worker *w)
{
	events_db_free(&w->q);
	db_close(w->db);
	w->db = NULL;
}

/* Same check as the admin API (admin-fcgi/auth.c): an admin bearer token or
 * the session cookie. A stream is a read, so no CSRF value is needed.
 * 1 allowed, 0 not, -1 database error. */
static int
events_authorized(struct events_worker *w, FCGX_ParamArray env)
{
	struct auth_info info;

	switch (auth_check(w->db, FCGX_GetParam("HTTP_AUTHORIZATION", env),
	    FCGX_GetParam("HTTP_COOKIE", env), NULL, false, sc_wall_ms() / 1000, &info)) {
	case AUTH_OK:
		return 1;
	case AUTH_DBERR:
		return -1;
	default:
		return 0;
	}
}

/* Write out and flush; -1 when the client is gone. */
static int
events_send(FCGX_Request *rq, struct sc_buf *out)
{
	if (out->len > 0 && FCGX_PutStr(out->data, (int)out->len, rq->out) != (int)out->len)
		return -1;
	sc_buf_reset(out);
	if (FCGX_FFlush(rq->out) == -1 || FCGX_GetError(rq->out) != 0)
		return -1;
	return 0;
}

/* Serve one request until the client leaves or the program stops. */
static void
events_serve(struct events_worker *w)
{
	FCGX_Request *rq = &w->rq;
	const char *method = FCGX_GetParam("REQUEST_METHOD", rq->envp);
	struct events_stream *s = NULL;
	struct sc_buf out;
	int64_t start, last_auth, now;
	int auth;

	sc_buf_init(&out, EVENTS_BUF_CAP);
	if (method == NULL || strcmp(method, "GET") != 0) {
		events_reply(rq, "405 Method Not Allowed", "Allow: GET\r\n",
		    "{\"error\":{\"message\":\"use GET for the event stream\",\"field\":null}}");
		return;
	}
	if (events_worker_db(w) == -1) {
		events_reply(rq, "503 Service Unavailable", "Retry-After: 5\r\n",
		    "{\"error\":{\"message\":\"database unavailable\",\"field\":null}}");
		return;
	}
	auth = events_authorized(w, rq->envp);
	if (auth < 0) {
		events_worker_db_close(w);
		events_reply(rq, "503 Service Unavailable", "Retry-After: 5\r\n",
		    "{\"error\":{\"message\":\"database unavailable\",\"field\":null}}");
		return;
	}
	if (auth == 0) {
		events_reply(rq, "401 Unauthorized", "WWW-Authenticate: Bearer realm=\"sidecar\"\r\n",
		    "{\"error\":{\"message\":\"log in first (session cookie or admin bearer token)\",\"field\":null}}");
		return;
	}

	start = last_auth = sc_now_ms();
	s = sc_xmalloc(sizeof(*s));
	events_stream_init(s, FCGX_GetParam("HTTP_LAST_EVENT_ID", rq->envp), start);
	FCGX_FPrintF(rq->out,
	    "Status: 200 OK\r\nContent-Type: text/event-stream\r\n"
	    "Cache-Control: no-cache, no-store\r\nX-Accel-Buffering: no\r\n\r\n");
	if (events_preamble(s, &out, events_opt.demo) == -1 || events_send(rq, &out) == -1)
		goto done;
	log_debug("thread %d: stream opened", w->index);
	for (;;) {
		now = sc_now_ms();
		if (events_tick(s, &w->q, &out, now, sc_wall_ms()) < 0) {
			log_warn("thread %d: database read failed: %s", w->index, sqlite3_errmsg(w->db));
			/* Reopen on the next request (the file may have been restored). */
			events_worker_db_close(w);
			break;
		}
		if (out.len > 0) {
			if (events_send(rq, &out) == -1)
				break;
			events_written(s, now);
		}
		if (events_opt.max_stream_ms > 0 && now - start >= events_opt.max_stream_ms)
			break;
		if (now - last_auth >= EVENTS_REAUTH_MS) {
			last_auth = now;
			if (events_authorized(w, rq->envp) != 1)
				break;		/* logged out or revoked; the browser's retry gets 401 */
		}
		events_sleep_ms(events_opt.poll_ms);
	}
	log_debug("thread %d: stream closed", w->index);
done:
	free(s);
	sc_buf_free(&out);
}

static void *
events_worker_main(void *arg)
{
	struct events_worker *w = arg;
	int rc;

	if (FCGX_InitRequest(&w->rq, events_opt.listen_fd, 0) != 0) {
		log_error("thread %d: FCGX_InitRequest failed", w->index);
		return NULL;
	}
	for (;;) {
		pthread_mutex_lock(&events_accept_lock);
		rc = FCGX_Accept_r(&w->rq);
		pthread_mutex_unlock(&events_accept_lock);
		if (rc < 0)
			break;
		events_serve(w);
		FCGX_Finish_r(&w->rq);
	}
	if (w->db != NULL)
		events_worker_db_close(w);
	return NULL;
}

static void
events_usage(FILE *f)
{
	fprintf(f,
	    "usage: sidecar-events [--db PATH] [--threads N] [--poll-ms MS] [--socket PATH]\n"
	    "                      [--max-stream-seconds S] [--log-file PATH] [--log-level LEVEL]\n"
	    "FastCGI program serving GET /api/v2/events (Server-Sent Events) to the dashboard.\n"
	    "Normally spawned by lighttpd; --socket listens on a Unix socket instead.\n"
	    "Environment: SIDECAR_DB, SIDECAR_EVENTS_THREADS, SIDECAR_DEMO (1: tell pages this is a demo).\n");
}

/* Integer option in [lo, hi], or exit 2. */
static long
events_int_arg(const char *name, const char *v, long lo, long hi)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v || n < lo || n > hi) {
		fprintf(stderr, "sidecar-events: %s must be an integer in [%ld, %ld]\n", name, lo, hi);
		exit(2);
	}
	return n;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "poll-ms", required_argument, NULL, 'p' },
		{ "socket", required_argument, NULL, 's' },
		{ "max-stream-seconds", required_argument, NULL, 'm' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db_arg = NULL, *sock = NULL, *log_file = NULL, *env;
	enum log_level level = LOG_LVL_INFO;
	struct events_worker *w;
	struct sigaction sa;
	long nthreads = EVENTS_THREADS_DEFAULT;
	int c, i, started = 0;

	events_opt.poll_ms = EVENTS_POLL_MS_DEFAULT;
	events_opt.max_stream_ms = 3600 * 1000LL;
	if ((env = getenv("SIDECAR_EVENTS_THREADS")) != NULL && *env != '\0')
		nthreads = events_int_arg("SIDECAR_EVENTS_THREADS", env, 1, EVENTS_THREADS_MAX);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': db_arg = optarg; break;
		case 't': nthreads = events_int_arg("--threads", optarg, 1, EVENTS_THREADS_MAX); break;
		case 'p': events_opt.poll_ms = (int)events_int_arg("--poll-ms", optarg, 50, 1000); break;
		case 's': sock = optarg; break;
		case 'm':
			events_opt.max_stream_ms =
			    events_int_arg("--max-stream-seconds", optarg, 0, 86400) * 1000LL;
			break;
		case 'l': log_file = optarg; break;
		case 'L':
			if (log_level_parse(optarg, &level) == -1) {
				fprintf(stderr, "sidecar-events: unknown log level %s\n", optarg);
				return 2;
			}
			break;
		case 'h': events_usage(stdout); return 0;
		default: events_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		events_usage(stderr);
		return 2;
	}
	if (log_init("sidecar-events", level, log_file) == -1) {
		fprintf(stderr, "sidecar-events: cannot open log file %s\n", log_file);
		return 1;
	}
	events_opt.db_path = db_default_path(db_arg);
	env = getenv("SIDECAR_DEMO");
	events_opt.demo = env != NULL && strcmp(env, "1") == 0;

	if (FCGX_Init() != 0) {
		log_error("FCGX_Init failed");
		return 1;
	}
	/* After FCGX_Init, which installs its own handlers: a gone client is a
	 * failed write, not a signal; and SIGTERM (lighttpd stopping) ends the
	 * process at once. libfcgi's SIGTERM handler only sets a flag that a
	 * thread blocked in accept() never sees, so it would keep us running;
	 * a stream has nothing to flush. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGTERM, &sa, NULL);
	if (sock != NULL) {
		unlink(sock);
		events_opt.listen_fd = FCGX_OpenSocket(sock, 128);
		if (events_opt.listen_fd < 0) {
			log_error("cannot listen on %s", sock);
			return 1;
		}
	} else if (FCGX_IsCGI()) {
		fprintf(stderr, "sidecar-events: not started as a FastCGI program (use lighttpd or --socket)\n");
		return 2;
	}

	w = sc_xcalloc((size_t)nthreads, sizeof(*w));
	for (i = 0; i < nthreads; i++) {
		w[i].index = i;
		if (pthread_create(&w[i].thread, NULL, events_worker_main, &w[i]) != 0) {
			log_error("cannot start thread %d: %s", i, strerror(errno));
			break;
		}
		started++;
	}
	if (started == 0)
		return 1;
	log_info("serving events with %d threads, database %s", started, events_opt.db_path);
	for (i = 0; i < started; i++)
		pthread_join(w[i].thread, NULL);
	free(w);
	return 0;
}
