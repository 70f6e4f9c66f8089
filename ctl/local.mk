# ctl/: sidecarctl, the operator's command-line tool (see `sidecarctl help`).
# Operations commands (backup, restore, migrate) come from ctl/ops.mk's
# SC_OPS_SOURCES.
bin_PROGRAMS += sidecarctl
sidecarctl_SOURCES = ctl/sidecarctl.c ctl/requests.c ctl/requests.h $(SC_OPS_SOURCES)
sidecarctl_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) -I$(top_srcdir)/ctl -DSC_VERSION='"$(PACKAGE_VERSION)"'
sidecarctl_LDADD = $(SC_COMMON_LIBS)

# Black-box test: drives the built sidecarctl.
TESTS += tests/blackbox/ctl.test.mjs
EXTRA_DIST += tests/blackbox/ctl.test.mjs
