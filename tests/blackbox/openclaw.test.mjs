// OpenClaw itself against the data plane (issue 16): the real OpenClaw
// (npm `openclaw`, pinned), `openclaw agent --local --json`, configured with
// docs/openclaw.example.json (the sidecar as a custom OpenAI-compatible
// provider, a backup model as its fallback), against the mock upstream.
//
//   (a) a plain streamed turn: usage reaches OpenClaw, the answer names the
//       model OpenClaw asked for (not rerouted), list content is flattened;
//   (b) a tool call first and text second: two requests, the tool result in
//       the second, both through the sidecar;
//   (c) every key revoked: the turn ends on the fallback model, and a second
//       turn, after the operator fixed the keys, is answered by the sidecar
//       again (OpenClaw did not disable its credentials for the sidecar);
//   (d) the key rate limited, short queue timeout: OpenClaw's own retry
//       comes back when Retry-After said and succeeds, without the fallback.
//
// Each asserts on OpenClaw's --json output and the mock's record. The cases
// run concurrently (each has its own mock, data plane and HOME): one
// OpenClaw turn costs ~15-25 s of start-up on a 2-core machine.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { makeDb, startDataplane, cleanup, metric, until } from './lib/stack.mjs';
import { requireOpenClaw, openclawConfig, openclawHome, openclawTurn, describeTurn } from './lib/openclaw.mjs';

const MODEL = 'nvidia/meta/llama-3.1-8b-instruct';
const UPSTREAM_MODEL = 'meta/llama-3.1-8b-instruct';
const MOCK_TEXT = 'Hello from the mock upstream';	// the mock's five default tokens
const BACKUP_KEY = 'sk-TEST-backup-provider-0000';
const key = (n) => `nvapi-TEST-OPENCLAW-${String(n).padStart(4, '0')}-xxxxxxxxxxxx`;

// A mock, a database with the given providers (prefix nvidia/) and settings,
// a client token, and the data plane; plus a backup mock (the fallback
// model, reached directly, not through the sidecar).
async function stack({ keys, settings = {}, compat = {}, rpm = 1000 }) {
	// OpenClaw's bodies are ~60 KB: keep them whole in the record.
	const mock = await startMock({ keys: keys.map((k) => ({ key: k })), extraArgs: ['--record-body-max', String(4 << 20)] });
	const backup = await startMock({ keys: [{ key: BACKUP_KEY }] });
	const st = makeDb({
		providers: keys.map((k, i) => ({ name: `nim-${i + 1}`, key: k, url: mock.url, prefix: 'nvidia/', rpm, ...compat })),
		settings,
	});
	const token = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client', '--label', 'openclaw'],
		{ env: st.env }).toString().trim();
	const dp = await startDataplane(st);
	return {
		mock, backup, st, dp, token,
		async stop() {
			await dp.stop();
			await mock.stop();
			await backup.stop();
			cleanup(st);
		},
	};
}

// OpenClaw's chat requests and their bodies as the mock saw them.
const chats = (list) => list.filter((e) => e.path === '/v1/chat/completions');
const body = (e) => JSON.parse(e.body);

function assertTurnOk(t, provider) {
	assert.equal(t.code, 0, describeTurn(t));
	assert.ok(t.out, `no JSON on stdout: ${describeTurn(t)}`);
	assert.equal(t.out.meta.agentMeta.provider, provider, describeTurn(t));
	assert.equal(t.out.payloads.map((p) => p.text).join(''), MOCK_TEXT, describeTurn(t));
}

// The data plane's request log lines for the model: [{status, queue_ms, ...}].
function dpRequests(dp) {
	return dp.logs().split('\n').filter((l) => /\brequest \S+ provider=/.test(l) && l.includes(`model=${MODEL}`))
		.map((l) => Object.fromEntries([...l.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]])));
}

