// sidecarctl restore and migrate: restore
// puts a backup back and keeps the replaced database aside, refuses while the
// data plane holds "<db>.lock", with the wrong encryption key, or a damaged
// file; migrate upgrades a version-1 database with data in it after taking a
// backup, and restoring that backup rolls the upgrade back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { OPS, OTHER_KEY, ops, sql, tmpdir, start, waitFor, dumpData, dumpUpgraded, makeV1, V1_DATA, LATEST_VERSION as V } from './ops_lib.mjs';

function backupPath(r) {
	const m = r.stdout.match(/^backup ok: (\S+) /);
	assert.ok(m, r.stdout + r.stderr);
	return m[1];
}

// A current database with v1-style data, and one backup of it.
function setup(t) {
	const dir = tmpdir(t);
	const db = path.join(dir, 'sidecar_v2.db');
	let r = ops(db, ['init']);
	assert.equal(r.code, 0, r.stderr);
	sql(db, V1_DATA);
	fs.chmodSync(db, 0o660);
	const before = dumpData(db);
	r = ops(db, ['backup']);
	assert.equal(r.code, 0, r.stderr);
	return { dir, db, before, file: backupPath(r) };
}

// Files in dir other than the database, its lock and the backups directory.
function leftovers(dir) {
	return fs.readdirSync(dir).filter((f) => /restore-tmp|-journal$/.test(f));
}

test('restore puts the backup back and keeps the replaced database aside', (t) => {
	const { dir, db, before, file } = setup(t);
	sql(db, `DELETE FROM providers WHERE name = 'nim-02';
		UPDATE system_config SET value = '99' WHERE key = 'queue_timeout_seconds';`);
	const changed = dumpData(db);
	assert.notEqual(changed, before);
	const r = ops(db, ['restore', file]);
	assert.equal(r.code, 0, r.stderr);
	const m = r.stdout.match(new RegExp(`^restored (\\S+) \\(schema version ${V}\\) into (\\S+); the previous database is kept as (\\S+)\n$`));
	assert.ok(m, r.stdout);
	assert.equal(m[1], file);
	assert.equal(m[2], db);
	assert.match(path.basename(m[3]), /^sidecar_v2\.db\.replaced-\d{8}T\d{6}Z$/);
	assert.equal(dumpData(db), before);
	assert.equal(dumpData(m[3]), changed);
	assert.equal(sql(db, 'PRAGMA integrity_check;'), 'ok');
	assert.equal(sql(db, 'PRAGMA journal_mode;'), 'wal');
	assert.equal(fs.statSync(db).mode & 0o777, 0o660, 'mode of the replaced file kept');
	assert.deepEqual(leftovers(dir), []);
	// The backup itself is untouched and still restorable.
	assert.equal(sql(file, 'PRAGMA journal_mode;'), 'delete');
});

test('restore refuses while the data plane holds its lock', async (t) => {
	const { dir, db, before, file } = setup(t);
	sql(db, "DELETE FROM providers WHERE name = 'nim-02';");
	const changed = dumpData(db);
	const holder = start(t, OPS, ['--db', db, 'hold-lock']);
	await waitFor(holder.stdout, /locked/);
	let r = ops(db, ['restore', file]);
	assert.equal(r.code, 1);
	assert.equal(r.stdout, '');
	assert.match(r.stderr, new RegExp(`^sidecarctl restore: refused: the data plane is running \\(pid ${holder.pid} holds \\S+\\.lock\\); stop it first`));
	assert.equal(r.stderr.trim().split('\n').length, 1);
	assert.equal(dumpData(db), changed);
	assert.deepEqual(leftovers(dir), []);
	// Once it stops, the same restore goes through.
	holder.stdin.end();
	await new Promise((res) => holder.on('exit', res));
	r = ops(db, ['restore', file]);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(dumpData(db), before);
});

