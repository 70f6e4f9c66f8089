// Provider management through lighttpd + sidecar-admin: CRUD round trip,
// keys encrypted at rest and never returned, the key test call against the
// mock upstream (valid, 401, 403, unreachable, validate=false), re-validation,
// cooldown reset, YAML import (the example file; malformed files refused with
// line numbers and nothing written) and export without keys.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api as rawApi, cleanup, freePort, SRCDIR } from './lib/lighttpd.mjs';
import { startMock } from './lib/mock.mjs';

const GOOD = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxxGOOD';
const GOOD2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxxGOD2';
const UNKNOWN = 'nvapi-TEST-0003-xxxxxxxxxxxxxxxxUNKN';
const BANNED = 'nvapi-TEST-0004-xxxxxxxxxxxxxxxxBANN';
const SECRETS = [GOOD, GOOD2, UNKNOWN, BANNED];

let st;
let lt;
let mock;
const seen = [];	// every response, to check that no key ever comes back

async function api(...args) {
	const r = await rawApi(...args);
	seen.push(JSON.stringify(r.headers) + r.body);
	return r;
}

before(async () => {
	mock = await startMock({ keys: [{ key: GOOD, rpm: 1000 }, { key: GOOD2, rpm: 1000 }, { key: BANNED, rpm: 1000 }] });
	await mock.setKey(BANNED, 1000, 'status=403', 0);
	st = makeAdminDb();
	lt = await startLighttpd(st);
});

after(async () => {
	if (lt) await lt.stop();
	if (mock) await mock.stop();
	cleanup(st);
});

function sql(q) {
	return execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
}

function provider(name, key, extra = {}) {
	return { name, api_key: key, endpoint_url: mock.url, model_prefix: 'mock/', rpm_limit: 40, ...extra };
}

const T = () => ({ token: st.token });

test('CRUD round trip with validation against the upstream', async () => {
	const before = Number(sql("SELECT value FROM meta WHERE key='config_version'"));
	let r = await api(lt, 'POST', '/providers', { ...T(), body: provider('crud', GOOD, { notes: 'n1', source: 'webui' }) });
	assert.equal(r.status, 201, r.body);
	assert.equal(r.json.validation.ok, true);
	assert.equal(r.json.validation.http_status, 200);
	assert.equal(r.json.source, 'webui');
	assert.equal(r.json.metadata.notes, 'n1');
	assert.match(r.json.api_key_mask, /…GOOD$/);
	const id = r.json.id;
	assert.ok(Number(sql("SELECT value FROM meta WHERE key='config_version'")) > before);
	const rec = await mock.record();
	assert.ok(rec.some((e) => e.path === '/v1/models' || e.path?.endsWith('/models')), 'test call made');

	r = await api(lt, 'GET', '/providers', T());
	assert.equal(r.status, 200);
	assert.equal(r.json.providers.length, 1);
	assert.equal(r.json.providers[0].id, id);

	r = await api(lt, 'GET', `/providers/${id}`, T());
	assert.equal(r.status, 200);
	assert.equal(r.json.name, 'crud');
	assert.equal(r.json.status, 'active');

	r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: { rpm_limit: 30, status: 'disabled', status_reason: 'maintenance' } });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.rpm_limit, 30);
	assert.equal(r.json.status, 'disabled');
	assert.equal(r.json.status_reason, 'maintenance');
	assert.equal(r.json.name, 'crud', 'untouched fields stay');
	assert.match(r.json.api_key_mask, /GOOD$/, 'key stays without api_key');

	r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: { api_key: GOOD2, status: 'active' } });
	assert.equal(r.status, 200, r.body);
	assert.match(r.json.api_key_mask, /GOD2$/);
	assert.equal(r.json.validation.ok, true);

	r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: { api_key: UNKNOWN } });
	assert.equal(r.status, 422);
	r = await api(lt, 'GET', `/providers/${id}`, T());
	assert.match(r.json.api_key_mask, /GOD2$/, 'refused key not stored');

	r = await api(lt, 'POST', `/providers/${id}/validate`, T());
	assert.equal(r.status, 200);
	assert.equal(r.json.validation.result, 'ok');

	r = await api(lt, 'DELETE', `/providers/${id}`, T());
	assert.equal(r.status, 200);
	r = await api(lt, 'GET', `/providers/${id}`, T());
	assert.equal(r.status, 404);
	r = await api(lt, 'DELETE', `/providers/${id}`, T());
	assert.equal(r.status, 404);
});

