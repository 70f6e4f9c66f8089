/*
 * Unit tests for common/config.c. The descriptor table and the rows that
 * sql/schema.sql seeds must list the same keys with the same defaults and
 * descriptions; values are validated by type and range before they are
 * stored; a bad stored value falls back to the default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "db.h"
#include "testdb.h"

static void
test_table_matches_schema(void **state)
{
	struct testdb *f = *state;
	const struct config_desc *d;
	sqlite3_stmt *st;
	int rows = 0, descs = 0;

	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT key, value, description FROM system_config",
	    -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);

		rows++;
		d = config_find(key);
		if (d == NULL)
			fail_msg("schema.sql seeds %s, which config.c does not know", key);
		assert_string_equal((const char *)sqlite3_column_text(st, 1), d->def);
		assert_string_equal((const char *)sqlite3_column_text(st, 2), d->description);
		assert_int_equal(config_validate(key, d->def, NULL), 0);
	}
	sqlite3_finalize(st);
	for (d = config_descs(); d->key != NULL; d++)
		descs++;
	assert_int_equal(rows, descs);
}

static void
test_defaults(void **state)
{
	struct config c;

	(void)state;
	config_defaults(&c);
	assert_int_equal(c.rpm_window_seconds, 60);
	assert_int_equal(c.rpm_window_margin_ms, 500);
	assert_int_equal(c.queue_capacity, 500);
	assert_int_equal(c.cooldown_max_seconds, 600);
	assert_true(c.emergency_rpm_ratio > 0.099 && c.emergency_rpm_ratio < 0.101);
	assert_int_equal(c.max_body_bytes, 33554432);
	assert_int_equal(c.db_size_warn_bytes, 104857600);
	assert_int_equal(c.events_retention_days, 30);
}

static void
test_validate(void **state)
{
	struct sc_err e;

	(void)state;
	assert_int_equal(config_validate("queue_capacity", "1000", &e), 0);
	assert_int_equal(config_validate("queue_capacity", "-1", &e), -1);
	assert_string_equal(e.field, "queue_capacity");
	assert_non_null(strstr(e.msg, "queue_capacity: must be an integer between"));
	assert_int_equal(config_validate("queue_capacity", "12abc", &e), -1);
	assert_int_equal(config_validate("queue_capacity", "", &e), -1);
	assert_int_equal(config_validate("queue_capacity", " 5", &e), -1);
	assert_int_equal(config_validate("queue_capacity", "1.5", &e), -1);
	assert_int_equal(config_validate("queue_capacity", NULL, &e), -1);
	assert_int_equal(config_validate("emergency_rpm_ratio", "0.25", &e), 0);
	assert_int_equal(config_validate("emergency_rpm_ratio", "1.5", &e), -1);
	assert_non_null(strstr(e.msg, "must be a number"));
	assert_int_equal(config_validate("emergency_rpm_ratio", "nan", &e), -1);
	assert_int_equal(config_validate("max_body_bytes", "5000000000", &e), -1);
	assert_int_equal(config_validate("max_body_bytes", "1048576", &e), 0);
	assert_int_equal(config_validate("no_such_key", "1", &e), -1);
	assert_non_null(strstr(e.msg, "unknown setting"));
}

/* redis_url: IP literals only, strict shape, the password never shown. */
static void
test_redis_url(void **state)
{
	const struct config_desc *d = config_find("redis_url");
	struct sc_err e;
	char out[300];
	struct config c;

	(void)state;
	assert_int_equal(config_validate("redis_url", "", &e), 0);
	assert_int_equal(config_validate("redis_url", "redis://10.0.0.5:6379/0", &e), 0);
	assert_int_equal(config_validate("redis_url", "redis://:s3cret@10.0.0.5:6379/2", &e), 0);
	assert_int_equal(config_validate("redis_url", "redis://[::1]:7000", &e), 0);
	assert_int_equal(config_validate("redis_url", "redis://127.0.0.1", &e), 0);
	assert_int_equal(config_validate("redis_url", "redis://redis.example:6379", &e), -1);
	assert_non_null(strstr(e.msg, "IP address"));
	assert_int_equal(config_validate("redis_url", "rediss://10.0.0.5:6379", &e), -1);
	assert_int_equal(config_validate("redis_url", "redis://10.0.0.5:99999", &e), -1);
	assert_int_equal(config_validate("redis_url", "redis://10.0.0.5:6379/x", &e), -1);
	assert_int_equal(config_validate("redis_url", "redis://pw@10.0.0.5:6379", &e), -1);
	assert_int_equal(config_validate("redis_url", "redis://10.0.0.5 :6379", &e), -1);
	assert_int_equal(config_validate("cluster_namespace", "prod-eu.1", &e), 0);
	assert_int_equal(config_validate("cluster_namespace", "a b", &e), -1);
	assert_int_equal(config_validate("cluster_host_name", "", &e), 0);
	assert_int_equal(config_validate("cluster_host_name",
	    "0123456789012345678901234567890123456789012345678901234567890123456789", &e), -1);
	config_display(d, "redis://:s3cret@10.0.0.5:6379/2", out, sizeof(out));
	assert_null(strstr(out, "s3cret"));
	assert_string_equal(out, "redis://:****@10.0.0.5:6379/2");
	config_display(d, "redis://10.0.0.5:6379", out, sizeof(out));
	assert_string_equal(out, "redis://10.0.0.5:6379");
	config_display(d, "redis://:s3cret@host:1", out, sizeof(out));
	assert_null(strstr(out, "s3cret"));
	config_display(config_find("cluster_namespace"), "ns", out, sizeof(out));
	assert_string_equal(out, "ns");
	config_defaults(&c);
	assert_string_equal(c.redis_url, "");
	assert_string_equal(c.cluster_namespace, "sidecar");
	assert_int_equal(c.cluster_reply_timeout_ms, 500);
}

