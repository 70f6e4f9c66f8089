# Operations (issue 8): sidecarctl backup/restore/migrate (ctl/backup.c), the
# schema migration, cron/logrotate/systemd/sysusers/tmpfiles files, the backup
# and directory-setup scripts, the operations guide and alert rules, and their
# tests. sidecarctl itself (ctl/local.mk) adds $(SC_OPS_SOURCES) to its sources.

SC_OPS_SOURCES = ctl/backup.c ctl/backup.h

# The migration is embedded by scripts/embed-sql; listing it here makes
# common/sql_embed.c depend on it.
SC_SQL_MIGRATIONS += sql/migrations/002_backup_history_and_indexes.sql
SC_SQL_MIGRATIONS += sql/migrations/003_request_log.sql
SC_SQL_MIGRATIONS += sql/migrations/004_request_log_checks.sql

# Test driver: runs backup/restore/migrate as sidecarctl does, plus `init`
# and `hold-lock` (the data plane's lock convention) for the black-box tests.
check_PROGRAMS += ctl/sc-ops
ctl_sc_ops_SOURCES = ctl/ops-driver.c $(SC_OPS_SOURCES)
ctl_sc_ops_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS)
ctl_sc_ops_LDADD = $(SC_COMMON_LIBS)

check_PROGRAMS += tests/unit/test_backup
tests_unit_test_backup_SOURCES = tests/unit/test_backup.c $(SC_OPS_SOURCES)
tests_unit_test_backup_CFLAGS = $(SC_UNIT_CFLAGS) -I$(top_srcdir)/ctl
tests_unit_test_backup_LDADD = $(SC_UNIT_LIBS)
TESTS += tests/unit/test_backup

EXTRA_DIST += tests/fixtures/schema-v1.sql

SC_OPS_BLACKBOX = \
	tests/blackbox/ops_backup.test.mjs \
	tests/blackbox/ops_restore_migrate.test.mjs \
	tests/blackbox/ops_packaging.test.mjs \
	tests/blackbox/ops_systemd.test.mjs
TESTS += $(SC_OPS_BLACKBOX)
EXTRA_DIST += $(SC_OPS_BLACKBOX) tests/blackbox/ops_lib.mjs

# --- installed files -------------------------------------------------------
# Scripts: cron's backup wrapper and the ownership setup, in sbin.
opsscriptsdir = $(sbindir)
dist_opsscripts_SCRIPTS = scripts/sidecar-backup scripts/sidecar-setup-dirs

# /etc/cron.d needs no path substitution (the file sets PATH). Configure with
# --sysconfdir=/etc for cron and logrotate to find these.
opscrondir = $(sysconfdir)/cron.d
dist_opscron_DATA = packaging/cron.d/sidecar-backup

# Templates with install paths filled in.
SC_OPS_TEMPLATES = \
	packaging/systemd/sidecar-dataplane.service \
	packaging/systemd/sidecar-lighttpd.service \
	packaging/logrotate.d/sidecar \
	packaging/tmpfiles.d/sidecar.conf
EXTRA_DIST += $(SC_OPS_TEMPLATES:=.in)
CLEANFILES += $(SC_OPS_TEMPLATES)

# systemd looks in $(prefix)/lib/systemd/system for /usr and /usr/local.
opssystemddir = $(prefix)/lib/systemd/system
nodist_opssystemd_DATA = packaging/systemd/sidecar-dataplane.service packaging/systemd/sidecar-lighttpd.service
opslogrotatedir = $(sysconfdir)/logrotate.d
nodist_opslogrotate_DATA = packaging/logrotate.d/sidecar
opstmpfilesdir = $(prefix)/lib/tmpfiles.d
nodist_opstmpfiles_DATA = packaging/tmpfiles.d/sidecar.conf
opssysusersdir = $(prefix)/lib/sysusers.d
dist_opssysusers_DATA = packaging/sysusers.d/sidecar.conf

# The admin panel's lighttpd configuration, rendered from the admin
# program's template for the installed paths and sidecar-lighttpd.service
# (key from the unit's credential, sockets in its RuntimeDirectory).
opsconfdir = $(sysconfdir)/sidecar
nodist_opsconf_DATA = packaging/lighttpd.conf
CLEANFILES += packaging/lighttpd.conf
packaging/lighttpd.conf: $(srcdir)/lighttpd/sidecar.conf.in Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && rm -f $@ $@.tmp && sed \
	-e 's|@BIND@|127.0.0.1|g' -e 's|@PORT@|9192|g' \
	-e 's|@HTDOCS@|$(pkgdatadir)/htdocs|g' \
	-e 's|@RUNDIR@|/run/sidecar|g' \
	-e 's|@LOGDIR@|$(localstatedir)/log/sidecar|g' \
	-e 's|@ADMIN_BIN@|$(bindir)/sidecar-admin|g' \
	-e 's|@EVENTS_BIN@|$(bindir)/sidecar-events|g' \
	-e 's|@DB@|$(localstatedir)/lib/sidecar/sidecar_v2.db|g' \
	-e 's|@KEY_FILE@|/run/credentials/sidecar-lighttpd.service/encryption.key|g' \
	$(srcdir)/lighttpd/sidecar.conf.in > $@.tmp && mv $@.tmp $@

opsdocdir = $(docdir)
dist_opsdoc_DATA = docs/operations.md docs/alerts.yml

# One substitution for every template, with the paths as configured (at make
# time, so `make prefix=...` works too).
sc_ops_edit = sed \
	-e 's|@bindir[@]|$(bindir)|g' \
	-e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@libexecdir[@]|$(libexecdir)|g' \
	-e 's|@pkgdatadir[@]|$(pkgdatadir)|g' \
	-e 's|@docdir[@]|$(docdir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@LIGHTTPD[@]|$(LIGHTTPD)|g'

$(SC_OPS_TEMPLATES): Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && rm -f $@ $@.tmp && \
	$(sc_ops_edit) $(srcdir)/$@.in > $@.tmp && mv $@.tmp $@
packaging/systemd/sidecar-dataplane.service: $(srcdir)/packaging/systemd/sidecar-dataplane.service.in
packaging/systemd/sidecar-lighttpd.service: $(srcdir)/packaging/systemd/sidecar-lighttpd.service.in
packaging/logrotate.d/sidecar: $(srcdir)/packaging/logrotate.d/sidecar.in
packaging/tmpfiles.d/sidecar.conf: $(srcdir)/packaging/tmpfiles.d/sidecar.conf.in
