// Provider management and settings in headless Chromium against the stack on
// loopback (mock upstream, sidecar-dataplane, lighttpd with sidecar-admin and
// sidecar-events): add a provider through the form (a bad key is refused
// with the upstream's answer shown, a good one is accepted), edit it, disable
// and enable it, reset a cooldown, delete with confirmation, import the
// example YAML file through the page, change a setting (and see a bad value
// refused, and what is typed while a save refreshes the form kept), log out.
// Every change is checked through the admin API too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { startDataplane, SRCDIR, BUILDDIR } from './lib/stack.mjs';
import { makeAdminDb, startLighttpd, api, cleanup, EVENTS_BIN, ADMIN_BIN } from './lib/lighttpd.mjs';
import { requireFiles } from './lib/deps.mjs';
import { requireBrowser, launchBrowser, login, screenshot, startSnapshotShim } from './lib/browser.mjs';

const GOOD = 'nvapi-TEST-0101-xxxxxxxxxxxxxxxx';
const OTHER = 'nvapi-TEST-0102-xxxxxxxxxxxxxxxx';
const BAD = 'nvapi-TEST-BAD0-xxxxxxxxxxxxxxxx';
const EXAMPLE = join(SRCDIR, 'tests', 'fixtures', 'providers-example.yaml');

// Prerequisites are installed by scripts/test and built by make: missing ones fail.
requireBrowser();
requireFiles([[EVENTS_BIN, 'sidecar-events'], [ADMIN_BIN, 'sidecar-admin'], [join(BUILDDIR, 'sidecar-dataplane'), 'sidecar-dataplane']]);

let mock, st, dp, lt, b, shim, page;

async function providers() {
	const r = await api(lt, 'GET', '/providers', { token: st.token });
	assert.equal(r.status, 200);
	return r.json.providers;
}

const rowSel = (name) => `#providers-body tr[data-provider="${name}"]`;

before(async () => {
	mock = await startMock({ keys: [{ key: GOOD, rpm: 1000 }, { key: OTHER, rpm: 1000 }] });
	st = makeAdminDb({ providers: [{ name: 'existing', key: OTHER, url: mock.url, prefix: 'mock/', rpm: 40 }] });
	dp = await startDataplane(st);
	lt = await startLighttpd(st, { events: true });
	shim = startSnapshotShim({ db: st.db, dpPid: dp.pid });
	b = await launchBrowser();
	page = await b.newPage({ width: 1280, height: 800 });
	await login(page, lt.base, st.token);
	await page.waitForSelector(rowSel('existing'));
});

after(async () => {
	if (shim) shim.stop();
	if (b) await b.close();
	if (lt) await lt.stop();
	if (dp) await dp.stop();
	if (mock) await mock.stop();
	if (st) cleanup(st);
});

test('add a provider: a bad key is refused with the reason, a good one is added', { timeout: 30000 }, async (t) => {
	await page.click('#btn-add');
	await page.waitForSelector('#provider-dialog[open]');
	// Missing fields are caught before any call.
	await page.click('#provider-submit');
	await page.waitForSelector('#provider-error:not([hidden])');
	assert.match(await page.textContent('#provider-error'), /required/);

	await page.fill('#provider-form [name=name]', 'web-added');
	await page.fill('#provider-form [name=api_key]', BAD);
	await page.fill('#provider-form [name=endpoint_url]', mock.url);
	await page.fill('#provider-form [name=model_prefix]', 'web/');
	await page.fill('#provider-form [name=rpm_limit]', '30');
	await page.click('#provider-submit');
	await page.waitForFunction(() => /refused|invalid|401|unauthori/i.test(document.querySelector('#provider-error').textContent));
	assert.ok(await page.isVisible('#provider-dialog[open]'), 'the dialog closed on a refused key');
	assert.ok(await page.$eval('#provider-form [name=api_key]', (e) => e.classList.contains('field-error')));
	t.diagnostic(`refused: ${await page.textContent('#provider-error')}`);
	t.diagnostic(`screenshot: ${await screenshot(page, 'dashboard-add-refused', { fullPage: false })}`);
	assert.equal((await providers()).filter((p) => p.name === 'web-added').length, 0);

	await page.fill('#provider-form [name=api_key]', GOOD);
	await page.fill('#provider-form [name=notes]', 'added by the browser test');
	await page.check('#provider-form [name=flatten_content]');
	await page.click('#provider-submit');
	await page.waitForSelector('#provider-dialog', { state: 'hidden' });
	await page.waitForSelector(rowSel('web-added'));
	assert.match(await page.textContent('#providers-msg'), /Added web-added/);
	const p = (await providers()).find((x) => x.name === 'web-added');
	assert.ok(p, 'not stored');
	assert.equal(p.rpm_limit, 30);
	assert.equal(p.model_prefix, 'web/');
	assert.equal(p.source, 'webui');
	assert.equal(p.metadata.notes, 'added by the browser test');
	assert.equal(p.metadata.flatten_content, true);
	// Only the mask is on the page.
	const text = await page.textContent('#providers-body');
	assert.ok(!text.includes(GOOD), 'the key is shown in clear');
	assert.ok(text.includes(p.api_key_mask), 'the mask is not shown');
});

