// Black-box, robustness: crash recovery (issue 10). The data plane is killed
// with SIGKILL while clients keep it busy (plain and streaming requests, a
// cooldown just written); restarted on the same database it finds
// `PRAGMA integrity_check` ok, `sidecarctl check` clean, the cooldown still in
// force (the cooling key gets no traffic, /health says cooling) and serves at
// once. The bound on lost statistics is robust_crash_stats.test.mjs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0501-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0502-xxxxxxxxxxxxxxxx';
let mock, st, dp;

const sql = (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();

// Clients sending requests in a loop until stop(); counts what they saw.
function load(target, workers = 16) {
	let running = true;
	const seen = { ok: 0, other: 0, broken: 0 };
	const loops = Array.from({ length: workers }, async (_, i) => {
		while (running) {
			try {
				const r = await postJson(`${target().url}/chat/completions`, {
					model: 'mock/m', stream: i % 2 === 1, messages: [{ role: 'user', content: `load ${i}` }],
				});
				if (r.status === 200) seen.ok++; else seen.other++;
			} catch {
				seen.broken++;
				await sleep(20);
			}
		}
	});
	return { seen, async stop() { running = false; await Promise.all(loops); } };
}

describe('crash recovery', { timeout: 90000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }], chunks: 3, intervalMs: 20 });
		st = makeDb({
			providers: [
				{ name: 'a', key: K1, url: mock.url, prefix: 'mock/', rpm: 100000 },
				{ name: 'b', key: K2, url: mock.url, prefix: 'mock/', rpm: 100000 },
			],
			settings: { cooldown_base_seconds: 300, stats_flush_ms: 200 },
		});
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('kill -9 under load: database intact, cooldown kept, serving again at once', async () => {
		// A cooldown first (one 429 from K1, retried on b), written before the load.
		await mock.setKey(K1, 0, 'status=429', 1);
		let until = '';
		for (let i = 0; i < 10 && (until === '' || until === '0'); i++) {
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] });
			assert.equal(r.status, 200, r.body);
			until = sql("SELECT coalesce(cooldown_until, '') FROM providers WHERE name = 'a'");
		}
		assert.ok(until !== '' && until !== '0', 'no cooldown persisted for provider a');
		const ld = load(() => dp);
		try {
			await sleep(1500);
			assert.ok(ld.seen.ok > 20, `load too light: ${JSON.stringify(ld.seen)}`);
			dp.proc.kill('SIGKILL');
			await dp.wait();
		} finally {
			await ld.stop();
		}
		assert.equal(dp.exited().sig, 'SIGKILL');
		assert.ok(ld.seen.broken > 0, 'no request was cut by the kill');

		// The database survived.
		assert.equal(sql('PRAGMA integrity_check'), 'ok');
		assert.equal(sql('PRAGMA foreign_key_check'), '');
		execFileSync(st.ctl, ['--db', st.db, 'check'], { env: st.env, stdio: 'pipe' });
		assert.equal(sql("SELECT coalesce(cooldown_until, '') FROM providers WHERE name = 'a'"), until);
		assert.equal(sql("SELECT consecutive_429 FROM providers WHERE name = 'a'"), '1');

		// Restarted: the cooldown is still in force, and it serves at once.
		const before = (await mock.record()).length;
		const t0 = Date.now();
		dp = await startDataplane(st);
		for (let i = 0; i < 10; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] });
			assert.equal(r.status, 200, r.body);
			assert.equal(r.headers['x-sidecar-provider'], 'b');
		}
		assert.ok(Date.now() - t0 < 5000, `restart + 10 requests took ${Date.now() - t0} ms`);
		const after = (await mock.record()).slice(before);
		assert.equal(after.filter((x) => x.key === K1).length, 0, 'the cooling key got traffic after the restart');
		const h = JSON.parse((await request(`${dp.base}/health`)).body);
		assert.equal(h.providers.cooling, 1, JSON.stringify(h));

		// A second crash right after start (nothing in flight) is harmless too.
		dp.proc.kill('SIGKILL');
		await dp.wait();
		assert.equal(sql('PRAGMA integrity_check'), 'ok');
		dp = await startDataplane(st);
		assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] })).status, 200);
	});
});
