// Black-box, robustness: database faults (issue 10). Another process holds
// the write lock (sqlite3 CLI, BEGIN EXCLUSIVE) longer than the busy timeout:
// admin writes answer 503 + Retry-After, reads and the data plane keep
// working. The disk fills up (ulimit -f on sidecarctl; a small tmpfs under a
// running data plane when this host lets us mount one): a clear error, the
// import all-or-nothing, the database intact, and the statistics caught up
// once space returns. The database file is deleted or replaced underneath a
// running data plane: no crash, it keeps serving, and a restart works.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { api, makeAdminDb, startLighttpd } from './lib/lighttpd.mjs';
import { cleanup, makeDb, postJson, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0701-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0702-xxxxxxxxxxxxxxxx';
let mock;

const sqlOf = (db) => (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', db, q]).toString().trim();

async function timedChat(dp) {
	const t0 = Date.now();
	const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] });
	return { status: r.status, ms: Date.now() - t0, body: r.body };
}

// Hold the database's write lock from a sqlite3 process until release().
async function holdLock(db) {
	const p = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] });
	p.stdin.write(".timeout 5000\nBEGIN EXCLUSIVE;\nUPDATE meta SET value = value WHERE key = 'config_version';\nSELECT 'locked';\n");
	await new Promise((resolve, reject) => {
		p.stdout.once('data', resolve);
		p.once('exit', (c) => reject(new Error(`sqlite3 exited ${c}`)));
	});
	return {
		async release() {
			if (p.exitCode !== null) return;
			p.stdin.end('COMMIT;\n.quit\n');
			await new Promise((r) => p.once('exit', r));
		},
	};
}

// A provider file big enough to need a few MB of database.
function bigYaml(n) {
	let y = 'providers:\n';
	for (let i = 0; i < n; i++) {
		y += `- account: acct${String(i).padStart(5, '0')}\n  api_key: nvapi-TEST-${String(i).padStart(4, '0')}-${'x'.repeat(40)}\n` +
			`  endpoint_url: https://integrate.api.nvidia.com/v1\n  model_prefix: "p${i}/"\n  rpm_limit: 40\n  notes: "${'n'.repeat(200)}"\n`;
	}
	return y;
}

