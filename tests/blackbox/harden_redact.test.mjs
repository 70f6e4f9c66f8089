// Black-box, issue 14 item 4: an upstream that echoes the provider's key in
// its error bodies (the mock's echo-key fault: the key without its "nvapi-"
// prefix, glued into text, in 9-12 character pieces from its start, middle
// and end, twice in a row, behind a \u escape, in a field of its own) must
// not get any 8+ character piece of it stored, logged, returned or relayed:
// POST /providers with validation, POST /providers/ID/validate (which stores
// status_reason), a YAML import with validation, and the data plane passing
// a 400 on to the client. Then every API answer, the data plane's and
// lighttpd's logs, and the raw bytes of every file (database, WAL, a backup)
// are searched for every 8-character window of the key that is not part of
// its display mask. The mock's record, which must hold the keys, proves the
// search can fail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api } from './lib/lighttpd.mjs';
import { cleanup, postJson, sleep, startDataplane } from './lib/stack.mjs';
import { startMock } from './lib/mock.mjs';

const key = (tag) => `nvapi-${tag}-${randomBytes(16).toString('hex')}Zz`;
const KV = key('ECHO-VALID');	// the key test call's answer echoes it
const KD = key('ECHO-PLANE');	// the data plane's upstream echoes it
const KEYS = [KV, KD];
let mock, st, lt, dp;
const seen = [];

// Every 8-character piece of k that holds a character the mask hides
// (the mask shows "nvapi-" plus 4 characters, and the last 4).
function pieces(k) {
	const out = [];
	for (let i = 0; i + 8 <= k.length; i++) {
		if (i + 8 > 10 && i < k.length - 4) out.push(k.slice(i, i + 8));
	}
	return out;
}
const PIECES = KEYS.flatMap(pieces);

function leaks(text) {
	return PIECES.filter((p) => text.includes(p));
}

async function call(method, path, opts = {}) {
	const r = await api(lt, method, path, { token: st.token, ...opts });
	seen.push([`${method} ${path}`, JSON.stringify(r.headers) + r.body]);
	return r;
}

function filesBelow(dir) {
	const out = [];
	for (const e of readdirSync(dir, { withFileTypes: true })) {
		const p = join(dir, e.name);
		if (e.isDirectory()) out.push(...filesBelow(p));
		else if (e.isFile() && statSync(p).size < 64 << 20) out.push([p, readFileSync(p).toString('latin1')]);
	}
	return out;
}

before(async () => {
	mock = await startMock({ keys: KEYS.map((k) => ({ key: k })) });
	await mock.setKey(KV, 0, 'echo-key=401', 0);
	st = makeAdminDb({ settings: { stats_flush_ms: 200 } });
	lt = await startLighttpd(st);
	dp = await startDataplane(st);
});

after(async () => {
	if (dp) await dp.stop();
	if (lt) await lt.stop();
	if (mock) await mock.stop();
	cleanup(st);
});

test('a key echoed by the upstream in any form never leaves the sidecar', async () => {
	// The mock does echo it: the raw answer holds the key without its prefix.
	const probe = await fetch(`${mock.url}/models`, { headers: { authorization: `Bearer ${KV}` } });
	const raw = await probe.text();
	assert.equal(probe.status, 401);
	assert.ok(raw.includes(KV.slice(6)) && leaks(raw).length > 0, raw);

	// The key test call of POST /providers: refused with the upstream's reason.
	let r = await call('POST', '/providers', { body: { name: 'echo', api_key: KV, endpoint_url: mock.url, model_prefix: 'e/' } });
	assert.equal(r.status, 422, r.body);
	assert.match(r.body, /Authentication failed for secret \[REDACTED\]; token=\[REDACTED\]&x=1/);
	// Stored without the test, then re-validated: status_reason is written.
	r = await call('POST', '/providers?validate=false', { body: { name: 'echo', api_key: KV, endpoint_url: mock.url, model_prefix: 'e/' } });
	assert.equal(r.status, 201, r.body);
	const id = r.json.id;
	r = await call('POST', `/providers/${id}/validate`);
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.status, 'invalid');
	assert.match(r.json.status_reason, /upstream answered 401: Authentication failed for secret \[REDACTED\]/);
	r = await call('GET', `/providers/${id}`);
	assert.match(r.json.status_reason, /\[REDACTED\]/);
	// A YAML import with validation quotes the same answer.
	r = await call('POST', '/providers/import', { type: 'application/yaml',
		body: `providers:\n- account: yecho\n  api_key: ${KV}\n  endpoint_url: ${mock.url}\n  model_prefix: "y/"\n  rpm_limit: 10\n` });
	assert.equal(r.status, 422, r.body);

	// The data plane: an upstream 400 that echoes the key is relayed rewritten.
	r = await call('POST', '/providers?validate=false', { body: { name: 'plane', api_key: KD, endpoint_url: mock.url, model_prefix: 'd/' } });
	assert.equal(r.status, 201, r.body);
	for (let i = 0; ; i++) {
		const ok = await postJson(`${dp.url}/chat/completions`, { model: 'd/m', messages: [{ role: 'user', content: 'hi' }] });
		if (ok.status === 200) break;
		assert.ok(i < 50, `the data plane never picked up the provider: ${ok.status} ${ok.body}`);
		await sleep(100);
	}
	for (const code of [400, 404, 422]) {
		const x = await postJson(`${dp.url}/chat/completions`, { model: 'd/m', messages: [{ role: 'user', content: 'hi' }] },
			{ 'x-mock-fault': `echo-key=${code}` });
		seen.push([`data plane ${code}`, JSON.stringify(x.headers) + x.body]);
		assert.equal(x.status, code, x.body);
		assert.match(x.body, /Authentication failed for secret \[REDACTED\]/);
		const j = JSON.parse(x.body);
		assert.ok(j.error && typeof j.error.message === 'string', x.body);
	}
	const s = await postJson(`${dp.url}/chat/completions`, { model: 'd/m', stream: true, messages: [{ role: 'user', content: 'hi' }] },
		{ 'x-mock-fault': 'echo-key=400' });
	seen.push(['data plane stream 400', s.body]);
	assert.equal(s.status, 400);

	// Everything the sidecar kept: views, a backup, logs, database and WAL.
	for (const p of ['/providers', `/providers/${id}`, '/providers/export', '/cooldowns', '/health', '/status']) {
		r = await call('GET', p);
		assert.equal(r.status, 200, `${p}: ${r.body}`);
	}
	await sleep(400);	// a statistics flush
	seen.push(['sidecarctl backup', execFileSync(st.ctl, ['--db', st.db, 'backup'], { env: st.env }).toString()]);
	assert.ok(readdirSync(join(st.dir, 'backups')).some((f) => /^sidecar_v2-.*\.db$/.test(f)), 'a backup was made');
	seen.push(['data plane log', dp.logs()], ['lighttpd and admin log', lt.errorLog()]);
	for (const [where, text] of [...seen, ...filesBelow(st.dir)]) {
		assert.deepEqual(leaks(text), [], `key pieces in ${where}`);
	}
	// The search can fail: the mock's own record holds both keys.
	const rec = JSON.stringify(await mock.record());
	for (const k of KEYS) assert.ok(rec.includes(k));
	assert.ok(leaks(rec).length > 0);
});
