// Black-box: streaming through sidecar-dataplane. Byte-exact relay, chunks
// arriving as they are sent, [DONE], the injected usage chunk removed, client
// disconnect cancelling the upstream transfer (mid-stream, and while a
// request waits for its answer), a slow reader keeping memory
// bounded (back-pressure), no client buffers held by streams between events,
// mid-stream failures ended cleanly, retries before the first byte, and
// SIGTERM draining an in-flight stream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, rssKb, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';

// POST a streaming request; resolve {status, headers, text, times: [ms of each data event], t0}.
function streamReq(url, body, headers = {}) {
	return new Promise((resolve, reject) => {
		const t0 = Date.now();
		const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
			const parts = [];
			const times = [];
			res.on('data', (d) => { parts.push(d); times.push(Date.now() - t0); });
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString('utf8'), times, t0, tEnd: Date.now() - t0 }));
			res.on('error', reject);
		});
		req.on('error', reject);
		req.end(JSON.stringify(body));
	});
}

const normalize = (s) => s.replace(/chatcmpl-mock-\d+/g, 'ID').replace(/"created":\d+/g, '"created":0');

describe('data plane streaming', { timeout: 90000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }], chunks: 5, intervalMs: 10 });
		st = makeDb({ providers: [{ name: 'p1', key: K1, url: mock.url, prefix: 'mock/' }] });
		dp = await startDataplane(st);
	});

	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('relays the upstream stream byte for byte but the model (the client\'s id), [DONE] included', async () => {
		const body = { model: 'mock/m', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] };
		const direct = await streamReq(`${mock.url}/chat/completions`, { ...body, model: 'm' }, { authorization: `Bearer ${K1}`, 'x-mock-chunks': '8' });
		const via = await streamReq(`${dp.url}/chat/completions`, body, { 'x-mock-chunks': '8' });
		assert.equal(via.status, 200);
		assert.match(via.headers['content-type'], /text\/event-stream/);
		assert.equal(via.headers['transfer-encoding'], 'chunked');
		// Every chunk names the model the client asked for (issue 16), nothing else changes.
		assert.equal(normalize(via.text), normalize(direct.text).replaceAll('"model":"m"', '"model":"mock/m"'));
		assert.equal((via.text.match(/"model":"mock\/m"/g) ?? []).length, 9, via.text);	// 8 chunks + usage
		assert.match(via.text, /data: \[DONE\]\n\n$/);
		assert.match(via.text, /"usage":\{/);	// the client asked for usage: it gets it
	});

	it('forwards a 5 MB request body (tools, long history) and streams the answer', async () => {
		await mock.reset();
		const tools = Array.from({ length: 50 }, (_, i) => ({ type: 'function', function: { name: `tool_${i}`, description: 'd'.repeat(500), parameters: { type: 'object', properties: {} } } }));
		const messages = Array.from({ length: 100 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: [{ type: 'text', text: 'x'.repeat(50000) }] }));
		const body = { model: 'mock/m', stream: true, stream_options: { include_usage: true }, tools, tool_choice: 'auto', max_completion_tokens: 100, messages };
		const len = Buffer.byteLength(JSON.stringify(body));
		assert.ok(len > 5000000);
		const r = await streamReq(`${dp.url}/chat/completions`, body, { 'accept-encoding': 'gzip, deflate' });
		assert.equal(r.status, 200);
		assert.equal(r.headers['content-encoding'], undefined);
		assert.match(r.text, /data: \[DONE\]/);
		const rec = await mock.record();
		assert.equal(rec[0].body_len, len - 'mock/'.length);
	});

	it('delivers chunks as they are sent, not at the end', async () => {
		const r = await streamReq(`${dp.url}/chat/completions`, { model: 'mock/m', stream: true, messages: [] },
			{ 'x-mock-chunks': '10', 'x-mock-interval-ms': '150' });
		assert.equal(r.status, 200);
		assert.ok(r.tEnd >= 1300, `stream took ${r.tEnd} ms`);
		assert.ok(r.times[0] < r.tEnd - 1000, `first bytes at ${r.times[0]} ms, end at ${r.tEnd} ms`);
		assert.ok(r.times.length >= 5, `only ${r.times.length} reads`);
	});

	it('asks upstream for usage and removes that chunk when the client did not ask', async () => {
		await mock.reset();
		const r = await streamReq(`${dp.url}/chat/completions`, { model: 'mock/m', stream: true, messages: [] }, { 'x-mock-chunks': '3' });
		assert.equal(r.status, 200);
		const rec = await mock.record();
		assert.equal(rec[0].include_usage, true);
		assert.ok(!r.text.includes('"usage"'), r.text);
		const events = r.text.split('\n\n').filter((e) => e.startsWith('data: '));
		assert.equal(events.length, 4);	// 3 content chunks + [DONE]
		assert.equal(events[3], 'data: [DONE]');
	});

	it('cancels the upstream transfer when the client disconnects mid-stream', async () => {
		await mock.reset();
		await new Promise((resolve, reject) => {
			const req = http.request(`${dp.url}/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'x-mock-chunks': '100', 'x-mock-interval-ms': '100' } }, (res) => {
				res.once('data', () => { req.destroy(); resolve(); });
			});
			req.on('error', () => {});
			req.end(JSON.stringify({ model: 'mock/m', stream: true, messages: [] }));
			setTimeout(() => reject(new Error('no data')), 5000);
		});
		const rec = await mock.waitRecord((l) => l.length === 1 && l[0].aborted, 3000);
		assert.equal(rec[0].aborted, true);
		await sleep(100);
		assert.match(dp.logs(), /status=499/);
	});

	it('cancels a request whose client hangs up while it waits for the upstream', async () => {
		// A client waiting for its answer is watched for a hang-up (POLLRDHUP),
		// which cancels the transfer and is logged 499. Unnoticed, the transfer
		// would run to the mock's answer at 5 s.
		await mock.reset();
		const body = JSON.stringify({ model: 'mock/m', messages: [] });
		const sock = net.connect(dp.port, '127.0.0.1');
		sock.on('error', () => {});
		await new Promise((r) => sock.on('connect', r));
		const t0 = Date.now();
		sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`X-Request-Id: park-gone\r\nX-Mock-Latency-Ms: 5000\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		await mock.waitRecord((l) => l.length === 1, 2000);	// the transfer is running
		sock.destroy();
		const rec = await mock.waitRecord((l) => l.length === 1 && l[0].aborted, 3000);
		assert.equal(rec[0].aborted, true);
		assert.ok(Date.now() - t0 < 2500, `hang-up noticed after ${Date.now() - t0} ms`);
		await sleep(100);
		assert.match(dp.logs(), /request park-gone .*status=499/);
	});

	it('keeps memory bounded for a client that does not read (back-pressure)', async () => {
		const base = rssKb(dp.pid);
		const body = JSON.stringify({ model: 'mock/m', stream: true, stream_options: { include_usage: true }, messages: [] });
		const sock = net.connect(dp.port, '127.0.0.1');
		let got = 0;
		sock.on('data', (d) => { got += d.length; });
		await new Promise((r) => sock.on('connect', r));
		sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`X-Mock-Chunks: 250000\r\nX-Mock-Interval-Ms: 0\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		await sleep(300);
		sock.pause();	// stop reading: the kernel buffers fill, then the data plane must pause upstream
		let peak = 0;
		for (let i = 0; i < 20; i++) {
			await sleep(100);
			peak = Math.max(peak, rssKb(dp.pid));
		}
		const stats = await mock.stats();
		sock.destroy();
		assert.ok(peak < 60 * 1024, `RSS grew to ${peak} kB (base ${base} kB)`);
		assert.ok(peak - base < 30 * 1024, `RSS grew by ${peak - base} kB`);
		// The mock was held back too: far less than the ~50 MB stream left it.
		assert.ok(got < 20 * 1024 * 1024, `client already got ${got} bytes`);
		assert.ok(stats.requests >= 1);
	});

	it('reads a long stream slowly to the end with bounded memory', async () => {
		const body = JSON.stringify({ model: 'mock/m', stream: true, stream_options: { include_usage: true }, messages: [] });
		const sock = net.connect(dp.port, '127.0.0.1');
		let got = 0, tail = '';
		let peak = 0;
		const done = new Promise((resolve) => {
			sock.on('data', (d) => {
				got += d.length;
				tail = (tail + d.toString('latin1')).slice(-64);
				if (tail.endsWith('0\r\n\r\n')) resolve();
				// Slow reader: pause briefly every ~1 MB.
				if (got % (1024 * 1024) < d.length) {
					sock.pause();
					peak = Math.max(peak, rssKb(dp.pid));
					setTimeout(() => sock.resume(), 20);
				}
			});
		});
		await new Promise((r) => sock.on('connect', r));
		sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`X-Mock-Chunks: 100000\r\nX-Mock-Interval-Ms: 0\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		await done;
		sock.destroy();
		assert.ok(got > 15 * 1024 * 1024, `got only ${got} bytes`);
		assert.ok(tail.includes('data: [DONE]'));
		assert.ok(peak < 60 * 1024, `RSS peaked at ${peak} kB`);
	});

	it('holds no client buffers for streams that wait for their next event', async () => {
		const N = 40;
		const body = JSON.stringify({ model: 'mock/m', stream: true, messages: [] });
		const metric = async (name) => {
			const text = await new Promise((resolve, reject) => {
				http.get(`http://127.0.0.1:${dp.metricsPort}/metrics`, (res) => {
					let t = '';
					res.on('data', (d) => { t += d; });
					res.on('end', () => resolve(t));
				}).on('error', reject);
			});
			const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
			assert.ok(m, `${name} in /metrics`);
			return Number(m[1]);
		};
		const socks = [];
		const firsts = [];
		for (let i = 0; i < N; i++) {
			const sock = net.connect(dp.port, '127.0.0.1');
			socks.push(sock);
			let text = '';
			firsts.push(new Promise((resolve) => sock.on('data', (d) => {
				text += d.toString('latin1');
				if (text.includes('data: {')) resolve();
			})));
			sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
				`X-Mock-Chunks: 3\r\nX-Mock-Interval-Ms: 3000\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		}
		try {
			await Promise.all(firsts);	// every stream relayed its first event and now waits 3 s
			await sleep(200);
			assert.ok(await metric('sidecar_client_connections') >= N);
			// Only the metrics request's own input buffer (one 2 KiB block) may be held;
			// a buffer per waiting stream would be N blocks or more.
			const held = await metric('sidecar_client_buffer_bytes');
			assert.ok(held <= 4096, `client buffers hold ${held} bytes with ${N} streams waiting`);
		} finally {
			for (const s of socks) s.destroy();
		}
	});

	it('ends a stream that breaks upstream with an SSE error event and [DONE]', async () => {
		const r = await streamReq(`${dp.url}/chat/completions`, { model: 'mock/m', stream: true, messages: [] },
			{ 'x-mock-chunks': '20', 'x-mock-interval-ms': '5', 'x-mock-fault': 'reset-after=3' });
		assert.equal(r.status, 200);
		assert.match(r.text, /data: \{"error":/);
		assert.match(r.text, /data: \[DONE\]\n\n$/);
	});
});

describe('data plane retries before the first byte', { timeout: 60000 }, () => {
	it('retries a 429 and a first-byte timeout on another provider', async () => {
		const mock = await startMock({ keys: [{ key: K1 }, { key: K2 }], chunks: 2, intervalMs: 5 });
		const st = makeDb({
			providers: [
				{ name: 'r1', key: K1, url: mock.url, prefix: 'mock/' },
				{ name: 'r2', key: K2, url: mock.url, prefix: 'mock/' },
			],
			settings: { upstream_ttfb_timeout: 1 },
		});
		const dp = await startDataplane(st);
		try {
			await mock.setKey(K1, 0, 'status=429', 0);
			for (let i = 0; i < 4; i++) {
				const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] });
				assert.equal(r.status, 200, r.body);
				assert.equal(r.headers['x-sidecar-provider'], 'r2');
			}
			await mock.setKey(K1, 0, 'hang-first-byte', 0);
			const t0 = Date.now();
			for (let i = 0; i < 2; i++) {
				const r = await streamReq(`${dp.url}/chat/completions`, { model: 'mock/x', stream: true, messages: [] });
				assert.equal(r.status, 200);
				assert.equal(r.headers['x-sidecar-provider'], 'r2');
				assert.match(r.text, /\[DONE\]/);
			}
			assert.ok(Date.now() - t0 < 5000);
		} finally {
			await dp.stop();
			await mock.stop();
			cleanup(st);
		}
	});
});

describe('data plane SIGTERM', { timeout: 30000 }, () => {
	it('drains an in-flight stream, refuses new connections, exits 0', async () => {
		const mock = await startMock({ keys: [{ key: K1 }] });
		const st = makeDb({ providers: [{ name: 'p1', key: K1, url: mock.url, prefix: 'mock/' }] });
		const dp = await startDataplane(st);
		try {
			const pending = streamReq(`${dp.url}/chat/completions`, { model: 'mock/m', stream: true, messages: [] },
				{ 'x-mock-chunks': '10', 'x-mock-interval-ms': '100' });
			await sleep(250);
			dp.proc.kill('SIGTERM');
			await sleep(100);
			const refused = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] }).then(() => false, () => true);
			assert.ok(refused, 'a new connection was accepted while draining');
			const r = await pending;
			assert.equal(r.status, 200);
			assert.match(r.text, /data: \[DONE\]\n\n$/);
			const ex = await dp.wait();
			assert.equal(ex.code, 0);
		} finally {
			await dp.stop();
			await mock.stop();
			cleanup(st);
		}
	});
});
