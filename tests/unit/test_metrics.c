/*
 * Unit tests of dataplane/metrics.c: the exposition text without a database
 * or sockets — HELP/TYPE for every family, label values escaped, histogram
 * buckets cumulative with +Inf, counters moving with requests and hooks, no
 * key in any label — and, when promtool is installed, `promtool check
 * metrics` on the output.
 */
#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "events.h"
#include "metrics.h"
#include "util.h"

static char *
render(void)
{
	struct sc_buf b;
	char *s;

	sc_buf_init(&b, 4 * 1024 * 1024);
	metrics_render(&b);
	s = sc_xstrdup(b.data ? b.data : "");
	sc_buf_free(&b);
	return s;
}

/* The events the data plane emits, delivered to the metrics listener. */
static void
metrics_request_done(const struct request_result *r)
{
	struct event ev = { .kind = EVENT_REQUEST_DONE, .u.request = r };

	metrics_on_event(&ev);
}

static void
metrics_queue_rejected(enum dispatch_reject why)
{
	struct event ev = { .kind = EVENT_QUEUE_REJECTED, .u.rejected = why };

	metrics_on_event(&ev);
}

static void
metrics_upstream_outcome(const char *name, enum cooldown_failure fail, int status)
{
	struct event ev = { .kind = EVENT_UPSTREAM_OUTCOME };

	ev.u.outcome.provider_name = name;
	ev.u.outcome.fail = fail;
	ev.u.outcome.status = status;
	metrics_on_event(&ev);
}

static void
metrics_cooldown_started(const char *name)
{
	struct event ev = { .kind = EVENT_COOLDOWN_STARTED };

	ev.u.outcome.provider_name = name;
	metrics_on_event(&ev);
}

static struct request_result
result(const char *name, int status, int64_t latency_ms, int stream)
{
	struct request_result r;

	memset(&r, 0, sizeof(r));
	r.rid = "rid";
	r.provider_id = "11111111-1111-4111-8111-111111111111";
	r.provider_name = name;
	r.pool = SCHED_POOL_MAIN;
	r.model = "a/m";
	r.upstream_model = "m";
	r.status = status;
	r.error = status >= 400;
	r.stream = stream;
	r.upstream_sent = 1;
	r.latency_ms = latency_ms;
	r.ttfb_ms = stream ? latency_ms / 2 : -1;
	r.prompt_tokens = 3;
	r.completion_tokens = 4;
	r.total_tokens = 7;
	return r;
}

static void
test_escape(void **state)
{
	struct sc_buf b;

	(void)state;
	sc_buf_init(&b, 1024);
	metrics_escape_label(&b, "a\"b\\c\nd");
	assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
	sc_buf_reset(&b);
	metrics_escape_label(&b, "plain");
	assert_string_equal(b.data, "plain");
	/* Not UTF-8: each stray byte becomes U+FFFD; valid text stays as is. */
	sc_buf_reset(&b);
	metrics_escape_label(&b, "bad \xff\xfe \xc3 ok \xc3\xa9 \xf0\x9f\x99\x82 \xed\xa0\x80\"");
	assert_string_equal(b.data, "bad \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd ok \xc3\xa9 \xf0\x9f\x99\x82 "
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\\\"");
	sc_buf_free(&b);
}