test('restore refuses a wrong key, a damaged file or a non-database', (t) => {
	const { dir, db, file } = setup(t);
	sql(db, "DELETE FROM providers WHERE name = 'nim-02';");
	const current = dumpData(db);
	const refused = (args, env, re) => {
		const r = ops(db, ['restore', ...args], { env });
		assert.equal(r.code, 1, r.stdout + r.stderr);
		assert.equal(r.stdout, '');
		assert.match(r.stderr, /^sidecarctl restore: refused: /);
		assert.match(r.stderr, re);
		assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
	};
	refused([file], { SIDECAR_ENCRYPTION_KEY: OTHER_KEY }, /encryption key does not match/);
	refused([file], { SIDECAR_ENCRYPTION_KEY: '' , SIDECAR_ENCRYPTION_KEY_FILE: path.join(dir, 'no-such-key') },
		/cannot check the encryption key/);
	// The key from a file named on the command line.
	const keyFile = path.join(dir, 'key');
	fs.writeFileSync(keyFile, OTHER_KEY + '\n', { mode: 0o600 });
	refused(['--key-file', keyFile, file], { SIDECAR_ENCRYPTION_KEY: '' }, /encryption key does not match/);
	// Damaged: garbage over the middle of a copy.
	const bad = path.join(dir, 'damaged.db');
	const big = path.join(dir, 'big.db');
	fs.copyFileSync(db, big);
	sql(big, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
		INSERT INTO daily_stats (id, date, pool) SELECT 'f-' || i || '|main', 'f-' || i, 'main' FROM n;
		PRAGMA journal_mode=DELETE;`);
	fs.copyFileSync(big, bad);
	const fd = fs.openSync(bad, 'r+');
	fs.writeSync(fd, Buffer.alloc(16384, 0x5a), 0, 16384, Math.floor(fs.fstatSync(fd).size / 2 / 4096) * 4096);
	fs.closeSync(fd);
	refused([bad], {}, /integrity check .*corrupt|malformed/);
	const junk = path.join(dir, 'junk.db');
	fs.writeFileSync(junk, 'not a database '.repeat(400));
	refused([junk], {}, /not a SQLite database|not a database/);
	refused([path.join(dir, 'missing.db')], {}, /No such file or directory/);
	refused([dir], {}, /not a regular file/);
	// A newer schema than this build knows.
	const newer = path.join(dir, 'newer.db');
	fs.copyFileSync(file, newer);
	sql(newer, 'PRAGMA user_version=99;');
	refused([newer], {}, /schema version 99, newer than this program supports/);
	assert.equal(dumpData(db), current, 'the current database is untouched');
	assert.deepEqual(leftovers(dir), []);
	assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.replaced-')));
	// Usage.
	assert.equal(ops(db, ['restore']).code, 2);
	assert.equal(ops(db, ['restore', file, file]).code, 2);
});

test('migrate upgrades a version-1 database with data after a backup; restore rolls back', (t) => {
	const dir = tmpdir(t);
	const db = path.join(dir, 'sidecar_v2.db');
	makeV1(db);
	const v1 = dumpData(db);
	assert.equal(sql(db, 'PRAGMA user_version;'), '1');
	// init never upgrades: it points at migrate, which takes a backup first.
	let r = ops(db, ['init']);
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, new RegExp(`schema version 1 is older than this program's \\(${V}\\): run \`sidecarctl migrate\``));
	assert.deepEqual(dumpData(db), v1);
	r = ops(db, ['migrate']);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stderr, '');
	const m = r.stdout.match(new RegExp(`^migrated (\\S+) from schema version 1 to ${V} \\(pre-migration backup: (\\S+)\\)\n$`));
	assert.ok(m, r.stdout);
	const pre = m[2];
	assert.equal(path.dirname(pre), path.join(dir, 'backups'));
	assert.match(path.basename(pre), /^sidecar_v2-\d{8}T\d{6}Z-premigrate-v1\.db$/);
	// Data intact, the latest version, the new structure present.
	assert.equal(sql(db, 'PRAGMA user_version;'), String(V));
	assert.equal(dumpUpgraded(db), v1);
	assert.equal(sql(db, 'PRAGMA integrity_check;'), 'ok');
	assert.equal(sql(db, 'PRAGMA foreign_key_check;'), '');
	assert.equal(sql(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('usage_provider_hour', 'sessions_token', 'sessions_expires', 'schema_migrations');"), '4');
	assert.equal(sql(db, 'SELECT version, backup_path FROM schema_migrations ORDER BY version;'), `2|\n3|\n4|${pre}`);
	assert.equal(sql(db, 'SELECT success, kind, schema_version, path FROM backups;'), `1|pre-migrate|1|${pre}`);
	// The backup is the version-1 database.
	assert.equal(sql(pre, 'PRAGMA user_version;'), '1');
	assert.equal(sql(pre, 'PRAGMA integrity_check;'), 'ok');
	assert.equal(dumpData(pre), v1);
	// Again: nothing to do, no new backup.
	r = ops(db, ['migrate']);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout, `schema version ${V} is current; nothing to migrate\n`);
	assert.equal(fs.readdirSync(path.join(dir, 'backups')).length, 1);
	// Daily pruning never removes a pre-migration backup.
	r = ops(db, ['backup', '--keep-days', '1']);
	assert.equal(r.code, 0, r.stderr);
	assert.ok(fs.existsSync(pre));
	// Rollback: restore the pre-migration backup.
	sql(db, "INSERT INTO daily_stats (id, date, pool) VALUES ('2026-11-26|main', '2026-11-26', 'main');");
	r = ops(db, ['restore', pre]);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /\(schema version 1\)/);
	assert.match(r.stdout, new RegExp(`^note: the backup has schema version 1 and this program expects ${V}`, 'm'));
	assert.equal(sql(db, 'PRAGMA user_version;'), '1');
	assert.equal(dumpData(db), v1);
	assert.equal(sql(db, "SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations';"), '0');
	// And the upgrade can be done again.
	r = ops(db, ['migrate']);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(sql(db, 'PRAGMA user_version;'), String(V));
	assert.equal(dumpUpgraded(db), v1);
});

test('migrate does nothing when its backup fails or the database is not upgradable', (t) => {
	const dir = tmpdir(t);
	const db = path.join(dir, 'sidecar_v2.db');
	makeV1(db);
	const file = path.join(dir, 'plain');
	fs.writeFileSync(file, 'x');
	let r = ops(db, ['migrate', '--dir', file]);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /^sidecarctl migrate: failed: backup before migrating: backup directory .* not a directory; nothing was changed\n/);
	assert.equal(sql(db, 'PRAGMA user_version;'), '1');
	// Newer than this build.
	sql(db, 'PRAGMA user_version=99;');
	r = ops(db, ['migrate']);
	assert.equal(r.code, 1);
	assert.match(r.stderr, new RegExp(`schema version 99 is newer than this program supports \\(${V}\\)`));
	// No schema at all.
	const empty = path.join(dir, 'empty.db');
	sql(empty, 'PRAGMA user_version=0;');
	r = ops(empty, ['migrate']);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /has no schema yet: run `sidecarctl init`/);
	r = ops(path.join(dir, 'absent.db'), ['migrate']);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /does not exist/);
	assert.equal(ops(db, ['migrate', '--bogus']).code, 2);
});
