/*
 * sidecarctl: the operator's and cron's command-line tool.
 *
 *   sidecarctl [--db PATH] [--key-file F] COMMAND [ARGS]
 *
 * Each command is one function in the table at the bottom; adding one is a
 * function and a row. Exit status 0 on success; otherwise one line
 * "sidecarctl: <reason>" on stderr and 1 (2 for a usage error). Plaintext
 * provider keys are never printed: lists show masks, and a generated token is
 * printed once, at creation, because only its hash is stored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "providers.h"
#include "requests.h"
#include "tokens.h"
#include "yamlimport.h"

#ifndef SC_VERSION
#define SC_VERSION "unknown"
#endif

#define CTL_IMPORT_MAX (4 * 1024 * 1024)	/* largest YAML file read */

/* What every command gets: the options before the command name. */
struct ctl {
	const char *db_path;	/* --db, $SIDECAR_DB or the installed default */
	const char *key_file;	/* --key-file, NULL to use the environment */
};

struct ctl_command {
	const char *name;
	const char *args;	/* for help */
	const char *help;
	int (*fn)(struct ctl *c, int argc, char **argv);	/* argv[0] = name */
};

static int ctl_usage(FILE *fp);

/* The one line every failure ends with; returns the exit status 1. */
static int __attribute__((format(printf, 1, 2)))
ctl_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("sidecarctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int __attribute__((format(printf, 1, 2)))
ctl_usage_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("sidecarctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see `sidecarctl help`)\n", stderr);
	return 2;
}

/* The encryption key: --key-file wins over the environment. */
static int
ctl_load_key(struct ctl *c, struct crypto_key *k, struct sc_err *e)
{
	if (c->key_file != NULL)
		return crypto_key_load_file(c->key_file, k, e);
	return crypto_key_load(NULL, k, e);
}

/* Open an existing database at the schema version this build knows. With k,
 * also load the encryption key and check it against the database. */
static sqlite3 *
ctl_open(struct ctl *c, unsigned flags, struct crypto_key *k)
{
	struct sc_err e;
	sqlite3 *db;
	int v, latest = db_latest_version();

	sc_err_clear(&e);
	if (k != NULL && ctl_load_key(c, k, &e) == -1) {
		ctl_fail("%s", e.msg);
		return NULL;
	}
	db = db_open(c->db_path, flags, &e);
	if (db == NULL) {
		ctl_fail("%s", e.msg);
		return NULL;
	}
	v = db_schema_version(db);
	if (v == 0) {
		ctl_fail("%s: not initialised (run `sidecarctl init`)", c->db_path);
		goto fail;
	}
	if (v > latest) {
		ctl_fail("database schema version %d is newer than this program supports (%d); upgrade sidecar",
		    v, latest);
		goto fail;
	}
	if (v < latest) {
		ctl_fail("database schema version %d is older than this program's (%d); "
		    "run `sidecarctl migrate` (or `sidecarctl init`)", v, latest);
		goto fail;
	}
	if (k != NULL && crypto_check_db(db, k, &e) == -1) {
		ctl_fail("%s", e.msg);
		goto fail;
	}
	return db;
fail:
	db_close(db);
	if (k != NULL)
		crypto_key_wipe(k);
	return NULL;
}

