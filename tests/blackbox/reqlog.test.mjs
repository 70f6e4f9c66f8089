// The request log end to end (issue 19): requests through the real data
// plane to the mock upstream, then the request_log / request_attempts rows
// the statistics writer committed, compared with what each client received.
//
//   - successes (plain and streamed), a retry after a 429, a fallback, a
//     queue timeout and a client disconnect: each row has the right id (the
//     X-Request-Id the client got), client label, provider, pool, status,
//     error code, timings, tokens and attempts;
//   - the ring keeps exactly request_log_rows rows under sustained load, and
//     the database file stops growing;
//   - nothing secret is stored: the provider keys and the client token are
//     in neither the database file nor its WAL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, setSetting, sleep, startDataplane, until } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-1901-aaaaaaaaaaaaaaaa';
const K2 = 'nvapi-TEST-1902-bbbbbbbbbbbbbbbb';
const KF = 'nvapi-TEST-1903-ffffffffffffffff';
const KQ = 'nvapi-TEST-1904-qqqqqqqqqqqqqqqq';

function sql(st, q) {
	return execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', st.db, q], { encoding: 'utf8' }).trim();
}
function rows(st, q) {
	const t = sql(st, q);
	return t ? JSON.parse(t) : [];
}
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

// The logged row of a request id, once the writer committed it, with its attempts.
async function logged(st, rid) {
	const r = await until(() => rows(st, `SELECT * FROM request_log WHERE request_id = '${rid}'`)[0], 5000,
		`the request log row of ${rid}`);
	r.att = rows(st, `SELECT * FROM request_attempts WHERE seq = ${r.seq} ORDER BY n`);
	return r;
}

