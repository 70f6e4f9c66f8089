// Black-box: several data planes share one pool of keys through one real
// redis-server (issue 17, docs/cluster.md). Three data planes, each with its
// own database holding the same keys, in front of the mock upstream, which
// enforces the same per-key limits on a compressed window (2 s). Each host
// reaches Redis through its own loopback TCP proxy, so one host can be cut
// off while the others keep Redis.
//
//   1. demand twice the capacity over the three hosts for several windows:
//      the mock answers no 429, >= 97 % of capacity is used, every client
//      answer is a 200 or a 503 with Retry-After;
//   2. a key that answers 429 on one host is not sent to from the others
//      during its cooldown, and every host's cooldown_events shows one
//      backoff step per overload;
//   3. Redis killed then restarted, paused (SIGSTOP) then resumed, one host
//      cut off: the mock never sees a key over its limit in any window,
//      service continues, and every host returns to shared mode;
//   6. one host cut off and reconnected again and again while the others
//      saturate the keys, some reconnects with Redis's answers late (the
//      sync times out after its heartbeat ran): never over a limit;
//   7. a model whose own limit (model_rpm_limits) is below the key's, the
//      mock enforcing both: the model's window is shared too (no 429, never
//      over it, its capacity used) while other models of the key flow.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { startMock } from './lib/mock.mjs';
import { startProxy, startRedis } from './lib/redis.mjs';
import { cleanup, makeDb, request, sleep, startDataplane, until } from './lib/stack.mjs';

const key = (i) => `nvapi-TEST-${String(i).padStart(4, '0')}-xxxxxxxxxxxxxxxx`;
const sql = (st, q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
const WIN = 2000, MARGIN = 250, SPAN = WIN + MARGIN;


const health = async (dp) => JSON.parse((await request(`${dp.base}/health`)).body);
const modeOf = async (dp) => (await health(dp)).cluster?.mode;

// Redis, the mock, n hosts (each through its own proxy).
async function startCluster({ keys, providers, settings = {}, n = 3 }) {
	const redis = await startRedis();
	const mock = await startMock({ keys, windowMs: WIN, chunks: 1, intervalMs: 1 });
	const hosts = [];
	const c = {
		redis, mock, hosts,
		async stop() {
			for (const h of hosts) {
				await h.dp?.stop('SIGTERM');	/* graceful: the sanitizer build checks for leaks at exit */
				h.proxy.stop();
				cleanup(h.st);
			}
			await mock.stop();
			await redis.stop();
		},
	};
	try {
		for (let i = 0; i < n; i++) {
			const proxy = await startProxy(redis.port);
			const st = makeDb({
				providers: providers(mock),
				settings: {
					rpm_window_seconds: 2, rpm_window_margin_ms: MARGIN, queue_timeout_seconds: 3,
					retry_after_seconds: 30, redis_url: proxy.url, cluster_namespace: 'bb',
					cluster_host_name: `host${i}`, ...settings,
				},
			});
			const h = { proxy, st, name: `host${i}` };
			hosts.push(h);
			h.dp = await startDataplane(st);
		}
		for (const h of hosts) await until(async () => (await modeOf(h.dp)) === 'shared', 10000, `${h.name} shared`);
		// Every host has seen the others (the local share divides by this).
		await until(async () => {
			for (const h of hosts) if ((await health(h.dp)).cluster.hosts !== n) return false;
			return true;
		}, 5000, 'every host sees every host');
	} catch (e) {
		await c.stop();
		throw e;
	}
	return c;
}

// Open-loop load at perMs requests per ms, spread round-robin over the hosts
// (and over models, 'mock/x' unless given), while fn runs (or for ms).
// Resolves to the client answers.
async function load(hosts, perMs, ms, during, models = ['mock/x']) {
	const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
	const pending = [];
	const t0 = Date.now();
	let sent = 0, stop = false;
	const bodies = models.map((model) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }));
	const driver = (async () => {
		while (!stop && (ms === undefined || Date.now() - t0 < ms)) {
			const due = Math.floor((Date.now() - t0) * perMs) + 1;
			while (sent < due) {
				const h = hosts[sent % hosts.length];
				const at = Date.now(), model = models[Math.floor(sent / hosts.length) % models.length];
				pending.push(request(`${h.dp.url}/chat/completions`, { method: 'POST', agent,
					headers: { 'content-type': 'application/json' }, body: bodies[models.indexOf(model)] })
					.then((r) => ({ ...r, at, host: h.name, model }))
					.catch((e) => ({ status: -1, headers: {}, body: String(e), at, host: h.name, model })));
				sent++;
			}
			await sleep(5);
		}
	})();
	if (during) {
		try {
			await during();
		} finally {
			stop = true;
		}
	}
	await driver;
	const rs = await Promise.all(pending);
	agent.destroy();
	return rs;
}

