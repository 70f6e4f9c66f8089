// sidecarctl backup: consistent copies while
// another process keeps writing, pruning by name, the outcome in the backups
// table, and one clear line plus a non-zero exit on each kind of failure
// (unwritable directory, full disk, corrupt source), and a read-only source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CTL, ops, sql, tmpdir, start, run, isRoot, LATEST_VERSION } from './ops_lib.mjs';

const NAME_RE = /^sidecar_v2-\d{8}T\d{6}Z\.db$/;

// A database at the newest schema with n rows of filler (so a copy takes a while).
function makeDb(t, n = 20000) {
	const dir = tmpdir(t);
	const db = path.join(dir, 'sidecar_v2.db');
	const r = ops(db, ['init']);
	assert.equal(r.code, 0, r.stderr);
	sql(db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})
		INSERT INTO daily_stats (id, date, pool, total_requests, total_tokens)
		SELECT 'fill-' || i || '|main', 'fill-' || i, 'main', i, i * 1000 FROM n;`);
	return { dir, db };
}

function lastBackupRow(db) {
	return sql(db, "SELECT success, kind, schema_version, size_bytes > 0, path, error FROM backups ORDER BY id DESC LIMIT 1");
}

test('backups taken while another process writes are consistent and recorded', async (t) => {
	const { dir, db } = makeDb(t);
	const bdir = path.join(dir, 'backups');
	// A writer in another process: one sqlite3 shell fed a row every few ms.
	const w = start(t, 'sqlite3', ['-batch', '-cmd', '.timeout 10000', db]);
	let seq = 0;
	const timer = setInterval(() => {
		seq++;
		w.stdin.write(`INSERT INTO daily_stats (id, date, pool, total_requests) VALUES ('w-${seq}|main', 'w-${seq}', 'main', ${seq});\n`);
	}, 3);
	t.after(() => clearInterval(timer));
	await new Promise((r) => setTimeout(r, 200));
	const files = [];
	for (let i = 0; i < 3; i++) {
		const committed = () => Number(sql(db, "SELECT count(*) FROM daily_stats WHERE id LIKE 'w-%';"));
		const before = committed();
		const r = await new Promise((resolve) => {
			const p = start(t, CTL, ['--db', db, 'backup', '--kind', 'scheduled']);
			let out = '', err = '';
			p.stdout.on('data', (d) => { out += d; });
			p.stderr.on('data', (d) => { err += d; });
			p.on('exit', (code) => resolve({ code, stdout: out, stderr: err }));
		});
		assert.equal(r.code, 0, r.stderr);
		assert.equal(r.stderr, '');
		const m = r.stdout.match(/^backup ok: (\S+) \((\d+) bytes, schema version (\d+), integrity ok; 0 old backups removed\)\n$/);
		assert.ok(m, r.stdout);
		files.push(m[1]);
		assert.equal(path.dirname(m[1]), bdir);
		assert.match(path.basename(m[1]), NAME_RE);
		assert.equal(fs.statSync(m[1]).size, Number(m[2]));
		// The copy is a self-contained, intact database holding a snapshot
		// that has every row written before the backup started.
		assert.equal(sql(m[1], 'PRAGMA integrity_check;'), 'ok');
		assert.equal(sql(m[1], 'PRAGMA journal_mode;'), 'delete');
		assert.ok(!fs.existsSync(m[1] + '-wal'));
		const copied = Number(sql(m[1], "SELECT count(*) FROM daily_stats WHERE id LIKE 'w-%';"));
		const after = committed();
		assert.ok(copied >= before && copied <= after, `copied ${copied} of ${before}..${after}`);
		assert.equal(sql(m[1], "SELECT count(*) FROM daily_stats WHERE id LIKE 'fill-%';"), '20000');
		assert.equal(lastBackupRow(db), `1|scheduled|${LATEST_VERSION}|1|${m[1]}|`);
		await new Promise((r2) => setTimeout(r2, 1100));	// names have one-second resolution
	}
	clearInterval(timer);
	w.stdin.end();
	await new Promise((r) => w.on('exit', r));
	assert.ok(seq > 50, `writer made progress (${seq})`);
	assert.equal(new Set(files).size, 3);
	// No temporary files are left behind.
	assert.deepEqual(fs.readdirSync(bdir).sort(), files.map((f) => path.basename(f)).sort());
	assert.equal(sql(db, 'PRAGMA integrity_check;'), 'ok');
	// What the metrics read: the newest row's success and finish time.
	const [ok, ts] = sql(db, "SELECT success, CAST(strftime('%s', finished_at) AS INTEGER) FROM backups ORDER BY id DESC LIMIT 1;").split('|');
	assert.equal(ok, '1');
	assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 60);
});

test('old backups beyond --keep-days are pruned, other files are not', (t) => {
	const { dir, db } = makeDb(t, 10);
	const bdir = path.join(dir, 'elsewhere');
	fs.mkdirSync(bdir);
	const old = new Date(Date.now() - 10 * 86400e3).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
	const recent = new Date(Date.now() - 2 * 86400e3).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
	const keep = [`sidecar_v2-${recent}.db`, `sidecar_v2-${old}-premigrate-v1.db`, `sidecar_v2-${old}.db.bak`, 'notes.txt'];
	for (const f of [...keep, `sidecar_v2-${old}.db`]) fs.writeFileSync(path.join(bdir, f), 'x');
	let r = ops(db, ['backup', '--dir', bdir, '--keep-days', '7']);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /; 1 old backup removed\)$/m);
	const left = fs.readdirSync(bdir);
	for (const f of keep) assert.ok(left.includes(f), `${f} kept`);
	assert.ok(!left.includes(`sidecar_v2-${old}.db`));
	assert.equal(left.filter((f) => NAME_RE.test(f)).length, 2);
	// --keep-days 1 removes the two-day-old one but never the new backup.
	r = ops(db, ['backup', '--dir', bdir, '--keep-days=1']);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /; 1 old backup removed\)$/m);
	assert.equal(fs.readdirSync(bdir).filter((f) => NAME_RE.test(f)).length, 2);
	// Usage errors exit 2.
	assert.equal(ops(db, ['backup', '--keep-days', '0']).code, 2);
	assert.equal(ops(db, ['backup', '--bogus']).code, 2);
	assert.equal(ops(db, ['backup', '--dir']).code, 2);
});

// One line on stderr, "sidecarctl backup: failed: ...", exit 1.
function assertFailed(r, re) {
	assert.equal(r.code, 1, r.stdout + r.stderr);
	assert.equal(r.stdout, '');
	const lines = r.stderr.trim().split('\n');
	assert.match(lines[0], /^sidecarctl backup: failed: /);
	assert.match(lines[0], re);
	// At most a warning about recording follows.
	for (const l of lines.slice(1)) assert.match(l, /^sidecarctl backup: warning: /);
}

test('an unwritable backup directory fails clearly and is recorded', (t) => {
	const { dir, db } = makeDb(t, 10);
	const file = path.join(dir, 'plain');
	fs.writeFileSync(file, 'x');
	let r = ops(db, ['backup', '--dir', path.join(file, 'sub')]);
	assertFailed(r, /Not a directory/);
	assert.match(lastBackupRow(db), /^0\|manual\|0\|0\|\|.*Not a directory/);
	r = ops(db, ['backup', '--dir', file]);
	assertFailed(r, /not a directory/);
	r = ops(db, ['backup', '--dir', path.join(dir, 'missing', 'deeper')]);
	assertFailed(r, /cannot create backup directory .*No such file or directory/);
	if (!isRoot()) {	// root ignores directory permissions
		const ro = path.join(dir, 'ro');
		fs.mkdirSync(ro, { mode: 0o555 });
		r = ops(db, ['backup', '--dir', ro]);
		assertFailed(r, /Permission denied/);
	}
	// The metric source says the last backup failed.
	assert.equal(sql(db, 'SELECT success FROM backups ORDER BY id DESC LIMIT 1;'), '0');
});

test('a full disk fails clearly and leaves no partial file', (t) => {
	const { dir, db } = makeDb(t);
	const bdir = path.join(dir, 'backups');
	fs.mkdirSync(bdir);
	const size = fs.statSync(db).size;
	assert.ok(size > 300 * 1024, `filler makes the database big (${size})`);
	// A file size limit (in 512-byte blocks) below the database size makes
	// every write past it fail as on a full disk; SIGXFSZ is ignored so the
	// write returns an error instead of killing the process.
	const r = run('sh', ['-c', `trap '' XFSZ; ulimit -f ${Math.floor(size / 512 / 2)}; exec "$0" "$@"`,
		CTL, '--db', db, 'backup', '--dir', bdir]);
	assertFailed(r, /disk full|File too large/);
	assert.deepEqual(fs.readdirSync(bdir), []);
	assert.match(lastBackupRow(db), /^0\|manual\|0\|0\|\|writing .*(disk full|File too large)/);
});

test('a corrupt source database fails clearly', (t) => {
	const { dir, db } = makeDb(t, 5000);
	const bdir = path.join(dir, 'backups');
	// Overwrite the middle of the file (b-tree pages) with garbage.
	const fd = fs.openSync(db, 'r+');
	const size = fs.fstatSync(fd).size;
	const junk = Buffer.alloc(4096 * 4, 0xa5);
	fs.writeSync(fd, junk, 0, junk.length, Math.floor(size / 2 / 4096) * 4096);
	fs.closeSync(fd);
	const r = ops(db, ['backup', '--dir', bdir]);
	assertFailed(r, /corrupt|malformed/);
	assert.deepEqual(fs.existsSync(bdir) ? fs.readdirSync(bdir) : [], []);
	// Not a database at all.
	const bogus = path.join(dir, 'bogus.db');
	fs.writeFileSync(bogus, 'this is not a database '.repeat(500));
	assertFailed(ops(bogus, ['backup', '--dir', bdir]), /not a SQLite database|not a database/);
	assertFailed(ops(path.join(dir, 'absent.db'), ['backup', '--dir', bdir]), /does not exist/);
});

test('a read-only database is still backed up; the outcome is only a warning', (t) => {
	const { dir, db } = makeDb(t, 10);
	const bdir = path.join(dir, 'backups');
	fs.mkdirSync(bdir, { mode: 0o777 });
	fs.chmodSync(bdir, 0o777);
	fs.chmodSync(db, 0o444);
	fs.chmodSync(dir, 0o755);
	let cmd = CTL;
	let args = ['--db', db, 'backup', '--dir', bdir];
	if (isRoot()) {
		// root writes anything: run as nobody, whom the modes above keep
		// out, from a copy of sidecarctl that nobody can reach.
		cmd = path.join(dir, 'sidecarctl');
		fs.copyFileSync(CTL, cmd);
		fs.chmodSync(cmd, 0o755);
		args = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', cmd, ...args];
		cmd = 'setpriv';
	}
	const r = run(cmd, args);
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stdout, /^backup ok: /);
	assert.match(r.stderr, /^sidecarctl backup: warning: outcome not recorded in the database \(.*read-only.*\)\n$/);
	const f = r.stdout.match(/^backup ok: (\S+)/)[1];
	assert.equal(sql(f, 'PRAGMA integrity_check;'), 'ok');
	assert.equal(sql(db, 'SELECT count(*) FROM backups;'), '0');
});
