// Black-box, robustness: statistics lost in a crash stay within one flush
// interval (SPEC §6, issue 10). Clients keep the data plane busy, it is killed
// with SIGKILL; every request the clients saw finish more than one
// stats_flush_ms (plus a margin for the flush itself) before the kill must be
// in provider_usage_logs, nothing the upstream never saw may be, and tokens and
// daily_stats agree with the counts. After a restart, a graceful stop flushes
// everything.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0601-xxxxxxxxxxxxxxxx';
const FLUSH_MS = 500;
const MARGIN_MS = 400;	// a flush's own time on a loaded 2-core machine
let mock, st, dp;

const sql = (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
const usage = () => {
	const [n, tok] = sql('SELECT coalesce(sum(request_count), 0), coalesce(sum(total_tokens), 0) FROM provider_usage_logs')
		.split('|').map(Number);
	return { n, tok, daily: Number(sql('SELECT coalesce(sum(total_requests), 0) FROM daily_stats')) };
};

describe('statistics across a crash', { timeout: 90000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }], chunks: 2, intervalMs: 5 });
		st = makeDb({
			providers: [{ name: 'a', key: K1, url: mock.url, prefix: 'mock/', rpm: 100000 }],
			settings: { stats_flush_ms: FLUSH_MS },
		});
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('kill -9 loses at most one flush interval of statistics', async () => {
		// One request alone: the tokens of one request, once flushed.
		const one = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'load' }] });
		assert.equal(one.status, 200);
		const per = JSON.parse(one.body).usage.total_tokens;
		assert.ok(per > 0);
		let base;
		for (let i = 0; i < 40; i++) {
			base = usage();
			if (base.n === 1) break;
			await sleep(100);
		}
		assert.equal(base.n, 1, 'the first request was never flushed');

		let running = true;
		const done = [];	// client-side completion times of the 200s
		const workers = Array.from({ length: 8 }, async (_, i) => {
			while (running) {
				try {
					const r = await postJson(`${dp.url}/chat/completions`, {
						model: 'mock/m', stream: i % 2 === 1, stream_options: { include_usage: true },
						messages: [{ role: 'user', content: 'load' }],
					});
					if (r.status === 200) done.push(Date.now());
				} catch {
					await sleep(20);
				}
			}
		});
		let killedAt;
		try {
			await sleep(2500);
			killedAt = Date.now();
			dp.proc.kill('SIGKILL');
			await dp.wait();
		} finally {
			running = false;
			await Promise.all(workers);
		}
		const u = usage();
		const rec = (await mock.record()).filter((x) => x.status === 200);
		const seenByUpstream = rec.length;
		const tokens = rec.map((x) => x.usage?.total_tokens ?? 0);
		const [minTok, maxTok] = [Math.min(...tokens), Math.max(...tokens)];
		const surelyFlushed = done.filter((t) => t < killedAt - FLUSH_MS - MARGIN_MS).length + 1;
		const finished = done.filter((t) => t <= killedAt).length + 1;
		const msg = `in database ${u.n}, finished before the kill ${finished}, before the last interval ${surelyFlushed}, upstream ${seenByUpstream}`;
		assert.ok(finished > 50, `load too light: ${msg}`);
		assert.ok(u.n >= surelyFlushed, `statistics lost beyond one flush interval: ${msg}`);
		assert.ok(u.n <= seenByUpstream, `statistics of requests that never happened: ${msg}`);
		assert.ok(minTok > 0 && u.tok >= u.n * minTok && u.tok <= u.n * maxTok,
			`tokens do not match the counted requests: ${msg}, tokens ${u.tok} (${minTok}..${maxTok} each)`);
		assert.equal(u.daily, u.n, 'daily_stats disagrees with provider_usage_logs');
		assert.equal(sql('PRAGMA integrity_check'), 'ok');

		// Restarted, then stopped gracefully: everything is flushed.
		dp = await startDataplane(st);
		for (let i = 0; i < 10; i++) {
			assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'load' }] })).status, 200);
		}
		const ex = await dp.stop('SIGTERM');
		assert.equal(ex.code, 0, `SIGTERM exit ${JSON.stringify(ex)}`);
		const v = usage();
		assert.equal(v.n, u.n + 10, 'a graceful stop lost statistics');
		assert.equal(v.tok, u.tok + 10 * per);
	});
});
