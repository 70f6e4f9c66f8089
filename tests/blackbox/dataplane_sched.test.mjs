// Black-box: the scheduling policy as the data plane applies it (SPEC §5):
// first-byte timeout and 429 retried on another key, the cooldown and the
// invalid mark persisted, the fallback pool marked degraded, requests over
// the RPM window waiting in the queue (never more than rpm_limit starts per
// window at the mock), a full queue answering 503 with Retry-After.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';
const K3 = 'nvapi-TEST-0003-xxxxxxxxxxxxxxxx';

const sql = (st, q) => execFileSync('sqlite3', [st.db, q]).toString().trim();
const chat = (dp, headers = {}) => postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] }, headers);

async function withStack(providers, settings, fn, mockOpts = {}) {
	const mock = await startMock({ keys: [{ key: K1 }, { key: K2 }, { key: K3 }], chunks: 2, intervalMs: 5, ...mockOpts });
	const st = makeDb({ providers: providers(mock), settings });
	const dp = await startDataplane(st);
	try {
		await fn({ mock, st, dp });
	} finally {
		await dp.stop();
		await mock.stop();
		cleanup(st);
	}
}

describe('data plane scheduling', { timeout: 90000 }, () => {
	it('retries a first-byte timeout, then a 429, on the other key; persists the cooldown', async () => {
		await withStack((m) => [
			{ name: 'k1', key: K1, url: m.url, prefix: 'mock/' },
			{ name: 'k2', key: K2, url: m.url, prefix: 'mock/' },
		], { upstream_ttfb_timeout: 1 }, async ({ mock, st, dp }) => {
			await mock.setKey(K1, 0, 'hang-first-byte', 0);
			const t0 = Date.now();
			for (let i = 0; i < 3; i++) {
				const r = await chat(dp);
				assert.equal(r.status, 200, r.body);
				assert.equal(r.headers['x-sidecar-provider'], 'k2');
			}
			assert.ok(Date.now() - t0 < 6000);
			assert.match(dp.logs(), /provider k1 failed/);

			await mock.setKey(K1, 0, 'status=429', 0);
			await mock.reset();
			await mock.setKey(K1, 0, 'status=429', 0);
			for (let i = 0; i < 4; i++) {
				const r = await chat(dp);
				assert.equal(r.status, 200, r.body);
				assert.equal(r.headers['x-sidecar-provider'], 'k2');
			}
			const rec = await mock.record();
			assert.ok(rec.filter((x) => x.key === K1).length <= 1, 'a cooling key was used again');
			assert.notEqual(sql(st, "SELECT cooldown_until FROM providers WHERE name='k1'"), '');
			assert.equal(sql(st, "SELECT consecutive_429 FROM providers WHERE name='k1'"), '1');
			assert.equal(sql(st, "SELECT COUNT(*) FROM cooldown_events"), '1');
			const h = JSON.parse((await request(`${dp.base}/health`)).body);
			assert.equal(h.providers.cooling, 1);
			assert.equal(h.status, 'degraded');
		});
	});

	it('keeps a cooldown across a restart', async () => {
		await withStack((m) => [
			{ name: 'c1', key: K1, url: m.url, prefix: 'mock/' },
			{ name: 'c2', key: K2, url: m.url, prefix: 'mock/' },
		], {}, async ({ mock, st, dp }) => {
			await mock.setKey(K1, 0, 'status=429', 1);
			for (let i = 0; i < 3; i++) assert.equal((await chat(dp)).status, 200);
			await dp.stop('SIGTERM');
			const dp2 = await startDataplane(st);
			try {
				await mock.reset();
				for (let i = 0; i < 4; i++) {
					const r = await chat(dp2);
					assert.equal(r.status, 200);
					assert.equal(r.headers['x-sidecar-provider'], 'c2');
				}
				const h = JSON.parse((await request(`${dp2.base}/health`)).body);
				assert.equal(h.providers.cooling, 1);
			} finally {
				await dp2.stop();
			}
		});
	});

	it('marks a key invalid on 401 and serves from another', async () => {
		await withStack((m) => [
			{ name: 'bad', key: 'nvapi-TEST-NOT-KNOWN-xxxxxxxxxx', url: m.url, prefix: 'mock/' },
			{ name: 'good', key: K2, url: m.url, prefix: 'mock/' },
		], {}, async ({ st, dp }) => {
			for (let i = 0; i < 3; i++) assert.equal((await chat(dp)).status, 200);
			assert.equal(sql(st, "SELECT status FROM providers WHERE name='bad'"), 'invalid');
			assert.ok(!dp.logs().includes('nvapi-TEST-NOT-KNOWN'));
		});
	});

	it('uses the fallback pool, marked degraded, while the main pool cools', async () => {
		await withStack((m) => [
			{ name: 'main1', key: K1, url: m.url, prefix: 'mock/' },
			{ name: 'fb1', key: K2, url: m.url, prefix: 'mock/', pool: 'fallback' },
		], {}, async ({ mock, dp }) => {
			assert.equal((await chat(dp)).headers['x-sidecar-pool'], 'main');
			await mock.setKey(K1, 0, 'status=429', 0);
			const r = await chat(dp);
			assert.equal(r.status, 200, r.body);
			assert.equal(r.headers['x-sidecar-provider'], 'fb1');
			assert.equal(r.headers['x-sidecar-pool'], 'fallback');
			assert.equal(r.headers['x-sidecar-degraded'], 'fallback');
		});
	});

	it('answers 503 with Retry-After when every key is rate limited, then uses the emergency channel', async () => {
		await withStack((m) => [
			{ name: 'e1', key: K1, url: m.url, prefix: 'mock/', rpm: 40 },
			{ name: 'e2', key: K2, url: m.url, prefix: 'mock/', rpm: 40 },
		], {}, async ({ mock, dp }) => {
			await mock.setKey(K1, 0, 'status=429', 0);
			await mock.setKey(K2, 0, 'status=429', 0);
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			const ra = +r.headers['retry-after'];
			assert.ok(ra >= 20 && ra <= 31, `Retry-After ${r.headers['retry-after']}`);
			assert.ok(JSON.parse(r.body).error);
			// The keys recover upstream; ours are still cooling: the emergency channel serves.
			await mock.setKey(K1, 0, null, 0);
			await mock.setKey(K2, 0, null, 0);
			const e = await chat(dp);
			assert.equal(e.status, 200, e.body);
			assert.equal(e.headers['x-sidecar-pool'], 'emergency');
			assert.equal(e.headers['x-sidecar-degraded'], 'emergency');
		});
	});

	it('queues requests over the window and never exceeds rpm_limit per window', async () => {
		await withStack((m) => [
			{ name: 'slow', key: K1, url: m.url, prefix: 'mock/', rpm: 2 },
		], { rpm_window_seconds: 2, rpm_window_margin_ms: 20 }, async ({ mock, dp }) => {
			const t0 = Date.now();
			const rs = await Promise.all([0, 1, 2, 3, 4].map(() => chat(dp)));
			const el = Date.now() - t0;
			for (const r of rs) assert.equal(r.status, 200, r.body);
			const waited = rs.map((r) => +r.headers['x-sidecar-queue-ms']).sort((a, b) => a - b);
			assert.ok(waited[0] < 200 && waited[1] < 200, `waits ${waited}`);
			assert.ok(waited[2] >= 1500 && waited[4] >= 3500, `waits ${waited}`);
			assert.ok(el >= 3900 && el < 8000, `took ${el} ms`);
			const ts = (await mock.record()).map((x) => x.t_ms).sort((a, b) => a - b);
			for (let i = 2; i < ts.length; i++) assert.ok(ts[i] - ts[i - 2] >= 1950, `starts ${ts}`);
		});
	});

	it('answers 503 with Retry-After when the queue is full or times out', async () => {
		await withStack((m) => [
			{ name: 'one', key: K1, url: m.url, prefix: 'mock/', rpm: 1 },
		], { rpm_window_seconds: 30, queue_capacity: 1, queue_timeout_seconds: 1, retry_after_seconds: 7 }, async ({ dp }) => {
			assert.equal((await chat(dp)).status, 200);
			const [a, b] = await Promise.all([chat(dp), (async () => { await sleep(100); return chat(dp); })()]);
			// b finds the queue full at once; a waits 1 s and times out. Both
			// say when the window's slot frees (~30 s after the first request),
			// not retry_after_seconds: that is only for when nothing is known.
			assert.equal(b.status, 503);
			assert.ok(+b.headers['retry-after'] >= 28 && +b.headers['retry-after'] <= 31, `Retry-After ${b.headers['retry-after']}`);
			assert.equal(JSON.parse(b.body).error.code, 'queue_full');
			assert.equal(a.status, 503);
			assert.ok(+a.headers['retry-after'] >= 27 && +a.headers['retry-after'] <= 30, `Retry-After ${a.headers['retry-after']}`);
			assert.equal(JSON.parse(a.body).error.code, 'queue_timeout');
			assert.match(JSON.parse(a.body).error.message, /^timed out waiting for a key: the key of mock\/ is rate limited; the next frees in \d+ s$/);
		});
	});
});
