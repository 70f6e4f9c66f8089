# dataplane/parse.mk: the data plane's pure input-processing modules (HTTP/1.1
# request parser and chunked decoder, SSE scanner, request-body shaping,
# OpenAI error bodies, the client's model in responses) as a convenience
# library, their cmocka unit tests, and (./configure CC=clang
# --enable-fuzzing) their libFuzzer harnesses.
noinst_LIBRARIES += dataplane/libparse.a
dataplane_libparse_a_SOURCES = \
	dataplane/http.c dataplane/http.h \
	dataplane/sse.c dataplane/sse.h \
	dataplane/shape.c dataplane/shape.h \
	dataplane/jscan.c dataplane/jscan.h \
	dataplane/oaierr.c dataplane/oaierr.h \
	dataplane/respmodel.c dataplane/respmodel.h
dataplane_libparse_a_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)

# Unit tests, one program per module.
SC_PARSE_UNIT = tests/unit/test_http tests/unit/test_sse tests/unit/test_shape tests/unit/test_oaierr \
	tests/unit/test_respmodel
check_PROGRAMS += $(SC_PARSE_UNIT)
TESTS += $(SC_PARSE_UNIT)
SC_PARSE_INCLUDES = $(AM_CPPFLAGS) -I$(top_srcdir)/dataplane
SC_PARSE_LIBS = dataplane/libparse.a $(SC_UNIT_LIBS)
tests_unit_test_http_SOURCES = tests/unit/test_http.c
tests_unit_test_http_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_unit_test_http_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_http_LDADD = $(SC_PARSE_LIBS)
tests_unit_test_sse_SOURCES = tests/unit/test_sse.c
tests_unit_test_sse_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_unit_test_sse_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_sse_LDADD = $(SC_PARSE_LIBS)
tests_unit_test_shape_SOURCES = tests/unit/test_shape.c
tests_unit_test_shape_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_unit_test_shape_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_shape_LDADD = $(SC_PARSE_LIBS)
tests_unit_test_oaierr_SOURCES = tests/unit/test_oaierr.c
tests_unit_test_oaierr_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_unit_test_oaierr_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_oaierr_LDADD = $(SC_PARSE_LIBS)
tests_unit_test_respmodel_SOURCES = tests/unit/test_respmodel.c
tests_unit_test_respmodel_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_unit_test_respmodel_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_respmodel_LDADD = $(SC_PARSE_LIBS)

# libFuzzer harnesses; tests/fuzz/run.sh runs them over tests/fuzz/corpus/.
if FUZZING
SC_PARSE_FUZZ = tests/fuzz/fuzz_http tests/fuzz/fuzz_chunked tests/fuzz/fuzz_sse tests/fuzz/fuzz_shape
noinst_PROGRAMS += $(SC_PARSE_FUZZ)
SC_PARSE_FUZZ_LINKFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
SC_PARSE_FUZZ_LIBS = dataplane/libparse.a $(SC_COMMON_LIBS)
tests_fuzz_fuzz_http_SOURCES = tests/fuzz/fuzz_http.c
tests_fuzz_fuzz_http_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_fuzz_fuzz_http_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
tests_fuzz_fuzz_http_LDFLAGS = $(SC_PARSE_FUZZ_LINKFLAGS)
tests_fuzz_fuzz_http_LDADD = $(SC_PARSE_FUZZ_LIBS)
tests_fuzz_fuzz_chunked_SOURCES = tests/fuzz/fuzz_chunked.c
tests_fuzz_fuzz_chunked_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_fuzz_fuzz_chunked_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
tests_fuzz_fuzz_chunked_LDFLAGS = $(SC_PARSE_FUZZ_LINKFLAGS)
tests_fuzz_fuzz_chunked_LDADD = $(SC_PARSE_FUZZ_LIBS)
tests_fuzz_fuzz_sse_SOURCES = tests/fuzz/fuzz_sse.c
tests_fuzz_fuzz_sse_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_fuzz_fuzz_sse_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
tests_fuzz_fuzz_sse_LDFLAGS = $(SC_PARSE_FUZZ_LINKFLAGS)
tests_fuzz_fuzz_sse_LDADD = $(SC_PARSE_FUZZ_LIBS)
tests_fuzz_fuzz_shape_SOURCES = tests/fuzz/fuzz_shape.c
tests_fuzz_fuzz_shape_CPPFLAGS = $(SC_PARSE_INCLUDES)
tests_fuzz_fuzz_shape_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
tests_fuzz_fuzz_shape_LDFLAGS = $(SC_PARSE_FUZZ_LINKFLAGS)
tests_fuzz_fuzz_shape_LDADD = $(SC_PARSE_FUZZ_LIBS)
endif

EXTRA_DIST += tests/fuzz/corpus tests/fuzz/run.sh \
	tests/fuzz/fuzz_http.c tests/fuzz/fuzz_chunked.c tests/fuzz/fuzz_sse.c tests/fuzz/fuzz_shape.c