describe('OpenClaw against the sidecar', { concurrency: true }, () => {
	before(() => requireOpenClaw());

	it('(a) a plain streamed turn: usage, the model OpenClaw asked for, string content', async () => {
		const s = await stack({ keys: [key(1)], compat: { flatten_content: true } });
		const h = openclawHome(openclawConfig({
			sidecar: { url: s.dp.url, token: s.token, headers: { 'X-Mock-Tool': 'none' } },
			backup: { url: s.backup.url, key: BACKUP_KEY },
		}));
		try {
			const t = await openclawTurn(h.home, 'Say hello.');
			assertTurnOk(t, 'sidecar');
			const am = t.out.meta.agentMeta;
			const rec = chats(await s.mock.record());
			assert.equal(rec.length, 1, JSON.stringify(rec.map((e) => e.status)));
			const e = rec[0];
			assert.equal(e.status, 200);
			assert.equal(e.key, key(1));
			assert.equal(e.model, UPSTREAM_MODEL);
			assert.equal(e.stream, true);
			assert.equal(e.include_usage, true, 'OpenClaw asks for usage on a loopback endpoint');
			assert.ok(e.body_len > 20000, `OpenClaw's request is its full prompt and tools (${e.body_len} bytes)`);
			assert.notEqual(e.headers.authorization, `Bearer ${s.token}`, 'the client token is not forwarded');
			const msgs = body(e).messages;
			assert.ok(msgs.length >= 2);
			for (const m of msgs) assert.equal(typeof m.content, 'string', `flatten_content: ${JSON.stringify(m).slice(0, 200)}`);
			// usage: the mock's numbers reached OpenClaw
			assert.equal(am.usage.input, e.usage.prompt_tokens);
			assert.equal(am.usage.output, e.usage.completion_tokens);
			// the answer names the model OpenClaw asked for: not rerouted
			const rc = am.terminalReceipt;
			assert.equal(rc.effective.responseModel, MODEL, JSON.stringify(rc));
			assert.equal(rc.rerouted, false, JSON.stringify(rc));
			assert.equal(t.out.meta.executionTrace.fallbackUsed, false);
			assert.equal((await s.backup.record()).length, 0, 'the fallback model was not used');
		} finally {
			await s.stop();
			h.remove();
		}
	});

	it('(b) a tool call first, text second: both requests through the sidecar', async () => {
		const s = await stack({ keys: [key(1), key(2)] });
		const marker = `sidecar-probe-${process.pid}-${Date.now()}`;
		let h;
		try {
			// The mock's first answer calls OpenClaw's read tool on a file of the
			// workspace; once the tool result comes back it answers text.
			h = openclawHome();
			const probe = { path: join(h.workspace, 'probe.txt') };
			writeFileSync(probe.path, `${marker}\n`);
			h.configure(openclawConfig({
				sidecar: { url: s.dp.url, token: s.token, headers: { 'X-Mock-Tool': 'read', 'X-Mock-Tool-Args': JSON.stringify(probe) } },
				backup: { url: s.backup.url, key: BACKUP_KEY },
			}));

			const t = await openclawTurn(h.home, 'Read probe.txt and tell me what it says.');
			assertTurnOk(t, 'sidecar');
			const rc = t.out.meta.agentMeta.terminalReceipt;
			assert.deepEqual(rc.successfulToolNames, ['read'], JSON.stringify(rc));
			assert.equal(rc.effective.responseModel, MODEL);
			assert.equal(rc.rerouted, false);
			const rec = chats(await s.mock.record());
			assert.equal(rec.length, 2, JSON.stringify(rec.map((e) => e.status)));
			assert.deepEqual(rec.map((e) => e.status), [200, 200]);
			assert.ok(rec.every((e) => e.model === UPSTREAM_MODEL && e.stream));
			assert.ok(!body(rec[0]).messages.some((m) => m.role === 'tool'));
			const toolMsg = body(rec[1]).messages.filter((m) => m.role === 'tool');
			assert.equal(toolMsg.length, 1, 'the second request carries the tool result');
			assert.match(JSON.stringify(toolMsg[0].content), new RegExp(marker));
			// OpenClaw keeps only the id's letters and digits
			assert.equal(toolMsg[0].tool_call_id.replace(/[^A-Za-z0-9]/g, ''), `callmock${rec[0].seq}`);
			assert.equal((await s.backup.record()).length, 0);
		} finally {
			await s.stop();
			h?.remove();
		}
	});

	it('(c) every key revoked: the fallback answers, and the next turn reaches the sidecar again', async () => {
		// retry_after_seconds above OpenClaw's ~90 s retry window: when no key
		// is valid nothing frees by itself, and OpenClaw falls back at once
		// (docs/openclaw.md).
		const s = await stack({ keys: [key(1), key(2)], settings: { retry_after_seconds: 300 } });
		const h = openclawHome(openclawConfig({
			sidecar: { url: s.dp.url, token: s.token, headers: { 'X-Mock-Tool': 'none' } },
			backup: { url: s.backup.url, key: BACKUP_KEY, headers: { 'X-Mock-Tool': 'none' } },
		}));
		try {
			await s.mock.setKey(key(1), 0, 'status=401');
			await s.mock.setKey(key(2), 0, 'status=401');
			const t1 = await openclawTurn(h.home, 'Say hello.');
			assertTurnOk(t1, 'backup');
			const tr = t1.out.meta.executionTrace;
			assert.equal(tr.fallbackUsed, true, JSON.stringify(tr));
			assert.equal(tr.attempts[0].provider, 'sidecar', JSON.stringify(tr));
			assert.equal(tr.attempts[0].status, 503, `the sidecar answers 503, not the keys' 401: ${JSON.stringify(tr)}`);
			const rec1 = chats(await s.mock.record());
			assert.deepEqual(rec1.map((e) => e.status).sort(), [401, 401], 'both keys were tried once');
			assert.deepEqual(new Set(rec1.map((e) => e.key)), new Set([key(1), key(2)]));
			assert.equal(chats(await s.backup.record()).length, 1);
			// at once: not after retrying the sidecar for its ~90 s budget
			assert.ok(t1.out.meta.durationMs < 60000, `the turn took ${t1.out.meta.durationMs} ms`);

			// The operator replaces the keys; the data plane reloads within its poll interval (2 s;
			// longer on a loaded machine: wait for both keys to show ok, not for a fixed time).
			await s.mock.setKey(key(1), 0, null);
			await s.mock.setKey(key(2), 0, null);
			for (const n of ['nim-1', 'nim-2'])
				execFileSync(s.st.ctl, ['--db', s.st.db, 'providers', 'enable', n], { env: s.st.env });
			const ok = (n) => metric(s.dp, `sidecar_provider_state{provider="${n}",state="ok"}`);
			await until(async () => (await ok('nim-1')) === 1 && (await ok('nim-2')) === 1, 20000, 'the data plane to reload the enabled keys');
			const since = rec1.at(-1).seq;
			const t2 = await openclawTurn(h.home, 'Say hello again.');
			assertTurnOk(t2, 'sidecar');
			assert.equal(t2.out.meta.executionTrace.fallbackUsed, false, JSON.stringify(t2.out.meta.executionTrace));
			const rec2 = chats(await s.mock.record(since));
			assert.equal(rec2.length, 1);
			assert.equal(rec2[0].status, 200);
			assert.equal(chats(await s.backup.record()).length, 1, 'the second turn did not need the fallback');
		} finally {
			await s.stop();
			h.remove();
		}
	});

	it('(d) the key rate limited, short queue timeout: OpenClaw retries when Retry-After says and succeeds', async () => {
		// One key, 1 request per 10 s window. The turn's first request (a
		// tool call) takes the window's slot; OpenClaw sends the second (with
		// the tool result) at once, it waits out the 1 s queue timeout, and
		// the 503 says when the slot frees (about 8 s), not a fixed 30 s.
		const W = 10;
		const s = await stack({ keys: [key(1)], settings: { rpm_window_seconds: W, queue_timeout_seconds: 1 }, rpm: 1 });
		const h = openclawHome();
		try {
			const probe = { path: join(h.workspace, 'probe.txt') };
			writeFileSync(probe.path, 'rate limited\n');
			h.configure(openclawConfig({
				sidecar: { url: s.dp.url, token: s.token, headers: { 'X-Mock-Tool': 'read', 'X-Mock-Tool-Args': JSON.stringify(probe) } },
				backup: { url: s.backup.url, key: BACKUP_KEY },
			}));
			const t = await openclawTurn(h.home, 'Read probe.txt and tell me what it says.');
			assertTurnOk(t, 'sidecar');
			assert.equal(t.out.meta.executionTrace.fallbackUsed, false, JSON.stringify(t.out.meta.executionTrace));
			const rec = chats(await s.mock.record());
			assert.deepEqual(rec.map((e) => e.status), [200, 200]);
			// The data plane answered the second request 503 once (queue
			// timeout), then served OpenClaw's retry.
			const lines = dpRequests(s.dp);
			assert.deepEqual(lines.map((l) => l.status), ['200', '503', '200'], s.dp.logs().slice(-3000));
			// OpenClaw's retry reached the upstream when the window had room:
			// not before (it would have waited again), not 30 s later.
			const dt = rec[1].t_ms - rec[0].t_ms;
			assert.ok(dt >= W * 1000 && dt < W * 1000 + 10000, `retry ${dt} ms after the window's request (window ${W} s)`);
			assert.equal(chats(await s.backup.record()).length, 0, 'no fallback');
		} finally {
			await s.stop();
			h.remove();
		}
	});
});