test('validation outcomes: 401 reason, 403, unreachable, validate=false', async () => {
	const n0 = Number(sql('SELECT count(*) FROM providers'));
	let r = await api(lt, 'POST', '/providers', { ...T(), body: provider('unknown', UNKNOWN) });
	assert.equal(r.status, 422);
	assert.equal(r.json.error.field, 'api_key');
	assert.equal(r.json.error.message, 'invalid key (upstream answered 401: Authentication failed)');
	assert.equal(r.json.error.validation.result, 'invalid_key');

	r = await api(lt, 'POST', '/providers', { ...T(), body: provider('banned', BANNED) });
	assert.equal(r.status, 422);
	assert.equal(r.json.error.validation.result, 'forbidden');
	assert.match(r.json.error.message, /^forbidden \(upstream answered 403/);

	const closed = await freePort();
	r = await api(lt, 'POST', '/providers', { ...T(), body: provider('closed', GOOD, { endpoint_url: `http://127.0.0.1:${closed}/v1` }) });
	assert.equal(r.status, 422);
	assert.equal(r.json.error.field, 'endpoint_url');
	assert.match(r.json.error.message, /^unreachable: .*(connect|refused)/i);
	assert.equal(Number(sql('SELECT count(*) FROM providers')), n0, 'nothing written');

	const seq = (await mock.record()).length;
	r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: provider('skipped', UNKNOWN) });
	assert.equal(r.status, 201, r.body);
	assert.equal(r.json.validation, undefined);
	assert.equal((await mock.record()).length, seq, 'no test call');
	// Re-validating it now finds the key bad and marks it invalid.
	r = await api(lt, 'POST', `/providers/${r.json.id}/validate`, T());
	assert.equal(r.status, 200);
	assert.equal(r.json.status, 'invalid');
	assert.match(r.json.status_reason, /upstream answered 401/);
	await api(lt, 'DELETE', `/providers/${r.json.id}`, T());
});

test('keys are encrypted at rest (database and WAL) and never returned', async () => {
	let r = await api(lt, 'POST', '/providers', { ...T(), body: provider('secret', GOOD) });
	assert.equal(r.status, 201);
	const id = r.json.id;
	assert.match(sql(`SELECT api_key FROM providers WHERE id='${id}'`), /^v1:/);
	for (const f of [st.db, `${st.db}-wal`]) {
		if (!existsSync(f)) continue;
		const raw = readFileSync(f);
		for (const k of SECRETS) assert.ok(!raw.includes(k), `${k} in ${f}`);
		assert.ok(!raw.includes('xxxxxxxxxxxxxxxxGOOD'), `key body in ${f}`);
	}
	r = await api(lt, 'GET', '/providers/export', T());
	assert.equal(r.status, 200);
	assert.match(r.headers['content-type'], /yaml/);
	assert.match(r.body, /- account: "secret"/);
	assert.doesNotMatch(r.body, /^\s*-?\s*api_key:/m);
	await api(lt, 'DELETE', `/providers/${id}`, T());
});

test('reset-cooldown clears the cooldown and ends the open event', async () => {
	let r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: provider('cooling', GOOD) });
	const id = r.json.id;
	sql(`UPDATE providers SET cooldown_until='2099-01-01T00:00:00Z', consecutive_429=4 WHERE id='${id}';
	     INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary, started_at, ended_at)
	     VALUES ('ev-${id}', '${id}', 4, 240, '429', strftime('%Y-%m-%dT%H:%M:%SZ','now'), '2099-01-01T00:00:00Z');`);
	r = await api(lt, 'GET', `/providers/${id}`, T());
	assert.equal(r.json.cooling, true);
	const v0 = Number(sql("SELECT value FROM meta WHERE key='config_version'"));
	r = await api(lt, 'POST', `/providers/${id}/reset-cooldown`, T());
	assert.equal(r.status, 200);
	assert.equal(r.json.cooling, false);
	assert.equal(r.json.cooldown_until, null);
	assert.equal(r.json.consecutive_429, 0);
	assert.ok(Number(sql("SELECT value FROM meta WHERE key='config_version'")) > v0);
	assert.notEqual(sql(`SELECT ended_at FROM cooldown_events WHERE id='ev-${id}'`), '2099-01-01T00:00:00Z');
	r = await api(lt, 'GET', `/cooldowns?provider=${id}`, T());
	assert.equal(r.json.cooldowns[0].active, false);
	await api(lt, 'DELETE', `/providers/${id}`, T());
});