static int
cmd_init(struct ctl *c, int argc, char **argv)
{
	struct crypto_key k;
	struct sc_err e;
	struct stat st;
	sqlite3 *db;
	int existed, before, ret = 1;
	mode_t old_umask;

	(void)argv;
	if (argc != 1)
		return ctl_usage_fail("init takes no arguments");
	/* Key first: a missing key must not leave a half-made database. */
	if (ctl_load_key(c, &k, &e) == -1)
		return ctl_fail("%s", e.msg);
	existed = stat(c->db_path, &st) == 0;
	old_umask = umask(077);	/* a new database (and its -wal/-shm) is 0600 */
	db = db_open(c->db_path, DB_OPEN_CREATE, &e);
	umask(old_umask);
	if (db == NULL) {
		crypto_key_wipe(&k);
		return ctl_fail("%s", e.msg);
	}
	before = db_schema_version(db);
	/* An existing database is checked against the key before anything changes. */
	if (before > 0 && before <= db_latest_version() && crypto_check_db(db, &k, &e) == -1) {
		ctl_fail("%s", e.msg);
		goto out;
	}
	/* Upgrades go through `migrate`, which takes a backup first. */
	if (before > 0 && before < db_latest_version()) {
		ctl_fail("database schema version %d is older than this program's (%d): "
		    "run `sidecarctl migrate`, which takes a backup first", before, db_latest_version());
		goto out;
	}
	if (db_migrate(db, &e) == -1) {
		ctl_fail("%s", e.msg);
		goto out;
	}
	if (crypto_check_db(db, &k, &e) == -1) {
		ctl_fail("%s", e.msg);
		goto out;
	}
	if (!existed || before == 0)
		printf("created %s (schema version %d)\n", c->db_path, db_schema_version(db));
	else if (before < db_schema_version(db))
		printf("upgraded %s from schema version %d to %d\n", c->db_path, before, db_schema_version(db));
	else
		printf("%s is up to date (schema version %d)\n", c->db_path, db_schema_version(db));
	ret = 0;
out:
	crypto_key_wipe(&k);
	db_close(db);
	if (ret != 0 && !existed) {
		/* Nothing useful was made: leave no file behind. */
		char side[1100];

		unlink(c->db_path);
		snprintf(side, sizeof(side), "%s-wal", c->db_path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", c->db_path);
		unlink(side);
	}
	return ret;
}

static int
cmd_keygen(struct ctl *c, int argc, char **argv)
{
	char *k;

	(void)c;
	(void)argv;
	if (argc != 1)
		return ctl_usage_fail("keygen takes no arguments");
	k = crypto_key_generate_base64();
	printf("%s\n", k);
	crypto_free_secret(k);
	return fflush(stdout) == 0 ? 0 : ctl_fail("writing the key: %s", strerror(errno));
}

/* Read a whole file of at most max bytes (malloc'd, NUL-terminated). */
static char *
ctl_read_file(const char *path, size_t max, size_t *len, struct sc_err *e)
{
	struct sc_buf b;
	char chunk[8192];
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		sc_err_set(e, NULL, 0, "%s: %s", path, strerror(errno));
		return NULL;
	}
	sc_buf_init(&b, max);
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			sc_err_set(e, NULL, 0, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		if (sc_buf_append(&b, chunk, (size_t)r) == -1) {
			sc_err_set(e, NULL, 0, "%s: larger than %zu bytes", path, max);
			goto fail;
		}
	}
	close(fd);
	crypto_wipe(chunk, sizeof(chunk));
	if (b.data == NULL)
		b.data = sc_xstrdup("");
	*len = b.len;
	return b.data;
fail:
	close(fd);
	crypto_wipe(chunk, sizeof(chunk));
	crypto_wipe(b.data, b.len);
	sc_buf_free(&b);
	return NULL;
}

static int
cmd_import(struct ctl *c, int argc, char **argv)
{
	struct yaml_doc doc = { NULL, 0 };
	struct yaml_report rep = { 0, NULL };
	struct crypto_key k;
	struct sc_err e;
	size_t len = 0, counts[3] = { 0, 0, 0 };
	sqlite3 *db = NULL;
	char *buf;
	int ret = 1, rc;

	if (argc != 2)
		return ctl_usage_fail("usage: sidecarctl import FILE");
	buf = ctl_read_file(argv[1], CTL_IMPORT_MAX, &len, &e);
	if (buf == NULL)
		return ctl_fail("%s", e.msg);
	/* Parse before touching the database: a bad file changes nothing. */
	rc = yamlimport_parse(buf, len, &doc, &e);
	crypto_wipe(buf, len);
	free(buf);
	if (rc == -1)
		return ctl_fail("%s: %s", argv[1], e.msg);
	if ((db = ctl_open(c, 0, &k)) == NULL)
		goto out_doc;
	if (yamlimport_apply(db, &k, &doc, "yaml", &rep, &e) == -1) {
		ctl_fail("%s: %s", argv[1], e.msg);
		goto out;
	}
	for (size_t i = 0; i < rep.n; i++) {
		counts[rep.v[i].action]++;
		printf("%-9s %s (line %d)\n", yamlimport_action_name(rep.v[i].action), rep.v[i].name,
		    rep.v[i].line);
	}
	printf("%zu providers: %zu created, %zu updated, %zu unchanged\n", rep.n,
	    counts[YAML_CREATED], counts[YAML_UPDATED], counts[YAML_UNCHANGED]);
	ret = 0;
out:
	crypto_key_wipe(&k);
	db_close(db);
out_doc:
	yamlimport_report_free(&rep);
	yamlimport_doc_free(&doc);
	return ret;
}

