# dataplane/: the sidecar-dataplane program (event loop, HTTP/1.1 server,
# libcurl forwarding). The HTTP parser, SSE scanner, body shaping and error
# bodies come from dataplane/libparse.a (parse.mk); scheduling policy from
# dataplane/libsched.a (sched.mk).
bin_PROGRAMS += sidecar-dataplane
SC_DP_SOURCES = \
	dataplane/loop.c dataplane/loop.h \
	dataplane/conn.c dataplane/conn.h \
	dataplane/upstream.c dataplane/upstream.h \
	dataplane/router.c dataplane/router.h \
	dataplane/auth.c dataplane/auth.h \
	dataplane/health.c dataplane/health.h \
	dataplane/proxy.c dataplane/proxy.h \
	dataplane/dispatch.c dataplane/dispatch.h \
	dataplane/registry.c dataplane/registry.h \
	dataplane/models.c dataplane/models.h \
	dataplane/events.c dataplane/events.h \
	dataplane/metrics.c dataplane/metrics.h \
	dataplane/stats.c dataplane/stats.h \
	dataplane/reqlog.c dataplane/reqlog.h \
	dataplane/status.c dataplane/status.h \
	dataplane/persist.c dataplane/persist.h \
	dataplane/cluster.c dataplane/cluster.h dataplane/cluster_lua.h
SC_DP_LIBS = dataplane/libparse.a dataplane/libsched.a $(SC_COMMON_LIBS) $(CURL_LIBS) $(HIREDIS_LIBS) $(PTHREAD_LIBS)
sidecar_dataplane_SOURCES = dataplane/main.c $(SC_DP_SOURCES)
nodist_sidecar_dataplane_SOURCES = dataplane/cluster_lua.c
# The admission script, compiled in (scripts/embed-lua).
dataplane/cluster_lua.c: $(srcdir)/scripts/embed-lua $(srcdir)/dataplane/cluster.lua
	$(AM_V_GEN)$(MKDIR_P) dataplane && sh $(srcdir)/scripts/embed-lua $(srcdir)/dataplane/cluster.lua > $@.tmp && mv $@.tmp $@
BUILT_SOURCES += dataplane/cluster_lua.c
CLEANFILES += dataplane/cluster_lua.c
EXTRA_DIST += scripts/embed-lua dataplane/cluster.lua docs/cluster.md
# -iquote, not -I: dataplane/sched.h must not hide the system <sched.h> that <pthread.h> includes.
sidecar_dataplane_CPPFLAGS = $(AM_CPPFLAGS) -iquote $(top_srcdir)/dataplane
sidecar_dataplane_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CURL_CFLAGS) $(HIREDIS_CFLAGS)
sidecar_dataplane_LDADD = $(SC_DP_LIBS)

# Unit tests (cmocka) of the data plane's own modules.
check_PROGRAMS += tests/unit/test_loop
TESTS += tests/unit/test_loop
tests_unit_test_loop_SOURCES = tests/unit/test_loop.c dataplane/loop.c
tests_unit_test_loop_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/dataplane
tests_unit_test_loop_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_loop_LDADD = $(SC_UNIT_LIBS)

# Statistics aggregation and flush against a temporary database.
check_PROGRAMS += tests/unit/test_stats
TESTS += tests/unit/test_stats
tests_unit_test_stats_SOURCES = tests/unit/test_stats.c dataplane/stats.c dataplane/reqlog.c $(SC_TESTDB_SOURCES)
tests_unit_test_stats_CPPFLAGS = $(AM_CPPFLAGS) -iquote $(top_srcdir)/dataplane
tests_unit_test_stats_CFLAGS = $(SC_UNIT_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_stats_LDADD = dataplane/libsched.a $(SC_UNIT_LIBS) $(PTHREAD_LIBS)

# The request log: trails, batches, the ring's inserts and pruning.
check_PROGRAMS += tests/unit/test_reqlog
TESTS += tests/unit/test_reqlog
tests_unit_test_reqlog_SOURCES = tests/unit/test_reqlog.c dataplane/reqlog.c $(SC_TESTDB_SOURCES)
tests_unit_test_reqlog_CPPFLAGS = $(AM_CPPFLAGS) -iquote $(top_srcdir)/dataplane
tests_unit_test_reqlog_CFLAGS = $(SC_UNIT_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_reqlog_LDADD = dataplane/libsched.a $(SC_UNIT_LIBS)

# The Prometheus exposition, rendered with the data plane's modules linked
# (no database, no sockets).
check_PROGRAMS += tests/unit/test_metrics
TESTS += tests/unit/test_metrics
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c $(SC_DP_SOURCES)
nodist_tests_unit_test_metrics_SOURCES = dataplane/cluster_lua.c
tests_unit_test_metrics_CPPFLAGS = $(AM_CPPFLAGS) -iquote $(top_srcdir)/dataplane
tests_unit_test_metrics_CFLAGS = $(SC_UNIT_CFLAGS) $(CURL_CFLAGS) $(HIREDIS_CFLAGS)
tests_unit_test_metrics_LDADD = $(SC_DP_LIBS) $(CMOCKA_LIBS)

# Black-box tests (node:test) of the real program against tests/mock-upstream.
SC_DATAPLANE_BLACKBOX = \
	tests/blackbox/dataplane_forward.test.mjs \
	tests/blackbox/dataplane_stream.test.mjs \
	tests/blackbox/dataplane_sdk.test.mjs \
	tests/blackbox/dataplane_sched.test.mjs \
	tests/blackbox/dataplane_tls.test.mjs \
	tests/blackbox/dataplane_flood.test.mjs \
	tests/blackbox/dataplane_http.test.mjs \
	tests/blackbox/dataplane_upstream.test.mjs \
	tests/blackbox/stats_usage.test.mjs \
	tests/blackbox/stats_metrics.test.mjs \
	tests/blackbox/cluster.test.mjs \
	tests/blackbox/cluster_script.test.mjs \
	tests/blackbox/reqlog.test.mjs
TESTS += $(SC_DATAPLANE_BLACKBOX)
EXTRA_DIST += $(SC_DATAPLANE_BLACKBOX) tests/blackbox/lib/stack.mjs tests/blackbox/lib/redis.mjs tests/package.json tests/package-lock.json \
	docs/metrics.md docs/status-snapshot.md docs/performance.md dataplane/README.md
