// Black-box: clients without a token cannot exhaust the data plane (issue 14
// item 1). Each attack runs a few seconds on loopback while a legitimate,
// authenticated client keeps getting answers within LATENCY_MS, and the data
// plane's RSS stays under RSS_LIMIT_KB:
// - slow heads and slow bodies from token-less clients, more than
//   max_connections of them, re-opened as they are closed (the oldest pending
//   connection gives way; a token-less head gets 401 before its body);
// - large bodies before authentication, and Expect: 100-continue without a
//   token (401, never "100 Continue", the body is not read);
// - the whole-body deadline with its minimum rate (408 although each byte
//   arrives well within the idle timeout);
// - the cap on the memory all bodies hold together (503 + Retry-After).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, rssKb, sleep, startDataplane } from './lib/stack.mjs';

const KEY = 'nvapi-TEST-0141-xxxxxxxxxxxxxxxx';
const LATENCY_MS = 2000;	// each legitimate request during a flood (a loaded 2-core CI machine)
// RSS bound of the data plane during the floods (sanitizer builds keep shadow memory and a quarantine).
const RSS_LIMIT_KB = (process.env.ASAN_OPTIONS ? 400 : 80) * 1024;
const FLOOD = 240;		// attacking connections held open at once
const FLOOD_MS = 6000;

// A connection that sends head, then one body byte every stepMs; it records
// what came back and whether the server closed. Re-opened by the flood.
function slowClient(port, head, stepMs) {
	const s = net.connect(port, '127.0.0.1');
	const st = { got: '', closed: false, sock: s };
	s.on('connect', () => {
		s.write(head);
		st.timer = setInterval(() => { if (!s.destroyed) s.write('x'); }, stepMs);
	});
	s.on('data', (d) => { st.got += d.toString('latin1'); });
	const end = () => { if (!st.closed) st.closedAt = Date.now(); st.closed = true; clearInterval(st.timer); };
	s.on('close', end);
	s.on('error', end);
	return st;
}

// Keep n attacking connections open for ms: opened at n per second, and each
// one the server closes re-opened a second later (a slow attack, not a
// connect flood: that is bounded by accept(), see docs/security.md).
async function flood(port, make, n, ms) {
	const all = [];
	let live = [];
	const t0 = Date.now();
	const top = () => {
		const now = Date.now();
		live = live.filter((c) => !c.closed || now - c.closedAt < 1000);
		const want = Math.min(n, Math.ceil((now - t0 + 100) * n / 1000));
		while (live.length < want) { const c = make(); all.push(c); live.push(c); }
	};
	top();
	while (Date.now() - t0 < ms) {
		await sleep(100);
		top();
	}
	for (const c of all) { clearInterval(c.timer); c.sock.destroy(); }
	return all;
}

// Authenticated chat requests, one after another, while cond(); each must be
// a 200 within LATENCY_MS. Returns the latencies.
async function legitimate(dp, tok, until) {
	const lat = [];
	while (Date.now() < until) {
		const t0 = Date.now();
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] },
			{ authorization: `Bearer ${tok}` }).catch((e) => ({ status: e.code, body: dp.logs().slice(-1500) }));
		const ms = Date.now() - t0;
		assert.equal(r.status, 200, `legitimate request during the flood: ${r.status} ${r.body}`);
		assert.ok(ms < LATENCY_MS, `a legitimate request took ${ms} ms during the flood`);
		lat.push(ms);
		const h = await request(`${dp.base}/health`).catch((e) => ({ status: e.code, body: dp.logs().slice(-1500) }));
		assert.equal(h.status, 200, `/health during the flood: ${h.status} ${h.body}`);
		await sleep(100);
	}
	return lat;
}

// One raw exchange: write head (then body parts [delayMs, Buffer]), collect
// until the server closes or totalMs; {text, ms (to the first byte), closed}.
function raw(port, head, parts = [], totalMs = 8000) {
	return new Promise((resolve) => {
		const s = net.connect(port, '127.0.0.1');
		const t0 = Date.now();
		let text = '', first = null, done = false;
		const finish = (closed) => {
			if (done) return;
			done = true;
			clearTimeout(tm);
			s.destroy();
			resolve({ text, ms: first, closed });
		};
		const tm = setTimeout(() => finish(false), totalMs);
		s.on('connect', async () => {
			s.write(head);
			for (const [delay, b] of parts) {
				if (done || first !== null) break;	// answered: stop sending, as clients do
				if (delay) await sleep(delay);
				if (!done && !s.destroyed) s.write(b);
			}
		});
		s.on('data', (d) => { if (first === null) first = Date.now() - t0; text += d.toString('latin1'); });
		s.on('close', () => finish(true));
		s.on('error', () => finish(true));
	});
}

const status = (t) => { const m = /^HTTP\/1\.1 (\d{3}) /.exec(t); return m ? +m[1] : null; };