static int
ctl_providers_list(struct ctl *c)
{
	struct provider_list l;
	struct sc_err e;
	sqlite3 *db;
	char cool[64], ts[SC_TS_LEN];
	int64_t now = sc_wall_ms() / 1000;

	if ((db = ctl_open(c, DB_OPEN_READONLY, NULL)) == NULL)
		return 1;
	if (provider_list(db, NULL, &l, &e) == -1) {
		db_close(db);
		return ctl_fail("%s", e.msg);
	}
	printf("%-24s %-8s %-8s %-16s %6s  %-22s %s\n", "NAME", "POOL", "STATUS", "PREFIX", "RPM",
	    "KEY", "COOLDOWN");
	for (size_t i = 0; i < l.n; i++) {
		const struct provider *p = &l.v[i];

		if (p->cooldown_until > now) {
			sc_ts_format(p->cooldown_until, ts);
			snprintf(cool, sizeof(cool), "until %s (%llds)", ts,
			    (long long)(p->cooldown_until - now));
		} else
			snprintf(cool, sizeof(cool), "-");
		/* The mask holds a 3-byte ellipsis: pad by display width. */
		printf("%-24s %-8s %-8s %-16s %6d  %-*s %s\n", p->name, provider_pool_name(p->pool),
		    provider_status_name(p->status), p->model_prefix, p->rpm_limit,
		    22 + (strstr(p->api_key_mask, "\xe2\x80\xa6") ? 2 : 0), p->api_key_mask, cool);
	}
	provider_list_free(&l);
	db_close(db);
	return 0;
}

struct ctl_provider_op {
	const char *verb;	/* disable, enable, delete */
	const char *name;
};

static int
ctl_provider_op_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct ctl_provider_op *op = arg;
	struct provider p;
	int rc;

	rc = provider_get(db, NULL, "name", op->name, &p, e);
	if (rc == -1)
		return -1;
	if (rc == 1)
		return sc_err_set(e, "name", 0, "no provider named \"%s\"", op->name);
	if (strcmp(op->verb, "delete") == 0)
		rc = provider_delete(db, p.id, e);
	else if (strcmp(op->verb, "disable") == 0)
		rc = provider_set_status(db, p.id, PSTATUS_DISABLED, "disabled with sidecarctl", e);
	else
		rc = provider_set_status(db, p.id, PSTATUS_ACTIVE, "", e);
	provider_clear(&p);
	return rc;
}

static int
cmd_providers(struct ctl *c, int argc, char **argv)
{
	struct ctl_provider_op op;
	struct sc_err e;
	sqlite3 *db;
	int rc;

	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return ctl_providers_list(c);
	if (argc != 3 || (strcmp(argv[1], "disable") != 0 && strcmp(argv[1], "enable") != 0 &&
	    strcmp(argv[1], "delete") != 0))
		return ctl_usage_fail("usage: sidecarctl providers list | providers disable|enable|delete NAME");
	op.verb = argv[1];
	op.name = argv[2];
	if ((db = ctl_open(c, 0, NULL)) == NULL)
		return 1;
	rc = db_write_txn(db, ctl_provider_op_txn, &op, &e);
	db_close(db);
	if (rc == -1)
		return ctl_fail("%s", e.msg);
	printf("%s: %sd\n", op.name, op.verb);
	return 0;
}

struct ctl_token_op {
	enum token_kind kind;
	const char     *label;
	char           *plain;	/* owned secret once created */
};

static int
ctl_token_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct ctl_token_op *op = arg;

	crypto_free_secret(op->plain);	/* a retried transaction makes a new one */
	op->plain = NULL;
	return tokens_create(db, op->kind, op->label, &op->plain, e);
}

