// Black-box, security: no plaintext key anywhere (SPEC §7, issue 10). Keys
// with a distinctive random part go in through every door (sidecarctl
// import, the admin API with validation, a PATCH replacing a key, a YAML
// import through the API); traffic makes them work (plain and streaming
// requests, a 429 cooldown, a 401 marking a key invalid, a 500, the model
// list); every admin view, the event stream, sidecarctl's output and a backup
// are read. Then every log, the metrics, every response seen, and the raw
// bytes of every file in the test directory (database, WAL, backups, logs)
// are searched for each key and for its random middle: none found. The
// mock's own record, which must hold the keys, proves the search can fail.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { api, makeAdminDb, startLighttpd } from './lib/lighttpd.mjs';
import { postJson, request, sleep, startDataplane, cleanup } from './lib/stack.mjs';

const secret = (tag) => `nvapi-TEST-${tag}-${randomBytes(12).toString('hex')}SeCrEt`;
const KEYS = {
	imported: secret('IMPORT'),
	api: secret('APIKEY'),
	patched: secret('PATCHD'),
	yaml: secret('YAMLAP'),
	invalid: secret('INVALD'),	// unknown to the mock: 401
};
// The part of a key no mask shows: the random hex.
const middles = Object.values(KEYS).map((k) => k.split('-')[3].slice(0, 20));

let mock, st, dp, lt;
const seen = [];	// every response text, with where it came from

function keep(where, text) {
	seen.push([where, typeof text === 'string' ? text : JSON.stringify(text)]);
	return text;
}

async function adminCall(method, path, opts = {}) {
	const r = await api(lt, method, path, { token: st.token, ...opts });
	keep(`${method} ${path}`, JSON.stringify(r.headers) + r.body);
	return r;
}

function leaks(text) {
	const found = [];
	for (const [name, k] of Object.entries(KEYS)) if (text.includes(k)) found.push(name);
	for (const m of middles) if (text.includes(m)) found.push(`middle ${m}`);
	return found;
}

// Every regular file below dir, as raw bytes decoded latin1 (byte for byte).
function filesBelow(dir) {
	const out = [];
	for (const e of readdirSync(dir, { withFileTypes: true })) {
		const p = join(dir, e.name);
		if (e.isDirectory()) out.push(...filesBelow(p));
		else if (e.isFile() && statSync(p).size < 64 << 20) out.push([p, readFileSync(p).toString('latin1')]);
	}
	return out;
}

// Read the event stream for ms milliseconds.
function readEvents(ms) {
	return new Promise((resolve) => {
		let text = '';
		const req = http.get(`${lt.api}/events`, { headers: { authorization: `Bearer ${st.token}` } }, (res) => {
			res.on('data', (d) => { text += d; });
			res.on('error', () => {});
		});
		req.on('error', () => {});
		setTimeout(() => { req.destroy(); resolve(text); }, ms);
	});
}

