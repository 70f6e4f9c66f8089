# admin-fcgi/: the admin API (sidecar-admin, a FastCGI program behind lighttpd).
# The handlers live in libadmin.a so the unit tests link them without libfcgi;
# admin_main.c is the only file that knows FastCGI. docs/admin-api.md is the
# API reference; lighttpd/sidecar.conf.in the server config template.
noinst_LIBRARIES += admin-fcgi/libadmin.a
admin_fcgi_libadmin_a_SOURCES = \
	admin-fcgi/api.c admin-fcgi/api.h \
	admin-fcgi/auth.c admin-fcgi/auth.h \
	admin-fcgi/routes_session.c \
	admin-fcgi/routes_providers.c \
	admin-fcgi/routes_config.c \
	admin-fcgi/routes_stats.c \
	admin-fcgi/routes_requests.c \
	admin-fcgi/reqrow.c admin-fcgi/reqrow.h \
	admin-fcgi/validate_key.c admin-fcgi/validate_key.h
admin_fcgi_libadmin_a_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CURL_CFLAGS)

# Built at the top of the build tree, next to sidecar-events and sidecarctl.
bin_PROGRAMS += sidecar-admin
sidecar_admin_SOURCES = admin-fcgi/admin_main.c
sidecar_admin_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CURL_CFLAGS) $(FCGI_CFLAGS)
sidecar_admin_LDADD = admin-fcgi/libadmin.a $(SC_COMMON_LIBS) $(CURL_LIBS) $(FCGI_LIBS)


# Unit tests: the handlers against a temporary database, no libfcgi.
check_PROGRAMS += tests/unit/test_admin_api
tests_unit_test_admin_api_SOURCES = tests/unit/test_admin_api.c
tests_unit_test_admin_api_CFLAGS = $(SC_UNIT_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_admin_api_LDADD = admin-fcgi/libadmin.a $(SC_UNIT_LIBS) $(CURL_LIBS)
TESTS += tests/unit/test_admin_api

# Black-box tests through a real lighttpd (tests/blackbox/lib/lighttpd.mjs).
SC_ADMIN_BLACKBOX = \
	tests/blackbox/admin_auth.test.mjs \
	tests/blackbox/admin_providers.test.mjs \
	tests/blackbox/admin_misc.test.mjs
TESTS += $(SC_ADMIN_BLACKBOX)
EXTRA_DIST += $(SC_ADMIN_BLACKBOX) tests/blackbox/lib/lighttpd.mjs docs/admin-api.md
dist_pkgdata_DATA += lighttpd/sidecar.conf.in
