// Black-box, robustness and access: lighttpd + sidecar-admin + sidecar-events
// under hostile requests (issue 10). Path traversal attempts (/../, %2e%2e,
// encoded slashes and backslashes, double encoding, overlong UTF-8) never
// serve anything outside htdocs; oversized and malformed bodies get 413 /
// 400 / 415 / 422; a normal API call made during each attack succeeds. Every
// admin route and /api/v2/events answers 401 without credentials, with a
// wrong or a client token, and with session cookies that belong to another
// installation, to a revoked token, or that are the stored hash itself.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { SRCDIR, api, cleanup, makeAdminDb, startLighttpd } from './lib/lighttpd.mjs';
import { rawExchange, request } from './lib/stack.mjs';

let st, lt, other, ltOther;

const sql = (db, q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', db, q]).toString().trim();

// Run an attack while a normal API client lists providers; both must finish.
async function during(attack) {
	const [a, normal] = await Promise.all([attack(), api(lt, 'GET', '/providers', { token: st.token })]);
	assert.equal(normal.status, 200, `normal request during the attack: ${normal.status} ${normal.body}`);
	return a;
}

async function login(l, s) {
	const r = await api(l, 'POST', '/session', { body: { token: s.token } });
	assert.equal(r.status, 200, r.body);
	const m = /sc_session=([^;]+)/.exec(r.headers['set-cookie'].join(';'));
	return { cookie: `sc_session=${m[1]}`, value: m[1], csrf: r.json.csrf };
}

// Every route of docs/admin-api.md, with the method it answers to.
const ROUTES = [
	['GET', '/session'], ['DELETE', '/session'],
	['GET', '/providers'], ['POST', '/providers'], ['GET', '/providers/export'],
	['POST', '/providers/import'],
	['GET', '/providers/00000000-0000-0000-0000-000000000000'],
	['PATCH', '/providers/00000000-0000-0000-0000-000000000000'],
	['DELETE', '/providers/00000000-0000-0000-0000-000000000000'],
	['POST', '/providers/00000000-0000-0000-0000-000000000000/validate'],
	['POST', '/providers/00000000-0000-0000-0000-000000000000/reset-cooldown'],
	['GET', '/config'], ['PATCH', '/config'],
	['GET', '/stats/hourly'], ['GET', '/stats/daily'], ['GET', '/stats/totals'], ['GET', '/stats/by-model'],
	['GET', '/cooldowns'], ['GET', '/health'], ['GET', '/status'],
	['GET', '/requests'], ['GET', '/requests/some-request-id'],
	['GET', '/events'],
	['GET', '/no-such-route'],
];

describe('lighttpd + admin under hostile requests', { timeout: 120000 }, () => {
	before(async () => {
		st = makeAdminDb();
		lt = await startLighttpd(st, { events: true });
		other = makeAdminDb();
		ltOther = await startLighttpd(other, { events: true });
	});
	after(async () => {
		if (lt) await lt.stop();
		if (ltOther) await ltOther.stop();
		cleanup(st);
		cleanup(other);
	});

	it('never serves a file outside htdocs', async () => {
		const htdocs = join(SRCDIR, 'htdocs');
		const key = readFileSync(st.keyFile, 'utf8').trim();
		const relKey = relative(htdocs, st.keyFile);
		const relDb = relative(htdocs, st.db);
		const up = '../../../../../../../..';
		const targets = [
			`/${up}/etc/passwd`,
			`/${up.replace(/\.\./g, '%2e%2e')}/etc/passwd`,
			`/${up.replace(/\.\./g, '.%2e')}/etc/passwd`,
			`/${up.replace(/\//g, '%2f')}%2fetc%2fpasswd`,
			`/${up.replace(/\//g, '%5c')}%5cetc%5cpasswd`,
			`/${up.replace(/\//g, '\\')}\\etc\\passwd`,
			`/${up.replace(/\.\./g, '%252e%252e')}/etc/passwd`,
			`/${up.replace(/\.\./g, '%c0%ae%c0%ae')}/etc/passwd`,
			`/${up.replace(/\.\./g, '....')}/etc/passwd`,
			`/index.html/${up}/etc/passwd`,
			`/vendor/${up.replace(/\//g, '%2f')}%2fetc%2fpasswd`,
			`/api/v2/${up}/etc/passwd`,
			`/api/v2/${up.replace(/\.\./g, '%2e%2e')}/etc/passwd`,
			`/api/v2/events/${up.replace(/\//g, '%2f')}%2fetc%2fpasswd`,
			'//etc/passwd', '/%00../etc/passwd', '/.%00./etc/passwd',
			`http://127.0.0.1/${up}/etc/passwd`,
			`/${relKey}`, `/${relKey.replace(/\.\./g, '%2e%2e')}`, `/${relKey.replace(/\//g, '%2f')}`,
			`/${relDb}`, `/${relDb.replace(/\.\./g, '%2e%2e').replace(/\//g, '%2f')}`,
			'/.git/config', '/index.html~', '/index.html.orig',
		];
		for (const t of targets) {
			const r = await during(() => rawExchange(lt.port, `GET ${t} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
				{ idleMs: 1500 }));
			const status = +(/^HTTP\/1\.[01] (\d{3})/.exec(r) || [])[1];
			assert.ok([400, 401, 403, 404].includes(status), `${t}: ${JSON.stringify(r.slice(0, 120))}`);
			assert.ok(!/root:.*:0:0:/.test(r), `${t} served /etc/passwd`);
			assert.ok(!r.includes(key), `${t} served the key file`);
			assert.ok(!r.includes('SQLite format'), `${t} served the database`);
		}
		// The error log says nothing about files outside htdocs being opened.
		assert.ok(!/etc\/passwd.*(opened|sent)/.test(lt.errorLog()));
	});

	it('answers oversized and malformed bodies with 413 / 400 / 415 / 422', async () => {
		const post = (path, body, type = 'application/json') => during(() => api(lt, 'POST', path, { token: st.token, body, type })
			.catch((e) => ({ status: 'reset', body: String(e) })));
		let r = await post('/providers', 'x'.repeat(2 << 20));
		assert.equal(r.status, 413, r.body);
		// Past lighttpd's own cap (8 MB): refused before reaching the program.
		r = await post('/providers', Buffer.alloc(9 << 20, 0x7b));
		assert.ok(r.status === 413 || r.status === 'reset', String(r.status));
		r = await post('/providers/import', 'providers:\n' + '- account: a\n'.repeat(400000), 'application/yaml');
		assert.equal(r.status, 413, r.body);
		const malformed = [
			['{', 400], ['{"name":', 400], ['{"name":"a",}', 400], ['\u0000{}', 400],
			['[]', 422], ['"str"', 422], ['{"a":'.repeat(5000), 400],
			[`{"name":${'['.repeat(100000)}`, 400],
		];
		for (const [body, want] of malformed) {
			r = await post('/providers', body);
			assert.equal(r.status, want, `${JSON.stringify(body.slice(0, 30))}: ${r.status} ${r.body}`);
			assert.ok(r.json && r.json.error, r.body);
		}
		// Invalid UTF-8 never makes a provider, and the answer is JSON.
		r = await post('/providers', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xc0, 0x80]),
			Buffer.from('","api_key":"nvapi-TEST-0201-xxxxxxxxxxxxxxxx","endpoint_url":"http://127.0.0.1:9/v1","model_prefix":"u/"}')]));
		assert.ok([400, 422].includes(r.status), `invalid UTF-8: ${r.status} ${r.body}`);
		assert.ok(r.json && r.json.error);
		r = await post('/providers', '{"name":"x"}', 'text/plain');
		assert.equal(r.status, 415, r.body);
		r = await during(() => api(lt, 'PATCH', '/config', { token: st.token, body: '{"queue_capacity":' + '9'.repeat(400) + '}', type: 'application/json' }));
		assert.ok([400, 422].includes(r.status), r.body);
		// Login with hostile bodies: never 200, never a crash.
		for (const body of ['{"token":' + '['.repeat(50000) + '}', '{"token":"' + 'a'.repeat(1 << 19) + '"}', '{"token":null}']) {
			r = await during(() => api(lt, 'POST', '/session', { body, type: 'application/json' }));
			assert.ok([400, 401, 413, 422, 429].includes(r.status), `${r.status} ${r.body}`);
		}
		sql(st.db, 'DELETE FROM admin_login_failures');
		assert.equal(sql(st.db, 'SELECT count(*) FROM providers'), '0');
	});

	it('answers 401 on every route without valid credentials', async () => {
		const client = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--client'], { env: st.env }).toString();
		const clientToken = /sc_[A-Za-z0-9_]+_[A-Za-z0-9_-]{20,}/.exec(client)[0];
		const creds = [
			['none', {}],
			['wrong bearer', { authorization: 'Bearer sc_admin_' + 'A'.repeat(43) }],
			['other installation bearer', { authorization: `Bearer ${other.token}` }],
			['client token', { authorization: `Bearer ${clientToken}` }],
			['basic auth', { authorization: 'Basic ' + Buffer.from(`admin:${st.token}`).toString('base64') }],
			['bearer without a value', { authorization: 'Bearer ' }],
		];
		for (const [method, path] of ROUTES) {
			for (const [what, headers] of creds) {
				const body = method === 'GET' || method === 'DELETE' ? undefined : '{}';
				const r = await request(`${lt.api}${path}`, { method, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, body });
				assert.equal(r.status, 401, `${method} ${path} with ${what}: ${r.status} ${r.body.slice(0, 200)}`);
				assert.ok(!r.body.includes(st.token));
			}
		}
	});

	it('refuses session cookies of another installation, a revoked token, or the stored hash', async () => {
		const mine = await login(lt, st);
		const theirs = await login(ltOther, other);
		// Mine works (the check below can fail).
		assert.equal((await api(lt, 'GET', '/providers', { cookie: mine.cookie })).status, 200);
		const hash = createHash('sha256').update(mine.value).digest('hex');
		const bad = [
			['another installation', theirs.cookie],
			['the stored hash', `sc_session=${hash}`],
			['a stored hash from the table', `sc_session=${sql(st.db, 'SELECT hash FROM sessions LIMIT 1')}`],
			['truncated', mine.cookie.slice(0, -1)],
			['overlong', mine.cookie + 'A'.repeat(4000)],
			['other cookie name', mine.cookie.replace('sc_session', 'sc_sessionx')],
		];
		for (const [method, path] of ROUTES.filter(([, p]) => p !== '/no-such-route')) {
			for (const [what, cookie] of bad) {
				const r = await request(`${lt.api}${path}`, { method, headers: { cookie, 'x-sidecar-csrf': theirs.csrf } })
					.catch((e) => ({ status: String(e), body: '' }));	// lighttpd may refuse a long header
				assert.equal(r.status, 401, `${method} ${path} with cookie (${what}): ${r.status} ${r.body.slice(0, 200)}`);
			}
		}
		// A session outlives nothing: revoking its token ends it at once.
		sql(st.db, "UPDATE tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE kind = 'admin'");
		for (const path of ['/providers', '/config', '/session', '/events']) {
			const r = await request(`${lt.api}${path}`, { headers: { cookie: mine.cookie } });
			assert.equal(r.status, 401, `GET ${path} with the cookie of a revoked token: ${r.status}`);
		}
		const r = await request(`${lt.api}/providers`, { headers: { authorization: `Bearer ${st.token}` } });
		assert.equal(r.status, 401, 'revoked bearer token');
	});
});
