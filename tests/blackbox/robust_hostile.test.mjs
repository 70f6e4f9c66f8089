// Black-box, robustness: hostile clients against the data plane (issue 10).
// Request smuggling shapes (CL+TE, duplicate Content-Length, chunk-size
// overflow, obs-fold, bare LF/CR), oversized request line / headers / body,
// slowloris (408 at the header timeout, set low with `sidecarctl config set`),
// 10,000 idle connections (past max_connections the oldest idle ones give way),
// connections opened and reset at once, invalid UTF-8 and deeply nested JSON.
// Each attack gets the right status or a clean close, a normal request made
// while it runs succeeds, and the data plane's RSS stays bounded.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, rssKb, sleep, startDataplane } from './lib/stack.mjs';

const KEY = 'nvapi-TEST-0101-xxxxxxxxxxxxxxxx';
// The data plane never grows past this here (sanitizer builds keep shadow
// memory and a quarantine of freed blocks: more).
const RSS_LIMIT_KB = (process.env.ASAN_OPTIONS ? 1024 : 256) * 1024;
const IDLE = 10000;			// idle connections of the flood test

let mock, st, dp, rss0;

// One raw connection: send bytes (a Buffer, or an array of [delayMs, Buffer]
// steps), collect the answer; {text, closed (server closed or reset), ms}.
function rawSession(port, data, { idleMs = 1500, totalMs = 15000 } = {}) {
	return new Promise((resolve) => {
		const t0 = Date.now();
		const s = net.connect(port, '127.0.0.1');
		const parts = [];
		let closed = false, idle, finished = false;
		const done = () => {
			if (finished) return;
			finished = true;
			clearTimeout(idle);
			clearTimeout(total);
			s.destroy();
			resolve({ text: Buffer.concat(parts).toString('latin1'), closed, ms: Date.now() - t0 });
		};
		const total = setTimeout(done, totalMs);
		const arm = () => { clearTimeout(idle); idle = setTimeout(done, idleMs); };
		s.on('connect', async () => {
			if (Buffer.isBuffer(data)) {
				s.write(data);
			} else {
				for (const [delay, bytes] of data) {
					if (finished || closed) break;
					if (delay) await sleep(delay);
					if (!finished && !closed) s.write(bytes);
				}
			}
			arm();
		});
		s.on('data', (d) => { parts.push(d); arm(); });
		s.on('end', () => { closed = true; done(); });
		s.on('close', () => { closed = true; done(); });
		s.on('error', () => { closed = true; done(); });
	});
}

const statusOf = (text) => {
	const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
	return m ? +m[1] : null;
};

function chat(extraHeaders = {}) {
	return postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] },
		extraHeaders);
}

// Run an attack while a normal client makes a request; both must finish.
async function during(attack) {
	const [a, normal] = await Promise.all([attack(), (async () => { await sleep(50); return chat(); })()]);
	assert.equal(normal.status, 200, `normal request during the attack: ${normal.status} ${normal.body}`);
	assert.equal(dp.exited(), null, `the data plane died: ${dp.logs()}`);
	return a;
}

function assertRss() {
	const kb = rssKb(dp.pid);
	assert.ok(kb < RSS_LIMIT_KB, `data plane RSS ${kb} kB (started at ${rss0} kB)`);
	return kb;
}

function ctlSet(k, v) {
	execFileSync(st.ctl, ['--db', st.db, 'config', 'set', k, String(v)], { env: st.env, stdio: 'pipe' });
}

const BODY = '{"model":"mock/m","messages":[]}';
const POST = 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n';