static int
cmd_token(struct ctl *c, int argc, char **argv)
{
	struct ctl_token_op op = { TOKEN_CLIENT, NULL, NULL };
	struct sc_err e;
	sqlite3 *db;
	int kind = 0, rc;

	if (argc < 2 || strcmp(argv[1], "create") != 0)
		return ctl_usage_fail("usage: sidecarctl token create --admin|--client [--label L]");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--admin") == 0) {
			op.kind = TOKEN_ADMIN;
			kind++;
		} else if (strcmp(argv[i], "--client") == 0) {
			op.kind = TOKEN_CLIENT;
			kind++;
		} else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
			op.label = argv[++i];
		else
			return ctl_usage_fail("token create: unknown argument %s", argv[i]);
	}
	if (kind != 1)
		return ctl_usage_fail("token create: give exactly one of --admin or --client");
	if ((db = ctl_open(c, 0, NULL)) == NULL)
		return 1;
	rc = db_write_txn(db, ctl_token_txn, &op, &e);
	db_close(db);
	if (rc == -1) {
		crypto_free_secret(op.plain);
		return ctl_fail("%s", e.msg);
	}
	/* Shown once: only the hash is kept. */
	printf("%s\n", op.plain);
	crypto_free_secret(op.plain);
	return fflush(stdout) == 0 ? 0 : ctl_fail("writing the token: %s", strerror(errno));
}

static int
cmd_config(struct ctl *c, int argc, char **argv)
{
	struct sc_err e;
	sqlite3 *db;
	char *v;
	int ret = 0;

	if (argc >= 2 && strcmp(argv[1], "get") == 0 && argc <= 3) {
		if (argc == 3 && config_find(argv[2]) == NULL)
			return ctl_fail("%s: unknown setting", argv[2]);
		if ((db = ctl_open(c, DB_OPEN_READONLY, NULL)) == NULL)
			return 1;
		for (const struct config_desc *d = config_descs(); d->key != NULL; d++) {
			if (argc == 3 && strcmp(d->key, argv[2]) != 0)
				continue;
			char shown[CONFIG_VALUE_MAX];
			v = config_get(db, d->key);
			config_display(d, v ? v : d->def, shown, sizeof(shown));	/* a password never shows */
			if (argc == 3)
				printf("%s\n", shown);
			else
				printf("%s=%s\n", d->key, shown);
			free(v);
		}
		db_close(db);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "set") == 0) {
		char canon[CONFIG_VALUE_MAX];

		if (config_canonical(argv[2], argv[3], canon, sizeof(canon), &e) == -1)
			return ctl_fail("%s", e.msg);
		if ((db = ctl_open(c, 0, NULL)) == NULL)
			return 1;
		if (config_set(db, argv[2], canon, &e) == -1)
			ret = ctl_fail("%s", e.msg);
		else {
			char shown[CONFIG_VALUE_MAX];
			config_display(config_find(argv[2]), canon, shown, sizeof(shown));
			printf("%s=%s\n", argv[2], shown);
		}
		db_close(db);
		return ret;
	}
	return ctl_usage_fail("usage: sidecarctl config get [KEY] | config set KEY VALUE");
}

struct ctl_rekey {
	const struct crypto_key *oldk, *newk;
	int count;
};

static int
ctl_rekey_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct ctl_rekey *r = arg;

	if (provider_rekey_all(db, r->oldk, r->newk, &r->count, e) == -1)
		return -1;
	return crypto_check_store(db, r->newk, e);
}

