// Black-box, issue 14 item 3: text fields are valid UTF-8 or refused, and
// Prometheus label values stay valid whatever the database holds.
// - The admin API (through lighttpd) answers 400 to a provider name or notes
//   with raw bytes that are not UTF-8 (\xff\xfe, a cut sequence, a
//   surrogate's encoding), to a NUL in a name, and to a YAML import holding
//   such bytes; nothing is written. sidecarctl refuses them too (import,
//   token labels), naming the line.
// - A name with such bytes already in the database (written by an older
//   version) reaches /metrics as U+FFFD: `promtool check metrics` passes
//   after traffic through that provider, and a rename through the admin API
//   reaches /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api, cleanup, sleep } from './lib/lighttpd.mjs';
import { postJson, startDataplane } from './lib/stack.mjs';
import { startMock } from './lib/mock.mjs';

const KEY = 'nvapi-TEST-1431-uuuuuuuuuuuuuuuu';
let st, lt, dp, mock;
const T = () => ({ token: st.token });
const sql = (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();

before(async () => {
	mock = await startMock({ keys: [{ key: KEY }] });
	st = makeAdminDb({ providers: [{ name: 'placeholder', key: KEY, url: mock.url, prefix: 'u/' }] });
	// What an older version let through: raw bytes in the name.
	sql("UPDATE providers SET name = CAST(X'62616420fffe' AS TEXT) WHERE name = 'placeholder'");
	lt = await startLighttpd(st);
	dp = await startDataplane(st);
});

after(async () => {
	if (dp) await dp.stop();
	if (lt) await lt.stop();
	if (mock) await mock.stop();
	cleanup(st);
});

const body = (name, extra = '') => Buffer.concat([
	Buffer.from('{"name":"'), Buffer.isBuffer(name) ? name : Buffer.from(name),
	Buffer.from(`","api_key":"nvapi-TEST-1432-vvvvvvvvvvvvvvvv","endpoint_url":"${mock.url}","model_prefix":"v/"${extra}}`),
]);

test('the admin API refuses text that is not UTF-8 with 400 and writes nothing', async () => {
	const count = () => sql('SELECT count(*) FROM providers');
	const n0 = count();
	const bad = [
		Buffer.from([0x78, 0xff, 0xfe]),		// the attack's bytes
		Buffer.from([0x78, 0xc3]),			// a cut two-byte sequence
		Buffer.from([0x78, 0xed, 0xa0, 0x80]),		// an encoded surrogate
		Buffer.from([0x78, 0xc0, 0xaf]),		// an overlong '/'
		Buffer.from([0x78, 0xf4, 0x90, 0x80, 0x80]),	// past U+10FFFF
	];
	for (const b of bad) {
		const r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: body(b), type: 'application/json' });
		assert.equal(r.status, 400, `${b.toString('hex')}: ${r.body}`);
		assert.match(r.json.error.message, /not valid UTF-8/);
		// The same bytes in notes.
		const raw = Buffer.concat([body('ok-name').subarray(0, -1), Buffer.from(',"notes":"'), b, Buffer.from('"}')]);
		const n = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: raw, type: 'application/json' });
		assert.equal(n.status, 400, `notes ${b.toString('hex')}: ${n.body}`);
	}
	let r;
	// A NUL in a name would be cut at the first C string copy.
	r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: body('a\\u0000evil'), type: 'application/json' });
	assert.equal(r.status, 400, r.body);
	assert.match(r.json.error.message, /NUL/);
	// C1 controls and line separators are not printable names.
	r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: body('a\\u0085b'), type: 'application/json' });
	assert.equal(r.status, 422, r.body);
	// Valid UTF-8 is fine, and comes back as it went in.
	r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: body('ünïcödé 漢字 🙂', ',"notes":"ok ✓"'), type: 'application/json' });
	assert.equal(r.status, 201, r.body);
	assert.equal(r.json.name, 'ünïcödé 漢字 🙂');
	assert.equal(r.json.metadata.notes, 'ok ✓');
	const id = r.json.id;
	// PATCH with raw bytes: 400, the name unchanged.
	r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: Buffer.concat([Buffer.from('{"notes":"'), bad[0], Buffer.from('"}')]), type: 'application/json' });
	assert.equal(r.status, 400, r.body);
	// YAML import with raw bytes: 400 naming the line, nothing written.
	const yaml = Buffer.concat([Buffer.from(`providers:\n- account: "y1"\n  api_key: "nvapi-TEST-1433-wwwwwwwwwwwwwwww"\n  endpoint_url: "${mock.url}"\n  model_prefix: "y/"\n  rpm_limit: 1\n  notes: "`), bad[0], Buffer.from('"\n')]);
	r = await api(lt, 'POST', '/providers/import?validate=false', { ...T(), body: yaml, type: 'application/yaml' });
	assert.equal(r.status, 400, r.body);
	assert.match(r.json.error.message, /^line 7: not valid UTF-8/);
	assert.equal(count(), String(Number(n0) + 1));
	// sidecarctl: import and token labels.
	const f = join(st.dir, 'bad.yaml');
	writeFileSync(f, yaml);
	let c = spawnSync(st.ctl, ['--db', st.db, 'import', f], { env: st.env });
	assert.notEqual(c.status, 0);
	assert.match(c.stderr.toString(), /line 7: not valid UTF-8/);
	// (A JS string argument would be sent as valid UTF-8: printf makes the raw byte.)
	c = spawnSync('sh', ['-c', `"$0" --db "$1" token create --client --label "$(printf 'l\\377')"`, st.ctl, st.db], { env: st.env });
	assert.notEqual(c.status, 0, c.stdout.toString());
	assert.match(c.stderr.toString(), /label: not valid UTF-8/);
	assert.equal(sql("SELECT count(*) FROM tokens WHERE kind = 'client'"), '0');
	// The API's answers stay valid UTF-8 even for the name stored by an
	// older version (decoding would turn a stray byte into U+FFFD).
	r = await api(lt, 'GET', '/providers', T());
	assert.equal(r.status, 200);
	assert.ok(!r.body.includes('\uFFFD'), r.body);
	assert.ok(r.body.includes('"name":"bad ??"'), r.body);
});