describe('request log', { timeout: 120000 }, () => {
	let mock, st, dp, token, retried;
	const auth = () => ({ authorization: `Bearer ${token}` });
	const send = (rid, model, extra = {}, headers = {}) =>
		postJson(`${dp.url}/chat/completions`, chat(model, extra), { 'x-request-id': rid, ...auth(), ...headers });

	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }, { key: KF }, { key: KQ }], chunks: 3, intervalMs: 5 });
		st = makeDb({
			settings: { stats_flush_ms: 200, status_publish_ms: 200, recover_wait_seconds: 0,
				rpm_window_seconds: 30, queue_timeout_seconds: 1, retry_after_seconds: 9 },
			providers: [
				{ name: 'm1', key: K1, url: mock.url, prefix: 'mock/' },
				{ name: 'm2', key: K2, url: mock.url, prefix: 'mock/' },
				{ name: 'f1', key: KF, url: mock.url, prefix: 'mock/', pool: 'fallback' },
				{ name: 'q1', key: KQ, url: mock.url, prefix: 'q/', rpm: 1 },
			],
		});
		sql(st, "UPDATE providers SET cost_per_1k = 0.5 WHERE name IN ('m1', 'm2', 'f1')");
		token = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client', '--label', 'openclaw-test'],
			{ env: st.env, encoding: 'utf8' }).trim();
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('successes: id, client label, provider, pool, timings, tokens, cost, one ok attempt', async () => {
		const r = await send('rl-ok-plain', 'mock/m');
		assert.equal(r.status, 200, r.body);
		assert.equal(r.headers['x-request-id'], 'rl-ok-plain');
		const s = await send('rl-ok-stream', 'mock/m', { stream: true, stream_options: { include_usage: true } });
		assert.equal(s.status, 200);
		const usage = JSON.parse(r.body).usage;

		const a = await logged(st, 'rl-ok-plain');
		assert.equal(a.client, 'openclaw-test');
		assert.equal(a.model, 'mock/m');
		assert.equal(a.provider_name, r.headers['x-sidecar-provider']);
		assert.equal(a.provider_id, rows(st, `SELECT id FROM providers WHERE name = '${a.provider_name}'`)[0].id);
		assert.equal(a.pool, 'main');
		assert.equal(a.status, 200);
		assert.equal(a.error_code, '');
		assert.equal(a.attempts, 1);
		assert.equal(a.streamed, 0);
		assert.equal(a.client_disconnected, 0);
		assert.equal(a.total_tokens, usage.total_tokens);
		assert.equal(a.prompt_tokens, usage.prompt_tokens);
		assert.equal(a.completion_tokens, usage.completion_tokens);
		assert.ok(Math.abs(a.cost - usage.total_tokens / 1000 * 0.5) < 1e-9, `cost ${a.cost}`);
		assert.equal(a.queue_ms, 0);
		assert.ok(a.latency_ms >= 0 && a.ttfb_ms >= 0 && a.ttfb_ms <= a.latency_ms, JSON.stringify(a));
		assert.match(a.finished_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
		assert.ok(Math.abs(a.finished_ms - Date.now()) < 60000);
		assert.equal(a.att.length, 1);
		assert.equal(a.att[0].provider_name, a.provider_name);
		assert.equal(a.att[0].outcome, 'ok');
		assert.equal(a.att[0].status, 200);
		assert.equal(a.att[0].pool, 'main');

		const b = await logged(st, 'rl-ok-stream');
		assert.equal(b.streamed, 1);
		assert.equal(b.status, 200);
		assert.ok(b.total_tokens > 0);
		assert.equal(b.att[0].outcome, 'ok');
	});

	it('a client that goes away mid-stream: 499, client_disconnected, the attempt client_closed', async () => {
		await new Promise((resolve) => {
			const req = http.request(`${dp.url}/chat/completions`, {
				method: 'POST',
				headers: { 'content-type': 'application/json', 'x-request-id': 'rl-gone',
					'x-mock-first-delay-ms': '3000', ...auth() },
			}, (res) => { res.on('data', () => {}); res.on('error', () => {}); });
			req.on('error', () => resolve());
			req.end(JSON.stringify(chat('mock/m', { stream: true })));
			setTimeout(() => { req.destroy(); resolve(); }, 400);
		});
		const g = await logged(st, 'rl-gone');
		assert.equal(g.status, 499);
		assert.equal(g.error_code, 'client_closed');
		assert.equal(g.client_disconnected, 1);
		assert.equal(g.streamed, 1);
		assert.equal(g.total_tokens, -1);
		assert.equal(g.att.length, 1);
		assert.equal(g.att[0].outcome, 'client_closed');
		assert.ok(g.att[0].duration_ms >= 300, `attempt lasted ${g.att[0].duration_ms} ms`);
	});

	it('a 429 retried on the other key: two attempts, rate_limited then ok', async () => {
		// One 429 waits on m1; the first request that reaches it is retried on m2.
		await mock.setKey(K1, 0, 'status=429', 1);
		const seen = [];
		let r = null;
		for (let i = 0; i < 6 && !r; i++) {
			assert.equal((await send(`rl-retry-${i}`, 'mock/m')).status, 200);
			const x = await logged(st, `rl-retry-${i}`);
			seen.push(x);
			if (x.attempts === 2) r = x;
		}
		assert.ok(r, JSON.stringify(seen));
		retried = r.request_id;
		assert.ok(seen.slice(0, -1).every((x) => x.attempts === 1 && x.provider_name === 'm2'), JSON.stringify(seen));
		assert.equal(r.status, 200);
		assert.equal(r.provider_name, 'm2');
		assert.equal(r.pool, 'main');
		assert.deepEqual(r.att.map((x) => [x.n, x.provider_name, x.status, x.outcome, x.pool]),
			[[1, 'm1', 429, 'rate_limited', 'main'], [2, 'm2', 200, 'ok', 'main']]);
		assert.ok(r.att[1].start_ms >= r.att[0].start_ms + r.att[0].duration_ms - 1, JSON.stringify(r.att));
	});

	it('every main key cooling: served by the fallback pool after a 429', async () => {
		// m1 cools (30 s) since the last test; a 429 on m2 leaves only the fallback.
		await mock.setKey(K2, 0, 'status=429', 1);
		const f = await send('rl-fallback', 'mock/m');
		assert.equal(f.status, 200, f.body);
		assert.equal(f.headers['x-sidecar-degraded'], 'fallback');
		const r = await logged(st, 'rl-fallback');
		assert.equal(r.provider_name, 'f1');
		assert.equal(r.pool, 'fallback');
		assert.deepEqual(r.att.map((x) => [x.provider_name, x.outcome, x.pool]),
			[['m2', 'rate_limited', 'main'], ['f1', 'ok', 'fallback']]);
	});

	it('a queue timeout: 503 queue_timeout, the wait, no provider, no attempt', async () => {
		assert.equal((await send('rl-q-fill', 'q/m')).status, 200);	/* q1's one start per 30 s */
		const q = await send('rl-q-timeout', 'q/m');
		assert.equal(q.status, 503);
		assert.equal(JSON.parse(q.body).error.code, 'queue_timeout');
		const r = await logged(st, 'rl-q-timeout');
		assert.equal(r.status, 503);
		assert.equal(r.error_code, 'queue_timeout');
		assert.equal(r.provider_id, null);
		assert.equal(r.pool, null);
		assert.equal(r.attempts, 0);
		assert.equal(r.att.length, 0);
		assert.ok(r.queue_ms >= 900 && r.queue_ms < 3000, `queue_ms ${r.queue_ms}`);
		assert.equal(r.ttfb_ms, -1);
		assert.equal(r.client, 'openclaw-test');
	});

	it('the client label is per request, also on one kept-alive connection', async () => {
		const other = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client', '--label', 'second-client'],
			{ env: st.env, encoding: 'utf8' }).trim();
		const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
		try {
			for (const [rid, tok] of [['rl-ka-1', token], ['rl-ka-2', other], ['rl-ka-3', token]]) {
				const r = await request(`${dp.url}/chat/completions`, { method: 'POST', agent, body: JSON.stringify(chat('mock/m')),
					headers: { 'content-type': 'application/json', 'x-request-id': rid, authorization: `Bearer ${tok}` } });
				assert.equal(r.status, 200, r.body);
			}
		} finally {
			agent.destroy();
		}
		assert.equal((await logged(st, 'rl-ka-1')).client, 'openclaw-test');
		assert.equal((await logged(st, 'rl-ka-2')).client, 'second-client');
		assert.equal((await logged(st, 'rl-ka-3')).client, 'openclaw-test');
		// Without a valid token: refused before routing, so not a logged request.
		const bad = await postJson(`${dp.url}/chat/completions`, chat('mock/m'), { 'x-request-id': 'rl-no-token' });
		assert.equal(bad.status, 401);
		assert.equal(bad.headers['x-request-id'], 'rl-no-token');
		await sleep(500);
		assert.equal(rows(st, "SELECT count(*) AS n FROM request_log WHERE request_id = 'rl-no-token'")[0].n, 0);
	});

	it('an id the client did not send is the one it received', async () => {
		const r = await postJson(`${dp.url}/chat/completions`, chat('mock/m'), auth());
		assert.equal(r.status, 200);
		const rid = r.headers['x-request-id'];
		assert.ok(rid && rid.length > 10);
		assert.equal((await logged(st, rid)).status, 200);
	});

	it('sidecarctl requests prints the same: --errors, --since, --provider, --status, --id with attempts', () => {
		const ctl = (args) => {
			try {
				return { code: 0, out: execFileSync(st.ctl, ['--db', st.db, 'requests', ...args], { env: st.env, encoding: 'utf8' }) };
			} catch (e) {
				return { code: e.status, out: String(e.stdout), err: String(e.stderr) };
			}
		};
		let r = ctl([]);
		assert.equal(r.code, 0);
		assert.match(r.out, /^FINISHED\s+REQUEST ID\s+CLIENT\s+MODEL\s+PROVIDER\s+POOL\s+STATUS\s+ERROR/);
		assert.match(r.out, /rl-ok-plain\s+openclaw-test\s+mock\/m\s+m[12]\s+main\s+200\s/);
		// Oldest of the newest first: the plain success comes before the fallback.
		assert.ok(r.out.indexOf('rl-ok-plain') < r.out.indexOf('rl-fallback'));
		r = ctl(['--errors']);
		assert.equal(r.code, 0);
		assert.match(r.out, /rl-gone\s+openclaw-test\s+mock\/m\s+m[12]\s+main\s+499\s+client_closed/);
		assert.match(r.out, /rl-q-timeout\s+openclaw-test\s+q\/m\s+-\s+-\s+503\s+queue_timeout\s+0\s+\d+\s+-\s/);
		assert.ok(!r.out.includes('rl-ok-plain'), r.out);
		r = ctl(['--errors', '--since', '10m', '--status', '5xx']);
		assert.ok(r.out.includes('rl-q-timeout') && !r.out.includes('rl-gone'), r.out);
		r = ctl(['--since', '2099-01-01']);
		assert.match(r.out, /no matching requests/);
		r = ctl(['--provider', 'f1']);
		assert.ok(r.out.includes('rl-fallback') && !r.out.includes('rl-ok-plain'), r.out);
		r = ctl(['--limit', '1']);
		assert.equal(r.out.trim().split('\n').length, 2, r.out);
		r = ctl(['--id', retried]);
		assert.equal(r.code, 0);
		assert.match(r.out, new RegExp(`^request   ${retried} \\(seq \\d+\\)$`, 'm'));
		assert.match(r.out, /^client    openclaw-test$/m);
		assert.match(r.out, /^provider  m2 \(main\)$/m);
		assert.match(r.out, /^  1  m1\s+main\s+429  rate_limited\s+at \+\d+ ms, \d+ ms$/m);
		assert.match(r.out, /^  2  m2\s+main\s+200  ok\s+at \+\d+ ms, \d+ ms$/m);
		r = ctl(['--id', 'never-sent']);
		assert.equal(r.code, 1);
		assert.match(r.err, /no request never-sent in the request log/);
		for (const bad of [['--since', 'yesterday'], ['--status', '6xx'], ['--limit', '0'], ['--bogus'], ['extra']]) {
			r = ctl(bad);
			assert.equal(r.code, 2, bad.join(' '));
		}
		// Never a key, never the token.
		for (const s of [K1, K2, KF, token]) assert.ok(!ctl([]).out.includes(s));
	});

	it('the ring keeps exactly request_log_rows rows under sustained load; the file stays bounded', async () => {
		setSetting(st, 'request_log_rows', '40');
		// More than 40 rows until the data plane re-reads the setting (within
		// 1 s); then its writer prunes them to 40 at the next flush.
		await until(async () => {
			await send('rl-warm', 'mock/m');
			return rows(st, 'SELECT count(*) AS n FROM request_log')[0].n === 40;
		}, 10000, 'pruning to 40 rows');
		const sizes = [];
		let sent = 0;
		for (let round = 0; round < 6; round++) {
			const batch = [];
			for (let i = 0; i < 40; i++) batch.push(send(`rl-load-${round}-${i}`, 'mock/m'));
			for (const r of await Promise.all(batch)) assert.ok(r.status === 200 || r.status === 503, r.body);
			sent += 40;
			const last = `rl-load-${round}-39`;
			await logged(st, last);
			await sleep(300);	/* the writer commits every 200 ms */
			const n = rows(st, 'SELECT count(*) AS n, max(seq) - min(seq) + 1 AS span FROM request_log')[0];
			assert.equal(n.n, 40, `round ${round}: ${JSON.stringify(n)}`);
			assert.equal(n.span, 40, 'the newest 40, no gaps');
			const att = rows(st, 'SELECT count(*) AS n FROM request_attempts WHERE seq NOT IN (SELECT seq FROM request_log)')[0];
			assert.equal(att.n, 0, 'attempts of pruned rows are gone');
			sizes.push(rows(st, 'SELECT page_count AS n FROM pragma_page_count')[0].n);
		}
		assert.equal(sent, 240);
		const m = await request(`http://127.0.0.1:${dp.metricsPort}/metrics`);
		const written = +(/^sidecar_request_log_written_total (\d+)$/m.exec(m.body) || [])[1];
		assert.ok(written >= 240, `sidecar_request_log_written_total ${written}`);
		assert.match(m.body, /^sidecar_request_log_dropped_total 0$/m);
		// The newest row is the last request sent.
		const newest = rows(st, 'SELECT request_id FROM request_log ORDER BY seq DESC LIMIT 40').map((x) => x.request_id);
		assert.ok(newest.every((x) => x.startsWith('rl-load-5-')), JSON.stringify(newest));
		// Freed pages are reused: after the first rounds the database does not grow.
		assert.ok(sizes[5] <= sizes[1] + 2, `database pages grew: ${sizes.join(', ')}`);
	});

	it('turned off (request_log_rows = 0): nothing is recorded and the log is emptied', async () => {
		setSetting(st, 'request_log_rows', '0');
		await until(() => rows(st, 'SELECT count(*) AS n FROM request_log')[0].n === 0, 5000, 'the log emptied');
		assert.equal((await send('rl-off', 'mock/m')).status, 200);
		await sleep(700);
		assert.equal(rows(st, "SELECT count(*) AS n FROM request_log WHERE request_id = 'rl-off'")[0].n, 0);
		setSetting(st, 'request_log_rows', '20000');
		await sleep(1500);	/* the data plane re-reads settings within 1 s */
		assert.equal((await send('rl-on-again', 'mock/m')).status, 200);
		await logged(st, 'rl-on-again');
	});

	it('nothing secret is stored: no provider key, no client token in the database or its WAL', async () => {
		const files = [st.db, st.db + '-wal'].filter((f) => existsSync(f));
		assert.ok(files.length >= 1);
		for (const f of files) {
			const bytes = readFileSync(f);
			for (const secret of [K1, K2, KF, KQ, token])
				assert.ok(!bytes.includes(secret), `${f} holds a secret (${secret.slice(0, 12)}…)`);
		}
		// And the rows do hold what they should (the test is not vacuous).
		assert.ok(rows(st, "SELECT count(*) AS n FROM request_log WHERE client = 'openclaw-test'")[0].n >= 1);
	});

	// Last: the 429 puts whichever provider serves it into a cooldown.
	it('a rate-limit error inside a 200 stream: the attempt is rate_limited', async () => {
		const r = await send('rl-sse-429', 'mock/m', { stream: true }, { 'x-mock-fault': 'sse-429=1' });
		assert.equal(r.status, 200);
		const g = await logged(st, 'rl-sse-429');
		assert.equal(g.status, 200);
		assert.equal(g.att.length, 1);
		assert.equal(g.att[0].outcome, 'rate_limited');
		assert.equal(g.att[0].status, 429);
	});
});