static void
test_families_and_counters(void **state)
{
	struct request_result r;
	char *s;

	(void)state;
	s = render();
	assert_non_null(strstr(s, "# TYPE sidecar_requests_total counter\n"));
	assert_non_null(strstr(s, "# HELP sidecar_queue_rejected_total "));
	assert_non_null(strstr(s, "sidecar_queue_rejected_total{reason=\"overflow\"} 0\n"));
	assert_non_null(strstr(s, "# TYPE sidecar_queue_wait_seconds histogram\n"));
	assert_non_null(strstr(s, "process_resident_memory_bytes "));
	assert_non_null(strstr(s, "process_open_fds "));
	assert_non_null(strstr(s, "process_start_time_seconds "));
	assert_null(strstr(s, "sidecar_backup_success"));	/* no backup recorded: omitted */
	free(s);

	r = result("we\"ird\\name", 200, 30, 0);
	metrics_request_done(&r);
	r = result("we\"ird\\name", 200, 300, 1);
	metrics_request_done(&r);
	r = result("we\"ird\\name", 200, 200000, 1);
	r.total_tokens = r.prompt_tokens = r.completion_tokens = -1;
	metrics_request_done(&r);
	r = result("we\"ird\\name", 502, 10, 0);
	r.total_tokens = r.prompt_tokens = r.completion_tokens = -1;
	r.pool = SCHED_POOL_FALLBACK;
	metrics_request_done(&r);
	metrics_queue_rejected(DISPATCH_REJ_QUEUE_TIMEOUT);
	metrics_queue_rejected(DISPATCH_REJ_QUEUE_FULL);
	metrics_queue_rejected(DISPATCH_REJ_QUEUE_FULL);
	metrics_upstream_outcome("we\"ird\\name", COOLDOWN_FAIL_NONE, 429);
	metrics_upstream_outcome("we\"ird\\name", COOLDOWN_FAIL_CONNECT, 0);
	metrics_cooldown_started("we\"ird\\name");

	s = render();
	assert_non_null(strstr(s,
	    "sidecar_requests_total{provider=\"we\\\"ird\\\\name\",pool=\"main\",code=\"2xx\"} 3\n"));
	assert_non_null(strstr(s,
	    "sidecar_requests_total{provider=\"we\\\"ird\\\\name\",pool=\"fallback\",code=\"5xx\"} 1\n"));
	/* Cumulative buckets: 0.03 s, 0.3 s, 200 s, 0.01 s. */
	assert_non_null(strstr(s,
	    "sidecar_upstream_latency_seconds_bucket{provider=\"we\\\"ird\\\\name\",le=\"0.05\"} 2\n"));
	assert_non_null(strstr(s,
	    "sidecar_upstream_latency_seconds_bucket{provider=\"we\\\"ird\\\\name\",le=\"0.5\"} 3\n"));
	assert_non_null(strstr(s,
	    "sidecar_upstream_latency_seconds_bucket{provider=\"we\\\"ird\\\\name\",le=\"120\"} 3\n"));
	assert_non_null(strstr(s,
	    "sidecar_upstream_latency_seconds_bucket{provider=\"we\\\"ird\\\\name\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(s, "sidecar_upstream_latency_seconds_count{provider=\"we\\\"ird\\\\name\"} 4\n"));
	assert_non_null(strstr(s, "sidecar_ttft_seconds_count{provider=\"we\\\"ird\\\\name\"} 2\n"));
	assert_non_null(strstr(s, "sidecar_streams_without_usage_total{provider=\"we\\\"ird\\\\name\"} 1\n"));
	assert_non_null(strstr(s, "sidecar_prompt_tokens_total{provider=\"we\\\"ird\\\\name\"} 6\n"));
	assert_non_null(strstr(s, "sidecar_fallback_requests_total{provider=\"we\\\"ird\\\\name\"} 1\n"));
	assert_non_null(strstr(s, "sidecar_queue_rejected_total{reason=\"overflow\"} 2\n"));
	assert_non_null(strstr(s, "sidecar_queue_rejected_total{reason=\"timeout\"} 1\n"));
	assert_non_null(strstr(s,
	    "sidecar_upstream_responses_total{provider=\"we\\\"ird\\\\name\",result=\"429\"} 1\n"));
	assert_non_null(strstr(s,
	    "sidecar_upstream_responses_total{provider=\"we\\\"ird\\\\name\",result=\"connect_error\"} 1\n"));
	assert_non_null(strstr(s, "sidecar_cooldowns_total{provider=\"we\\\"ird\\\\name\"} 1\n"));
	free(s);
}

/* promtool's own verdict, when the Debian package is installed. */
static void
test_promtool(void **state)
{
	struct request_result r = result("p\none", 200, 12, 1);
	char path[] = "/tmp/test_metrics-XXXXXX", cmd[256];
	char *s;
	FILE *f;
	int fd, rc;

	(void)state;
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		skip();
		return;
	}
	metrics_request_done(&r);
	s = render();
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(s, f);
	fclose(f);
	free(s);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_families_and_counters),
		cmocka_unit_test(test_promtool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
