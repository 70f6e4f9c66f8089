// Black-box, issue 14 item 2: `sidecarctl rekey` while the data plane and
// lighttpd with sidecar-admin run. Until the new key is where the programs
// read it, sidecar-admin refuses to write provider keys with the old one
// (503 naming encryption_key, so nothing unreadable is stored and
// `sidecarctl --key-file NEW check` stays clean) and the data plane keeps
// serving with the keys it has (/health ok, requests answered). Once the key
// file holds the new key, both pick it up without a restart: providers are
// added and edited through the admin API, and the data plane serves the new
// provider and the old ones.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api } from './lib/lighttpd.mjs';
import { cleanup, postJson, request, sleep, startDataplane } from './lib/stack.mjs';
import { startMock } from './lib/mock.mjs';

const K1 = 'nvapi-TEST-1421-aaaaaaaaaaaaaaaa';
const K2 = 'nvapi-TEST-1422-bbbbbbbbbbbbbbbb';
const K3 = 'nvapi-TEST-1423-cccccccccccccccc';
let mock, st, lt, dp;
const T = () => ({ token: st.token });
// The programs read the key file only (no SIDECAR_ENCRYPTION_KEY in their environment).
const fileEnv = () => ({ SIDECAR_ENCRYPTION_KEY: '', SIDECAR_ENCRYPTION_KEY_FILE: st.keyFile });
const ctl = (args, env = {}) => spawnSync(st.ctl, ['--db', st.db, ...args], { env: { ...st.env, SIDECAR_ENCRYPTION_KEY: '', ...env } });
const chat = (model) => postJson(`${dp.url}/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] });

async function eventually(what, fn, ms = 8000) {
	const end = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v) return v;
		assert.ok(Date.now() < end, `timed out: ${what}`);
		await sleep(100);
	}
}

before(async () => {
	mock = await startMock({ keys: [K1, K2, K3].map((key) => ({ key })) });
	st = makeAdminDb({ providers: [
		{ name: 'one', key: K1, url: mock.url, prefix: 'one/' },
		{ name: 'two', key: K2, url: mock.url, prefix: 'two/' },
	] });
	lt = await startLighttpd(st);
	dp = await startDataplane(st, { env: fileEnv() });
});

after(async () => {
	if (dp) await dp.stop();
	if (lt) await lt.stop();
	if (mock) await mock.stop();
	cleanup(st);
});

test('rekey with everything running: nothing unreadable is written, nothing stops working', async () => {
	assert.equal((await chat('one/m')).status, 200);
	let r = await api(lt, 'GET', '/providers', T());
	assert.equal(r.status, 200);
	const one = r.json.providers.find((p) => p.name === 'one').id;

	const newKey = join(st.dir, 'new.key');
	writeFileSync(newKey, execFileSync(st.ctl, ['keygen']).toString(), { mode: 0o600 });
	let c = ctl(['--key-file', st.keyFile, 'rekey', '--new-key-file', newKey]);
	assert.equal(c.status, 0, c.stderr.toString());
	assert.match(c.stdout.toString(), /re-encrypted 2 provider keys/);

	// The admin still has the old key: key writes are refused, clearly.
	r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: { name: 'three', api_key: K3, endpoint_url: mock.url, model_prefix: 'three/' } });
	assert.equal(r.status, 503, r.body);
	assert.equal(r.json.error.field, 'encryption_key');
	assert.match(r.json.error.message, /sidecarctl rekey/);
	assert.ok(r.headers['retry-after']);
	r = await api(lt, 'PATCH', `/providers/${one}`, { ...T(), body: { api_key: K3 } });
	assert.equal(r.status, 503, r.body);
	r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), type: 'application/yaml',
		body: `providers:\n- account: y\n  api_key: ${K3}\n  endpoint_url: ${mock.url}\n  model_prefix: "y/"\n  rpm_limit: 5\n` });
	assert.equal(r.status, 503, r.body);
	// Reads still work.
	r = await api(lt, 'GET', '/providers', T());
	assert.equal(r.status, 200);
	assert.equal(r.json.providers.length, 2);
	// Everything stored decrypts with the new key.
	c = ctl(['--key-file', newKey, 'check']);
	assert.equal(c.status, 0, c.stdout.toString() + c.stderr.toString());

	// The data plane has reloaded (the rekey changed every row) and kept its keys.
	await sleep(2500);
	for (const m of ['one/m', 'two/m', 'one/m', 'two/m']) {
		const x = await chat(m);
		assert.equal(x.status, 200, `${m}: ${x.body}`);
	}
	const h = await request(`${dp.base}/health`);
	assert.equal(h.status, 200, h.body);
	assert.equal(JSON.parse(h.body).status, 'ok', h.body);
	assert.match(dp.logs(), /rekeyed and the data plane has the old encryption key/);

	// The operator installs the new key where the programs read it.
	writeFileSync(st.keyFile, readFileSync(newKey));
	r = await eventually('the admin picks the new key up', async () => {
		const x = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: { name: 'three', api_key: K3, endpoint_url: mock.url, model_prefix: 'three/' } });
		return x.status === 201 ? x : null;
	});
	const three = r.json.id;
	r = await api(lt, 'PATCH', `/providers/${one}`, { ...T(), body: { name: 'one-renamed', rpm_limit: 77 } });
	assert.equal(r.status, 200, r.body);
	r = await api(lt, 'PATCH', `/providers/${three}`, { ...T(), body: { api_key: K2 } });
	assert.equal(r.status, 200, r.body);
	r = await api(lt, 'PATCH', `/providers/${three}`, { ...T(), body: { api_key: K3 } });
	assert.equal(r.status, 200, r.body);
	c = ctl(['--key-file', newKey, 'check']);
	assert.equal(c.status, 0, c.stdout.toString() + c.stderr.toString());
	// The data plane uses the new provider and the old ones.
	await eventually('the data plane serves the provider added after the rekey', async () => (await chat('three/m')).status === 200);
	for (const m of ['one/m', 'two/m', 'three/m']) {
		const x = await chat(m);
		assert.equal(x.status, 200, `${m}: ${x.body}`);
	}
	const rec = await mock.record();
	assert.ok(rec.some((x) => x.key === K3), 'the new provider reached the upstream with its key');
	assert.match(dp.logs(), /encryption key reloaded/);
	assert.doesNotMatch(dp.logs(), /not loaded/);
	assert.match(lt.errorLog(), /encryption key reloaded/);
});
