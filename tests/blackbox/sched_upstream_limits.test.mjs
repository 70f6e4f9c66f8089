// Black-box: scheduling against an upstream whose real limits differ from the
// configured ones (issue 15). The mock upstream answers 429 at once past its
// own per-key (and per-model) window; windows are compressed to seconds.
//
//   1. 16 clients at once on a key that always answers 429: one backoff step
//      per cooldown episode, over several rounds (cooldown_events)
//   2. configured 40, real 25, demand above capacity for 6 windows: after
//      the first window at most one 429 per window on that key, effective
//      limit 25 (or 24), goodput >= 95 % of the real capacity
//   3. a cooldown ends with 30 requests waiting: one request (the half-open
//      probe) reaches the upstream before the first answer returns; /health
//      says probing meanwhile
//   4. a model with its own limit: its window is never exceeded while other
//      models on the same key keep flowing
//   5. windows survive a restart: SIGTERM and kill -9
//   6. a request waits for the key it already tried when that key recovers
//      within recover_wait_seconds
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, metric, postJson, request, sleep, startDataplane, until as untilEvery } from './lib/stack.mjs';

const key = (i) => `nvapi-TEST-${String(i).padStart(4, '0')}-xxxxxxxxxxxxxxxx`;
const sql = (st, q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
const chat = (dp, model = 'mock/x', headers = {}) =>
	postJson(`${dp.url}/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] }, headers);
const health = async (dp) => JSON.parse((await request(`${dp.base}/health`)).body);

const until = (pred, ms, what) => untilEvery(pred, ms, what, 25);

async function withStack({ keys, windowMs = 2000, providers, settings, mockOpts = {} }, fn) {
	const mock = await startMock({ keys, windowMs, chunks: 1, intervalMs: 1, ...mockOpts });
	let st = null;
	const ctx = { mock };
	try {
		st = makeDb({ providers: providers(mock), settings });
		ctx.st = st;
		ctx.dp = await startDataplane(st);
		await fn(ctx);
	} finally {
		if (ctx.dp) await ctx.dp.stop();
		await mock.stop();
		cleanup(st);
	}
}

const chatRec = async (mock) => (await mock.record()).filter((x) => x.path.endsWith('/chat/completions'));

describe('issue 15: real upstream limits', { timeout: 120000 }, () => {
	it('1. 16 clients on an always-429 key: each cooldown episode adds exactly one backoff step', async (t) => {
		const K = key(1501);
		await withStack({
			keys: [{ key: K }],
			providers: (m) => [{ name: 'hot', key: K, url: m.url, rpm: 100 }],
			// emergency_rpm_ratio 0: the emergency channel's floor of one start per
			// (60 s) window, so at most one emergency attempt in the whole test.
			settings: { cooldown_base_seconds: 1, cooldown_max_seconds: 60, recover_wait_seconds: 0,
				queue_timeout_seconds: 5, emergency_rpm_ratio: 0 },
		}, async ({ mock, st, dp }) => {
			await mock.setKey(K, 0, 'status=429', 0);
			// 16 kept-alive connections, opened first, so that the 16 requests
			// arrive together (released at once, as from a queue).
			const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
			const post = () => request(`${dp.url}/chat/completions`, { method: 'POST', agent,
				headers: { 'content-type': 'application/json' },
				body: JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] }) });
			const rounds = 3;
			const sentPerRound = [];
			for (let round = 1; round <= rounds; round++) {
				await Promise.all(Array.from({ length: 16 }, () => request(`${dp.base}/health`, { agent })));
				const before = (await chatRec(mock)).length;
				const rs = await Promise.all(Array.from({ length: 16 }, post));
				for (const r of rs) assert.equal(r.status, 503, r.body);
				sentPerRound.push((await chatRec(mock)).length - before);
				const counts = await until(() => {
					const t = sql(st, "SELECT e.consecutive_count FROM cooldown_events e JOIN providers p " +
						"ON p.id = e.provider_id WHERE p.name = 'hot' ORDER BY e.rowid");
					const l = t ? t.split('\n').map(Number) : [];
					return l.length >= round ? l : null;
				}, 3000, `cooldown event ${round}`);
				assert.deepEqual(counts, Array.from({ length: round }, (_, i) => i + 1), `round ${round}`);
				// Wait for the cooldown (1, 2 s) to end: the key is probing.
				if (round < rounds) await until(async () => (await health(dp)).providers.probing === 1, 6000, 'probing');
			}
			agent.destroy();
			// Round 1: several went at once (all answered 429, one step); later
			// rounds: one half-open probe each, plus at most one emergency attempt.
			t.diagnostic(`upstream attempts per round: ${sentPerRound}`);
			assert.ok(sentPerRound[0] >= 2, `sent per round ${sentPerRound}`);
			const later = sentPerRound.slice(1);
			assert.ok(later.every((n) => n >= 1) && later.reduce((a, b) => a + b, 0) <= rounds - 1 + 1,
				`sent per round ${sentPerRound}`);
			assert.equal(sql(st, "SELECT consecutive_429 FROM providers WHERE name = 'hot'"), String(rounds));
		});
	});

	it('2. configured 40, real 25: one 429 at most per window after the first, effective 25, goodput >= 95 %', async (t) => {
		const K1 = key(1502), K2 = key(1503);
		const WIN = 2000, MARGIN = 250, SPAN = WIN + MARGIN, REAL = 25 + 20;
		await withStack({
			keys: [{ key: K1, rpm: 25 }, { key: K2, rpm: 20 }], windowMs: WIN,
			providers: (m) => [
				{ name: 'lower', key: K1, url: m.url, rpm: 40 },
				{ name: 'exact', key: K2, url: m.url, rpm: 20 },
			],
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: MARGIN, cooldown_base_seconds: 1,
				queue_timeout_seconds: 4, recover_wait_seconds: 10, max_attempts: 3 },
		}, async (ctx) => {
			const { mock, dp } = ctx;
			const LOAD_MS = 6 * SPAN;
			const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
			const perMs = (1.6 * REAL) / SPAN;
			const pending = [];
			const t0 = Date.now();
			let sent = 0;
			while (Date.now() - t0 < LOAD_MS) {
				const due = Math.floor((Date.now() - t0) * perMs) + 1;
				for (; sent < due; sent++) {
					pending.push(request(`${dp.url}/chat/completions`, { method: 'POST', agent,
						headers: { 'content-type': 'application/json' },
						body: JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] }) })
						.catch((e) => ({ status: -1, body: String(e) })));
				}
				await sleep(5);
			}
			const rs = await Promise.all(pending);
			agent.destroy();
			for (const r of rs) assert.ok(r.status === 200 || r.status === 503, `${r.status} ${r.body}`);
			const rec = await chatRec(mock);
			const first = Math.min(...rec.map((x) => x.t_ms));
			const spans = [];
			for (let w = 0; first + (w + 1) * SPAN <= first + LOAD_MS - 200; w++) {
				const a = first + w * SPAN, b = a + SPAN;
				const inw = rec.filter((x) => x.t_ms >= a && x.t_ms < b);
				spans.push({ ok: inw.filter((x) => x.status === 200).length,
					low429: inw.filter((x) => x.key === K1 && x.status === 429).length });
			}
			const eff = await metric(dp, 'sidecar_provider_rpm_limit{provider="lower",kind="effective"}');
			t.diagnostic(`per ${SPAN} ms window (200s / 429s on the lower key): ` +
				`${spans.map((s) => `${s.ok}/${s.low429}`).join(' ')}; effective limit ${eff}`);
			assert.ok(spans.length >= 5, `windows ${spans.length}`);
			for (const s of spans.slice(1)) assert.ok(s.low429 <= 1, `429s per window ${spans.map((x) => x.low429)}`);
			assert.ok(eff === 25 || eff === 24, `effective limit ${eff}`);
			assert.equal(await metric(dp, 'sidecar_provider_rpm_limit{provider="lower",kind="configured"}'), 40);
			const good = spans.slice(1).reduce((a, s) => a + s.ok, 0);
			assert.ok(good >= 0.95 * REAL * (spans.length - 1), `goodput ${good} of ${REAL * (spans.length - 1)}`);
			// The client never saw a 429.
			assert.ok(rs.every((r) => r.status !== 429));
			// Persisted: after a restart the limit is still the learned one (no 429 to learn it again).
			await ctx.dp.stop('SIGTERM');
			ctx.dp = await startDataplane(ctx.st);
			assert.equal(await metric(ctx.dp, 'sidecar_provider_rpm_limit{provider="lower",kind="effective"}'), eff);
		});
	});

	it('3. a cooldown ends with 30 waiting: one request reaches the upstream before the first answer returns', async () => {
		const K = key(1504);
		await withStack({
			keys: [{ key: K }], mockOpts: { latencyMs: 1000 },
			providers: (m) => [{ name: 'solo', key: K, url: m.url, rpm: 1000 }],
			settings: { cooldown_base_seconds: 2, recover_wait_seconds: 10, queue_timeout_seconds: 20,
				status_publish_ms: 100 },
		}, async ({ mock, st, dp }) => {
			await mock.setKey(K, 0, 'status=429', 1);
			const first = chat(dp);	/* meets the 429, waits for the key (recover_wait) */
			first.catch(() => {});	/* a failed assertion below must not hide behind its rejection */
			await until(async () => (await health(dp)).providers.cooling === 1, 3000, 'cooling');
			const rest = Array.from({ length: 30 }, () => chat(dp));
			for (const r of rest) r.catch(() => {});
			await sleep(200);
			assert.equal((await health(dp)).queue.depth, 31);
			// While the probe is out the key is probing and nothing else goes.
			const h = await until(async () => { const x = await health(dp); return x.providers.probing === 1 ? x : null; },
				4000, 'probing');
			assert.equal(h.providers.cooling, 0);
			// The same state in /metrics and in the live status snapshot (what the
			// admin API's provider objects carry as live and the dashboard shows).
			assert.equal(await metric(dp, 'sidecar_provider_state{provider="solo",state="probing"}'), 1);
			const live = await until(() => {
				const snap = JSON.parse(sql(st, 'SELECT snapshot FROM live_status WHERE id = 1') || '{}');
				return (snap.providers || []).find((p) => p.name === 'solo' && p.state === 'probing');
			}, 900, 'probing in the live status');
			// The isolated 429 (at 0 of 1000 in the window) halved the effective limit, no more.
			assert.equal(live.rpm_limit, 1000);
			assert.equal(live.rpm_limit_effective, 500);
			const rs = await Promise.all([first, ...rest]);
			for (const r of rs) assert.equal(r.status, 200, r.body);
			const rec = (await chatRec(mock)).filter((x) => x.status === 200).sort((a, b) => a.t_ms - b.t_ms);
			assert.equal(rec.length, 31);
			assert.ok(rec[0].t_end_ms <= rec[1].t_ms, `second start ${rec[1].t_ms} before the probe answered ${rec[0].t_end_ms}`);
			assert.equal((await health(dp)).providers.probing, 0);
		});
	});

	it('4. a model with its own window: never exceeded, other models on the key keep flowing', async () => {
		const K = key(1505), WIN = 2000;
		await withStack({
			keys: [{ key: K, rpm: 100 }], windowMs: WIN,
			providers: (m) => [{ name: 'multi', key: K, url: m.url, rpm: 100, modelRpm: { big: 4 } }],
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: 250, queue_timeout_seconds: 15 },
		}, async ({ mock, dp }) => {
			await mock.setModelRpm(K, { big: 4 });
			const t0 = Date.now();
			const big = Array.from({ length: 12 }, () => chat(dp, 'mock/big').then((r) => ({ r, ms: Date.now() - t0 })));
			await sleep(50);
			const small = Array.from({ length: 20 }, () => chat(dp, 'mock/small').then((r) => ({ r, ms: Date.now() - t0 })));
			const s = await Promise.all(small);
			for (const x of s) assert.equal(x.r.status, 200, x.r.body);
			assert.ok(Math.max(...s.map((x) => x.ms)) < 1500, `small requests took ${s.map((x) => x.ms)}`);
			const b = await Promise.all(big);
			for (const x of b) assert.equal(x.r.status, 200, x.r.body);
			assert.ok(Math.max(...b.map((x) => x.ms)) >= 2 * WIN, 'big requests did not wait for their window');
			const rec = await chatRec(mock);
			assert.equal(rec.filter((x) => x.status === 429).length, 0, 'the upstream answered 429');
			const ts = rec.filter((x) => x.model === 'big').map((x) => x.t_ms).sort((a, c) => a - c);
			assert.equal(ts.length, 12);
			for (let i = 4; i < ts.length; i++) assert.ok(ts[i] - ts[i - 4] >= WIN, `big over its window: ${ts}`);
		});
	});

	for (const signal of ['SIGTERM', 'SIGKILL']) {
		it(`5. windows survive a restart (${signal}): 5 + restart + 5 never puts 10 in one window`, async () => {
			const K = key(signal === 'SIGTERM' ? 1506 : 1507), WIN = 3000;
			await withStack({
				keys: [{ key: K, rpm: 5 }], windowMs: WIN,
				providers: (m) => [{ name: 'five', key: K, url: m.url, rpm: 5 }],
				settings: { rpm_window_seconds: 3, rpm_window_margin_ms: 250, queue_timeout_seconds: 15 },
			}, async (ctx) => {
				const { mock } = ctx;
				for (let i = 0; i < 5; i++) assert.equal((await chat(ctx.dp)).status, 200);
				await ctx.dp.stop(signal);
				ctx.dp = await startDataplane(ctx.st);
				const rs = await Promise.all(Array.from({ length: 5 }, () => chat(ctx.dp)));
				for (const r of rs) assert.equal(r.status, 200, r.body);
				const rec = await chatRec(mock);
				assert.equal(rec.filter((x) => x.status === 429).length, 0, 'the upstream answered 429 after the restart');
				const ts = rec.map((x) => x.t_ms).sort((a, b) => a - b);
				assert.equal(ts.length, 10);
				for (let i = 5; i < ts.length; i++) assert.ok(ts[i] - ts[i - 5] >= WIN, `more than 5 in a window: ${ts}`);
			});
		});
	}

	it('6. one key cooling 1 s, recover_wait 10 s: the request waits for it and gets an answer, not a 503', async () => {
		const K = key(1508);
		await withStack({
			keys: [{ key: K }],
			providers: (m) => [{ name: 'only', key: K, url: m.url, rpm: 100 }],
			settings: { cooldown_base_seconds: 1, recover_wait_seconds: 10 },
		}, async ({ mock, dp }) => {
			await mock.setKey(K, 0, 'status=429', 1);
			const t0 = Date.now();
			const r = await chat(dp);
			const ms = Date.now() - t0;
			assert.equal(r.status, 200, r.body);
			assert.ok(ms >= 900 && ms < 5000, `answered after ${ms} ms`);
			const rec = await chatRec(mock);
			assert.deepEqual(rec.map((x) => x.status), [429, 200]);
			// Beyond recover_wait the 503 comes at once, as before.
		});
	});
});