// [name, request bytes, expected status]; each must be answered and closed.
const SMUGGLING = [
	['CL + TE', `${POST}Content-Length: ${BODY.length}\r\nTransfer-Encoding: chunked\r\n\r\n${BODY}`, 400],
	['TE + CL', `${POST}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`, 400],
	['duplicate CL, different values', `${POST}Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length + 5}\r\n\r\n${BODY}GET /`, 400],
	['CL with a sign', `${POST}Content-Length: +${BODY.length}\r\n\r\n${BODY}`, 400],
	['CL over 2^64', `${POST}Content-Length: 99999999999999999999999\r\n\r\n`, 400],
	['chunk size over 2^64', `${POST}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n`, 400],
	['chunk size 2^64', `${POST}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n`, 400],
	['negative chunk size', `${POST}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n`, 400],
	['TE not ending in chunked', `${POST}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, 400],
	['unknown TE', `${POST}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
	['obs-fold', 'GET /health HTTP/1.1\r\nHost: a\r\nX-Foo: bar\r\n  Transfer-Encoding: chunked\r\n\r\n', 400],
	['obs-fold hiding TE', `${POST}Content-Length: 5\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
	['bare LF', 'GET /health HTTP/1.1\nHost: a\n\n', 400],
	['bare CR', 'GET /health HTTP/1.1\rHost: a\r\r\n\r\n', 400],
	['CR inside a header', 'GET /health HTTP/1.1\r\nHost: a\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n', 400],
	['space before colon', `${POST}Content-Length : ${BODY.length}\r\n\r\n${BODY}`, 400],
	['NUL in a header', 'GET /health HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n', 400],
	['HTTP/1.0 with TE', 'POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
	['two Host headers', 'GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
	['no Host', 'GET /health HTTP/1.1\r\n\r\n', 400],
	['control byte in the method', 'G\x01T /health HTTP/1.1\r\nHost: a\r\n\r\n', 400],
	['HTTP/2.0 request line', 'GET /health HTTP/2.0\r\nHost: a\r\n\r\n', 505],
];

describe('hostile clients against the data plane', { timeout: 180000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: KEY }] });
		st = makeDb({
			providers: [{ name: 'k1', key: KEY, url: mock.url, prefix: 'mock/' }],
			settings: { max_body_bytes: 1048576, header_timeout_seconds: 30, max_connections: IDLE + 100,
				max_pending_connections: IDLE + 100 },
		});
		dp = await startDataplane(st);
		rss0 = rssKb(dp.pid);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('refuses every request smuggling shape, then closes', async () => {
		for (const [name, bytes, want] of SMUGGLING) {
			const r = await during(() => rawSession(dp.port, Buffer.from(bytes, 'latin1')));
			assert.equal(statusOf(r.text), want, `${name}: ${JSON.stringify(r.text.slice(0, 200))}`);
			assert.equal((r.text.match(/HTTP\/1\.1 \d{3}/g) || []).length, 1, `${name}: one answer only`);
			assert.ok(r.closed, `${name}: connection left open`);
		}
		// Nothing smuggled reached the upstream: only the normal requests did.
		const rec = await mock.record();
		assert.equal(rec.length, SMUGGLING.length, `upstream saw ${rec.length} requests`);
		assertRss();
	});

	it('answers oversized request line, headers and body with 414, 431, 413', async () => {
		const line = await during(() => rawSession(dp.port, Buffer.from(`GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: a\r\n\r\n`)));
		assert.equal(statusOf(line.text), 414);
		assert.ok(line.closed);
		const big = ('X-Pad: ' + 'b'.repeat(1000) + '\r\n').repeat(100);
		const hdr = await during(() => rawSession(dp.port, Buffer.from(`GET /health HTTP/1.1\r\nHost: a\r\n${big}\r\n`)));
		assert.equal(statusOf(hdr.text), 431);
		assert.ok(hdr.closed);
		const many = await during(() => rawSession(dp.port, Buffer.from(`GET /health HTTP/1.1\r\nHost: a\r\n${'X-P: 1\r\n'.repeat(300)}\r\n`)));
		assert.equal(statusOf(many.text), 431);
		// A megabyte of headers without an end: refused at the cap, not buffered.
		const endless = await during(() => rawSession(dp.port, Buffer.from(`GET /health HTTP/1.1\r\nHost: a\r\n${'X-Q: ' + 'c'.repeat(1 << 20)}`)));
		assert.equal(statusOf(endless.text), 431);
		// Declared too large: refused before reading it.
		const decl = await during(() => rawSession(dp.port, Buffer.from(`${POST}Content-Length: 5000000000\r\n\r\n`)));
		assert.equal(statusOf(decl.text), 413);
		assert.ok(decl.closed);
		// Sent too large, chunked (no length to refuse early): 413 at the cap.
		const chunk = Buffer.alloc(256 * 1024, 0x61);
		const steps = [[0, Buffer.from(`${POST}Transfer-Encoding: chunked\r\n\r\n`)]];
		for (let i = 0; i < 8; i++) steps.push([0, Buffer.concat([Buffer.from('40000\r\n'), chunk, Buffer.from('\r\n')])]);
		const sent = await during(() => rawSession(dp.port, steps));
		assert.equal(statusOf(sent.text), 413);
		// And through a normal client: the OpenAI-shaped error.
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] })
			.catch((e) => ({ status: 'reset', body: String(e) }));
		if (r.status !== 'reset') assert.equal(r.status, 413, r.body);
		assertRss();
	});

	it('times out a slowloris client (one header byte a second) with 408', async () => {
		ctlSet('header_timeout_seconds', 2);
		await sleep(2500);	// reload within 2 s (SPEC §5.7)
		const head = Buffer.from('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n');
		const steps = [...head].map((b, i) => [i ? 1000 : 0, Buffer.from([b])]);
		const slow = [0, 1, 2, 3, 4].map(() => rawSession(dp.port, steps, { idleMs: 8000, totalMs: 12000 }));
		// Normal clients keep being served while the slow ones hang on.
		for (let i = 0; i < 3; i++) {
			await sleep(400);
			assert.equal((await chat()).status, 200);
		}
		for (const r of await Promise.all(slow)) {
			assert.equal(statusOf(r.text), 408, JSON.stringify(r.text));
			assert.ok(r.closed);
			assert.ok(r.ms >= 1800 && r.ms < 5000, `408 after ${r.ms} ms, header timeout 2 s`);
		}
		// A body trickled slower than the timeout: 408 too.
		const body = [[0, Buffer.from(`${POST}Content-Length: ${BODY.length}\r\n\r\n{`)], [3000, Buffer.from('"')]];
		const b = await during(() => rawSession(dp.port, body, { idleMs: 6000 }));
		assert.equal(statusOf(b.text), 408);
		ctlSet('header_timeout_seconds', 30);
		await sleep(2500);
	});

	it('survives connections opened and reset at once', async () => {
		const reset = async () => {
			for (let round = 0; round < 10; round++) {
				await Promise.all(Array.from({ length: 200 }, (_, i) => new Promise((resolve) => {
					const s = net.connect(dp.port, '127.0.0.1');
					s.on('connect', () => {
						// Half of them after sending part of a request.
						if (i % 2) s.write(`${POST}Content-Length: 100\r\n\r\n{"mo`);
						s.resetAndDestroy();
						resolve();
					});
					s.on('error', resolve);
				})));
			}
		};
		await during(reset);
		await sleep(300);
		assert.equal((await chat()).status, 200);
		assertRss();
	});

	it('refuses invalid UTF-8 and deeply nested JSON bodies cleanly', async () => {
		const bad = Buffer.concat([Buffer.from('{"model":"mock/m","messages":[{"role":"user","content":"'),
			Buffer.from([0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]), Buffer.from('"}]}')]);
		const r1 = await during(() => request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bad }));
		assert.ok([200, 400].includes(r1.status), `invalid UTF-8: ${r1.status} ${r1.body}`);
		if (r1.status === 400) assert.ok(JSON.parse(r1.body).error, r1.body);
		const badModel = Buffer.concat([Buffer.from('{"model":"mock/'), Buffer.from([0xff, 0xfe]), Buffer.from('","messages":[]}')]);
		const r2 = await during(() => request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: badModel }));
		assert.ok([400, 404].includes(r2.status) || r2.status === 200, `invalid UTF-8 model: ${r2.status}`);
		JSON.parse(r2.body);
		for (const depth of [1000, 100000, 500000]) {
			const deep = `{"model":"mock/m","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`;
			const r = await during(() => request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deep }));
			assert.equal(r.status, 400, `depth ${depth}: ${r.status} ${r.body.slice(0, 200)}`);
			assert.ok(JSON.parse(r.body).error);
		}
		const unclosed = `{"model":"mock/m","messages":${'[{"a":'.repeat(50000)}`;
		const r3 = await during(() => request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: unclosed }));
		assert.equal(r3.status, 400);
		assertRss();
	});

	it(`holds ${IDLE} idle connections, keeps serving, past max_connections closes the oldest idle ones`, async () => {
		// The flood comes from a child with a raised descriptor limit; the data
		// plane's soft limit is raised to its hard one with prlimit.
		const lim = () => /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${dp.pid}/limits`, 'utf8'));
		const [, soft, hard] = lim();
		if (+soft < IDLE + 1000) execFileSync('prlimit', ['--pid', String(dp.pid), `--nofile=${hard}:${hard}`]);
		assert.ok(+lim()[1] >= IDLE + 1000, `the data plane may open only ${lim()[1]} files (hard limit ${hard})`);
		const flood = `
			const net = require('net');
			const port = ${dp.port}, n = ${IDLE}, extra = 400;
			const held = [];
			let refused = 0, busy503 = 0, errors = 0;
			function open(count) {
				return Promise.all(Array.from({ length: count }, () => new Promise((resolve) => {
					const s = net.connect(port, '127.0.0.1');
					let got = '';
					s.on('connect', () => { held.push(s); resolve(); });
					s.on('data', (d) => { got += d; });
					s.on('close', () => { if (/^HTTP\\/1\\.1 503 /.test(got) && /too many connections/.test(got)) busy503++; else refused++; });
					s.on('error', () => { errors++; resolve(); });
				})));
			}
			(async () => {
				for (let i = 0; i < n; i += 500) await open(Math.min(500, n - i));
				await new Promise((r) => setTimeout(r, 500));
				process.stdout.write(JSON.stringify({ phase: 'idle', held: held.length, busy503, refused, errors }) + '\\n');
				process.stdin.once('data', async () => {
					for (let i = 0; i < extra; i += 200) await open(200);
					await new Promise((r) => setTimeout(r, 1500));
					process.stdout.write(JSON.stringify({ phase: 'extra', held: held.length, busy503, refused, errors }) + '\\n');
					process.stdin.once('data', () => { for (const s of held) s.destroy(); setTimeout(() => process.exit(0), 200); });
				});
			})();`;
		const child = spawn('sh', ['-c', 'ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" -e "$1"', process.execPath, flood],
			{ stdio: ['pipe', 'pipe', 'inherit'] });
		const lines = [];
		let buf = '';
		child.stdout.on('data', (d) => {
			buf += d;
			let i;
			while ((i = buf.indexOf('\n')) >= 0) { lines.push(JSON.parse(buf.slice(0, i))); buf = buf.slice(i + 1); }
		});
		const waitLine = async (n) => {
			const end = Date.now() + 60000;
			while (lines.length < n) {
				if (Date.now() > end || child.exitCode !== null) throw new Error(`flood child: ${JSON.stringify(lines)}`);
				await sleep(50);
			}
			return lines[n - 1];
		};
		try {
			const idle = await waitLine(1);
			assert.equal(idle.held, IDLE, JSON.stringify(idle));
			assert.equal(idle.busy503 + idle.refused, 0, JSON.stringify(idle));
			// Serving while 10,000 connections sit idle.
			const t0 = Date.now();
			for (let i = 0; i < 5; i++) assert.equal((await chat()).status, 200);
			assert.equal((await request(`${dp.base}/health`)).status, 200);
			assert.ok(Date.now() - t0 < 5000, `5 requests took ${Date.now() - t0} ms`);
			const rssIdle = assertRss();
			// 400 more: about 100 fit under max_connections; for the rest the
			// oldest idle (pending) connections are closed (docs/security.md),
			// and no new one is refused.
			child.stdin.write('go\n');
			const extra = await waitLine(2);
			assert.equal(extra.busy503, 0, JSON.stringify(extra));
			assert.ok(extra.refused >= 250 && extra.refused <= 320, JSON.stringify(extra));
			// At the limit, a new client is served: an idle connection gives way.
			const full = await rawSession(dp.port, Buffer.from('GET /health HTTP/1.1\r\nHost: a\r\n\r\n'));
			assert.equal(statusOf(full.text), 200);
			child.stdin.write('close\n');
			await new Promise((r) => child.once('exit', r));
			await sleep(500);
			assert.equal((await chat()).status, 200);
			assert.equal(dp.exited(), null);
			const rssAfter = assertRss();
			process.stderr.write(`# RSS kB: start ${rss0}, 10k idle ${rssIdle}, after ${rssAfter}\n`);
		} finally {
			if (child.exitCode === null) child.kill('SIGKILL');
		}
	});
});