static int
cmd_rekey(struct ctl *c, int argc, char **argv)
{
	struct crypto_key oldk, newk;
	struct ctl_rekey r;
	struct sc_err e;
	sqlite3 *db;
	int rc;

	if (argc != 3 || strcmp(argv[1], "--new-key-file") != 0)
		return ctl_usage_fail("usage: sidecarctl rekey --new-key-file FILE");
	if (crypto_key_load_file(argv[2], &newk, &e) == -1)
		return ctl_fail("new key: %s", e.msg);
	if ((db = ctl_open(c, 0, &oldk)) == NULL) {
		crypto_key_wipe(&newk);
		return 1;
	}
	if (crypto_ct_equal((const char *)oldk.k, (const char *)newk.k, CRYPTO_KEY_LEN)) {
		rc = ctl_fail("the new key is the same as the current one");
		goto out;
	}
	r.oldk = &oldk;
	r.newk = &newk;
	r.count = 0;
	if (db_write_txn(db, ctl_rekey_txn, &r, &e) == -1) {
		rc = ctl_fail("rekey failed, nothing changed: %s", e.msg);
		goto out;
	}
	printf("re-encrypted %d provider key%s; now put the new key where the programs read it "
	    "(e.g. mv it over their key file): running programs pick it up from there; until then the "
	    "data plane keeps the keys it has and the admin API refuses key writes with 503\n",
	    r.count, r.count == 1 ? "" : "s");
	rc = 0;
out:
	crypto_key_wipe(&oldk);
	crypto_key_wipe(&newk);
	db_close(db);
	return rc;
}

/* integrity_check's first row ("ok" when sound), malloc'd. */
static char *
ctl_integrity(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	char *r = NULL;

	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
		r = sc_xstrdup((const char *)sqlite3_column_text(st, 0));
	else
		r = sc_xstrdup(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return r;
}

/* Every check is run and reported; the exit status says whether any failed. */
static int
cmd_check(struct ctl *c, int argc, char **argv)
{
	struct provider_list l;
	struct crypto_key k;
	struct sc_err e;
	sqlite3 *db;
	char *s;
	int problems = 0, v, latest = db_latest_version(), have_key;

	(void)argv;
	if (argc != 1)
		return ctl_usage_fail("check takes no arguments");
	db = db_open(c->db_path, DB_OPEN_READONLY, &e);
	if (db == NULL)
		return ctl_fail("%s", e.msg);
	s = ctl_integrity(db);
	if (strcmp(s, "ok") == 0)
		printf("ok       integrity_check\n");
	else {
		printf("PROBLEM  integrity_check: %s\n", s);
		problems++;
	}
	free(s);
	v = db_schema_version(db);
	if (v == latest)
		printf("ok       schema version %d\n", v);
	else {
		printf("PROBLEM  schema version %d, this program expects %d%s\n", v, latest,
		    v > latest ? " (upgrade sidecar)" : v == 0 ? " (run sidecarctl init)" :
		    " (run sidecarctl migrate)");
		problems++;
	}
	have_key = ctl_load_key(c, &k, &e) == 0;
	if (!have_key) {
		printf("PROBLEM  %s\n", e.msg);
		problems++;
	} else if (v > 0) {
		s = db_meta_get(db, "key_check");
		if (s == NULL) {
			printf("PROBLEM  no key check value in the database (run sidecarctl init)\n");
			problems++;
		} else if (crypto_check_verify(&k, s, &e) == -1) {
			printf("PROBLEM  %s\n", e.msg);
			problems++;
		} else {
			printf("ok       encryption key matches\n");
			if (provider_list(db, &k, &l, &e) == -1) {
				printf("PROBLEM  %s\n", e.msg);
				problems++;
			} else {
				printf("ok       %zu provider key%s decrypt\n", l.n, l.n == 1 ? "" : "s");
				provider_list_free(&l);
			}
		}
		free(s);
		crypto_key_wipe(&k);
	}
	db_close(db);
	if (problems > 0)
		return ctl_fail("check found %d problem%s", problems, problems == 1 ? "" : "s");
	return 0;
}

static int
cmd_version(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	printf("sidecarctl (sidecar-v2) %s, schema version %d, SQLite %s\n", SC_VERSION,
	    db_latest_version(), sqlite3_libversion());
	return 0;
}

static int
cmd_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	return ctl_usage(stdout);
}

/* The request log (ctl/requests.c), read-only. */
static int
cmd_requests(struct ctl *c, int argc, char **argv)
{
	sqlite3 *db = ctl_open(c, DB_OPEN_READONLY, NULL);
	int rc;

	if (db == NULL)
		return 1;
	rc = ctl_requests_run(db, argc, argv, sc_wall_ms() / 1000, stdout);
	db_close(db);
	return rc;
}