// Every client answer is a 200 or a 503 in OpenAI shape with Retry-After.
function assertAnswers(rs) {
	let ok = 0, rej = 0;
	for (const r of rs) {
		if (r.status === 200) { ok++; continue; }
		assert.equal(r.status, 503, `${r.host}: ${r.status} ${r.body}`);
		assert.ok(+r.headers['retry-after'] >= 1, `Retry-After ${r.headers['retry-after']}`);
		const e = JSON.parse(r.body).error;
		assert.ok(e && typeof e.message === 'string', r.body);
		rej++;
	}
	return { ok, rej };
}

// On a failure: each upstream 429 with the starts of its key in the window before it
// (mock ms, status, the host's request-id prefix).
/* After a fault run: the phases and the clients' answers as diagnostics (every
 * answer a 200 or a 503 with Retry-After), then what the mock saw. */
async function faultRunResult(t, c, phases, rs) {
	t.diagnostic(`phases: ${phases.map(([p, at]) => `${p}@${at - phases[0][1]}`).join(' ')}`);
	const { ok, rej } = assertAnswers(rs);
	t.diagnostic(`clients: ${ok} served, ${rej} refused`);
	const rec = (await c.mock.record()).filter((x) => x.path.endsWith('/chat/completions'));
	return { rec, st: await c.mock.stats() };
}

function explain429(rec) {
	return rec.filter((x) => x.status === 429).map((b) => `429 at ${Math.round(b.t_ms)} on ${b.key.slice(11, 15)} after ` +
		rec.filter((x) => x.key === b.key && x.t_ms <= b.t_ms && x.t_ms > b.t_ms - WIN - 300)
			.map((x) => `${Math.round(x.t_ms)}:${x.status}:${String(x.headers['x-request-id'] || '').slice(0, 8)}`).join(' ')).join('; ');
}

// No key ever had more than its limit of starts at the mock in any WIN interval.
function assertNeverOver(rec, limits) {
	for (const [k, L] of Object.entries(limits)) {
		const ts = rec.filter((x) => x.key === k).map((x) => x.t_ms).sort((a, b) => a - b);
		for (let i = L; i < ts.length; i++) {
			assert.ok(ts[i] - ts[i - L] >= WIN,
				`key ${k.slice(0, 16)} had ${L + 1} starts within ${WIN} ms at the mock: ` +
				ts.slice(i - L, i + 1).map((t) => Math.round(t)).join(' '));
		}
	}
}

