// Usage statistics and the live status snapshot, end to end: requests
// through the real data plane to the mock upstream, then the rows the
// statistics writer flushed (provider_usage_logs, daily_stats, live_status)
// compared with what the mock says it answered (/_mock/record usage).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, setSetting, sleep, startDataplane, until } from './lib/stack.mjs';

const KEY1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const KEY2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';
const KEY3 = 'nvapi-TEST-0003-xxxxxxxxxxxxxxxx';
const FLUSH = { stats_flush_ms: 200, status_publish_ms: 200 };

function sql(st, q) {
	return execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', st.db, q], { encoding: 'utf8' }).trim();
}
function rows(st, q) {
	const t = sql(st, q);
	return t ? JSON.parse(t) : [];
}
function providerId(st, name) {
	return rows(st, `SELECT id FROM providers WHERE name = '${name}'`)[0].id;
}
function usageRow(st, name) {
	return rows(st, `SELECT u.* FROM provider_usage_logs u JOIN providers p ON p.id = u.provider_id WHERE p.name = '${name}'`);
}
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

describe('usage statistics', () => {
	let mock, st, dp;
	before(async () => {
		mock = await startMock({ keys: [{ key: KEY1 }, { key: KEY2 }, { key: KEY3 }], chunks: 4, intervalMs: 5 });
		st = makeDb({
			settings: FLUSH,
			providers: [
				{ name: 'p-usage', key: KEY1, url: mock.url, prefix: 'mock/' },
				{ name: 'p-nousage', key: KEY2, url: mock.url, prefix: 'nou/', stream_usage: false },
				{ name: 'p-ttft', key: KEY3, url: mock.url, prefix: 'ttft/' },
			],
		});
		sql(st, "UPDATE providers SET cost_per_1k = 0.25 WHERE name = 'p-usage'");
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('non-streaming and streaming requests give exact tokens, cost and counts after a flush', async () => {
		await mock.reset();
		const bodies = [];
		for (let i = 0; i < 3; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, chat('mock/m'));
			assert.equal(r.status, 200, r.body);
		}
		// Streams where the client asked for usage: it gets the chunk as sent.
		for (let i = 0; i < 2; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, chat('mock/m', { stream: true, stream_options: { include_usage: true } }));
			assert.equal(r.status, 200);
			assert.match(r.body, /"usage":\{"prompt_tokens":\d+/);
			bodies.push(r.body);
		}
		// Streams where it did not: the sidecar asks upstream and drops that chunk.
		for (let i = 0; i < 2; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, chat('mock/m', { stream: true }));
			assert.equal(r.status, 200);
			assert.ok(!r.body.includes('"usage"'), `client bytes carry no usage chunk: ${r.body}`);
			assert.match(r.body, /data: \[DONE\]/);
		}
		const rec = await mock.waitRecord((l) => l.length === 7 && l.every((e) => e.t_end_ms !== null));
		assert.equal(rec.filter((e) => e.stream && e.include_usage).length, 4, 'usage asked upstream for all four streams');
		const want = { prompt: 0, completion: 0, total: 0 };
		for (const e of rec) {
			assert.ok(e.usage, `mock reported usage for #${e.seq}`);
			want.prompt += e.usage.prompt_tokens;
			want.completion += e.usage.completion_tokens;
			want.total += e.usage.total_tokens;
		}
		const u = await until(() => {
			const r = usageRow(st, 'p-usage');
			return r.length === 1 && r[0].request_count === 7 ? r[0] : null;
		}, 5000, 'the flushed usage row');
		assert.equal(u.model, 'm', 'model as forwarded (prefix stripped)');
		assert.equal(u.prompt_tokens, want.prompt);
		assert.equal(u.completion_tokens, want.completion);
		assert.equal(u.total_tokens, want.total);
		assert.ok(Math.abs(u.cost - want.total / 1000 * 0.25) < 1e-9, `cost ${u.cost}`);
		assert.equal(u.error_count, 0);
		assert.equal(u.unknown_usage_count, 0);
		assert.equal(u.avg_latency_ms, Math.floor(u.latency_sum_ms / u.request_count));
		assert.match(u.hour_bucket, /^\d{4}-\d{2}-\d{2}T\d{2}$/);
		const d = rows(st, `SELECT * FROM daily_stats WHERE pool = 'main'`);
		assert.equal(d.length, 1);
		assert.equal(d[0].date, u.hour_bucket.slice(0, 10));
		assert.equal(d[0].total_requests, 7);
		assert.equal(d[0].total_tokens, want.total);
		assert.ok(Math.abs(d[0].total_cost - want.total / 1000 * 0.25) < 1e-9);
		assert.equal(d[0].unique_providers, 1);
	});

	it('a stream that ends without usage is counted as unknown, not as zero tokens', async () => {
		const r = await postJson(`${dp.url}/chat/completions`, chat('nou/m', { stream: true }));
		assert.equal(r.status, 200);
		assert.ok(!r.body.includes('"usage"'));
		const u = await until(() => {
			const x = usageRow(st, 'p-nousage');
			return x.length === 1 ? x[0] : null;
		}, 5000, 'the usage row of the provider without stream usage');
		assert.equal(u.request_count, 1);
		assert.equal(u.unknown_usage_count, 1);
		assert.equal(u.total_tokens, 0);
		const m = await request(`http://127.0.0.1:${dp.metricsPort}/metrics`);
		assert.match(m.body, /^sidecar_streams_without_usage_total\{provider="p-nousage"\} 1$/m);
		const d = await until(() => {
			const x = rows(st, `SELECT unique_providers FROM daily_stats WHERE pool = 'main'`);
			return x.length && x[0].unique_providers === 2 ? x : null;
		}, 5000, 'unique_providers 2');
		assert.equal(d[0].unique_providers, 2);
	});

	it('records time to first token for streams (the mock\'s first-chunk delay)', async () => {
		for (let i = 0; i < 2; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, chat('ttft/m', { stream: true }),
				{ 'x-mock-first-delay-ms': '300', 'x-mock-interval-ms': '100' });
			assert.equal(r.status, 200);
		}
		const u = await until(() => {
			const x = usageRow(st, 'p-ttft');
			return x.length === 1 && x[0].request_count === 2 ? x[0] : null;
		}, 5000, 'the TTFT row');
		// TTFT, not the whole stream (which lasts 300 + 3 x 100 ms).
		assert.ok(u.avg_latency_ms >= 290 && u.avg_latency_ms < 450, `avg TTFT ${u.avg_latency_ms} ms`);
		assert.ok(u.latency_sum_ms >= 580 && u.latency_sum_ms < 900, `sum ${u.latency_sum_ms}`);
	});

	it('publishes the live status snapshot as docs/status-snapshot.md describes', async () => {
		const r0 = await postJson(`${dp.url}/chat/completions`, chat('mock/m'));
		assert.equal(r0.status, 200);
		await sleep(500);
		const row = rows(st, 'SELECT updated_at, snapshot FROM live_status WHERE id = 1');
		assert.equal(row.length, 1);
		assert.match(row[0].updated_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
		const s = JSON.parse(row[0].snapshot);
		assert.match(s.ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
		assert.ok(Math.abs(Date.now() - s.ts_ms) < 3000, `fresh: ${Date.now() - s.ts_ms} ms old`);
		assert.equal(s.pid, dp.pid);
		assert.match(s.started_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
		assert.equal(typeof s.version, 'string');
		assert.equal(s.demo, false);
		assert.equal(s.inflight, 0);
		assert.deepEqual(Object.keys(s.queue).sort(), ['capacity', 'depth', 'rejected_overflow', 'rejected_timeout']);
		assert.equal(s.queue.capacity, 500);
		assert.equal(s.queue.depth, 0);
		for (const k of ['requests', 'errors', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost', 'fallback', 'emergency', 'upstream_429']) {
			assert.equal(typeof s.last_minute[k], 'number', `last_minute.${k}`);
		}
		assert.ok(s.last_minute.requests >= 11, `requests in the last minute: ${s.last_minute.requests}`);
		assert.ok(s.last_minute.total_tokens > 0);
		assert.equal(s.minutes.length, 60);
		for (let i = 1; i < 60; i++) assert.equal(s.minutes[i].t - s.minutes[i - 1].t, 60);
		assert.ok(s.minutes[59].t <= s.ts_ms / 1000 && s.ts_ms / 1000 < s.minutes[59].t + 60);
		assert.equal(s.minutes.reduce((a, m) => a + m.requests, 0) >= 11, true);
		assert.equal(s.providers.length, 3);
		const p = s.providers.find((x) => x.name === 'p-usage');
		assert.equal(p.id, providerId(st, 'p-usage'));
		assert.equal(p.pool, 'main');
		assert.equal(p.status, 'active');
		assert.equal(p.state, 'ok');
		assert.ok(p.rpm_used >= 8, `rpm_used ${p.rpm_used}`);
		assert.equal(p.rpm_limit, 1000);
		assert.equal(p.cooldown_remaining_ms, 0);
		assert.equal(p.cooldown_until, null);
		assert.equal(p.consecutive_429, 0);
		assert.equal(p.consecutive_failures, 0);
		assert.equal(p.health, 'healthy');
		assert.equal(typeof p.last_latency_ms, 'number');
		assert.equal(p.inflight, 0);
		assert.equal(p.requests_1m, 8);
		assert.equal(p.errors_1m, 0);
		assert.equal(p.success_rate_5m, 1);
		// Keys never appear.
		assert.ok(!row[0].snapshot.includes('nvapi-'), 'no key in the snapshot');

		// A failed request moves the 5-minute success rate, in the snapshot and
		// in provider_health (which the dashboard and the admin API read).
		const bad = await postJson(`${dp.url}/chat/completions`, chat('mock/m'), { 'x-mock-fault': 'status=400' });
		assert.equal(bad.status, 400);
		const name = bad.headers['x-sidecar-provider'];
		const id = providerId(st, name);
		let snap, health;
		for (let i = 0; i < 40; i++) {
			await sleep(100);
			snap = JSON.parse(rows(st, 'SELECT snapshot FROM live_status WHERE id = 1')[0].snapshot)
				.providers.find((x) => x.name === name);
			health = rows(st, `SELECT success_rate_5m, last_latency_ms FROM provider_health WHERE provider_id = '${id}'`)[0];
			if (snap.success_rate_5m < 1 && health && Number(health.success_rate_5m) === snap.success_rate_5m) break;
		}
		// One failure among this file's requests (all within five minutes).
		assert.ok(snap.errors_1m >= 1, `errors_1m ${snap.errors_1m}`);
		assert.ok(snap.success_rate_5m < 1 && snap.success_rate_5m >= 0.8, `success_rate_5m ${snap.success_rate_5m}`);
		assert.ok(health, 'provider_health row written');
		assert.equal(Number(health.success_rate_5m), snap.success_rate_5m);
		assert.equal(Number(health.last_latency_ms), snap.last_latency_ms);
	});
});

describe('statistics across restarts', () => {
	let mock, st;
	before(async () => {
		mock = await startMock({ keys: [{ key: KEY1 }] });
		st = makeDb({ settings: FLUSH, providers: [{ name: 'p-restart', key: KEY1, url: mock.url, prefix: 'mock/' }] });
	});
	after(async () => {
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('two restarts with traffic in between: counts add up, the average comes from the sums', async () => {
		// Three runs at different upstream latencies; stopped gracefully twice
		// (the final flush), then killed after a flush interval (a crash loses
		// at most one interval, here nothing).
		// The first two runs flush only when they stop (a one-minute interval).
		const phases = [{ n: 3, lat: 50 }, { n: 2, lat: 250 }, { n: 4, lat: 120 }];
		let total = 0;
		// Rows past the retention go at the first flush after the start.
		const pid = providerId(st, 'p-restart');
		sql(st, `INSERT INTO provider_usage_logs (id, provider_id, model, hour_bucket, request_count) VALUES
			('${pid}|old|2020-01-01T00', '${pid}', 'old', '2020-01-01T00', 5);
			INSERT INTO daily_stats (id, date, pool, total_requests) VALUES ('2020-01-01|main', '2020-01-01', 'main', 5);
			INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, started_at)
			VALUES ('old-event', '${pid}', 1, 30, '2020-01-01T00:00:00Z')`);
		for (const [i, ph] of phases.entries()) {
			setSetting(st, 'stats_flush_ms', i < 2 ? 60000 : 200);
			const dp = await startDataplane(st, { env: i === 2 ? { SIDECAR_DEMO: '1' } : {} });
			try {
				for (let k = 0; k < ph.n; k++) {
					const r = await postJson(`${dp.url}/chat/completions`, chat('mock/m'), { 'x-mock-latency-ms': String(ph.lat) });
					assert.equal(r.status, 200, r.body);
				}
				total += ph.n;
				if (i < 2) {
					const ex = await dp.stop('SIGTERM');
					assert.equal(ex.code, 0, dp.logs());
					const u = usageRow(st, 'p-restart').filter((r) => r.model === 'm');
					assert.equal(u[0].request_count, total, 'the graceful stop flushed everything');
					assert.equal(usageRow(st, 'p-restart').length, 1, 'usage past the retention pruned');
					assert.equal(rows(st, "SELECT * FROM daily_stats WHERE date = '2020-01-01'").length, 0);
					assert.equal(rows(st, "SELECT * FROM cooldown_events WHERE id = 'old-event'").length, 0);
				} else {
					await until(() => usageRow(st, 'p-restart')[0].request_count === total, 5000, 'the periodic flush');
					const s = JSON.parse(rows(st, 'SELECT snapshot FROM live_status')[0].snapshot);
					assert.equal(s.demo, true, 'SIDECAR_DEMO=1 shows as demo');
					await dp.stop('SIGKILL');
				}
			} finally {
				await dp.stop();
			}
		}
		const u = usageRow(st, 'p-restart');
		assert.equal(u.length, 1);
		assert.equal(u[0].request_count, 9);
		assert.equal(u[0].avg_latency_ms, Math.floor(u[0].latency_sum_ms / 9));
		const expect = 3 * 50 + 2 * 250 + 4 * 120;
		assert.ok(u[0].latency_sum_ms >= expect && u[0].latency_sum_ms < expect + 9 * 60,
			`latency sum ${u[0].latency_sum_ms} for ${expect} ms of upstream delay`);
		const rec = await mock.record();
		const tokens = rec.reduce((a, e) => a + e.usage.total_tokens, 0);
		assert.equal(u[0].total_tokens, tokens);
		const d = rows(st, `SELECT total_requests, total_tokens FROM daily_stats WHERE pool = 'main'`);
		assert.equal(d[0].total_requests, 9);
		assert.equal(d[0].total_tokens, tokens);
	});
});
