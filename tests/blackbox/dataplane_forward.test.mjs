// Black-box: sidecar-dataplane forwarding non-streaming requests to the mock
// upstream. Endpoints, prefix stripping, which headers go upstream, request
// shaping per provider, sidecar-made errors (404/400/413/405/408/431), upstream
// errors rewritten to the OpenAI shape, keep-alive and pipelining, /health,
// /v1/models, /metrics.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startMock } from './lib/mock.mjs';
import { cleanup, cpuTicks, makeDb, openIdle, postJson, rawExchange, request, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';
const K3 = 'nvapi-TEST-0003-xxxxxxxxxxxxxxxx';

describe('data plane forwarding', { timeout: 60000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }, { key: K3 }], chunks: 3, intervalMs: 5 });
		st = makeDb({
			providers: [
				{ name: 'plain-1', key: K1, url: mock.url, prefix: 'mock/' },
				{ name: 'shaped-1', key: K2, url: mock.url, prefix: 'shaped/', max_tokens_field: true, flatten_content: true },
				{ name: 'long-1', key: K3, url: mock.url, prefix: 'mock/long/' },
			],
			settings: { max_body_bytes: 1048576, header_timeout_seconds: 1 },
		});
		dp = await startDataplane(st);
	});

	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('answers /health with provider counts', async () => {
		const r = await request(`${dp.base}/health`);
		assert.equal(r.status, 200);
		const h = JSON.parse(r.body);
		assert.equal(h.status, 'ok');
		assert.equal(h.providers.total, 3);
		assert.equal(h.providers.ready, 3);
		assert.ok(h.queue && typeof h.queue.capacity === 'number');
	});

	it('forwards chat completions with the prefix stripped and the provider key', async () => {
		await mock.reset();
		const r = await postJson(`${dp.url}/chat/completions`,
			{ model: 'mock/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] },
			{ authorization: 'Bearer client-secret-should-not-leak', 'x-request-id': 'req-fwd-1', 'x-custom-thing': 'kept',
				cookie: 'session=not-forwarded', 'x-sidecar-priority': 'high', 'proxy-authorization': 'Basic bm90OmZvcndhcmRlZA==' });
		assert.equal(r.status, 200, r.body);
		const j = JSON.parse(r.body);
		assert.equal(j.object, 'chat.completion');
		assert.equal(r.headers['x-request-id'], 'req-fwd-1');
		assert.equal(r.headers['x-sidecar-provider'], 'plain-1');
		assert.equal(r.headers['x-sidecar-pool'], 'main');
		assert.ok('x-sidecar-queue-ms' in r.headers);
		assert.equal(r.headers['x-sidecar-degraded'], undefined);
		const rec = await mock.record();
		assert.equal(rec.length, 1);
		assert.equal(rec[0].path, '/v1/chat/completions');
		assert.equal(rec[0].model, 'meta/llama-3.1-8b-instruct');
		assert.equal(rec[0].key, K1);
		assert.equal(rec[0].headers.authorization, `Bearer ${K1}`);
		assert.equal(rec[0].headers['x-request-id'], 'req-fwd-1');
		assert.equal(rec[0].headers['x-custom-thing'], 'kept');
		assert.ok(!JSON.stringify(rec[0].headers).includes('client-secret-should-not-leak'));
		assert.equal(rec[0].headers['accept-encoding'], undefined);
		for (const h of ['cookie', 'x-sidecar-priority', 'proxy-authorization']) assert.equal(rec[0].headers[h], undefined, h);
		// Not re-serialised for a provider without rewrites: only the model changed.
		assert.equal(rec[0].body, JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }));
	});

	it('forwards every end-to-end header of a request with many of them', async () => {
		// More lines than the transfer keeps in its own list nodes (12), one of them large.
		await mock.reset();
		const hdrs = {};
		for (let i = 0; i < 30; i++) hdrs[`x-fwd-${String(i).padStart(2, '0')}`] = `value-${i}`;
		hdrs['x-fwd-big'] = 'b'.repeat(20000);
		const r = await postJson(`${dp.url}/chat/completions`,
			{ model: 'mock/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] },
			{ ...hdrs, 'x-request-id': 'req-fwd-many' });
		assert.equal(r.status, 200, r.body);
		const rec = await mock.record();
		assert.equal(rec.length, 1);
		for (const [k, v] of Object.entries(hdrs)) assert.equal(rec[0].headers[k], v, k);
		assert.equal(rec[0].headers.authorization, `Bearer ${K1}`);
		assert.equal(rec[0].headers['x-request-id'], 'req-fwd-many');
		assert.equal(rec[0].headers['content-type'], 'application/json');
	});

	it('routes by the longest prefix', async () => {
		await mock.reset();
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/long/some-model', messages: [] });
		assert.equal(r.status, 200, r.body);
		assert.equal(r.headers['x-sidecar-provider'], 'long-1');
		const rec = await mock.record();
		assert.equal(rec[0].model, 'some-model');
		assert.equal(rec[0].key, K3);
	});

	it('forwards completions and embeddings', async () => {
		await mock.reset();
		const c = await postJson(`${dp.url}/completions`, { model: 'mock/m1', prompt: 'x' });
		assert.equal(c.status, 200, c.body);
		const e = await postJson(`${dp.url}/embeddings`, { model: 'mock/e1', input: 'x' });
		assert.equal(e.status, 200, e.body);
		assert.equal(JSON.parse(e.body).object, 'list');
		const rec = await mock.record();
		assert.deepEqual(rec.map((x) => [x.path, x.model]), [['/v1/completions', 'm1'], ['/v1/embeddings', 'e1']]);
	});

	it('applies the provider request shaping (max_tokens_field, flatten_content)', async () => {
		await mock.reset();
		const r = await postJson(`${dp.url}/chat/completions`, {
			model: 'shaped/x', max_completion_tokens: 7,
			messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }],
		});
		assert.equal(r.status, 200, r.body);
		const rec = await mock.record();
		const body = JSON.parse(rec[0].body);
		assert.equal(body.model, 'x');
		assert.equal(body.max_tokens, 7);
		assert.equal(body.max_completion_tokens, undefined);
		assert.equal(typeof body.messages[0].content, 'string');
		assert.ok(body.messages[0].content.includes('a') && body.messages[0].content.includes('b'));
	});

	it('answers 404 in OpenAI shape for an unknown prefix, without listing providers', async () => {
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'nope/x', messages: [] });
		assert.equal(r.status, 404);
		const j = JSON.parse(r.body);
		assert.ok(j.error && typeof j.error.message === 'string');
		assert.equal(j.error.type, 'not_found_error');
		assert.ok(!r.body.includes('mock/') && !r.body.includes('plain-1') && !r.body.includes('nvapi'));
	});

	it('answers 400 for malformed JSON and a missing model', async () => {
		const r = await request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "mock/x", ' });
		assert.equal(r.status, 400);
		assert.equal(JSON.parse(r.body).error.type, 'invalid_request_error');
		const r2 = await postJson(`${dp.url}/chat/completions`, { messages: [] });
		assert.equal(r2.status, 400);
		assert.ok(JSON.parse(r2.body).error);
	});

	it('answers 413 for a body over max_body_bytes', async () => {
		const big = JSON.stringify({ model: 'mock/x', messages: [{ role: 'user', content: 'x'.repeat(1100000) }] });
		const r = await request(`${dp.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big }).catch((e) => ({ status: 'err', e }));
		assert.equal(r.status, 413);
	});

	it('accepts a body of several hundred KB and relays it intact', async () => {
		await mock.reset();
		const content = 'y'.repeat(600000);
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [{ role: 'user', content }] });
		assert.equal(r.status, 200, r.body);
		const rec = await mock.record();
		assert.ok(rec[0].body_len >= 600000);
	});

	it('answers 404 for unknown paths and 405 for wrong methods, with the request id', async () => {
		const a = await request(`${dp.url}/nothing`), b = await request(`${dp.url}/chat/completions`);
		assert.equal(a.status, 404);
		assert.equal(b.status, 405);
		// without an id from the client, each answer names a new one
		assert.match(a.headers['x-request-id'], /^[0-9a-f-]{30,}$/);
		assert.match(b.headers['x-request-id'], /^[0-9a-f-]{30,}$/);
		assert.notEqual(a.headers['x-request-id'], b.headers['x-request-id']);
		const c = await request(`${dp.url}/chat/completions`, { headers: { 'x-request-id': 'req-405-1' } });
		assert.equal(c.status, 405);
		assert.equal(c.headers['x-request-id'], 'req-405-1');
	});

	it('answers 503 upstream_auth_failed, naming the route, when the upstream rejects the only key (401 is the client\'s)', async () => {
		const st2 = makeDb({ providers: [{ name: 'bad', key: 'nvapi-TEST-UNKNOWN-xxxxxxxxxxxx', url: mock.url, prefix: 'bad/' }] });
		const dp2 = await startDataplane(st2);
		try {
			const r = await postJson(`${dp2.url}/chat/completions`, { model: 'bad/x', messages: [] });
			assert.equal(r.status, 503, r.body);
			const j = JSON.parse(r.body);
			assert.equal(j.error.code, 'upstream_auth_failed', r.body);
			assert.match(j.error.message, /bad\//);
			assert.match(r.headers['retry-after'], /^\d+$/);
			assert.ok(!r.body.includes('nvapi-TEST-UNKNOWN'));
		} finally {
			await dp2.stop();
			cleanup(st2);
		}
	});

	it('passes a non-retryable upstream 4xx through in OpenAI shape', async () => {
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] }, { 'x-mock-fault': 'status=404' });
		assert.equal(r.status, 404);
		assert.ok(JSON.parse(r.body).error);
	});

	it('keeps the connection alive and answers pipelined requests in order', async () => {
		const body = JSON.stringify({ model: 'mock/x', messages: [] });
		const one = (id) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`X-Request-Id: pipe-${id}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
		const health = 'GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-h\r\n\r\n';
		const out = await rawExchange(dp.port, one(1) + one(2) + health + one(3), { idleMs: 1500 });
		const ids = [...out.matchAll(/X-Request-Id: (pipe-\w+)/g)].map((m) => m[1]);
		assert.deepEqual(ids, ['pipe-1', 'pipe-2', 'pipe-h', 'pipe-3']);
		assert.equal((out.match(/HTTP\/1\.1 200 OK/g) || []).length, 4);
	});

	it('decodes a chunked request body and answers 100-continue', async () => {
		const body = JSON.stringify({ model: 'mock/x', messages: [] });
		const half = Math.floor(body.length / 2);
		const chunked = `${half.toString(16)}\r\n${body.slice(0, half)}\r\n${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n0\r\n\r\n`;
		const req = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`;
		const out = await rawExchange(dp.port, req);
		assert.match(out, /^HTTP\/1\.1 200 OK/);
		const req2 = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
			`Expect: 100-continue\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
		const out2 = await rawExchange(dp.port, req2, { idleMs: 500 });
		assert.match(out2, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
	});

	it('rejects bad framing with 400 and a slow header with 408', async () => {
		const bad = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n';
		assert.match(await rawExchange(dp.port, bad), /^HTTP\/1\.1 400 /);
		const slow = await rawExchange(dp.port, 'GET /health HTTP/1.1\r\nHost: x\r\n', { idleMs: 3000 });
		assert.match(slow, /^HTTP\/1\.1 408 /);
	});

	it('accepts a 30 KB header section and refuses oversized heads with 431 / 414', async () => {
		const big = `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(30000)}\r\n\r\n`;
		assert.match(await rawExchange(dp.port, big), /^HTTP\/1\.1 200 /);
		const huge = `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70000)}\r\n\r\n`;
		assert.match(await rawExchange(dp.port, huge), /^HTTP\/1\.1 431 /);
		const longLine = `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`;
		assert.match(await rawExchange(dp.port, longLine), /^HTTP\/1\.1 414 /);
	});

	it('reuses upstream connections (keep-alive)', async () => {
		const before = (await mock.stats()).connections_total;
		for (let i = 0; i < 20; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] });
			assert.equal(r.status, 200);
		}
		const opened = (await mock.stats()).connections_total - before;
		assert.ok(opened <= 3, `${opened} upstream connections for 20 sequential requests`);
	});

	it('lists models with the provider prefixes', async () => {
		const r = await request(`${dp.url}/models`);
		assert.equal(r.status, 200, r.body);
		const j = JSON.parse(r.body);
		assert.equal(j.object, 'list');
		const ids = j.data.map((m) => m.id);
		assert.ok(ids.length > 0);
		assert.ok(ids.some((id) => id.startsWith('mock/')));
		assert.ok(ids.some((id) => id.startsWith('shaped/')));
		assert.ok(ids.every((id) => /^(mock\/|shaped\/|mock\/long\/)/.test(id)));
	});

	it('serves /metrics on the metrics port', async () => {
		const r = await request(`http://127.0.0.1:${dp.metricsPort}/metrics`);
		assert.equal(r.status, 200);
		assert.match(r.headers['content-type'], /text\/plain/);
		assert.match(r.body, /^# HELP /m);
	});

	it('never logs a provider key', () => {
		for (const k of [K1, K2, K3]) assert.ok(!dp.logs().includes(k));
		assert.match(dp.logs(), /request req-fwd-1 provider=plain-1 model=mock\/meta\/llama-3.1-8b-instruct status=200/);
	});
});

