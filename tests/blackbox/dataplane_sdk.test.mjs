// Black-box: the official `openai` npm SDK (what OpenClaw uses) against
// sidecar-dataplane in front of the mock upstream: non-streaming, streaming,
// tool-call streaming, and upstream/sidecar errors surfacing as the SDK's
// typed errors with the right status. Also: providers added to the database
// while the data plane runs are used within 2 s, without a restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dep } from './lib/deps.mjs';

const OpenAI = dep('openai');
import { startMock } from './lib/mock.mjs';
import { addProviders, cleanup, makeDb, postJson, sleep, startDataplane } from './lib/stack.mjs';

const K1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';

describe('openai SDK against the data plane', { timeout: 60000 }, () => {
	let mock, st, dp, client;

	before(async () => {
		mock = await startMock({ keys: [{ key: K1 }], chunks: 4, intervalMs: 5 });
		st = makeDb({ providers: [
			{ name: 'sdk-1', key: K1, url: mock.url, prefix: 'nvidia/' },
			{ name: 'sdk-bad', key: 'nvapi-TEST-NOT-KNOWN-xxxxxxxxxx', url: mock.url, prefix: 'badkey/' },
		] });
		dp = await startDataplane(st);
		client = new OpenAI({ apiKey: 'sk-client-side-not-forwarded', baseURL: dp.url, maxRetries: 0, timeout: 20000 });
	});

	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('non-streaming chat completion', async () => {
		const r = await client.chat.completions.create({
			model: 'nvidia/meta/llama-3.1-8b-instruct',
			messages: [{ role: 'user', content: 'hello' }],
			max_completion_tokens: 16,
		});
		assert.equal(r.object, 'chat.completion');
		assert.equal(typeof r.choices[0].message.content, 'string');
		assert.ok(r.usage.total_tokens > 0);
	});

	it('streaming chat completion with usage', async () => {
		const stream = await client.chat.completions.create({
			model: 'nvidia/meta/llama-3.1-8b-instruct',
			messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }],
			stream: true,
			stream_options: { include_usage: true },
		});
		let text = '', chunks = 0, usage = null;
		for await (const ch of stream) {
			chunks++;
			if (ch.choices[0]?.delta?.content) text += ch.choices[0].delta.content;
			if (ch.usage) usage = ch.usage;
		}
		assert.ok(chunks >= 4, `chunks ${chunks}`);
		assert.ok(text.length > 0);
		assert.ok(usage && usage.total_tokens > 0);
	});

	it('streaming tool calls', async () => {
		const stream = await client.chat.completions.create({
			model: 'nvidia/meta/llama-3.1-8b-instruct',
			messages: [{ role: 'user', content: 'weather?' }],
			tools: [{ type: 'function', function: { name: 'get_weather', description: 'w', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
			tool_choice: 'auto',
			stream: true,
		});
		let name = '', args = '';
		for await (const ch of stream) {
			for (const tc of ch.choices[0]?.delta?.tool_calls ?? []) {
				if (tc.function?.name) name += tc.function.name;
				if (tc.function?.arguments) args += tc.function.arguments;
			}
		}
		assert.ok(name.length > 0, 'no tool call name streamed');
		JSON.parse(args);	// the streamed argument fragments form JSON
		const rec = await mock.record();
		const last = rec[rec.length - 1];
		assert.ok(JSON.parse(last.body).tools, 'tools were forwarded');
		assert.ok(!JSON.stringify(last.headers).includes('sk-client-side-not-forwarded'));
	});

	it('a key the upstream rejects (401) is a 503 InternalServerError naming the route, not an AuthenticationError', async () => {
		// 401 would tell the client its own credentials are wrong (issue 16).
		await assert.rejects(client.chat.completions.create({ model: 'badkey/x', messages: [{ role: 'user', content: 'x' }] }),
			(e) => e instanceof OpenAI.InternalServerError && !(e instanceof OpenAI.AuthenticationError) && e.status === 503 &&
				e.code === 'upstream_auth_failed' && /badkey\//.test(e.message) && !/nvapi-/.test(e.message));
	});

	it('an upstream 404 and an unknown prefix are NotFoundError with status 404', async () => {
		await assert.rejects(client.chat.completions.create({ model: 'nvidia/x', messages: [{ role: 'user', content: 'x' }] },
			{ headers: { 'X-Mock-Fault': 'status=404' } }),
		(e) => e instanceof OpenAI.NotFoundError && e.status === 404);
		await assert.rejects(client.chat.completions.create({ model: 'unknown/x', messages: [{ role: 'user', content: 'x' }] }),
			(e) => e instanceof OpenAI.NotFoundError && e.status === 404 && /unknown\/x/.test(e.message));
	});

	it('a bad request is a BadRequestError', async () => {
		await assert.rejects(client.chat.completions.create({ messages: [{ role: 'user', content: 'x' }] }),
			(e) => e instanceof OpenAI.BadRequestError && e.status === 400);
	});

	it('embeddings and models through the SDK', async () => {
		const e = await client.embeddings.create({ model: 'nvidia/nv-embed', input: 'x' });
		assert.ok(Array.isArray(e.data) && e.data.length === 1);
		const ids = [];
		for await (const m of client.models.list()) ids.push(m.id);
		assert.ok(ids.length > 0 && ids.every((id) => id.startsWith('nvidia/') || id.startsWith('badkey/')));
	});
});

describe('data plane reload', { timeout: 30000 }, () => {
	it('uses a provider added to the database within 2 s, without restart', async () => {
		const mock = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
		const st = makeDb({ providers: [{ name: 'first', key: K1, url: mock.url, prefix: 'a/' }] });
		const dp = await startDataplane(st);
		try {
			assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'a/x', messages: [] })).status, 200);
			assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'b/x', messages: [] })).status, 404);
			addProviders(st, [{ name: 'second', key: K2, url: mock.url, prefix: 'b/' }]);
			const t0 = Date.now();
			let r;
			for (;;) {
				r = await postJson(`${dp.url}/chat/completions`, { model: 'b/x', messages: [] });
				if (r.status === 200 || Date.now() - t0 > 2500) break;
				await sleep(100);
			}
			assert.equal(r.status, 200, `still ${r.status} after ${Date.now() - t0} ms`);
			assert.ok(Date.now() - t0 <= 2200, `took ${Date.now() - t0} ms`);
			assert.equal(r.headers['x-sidecar-provider'], 'second');
			const rec = await mock.record();
			assert.equal(rec[rec.length - 1].key, K2);
			// SIGHUP reloads too and keeps serving.
			dp.proc.kill('SIGHUP');
			await sleep(200);
			assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'a/x', messages: [] })).status, 200);
			assert.equal(dp.exited(), null);
		} finally {
			await dp.stop();
			await mock.stop();
			cleanup(st);
		}
	});
});