test('YAML import of the example file; malformed files refused, nothing written', async () => {
	const yaml = readFileSync(join(SRCDIR, 'tests', 'fixtures', 'providers-example.yaml'));
	const n = (yaml.toString().match(/^- account:/gm) || []).length;
	assert.ok(n >= 10);
	let r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: yaml, type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.created, n);
	assert.equal(r.json.entries.length, n);
	assert.equal(r.json.entries[0].name, 'account01');
	assert.equal(r.json.entries[0].action, 'created');
	assert.ok(r.json.entries[0].line > 0);
	assert.doesNotMatch(r.body, /PLACEHOLDER/);
	assert.equal(Number(sql("SELECT count(*) FROM providers WHERE source='yaml'")), n);
	assert.equal(Number(sql("SELECT count(*) FROM providers WHERE api_key LIKE '%PLACEHOLDER%'")), 0);

	r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: yaml, type: 'application/yaml' });
	assert.equal(r.status, 200);
	assert.equal(r.json.created, 0);
	assert.equal(r.json.unchanged + r.json.updated, n);

	const total = Number(sql('SELECT count(*) FROM providers'));
	const bad = [
		'providers:\n- account: fresh1\n  api_key: nvapi-TEST-0009-zzzzzzzzzzzzzzzzzzzz\n  endpoint_url: https://a.example/v1\n' +
		'  model_prefix: "x/"\n  rpm_limit: lots\n',
		'providers:\n- account: fresh2\n  api_key: nvapi-TEST-0010-zzzzzzzzzzzzzzzzzzzz\n  endpoint_url: [1, 2\n',
		'providers:\n- account: fresh3\n  api_key: nvapi-TEST-0011-zzzzzzzzzzzzzzzzzzzz\n  endpoint_url: https://a.example/v1\n' +
		'  model_prefix: "x/"\n  pool: main\n- account: account01\n  api_key: nvapi-TEST-0012-zzzzzzzzzzzzzzzzzzzz\n' +
		'  endpoint_url: ftp://nope\n  model_prefix: "x/"\n',
	];
	for (const body of bad) {
		r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body, type: 'application/yaml' });
		assert.equal(r.status, 422, body);
		assert.ok(Number.isInteger(r.json.error.line) && r.json.error.line >= 2, `line in ${r.body}`);
		assert.equal(typeof r.json.error.message, 'string');
	}
	assert.equal(Number(sql('SELECT count(*) FROM providers')), total, 'nothing written');
	assert.equal(Number(sql("SELECT count(*) FROM providers WHERE name LIKE 'fresh%'")), 0);
});

test('import with validation on tests every key and refuses the whole file', async () => {
	const yaml = 'providers:\n' +
		`- account: v-good\n  api_key: ${GOOD}\n  endpoint_url: ${mock.url}\n  model_prefix: "mock/"\n  rpm_limit: 40\n` +
		`- account: v-bad\n  api_key: ${UNKNOWN}\n  endpoint_url: ${mock.url}\n  model_prefix: "mock/"\n  rpm_limit: 40\n`;
	let r = await api(lt, 'POST', '/providers/import', { ...T(), body: yaml, type: 'application/yaml' });
	assert.equal(r.status, 422);
	assert.equal(r.json.error.entries.length, 2);
	assert.equal(r.json.error.entries[0].validation.ok, true);
	assert.equal(r.json.error.entries[1].validation.result, 'invalid_key');
	assert.equal(Number(sql("SELECT count(*) FROM providers WHERE name LIKE 'v-%'")), 0);
	r = await api(lt, 'POST', '/providers/import', { ...T(), body: yaml.split('- account: v-bad')[0], type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.created, 1);
	assert.equal(r.json.entries[0].validation.ok, true);
});

// Last: every response of this file, headers and bodies, is free of keys.
test('no response ever contained a key', () => {
	assert.ok(seen.length > 30);
	for (const text of seen) {
		for (const k of SECRETS) assert.ok(!text.includes(k), `a response contained ${k}`);
		assert.ok(!text.includes('xxxxxxxxxxxxxxxx'), 'a response contained a key body');
		assert.ok(!text.includes('PLACEHOLDER'), 'a response contained an imported key');
	}
});