describe('data plane client tokens', { timeout: 30000 }, () => {
	it('requires a client token when one exists and refuses a public listen without one', async () => {
		const mock = await startMock({ keys: [{ key: K1 }] });
		const st = makeDb({ providers: [{ name: 'p', key: K1, url: mock.url, prefix: 'mock/' }] });
		try {
			// No token: non-loopback listen is refused.
			let dp = await startDataplane(st, { args: ['--listen', '0.0.0.0:0'] }).catch((e) => e);
			assert.ok(dp instanceof Error);
			assert.match(dp.message, /client token/);
			if (!st.ctl) return;	// tokens are created with sidecarctl
			const { execFileSync } = await import('node:child_process');
			const tok = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client', '--label', 't'], { env: st.env }).toString().trim();
			assert.ok(tok.length >= 20);
			dp = await startDataplane(st);
			try {
				const body = { model: 'mock/x', messages: [] };
				assert.equal((await postJson(`${dp.url}/chat/completions`, body)).status, 401);
				assert.equal((await postJson(`${dp.url}/chat/completions`, body, { authorization: 'Bearer wrong' })).status, 401);
				for (let i = 0; i < 2; i++) {	// the second check hits the verified-token cache
					const ok = await postJson(`${dp.url}/chat/completions`, body, { authorization: `Bearer ${tok}` });
					assert.equal(ok.status, 200, ok.body);
				}
				const rec = await mock.record();
				assert.ok(!JSON.stringify(rec).includes(tok));
				assert.ok(!dp.logs().includes(tok));
			} finally {
				await dp.stop();
			}
		} finally {
			await mock.stop();
			cleanup(st);
		}
	});

	it('refuses to start with a wrong encryption key', async () => {
		const st = makeDb({ providers: [{ name: 'p', key: K1, url: 'http://127.0.0.1:9/v1', prefix: 'mock/' }] });
		try {
			const dp = await startDataplane(st);	// stores the key check value on first start if missing
			await dp.stop();
			const wrong = { ...st, env: { ...st.env, SIDECAR_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') } };
			const e = await startDataplane(wrong).catch((x) => x);
			assert.ok(e instanceof Error);
			assert.match(e.message, /key/i);
		} finally {
			cleanup(st);
		}
	});
});

describe('data plane connection limits', { timeout: 30000 }, () => {
	it('refuses connections past max_connections with 503 and keeps serving', async () => {
		const mock = await startMock({ keys: [{ key: K1 }] });
		const st = makeDb({ providers: [{ name: 'p', key: K1, url: mock.url, prefix: 'mock/' }], settings: { max_connections: 4 } });
		const dp = await startDataplane(st);
		try {
			// Four connections with a request in progress (never closed to make
			// room, unlike idle ones: dataplane_flood.test.mjs).
			const slow = Array.from({ length: 4 }, () => postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] },
				{ 'x-mock-latency-ms': '1500' }));
			await sleep(400);
			const extra = await rawExchange(dp.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
			assert.match(extra, /^HTTP\/1\.1 503 /);
			for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
			await sleep(200);
			assert.equal((await request(`${dp.base}/health`)).status, 200);
		} finally {
			await dp.stop();
			await mock.stop();
			cleanup(st);
		}
	});

	it('goes through the proxy the environment names (http_proxy), and straight without one', async () => {
		// A forwarding HTTP proxy on loopback that notes the absolute-form targets it was asked for.
		const seen = [];
		const proxy = http.createServer((req, res) => {
			seen.push(`${req.method} ${req.url}`);
			const up = http.request(req.url, { method: req.method, headers: req.headers }, (ur) => {
				res.writeHead(ur.statusCode, ur.headers);
				ur.pipe(res);
			});
			up.on('error', () => { res.writeHead(502); res.end(); });
			req.pipe(up);
		});
		await new Promise((ok) => proxy.listen(0, '127.0.0.1', ok));
		const proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
		const mock = await startMock({ keys: [{ key: K1 }] });
		const st = makeDb({ providers: [{ name: 'p', key: K1, url: mock.url, prefix: 'mock/' }] });
		const noNoProxy = { no_proxy: '', NO_PROXY: '' };
		try {
			let dp = await startDataplane(st, { env: { ...noNoProxy, http_proxy: proxyUrl } });
			try {
				const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] });
				assert.equal(r.status, 200, r.body);
				assert.ok(seen.includes(`POST ${mock.url}/chat/completions`), seen.join(', '));
			} finally {
				await dp.stop();
			}
			seen.length = 0;
			dp = await startDataplane(st, { env: { ...noNoProxy, http_proxy: '', https_proxy: '', all_proxy: '' } });
			try {
				const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] });
				assert.equal(r.status, 200, r.body);
				assert.deepEqual(seen, []);
			} finally {
				await dp.stop();
			}
		} finally {
			proxy.close();
			await mock.stop();
			cleanup(st);
		}
	});

	it('pauses accept() when out of file descriptors instead of spinning, then recovers', async () => {
		const mock = await startMock({ keys: [{ key: K1 }] });
		const st = makeDb({ providers: [{ name: 'p', key: K1, url: mock.url, prefix: 'mock/' }] });
		const dp = await startDataplane(st, { nofile: 48 });
		try {
			const socks = await openIdle(dp.port, 80);	// more than the process can hold
			await sleep(300);
			const t0 = cpuTicks(dp.pid);
			await sleep(1000);
			const used = cpuTicks(dp.pid) - t0;
			assert.ok(used < 30, `the data plane used ${used} ticks in 1 s while out of descriptors`);
			assert.match(dp.logs(), /pausing accept/);
			for (const s of socks) s.destroy();
			await sleep(800);
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x', messages: [] });
			assert.equal(r.status, 200, r.body);
		} finally {
			await dp.stop();
			await mock.stop();
			cleanup(st);
		}
	});
});
