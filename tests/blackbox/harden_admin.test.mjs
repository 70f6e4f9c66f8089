// Black-box, issue 14 items 6 and 9 (third bullet), through real lighttpd and
// sidecar-admin:
// - settings written as ".5" or "0x1p-2" (sidecarctl config set, PATCH) are
//   stored in canonical form, so GET /api/v2/config stays valid JSON;
// - YAML export -> import is the identity on every provider field import
//   accepts (status, shaping options, weight and cost to the last digit,
//   notes and names with characters YAML must escape), compared field by
//   field, and a second YAML document is refused naming its line;
// - the reset-cooldown call exactly as docs/admin-api.md gives it works
//   through lighttpd, and a bodiless `curl -X POST` gets a 411 page that
//   says how to send it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api, cleanup, SRCDIR } from './lib/lighttpd.mjs';

let st, st2, lt, lt2;
const T = () => ({ token: st.token });

before(async () => {
	st = makeAdminDb();
	lt = await startLighttpd(st);
	st2 = makeAdminDb();
	lt2 = await startLighttpd(st2);
});

after(async () => {
	if (lt) await lt.stop();
	if (lt2) await lt2.stop();
	cleanup(st);
	cleanup(st2);
});

const sql = (s, q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', s.db, q]).toString().trim();
const ctl = (s, ...args) => execFileSync(s.ctl, ['--db', s.db, ...args], { env: s.env, stdio: 'pipe' }).toString();

test('settings are stored in canonical form by every writer', async () => {
	for (const [input, canon] of [['.5', '0.5'], ['0x1p-2', '0.25'], ['1e-1', '0.1'], ['5E-1', '0.5'],
		['0.30000000000000004', '0.30000000000000004'], ['-0', '0']]) {
		const out = ctl(st, 'config', 'set', 'emergency_rpm_ratio', input);
		assert.equal(out.trim(), `emergency_rpm_ratio=${canon}`);
		assert.equal(sql(st, "SELECT value FROM system_config WHERE key='emergency_rpm_ratio'"), canon);
		const r = await api(lt, 'GET', '/config', T());
		assert.equal(r.status, 200);
		assert.ok(r.json, `GET /config is valid JSON after config set ${input}: ${r.body}`);
		assert.equal(r.json.settings.find((x) => x.key === 'emergency_rpm_ratio').value, Number(canon));
	}
	// Integers: decimal only; hex, spaces and "+" are refused, nothing stored.
	for (const bad of ['0x10', ' 5', '+5', '5 ', '\n5']) {
		assert.throws(() => ctl(st, 'config', 'set', 'queue_capacity', bad), /must be an integer/);
	}
	assert.equal(sql(st, "SELECT value FROM system_config WHERE key='queue_capacity'"), '500');
	// The admin API stores the canonical form too.
	let r = await api(lt, 'PATCH', '/config', { ...T(), body: '{"emergency_rpm_ratio": 5e-1, "queue_capacity": 6e2}', type: 'application/json' });
	assert.equal(r.status, 200, r.body);
	assert.equal(sql(st, "SELECT value FROM system_config WHERE key='emergency_rpm_ratio'"), '0.5');
	assert.equal(sql(st, "SELECT value FROM system_config WHERE key='queue_capacity'"), '600');
	// A value stored verbatim by an older version still reads as valid JSON.
	sql(st, "UPDATE system_config SET value='.25' WHERE key='emergency_rpm_ratio'");
	r = await api(lt, 'GET', '/config', T());
	assert.ok(r.json, r.body);
	assert.equal(r.json.settings.find((x) => x.key === 'emergency_rpm_ratio').value, 0.25);
	assert.match(r.body, /"value":0\.25/);
});

// Every field import accepts, with values that a lossy export would change.
const FIELDS = ['name', 'endpoint_url', 'model_prefix', 'pool', 'status', 'rpm_limit', 'tpm_limit', 'weight', 'cost_per_1k'];
const META = ['account', 'email', 'notes', 'max_tokens_field', 'flatten_content', 'stream_usage'];
const SOURCE = `providers:
- account: "plain"
  api_key: "nvapi-TEST-1401-aaaaaaaaaaaaaaaa"
  endpoint_url: "http://127.0.0.1:9/v1"
  model_prefix: "a/"
  rpm_limit: 40
- account: "shaped \\"quoted\\" \\\\ backslash: # é 漢字 🙂"
  email: "owner@example.com"
  api_key: "nvapi-TEST-1402-bbbbbbbbbbbbbbbb"
  endpoint_url: "http://127.0.0.1:9/v1"
  model_prefix: "b/"
  pool: fallback
  status: disabled
  rpm_limit: 7
  tpm_limit: 12345
  weight: 0.30000000000000004
  cost_per_1k: 1.2345678901234567
  notes: "line one\\nline two: \\"x\\" # not a comment\\ttab \\u2028 ls \\u0085 nel \\x7f del \\ufeff bom"
  max_tokens_field: true
  flatten_content: true
  stream_usage: false
- account: "invalid-one"
  api_key: "nvapi-TEST-1403-cccccccccccccccc"
  endpoint_url: "http://127.0.0.1:9/v1"
  model_prefix: "c/"
  status: invalid
  rpm_limit: 1
  weight: 1e-3
  notes: ""
  stream_usage: true
`;

function pick(p) {
	const o = {};
	for (const f of FIELDS) o[f] = p[f];
	for (const f of META) o[`metadata.${f}`] = p.metadata[f];
	return o;
}

async function listed(l, s) {
	const r = await api(l, 'GET', '/providers', { token: s.token });
	assert.equal(r.status, 200, r.body);
	const arr = Array.isArray(r.json) ? r.json : r.json.providers;
	return Object.fromEntries(arr.map((p) => [p.name, pick(p)]));
}

// The export with each entry's key put back (what the export's header asks).
function withKeys(yaml, keys) {
	let i = 0;
	return yaml.replace(/^- account: .*$/mg, (m) => `${m}\n  api_key: "${keys[i++]}"`);
}

test('YAML export -> import is the identity on every field import accepts', async () => {
	let r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: SOURCE, type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.created, 3);
	const orig = await listed(lt, st);
	assert.equal(orig['invalid-one'].status, 'invalid');
	assert.equal(Object.keys(orig).length, 3);
	r = await api(lt, 'GET', '/providers/export', T());
	assert.equal(r.status, 200);
	const exported = r.body;
	for (const must of ['status: disabled', 'status: invalid', 'max_tokens_field: true', 'flatten_content: true',
		'stream_usage: false', 'stream_usage: true', 'weight: 0.30000000000000004', 'cost_per_1k: 1.2345678901234567',
		'weight: 0.001', 'tpm_limit: 12345', 'pool: fallback']) {
		assert.ok(exported.includes(must), `export carries "${must}":\n${exported}`);
	}
	// Providers are exported ordered by name; keys in that order.
	const names = [...exported.matchAll(/^- account: (.*)$/mg)].map((m) => JSON.parse(m[1]));
	const keyOf = { plain: 'nvapi-TEST-1401-aaaaaaaaaaaaaaaa', 'invalid-one': 'nvapi-TEST-1403-cccccccccccccccc' };
	const keys = names.map((n) => keyOf[n] ?? 'nvapi-TEST-1402-bbbbbbbbbbbbbbbb');
	// Into a fresh database: field by field the same.
	r = await api(lt2, 'POST', '/providers/import?validate=false', { token: st2.token, body: withKeys(exported, keys), type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.created, 3);
	const copy = await listed(lt2, st2);
	for (const name of Object.keys(orig)) {
		for (const [f, v] of Object.entries(orig[name])) {
			assert.deepEqual(copy[name][f], v, `${name}: ${f}`);
		}
	}
	// And the copy exports the same text.
	r = await api(lt2, 'GET', '/providers/export', { token: st2.token });
	assert.equal(r.body, exported);
	// Back into the original after changes there: status and shaping come back.
	sql(st, "UPDATE providers SET status='active', metadata=json_remove(metadata, '$.max_tokens_field') WHERE model_prefix='b/'");
	r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: withKeys(exported, keys), type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.updated, 1, r.body);
	assert.equal(r.json.unchanged, 2, r.body);
	assert.deepEqual(await listed(lt, st), orig);
});

