/*
 * sc-ops: a test driver for ctl/backup.c, built only for `make check`.
 * It runs the backup, restore and migrate commands exactly as sidecarctl
 * will, plus two helpers the black-box tests need:
 *   sc-ops [--db PATH] init        create the database at the newest schema
 *                                  and store the encryption key's check value
 *   sc-ops [--db PATH] hold-lock   hold the data plane's fcntl lock on
 *                                  "<db>.lock" (the convention restore
 *                                  checks) until stdin closes; prints "locked"
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "crypto.h"
#include "db.h"

/* Create or upgrade the schema and bind the database to the key. */
static int
ops_init(const char *db_path)
{
	struct crypto_key key;
	struct sc_err e;
	sqlite3 *db;
	int ret = 1;

	sc_err_clear(&e);
	db = db_open(db_path, DB_OPEN_CREATE, &e);
	if (db == NULL || db_migrate(db, &e) == -1)
		goto out;
	if (crypto_key_load(NULL, &key, &e) == -1)
		goto out;
	if (crypto_check_db(db, &key, &e) == 0)
		ret = 0;
	crypto_key_wipe(&key);
out:
	if (ret != 0)
		fprintf(stderr, "sc-ops init: %s\n", e.msg);
	db_close(db);
	return ret;
}

/* The data plane's side of the lock convention. */
static int
ops_hold_lock(const char *db_path)
{
	char path[BACKUP_PATH_MAX], c;
	struct flock fl;
	int fd;

	snprintf(path, sizeof(path), "%s.lock", db_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0660);
	if (fd == -1) {
		perror(path);
		return 1;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) == -1) {
		perror("fcntl");
		return 1;
	}
	printf("locked\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	close(fd);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *db_path = NULL;
	int i = 1;

	if (i + 1 < argc && strcmp(argv[i], "--db") == 0) {
		db_path = argv[i + 1];
		i += 2;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: sc-ops [--db PATH] init|backup|restore|migrate|hold-lock [ARGS]\n");
		return 2;
	}
	db_path = db_default_path(db_path);
	if (strcmp(argv[i], "init") == 0)
		return ops_init(db_path);
	if (strcmp(argv[i], "hold-lock") == 0)
		return ops_hold_lock(db_path);
	if (strcmp(argv[i], "backup") == 0)
		return ctl_backup_main(argc - i, argv + i, db_path);
	if (strcmp(argv[i], "restore") == 0)
		return ctl_restore_main(argc - i, argv + i, db_path);
	if (strcmp(argv[i], "migrate") == 0)
		return ctl_migrate_main(argc - i, argv + i, db_path);
	fprintf(stderr, "sc-ops: unknown command %s\n", argv[i]);
	return 2;
}