// The raw bytes of a scrape: they must be UTF-8 (Prometheus rejects the
// whole scrape otherwise; promtool alone does not check it), and pass promtool.
async function scrape() {
	const raw = await new Promise((resolve, reject) => {
		http.get(`http://127.0.0.1:${dp.metricsPort}/metrics`, (res) => {
			const parts = [];
			assert.equal(res.statusCode, 200);
			res.on('data', (d) => parts.push(d));
			res.on('end', () => resolve(Buffer.concat(parts)));
			res.on('error', reject);
		}).on('error', reject);
	});
	let text;
	assert.doesNotThrow(() => { text = new TextDecoder('utf-8', { fatal: true }).decode(raw); }, 'the scrape is valid UTF-8');
	const c = spawnSync('promtool', ['check', 'metrics'], { input: raw });
	assert.equal(c.status, 0, `promtool: ${c.stdout}${c.stderr}`);
	return text;
}

test('a stored name that is not UTF-8 cannot break a scrape; a rename reaches /metrics', async () => {
	// Traffic through the provider, so counters carry its name too.
	const r = await postJson(`${dp.url}/chat/completions`, { model: 'u/m', messages: [{ role: 'user', content: 'hi' }] });
	assert.equal(r.status, 200, r.body);
	let text = await scrape();
	assert.ok(text.includes('sidecar_provider_rpm_limit{provider="bad \uFFFD\uFFFD",kind="configured"}'), text.split('\n').filter((l) => l.includes('rpm_limit')).join('\n'));
	assert.match(text, /sidecar_requests_total\{provider="bad \uFFFD\uFFFD",pool="main",code="2xx"\} 1/);
	// Rename through the admin API.
	const id = sql("SELECT id FROM providers WHERE model_prefix = 'u/'");
	const p = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: { name: 'renamed-ok' } });
	assert.equal(p.status, 200, p.body);
	const end = Date.now() + 5000;
	for (;;) {
		text = await scrape();
		if (text.includes('sidecar_provider_rpm_limit{provider="renamed-ok",kind="configured"}')) break;
		assert.ok(Date.now() < end, 'the rename reached /metrics within 5 s');
		await sleep(200);
	}
	assert.ok(!/sidecar_provider_rpm_limit\{provider="bad /.test(text), 'the old name left the live gauges');
	const r2 = await postJson(`${dp.url}/chat/completions`, { model: 'u/m', messages: [{ role: 'user', content: 'hi' }] });
	assert.equal(r2.status, 200);
	assert.equal(r2.headers['x-sidecar-provider'], 'renamed-ok');
	text = await scrape();
	assert.match(text, /sidecar_requests_total\{provider="renamed-ok",pool="main",code="2xx"\} 1/);
});
