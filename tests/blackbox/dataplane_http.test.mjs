// Black-box: HTTP details of the data plane (issue 14 item 8). HEAD on the
// GET routes is answered with the GET's head and never a body (a body would
// corrupt the next answer on a kept-alive connection); headers the client's
// Connection field names are hop-by-hop and stay here; an absolute-form
// target is routed on its path; a request without Content-Type goes upstream
// as application/json; a model with NUL is refused; the request log line
// quotes values that could forge fields; an upstream redirect is an upstream
// failure (retried on another key, else 502), never relayed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startMock } from './lib/mock.mjs';
import { cleanup, logShows, makeDb, postJson, rawExchange, sleep, startDataplane } from './lib/stack.mjs';


const K1 = 'nvapi-TEST-0181-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0182-xxxxxxxxxxxxxxxx';
const K3 = 'nvapi-TEST-0183-xxxxxxxxxxxxxxxx';

// The first response head in a raw exchange: {status, head, len (its
// Content-Length), rest (everything after the head)}, or null.
function firstHead(text) {
	const end = text.indexOf('\r\n\r\n');
	if (!text.startsWith('HTTP/1.1 ') || end < 0) return null;
	const head = text.slice(0, end);
	const m = /\r\ncontent-length: (\d+)/i.exec(head);
	return { status: +head.slice(9, 12), head, len: m ? +m[1] : -1, rest: text.slice(end + 4) };
}

describe('data plane HTTP details', { timeout: 60000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }, { key: K3 }] });
		st = makeDb({ providers: [
			{ name: 'p1', key: K1, url: mock.url, prefix: 'mock/' },
			{ name: 'redirect-1', key: K2, url: mock.url, prefix: 'r/' },
			{ name: 'redirect-2', key: K3, url: mock.url, prefix: 'r/' },
		] });
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop('SIGTERM');	// a clean exit: LeakSanitizer checks it in the ASan pass
		await mock.stop();
		cleanup(st);
	});

	const lastRecord = async () => { const rec = await mock.record(); return rec[rec.length - 1]; };

	it('answers HEAD on GET routes with the head only, and the next request on the connection is intact', async () => {
		for (const [port, path] of [[dp.port, '/health'], [dp.port, '/v1/models'], [dp.metricsPort, '/metrics']]) {
			const text = await rawExchange(port,
				`HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
			const h = firstHead(text);
			assert.ok(h, `no answer to HEAD ${path}: ${text}`);
			assert.equal(h.status, 200, `HEAD ${path}: ${h.head}`);
			assert.ok(h.len > 0, `HEAD ${path} announces the GET's Content-Length: ${h.head}`);
			// Right after the HEAD's head comes the GET's answer, not a body.
			assert.match(h.rest, /^HTTP\/1\.1 200 /, `after HEAD ${path}: ${JSON.stringify(h.rest.slice(0, 80))}`);
			const g = firstHead(h.rest);
			if (path !== '/metrics') assert.equal(g.len, h.len, `HEAD and GET ${path} announce the same length`);
		}
		// HEAD on a POST route: 405 naming POST, still without a body.
		const text = await rawExchange(dp.port, 'HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
		const h = firstHead(text);
		assert.equal(h.status, 405);
		assert.match(h.head, /\r\nAllow: POST/i);
		assert.match(h.rest, /^HTTP\/1\.1 200 /);
	});

	it('does not forward headers named in Connection', async () => {
		const body = JSON.stringify({ model: 'mock/m', messages: [] });
		const text = await rawExchange(dp.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
			'Connection: keep-alive, X-Hop-Secret\r\nX-Hop-Secret: do-not-forward\r\nX-End-To-End: forward-me\r\n' +
			`Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		assert.match(text, /^HTTP\/1\.1 200 /, text);
		const r = await lastRecord();
		assert.equal(r.headers['x-end-to-end'], 'forward-me');
		assert.equal(r.headers['x-hop-secret'], undefined, JSON.stringify(r.headers));
	});

	it('routes an absolute-form target on its path', async () => {
		const body = JSON.stringify({ model: 'mock/m', messages: [] });
		const text = await rawExchange(dp.port, `POST http://127.0.0.1:${dp.port}/v1/chat/completions HTTP/1.1\r\n` +
			`Host: 127.0.0.1:${dp.port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
		assert.match(text, /^HTTP\/1\.1 200 /, text);
		const h = await rawExchange(dp.port, `GET http://127.0.0.1:${dp.port}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
		assert.match(h, /^HTTP\/1\.1 200 /, h);
	});

	it('sends application/json upstream when the client gave no Content-Type, the client\'s own otherwise', async () => {
		const body = JSON.stringify({ model: 'mock/m', messages: [] });
		let text = await rawExchange(dp.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
			`Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
		assert.match(text, /^HTTP\/1\.1 200 /, text);
		assert.equal((await lastRecord()).headers['content-type'], 'application/json');
		text = await rawExchange(dp.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
			`Content-Type: application/json; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
		assert.match(text, /^HTTP\/1\.1 200 /, text);
		assert.equal((await lastRecord()).headers['content-type'], 'application/json; charset=utf-8');
	});

	it('refuses a model name with NUL instead of cutting it short', async () => {
		const before = (await mock.record()).length;
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'mock/x\u0000evil', messages: [] });
		assert.equal(r.status, 400, r.body);
		assert.match(JSON.parse(r.body).error.message, /NUL/);
		assert.equal((await mock.record()).length, before, 'nothing went upstream');
	});

	it('quotes values in the request log line so that a model name cannot forge fields', async () => {
		const model = 'mock/x provider=FAKE status=200 "q"';
		const r = await postJson(`${dp.url}/chat/completions`, { model, messages: [] }, { 'x-request-id': 'req-logq-1' });
		assert.equal(r.status, 200, r.body);
		let line;
		for (let i = 0; i < 50 && !line; i++, await sleep(60))
			line = dp.logs().split('\n').find((l) => l.includes('request req-logq-1 '));
		assert.ok(line, dp.logs().slice(-2000));
		assert.ok(line.includes('provider=p1 model="mock/x provider=FAKE status=200 \\"q\\"" status=200 '), line);
		// Parsed as key=value fields, the line names the real provider once.
		const fields = [...line.matchAll(/ (\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)].map((m) => [m[1], m[2]]);
		assert.deepEqual(fields.filter(([k]) => k === 'provider' || k === 'status'), [['provider', 'p1'], ['status', '200']]);
	});

	it('treats an upstream redirect as an upstream failure: retried on another key, else 502', async () => {
		await mock.setKey(K2, 0, 'status=307', 0);
		await mock.setKey(K3, 0, null, 0);
		for (let i = 0; i < 2; i++) {
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'r/m', messages: [] });
			assert.equal(r.status, 200, r.body);
			assert.equal(r.headers['x-sidecar-provider'], 'redirect-2');
		}
		await mock.setKey(K3, 0, 'status=307', 0);
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'r/m', messages: [] });
		assert.equal(r.status, 502, r.body);
		assert.ok(JSON.parse(r.body).error);
		assert.ok(await logShows(dp, /answered a redirect \(307\); treated as 502/), dp.logs().slice(-2000));
		await mock.setKey(K2, 0, null, 0);
		await mock.setKey(K3, 0, null, 0);
	});
});
