/*
 * sidecar-dataplane: the process OpenClaw talks to. Parses the command line,
 * opens the database (refusing a missing or wrong encryption key), binds the
 * data and metrics ports, and runs the event loop until SIGTERM, after which
 * it stops accepting, lets in-flight requests finish for up to
 * drain_timeout_seconds, flushes the statistics and exits 0. SIGHUP reloads
 * providers and settings and reopens the log file.
 *
 * While it runs it holds an fcntl write lock on "<db>.lock" (the convention
 * `sidecarctl restore` checks, ctl/backup.c): a restore never swaps the
 * database under a running data plane, and two data planes never share one.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "cluster.h"
#include "conn.h"
#include "db.h"
#include "dispatch.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "models.h"
#include "persist.h"
#include "proxy.h"
#include "registry.h"
#include "router.h"
#include "stats.h"
#include "status.h"
#include "tokens.h"
#include "upstream.h"

#define DP_DEFAULT_LISTEN  "127.0.0.1:9190"
#define DP_DEFAULT_METRICS "127.0.0.1:9191"
#define DP_DRAIN_CHECK_MS  50

static struct {
	struct loop      *loop;
	struct conn_limits lim;
	int               draining;
	struct loop_timer drain_check;
	struct loop_timer drain_deadline;
	int               lock_fd;	/* "<db>.lock", held for the process's life */
} dp = { .lock_fd = -1 };

static void
dp_usage(FILE *f)
{
	fprintf(f,
	    "usage: sidecar-dataplane [--db PATH] [--listen ADDR:PORT] [--metrics-listen ADDR:PORT]\n"
	    "                         [--log-level error|warn|info|debug] [--log-file FILE]\n"
	    "                         [--key-file FILE] [--port-file FILE] [--ca-file FILE]\n"
	    "Defaults: --listen %s, --metrics-listen %s. The encryption key comes from\n"
	    "SIDECAR_ENCRYPTION_KEY (base64), SIDECAR_ENCRYPTION_KEY_FILE or --key-file.\n"
	    "--ca-file: PEM CA bundle that HTTPS upstreams are verified against instead of the\n"
	    "system's (a provider behind a private CA).\n",
	    DP_DEFAULT_LISTEN, DP_DEFAULT_METRICS);
}

/* Loopback addresses need no client token; anything else does. */
static int
dp_is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0 ||
	    strncmp(addr, "localhost:", 10) == 0;
}

static void
dp_limits_from_config(void)
{
	const struct config *cfg = registry_config();

	dp.lim.max_body_bytes = cfg->max_body_bytes;
	dp.lim.header_timeout_ms = cfg->header_timeout_seconds * 1000;
	dp.lim.max_connections = cfg->max_connections;
	dp.lim.max_pending = cfg->max_pending_connections;
	dp.lim.body_timeout_ms = cfg->body_timeout_seconds * 1000;
	dp.lim.body_min_rate = cfg->body_min_rate_bytes;
	dp.lim.max_body_memory = cfg->max_body_memory_bytes;
}

static void
dp_reloaded(void *arg)
{
	dp_limits_from_config();
	dispatch_on_reloaded(NULL);
	cluster_on_reloaded();
}

static void
dp_drain_check(struct loop *l, void *arg)
{
	if (conn_count() == 0 && proxy_in_flight() == 0) {
		log_info("drained; exiting");
		loop_stop(l);
		return;
	}
	loop_timer_arm_in(l, &dp.drain_check, DP_DRAIN_CHECK_MS);
}

static void
dp_drain_deadline(struct loop *l, void *arg)
{
	log_warn("drain timeout: %zu connections, %zu requests still open; exiting", conn_count(),
	    proxy_in_flight());
	loop_stop(l);
}

static void
dp_on_signal(struct loop *l, int signo, void *arg)
{
	if (signo == SIGHUP) {
		log_info("SIGHUP: reloading");
		log_reopen();
		registry_reload();
		return;
	}
	if (dp.draining)
		return;
	dp.draining = 1;
	log_info("%s: draining (up to %d s)", signo == SIGTERM ? "SIGTERM" : "SIGINT",
	    registry_config()->drain_timeout_seconds);
	conn_drain_all();
	dispatch_drain();	/* queued requests get their 503 now, not a reset at the deadline */
	loop_timer_arm_in(l, &dp.drain_deadline, (int64_t)registry_config()->drain_timeout_seconds * 1000);
	dp_drain_check(l, NULL);
}

