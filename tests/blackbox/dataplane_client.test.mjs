// Black-box: what a client (OpenClaw) is told, issue 16.
//   - Retry-After on every 503 of the sidecar's own says when a key of the
//     route frees (queue timeout, queue full, every key cooling, drain);
//     retry_after_seconds only when nothing is known to free; the message
//     says what the client waits for and names the route.
//   - 401/403/402 from the upstream on the sidecar's keys never reach the
//     client as such: 503 with upstream_auth_failed / no_valid_key /
//     upstream_quota; 401 stays the client token's.
//   - `model` in every response is the client's id (prefix included): JSON
//     and every streamed chunk, for chat completions, completions and
//     embeddings; Content-Length matches the rewritten body.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, request, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-CLIENT-0001-xxxxxxxxxxxx';
const K2 = 'nvapi-TEST-CLIENT-0002-xxxxxxxxxxxx';

async function withStack(providers, settings, fn) {
	const mock = await startMock({ keys: [{ key: K1 }, { key: K2 }], chunks: 3, intervalMs: 5 });
	const st = makeDb({ providers: providers(mock), settings });
	const dp = await startDataplane(st);
	try {
		await fn({ mock, st, dp });
	} finally {
		await dp.stop();
		await mock.stop();
		cleanup(st);
	}
}

const chat = (dp, body = {}, headers = {}) =>
	postJson(`${dp.url}/chat/completions`, { model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], ...body }, headers);
const err = (r) => JSON.parse(r.body).error;
const ra = (r) => Number(r.headers['retry-after']);

// The data events of an SSE body, parsed ([DONE] left out).
const events = (text) => text.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
	.map((e) => JSON.parse(e.slice(6)));

describe('what the client sees: Retry-After', { timeout: 90000 }, () => {
	it('a queue timeout says when the window frees, and the message says so', async () => {
		await withStack((m) => [
			{ name: 'n1', key: K1, url: m.url, prefix: 'nvidia/', rpm: 1 },
			{ name: 'n2', key: K2, url: m.url, prefix: 'nvidia/', rpm: 1 },
		], { rpm_window_seconds: 12, rpm_window_margin_ms: 0, queue_timeout_seconds: 1, retry_after_seconds: 30 }, async ({ dp }) => {
			assert.equal((await chat(dp)).status, 200);
			await sleep(2000);
			assert.equal((await chat(dp)).status, 200);
			// Both windows are full: the first frees ~10 s from now, the second ~12 s.
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'queue_timeout');
			assert.ok(ra(r) >= 8 && ra(r) <= 10, `Retry-After ${r.headers['retry-after']}`);
			assert.equal(err(r).message, `timed out waiting for a key: all 2 keys of nvidia/ are rate limited; the next frees in ${ra(r)} s`);
			assert.ok(!r.body.includes('nvapi-'));
		});
	});

	it('every key cooling after 429s: Retry-After is the end of the first cooldown', async () => {
		await withStack((m) => [
			{ name: 'c1', key: K1, url: m.url, prefix: 'nvidia/' },
			{ name: 'c2', key: K2, url: m.url, prefix: 'nvidia/' },
		], { cooldown_base_seconds: 1, recover_wait_seconds: 0, emergency_rpm_ratio: 0, retry_after_seconds: 30 }, async ({ mock, dp }) => {
			await mock.setKey(K1, 0, 'status=429', 0, 7);
			await mock.setKey(K2, 0, 'status=429', 0, 9);
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'rate_limited');
			assert.ok(ra(r) >= 6 && ra(r) <= 7, `Retry-After ${r.headers['retry-after']}`);
			assert.equal(err(r).message, `all 2 keys of nvidia/ are rate limited; the next frees in ${ra(r)} s`);
		});
	});

	it('a full queue says when the window frees', async () => {
		await withStack((m) => [
			{ name: 'one', key: K1, url: m.url, prefix: 'nvidia/', rpm: 1 },
		], { rpm_window_seconds: 20, rpm_window_margin_ms: 0, queue_capacity: 1, queue_timeout_seconds: 5 }, async ({ dp }) => {
			assert.equal((await chat(dp)).status, 200);
			const waiting = chat(dp);
			await sleep(300);
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'queue_full');
			assert.ok(ra(r) >= 18 && ra(r) <= 20, `Retry-After ${r.headers['retry-after']}`);
			assert.match(err(r).message, /^the wait queue is full and the key of nvidia\/ is rate limited; the next frees in \d+ s$/);
			assert.equal((await waiting).status, 503);
		});
	});

	it('a drain answers the queued requests 503 at once, with Retry-After', async () => {
		await withStack((m) => [
			{ name: 'one', key: K1, url: m.url, prefix: 'nvidia/', rpm: 1 },
		], { rpm_window_seconds: 20, rpm_window_margin_ms: 0, queue_timeout_seconds: 15, drain_timeout_seconds: 10 }, async ({ dp }) => {
			assert.equal((await chat(dp)).status, 200);
			const t0 = Date.now();
			const waiting = chat(dp);
			await sleep(500);
			dp.proc.kill('SIGTERM');
			const r = await waiting;
			assert.ok(Date.now() - t0 < 3000, `answered after ${Date.now() - t0} ms`);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'draining');
			assert.ok(ra(r) >= 17 && ra(r) <= 20, `Retry-After ${r.headers['retry-after']}`);
			assert.equal((await dp.wait()).code, 0);
		});
	});
});

