# dataplane/sched.mk: the scheduling policy (SPEC §5) as pure modules in a
# convenience library the data plane links, and their cmocka unit tests.
noinst_LIBRARIES += dataplane/libsched.a
dataplane_libsched_a_SOURCES = \
	dataplane/ratelimit.c dataplane/ratelimit.h \
	dataplane/balancer.c dataplane/balancer.h \
	dataplane/queue.c dataplane/queue.h \
	dataplane/cooldown.c dataplane/cooldown.h \
	dataplane/sched.c dataplane/sched.h \
	dataplane/winstore.c dataplane/winstore.h
dataplane_libsched_a_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)

SC_SCHED_TESTS = \
	tests/unit/test_ratelimit \
	tests/unit/test_balancer \
	tests/unit/test_queue \
	tests/unit/test_cooldown \
	tests/unit/test_sched
check_PROGRAMS += $(SC_SCHED_TESTS)
TESTS += $(SC_SCHED_TESTS)
SC_SCHED_TEST_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/dataplane
SC_SCHED_TEST_LDADD = dataplane/libsched.a $(SC_UNIT_LIBS)

tests_unit_test_ratelimit_SOURCES = tests/unit/test_ratelimit.c
tests_unit_test_ratelimit_CPPFLAGS = $(SC_SCHED_TEST_CPPFLAGS)
tests_unit_test_ratelimit_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_ratelimit_LDADD = $(SC_SCHED_TEST_LDADD)

tests_unit_test_balancer_SOURCES = tests/unit/test_balancer.c
tests_unit_test_balancer_CPPFLAGS = $(SC_SCHED_TEST_CPPFLAGS)
tests_unit_test_balancer_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_balancer_LDADD = $(SC_SCHED_TEST_LDADD)

tests_unit_test_queue_SOURCES = tests/unit/test_queue.c
tests_unit_test_queue_CPPFLAGS = $(SC_SCHED_TEST_CPPFLAGS)
tests_unit_test_queue_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_queue_LDADD = $(SC_SCHED_TEST_LDADD)

tests_unit_test_cooldown_SOURCES = tests/unit/test_cooldown.c
tests_unit_test_cooldown_CPPFLAGS = $(SC_SCHED_TEST_CPPFLAGS)
tests_unit_test_cooldown_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_cooldown_LDADD = $(SC_SCHED_TEST_LDADD)

tests_unit_test_sched_SOURCES = tests/unit/test_sched.c
tests_unit_test_sched_CPPFLAGS = $(SC_SCHED_TEST_CPPFLAGS)
tests_unit_test_sched_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_sched_LDADD = $(SC_SCHED_TEST_LDADD)

EXTRA_DIST += docs/scheduling.md
