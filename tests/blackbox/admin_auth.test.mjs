// Admin API authentication through a real lighttpd: bearer tokens, the
// session cookie (attributes, use, logout), CSRF protection of
// cookie-authenticated mutations, and login throttling per address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { makeAdminDb, startLighttpd, api, cleanup, ADMIN_BIN } from './lib/lighttpd.mjs';

let st;
let lt;

before(async () => {
	st = makeAdminDb();
	lt = await startLighttpd(st);
});

after(async () => {
	if (lt) await lt.stop();
	cleanup(st);
});

function cookieOf(r) {
	const sc = [].concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('sc_session='));
	assert.ok(sc, 'Set-Cookie sc_session');
	return sc;
}

test('no credentials: 401 with WWW-Authenticate, JSON error shape', async () => {
	for (const path of ['/providers', '/config', '/stats/hourly', '/status', '/no-such-route']) {
		const r = await api(lt, 'GET', path);
		assert.equal(r.status, 401, path);
		assert.match(r.headers['www-authenticate'], /^Bearer realm="sidecar"/);
		assert.equal(typeof r.json.error.message, 'string');
		assert.ok('field' in r.json.error);
	}
	const r = await api(lt, 'POST', '/providers', { body: { name: 'x' } });
	assert.equal(r.status, 401);
});

test('wrong or malformed bearer token: 401', async () => {
	for (const authorization of [`Bearer ${st.token}x`, 'Bearer sc_admin_nope', `Basic ${st.token}`, 'Bearer ']) {
		const r = await api(lt, 'GET', '/providers', { headers: { authorization } });
		assert.equal(r.status, 401, authorization);
		assert.ok(r.headers['www-authenticate']);
	}
});

test('admin bearer token: 200', async () => {
	const r = await api(lt, 'GET', '/providers', { token: st.token });
	assert.equal(r.status, 200);
	assert.deepEqual(r.json.providers, []);
	assert.equal(r.headers['cache-control'], 'no-store');
});

test('session: login, cookie use, CSRF on mutations, logout', async () => {
	const login = await api(lt, 'POST', '/session', { body: { token: st.token } });
	assert.equal(login.status, 200);
	const sc = cookieOf(login);
	assert.match(sc, /; HttpOnly/);
	assert.match(sc, /; SameSite=Strict/);
	assert.match(sc, /; Path=\/api\/v2/);
	assert.match(sc, /; Max-Age=43200/);
	const cookie = sc.split(';')[0];
	const { csrf } = login.json;
	assert.ok(csrf && csrf.length >= 32);
	assert.ok(!login.body.includes(cookie.split('=')[1]), 'cookie value not in the body');

	let r = await api(lt, 'GET', '/providers', { cookie });
	assert.equal(r.status, 200);
	r = await api(lt, 'GET', '/session', { cookie });
	assert.equal(r.status, 200);
	assert.equal(r.json.csrf, csrf);

	// A cross-site form can send the cookie but not the header.
	r = await api(lt, 'PATCH', '/config', { cookie, body: { max_attempts: 4 } });
	assert.equal(r.status, 403);
	r = await api(lt, 'POST', '/providers', { cookie, body: 'name=x', type: 'application/x-www-form-urlencoded' });
	assert.equal(r.status, 403);
	r = await api(lt, 'PATCH', '/config', { cookie, csrf: csrf + 'x', body: { max_attempts: 4 } });
	assert.equal(r.status, 403);
	r = await api(lt, 'GET', '/config', { token: st.token });
	assert.equal(r.json.settings.find((s) => s.key === 'max_attempts').value, 3, 'nothing written');
	r = await api(lt, 'PATCH', '/config', { cookie, csrf, body: { max_attempts: 4 } });
	assert.equal(r.status, 200);
	assert.equal(r.json.settings.find((s) => s.key === 'max_attempts').value, 4);

	r = await api(lt, 'DELETE', '/session', { cookie, csrf });
	assert.equal(r.status, 200);
	assert.match(cookieOf(r), /Max-Age=0/);
	r = await api(lt, 'GET', '/providers', { cookie });
	assert.equal(r.status, 401);
	// The bearer token still works after a logout.
	r = await api(lt, 'GET', '/providers', { token: st.token });
	assert.equal(r.status, 200);
});

test('failed logins are throttled per address: 429 with Retry-After', async () => {
	let r = await api(lt, 'POST', '/session', { body: { token: 'sc_admin_wrong' } });
	assert.equal(r.status, 401);
	for (let i = 1; i < 5; i++) {
		r = await api(lt, 'POST', '/session', { body: { token: `sc_admin_wrong${i}` } });
		assert.equal(r.status, 401);
	}
	r = await api(lt, 'POST', '/session', { body: { token: st.token } });
	assert.equal(r.status, 429, 'even the right token waits');
	const wait = Number(r.headers['retry-after']);
	assert.ok(wait > 0 && wait <= 300, `Retry-After ${r.headers['retry-after']}`);
	assert.match(r.json.error.message, /too many failed logins/);
	// Bearer requests are not affected.
	r = await api(lt, 'GET', '/providers', { token: st.token });
	assert.equal(r.status, 200);
});

test('sidecar-admin --check: right key ok, wrong or missing key refused with a clear message', () => {
	const env = { PATH: process.env.PATH, SIDECAR_DB: st.db };
	let r = spawnSync(ADMIN_BIN, ['--check'], { env: { ...env, SIDECAR_ENCRYPTION_KEY_FILE: st.keyFile } });
	assert.equal(r.status, 0, r.stderr.toString());
	r = spawnSync(ADMIN_BIN, ['--check'], { env: { ...env, SIDECAR_ENCRYPTION_KEY: randomBytes(32).toString('base64') } });
	assert.equal(r.status, 1);
	assert.match(r.stderr.toString(), /key/i);
	r = spawnSync(ADMIN_BIN, ['--check'], { env });
	assert.equal(r.status, 1);
	assert.match(r.stderr.toString(), /SIDECAR_ENCRYPTION_KEY/);
});