test('a second YAML document is an error naming its line', async () => {
	const two = 'providers:\n- account: "x"\n  api_key: "nvapi-TEST-1404-dddddddddddddddd"\n  endpoint_url: "http://127.0.0.1:9/v1"\n' +
		'  model_prefix: "x/"\n  rpm_limit: 1\n---\nproviders:\n- account: "y"\n';
	let r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: two, type: 'application/yaml' });
	assert.equal(r.status, 422, r.body);
	assert.equal(r.json.error.line, 7, r.body);
	assert.match(r.json.error.message, /^line 7: a second YAML document/);
	assert.equal(sql(st, "SELECT count(*) FROM providers WHERE name='x'"), '0');
	// sidecarctl import says the same.
	const f = join(st.dir, 'two.yaml');
	execFileSync('sh', ['-c', `cat > ${f}`], { input: two });
	assert.throws(() => ctl(st, 'import', f), /line 7: a second YAML document/);
	// A document end marker alone is fine.
	r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: two.replace(/---[\s\S]*/, '...\n'), type: 'application/yaml' });
	assert.equal(r.status, 200, r.body);
});

// The command as docs/admin-api.md gives it, run with the real curl.
function documentedCurl() {
	const doc = readFileSync(join(SRCDIR, 'docs', 'admin-api.md'), 'utf8');
	const sec = doc.slice(doc.indexOf('### `POST /api/v2/providers/{id}/reset-cooldown`'));
	const m = /```sh\n([\s\S]*?)```/.exec(sec);
	assert.ok(m, 'docs/admin-api.md shows the reset-cooldown call');
	return m[1].replace(/\\\n\s*/g, ' ').trim();
}