describe('issue 17: data planes sharing keys through Redis', { timeout: 200000 }, () => {
	it('1. demand twice the capacity over three hosts: no 429 upstream, >= 97 % of capacity, 200 or 503', async (t) => {
		const N = 4, L = 10;
		const keys = Array.from({ length: N }, (_, i) => ({ key: key(1700 + i), rpm: L }));
		const c = await startCluster({ keys, providers: (m) => keys.map((k, i) => ({ name: `c${i}`, key: k.key, url: m.url, rpm: L })) });
		try {
			const LOAD_MS = 10000;
			const rs = await load(c.hosts, (2 * N * L) / SPAN, LOAD_MS);
			const { ok, rej } = assertAnswers(rs);
			assert.ok(ok > 0 && rej > 0, `ok ${ok} rejected ${rej}`);
			const st = await c.mock.stats();
			const rec = (await c.mock.record()).filter((x) => x.path.endsWith('/chat/completions'));
			for (const k of keys) assert.equal(st.by_key[k.key]?.rejected_429 ?? 0, 0, `the mock answered 429: ${explain429(rec)}`);
			assert.equal(rec.length, ok, 'every start at the mock is one client success');
			assertNeverOver(rec, Object.fromEntries(keys.map((k) => [k.key, L])));
			// Every host served: the keys were shared, not taken by one.
			for (const h of c.hosts) assert.ok(rs.some((r) => r.host === h.name && r.status === 200), `${h.name} served nothing`);
			const first = Math.min(...rec.map((x) => x.t_ms));
			const fulls = [];
			for (let w = 0; first + (w + 1) * SPAN <= first + LOAD_MS - 300; w++) {
				const a = first + w * SPAN, b = a + SPAN;
				fulls.push(rec.filter((x) => x.t_ms >= a && x.t_ms < b).length);
			}
			t.diagnostic(`clients: ${ok} served, ${rej} refused; starts per ${SPAN} ms window: ${fulls} (capacity ${N * L})`);
			assert.ok(fulls.length >= 3, `windows ${fulls}`);
			// Capacity used over the loaded windows together: a start a few ms late
			// (a round trip to Redis, a loaded host) moves from one fixed window of
			// the grid to the next (seen: 43, 40, 38, 41), while the sliding window
			// stays full; each window must still be near full (no stall).
			const sum = fulls.reduce((a, b) => a + b, 0);
			assert.ok(sum >= Math.ceil(0.97 * fulls.length * N * L), `starts per window ${fulls} (capacity ${N * L})`);
			for (const f of fulls) assert.ok(f >= Math.floor(0.9 * N * L), `a window far from full: ${fulls} (capacity ${N * L})`);
			// The dashboard's view: hosts and each key's window as the cluster sees it.
			const snap = JSON.parse(sql(c.hosts[0].st, 'SELECT snapshot FROM live_status WHERE id = 1'));
			assert.equal(snap.cluster.mode, 'shared');
			assert.deepEqual(snap.cluster.hosts.map((h) => h.name).sort(), ['host0', 'host1', 'host2']);
			assert.equal(snap.cluster.keys.length, N);
			assert.ok(snap.cluster.keys.every((k) => k.limit === L && k.cluster_used >= 0 && k.cluster_used <= L));
			// Redis holds fingerprints, never a key.
			const names = await c.redis.cmd('KEYS', '*');
			assert.ok(names.length > 0 && names.every((n) => n.startsWith('sc:bb:') && !n.includes('nvapi')), names.join(' '));
		} finally {
			await c.stop();
		}
	});

	it('2. a 429 on one host cools the key on every host; one backoff step per overload', async () => {
		// The mock lets 2 per window through on key 0, which the hosts believe allows 10.
		const keys = [{ key: key(1710), rpm: 2 }, { key: key(1711), rpm: 50 }, { key: key(1712), rpm: 50 }];
		const c = await startCluster({
			keys,
			providers: (m) => keys.map((k, i) => ({ name: `k${i}`, key: k.key, url: m.url, rpm: i === 0 ? 10 : 50 })),
			settings: { cooldown_base_seconds: 1, cooldown_max_seconds: 4 },
		});
		try {
			const rs = await load(c.hosts, 0.02, 9000);
			const { ok } = assertAnswers(rs);
			assert.ok(ok > 0);
			await sleep(700);	/* the last episode reaches every host within a heartbeat */
			const rec = (await c.mock.record()).filter((x) => x.path.endsWith('/chat/completions'));
			const k0 = rec.filter((x) => x.key === keys[0].key).sort((a, b) => a.t_ms - b.t_ms);
			const s429 = k0.filter((x) => x.status === 429);
			assert.ok(s429.length >= 2, `429s on the limited key: ${s429.length}`);
			// The episodes, as every host recorded them: (consecutive count, seconds).
			const per = c.hosts.map((h) => sql(h.st, "SELECT e.consecutive_count || ':' || e.cooldown_seconds FROM cooldown_events e " +
				"JOIN providers p ON p.id = e.provider_id WHERE p.name = 'k0' ORDER BY e.rowid").split('\n').filter(Boolean));
			assert.ok(per[0].length >= 2, `episodes on host0: ${per[0]}`);
			for (const h of per) {
				// Each overload is one step: 1, 2, 3 ... and back to 1 after a success.
				let prev = 0;
				for (const e of h) {
					const n = +e.split(':')[0];
					assert.ok(n === prev + 1 || n === 1, `backoff steps ${h} (all hosts: ${JSON.stringify(per)})`);
					prev = n;
				}
			}
			// Every host recorded the same episodes (one may still miss the newest).
			const longest = per.reduce((a, b) => (b.length > a.length ? b : a));
			// A 1 s cooldown ends while the mock's 2 s window is still full: the
			// next overload is the second step, taken once for the cluster.
			assert.ok(longest.some((e) => e.startsWith('2:')), `no second step: ${longest}`);
			for (const h of per) {
				assert.ok(h.length >= longest.length - 1, `episodes per host: ${JSON.stringify(per)}`);
				assert.deepEqual(h, longest.slice(0, h.length), `episodes per host: ${JSON.stringify(per)}`);
			}
			// During each cooldown nothing reached the key from any host: every
			// start after a 429 (allowing 150 ms for attempts already in flight)
			// comes after that cooldown ended.
			// (The shortest cooldown is cooldown_base_seconds = 1 s.)
			for (const x of s429) {
				const inside = k0.filter((y) => y.t_ms > x.t_ms + 150 && y.t_ms < x.t_ms + 1000 - 150);
				assert.deepEqual(inside.map((y) => `${Math.round(y.t_ms)}:${y.status}`), [],
					`starts on the cooling key within the cooldown after the 429 at ${Math.round(x.t_ms)}`);
			}
			// No client ever saw a 429.
			assert.ok(rs.every((r) => r.status !== 429));
		} finally {
			await c.stop();
		}
	});

	it('3. Redis killed and restarted, paused, one host cut off: never over a limit, service continues, back to shared', async (t) => {
		const N = 3, L = 10;
		const keys = Array.from({ length: N }, (_, i) => ({ key: key(1720 + i), rpm: L }));
		const c = await startCluster({ keys, providers: (m) => keys.map((k, i) => ({ name: `f${i}`, key: k.key, url: m.url, rpm: L })),
			settings: { queue_timeout_seconds: 2 } });
		const modes = async () => Promise.all(c.hosts.map((h) => modeOf(h.dp)));
		const allShared = () => until(async () => (await modes()).every((m) => m === 'shared'), 15000, 'every host shared again');
		const phases = [];
		try {
			const rs = await load(c.hosts, (1.5 * N * L) / SPAN, undefined, async () => {
				await sleep(2000);
				phases.push(['kill', Date.now()]);
				await c.redis.kill();
				await until(async () => (await modes()).every((m) => m === 'local_share'), 10000, 'local share after the kill');
				const h = await health(c.hosts[0].dp);
				assert.equal(h.status, 'degraded');
				await sleep(1500);
				phases.push(['restart', Date.now()]);
				await c.redis.start();
				await allShared();
				await sleep(1500);
				phases.push(['pause', Date.now()]);
				c.redis.pause();
				await sleep(4500);
				assert.ok((await modes()).every((m) => m !== 'shared'), `modes while paused: ${await modes()}`);
				phases.push(['resume', Date.now()]);
				c.redis.resume();
				await allShared();
				await sleep(1500);
				phases.push(['cut host2', Date.now()]);
				c.hosts[2].proxy.cut();
				await until(async () => (await modeOf(c.hosts[2].dp)) === 'local_share', 10000, 'host2 on its local share');
				assert.deepEqual((await modes()).slice(0, 2), ['shared', 'shared']);
				await sleep(2500);
				phases.push(['restore host2', Date.now()]);
				await c.hosts[2].proxy.restore();
				await allShared();
				await sleep(1500);
			});
			const { rec, st } = await faultRunResult(t, c, phases, rs);
			const first = Math.min(...rec.map((x) => x.t_ms));
			t.diagnostic(`first start at mock ${Math.round(first)}; hosts' request ids: ` +
				c.hosts.map((h) => `${h.name}=${(rs.find((r) => r.host === h.name && r.headers['x-request-id'])?.headers['x-request-id'] || '').slice(0, 8)}`).join(' '));
			for (const k of keys) assert.equal(st.by_key[k.key]?.rejected_429 ?? 0, 0, `the mock answered 429: ${explain429(rec)}`);
			assertNeverOver(rec, Object.fromEntries(keys.map((k) => [k.key, L])));
			// Service continued: requests were served after each phase began.
			for (const [p, at] of phases) {
				const served = rs.filter((r) => r.status === 200 && r.at >= at).length;
				assert.ok(served > 0, `nothing served after ${p}`);
			}
			// The cut host kept serving on its share while cut off.
			const cut = phases.find(([p]) => p === 'cut host2')[1], back = phases.find(([p]) => p === 'restore host2')[1];
			assert.ok(rs.some((r) => r.host === 'host2' && r.status === 200 && r.at > cut + 3500 && r.at < back),
				'host2 served nothing on its local share');
			assert.deepEqual(await modes(), ['shared', 'shared', 'shared']);
			const m = (await request(`http://127.0.0.1:${c.hosts[0].dp.metricsPort}/metrics`)).body;
			assert.match(m, /sidecar_cluster_mode\{mode="shared"\} 1/);
			assert.match(m, /sidecar_cluster_redis_connected 1/);
			assert.match(m, /sidecar_cluster_redis_timeouts_total [1-9]/);
			assert.match(m, /sidecar_cluster_replayed_total [1-9]/);
			execFileSync('promtool', ['check', 'metrics'], { input: m });
			assert.ok(c.hosts[0].dp.logs().includes('QUARANTINE'), 'the quarantine is logged');
			assert.ok(c.hosts[0].dp.logs().includes('LOCAL SHARE'), 'the local share is logged');
		} finally {
			await c.stop();
		}
	});

	it('7. a model with its own limit (model_rpm_limits) below the key\'s: shared across hosts, no 429, capacity used', async (t) => {
		// One key allows 60 per window; its model 'big' only 6 (the mock
		// enforces both). Each host is configured the same, so without the
		// shared model window three hosts would send up to 18 'big' per window.
		const K = key(1760), L = 60, ML = 6;
		const c = await startCluster({
			keys: [{ key: K, rpm: L }],
			providers: (m) => [{ name: 'multi', key: K, url: m.url, rpm: L, modelRpm: { big: ML } }],
		});
		try {
			await c.mock.setModelRpm(K, { big: ML });
			// 'big' at twice its capacity, 'small' at a third of the key's.
			const LOAD_MS = 10000;
			const rs = await load(c.hosts, (3 * ML * 2) / SPAN, LOAD_MS, undefined, ['mock/big', 'mock/small', 'mock/small']);
			assertAnswers(rs);
			const st = await c.mock.stats();
			assert.equal(st.by_key[K]?.rejected_429 ?? 0, 0, 'the mock answered 429 on the key');
			assert.equal(st.by_key[`${K}\x1fbig`]?.rejected_429 ?? 0, 0, 'the mock answered 429 on the model');
			const rec = (await c.mock.record()).filter((x) => x.path.endsWith('/chat/completions'));
			assert.equal(rec.filter((x) => x.status === 429).length, 0, 'the upstream answered 429');
			const big = rec.filter((x) => x.model === 'big');
			assertNeverOver(big.map((x) => ({ ...x, key: 'big' })), { big: ML });
			assertNeverOver(rec, { [K]: L });
			// Other models of the key kept flowing: every 'small' request was served.
			const small = rs.filter((r) => r.model === 'mock/small');
			assert.ok(small.length > 0 && small.every((r) => r.status === 200),
				`small answers: ${[...new Set(small.map((r) => r.status))]}`);
			// Every host sent 'big' (the window was shared, not taken by one host).
			for (const h of c.hosts) assert.ok(rs.some((r) => r.host === h.name && r.model === 'mock/big' && r.status === 200), `${h.name} sent no big`);
			// The model's capacity was used: starts of 'big' per full window.
			const first = Math.min(...big.map((x) => x.t_ms));
			const fulls = [];
			for (let w = 0; first + (w + 1) * SPAN <= first + LOAD_MS - 300; w++) {
				const a = first + w * SPAN, b = a + SPAN;
				fulls.push(big.filter((x) => x.t_ms >= a && x.t_ms < b).length);
			}
			t.diagnostic(`big starts per ${SPAN} ms window: ${fulls} (model capacity ${ML}); small served ${small.length}`);
			assert.ok(fulls.length >= 3, `windows ${fulls}`);
			const sum = fulls.reduce((a, b) => a + b, 0);
			assert.ok(sum >= Math.ceil(0.9 * fulls.length * ML), `big starts per window ${fulls} (capacity ${ML})`);
			// The model's window lives in Redis under the key's fingerprint and a
			// hash of the model's name: no key, no model name.
			const names = await c.redis.cmd('KEYS', 'sc:bb:m:*');
			assert.ok(names.length === 1 && !names[0].includes('big') && !names[0].includes('nvapi'), names.join(' '));
		} finally {
			await c.stop();
		}
	});

	it('6. one host cut off and reconnected repeatedly while the others saturate the keys: never over a limit', async (t) => {
		const N = 2, L = 10, CYCLES = 4;
		const keys = Array.from({ length: N }, (_, i) => ({ key: key(1750 + i), rpm: L }));
		const c = await startCluster({ keys, providers: (m) => keys.map((k, i) => ({ name: `r${i}`, key: k.key, url: m.url, rpm: L })),
			settings: { queue_timeout_seconds: 2 } });
		const h2 = c.hosts[2];
		const modes = async () => Promise.all(c.hosts.map((h) => modeOf(h.dp)));
		const timeouts = async () => +(/sidecar_cluster_redis_timeouts_total (\d+)/.exec(
			(await request(`http://127.0.0.1:${h2.dp.metricsPort}/metrics`)).body)[1]);
		const phases = [];
		let lagged = 0;
		try {
			const t0 = await timeouts();
			const rs = await load(c.hosts, (2 * N * L) / SPAN, undefined, async () => {
				await sleep(1500);
				for (let i = 0; i < CYCLES; i++) {
					phases.push([`cut ${i}`, Date.now()]);
					h2.proxy.cut();
					await until(async () => (await modeOf(h2.dp)) === 'local_share', 10000, 'host2 on its local share');
					/* More than a window on its share: the slots it took at once when
					 * the quarantine ended free again, so it serves requests sent later too. */
					await sleep(2600 + 300 * i);
					// Every other reconnect: Redis runs the replay and the heartbeat at
					// once (host2 looks live to the others) but the answers come after
					// cluster_reply_timeout_ms, so host2 gives up on that sync.
					const lag = i % 2 === 1 ? 800 : 0;
					h2.proxy.lag(lag);
					phases.push([`restore ${i}${lag ? ' late' : ''}`, Date.now()]);
					await h2.proxy.restore();
					if (lag) {
						await until(async () => (await timeouts()) > t0 + lagged, 10000, 'the late sync timed out');
						lagged++;
						await sleep(1200);	/* the heartbeat that ran is stale again */
						h2.proxy.lag(0);
					}
					await until(async () => (await modes()).every((m) => m === 'shared'), 15000, 'every host shared again');
					await sleep(1500);
				}
			});
			const { rec, st } = await faultRunResult(t, c, phases, rs);
			for (const k of keys) assert.equal(st.by_key[k.key]?.rejected_429 ?? 0, 0, `the mock answered 429: ${explain429(rec)}`);
			assertNeverOver(rec, Object.fromEntries(keys.map((k) => [k.key, L])));
			assert.equal(lagged, CYCLES / 2);
			// host2 served on its share in every cycle, and the others throughout.
			for (let i = 0; i < CYCLES; i++) {
				const cut = phases.find(([p]) => p === `cut ${i}`)[1];
				const back = phases.find(([p]) => p.startsWith(`restore ${i}`))[1];
				assert.ok(rs.some((r) => r.host === 'host2' && r.status === 200 && r.at > cut + 3500 && r.at < back),
					`host2 served nothing on its local share in cycle ${i}`);
			}
			assert.deepEqual(await modes(), ['shared', 'shared', 'shared']);
		} finally {
			await c.stop();
		}
	});

	it('5. a key refused (401) on one host is marked invalid on every host; re-enabled, the shared mark goes', async () => {
		const good = key(1740), revoked = key(1741);	/* the mock does not know the second: 401 */
		const c = await startCluster({
			n: 2, keys: [{ key: good, rpm: 100 }],
			providers: (m) => [{ name: 'good', key: good, url: m.url, rpm: 50 }, { name: 'revoked', key: revoked, url: m.url, rpm: 50 }],
		});
		try {
			const body = JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] });
			const post = (h) => request(`${h.dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
			// host0 meets the 401 (and retries on the good key: the client sees a 200).
			await until(async () => {
				assert.equal((await post(c.hosts[0])).status, 200);
				return (await c.mock.record()).some((x) => x.key === revoked);
			}, 10000, 'a request to the revoked key');
			const status1 = () => sql(c.hosts[1].st, "SELECT status FROM providers WHERE name = 'revoked'");
			await until(() => status1() === 'invalid', 3000, 'host1 marks the key invalid');
			assert.match(sql(c.hosts[1].st, "SELECT status_reason FROM providers WHERE name = 'revoked'"), /401\/403 on a host of the cluster/);
			const before = (await c.mock.record()).filter((x) => x.key === revoked).length;
			for (let i = 0; i < 20; i++) assert.equal((await post(c.hosts[1])).status, 200);
			assert.equal((await c.mock.record()).filter((x) => x.key === revoked).length, before, 'host1 sent to the invalid key');
			const names = await c.redis.cmd('KEYS', 'sc:bb:i:*');
			assert.equal(names.length, 1);
			// The operator, having seen it invalid on host1 (its data plane has
			// loaded the row), makes it active again there: the shared mark goes.
			await until(() => {
				const snap = JSON.parse(sql(c.hosts[1].st, 'SELECT snapshot FROM live_status WHERE id = 1') || '{}');
				return snap.providers?.find((p) => p.name === 'revoked')?.status === 'invalid';
			}, 5000, 'host1 shows the key invalid');
			execFileSync(c.hosts[1].st.ctl, ['--db', c.hosts[1].st.db, 'providers', 'enable', 'revoked'], { env: c.hosts[1].st.env, stdio: 'pipe' });
			await until(async () => (await c.redis.cmd('KEYS', 'sc:bb:i:*')).length === 0, 5000, 'the shared mark cleared');
			// And host1 uses the key again (the mock still refuses it: marked again, shared again).
			await until(async () => {
				await post(c.hosts[1]);
				return (await c.mock.record()).filter((x) => x.key === revoked).length > before;
			}, 5000, 'host1 tries the re-enabled key');
		} finally {
			await c.stop();
		}
	});

	it('4. requirepass: AUTH works, a wrong password is refused loudly, the password is never shown; settings apply without restart', async () => {
		const PW = 'Pw-s3cret-Cluster-9137';
		const redis = await startRedis({ password: PW });
		const mock = await startMock({ keys: [{ key: key(1730), rpm: 5 }], windowMs: WIN, chunks: 1, intervalMs: 1 });
		const st = makeDb({
			providers: [{ name: 'p0', key: key(1730), url: mock.url, rpm: 5 }],
			settings: { rpm_window_seconds: 2, rpm_window_margin_ms: MARGIN, cluster_namespace: 'pw', cluster_host_name: 'solo',
				redis_url: `redis://:wrong-${PW}@127.0.0.1:${redis.port}/0` },
		});
		let dp = null;
		try {
			dp = await startDataplane(st);
			await until(() => dp.logs().includes('Redis refused the password'), 5000, 'the AUTH refusal in the log');
			assert.equal(await modeOf(dp), 'quarantine');
			assert.equal((await health(dp)).status, 'degraded');
			// The right password, set while it runs.
			execFileSync(st.ctl, ['--db', st.db, 'config', 'set', 'redis_url', redis.url], { env: st.env });
			await until(async () => (await modeOf(dp)) === 'shared', 8000, 'shared after the setting changed');
			const r = await request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
				body: JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] }) });
			assert.equal(r.status, 200, r.body);
			assert.equal(await redis.cmd('ZCARD', `sc:pw:w:${(await redis.cmd('KEYS', 'sc:pw:w:*'))[0].slice(8)}`), 1);
			// An empty script cache (a failover to a replica, SCRIPT FLUSH): NOSCRIPT, then EVAL.
			await redis.cmd('SCRIPT', 'FLUSH');
			const r2 = await request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
				body: JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'hi' }] }) });
			assert.equal(r2.status, 200, r2.body);
			assert.equal(await redis.cmd('ZCARD', `sc:pw:w:${(await redis.cmd('KEYS', 'sc:pw:w:*'))[0].slice(8)}`), 2);
			assert.equal(await modeOf(dp), 'shared');
			assert.match((await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body, /sidecar_cluster_script_errors_total 0/);
			const shown = execFileSync(st.ctl, ['--db', st.db, 'config', 'get', 'redis_url'], { env: st.env }).toString();
			assert.equal(shown.trim(), `redis://:****@127.0.0.1:${redis.port}/0`);
			const m = (await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body;
			const s = sql(st, 'SELECT snapshot FROM live_status WHERE id = 1');
			for (const text of [dp.logs(), m, s, shown]) assert.ok(!text.includes(PW), 'the password leaked');
			// Back to a single host without a restart.
			execFileSync(st.ctl, ['--db', st.db, 'config', 'set', 'redis_url', ''], { env: st.env });
			await until(async () => (await health(dp)).cluster === undefined, 8000, 'single host again');
			assert.ok(!(await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body.includes('sidecar_cluster_mode'));
		} finally {
			await dp?.stop('SIGTERM');
			await mock.stop();
			await redis.stop();
			cleanup(st);
		}
	});
});