static void
test_set_get_load(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	struct config c;
	int64_t cv = db_config_version(f->db);
	char *v;

	assert_int_equal(config_set(f->db, "queue_capacity", "800", &e), 0);
	assert_int_equal(db_config_version(f->db), cv + 1);
	v = config_get(f->db, "queue_capacity");
	assert_string_equal(v, "800");
	free(v);
	/* Same value again: no change, no version bump. */
	assert_int_equal(config_set(f->db, "queue_capacity", "800", &e), 0);
	assert_int_equal(db_config_version(f->db), cv + 1);
	assert_int_equal(config_set(f->db, "queue_capacity", "lots", &e), -1);
	v = config_get(f->db, "queue_capacity");
	assert_string_equal(v, "800");
	free(v);
	assert_null(config_get(f->db, "no_such_key"));
	assert_int_equal(config_set(f->db, "emergency_rpm_ratio", "0.2", &e), 0);

	/* A value broken behind our back keeps its default. */
	assert_int_equal(db_exec(f->db, "UPDATE system_config SET value = 'x' WHERE key = 'max_attempts'", &e), 0);
	assert_int_equal(config_load(f->db, &c, &e), 0);
	assert_int_equal(c.queue_capacity, 800);
	assert_true(c.emergency_rpm_ratio > 0.199 && c.emergency_rpm_ratio < 0.201);
	assert_int_equal(c.max_attempts, 3);
}

/* Every writer stores the canonical text: decimal integers, the shortest
 * round-trip form of doubles (valid JSON), whatever form came in. */
static void
test_canonical(void **state)
{
	static const struct { const char *key, *in, *out; } ok[] = {
		{ "emergency_rpm_ratio", ".5", "0.5" },
		{ "emergency_rpm_ratio", "0x1p-2", "0.25" },
		{ "emergency_rpm_ratio", "5E-1", "0.5" },
		{ "emergency_rpm_ratio", "1", "1" },
		{ "emergency_rpm_ratio", "-0", "0" },
		{ "emergency_rpm_ratio", "0.1", "0.1" },
		{ "emergency_rpm_ratio", "0.30000000000000004", "0.30000000000000004" },
		{ "emergency_rpm_ratio", "1e-7", "1e-07" },
		{ "queue_capacity", "0800", "800" },
		{ "queue_capacity", "-0", "0" },
		{ "db_size_warn_bytes", "1000000000000", "1000000000000" },
	};
	static const struct { const char *key, *in; } bad[] = {
		{ "emergency_rpm_ratio", " .5" }, { "emergency_rpm_ratio", "\n0.5" }, { "emergency_rpm_ratio", "+0.5" },
		{ "emergency_rpm_ratio", "nan" }, { "emergency_rpm_ratio", "inf" }, { "emergency_rpm_ratio", "2" },
		{ "queue_capacity", "0x10" }, { "queue_capacity", "1e3" }, { "queue_capacity", "\t5" },
		{ "no_such_key", "1" },
	};
	char out[CONFIG_VALUE_MAX];
	struct sc_err e;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (config_canonical(ok[i].key, ok[i].in, out, sizeof(out), &e) != 0)
			fail_msg("%s=%s refused: %s", ok[i].key, ok[i].in, e.msg);
		if (strcmp(out, ok[i].out) != 0)
			fail_msg("%s=%s gave %s, want %s", ok[i].key, ok[i].in, out, ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_canonical(bad[i].key, bad[i].in, out, sizeof(out), &e) != -1)
			fail_msg("%s=\"%s\" accepted as %s", bad[i].key, bad[i].in, out);
}

/* config_set stores the canonical form, so GET /config stays valid JSON. */
static void
test_set_canonical(void **state)
{
	struct testdb *f = *state;
	struct sc_err e;
	char *v;

	assert_int_equal(config_set(f->db, "emergency_rpm_ratio", ".5", &e), 0);
	v = config_get(f->db, "emergency_rpm_ratio");
	assert_string_equal(v, "0.5");
	free(v);
	assert_int_equal(config_set(f->db, "emergency_rpm_ratio", "0x1p-2", &e), 0);
	v = config_get(f->db, "emergency_rpm_ratio");
	assert_string_equal(v, "0.25");
	free(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table_matches_schema, testdb_setup, testdb_teardown),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_redis_url),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test_setup_teardown(test_set_canonical, testdb_setup, testdb_teardown),
		cmocka_unit_test_setup_teardown(test_set_get_load, testdb_setup, testdb_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