/* Take the data plane's lock on "<db>.lock" (whole file, F_WRLCK) and keep
 * the descriptor open: the lock lasts as long as the process. A missing
 * database is left to registry_open, which says how to create it. 0 or -1. */
static int
dp_lock(const char *db_path)
{
	char path[4096];
	struct flock fl;
	struct stat st;

	if (stat(db_path, &st) == -1)
		return 0;
	if (snprintf(path, sizeof(path), "%s.lock", db_path) >= (int)sizeof(path)) {
		fprintf(stderr, "sidecar-dataplane: database path too long\n");
		return -1;
	}
	dp.lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0660);
	if (dp.lock_fd == -1) {
		log_error("cannot start: %s: %s", path, strerror(errno));
		fprintf(stderr, "sidecar-dataplane: cannot start: %s: %s\n", path, strerror(errno));
		return -1;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(dp.lock_fd, F_SETLK, &fl) == -1) {
		if (errno == EAGAIN || errno == EACCES) {
			log_error("cannot start: another data plane or a restore is running (%s)", path);
			fprintf(stderr, "sidecar-dataplane: cannot start: another data plane or a restore is "
			    "running (%s)\n", path);
		} else {
			log_error("cannot start: locking %s: %s", path, strerror(errno));
			fprintf(stderr, "sidecar-dataplane: cannot start: locking %s: %s\n", path, strerror(errno));
		}
		close(dp.lock_fd);
		dp.lock_fd = -1;
		return -1;
	}
	return 0;
}

