/*
 * bench/reqlog_write: what the statistics writer spends per request on the
 * request log (issue 20), measured without the rest of the data plane.
 *
 * It creates a fresh database (sidecarctl init's schema), opens the writer's
 * connection the way the statistics writer does, and runs --flushes flush
 * transactions of --rows synthetic records each (the shape of bench
 * scenario 1's requests: a generated request id, one provider, one attempt)
 * through reqlog_write with the ring at --keep rows, as the writer's flush
 * does once a second. The first --warmup flushes fill the ring (so the
 * measured ones insert and delete, as in steady state) and are not counted.
 * Prints one JSON line: rows measured, µs of CPU (this thread's user +
 * system) and of wall time per row.
 *
 * Under valgrind --tool=callgrind --collect-atstart=no only the measured
 * flushes are counted (callgrind.h client requests, no-ops otherwise), so
 * the total Ir divided by "rows" is the instructions per row:
 *
 *   valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=cg.out \
 *       build/bench/reqlog_write --rows 6400 --flushes 4
 *   callgrind_annotate cg.out | grep 'PROGRAM TOTALS'
 */
#define _GNU_SOURCE

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#ifndef CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include "db.h"
#include "reqlog.h"
#include "stats.h"

struct bench_opts {
	int         rows, flushes, warmup, keep;
	const char *dir;
	const char *sql;	/* run on the writer's connection first (to measure a setting) */
};

static double
bench_clock(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The records of one flush: n requests numbered from *serial on. */
static void
bench_fill(struct reqlog_batch *b, int n, unsigned long long *serial, int64_t now_ms)
{
	static const char rid_prefix[] = "3f9c2a7e-51d4-4b0e-9a61-";
	struct reqlog_record *r;
	int i;

	for (i = 0; i < n; i++) {
		r = reqlog_batch_add(b);
		if (r == NULL)
			return;
		memcpy(r->request_id, rid_prefix, sizeof(rid_prefix) - 1);
		sc_fmt_hex(++*serial, 12, r->request_id + sizeof(rid_prefix) - 1);
		r->finished_ms = now_ms + i / 8;
		strcpy(r->model, "mock/llama-3.1-8b-instruct");
		strcpy(r->provider_id, "6a1f5c3e-2b7d-4e8f-9c0a-1d2e3f4a5b6c");
		strcpy(r->provider_name, "bench-01");
		r->pool = SCHED_POOL_MAIN;
		r->status = 200;
		r->queue_ms = 0;
		r->ttfb_ms = 2;
		r->latency_ms = 3;
		r->prompt_tokens = 12;
		r->completion_tokens = 9;
		r->total_tokens = 21;
		r->cost = 0.0021;
		r->att = sc_xcalloc(1, sizeof(*r->att));
		r->natt = 1;
		strcpy(r->att[0].provider_id, r->provider_id);
		strcpy(r->att[0].provider_name, r->provider_name);
		r->att[0].pool = SCHED_POOL_MAIN;
		r->att[0].status = 200;
		r->att[0].outcome = REQLOG_OK;
		r->att[0].start_ms = 0;
		r->att[0].duration_ms = 2;
	}
}

struct bench_txn {
	struct reqlog_writer      *w;
	const struct reqlog_batch *b;
	int                        keep;
};

static int
bench_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct bench_txn *t = arg;

	(void)db;
	return reqlog_write(t->w, t->b, t->keep, e);
}

