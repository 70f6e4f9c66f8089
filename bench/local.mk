# bench/: the one benchmark built by make (the rest is built by bench/run).
# bench/reqlog_write (issue 20): the statistics writer's request-log flush
# alone, µs and (under callgrind) instructions per row; bench/README.md.
noinst_PROGRAMS += bench/reqlog_write
bench_reqlog_write_SOURCES = bench/reqlog_write.c dataplane/stats.c dataplane/reqlog.c
bench_reqlog_write_CPPFLAGS = $(AM_CPPFLAGS) -iquote $(top_srcdir)/dataplane
bench_reqlog_write_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CURL_CFLAGS)
bench_reqlog_write_LDADD = dataplane/libsched.a $(SC_COMMON_LIBS) $(PTHREAD_LIBS)
