# Operations (issue 8): sidecarctl backup/restore/migrate (ctl/backup.c), the
# schema migration, cron/logrotate/systemd/sysusers/tmpfiles files, the backup
# and directory-setup scripts, the operations guide and alert rules, and their
# tests. sidecarctl itself (ctl/local.mk) adds $(SC_OPS_SOURCES) to its sources.

SC_OPS_SOURCES = ctl/backup.c ctl/backup.h

# The migration is embedded by scripts/embed-sql; listing it here makes
# common/sql_embed.c depend on it.
SC_SQL_MIGRATIONS += sql/migrations/002_backup_history_and_indexes.sql

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

SC_OPS_BLACKBOX = tests/blackbox/ops_backup.test.mjs tests/blackbox/ops_restore_migrate.test.mjs
TESTS += $(SC_OPS_BLACKBOX)
EXTRA_DIST += $(SC_OPS_BLACKBOX) tests/blackbox/ops_lib.mjs
