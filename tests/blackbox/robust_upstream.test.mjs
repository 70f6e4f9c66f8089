// Black-box, robustness: upstream faults injected by the mock (issue 10).
// Refused connections (a provider on a closed port), TLS spoken to a port
// that answers plain HTTP, 500s, malformed JSON, reset mid-body and
// mid-stream, no first byte within upstream_ttfb_timeout, a slow drip. With a
// second provider on the route the request is retried there (nothing was sent
// yet); alone, the client gets a clean OpenAI-shaped error or, once bytes
// were sent, a stream ended with an error event and [DONE]. The data plane
// never crashes, serves normal requests meanwhile, and accounts for every
// request in its request log (one line each, with the failure named).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startMock } from './lib/mock.mjs';
import { freePort } from './lib/lighttpd.mjs';
import { cleanup, makeDb, postJson, request, rssKb, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0301-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0302-xxxxxxxxxxxxxxxx';
const K3 = 'nvapi-TEST-0303-xxxxxxxxxxxxxxxx';
const RSS_LIMIT_KB = (process.env.ASAN_OPTIONS ? 1024 : 256) * 1024;

let mock, st, dp, sent = 0;

// A chat request; resolves {status, headers, body} or {status: 'error', error}
// when the connection broke (a truncation the client can see).
async function chat(model, { headers = {}, stream = false } = {}) {
	sent++;
	try {
		return await postJson(`${dp.url}/chat/completions`,
			{ model, stream, messages: [{ role: 'user', content: 'hi' }] }, headers);
	} catch (e) {
		return { status: 'error', error: e };
	}
}

function assertOpenAIError(r, statuses, what) {
	assert.ok(statuses.includes(r.status), `${what}: status ${r.status} ${r.body ?? r.error}`);
	assert.match(r.headers['content-type'], /^application\/json/, what);
	const e = JSON.parse(r.body).error;
	assert.ok(e && typeof e.message === 'string' && e.type, `${what}: ${r.body}`);
}

function assertStreamComplete(r, what) {
	assert.equal(r.status, 200, `${what}: ${r.status}`);
	assert.match(r.headers['content-type'], /^text\/event-stream/, what);
	assert.ok(r.body.endsWith('data: [DONE]\n\n'), `${what}: ${JSON.stringify(r.body.slice(-200))}`);
}

// Requests the data plane logged as finished (one line each).
const logged = () => dp.logs().split('\n').filter((l) => / request \S+ provider=.* status=\d+/.test(l));

async function assertHealthyStack() {
	assert.equal(dp.exited(), null, `the data plane died: ${dp.logs().slice(-2000)}`);
	const r = await chat('solo/m');
	assert.equal(r.status, 200, `normal request: ${r.status} ${r.body}`);
	assert.ok(rssKb(dp.pid) < RSS_LIMIT_KB);
}

describe('upstream faults', { timeout: 120000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }, { key: K2 }, { key: K3 }], chunks: 4, intervalMs: 10 });
		const closed = await freePort();	// nothing listens there
		st = makeDb({
			providers: [
				{ name: 'pair-a', key: K1, url: mock.url, prefix: 'pair/' },
				{ name: 'pair-b', key: K2, url: mock.url, prefix: 'pair/' },
				{ name: 'p2-a', key: K1, url: mock.url, prefix: 'pair2/' },
				{ name: 'p2-b', key: K2, url: mock.url, prefix: 'pair2/' },
				{ name: 'solo', key: K3, url: mock.url, prefix: 'solo/' },
				{ name: 'dead', key: K1, url: `http://127.0.0.1:${closed}/v1`, prefix: 'dead/' },
				{ name: 'dead-b', key: K1, url: `http://127.0.0.1:${closed}/v1`, prefix: 'deadpair/' },
				{ name: 'live-b', key: K3, url: mock.url, prefix: 'deadpair/' },
				{ name: 'tls', key: K2, url: `https://127.0.0.1:${mock.port}/v1`, prefix: 'tls/' },
			],
			settings: { upstream_ttfb_timeout: 2, upstream_connect_timeout: 1, unhealthy_after_failures: 3,
				health_probe_interval_seconds: 60, max_attempts: 3 },
		});
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('refused connections: a clean 502 alone, a retry on the other provider otherwise', async () => {
		const t0 = Date.now();
		const r = await chat('dead/m');
		assertOpenAIError(r, [502, 503], 'refused');
		assert.ok(Date.now() - t0 < 1500, `refused took ${Date.now() - t0} ms`);
		for (let i = 0; i < 6; i++) {
			const ok = await chat('deadpair/m');
			assert.equal(ok.status, 200, ok.body);
			assert.equal(ok.headers['x-sidecar-provider'], 'live-b');
		}
		// After unhealthy_after_failures the dead provider is skipped, not retried each time.
		const failures = dp.logs().split('\n').filter((l) => /provider dead-b failed/.test(l)).length;
		assert.ok(failures >= 1 && failures <= 3, `dead-b tried ${failures} times`);
		const h = JSON.parse((await request(`${dp.base}/health`)).body);
		assert.ok(h.providers.unhealthy >= 1, JSON.stringify(h));
		await assertHealthyStack();
	});

	it('TLS to a port speaking plain HTTP: a clean error within the connect timeout', async () => {
		const t0 = Date.now();
		const r = await chat('tls/m');
		assertOpenAIError(r, [502, 504], 'tls to plain');
		assert.ok(Date.now() - t0 < 3500, `took ${Date.now() - t0} ms`);
		assert.ok(!dp.logs().includes(K2), 'a key in the log');
		await assertHealthyStack();
	});

	it('500s: passed on alone (OpenAI shape), retried on the other provider otherwise', async () => {
		const r = await chat('solo/m', { headers: { 'x-mock-fault': 'status=500' } });
		assertOpenAIError(r, [500], '500 alone');
		const r2 = await chat('solo/m', { headers: { 'x-mock-fault': 'status=503' }, stream: true });
		assertOpenAIError(r2, [503], '503 alone, stream');
		await mock.setKey(K1, 0, 'status=500', 0);
		try {
			for (let i = 0; i < 6; i++) {
				const ok = await chat('pair/m');
				assert.equal(ok.status, 200, ok.body);
				assert.equal(ok.headers['x-sidecar-provider'], 'pair-b');
			}
			const tried = (await mock.record()).filter((x) => x.key === K1 && x.path.endsWith('/chat/completions')).length;
			assert.ok(tried >= 1 && tried <= 3, `pair-a tried ${tried} times`);
		} finally {
			await mock.setKey(K1, 0, null);
		}
		await assertHealthyStack();
	});

	it('malformed JSON and truncated bodies: no crash, nothing half-valid', async () => {
		const r = await chat('solo/m', { headers: { 'x-mock-fault': 'malformed' } });
		// The sidecar does not buffer bodies to validate them: passed on, or refused.
		assert.ok([200, 502].includes(r.status), `${r.status}`);
		const s = await chat('solo/m', { headers: { 'x-mock-fault': 'malformed' }, stream: true });
		assertStreamComplete(s, 'malformed stream');
		// Reset after part of the body: the client can tell (broken connection),
		// or gets a complete answer from a retry; never a short 200 that parses.
		const cut = await chat('solo/m', { headers: { 'x-mock-fault': 'reset-after=10' } });
		if (cut.status !== 'error') {
			assert.ok(cut.status >= 500 || JSON.parse(cut.body).choices, `reset mid-body: ${cut.status} ${cut.body}`);
		}
		const closeCut = await chat('solo/m', { headers: { 'x-mock-fault': 'close-after=10' } });
		if (closeCut.status !== 'error') {
			assert.ok(closeCut.status >= 500 || JSON.parse(closeCut.body).choices, `close mid-body: ${closeCut.status} ${closeCut.body}`);
		}
		await assertHealthyStack();
	});

	it('reset mid-stream: the stream ends with an error event and [DONE]', async () => {
		for (const fault of ['reset-after=2', 'close-after=2']) {
			const r = await chat('solo/m', { headers: { 'x-mock-fault': fault }, stream: true });
			assertStreamComplete(r, fault);
			const events = r.body.split('\n\n').filter((e) => e.startsWith('data: {'));
			const last = JSON.parse(events[events.length - 1].slice(6));
			assert.ok(last.error && last.error.message, `${fault}: last event ${JSON.stringify(last)}`);
			assert.ok(events.length >= 2, `${fault}: ${events.length} events`);
		}
		assert.ok(logged().some((l) => /stream_interrupted|interrupted|error/.test(l) && /status=200/.test(l)),
			'the interrupted streams are logged as such');
		await assertHealthyStack();
	});

	it('no first byte within upstream_ttfb_timeout: 504 alone, retried otherwise', async () => {
		let t0 = Date.now();
		const r = await chat('solo/m', { headers: { 'x-mock-fault': 'hang-first-byte' } });
		assertOpenAIError(r, [504, 502], 'hang alone');
		let ms = Date.now() - t0;
		assert.ok(ms >= 1800 && ms < 4000, `hang alone took ${ms} ms (timeout 2 s)`);
		const s = await chat('solo/m', { headers: { 'x-mock-fault': 'hang' }, stream: true });
		assertOpenAIError(s, [504, 502], 'hang alone, stream');
		await mock.setKey(K2, 0, 'hang-first-byte', 0);
		try {
			t0 = Date.now();
			// Whichever of the pair the balancer picks first, the answer comes from p2-a
			// (a fresh pair: pair-a became unhealthy in the 500s test).
			for (let i = 0; i < 2; i++) {
				const ok = await chat('pair2/m');
				assert.equal(ok.status, 200, ok.body);
				assert.equal(ok.headers['x-sidecar-provider'], 'p2-a');
			}
			ms = Date.now() - t0;
			assert.ok(ms < 6000, `two requests took ${ms} ms`);
		} finally {
			await mock.setKey(K2, 0, null);
		}
		await assertHealthyStack();
	});

	it('a slow drip is delivered whole while other clients are served promptly', async () => {
		const drip = chat('solo/m', { headers: { 'x-mock-fault': 'drip=3' }, stream: true });
		await sleep(200);
		for (let i = 0; i < 5; i++) {
			const t0 = Date.now();
			const r = await chat('solo/m');
			assert.equal(r.status, 200);
			assert.ok(Date.now() - t0 < 1000, `a normal request took ${Date.now() - t0} ms during the drip`);
		}
		const r = await drip;
		assertStreamComplete(r, 'drip');
		const content = r.body.split('\n\n').filter((e) => e.startsWith('data: {'))
			.map((e) => JSON.parse(e.slice(6)).choices?.[0]?.delta?.content ?? '').join('');
		assert.ok(content.length > 0, 'no content delivered');
		await assertHealthyStack();
	});

	it('accounts for every request: one log line each, no key anywhere in the log', async () => {
		await sleep(300);
		const lines = logged();
		assert.equal(lines.length, sent, `logged ${lines.length} of ${sent} requests`);
		for (const k of [K1, K2, K3]) assert.ok(!dp.logs().includes(k), 'a key in the log');
		assert.equal(dp.exited(), null);
	});
});
