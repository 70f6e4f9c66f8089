# common/: the static library every program links (db, crypto, config, log,
# providers, YAML import). The SQL files are compiled in by scripts/embed-sql.
noinst_LIBRARIES += common/libsidecar.a
common_libsidecar_a_SOURCES = \
	common/util.c common/util.h \
	common/log.c common/log.h \
	common/db.c common/db.h \
	common/crypto.c common/crypto.h \
	common/tokens.c common/tokens.h \
	common/config.c common/config.h \
	common/redisurl.c common/redisurl.h \
	common/providers.c common/providers.h \
	common/redact.c common/redact.h \
	common/yamlimport.c common/yamlimport.h
nodist_common_libsidecar_a_SOURCES = common/sql_embed.c
common_libsidecar_a_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS) $(CRYPTO_CFLAGS) $(JSONC_CFLAGS) $(YAML_CFLAGS)

# What a program linking common/ needs.
SC_COMMON_LIBS = common/libsidecar.a $(SQLITE_LIBS) $(CRYPTO_LIBS) $(JSONC_LIBS) $(YAML_LIBS) $(M_LIBS)
SC_COMMON_CFLAGS = $(SQLITE_CFLAGS) $(CRYPTO_CFLAGS) $(JSONC_CFLAGS) $(YAML_CFLAGS)

# Each sql/migrations/NNN_name.sql is added with += (automake wants no wildcards);
# ctl/ops.mk adds 002.
SC_SQL_MIGRATIONS =
SC_SQL_FILES = sql/schema.sql $(SC_SQL_MIGRATIONS)
common/sql_embed.c: $(srcdir)/scripts/embed-sql $(srcdir)/sql/schema.sql $(SC_SQL_MIGRATIONS:%=$(srcdir)/%)
	$(AM_V_GEN)$(MKDIR_P) common && sh $(srcdir)/scripts/embed-sql $(srcdir)/sql > $@.tmp && mv $@.tmp $@
BUILT_SOURCES += common/sql_embed.c
CLEANFILES += common/sql_embed.c
EXTRA_DIST += scripts/embed-sql sql
nobase_dist_pkgdata_DATA += sql/schema.sql $(SC_SQL_MIGRATIONS)

# Unit tests (cmocka), one program per module: tests/unit/test_<module>.c
SC_UNIT_CFLAGS = $(AM_CFLAGS) $(SC_COMMON_CFLAGS) $(CMOCKA_CFLAGS)
SC_UNIT_LIBS = $(SC_COMMON_LIBS) $(CMOCKA_LIBS)

# Unit tests of common/ (cmocka), one program per module.
SC_COMMON_TESTS = tests/unit/test_util tests/unit/test_db tests/unit/test_crypto \
	tests/unit/test_tokens tests/unit/test_config tests/unit/test_providers \
	tests/unit/test_yamlimport tests/unit/test_redact
check_PROGRAMS += $(SC_COMMON_TESTS)
TESTS += $(SC_COMMON_TESTS)
SC_COMMON_TEST_CFLAGS = $(SC_UNIT_CFLAGS) -DSC_TEST_SRCDIR='"$(abs_top_srcdir)"'
tests_unit_test_util_SOURCES = tests/unit/test_util.c
tests_unit_test_util_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_util_LDADD = $(SC_UNIT_LIBS)
tests_unit_test_db_SOURCES = tests/unit/test_db.c
tests_unit_test_db_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_db_LDADD = $(SC_UNIT_LIBS) $(PTHREAD_LIBS)
tests_unit_test_crypto_SOURCES = tests/unit/test_crypto.c
tests_unit_test_crypto_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_crypto_LDADD = $(SC_UNIT_LIBS)
tests_unit_test_redact_SOURCES = tests/unit/test_redact.c
tests_unit_test_redact_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_redact_LDADD = $(SC_UNIT_LIBS)
# The database fixture shared by the unit tests of common/.
SC_TESTDB_SOURCES = tests/unit/testdb.c tests/unit/testdb.h
tests_unit_test_tokens_SOURCES = tests/unit/test_tokens.c $(SC_TESTDB_SOURCES)
tests_unit_test_tokens_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_tokens_LDADD = $(SC_UNIT_LIBS)
tests_unit_test_config_SOURCES = tests/unit/test_config.c $(SC_TESTDB_SOURCES)
tests_unit_test_config_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_config_LDADD = $(SC_UNIT_LIBS)
tests_unit_test_providers_SOURCES = tests/unit/test_providers.c $(SC_TESTDB_SOURCES)
tests_unit_test_providers_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_providers_LDADD = $(SC_UNIT_LIBS)
tests_unit_test_yamlimport_SOURCES = tests/unit/test_yamlimport.c $(SC_TESTDB_SOURCES)
tests_unit_test_yamlimport_CFLAGS = $(SC_COMMON_TEST_CFLAGS)
tests_unit_test_yamlimport_LDADD = $(SC_UNIT_LIBS)
EXTRA_DIST += tests/fixtures/providers-example.yaml
