# tests/: the mock upstream, the black-box harness, fuzz corpora.

# The fake NVIDIA NIM every black-box test and benchmark talks to (libc + json-c only).
check_PROGRAMS += tests/mock-upstream
tests_mock_upstream_SOURCES = tests/mock-upstream.c
tests_mock_upstream_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_mock_upstream_LDADD = $(JSONC_LIBS)

# Black-box tests of the mock itself; lib/mock.mjs is what other tests import.
TESTS += tests/blackbox/mock.test.mjs
EXTRA_DIST += tests/blackbox/lib/mock.mjs tests/blackbox/lib/deps.mjs tests/blackbox/mock.test.mjs
TESTS += tests/blackbox/sched_scenarios.test.mjs
EXTRA_DIST += tests/blackbox/sched_scenarios.test.mjs
TESTS += tests/blackbox/sched_upstream_limits.test.mjs
EXTRA_DIST += tests/blackbox/sched_upstream_limits.test.mjs