test('reset-cooldown works exactly as documented through lighttpd', async () => {
	let r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: { name: 'cooling', api_key: 'nvapi-TEST-1405-eeeeeeeeeeeeeeee',
		endpoint_url: 'http://127.0.0.1:9/v1', model_prefix: 'cool/', rpm_limit: 5 } });
	assert.equal(r.status, 201, r.body);
	const p = r.json.id;
	sql(st, `UPDATE providers SET cooldown_until='2099-01-01T00:00:00Z', consecutive_429=3 WHERE id='${p}'`);
	const cmd = documentedCurl();
	assert.match(cmd, /^curl /);
	const url = `${lt.api}/providers/${p}/reset-cooldown`;
	const run = cmd.replace('http://127.0.0.1:9192/api/v2/providers/ID/reset-cooldown', url);
	assert.notEqual(run, cmd, 'the documented URL form');
	const out = execFileSync('sh', ['-c', `${run} -s -w '\\n%{http_code}'`], {
		env: { PATH: process.env.PATH, SIDECAR_ADMIN_TOKEN: st.token },
	}).toString();
	const code = out.slice(out.lastIndexOf('\n') + 1);
	assert.equal(code, '200', out);
	const body = JSON.parse(out.slice(0, out.lastIndexOf('\n')));
	assert.equal(body.cooling, false);
	assert.equal(body.consecutive_429, 0);
	assert.equal(sql(st, `SELECT consecutive_429 FROM providers WHERE id='${p}'`), '0');
	// Without a body lighttpd answers 411 itself; its page says what to send.
	const bare = execFileSync('curl', ['-s', '-w', '\n%{http_code}', '-X', 'POST', '-H', `Authorization: Bearer ${st.token}`, url]).toString();
	assert.match(bare, /\n411$/);
	assert.match(bare, /curl -d ''/);
});
