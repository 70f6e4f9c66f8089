# admin-fcgi/events.mk: sidecar-events, the FastCGI program behind
# GET /api/v2/events (Server-Sent Events for the dashboard), and its unit test.
# events.c holds the event logic without libfcgi; events_main.c is the glue.
bin_PROGRAMS += sidecar-events
sidecar_events_SOURCES = admin-fcgi/events_main.c admin-fcgi/events.c admin-fcgi/events.h
sidecar_events_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(FCGI_CFLAGS)
# Authentication is the admin API's own (auth.o from libadmin.a: sessions, bearer tokens).
sidecar_events_LDADD = admin-fcgi/libadmin.a $(SC_COMMON_LIBS) $(FCGI_LIBS) $(PTHREAD_LIBS)

check_PROGRAMS += tests/unit/test_events
TESTS += tests/unit/test_events
tests_unit_test_events_SOURCES = tests/unit/test_events.c admin-fcgi/events.c admin-fcgi/events.h \
	admin-fcgi/reqrow.c admin-fcgi/reqrow.h
tests_unit_test_events_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/admin-fcgi
tests_unit_test_events_CFLAGS = $(SC_UNIT_CFLAGS)
tests_unit_test_events_LDADD = $(SC_UNIT_LIBS)

# The dashboard: static files served by lighttpd from $(pkgdatadir)/htdocs.
htdocsdir = $(pkgdatadir)/htdocs
dist_htdocs_DATA = htdocs/index.html htdocs/app.js htdocs/style.css
# lighttpd's own error page for a POST without Content-Length (server.errorfile-prefix).
htdocserrorsdir = $(htdocsdir)/errors
dist_htdocserrors_DATA = htdocs/errors/status-411.html
htdocsvendordir = $(htdocsdir)/vendor
dist_htdocsvendor_DATA = htdocs/vendor/uPlot.iife.min.js htdocs/vendor/uPlot.min.css htdocs/vendor/LICENSE.uPlot htdocs/vendor/README

EXTRA_DIST += docs/dashboard.md scripts/demo.sh scripts/traffic-gen

# Black-box: the event stream through lighttpd, and the dashboard in headless Chromium.
TESTS += tests/blackbox/dashboard_events.test.mjs
EXTRA_DIST += tests/blackbox/dashboard_events.test.mjs tests/blackbox/lib/browser.mjs
TESTS += tests/blackbox/dashboard_live.test.mjs
EXTRA_DIST += tests/blackbox/dashboard_live.test.mjs
TESTS += tests/blackbox/dashboard_manage.test.mjs
TESTS += tests/blackbox/dashboard_requests.test.mjs
EXTRA_DIST += tests/blackbox/dashboard_requests.test.mjs
EXTRA_DIST += tests/blackbox/dashboard_manage.test.mjs