describe('what the client sees: the sidecar\'s keys are not the client\'s credentials', { timeout: 90000 }, () => {
	it('401/403 on every key: 503 upstream_auth_failed, then no_valid_key; Retry-After the configured fallback', async () => {
		await withStack((m) => [
			{ name: 'a1', key: K1, url: m.url, prefix: 'nvidia/' },
			{ name: 'a2', key: K2, url: m.url, prefix: 'nvidia/' },
		], { retry_after_seconds: 120 }, async ({ mock, dp }) => {
			await mock.setKey(K1, 0, 'status=401', 0);
			await mock.setKey(K2, 0, 'status=403', 0);
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'upstream_auth_failed');
			assert.match(err(r).message, /nvidia\//);
			assert.match(err(r).message, /HTTP 40[13]/);
			assert.equal(ra(r), 120, 'nothing will free by itself: retry_after_seconds');
			assert.ok(!r.body.includes('nvapi-'), r.body);
			const chats = async () => (await mock.record()).filter((e) => e.path === '/v1/chat/completions');
			assert.deepEqual((await chats()).map((e) => e.status).sort(), [401, 403]);
			// Both keys are now marked invalid: the next request is not sent upstream at all.
			await sleep(300);
			const n = await chat(dp);
			assert.equal(n.status, 503, n.body);
			assert.equal(err(n).code, 'no_valid_key');
			assert.match(err(n).message, /^no valid key for nvidia\//);
			assert.equal(ra(n), 120);
			assert.equal((await chats()).length, 2);
		});
	});

	it('402 (quota on the key): 503 upstream_quota', async () => {
		await withStack((m) => [
			{ name: 'q1', key: K1, url: m.url, prefix: 'nvidia/' },
		], {}, async ({ mock, dp }) => {
			await mock.setKey(K1, 0, 'status=402', 0);
			const r = await chat(dp);
			assert.equal(r.status, 503, r.body);
			assert.equal(err(r).code, 'upstream_quota');
			assert.match(err(r).message, /the key of nvidia\/.*HTTP 402/);
			assert.match(r.headers['retry-after'], /^\d+$/);
		});
	});

	it('an upstream 400 about the request still passes through', async () => {
		await withStack((m) => [
			{ name: 'b1', key: K1, url: m.url, prefix: 'nvidia/' },
		], {}, async ({ dp }) => {
			const r = await chat(dp, {}, { 'x-mock-fault': 'status=400' });
			assert.equal(r.status, 400, r.body);
			assert.ok(err(r));
		});
	});
});

describe('what the client sees: its own model id', { timeout: 90000 }, () => {
	it('chat completions, completions and embeddings, JSON and every streamed chunk', async () => {
		await withStack((m) => [
			{ name: 'm1', key: K1, url: m.url, prefix: 'nvidia/' },
		], {}, async ({ mock, dp }) => {
			const M = 'nvidia/meta/llama-3.1-8b-instruct';
			const j = await chat(dp);
			assert.equal(j.status, 200, j.body);
			assert.equal(JSON.parse(j.body).model, M);
			assert.equal(Number(j.headers['content-length']), Buffer.byteLength(j.body));

			const s = await chat(dp, { stream: true, stream_options: { include_usage: true } });
			assert.equal(s.status, 200);
			const evs = events(s.body);
			assert.equal(evs.length, 4, s.body);	// 3 content chunks + usage
			for (const e of evs) assert.equal(e.model, M, JSON.stringify(e));
			assert.match(s.body, /data: \[DONE\]\n\n$/);

			// The sidecar's own usage request (stream_usage) is still dropped, the rest rewritten.
			const s2 = await chat(dp, { stream: true });
			const ev2 = events(s2.body);
			assert.ok(ev2.length === 3 && ev2.every((e) => e.model === M && e.choices.length === 1), s2.body);

			const c = await postJson(`${dp.url}/completions`, { model: M, prompt: 'hi' });
			assert.equal(JSON.parse(c.body).model, M);
			const cs = await postJson(`${dp.url}/completions`, { model: M, prompt: 'hi', stream: true });
			for (const e of events(cs.body)) assert.equal(e.model, M);

			const E = 'nvidia/nvidia/nv-embedqa-e5-v5';
			const emb = await postJson(`${dp.url}/embeddings`, { model: E, input: ['a', 'b'] });
			assert.equal(emb.status, 200, emb.body);
			const ej = JSON.parse(emb.body);
			assert.equal(ej.model, E);
			assert.equal(ej.data.length, 2);
			assert.equal(Number(emb.headers['content-length']), Buffer.byteLength(emb.body));

			// the upstream got the prefix-stripped ids
			assert.deepEqual([...new Set((await mock.record()).map((e) => e.model))].sort(),
				['meta/llama-3.1-8b-instruct', 'nvidia/nv-embedqa-e5-v5']);
		});
	});

	it('a response cut mid-body before anything reached the client: a clean 502', async () => {
		await withStack((m) => [
			{ name: 'x1', key: K1, url: m.url, prefix: 'nvidia/' },
		], {}, async ({ dp }) => {
			const r = await chat(dp, {}, { 'x-mock-fault': 'reset-after=20' });
			assert.equal(r.status, 502, r.body);
			assert.equal(err(r).code, 'upstream_error');
			const ok = await request(`${dp.base}/health`);
			assert.equal(ok.status, 200);
		});
	});
});