/* Commands of ctl/backup.c take the database path only. */
static int
cmd_backup(struct ctl *c, int argc, char **argv)
{
	return ctl_backup_main(argc, argv, c->db_path);
}

static int
cmd_restore(struct ctl *c, int argc, char **argv)
{
	return ctl_restore_main(argc, argv, c->db_path);
}

static int
cmd_migrate(struct ctl *c, int argc, char **argv)
{
	return ctl_migrate_main(argc, argv, c->db_path);
}

static const struct ctl_command ctl_commands[] = {
	{ "init", "", "create the database (idempotent); store the key check value", cmd_init },
	{ "keygen", "", "print a new encryption key (base64 of 32 random bytes)", cmd_keygen },
	{ "import", "FILE", "create or update providers from a YAML file (all or nothing)", cmd_import },
	{ "providers", "list | disable|enable|delete NAME", "list providers (keys masked) or change one",
	    cmd_providers },
	{ "token", "create --admin|--client [--label L]", "create a bearer token (printed once)", cmd_token },
	{ "config", "get [KEY] | set KEY VALUE", "read or change settings", cmd_config },
	{ "requests", "[--errors] [--since WHEN] [--id ID] ...", "the most recent requests (the request log)",
	    cmd_requests },
	{ "rekey", "--new-key-file FILE", "re-encrypt every provider key with a new key", cmd_rekey },
	{ "check", "", "integrity, schema version, encryption key; exit 1 on any problem", cmd_check },
	{ "backup", "[--dir DIR] [--keep-days N] [--kind K]", "online consistent copy of the database",
	    cmd_backup },
	{ "restore", "[--key-file F] FILE", "put a backup back (data plane stopped)", cmd_restore },
	{ "migrate", "[--dir DIR]", "upgrade the schema after taking a backup", cmd_migrate },
	{ "version", "", "print the version", cmd_version },
	{ "help", "", "this text", cmd_help },
	{ NULL, NULL, NULL, NULL }
};

static int
ctl_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: sidecarctl [--db PATH] [--key-file FILE] COMMAND [ARGS]\n"
	    "\n"
	    "The database is --db, else $SIDECAR_DB, else %s.\n"
	    "The encryption key is read from --key-file, else $SIDECAR_ENCRYPTION_KEY (base64),\n"
	    "else the file named by $SIDECAR_ENCRYPTION_KEY_FILE.\n"
	    "\n"
	    "Commands:\n", db_default_path(NULL));
	for (const struct ctl_command *cmd = ctl_commands; cmd->name != NULL; cmd++)
		fprintf(fp, "  %-10s %-40s %s\n", cmd->name, cmd->args, cmd->help);
	return 0;
}

int
main(int argc, char **argv)
{
	struct ctl c = { NULL, NULL };
	const char *db = NULL;
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			db = argv[++i];
		else if (strncmp(argv[i], "--db=", 5) == 0)
			db = argv[i] + 5;
		else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc)
			c.key_file = argv[++i];
		else if (strncmp(argv[i], "--key-file=", 11) == 0)
			c.key_file = argv[i] + 11;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return ctl_usage(stdout);
		else if (strcmp(argv[i], "--version") == 0)
			return cmd_version(&c, 0, NULL);
		else {
			ctl_usage(stderr);
			return ctl_usage_fail("unknown option %s", argv[i]);
		}
	}
	if (i == argc) {
		ctl_usage(stderr);
		return ctl_usage_fail("no command given");
	}
	c.db_path = db_default_path(db);
	/* --key-file wins over the environment, also for the commands of
	 * ctl/backup.c, which read the environment themselves. */
	if (c.key_file != NULL) {
		unsetenv("SIDECAR_ENCRYPTION_KEY");
		setenv("SIDECAR_ENCRYPTION_KEY_FILE", c.key_file, 1);
	}
	for (const struct ctl_command *cmd = ctl_commands; cmd->name != NULL; cmd++)
		if (strcmp(cmd->name, argv[i]) == 0)
			return cmd->fn(&c, argc - i, argv + i);
	return ctl_usage_fail("unknown command \"%s\"", argv[i]);
}