describe('database faults', { timeout: 120000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
	});
	after(async () => {
		if (mock) await mock.stop();
	});

	it('a writer holding the lock past the busy timeout: admin 503 + Retry-After, reads and the data plane work', async () => {
		const st = makeAdminDb({ providers: [
			{ name: 'a', key: K1, url: mock.url, rpm: 100000 },
			{ name: 'b', key: K2, url: mock.url, rpm: 100000 },
		] });
		const dp = await startDataplane(st);
		const lt = await startLighttpd(st);
		let lock;
		try {
			lock = await holdLock(st.db);
			const t0 = Date.now();
			const write = api(lt, 'PATCH', '/config', { token: st.token, body: { queue_capacity: 400 } })
				.then((r) => ({ ...r, ms: Date.now() - t0 }));
			const read = await api(lt, 'GET', '/providers', { token: st.token });
			assert.equal(read.status, 200, read.body);
			assert.equal(read.json.providers?.length ?? read.json.length, 2);
			// The data plane serves normal requests while the lock is held.
			for (let i = 0; i < 10; i++) {
				const r = await timedChat(dp);
				assert.equal(r.status, 200, r.body);
				assert.ok(r.ms < 1000, `request took ${r.ms} ms while the database was locked`);
			}
			const w = await write;
			assert.equal(w.status, 503, `admin write under a lock: ${w.status} ${w.body}`);
			assert.match(w.headers['retry-after'] ?? '', /^\d+$/);
			assert.ok(w.json?.error?.message, w.body);
			assert.ok(w.ms >= 4000, `gave up after ${w.ms} ms, before the busy timeout`);
			await lock.release();
			// Released: the same write goes through, the data plane still serves.
			const again = await api(lt, 'PATCH', '/config', { token: st.token, body: { queue_capacity: 400 } });
			assert.equal(again.status, 200, again.body);
			assert.equal((await timedChat(dp)).status, 200);
			assert.equal(sqlOf(st.db)('PRAGMA integrity_check'), 'ok');
			assert.equal(dp.exited(), null);
		} finally {
			if (lock) await lock.release();
			await lt.stop();
			await dp.stop();
			cleanup(st);
		}
	});

	it('disk full (ulimit -f): sidecarctl fails clearly, imports nothing, the database stays intact', async () => {
		const st = makeDb({ providers: [{ name: 'a', key: K1, url: mock.url }] });
		try {
			const f = join(st.dir, 'big.yaml');
			writeFileSync(f, bigYaml(3000));
			// SIGXFSZ ignored (inherited through exec), so writes fail with EFBIG
			// instead of killing the program: what a full disk looks like to it.
			const r = spawnSync('sh', ['-c', 'trap "" XFSZ; ulimit -f 1024; exec "$0" --db "$1" import "$2"', st.ctl, st.db, f],
				{ env: st.env, encoding: 'utf8' });
			assert.notEqual(r.status, 0, 'the import succeeded past the file size limit');
			assert.equal(r.signal, null, `killed by ${r.signal}`);
			assert.match(r.stderr, /disk|full|I\/O|too large|space/i, `unclear error: ${r.stderr}`);
			assert.ok(!r.stderr.includes('nvapi-TEST-'), 'a key in the error');
			const sql = sqlOf(st.db);
			assert.equal(sql('PRAGMA integrity_check'), 'ok');
			assert.equal(sql('SELECT count(*) FROM providers'), '1', 'a partial import');
			execFileSync(st.ctl, ['--db', st.db, 'check'], { env: st.env, stdio: 'pipe' });
			// Without the limit the same file imports.
			execFileSync(st.ctl, ['--db', st.db, 'import', f], { env: st.env, stdio: 'pipe' });
			assert.equal(sql('SELECT count(*) FROM providers'), '3001');
		} finally {
			cleanup(st);
		}
	});

	it('disk full (tmpfs) under a running data plane: serving goes on, statistics catch up', async (t) => {
		const mnt = mkdtempSync(join(tmpdir(), 'sc-full-'));
		const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt], { encoding: 'utf8' });
		if (m.status !== 0) {
			// Not root, or no mount permission here: the ulimit -f case above covers sidecarctl.
			// Reported as a skip, never as a pass.
			rmSync(mnt, { recursive: true, force: true });
			t.skip(`tmpfs not mountable here (${m.stderr.trim()}); data-plane disk-full case not run`);
			return;
		}
		const st = makeDb({ providers: [{ name: 'a', key: K1, url: mock.url, rpm: 100000 }], settings: { stats_flush_ms: 200 } });
		let dp;
		try {
			const db = join(mnt, 'sidecar_v2.db');
			execFileSync('sqlite3', [st.db, `VACUUM INTO '${db}'`]);
			st.db = db;
			dp = await startDataplane(st);
			assert.equal((await timedChat(dp)).status, 200);
			// Fill the file system to the last byte.
			const filler = join(mnt, 'filler');
			spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4096'], { stdio: 'ignore' });
			const sent = 60;
			for (let i = 0; i < sent; i++) {
				const r = await timedChat(dp);
				assert.equal(r.status, 200, r.body);
				assert.ok(r.ms < 1000, `request took ${r.ms} ms on a full disk`);
			}
			await sleep(1000);
			assert.equal(dp.exited(), null, `the data plane died: ${dp.logs().slice(-2000)}`);
			assert.match(dp.logs(), /(full|disk|I\/O)/i, 'no log line about the failed writes');
			rmSync(filler);
			// Space is back: the pending statistics are written.
			const sql = sqlOf(db);
			let n = 0;
			for (let i = 0; i < 50 && n < sent + 1; i++) {
				await sleep(100);
				n = Number(sql('SELECT coalesce(sum(request_count), 0) FROM provider_usage_logs'));
			}
			assert.equal(n, sent + 1, 'statistics lost to the full disk');
			await dp.stop('SIGTERM');
			dp = null;
			assert.equal(sql('PRAGMA integrity_check'), 'ok');
		} finally {
			if (dp) await dp.stop();
			spawnSync('umount', ['-l', mnt]);
			rmSync(mnt, { recursive: true, force: true });
			cleanup(st);
		}
	});

	it('the database deleted or replaced underneath the data plane: no crash, serving goes on', async () => {
		const st = makeDb({ providers: [
			{ name: 'a', key: K1, url: mock.url, rpm: 100000 },
			{ name: 'b', key: K2, url: mock.url, rpm: 100000 },
		], settings: { stats_flush_ms: 200 } });
		let dp = await startDataplane(st);
		try {
			const copy = join(st.dir, 'copy.db');
			execFileSync('sqlite3', [st.db, `VACUUM INTO '${copy}'`]);
			// Deleted (with its WAL and shared memory).
			for (const s of ['', '-wal', '-shm']) rmSync(st.db + s, { force: true });
			for (let i = 0; i < 5; i++) assert.equal((await timedChat(dp)).status, 200);
			await mock.setKey(K1, 0, 'status=429', 1);	// a write (cooldown) with the file gone
			for (let i = 0; i < 4; i++) assert.equal((await timedChat(dp)).status, 200);
			await sleep(1500);
			assert.equal(dp.exited(), null, `the data plane died: ${dp.logs().slice(-2000)}`);
			// Replaced by another database (a restored copy), renamed into place.
			const tmp = join(st.dir, 'incoming.db');
			copyFileSync(copy, tmp);
			renameSync(tmp, st.db);
			for (let i = 0; i < 5; i++) assert.equal((await timedChat(dp)).status, 200);
			await sleep(1500);
			assert.equal(dp.exited(), null, `the data plane died: ${dp.logs().slice(-2000)}`);
			assert.ok(!dp.logs().includes('nvapi-TEST-'), 'a key in the log');
			// A restart uses the new file.
			await dp.stop('SIGTERM');
			dp = await startDataplane(st);
			assert.equal((await timedChat(dp)).status, 200);
			assert.equal(sqlOf(st.db)('PRAGMA integrity_check'), 'ok');
		} finally {
			await dp.stop();
			cleanup(st);
		}
	});
});