describe('no plaintext key anywhere', { timeout: 120000 }, () => {
	before(async () => {
		mock = await startMock({ keys: [KEYS.imported, KEYS.api, KEYS.patched, KEYS.yaml].map((key) => ({ key })) });
		st = makeAdminDb({ providers: [{ name: 'imported', key: KEYS.imported, url: mock.url, prefix: 'mock/' }],
			settings: { stats_flush_ms: 200, status_publish_ms: 200 } });
		lt = await startLighttpd(st, { events: true });
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (lt) await lt.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('keys go in, work, and never come out', async () => {
		// In through the admin API (validated against the mock), a PATCH, a YAML import.
		let r = await adminCall('POST', '/providers', { body: { name: 'api', api_key: KEYS.api, endpoint_url: mock.url, model_prefix: 'mock/' } });
		assert.equal(r.status, 201, r.body);
		const apiId = r.json.id;
		r = await adminCall('POST', '/providers?validate=false', { body: { name: 'bad', api_key: KEYS.invalid, endpoint_url: mock.url, model_prefix: 'mock/' } });
		assert.equal(r.status, 201, r.body);
		r = await adminCall('POST', '/providers', { body: { name: 'rejected', api_key: KEYS.invalid, endpoint_url: mock.url, model_prefix: 'x/' } });
		assert.ok(r.status >= 400, `a key the upstream refuses was accepted: ${r.status}`);
		r = await adminCall('POST', '/providers?validate=false', { body: { name: 'patched', api_key: KEYS.api, endpoint_url: mock.url, model_prefix: 'mock/' } });
		const patchedId = r.json.id;
		r = await adminCall('PATCH', `/providers/${patchedId}`, { body: { api_key: KEYS.patched } });
		assert.equal(r.status, 200, r.body);
		r = await adminCall('POST', '/providers/import', { type: 'application/yaml',
			body: `providers:\n- account: yaml\n  api_key: ${KEYS.yaml}\n  endpoint_url: ${mock.url}\n  model_prefix: "mock/"\n  rpm_limit: 1000\n` });
		assert.equal(r.status, 200, r.body);

		// Traffic: every key used, a 429, a 401, a 500, streams, the model list.
		await sleep(2500);	// the data plane picks the new providers up
		for (let i = 0; i < 12; i++) {
			const x = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', stream: i % 3 === 0, messages: [{ role: 'user', content: 'hi' }] });
			keep('chat', JSON.stringify(x.headers) + x.body);
		}
		await mock.setKey(KEYS.api, 0, 'status=429', 1, 5);
		await mock.setKey(KEYS.yaml, 0, 'status=500', 1);
		for (let i = 0; i < 8; i++) {
			const x = await postJson(`${dp.url}/chat/completions`, { model: 'mock/m', messages: [] }, i === 7 ? { 'x-mock-fault': 'status=400' } : {});
			keep('chat', JSON.stringify(x.headers) + x.body);
		}
		keep('models', (await request(`${dp.url}/models`)).body);
		keep('health', (await request(`${dp.base}/health`)).body);
		const rec = await mock.record();
		assert.ok(rec.some((x) => x.key === KEYS.invalid), 'the invalid key was never tried');

		// Every admin view.
		for (const p of ['/providers', `/providers/${apiId}`, `/providers/${patchedId}`, '/providers/export', '/config',
			'/stats/hourly', '/stats/daily', '/stats/totals', '/stats/by-model', '/cooldowns', '/health', '/status', '/session',
			'/requests?limit=500']) {
			r = await adminCall('GET', p);
			assert.equal(r.status, 200, `${p}: ${r.body}`);
		}
		await adminCall('POST', `/providers/${apiId}/validate`);
		await adminCall('POST', `/providers/${apiId}/reset-cooldown`);
		keep('events', await readEvents(2500));
		keep('metrics', (await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body);
		const ctl = (...a) => keep(`sidecarctl ${a.join(' ')}`, execFileSync(st.ctl, ['--db', st.db, ...a],
			{ env: st.env, stdio: ['ignore', 'pipe', 'pipe'] }).toString());
		ctl('providers', 'list');
		ctl('requests', '--limit', '1000');
		ctl('config', 'get');
		ctl('check');
		ctl('backup', '--dir', join(st.dir, 'backups'));

		// Files while everything runs (the WAL is live), then after a graceful stop.
		const scan = (when) => {
			for (const [p, bytes] of filesBelow(st.dir)) {
				if (/\/import-[^/]*\.yaml$/.test(p)) continue;	// the provider file this test wrote
				assert.deepEqual(leaks(bytes), [], `${when}: ${p}`);
			}
		};
		scan('running');
		assert.ok(sqlCount(st.db) >= 5);
		const ex = await dp.stop('SIGTERM');
		assert.equal(ex.code, 0);
		keep('lighttpd output and error log', lt.errorLog());
		await lt.stop();
		lt = null;
		scan('stopped');

		// Logs and everything seen.
		assert.deepEqual(leaks(dp.logs()), [], 'data plane log');
		for (const [where, text] of seen) assert.deepEqual(leaks(text), [], where);
		// The search works: the mock saw the keys it was sent.
		const raw = JSON.stringify(rec);
		assert.ok(leaks(raw).length >= 3, `the positive control found ${leaks(raw)}`);
	});
});

function sqlCount(db) {
	return Number(execFileSync('sqlite3', ['-cmd', '.timeout 5000', db, 'SELECT count(*) FROM providers']).toString().trim());
}
