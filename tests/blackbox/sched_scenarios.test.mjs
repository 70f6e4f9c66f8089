// Black-box: the seven scheduling scenarios of issue 4, end to end. The real
// data plane in front of the mock upstream, which enforces the same per-key
// limits on a compressed window (2 s instead of 60 s). Every scenario is
// asserted from what clients receive (status, headers, body), from the
// mock's record of what reached the upstream, and from the database.
//
//   1. oversubscription: no upstream 429, >= 97 % of capacity per window
//   2. a key limited lower upstream: 429 -> backoff 1, 2, 4 s, retried elsewhere
//   3. main cooling -> fallback; all cooling -> emergency budget; beyond -> 503
//   4. a main key recovering within recover_wait_seconds is waited for
//   5. revoked key -> invalid; flapping key -> unhealthy -> probes -> healthy
//   6. a cooldown survives kill -9
//   7. queue priority order, overflow at capacity + 1, deadline
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, sleep, startDataplane, until } from './lib/stack.mjs';

const key = (i) => `nvapi-TEST-${String(i).padStart(4, '0')}-xxxxxxxxxxxxxxxx`;

const sql = (st, q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
const chat = (dp, headers = {}, model = 'mock/x') =>
	postJson(`${dp.url}/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] }, headers);
const health = async (dp) => JSON.parse((await request(`${dp.base}/health`)).body);


// Start a mock, a database with providers(mock) and settings, a data plane; run fn; stop all.
async function withStack({ keys, windowMs = 2000, providers, settings }, fn) {
	const mock = await startMock({ keys, windowMs, chunks: 1, intervalMs: 1 });
	let st = null;
	const ctx = { mock, dps: [] };
	try {
		st = makeDb({ providers: providers(mock), settings });
		ctx.st = st;
		ctx.dp = await startDataplane(st);
		ctx.dps.push(ctx.dp);
		await fn(ctx);
	} finally {
		for (const d of ctx.dps) await d.stop();
		await mock.stop();
		cleanup(st);
	}
}

// A 503 the way the queue answers it: Retry-After and an OpenAI-shaped error.
// retryAfter: [lo, hi] seconds the Retry-After must be in (it says when a key
// of the route frees, issue 16), or undefined for any >= 1.
// codes: the error codes accepted (queue_full, queue_timeout, rate_limited), or any.
function assertQueue503(r, retryAfter, codes) {
	assert.equal(r.status, 503, r.body);
	const ra = +r.headers['retry-after'];
	if (retryAfter !== undefined) assert.ok(ra >= retryAfter[0] && ra <= retryAfter[1], `Retry-After ${r.headers['retry-after']}, want ${retryAfter}: ${r.body}`);
	else assert.ok(ra >= 1, `Retry-After ${r.headers['retry-after']}`);
	const e = JSON.parse(r.body).error;
	assert.ok(e && typeof e.message === 'string' && e.type, r.body);
	if (codes) assert.ok(codes.includes(e.code), `error code ${e.code}`);
}

describe('issue 4 scheduling scenarios', { timeout: 150000 }, () => {
	it('1. oversubscription: no upstream 429, >= 97 % of capacity per window, 200 or 503 + Retry-After of the next slot', async (t) => {
		// The margin covers the jitter between the data plane's send and the
		// mock's arrival; on a loaded 2-core host (this file runs beside the
		// rest of the suite, and under ASan) 50 ms and, once in 13 runs, 100 ms
		// were too small. Capacity is measured per window + margin.
		const N = 11, L = 10, WIN = 2000, MARGIN = 250, SPAN = WIN + MARGIN;
		const keys = Array.from({ length: N }, (_, i) => ({ key: key(100 + i), rpm: L }));
		await withStack({
			keys, windowMs: WIN,
			providers: (m) => keys.map((k, i) => ({ name: `o${i}`, key: k.key, url: m.url, rpm: L })),
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: MARGIN, queue_timeout_seconds: 3,
				retry_after_seconds: 30 },
		}, async ({ mock, dp }) => {
			// Open loop at twice the capacity (N*L per SPAN) for 9 s.
			const LOAD_MS = 10000;
			const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
			const perMs = (2 * N * L) / SPAN;
			const pending = [];
			const t0 = Date.now();
			let sent = 0;
			while (Date.now() - t0 < LOAD_MS) {
				const due = Math.floor((Date.now() - t0) * perMs) + 1;
				while (sent < due) {
					pending.push(request(`${dp.url}/chat/completions`, { method: 'POST', agent,
						headers: { 'content-type': 'application/json' },
						body: JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] }) })
						.catch((e) => ({ status: -1, headers: {}, body: String(e) })));
					sent++;
				}
				await sleep(5);
			}
			const rs = await Promise.all(pending);
			agent.destroy();
			let ok = 0, rej = 0;
			for (const r of rs) {
				if (r.status === 200) { ok++; continue; }
				// the next slot of a 2 s window (+ margin): never retry_after_seconds (30)
				assertQueue503(r, [1, 3], ['queue_full', 'queue_timeout', 'rate_limited']);
				rej++;
			}
			assert.ok(ok > 0 && rej > 0, `ok ${ok} rejected ${rej} of ${rs.length}`);

			const st = await mock.stats();
			const rec = (await mock.record()).filter((x) => x.path.endsWith('/chat/completions'));
			// On failure, show the key's starts at the mock in the window before its first 429.
			const bad = rec.find((x) => x.status !== 200);
			const before = bad ? rec.filter((x) => x.key === bad.key && x.t_ms <= bad.t_ms && x.t_ms > bad.t_ms - WIN - 200)
				.map((x) => `${Math.round(x.t_ms)}:${x.status}`).join(' ') : '';
			for (const k of keys) {
				assert.equal(st.by_key[k.key]?.rejected_429 ?? 0, 0, `the mock answered 429; starts before it: ${before}`);
			}
			assert.equal(rec.length, ok, 'every start at the mock is one client success');
			assert.ok(rec.every((x) => x.status === 200));
			const first = Math.min(...rec.map((x) => x.t_ms));
			// No more than L starts per key in any WIN interval at the mock.
			for (const k of keys) {
				const ts = rec.filter((x) => x.key === k.key).map((x) => x.t_ms).sort((a, b) => a - b);
				for (let i = L; i < ts.length; i++) assert.ok(ts[i] - ts[i - L] >= WIN, `key over its limit: ${ts}`);
			}
			// Full windows of the loaded period: starts >= 97 % of N*L in each.
			const fulls = [];
			for (let w = 0; first + (w + 1) * SPAN <= first + LOAD_MS - 200; w++) {
				const a = first + w * SPAN, b = a + SPAN;
				fulls.push(rec.filter((x) => x.t_ms >= a && x.t_ms < b).length);
			}
			const sum = fulls.reduce((a, b) => a + b, 0);
			t.diagnostic(`clients: ${ok} served, ${rej} refused; starts per ${SPAN} ms window: ${fulls} (capacity ${N * L}); ` +
				`${(100 * sum * WIN / (fulls.length * SPAN * N * L)).toFixed(1)} % of the nominal ${WIN} ms window`);
			assert.ok(fulls.length >= 3, `windows ${fulls}`);
			for (const c of fulls) assert.ok(c >= Math.ceil(0.97 * N * L), `starts per window ${fulls} (capacity ${N * L})`);
		});
	});

	it('2. a key limited lower upstream: 429 -> backoff 1, 2, 4 s; retried on another key; client never sees 429', async (t) => {
		// The mock allows 2 per 8 s on K1; the data plane believes 10 per 2 s.
		await withStack({
			keys: [{ key: key(201), rpm: 2 }, { key: key(202) }], windowMs: 8000,
			providers: (m) => [
				{ name: 'low', key: key(201), url: m.url, rpm: 10 },
				{ name: 'other', key: key(202), url: m.url, rpm: 100 },
			],
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: 50, cooldown_base_seconds: 1,
				cooldown_max_seconds: 60 },
		}, async ({ mock, st, dp }) => {
			const t0 = Date.now();
			let n = 0;
			while (Date.now() - t0 < 7000) {
				const r = await chat(dp);
				assert.equal(r.status, 200, r.body);
				n++;
				await sleep(100);
			}
			const rec = await mock.record();
			const k1 = rec.filter((x) => x.key === key(201));
			const got429 = k1.filter((x) => x.status === 429).length;
			assert.ok(got429 >= 3, `429s on the low key: ${got429}`);
			assert.equal(rec.filter((x) => x.status === 200).length, n, 'each client request served once');
			const ev = await until(() => {
				const t = sql(st, "SELECT e.cooldown_seconds || ':' || e.consecutive_count FROM cooldown_events e " +
					"JOIN providers p ON p.id = e.provider_id WHERE p.name = 'low' ORDER BY e.rowid");
				const l = t ? t.split('\n') : [];
				return l.length >= 3 ? l : null;
			}, 3000, 'three cooldown events');
			t.diagnostic(`cooldown events (seconds:count): ${ev}`);
			assert.deepEqual(ev.slice(0, 3), ['1:1', '2:2', '4:3']);
			// The 429s at the mock are spaced by the cooldowns (about 1 s, then 2 s).
			const t429 = k1.filter((x) => x.status === 429).map((x) => x.t_ms);
			assert.ok(t429[1] - t429[0] >= 950 && t429[2] - t429[1] >= 1950, `429 times ${t429}`);
			assert.equal(sql(st, "SELECT COUNT(*) FROM cooldown_events e JOIN providers p ON p.id = e.provider_id " +
				"WHERE p.name = 'other'"), '0');
		});
	});

	it('3. main cooling -> fallback; all cooling -> emergency at max(1, floor(rpm*0.1)) per window; beyond -> 503', async () => {
		const M1 = key(301), M2 = key(302), F1 = key(303);
		await withStack({
			keys: [{ key: M1 }, { key: M2 }, { key: F1 }], windowMs: 2000,
			providers: (m) => [
				{ name: 'm1', key: M1, url: m.url, rpm: 20 },
				{ name: 'm2', key: M2, url: m.url, rpm: 20 },
				{ name: 'f1', key: F1, url: m.url, rpm: 20, pool: 'fallback' },
			],
			// learn_limits 0: the budget below is the formula on the configured
			// rpm_limit; with learning on, the injected 429s (at low window
			// counts) halve the effective limit and with it the budget, which
			// test_sched and sched_upstream_limits.test.mjs check.
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: 50, max_attempts: 5,
				recover_wait_seconds: 0, cooldown_base_seconds: 60, learn_limits: 0 },
		}, async ({ mock, dp }) => {
			const r0 = await chat(dp);
			assert.equal(r0.status, 200);
			assert.equal(r0.headers['x-sidecar-pool'], 'main');
			assert.equal(r0.headers['x-sidecar-degraded'], undefined);

			await mock.setKey(M1, 0, 'status=429', 0);
			await mock.setKey(M2, 0, 'status=429', 0);
			for (let i = 0; i < 3; i++) {
				const r = await chat(dp);
				assert.equal(r.status, 200, r.body);
				assert.equal(r.headers['x-sidecar-provider'], 'f1');
				assert.equal(r.headers['x-sidecar-pool'], 'fallback');
				assert.equal(r.headers['x-sidecar-degraded'], 'fallback');
			}
			let h = await health(dp);
			assert.equal(h.providers.cooling, 2);

			// The main keys recover upstream (our cooldowns run on); the fallback answers 429 once.
			await mock.setKey(M1, 0, null, 0);
			await mock.setKey(M2, 0, null, 0);
			await mock.setKey(F1, 0, 'status=429', 1);
			const seq0 = (await mock.record()).reduce((a, x) => Math.max(a, x.seq), 0);
			const BUDGET = Math.max(1, Math.floor(20 * 0.1));
			const burst = async () => {
				const rs = [];
				for (let i = 0; i < BUDGET + 3; i++) rs.push(await chat(dp));
				return rs;
			};
			for (let round = 0; round < 2; round++) {
				const rs = await burst();
				const em = rs.filter((r) => r.status === 200);
				assert.equal(em.length, BUDGET, `round ${round}: ${rs.map((r) => r.status)}`);
				for (const r of em) {
					assert.equal(r.headers['x-sidecar-degraded'], 'emergency');
					assert.equal(r.headers['x-sidecar-pool'], 'emergency');
					assert.match(r.headers['x-sidecar-provider'], /^m[12]$/);
				}
				for (const r of rs.filter((x) => x.status !== 200)) assertQueue503(r);
				if (round === 0) await sleep(2200); // the emergency window slides
			}
			h = await health(dp);
			assert.equal(h.providers.cooling, 3);
			// At the mock: per 2.05 s, no more than BUDGET starts on the main keys.
			const em = (await mock.record(seq0)).filter((x) => x.key !== F1).map((x) => x.t_ms).sort((a, b) => a - b);
			assert.equal(em.length, 2 * BUDGET);
			for (let i = BUDGET; i < em.length; i++) assert.ok(em[i] - em[i - BUDGET] >= 2000, `emergency starts ${em}`);
		});
	});

	it('4. a main key recovering within recover_wait_seconds is waited for; a longer cooldown goes to fallback', async (t) => {
		const M = key(401), F = key(402);
		await withStack({
			keys: [{ key: M }, { key: F }],
			providers: (m) => [
				{ name: 'main', key: M, url: m.url, rpm: 100 },
				{ name: 'fb', key: F, url: m.url, rpm: 100, pool: 'fallback' },
			],
			settings: { recover_wait_seconds: 4, cooldown_base_seconds: 1, queue_timeout_seconds: 10 },
		}, async ({ mock, dp }) => {
			// 429 with Retry-After: 2 once: a 2 s cooldown, within recover_wait_seconds.
			await mock.setKey(M, 0, 'status=429', 1, 2);
			const r1 = await chat(dp);
			assert.equal(r1.status, 200, r1.body); // its own retry excludes the tried key
			const t1 = Date.now();
			const seq1 = (await mock.record()).reduce((a, x) => Math.max(a, x.seq), 0);
			const r2 = await chat(dp);
			const el = Date.now() - t1;
			assert.equal(r2.status, 200, r2.body);
			assert.equal(r2.headers['x-sidecar-pool'], 'main');
			assert.equal(r2.headers['x-sidecar-provider'], 'main');
			assert.equal(r2.headers['x-sidecar-degraded'], undefined);
			const q = +r2.headers['x-sidecar-queue-ms'];
			t.diagnostic(`waited ${q} ms for the main key`);
			assert.ok(q >= 1500 && q <= 2600, `queue ms ${q}`);
			assert.ok(el >= 1500 && el < 3500, `took ${el}`);
			const after = await mock.record(seq1);
			assert.equal(after.filter((x) => x.key === F).length, 0, 'the fallback was used');
			assert.equal(after.filter((x) => x.key === M && x.status === 200).length, 1);

			// Contrast: Retry-After 8 > recover_wait_seconds 4: the fallback serves at once.
			await mock.setKey(M, 0, 'status=429', 1, 8);
			assert.equal((await chat(dp)).status, 200);
			const t2 = Date.now();
			const r3 = await chat(dp);
			assert.equal(r3.status, 200, r3.body);
			assert.equal(r3.headers['x-sidecar-pool'], 'fallback');
			assert.equal(r3.headers['x-sidecar-provider'], 'fb');
			assert.equal(r3.headers['x-sidecar-degraded'], 'fallback');
			assert.ok(Date.now() - t2 < 1000 && +r3.headers['x-sidecar-queue-ms'] < 500);
		});
	});

	it('5. revoked key -> invalid, never used again; flapping key -> unhealthy -> probes -> healthy, used again', async () => {
		const R = key(501), FL = key(502), G = key(503);
		await withStack({
			keys: [{ key: R }, { key: FL }, { key: G }],
			providers: (m) => [
				{ name: 'revoked', key: R, url: m.url },
				{ name: 'flappy', key: FL, url: m.url },
				{ name: 'good', key: G, url: m.url },
			],
			settings: { unhealthy_after_failures: 2, health_probe_interval_seconds: 1, max_attempts: 3 },
		}, async ({ mock, st, dp }) => {
			await mock.setKey(R, 0, 'status=401', 0);
			// 2 request failures make it unhealthy, then 2 probes fail, the 3rd succeeds.
			await mock.setKey(FL, 0, 'status=500', 4);
			const pstate = () => sql(st, "SELECT COALESCE((SELECT h.state FROM provider_health h JOIN providers p " +
				"ON p.id = h.provider_id WHERE p.name = 'flappy'), 'none')");
			for (let i = 0; i < 12; i++) {
				const r = await chat(dp);
				assert.equal(r.status, 200, r.body);
				assert.equal(r.headers['x-sidecar-provider'], 'good');
				if (pstate() === 'unhealthy') break;
			}
			await until(() => pstate() === 'unhealthy', 3000, 'flappy unhealthy');
			assert.equal(sql(st, "SELECT status FROM providers WHERE name='revoked'"), 'invalid');
			assert.notEqual(sql(st, "SELECT status_reason FROM providers WHERE name='revoked'"), '');
			const h = await health(dp);
			assert.ok(h.providers.invalid >= 1 || JSON.stringify(h).includes('invalid'), JSON.stringify(h));

			// Probes: GET /v1/models about every second until one succeeds.
			const rec = await mock.waitRecord((l) => l.some((x) => x.key === FL && x.method === 'GET' &&
				x.path.endsWith('/models') && x.status === 200), 8000);
			const probes = rec.filter((x) => x.key === FL && x.method === 'GET');
			assert.ok(probes.length >= 3, `probes ${probes.length}`);
			for (let i = 1; i < probes.length; i++) {
				const d = probes[i].t_ms - probes[i - 1].t_ms;
				assert.ok(d >= 900 && d <= 2500, `probe spacing ${d}`);
			}
			assert.ok(probes.slice(0, 2).every((x) => x.status === 500));
			// No chat request reached flappy while it was unhealthy.
			const tUnhealthy = rec.filter((x) => x.key === FL && x.method === 'POST').map((x) => x.t_ms);
			assert.ok(tUnhealthy.every((t) => t < probes[0].t_ms), 'chat sent to an unhealthy key');
			await until(() => pstate() === 'healthy', 3000, 'flappy healthy');
			const seq = rec.reduce((a, x) => Math.max(a, x.seq), 0);
			for (let i = 0; i < 6; i++) assert.equal((await chat(dp)).status, 200);
			const later = await mock.record(seq);
			assert.ok(later.some((x) => x.key === FL && x.method === 'POST' && x.status === 200), 'flappy not used again');
			// The revoked key got exactly one request, ever.
			assert.equal((await mock.record()).filter((x) => x.key === R).length, 1);
		});
	});

	it('6. a cooldown holds across kill -9 and restart', async (t) => {
		const C1 = key(601), C2 = key(602);
		await withStack({
			keys: [{ key: C1 }, { key: C2 }],
			providers: (m) => [
				{ name: 'c1', key: C1, url: m.url },
				{ name: 'c2', key: C2, url: m.url },
			],
			settings: { cooldown_base_seconds: 5 },
		}, async (ctx) => {
			const { mock, st } = ctx;
			await mock.setKey(C1, 0, 'status=429', 1);
			for (let i = 0; i < 3; i++) assert.equal((await chat(ctx.dp)).status, 200);
			const hit = (await mock.record()).find((x) => x.key === C1 && x.status === 429);
			assert.ok(hit, 'c1 never got its 429');
			await until(() => sql(st, "SELECT COALESCE(cooldown_until, '') FROM providers WHERE name='c1'") !== '',
				3000, 'the persisted cooldown');
			await ctx.dp.stop('SIGKILL');
			const dp2 = await startDataplane(st);
			ctx.dps.push(dp2);
			const h = await health(dp2);
			assert.equal(h.providers.cooling, 1, JSON.stringify(h));
			// Cooldown 5 s from the 429 (persisted in whole seconds): until then c1 gets nothing.
			const end = hit.t_ms + 5000;
			const stats0 = await mock.stats();
			const seq = (await mock.record()).reduce((a, x) => Math.max(a, x.seq), 0);
			let c1used = null;
			for (let i = 0; i < 80 && !c1used; i++) {
				const r = await chat(dp2);
				assert.equal(r.status, 200, r.body);
				if (r.headers['x-sidecar-provider'] === 'c1') c1used = r;
				await sleep(100);
			}
			assert.ok(c1used, 'c1 not used again after its cooldown');
			const c1 = (await mock.record(seq)).filter((x) => x.key === C1);
			assert.ok(c1.length >= 1);
			t.diagnostic(`c1 used again ${Math.round(c1[0].t_ms - hit.t_ms)} ms after its 429 (cooldown 5000 ms)`);
			assert.ok(c1[0].t_ms >= end - 1000, `c1 used ${end - c1[0].t_ms} ms before its cooldown ended`);
			assert.ok(stats0.requests >= 1);
		});
	});

	it('7. queue: high, normal, low order; overflow at capacity + 1 at once; deadline -> 503', async () => {
		const P = key(701);
		await withStack({
			keys: [{ key: P }],
			providers: (m) => [{ name: 'one', key: P, url: m.url, rpm: 3 }],
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: 50, queue_capacity: 6,
				queue_timeout_seconds: 8, retry_after_seconds: 9 },
		}, async ({ mock, dp }) => {
			// Fill the window with starts 300 ms apart: slots free one at a time.
			for (let i = 0; i < 3; i++) {
				assert.equal((await chat(dp, {}, 'mock/fill')).status, 200);
				await sleep(300);
			}
			const order = ['low', 'normal', 'high', 'low', 'high', 'normal'];
			const waiters = [];
			for (let i = 0; i < order.length; i++) {
				waiters.push(chat(dp, { 'x-sidecar-priority': order[i] }, `mock/p-${order[i]}-${i}`));
				await sleep(40);
			}
			await sleep(100);
			// The queue is full (6): the 7th is refused at once.
			const t = Date.now();
			const over = await chat(dp, { 'x-sidecar-priority': 'high' }, 'mock/overflow');
			assert.ok(Date.now() - t < 500, `overflow took ${Date.now() - t} ms`);
			assertQueue503(over, [1, 3], ['queue_full']);	// the 2 s window's next slot, not retry_after_seconds (9)
			const rs = await Promise.all(waiters);
			for (const r of rs) assert.equal(r.status, 200, r.body);
			const served = (await mock.record()).filter((x) => /p-/.test(x.model ?? ''))
				.sort((a, b) => a.t_ms - b.t_ms || a.seq - b.seq).map((x) => x.model.replace(/^.*p-(\w+)-\d+$/, '$1'));
			assert.deepEqual(served, ['high', 'high', 'normal', 'normal', 'low', 'low']);
			assert.ok(!(await mock.record()).some((x) => /overflow/.test(x.model ?? '')));
		});
		// Deadline: one slot per 30 s, queue_timeout_seconds 2.
		await withStack({
			keys: [{ key: P }],
			providers: (m) => [{ name: 'one', key: P, url: m.url, rpm: 1 }],
			settings: { rpm_window_seconds: 30, queue_timeout_seconds: 2, retry_after_seconds: 9 },
		}, async ({ mock, dp }) => {
			assert.equal((await chat(dp)).status, 200);
			const t = Date.now();
			const r = await chat(dp);
			const el = Date.now() - t;
			assertQueue503(r, [26, 29], ['queue_timeout']);	// the 30 s window's slot frees ~28 s after the timeout
			assert.ok(el >= 1900 && el < 3500, `timed out after ${el} ms`);
			assert.equal((await mock.record()).length, 1);
		});
	});
});