describe('data plane under token-less floods', { timeout: 90000 }, () => {
	let mock, st, dp, tok;

	before(async () => {
		mock = await startMock({ keys: [{ key: KEY }] });
		st = makeDb({
			providers: [{ name: 'p', key: KEY, url: mock.url, prefix: 'mock/' }],
			// Fewer connections than the flood holds, and a pending allowance below that.
			settings: { max_connections: 160, max_pending_connections: 100, header_timeout_seconds: 10 },
		});
		if (!st.ctl) return;
		tok = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client', '--label', 'flood'], { env: st.env }).toString().trim();
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop('SIGTERM');
		await mock.stop();
		cleanup(st);
	});

	it('slow heads and slow bodies without a token do not lock out an authenticated client', async (t) => {
		if (!tok) return t.skip('sidecarctl not built');
		const half = FLOOD / 2;
		let i = 0;
		const make = () => (i++ % 2 === 0 ?
			slowClient(dp.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n', 5000) :
			slowClient(dp.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
				'Content-Length: 100000\r\n\r\n', 5000));
		const rss0 = rssKb(dp.pid);
		const [conns, lat] = await Promise.all([
			flood(dp.port, make, half * 2, FLOOD_MS),
			(async () => { await sleep(500); return legitimate(dp, tok, Date.now() + FLOOD_MS - 1000); })(),
		]);
		const rss = rssKb(dp.pid);
		process.stderr.write(`# slow flood: ${conns.length} connections, legitimate latency max ${Math.max(...lat)} ms, ` +
			`RSS ${rss0} -> ${rss} kB\n`);
		assert.ok(lat.length >= 5, `only ${lat.length} legitimate requests`);
		assert.ok(rss < RSS_LIMIT_KB, `RSS ${rss} kB`);
		// Token-less bodies were refused on their head, before the body.
		const bodies = conns.filter((c, k) => k % 2 === 1 && c.got !== '');
		assert.ok(bodies.length > 0);
		for (const c of bodies) assert.equal(status(c.got), 401, c.got);
		assert.equal(dp.exited(), null);
	});

	it('large bodies without a token are refused on the head and never read into memory', async (t) => {
		if (!tok) return t.skip('sidecarctl not built');
		const rss0 = rssKb(dp.pid);
		const chunk = Buffer.alloc(1 << 20, 0x61);
		const big = (expect) => raw(dp.port,
			'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
			`Content-Length: ${30 << 20}\r\n${expect ? 'Expect: 100-continue\r\n' : ''}\r\n`,
			expect ? [] : Array.from({ length: 29 }, () => [5, chunk]), 6000);
		const t0 = Date.now();
		const res = await Promise.all([...Array.from({ length: 7 }, () => big(false)), big(true),
			(async () => { await sleep(200); return legitimate(dp, tok, Date.now() + 2000); })()]);
		const rss = rssKb(dp.pid);
		process.stderr.write(`# large bodies: ${Date.now() - t0} ms, RSS ${rss0} -> ${rss} kB\n`);
		for (const r of res.slice(0, 8)) {
			assert.equal(status(r.text), 401, r.text.slice(0, 200));
			assert.doesNotMatch(r.text, /100 Continue/);
			assert.ok(r.closed, 'the connection is closed after the 401');
		}
		assert.ok(rss - rss0 < 32 * 1024, `RSS grew by ${rss - rss0} kB for 8 bodies of 30 MiB refused unread`);
	});
});

describe('data plane request body limits', { timeout: 60000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: [{ key: KEY }] });
		st = makeDb({
			providers: [{ name: 'p', key: KEY, url: mock.url, prefix: 'mock/' }],
			settings: { max_body_bytes: 3145728, max_body_memory_bytes: 4194304, body_timeout_seconds: 1,
				body_min_rate_bytes: 100 },
		});
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop('SIGTERM');	// a clean exit: LeakSanitizer checks it in the ASan pass
		await mock.stop();
		cleanup(st);
	});

	it('a body must keep to the whole-body deadline, not only the idle timeout (408)', async () => {
		// 10 bytes every 300 ms: each well inside the 10 s idle timeout, but behind
		// 1 s + 1 s per 100 bytes, which it falls behind of after about 1.5 s.
		const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n';
		const r = await raw(dp.port, head, Array.from({ length: 30 }, () => [300, Buffer.alloc(10, 0x20)]), 9000);
		assert.equal(status(r.text), 408, r.text);
		assert.ok(r.ms >= 1000 && r.ms < 4000, `408 after ${r.ms} ms`);
		// A body that keeps the rate is read whole.
		const ok = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [], pad: 'y'.repeat(500000) });
		assert.equal(ok.status, 200, ok.body);
	});

	it('past max_body_memory_bytes a new body gets 503 with Retry-After; later it goes through', async () => {
		// A first client announces 3 MiB and sends 1 MiB, then pauses: 3 MiB are held for it.
		const head = (n) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${n}\r\n\r\n`;
		const holder = net.connect(dp.port, '127.0.0.1');
		holder.on('error', () => {});
		await new Promise((r) => holder.once('connect', r));
		holder.write(head(3 << 20));
		holder.write(Buffer.alloc(1 << 20, 0x20));
		await sleep(300);
		// A second one of 2 MiB would take all bodies past 4 MiB.
		const second = await raw(dp.port, head(2 << 20), [], 3000);
		assert.equal(status(second.text), 503, second.text);
		assert.match(second.text, /\r\nRetry-After: \d+\r\n/i);
		assert.ok(second.closed);
		holder.destroy();
		await sleep(300);
		const body = JSON.stringify({ model: 'mock/m', messages: [], pad: 'z'.repeat(2 << 20) });
		const r = await request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
		assert.equal(r.status, 200, r.body);
	});
});
