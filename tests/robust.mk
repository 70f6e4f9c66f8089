# tests/robust.mk: the robustness and security suite (issue 10): black-box
# hostile-client, upstream-fault, crash-recovery, database-fault, secrets and
# admin-access tests, and (./configure CC=clang --enable-fuzzing) libFuzzer
# harnesses for YAML import and the admin API handlers. scripts/test runs the
# whole suite again against an --enable-asan build and runs every fuzzer for a
# bounded time; tests/README.md says how to run each part alone.
SC_ROBUST_BLACKBOX = \
	tests/blackbox/robust_hostile.test.mjs \
	tests/blackbox/robust_admin.test.mjs \
	tests/blackbox/robust_upstream.test.mjs \
	tests/blackbox/robust_crash.test.mjs \
	tests/blackbox/robust_crash_stats.test.mjs \
	tests/blackbox/robust_dbfault.test.mjs \
	tests/blackbox/robust_secrets.test.mjs \
	tests/blackbox/robust_regress.test.mjs
TESTS += $(SC_ROBUST_BLACKBOX)
# The corpora ship with tests/fuzz/corpus (dataplane/parse.mk).
EXTRA_DIST += $(SC_ROBUST_BLACKBOX) tests/fuzz/fuzz_yaml.c tests/fuzz/fuzz_admin_json.c tests/fuzz/fuzz_redisurl.c \
	tests/README.md docs/security.md

if FUZZING
SC_ROBUST_FUZZ = tests/fuzz/fuzz_yaml tests/fuzz/fuzz_admin_json tests/fuzz/fuzz_redisurl
noinst_PROGRAMS += $(SC_ROBUST_FUZZ)
# redis_url as operators type it (issue 17, docs/cluster.md).
tests_fuzz_fuzz_redisurl_SOURCES = tests/fuzz/fuzz_redisurl.c
tests_fuzz_fuzz_redisurl_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_redisurl_LDADD = $(SC_COMMON_LIBS)
tests_fuzz_fuzz_yaml_SOURCES = tests/fuzz/fuzz_yaml.c
tests_fuzz_fuzz_yaml_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
tests_fuzz_fuzz_yaml_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_yaml_LDADD = $(SC_COMMON_LIBS)
tests_fuzz_fuzz_admin_json_SOURCES = tests/fuzz/fuzz_admin_json.c
tests_fuzz_fuzz_admin_json_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CURL_CFLAGS)
tests_fuzz_fuzz_admin_json_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_admin_json_LDADD = admin-fcgi/libadmin.a $(SC_COMMON_LIBS) $(CURL_LIBS)
endif

# `make fuzz-harnesses` builds only the libFuzzer harnesses and what they link
# (scripts/test's fuzz pass); without --enable-fuzzing it builds nothing.
fuzz-harnesses: $(noinst_PROGRAMS)
.PHONY: fuzz-harnesses

# Issue 14 (hardening after an independent attack): the admin/common items.
SC_HARDEN_BLACKBOX = \
	tests/blackbox/harden_admin.test.mjs \
	tests/blackbox/harden_text.test.mjs \
	tests/blackbox/harden_redact.test.mjs \
	tests/blackbox/harden_rekey.test.mjs
TESTS += $(SC_HARDEN_BLACKBOX)
EXTRA_DIST += $(SC_HARDEN_BLACKBOX)