test('edit, disable, enable, reset a cooldown', { timeout: 30000 }, async () => {
	await page.click(`${rowSel('web-added')} [data-action=edit]`);
	await page.waitForSelector('#provider-dialog[open]');
	assert.equal(await page.inputValue('#provider-form [name=name]'), 'web-added');
	assert.equal(await page.inputValue('#provider-form [name=api_key]'), '', 'the key field must start empty');
	await page.fill('#provider-form [name=rpm_limit]', '25');
	// Per-model limits: checked in the form first, then stored as an object.
	await page.fill('#provider-form [name=model_rpm_limits]', '{"big": 0}');
	await page.click('#provider-submit');
	await page.waitForSelector('#provider-form [name=model_rpm_limits].field-error');
	assert.ok(await page.isVisible('#provider-dialog'), 'a bad per-model limit closed the dialog');
	await page.fill('#provider-form [name=model_rpm_limits]', '{"big": 5}');
	await page.click('#provider-submit');
	await page.waitForSelector('#provider-dialog', { state: 'hidden' });
	await page.waitForFunction((sel) => document.querySelector(`${sel} .bar-text`).textContent.endsWith('/ 25'), rowSel('web-added'));
	assert.equal((await providers()).find((x) => x.name === 'web-added').rpm_limit, 25);
	assert.deepEqual((await providers()).find((x) => x.name === 'web-added').model_rpm_limits, { big: 5 });
	// The edit dialog shows them again.
	await page.click(`${rowSel('web-added')} [data-action=edit]`);
	await page.waitForSelector('#provider-dialog[open]');
	assert.equal(await page.inputValue('#provider-form [name=model_rpm_limits]'), '{"big":5}');
	await page.click('#provider-dialog [data-close]');
	await page.waitForSelector('#provider-dialog', { state: 'hidden' });

	await page.click(`${rowSel('web-added')} [data-action=disable]`);
	await page.waitForSelector(`${rowSel('web-added')} [data-state=disabled]`);
	assert.equal((await providers()).find((x) => x.name === 'web-added').status, 'disabled');
	await page.click(`${rowSel('web-added')} [data-action=enable]`);
	await page.waitForSelector(`${rowSel('web-added')} [data-action=disable]`);
	assert.equal((await providers()).find((x) => x.name === 'web-added').status, 'active');

	// A cooling provider gets a reset button that ends the cooldown. The
	// cooldown is a real one: the mock answers 429 once to the data plane.
	await mock.setKey(OTHER, 1000, 'status=429', 1);
	const r = await fetch(`${dp.url}/chat/completions`, {
		method: 'POST', headers: { 'content-type': 'application/json' },
		body: JSON.stringify({ model: 'mock/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
	});
	await r.text();
	await page.waitForSelector(`${rowSel('existing')} [data-action=reset]`, { timeout: 5000 });
	await page.click(`${rowSel('existing')} [data-action=reset]`);
	await page.waitForFunction(() => /reset/.test(document.querySelector('#providers-msg').textContent));
	const ex = (await providers()).find((x) => x.name === 'existing');
	assert.equal(ex.cooling, false);
	await page.waitForSelector(`${rowSel('existing')} [data-action=reset]`, { state: 'detached', timeout: 5000 });
});

test('delete asks first', { timeout: 30000 }, async () => {
	await page.click(`${rowSel('web-added')} [data-action=delete]`);
	await page.waitForSelector('#confirm-dialog[open]');
	assert.match(await page.textContent('#confirm-title'), /web-added/);
	await page.click('#confirm-dialog button[value=cancel]');
	await page.waitForSelector('#confirm-dialog', { state: 'hidden' });
	assert.ok((await providers()).some((x) => x.name === 'web-added'), 'deleted although cancelled');

	await page.click(`${rowSel('web-added')} [data-action=delete]`);
	await page.waitForSelector('#confirm-dialog[open]');
	await page.click('#confirm-ok');
	await page.waitForSelector(rowSel('web-added'), { state: 'detached' });
	assert.ok(!(await providers()).some((x) => x.name === 'web-added'), 'not deleted');
});

test('import the example YAML file through the page', { timeout: 30000 }, async (t) => {
	await page.click('#btn-import');
	await page.waitForSelector('#import-dialog[open]');
	await page.setInputFiles('#import-file', EXAMPLE);
	// Its keys are placeholders for the real NVIDIA endpoint: import without the test call.
	await page.uncheck('#import-validate');
	await page.click('#import-submit');
	await page.waitForSelector('#import-dialog', { state: 'hidden' });
	await page.waitForFunction(() => /11 created/.test(document.querySelector('#providers-msg').textContent));
	await page.waitForFunction(() => document.querySelectorAll('#providers-body tr[data-provider^="account"]').length === 11);
	const list = await providers();
	assert.equal(list.filter((p) => /^account\d\d$/.test(p.name)).length, 11);
	assert.ok(list.every((p) => !String(p.api_key_mask).includes('PLACEHOLDER-01-xxxxxxxx')));
	t.diagnostic(`screenshot: ${await screenshot(page, 'dashboard-imported')}`);

	// A broken file is refused with its line.
	await page.click('#btn-import');
	await page.setInputFiles('#import-file', { name: 'bad.yaml', mimeType: 'application/yaml', buffer: Buffer.from('providers:\n- account: x\n  rpm_limit: [1\n') });
	await page.uncheck('#import-validate');
	await page.click('#import-submit');
	await page.waitForSelector('#import-error:not([hidden])');
	await page.waitForFunction(() => /Import failed/.test(document.querySelector('#import-error').textContent));
	t.diagnostic(`bad YAML: ${await page.textContent('#import-error')}`);
	await page.click('#import-dialog [data-close]');
});

test('settings: save a value, refuse a bad one', { timeout: 30000 }, async () => {
	await page.waitForSelector('#settings-form .setting[data-key=queue_timeout_seconds] input');
	await page.fill('#set-queue_timeout_seconds', '20');
	assert.equal(await page.isEnabled('#settings-save'), true);
	await page.click('#settings-save');
	await page.waitForFunction(() => /Saved queue_timeout_seconds/.test(document.querySelector('#settings-msg').textContent));
	const r = await api(lt, 'GET', '/config', { token: st.token });
	assert.equal(r.json.settings.find((s) => s.key === 'queue_timeout_seconds').value, 20);

	await page.fill('#set-rpm_window_seconds', '0');
	await page.click('#settings-save');
	await page.waitForFunction(() => /Not saved/.test(document.querySelector('#settings-msg').textContent));
	assert.ok(await page.$eval('.setting[data-key=rpm_window_seconds]', (e) => e.classList.contains('invalid')));
	const r2 = await api(lt, 'GET', '/config', { token: st.token });
	assert.equal(r2.json.settings.find((s) => s.key === 'rpm_window_seconds').value, 60);
});

test('settings: what is typed while a save refreshes the form is kept', { timeout: 30000 }, async () => {
	// The previous test left a refused 0 typed in; back to the stored value.
	await page.fill('#set-rpm_window_seconds', '60');
	assert.equal(await page.isEnabled('#settings-save'), false);
	// Hold every GET /config until the operator has typed into another field.
	let release;
	const gate = new Promise((r) => { release = r; });
	const isConfig = (u) => u.pathname === '/api/v2/config';
	await page.route(isConfig, async (route) => {
		if (route.request().method() === 'GET') await gate;
		await route.continue();
	});
	try {
		await page.fill('#set-queue_timeout_seconds', '25');
		const refresh = page.waitForRequest((q) => isConfig(new URL(q.url())) && q.method() === 'GET');
		await page.click('#settings-save');
		await refresh;
		await page.fill('#set-rpm_window_seconds', '90');
		release();
		await page.waitForFunction(() => /Saved queue_timeout_seconds/.test(document.querySelector('#settings-msg').textContent));
	} finally {
		release();
		await page.unroute(isConfig);
	}
	assert.equal(await page.inputValue('#set-rpm_window_seconds'), '90', 'the refresh overwrote what was typed');
	assert.ok(await page.$eval('.setting[data-key=rpm_window_seconds]', (e) => e.classList.contains('changed')));
	assert.equal(await page.inputValue('#set-queue_timeout_seconds'), '25');
	assert.ok(await page.$eval('.setting[data-key=queue_timeout_seconds]', (e) => !e.classList.contains('changed')));
	assert.equal(await page.isEnabled('#settings-save'), true);
	const r = await api(lt, 'GET', '/config', { token: st.token });
	assert.equal(r.json.settings.find((x) => x.key === 'queue_timeout_seconds').value, 25);
	assert.equal(r.json.settings.find((x) => x.key === 'rpm_window_seconds').value, 60);
	// Typing the stored value back ends the edit.
	await page.fill('#set-rpm_window_seconds', '60');
	assert.equal(await page.isEnabled('#settings-save'), false);
});

test('log out ends the session', { timeout: 30000 }, async () => {
	await page.click('#logout');
	await page.waitForSelector('#login-view', { state: 'visible' });
	await page.reload();
	await page.waitForSelector('#login-view', { state: 'visible' });
	assert.equal(await page.isVisible('#app-view'), false);
	const errors = page.consoleErrors.filter((e) => !/status of (401|422)/.test(e));
	assert.deepEqual(errors, [], 'errors in the browser console');
});