/* Write "data PORT\nmetrics PORT\n" atomically, for tests and scripts. */
static int
dp_write_port_file(const char *path, int port, int mport)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "data %d\nmetrics %d\n", port, mport);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "metrics-listen", required_argument, NULL, 'm' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-file", required_argument, NULL, 'F' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *listen_addr = DP_DEFAULT_LISTEN, *metrics_addr = DP_DEFAULT_METRICS;
	const char *log_file = NULL, *key_file = NULL, *port_file = NULL, *ca_file = NULL, *db_file;
	enum log_level level = LOG_LVL_INFO;
	struct registry_hooks rh;
	struct sc_err e;
	int ch, lfd = -1, mfd = -1, port = 0, mport = 0, rc = 1;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'l': listen_addr = optarg; break;
		case 'm': metrics_addr = optarg; break;
		case 'F': log_file = optarg; break;
		case 'k': key_file = optarg; break;
		case 'c': ca_file = optarg; break;
		case 'p': port_file = optarg; break;
		case 'L':
			if (log_level_parse(optarg, &level) == -1) {
				fprintf(stderr, "sidecar-dataplane: bad --log-level %s\n", optarg);
				return 2;
			}
			break;
		case 'h':
			dp_usage(stdout);
			return 0;
		default:
			dp_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		dp_usage(stderr);
		return 2;
	}
	if (log_init("sidecar-dataplane", level, log_file) == -1) {
		fprintf(stderr, "sidecar-dataplane: cannot open log file %s: %s\n", log_file, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* No fastbins (tcache still serves small blocks): every request makes a
	 * few allocations past 1 KiB, and each of those would otherwise first
	 * consolidate the fastbins (measured: a few % of CPU per request). */
	mallopt(M_MXFAST, 0);
	/* Hooks first: the initial load publishes every provider through them. */
	memset(&rh, 0, sizeof(rh));
	rh.publish = dispatch_on_publish;
	rh.retire = dispatch_on_retire;
	rh.cooldown_reset = dispatch_on_cooldown_reset;
	rh.reloaded = dp_reloaded;
	registry_set_hooks(&rh);
	if (dp_lock(db_default_path(db)) == -1)
		return 1;
	sc_err_clear(&e);
	if (registry_open(db, key_file, &e) == -1) {
		log_error("cannot start: %s", e.msg);
		fprintf(stderr, "sidecar-dataplane: cannot start: %s\n", e.msg);
		return 1;
	}
	if (!dp_is_loopback(listen_addr) && registry_client_tokens() <= 0) {
		log_error("refusing to listen on %s without client tokens (create one with "
		    "`sidecarctl token create --client`)", listen_addr);
		fprintf(stderr, "sidecar-dataplane: refusing to listen on non-loopback %s without client tokens\n",
		    listen_addr);
		goto out;
	}
	auth_set_public(!dp_is_loopback(listen_addr));
	dp_limits_from_config();

	dp.loop = loop_new();
	if (ca_file != NULL && access(ca_file, R_OK) == -1) {
		log_error("cannot read --ca-file %s: %s", ca_file, strerror(errno));
		fprintf(stderr, "sidecar-dataplane: cannot read --ca-file %s: %s\n", ca_file, strerror(errno));
		goto out;
	}
	if (upstream_init(dp.loop, (long)dp.lim.max_connections, ca_file) == -1) {
		log_error("cannot initialise libcurl");
		goto out;
	}
	dispatch_init(dp.loop);
	cluster_init(dp.loop);
	models_init(dp.loop);
	/* The observers of the request path, in the order they hear each event. */
	events_listen(metrics_on_event);
	events_listen(stats_on_event);
	events_listen(status_on_event);
	status_init(sc_wall_ms());
	db_file = sqlite3_db_filename(registry_db(), "main");
	if (db_file == NULL || *db_file == '\0' || strlen(db_file) >= 4096) {
		log_error("the database has no file name");
		goto out;
	}
	if (persist_init(dp.loop, db_file) == -1 || metrics_init(db_file) == -1) {
		log_error("cannot set up statistics and metrics");
		goto out;
	}
	lfd = conn_listen(listen_addr, dp.lim.max_connections, &port, &e);
	if (lfd == -1) {
		log_error("cannot start: %s", e.msg);
		goto out;
	}
	mfd = conn_listen(metrics_addr, 0, &mport, &e);
	if (mfd == -1) {
		log_error("cannot start: %s", e.msg);
		goto out;
	}
	if (conn_serve(dp.loop, lfd, router_admit, router_handle, &dp.lim) == -1 ||
	    conn_serve(dp.loop, mfd, NULL, metrics_handle, &dp.lim) == -1)
		goto out;
	lfd = mfd = -1;	/* owned by the server now */
	loop_timer_init(&dp.drain_check, dp_drain_check, NULL);
	loop_timer_init(&dp.drain_deadline, dp_drain_deadline, NULL);
	if (loop_signal_watch(dp.loop, SIGTERM, dp_on_signal, NULL) == -1 ||
	    loop_signal_watch(dp.loop, SIGINT, dp_on_signal, NULL) == -1 ||
	    loop_signal_watch(dp.loop, SIGHUP, dp_on_signal, NULL) == -1) {
		log_error("cannot install signal handlers: %s", strerror(errno));
		goto out;
	}
	registry_watch(dp.loop);
	if (port_file != NULL && dp_write_port_file(port_file, port, mport) == -1) {
		log_error("cannot write port file %s: %s", port_file, strerror(errno));
		goto out;
	}
	log_info("listening on %s (port %d), metrics on %s (port %d)", listen_addr, port, metrics_addr, mport);
	rc = loop_run(dp.loop) == 0 ? 0 : 1;
	loop_timer_cancel(dp.loop, &dp.drain_check);
	loop_timer_cancel(dp.loop, &dp.drain_deadline);
	persist_shutdown();	/* final flush on a graceful stop */
	metrics_shutdown();
out:
	if (lfd != -1)
		close(lfd);
	if (mfd != -1)
		close(mfd);
	models_shutdown();
	cluster_shutdown();
	dispatch_shutdown();
	if (dp.loop != NULL)
		upstream_shutdown();
	registry_close();
	loop_free(dp.loop);
	if (dp.lock_fd != -1)
		close(dp.lock_fd);
	return rc;
}
