// Black-box, robustness: regression tests for data-plane bugs the
// robustness suite found (issue 10), each fixed in dataplane/:
//
// 1-2. A 200 whose body is an HTML page (a proxy or captive portal in front
//    of the provider) reached the OpenAI client as "200 text/html". Nothing
//    has been sent when the upstream headers arrive, so it is an upstream
//    failure: retried on another provider, or a clean 502 in OpenAI shape.
// 3. A success finishing after a 429 of the same provider (a request already
//    in flight) persisted cooldown_until = NULL and consecutive_429 = 0 while
//    the cooldown was still in force in memory: after a crash or restart the
//    provider was used again at once.
// 4. While another process held the database's write lock, a cooldown save
//    ran on the event loop and stalled every client for the busy timeout (5 s).
// 5. The database file deleted or replaced underneath a running data plane
//    went unnoticed: no log line said so.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0401-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0402-xxxxxxxxxxxxxxxx';
let mock, st, dp;

const chat = (model, headers = {}, stream = false) =>
	postJson(`${dp.url}/chat/completions`, { model, stream, messages: [{ role: 'user', content: 'hi' }] }, headers);

describe('data-plane bugs found by the robustness suite', { timeout: 60000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
		st = makeDb({ providers: [
			{ name: 'a', key: K1, url: mock.url, prefix: 'pair/' },
			{ name: 'b', key: K2, url: mock.url, prefix: 'pair/' },
			{ name: 'solo', key: K2, url: mock.url, prefix: 'solo/' },
		] });
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('a 200 with an HTML body is an upstream failure: 502 alone', async () => {
		for (const stream of [false, true]) {
			const r = await chat('solo/m', { 'x-mock-fault': 'html' }, stream);
			assert.equal(r.status, 502, `stream=${stream}: ${r.status} ${r.headers['content-type']} ${r.body.slice(0, 80)}`);
			assert.match(r.headers['content-type'], /^application\/json/);
			assert.ok(JSON.parse(r.body).error);
		}
	});

	it('a 200 with an HTML body is retried on the other provider', async () => {
		await mock.setKey(K1, 0, 'html', 0);
		for (let i = 0; i < 4; i++) {
			const r = await chat('pair/m');
			assert.equal(r.status, 200);
			assert.match(r.headers['content-type'], /^application\/json/, `answer ${i}: ${r.body.slice(0, 80)}`);
			assert.equal(r.headers['x-sidecar-provider'], 'b');
		}
	});

	it('a cooldown stays persisted when an older request to the provider succeeds', async () => {
		const m = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
		const s2 = makeDb({ providers: [
			{ name: 'a', key: K1, url: m.url, prefix: 'm/' },
			{ name: 'b', key: K2, url: m.url, prefix: 'm/' },
		], settings: { cooldown_base_seconds: 300 } });
		let d = await startDataplane(s2);
		const sql = (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', s2.db, q]).toString().trim();
		try {
			// Two slow requests in flight, one on each provider.
			const slow = [0, 1].map(() => postJson(`${d.url}/chat/completions`, { model: 'm/x', messages: [] },
				{ 'x-mock-latency-ms': '1500' }));
			await m.waitRecord((l) => l.length === 2);
			// The next request to a gets a 429: a cools down (and the request goes to b).
			await m.setKey(K1, 0, 'status=429', 1);
			let until = '';
			for (let i = 0; i < 6 && !until; i++) {
				assert.equal((await postJson(`${d.url}/chat/completions`, { model: 'm/x', messages: [] })).status, 200);
				until = sql("SELECT coalesce(cooldown_until, '') FROM providers WHERE name = 'a'");
			}
			assert.ok(until, 'no cooldown');
			// The slow request on a now succeeds: the cooldown must stay in the database.
			for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
			await sleep(200);
			assert.equal(sql("SELECT coalesce(cooldown_until, '') FROM providers WHERE name = 'a'"), until,
				'the cooldown was wiped from the database while still in force');
			d.proc.kill('SIGKILL');
			await d.wait();
			d = await startDataplane(s2);
			const before = (await m.record()).length;
			for (let i = 0; i < 4; i++) await postJson(`${d.url}/chat/completions`, { model: 'm/x', messages: [] });
			assert.equal((await m.record()).slice(before).filter((x) => x.key === K1).length, 0,
				'the cooling provider got traffic after a restart');
		} finally {
			await d.stop();
			await m.stop();
			cleanup(s2);
		}
	});

	it('a held database lock does not stall the event loop when a cooldown is saved', async () => {
		const m = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
		const s2 = makeDb({ providers: [
			{ name: 'a', key: K1, url: m.url, prefix: 'm/', rpm: 100000 },
			{ name: 'b', key: K2, url: m.url, prefix: 'm/', rpm: 100000 },
		] });
		const d = await startDataplane(s2);
		const p = spawn('sqlite3', [s2.db], { stdio: ['pipe', 'pipe', 'ignore'] });
		try {
			p.stdin.write(".timeout 5000\nBEGIN EXCLUSIVE;\nUPDATE meta SET value = value WHERE key = 'config_version';\nSELECT 'locked';\n");
			await new Promise((r) => p.stdout.once('data', r));
			await m.setKey(K1, 0, 'status=429', 1);
			let worst = 0;
			for (let i = 0; i < 6; i++) {
				const t0 = Date.now();
				assert.equal((await postJson(`${d.url}/chat/completions`, { model: 'm/x', messages: [] })).status, 200);
				worst = Math.max(worst, Date.now() - t0);
			}
			assert.ok(worst < 1000, `a request took ${worst} ms while a cooldown waited for the lock`);
		} finally {
			p.stdin.end('COMMIT;\n.quit\n');
			await d.stop();
			await m.stop();
			cleanup(s2);
		}
	});

	it('logs the database file being deleted or replaced underneath it', async () => {
		const m = await startMock({ keys: [{ key: K1 }] });
		const s2 = makeDb({ providers: [{ name: 'a', key: K1, url: m.url, prefix: 'm/' }], settings: { stats_flush_ms: 200 } });
		const d = await startDataplane(s2);
		try {
			const copy = join(s2.dir, 'copy.db');
			execFileSync('sqlite3', [s2.db, `VACUUM INTO '${copy}'`]);
			for (const x of ['', '-wal', '-shm']) rmSync(s2.db + x, { force: true });
			await postJson(`${d.url}/chat/completions`, { model: 'm/x', messages: [] });
			await sleep(3000);
			assert.match(d.logs(), /(database|sidecar_v2\.db).*(deleted|removed|missing|gone|replaced)/i, 'nothing logged about the deleted database');
			copyFileSync(copy, join(s2.dir, 'in.db'));
			renameSync(join(s2.dir, 'in.db'), s2.db);
			await sleep(3000);
			assert.match(d.logs(), /(database|sidecar_v2\.db).*replaced/i, 'nothing logged about the replaced database');
		} finally {
			await d.stop();
			await m.stop();
			cleanup(s2);
		}
	});
});