static void
bench_usage(FILE *f)
{
	fprintf(f, "usage: reqlog_write [--rows N] [--flushes F] [--warmup W] [--keep K] [--dir DIR] [--sql SQL]\n"
	    "  N records per flush (6400), F measured flushes (8), W warm-up flushes (enough to\n"
	    "  fill the ring), K = request_log_rows (20000), DIR for the database (a new\n"
	    "  directory under $TMPDIR, removed at the end), SQL run on the writer's connection\n"
	    "  before the first flush (e.g. \"PRAGMA cache_size=-16384\", to measure a setting)\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "rows", required_argument, NULL, 'r' }, { "flushes", required_argument, NULL, 'f' },
		{ "warmup", required_argument, NULL, 'w' }, { "keep", required_argument, NULL, 'k' },
		{ "dir", required_argument, NULL, 'd' }, { "sql", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_opts o = { 6400, 8, -1, 20000, NULL, NULL };
	char dir[512], path[600], side[640];
	struct reqlog_batch b;
	struct reqlog_writer *w;
	struct bench_txn t;
	struct sc_err e;
	unsigned long long serial = 0;
	double cpu = 0, wall = 0, c0, w0;
	int64_t now_ms = sc_wall_ms();
	sqlite3 *db;
	int opt, i;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r': o.rows = atoi(optarg); break;
		case 'f': o.flushes = atoi(optarg); break;
		case 'w': o.warmup = atoi(optarg); break;
		case 'k': o.keep = atoi(optarg); break;
		case 'd': o.dir = optarg; break;
		case 's': o.sql = optarg; break;
		case 'h': bench_usage(stdout); return 0;
		default: bench_usage(stderr); return 2;
		}
	}
	if (o.rows <= 0 || o.rows > REQLOG_BATCH_MAX || o.flushes <= 0 || o.keep < 0) {
		bench_usage(stderr);
		return 2;
	}
	if (o.warmup < 0)
		o.warmup = o.keep / o.rows + 1;
	if (o.dir != NULL) {
		sc_strlcpy(dir, o.dir, sizeof(dir));
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/reqlog-bench-XXXXXX", tmp != NULL ? tmp : "/tmp");
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			return 1;
		}
	}
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	sc_err_clear(&e);
	/* sidecarctl init's schema, then the writer's own connection. */
	if ((db = db_open(path, DB_OPEN_CREATE, &e)) == NULL || db_migrate(db, &e) == -1) {
		fprintf(stderr, "reqlog_write: %s\n", e.msg);
		return 1;
	}
	db_close(db);
	if ((db = stats_writer_db_open(path, &e)) == NULL || (w = reqlog_writer_new(db, &e)) == NULL) {
		fprintf(stderr, "reqlog_write: %s\n", e.msg);
		return 1;
	}
	if (o.sql != NULL && db_exec(db, o.sql, &e) == -1) {
		fprintf(stderr, "reqlog_write: --sql: %s\n", e.msg);
		return 1;
	}
	t.w = w;
	t.b = &b;
	t.keep = o.keep;
	for (i = 0; i < o.warmup + o.flushes; i++) {
		reqlog_batch_init(&b);
		bench_fill(&b, o.rows, &serial, now_ms + (int64_t)i * 1000);
		if (i >= o.warmup)
			CALLGRIND_TOGGLE_COLLECT;
		c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
		w0 = bench_clock(CLOCK_MONOTONIC);
		if (reqlog_write_txn(db, bench_txn, &t, &e) == -1) {
			fprintf(stderr, "reqlog_write: flush %d: %s\n", i, e.msg);
			return 1;
		}
		if (i >= o.warmup) {
			cpu += bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
			wall += bench_clock(CLOCK_MONOTONIC) - w0;
			CALLGRIND_TOGGLE_COLLECT;
		}
		reqlog_batch_free(&b);
	}
	reqlog_writer_free(w);
	db_close(db);
	printf("{\"rows\":%d,\"flushes\":%d,\"rows_per_flush\":%d,\"keep\":%d,"
	    "\"cpu_us_per_row\":%.3f,\"wall_us_per_row\":%.3f}\n",
	    o.rows * o.flushes, o.flushes, o.rows, o.keep,
	    cpu / (o.rows * o.flushes), wall / (o.rows * o.flushes));
	if (o.dir == NULL) {
		unlink(path);
		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
		rmdir(dir);
	}
	return 0;
}
