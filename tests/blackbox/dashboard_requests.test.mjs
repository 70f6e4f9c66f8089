// The panel's Requests view (issue 19) in headless Chromium against the whole
// stack on loopback: mock upstream, sidecar-dataplane, lighttpd with
// sidecar-admin and sidecar-events. Real traffic fills the request log; the
// test filters to errors, opens a request and sees its attempts (a 429 then
// a success on the other key), watches new requests appear without a reload
// (and stay out while they do not match the filter), and follows the links
// from the provider table and the cooldown history. Screenshot:
// tests/blackbox/screenshots/requests-1280.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { startDataplane, postJson, BUILDDIR } from './lib/stack.mjs';
import { makeAdminDb, startLighttpd, cleanup, sleep, api, EVENTS_BIN, ADMIN_BIN } from './lib/lighttpd.mjs';
import { requireFiles } from './lib/deps.mjs';
import { requireBrowser, launchBrowser, login, screenshot } from './lib/browser.mjs';

const K1 = 'nvapi-TEST-1911-aaaaaaaaaaaaaaaa';
const K2 = 'nvapi-TEST-1912-bbbbbbbbbbbbbbbb';

requireBrowser();
requireFiles([[EVENTS_BIN, 'sidecar-events'], [ADMIN_BIN, 'sidecar-admin'], [join(BUILDDIR, 'sidecar-dataplane'), 'sidecar-dataplane']]);

let mock, st, dp, lt, b;

const send = (rid, model = 'mock/m', headers = {}) => postJson(`${dp.url}/chat/completions`,
	{ model, messages: [{ role: 'user', content: 'hi' }] }, { 'x-request-id': rid, ...headers });

async function logged(rid) {
	const end = Date.now() + 5000;
	for (;;) {
		const r = await api(lt, 'GET', `/requests/${encodeURIComponent(rid)}`, { token: st.token });
		if (r.status === 200) return r.json;
		if (Date.now() > end) throw new Error(`${rid} never reached the request log: ${r.status} ${r.body}`);
		await sleep(100);
	}
}

let retried;	// the request id that got a 429 on m1 and was served by m2

before(async () => {
	mock = await startMock({ keys: [{ key: K1 }, { key: K2 }] });
	st = makeAdminDb({
		settings: { stats_flush_ms: 200, status_publish_ms: 500 },
		providers: [
			{ name: 'm1', key: K1, url: mock.url, prefix: 'mock/' },
			{ name: 'm2', key: K2, url: mock.url, prefix: 'mock/' },
		],
	});
	dp = await startDataplane(st);
	lt = await startLighttpd(st, { events: true });
	b = await launchBrowser();
	// History before the page opens: a success, a 400 passed through, an
	// unknown model, and a 429 retried on the other key.
	assert.equal((await send('br-ok-1')).status, 200);
	assert.equal((await send('br-bad', 'mock/m', { 'x-mock-fault': 'status=400' })).status, 400);
	assert.equal((await send('br-404', 'nomodel/x')).status, 404);
	await mock.setKey(K1, 0, 'status=429', 1);
	for (let i = 0; i < 6 && !retried; i++) {
		assert.equal((await send(`br-retry-${i}`)).status, 200);
		if ((await logged(`br-retry-${i}`)).attempts === 2) retried = `br-retry-${i}`;
	}
	assert.ok(retried, 'no request met the 429');
	await logged('br-404');
});

after(async () => {
	if (b) await b.close();
	if (lt) await lt.stop();
	if (dp) await dp.stop();
	if (mock) await mock.stop();
	if (st) cleanup(st);
});

const rowSel = (rid) => `#requests-body tr[data-rid="${rid}"]`;
const listed = (page) => page.$$eval('#requests-body tr[data-rid]', (rows) => rows.map((r) => r.dataset.rid));

test('Requests view: filter to errors, open a request and its attempts, live rows, links', { timeout: 90000 }, async (t) => {
	const page = await b.newPage({ width: 1280, height: 800 });
	await login(page, lt.base, st.token);
	await page.waitForSelector('#conn.pill-ok', { timeout: 5000 });
	await page.waitForSelector(rowSel(retried));
	let ids = await listed(page);
	for (const rid of ['br-ok-1', 'br-bad', 'br-404', retried]) assert.ok(ids.includes(rid), `${rid} listed: ${ids}`);
	assert.ok(ids.indexOf(retried) < ids.indexOf('br-ok-1'), 'newest first');
	await page.waitForFunction(() => /most recent 20,000 requests/.test(document.querySelector('#requests-note').textContent));
	await page.evaluate(() => { window.__noReload = true; });

	// Errors only: the 400 and the 404 stay, the successes go.
	await page.check('#requests-filters input[name=errors]');
	await page.waitForFunction(() => !document.querySelector('#requests-body tr[data-rid="br-ok-1"]'));
	ids = await listed(page);
	assert.deepEqual(ids.sort(), ['br-404', 'br-bad']);
	assert.match(await page.textContent(`${rowSel('br-404')} td.st`), /^404 model_not_found$/);

	// Open the 400: one attempt that the upstream answered with 400.
	await page.click(rowSel('br-bad'));
	await page.waitForSelector('#request-dialog[open]');
	assert.equal(await page.textContent('#request-dialog-id'), 'br-bad');
	let att = await page.$$eval('#request-attempts-body tr[data-attempt]', (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent)));
	assert.equal(att.length, 1);
	assert.ok(['m1', 'm2'].includes(att[0][1]), att[0].join(' '));
	assert.deepEqual(att[0].slice(2, 5), ['main', '400', 'client_error']);
	await page.click('#request-dialog button[value=close]');
	await page.waitForSelector('#request-dialog:not([open])', { state: 'attached' });

	// A new error appears without a reload; a new success does not (filtered out).
	await send('br-live-ok');
	await send('br-live-bad', 'mock/m', { 'x-mock-fault': 'status=422' });
	await page.waitForSelector(rowSel('br-live-bad'), { timeout: 5000 });
	assert.equal(await page.$(rowSel('br-live-ok')), null, 'a success shown under "errors only"');
	assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');

	// All again; the retried request: two attempts, a 429 on m1 then 200 on m2.
	await page.uncheck('#requests-filters input[name=errors]');
	await page.waitForSelector(rowSel('br-live-ok'));
	await page.click(rowSel(retried));
	await page.waitForSelector('#request-dialog[open]');
	att = await page.$$eval('#request-attempts-body tr[data-attempt]', (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent)));
	assert.deepEqual(att.map((a) => a.slice(0, 5)), [['1', 'm1', 'main', '429', 'rate_limited'], ['2', 'm2', 'main', '200', 'ok']]);
	assert.equal(await page.$$eval('#request-timeline .tl-bar', (bars) => bars.length), 2);
	assert.ok(await page.isVisible('#request-timeline .tl-bar.o-rate_limited'));
	const facts = await page.textContent('#request-facts');
	assert.match(facts, /Providerm2 \(main\)/);
	assert.match(facts, /Status200/);
	t.diagnostic(`screenshot: ${await screenshot(page, 'requests-dialog-1280', { fullPage: false })}`);
	await page.click('#request-dialog button[value=close]');

	// A new request while unfiltered: at the top, without a reload.
	await send('br-live-2');
	await page.waitForFunction(() => document.querySelector('#requests-body tr[data-rid]').dataset.rid === 'br-live-2', null, { timeout: 5000 });
	assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');

	// From the provider table: m1's requests are the ones it served or was tried for.
	await page.click('#providers-body tr[data-provider="m1"] [data-action=requests]');
	await page.waitForFunction(() => location.hash.startsWith('#requests?provider='));
	const m1 = (await api(lt, 'GET', '/providers', { token: st.token })).json.providers.find((p) => p.name === 'm1').id;
	await page.waitForFunction((id) => document.querySelector('#requests-filters select[name=provider]').value === id, m1);
	const want = (await api(lt, 'GET', `/requests?provider=${m1}&limit=500`, { token: st.token })).json.requests.map((r) => r.request_id);
	await page.waitForFunction((n) => document.querySelectorAll('#requests-body tr[data-rid]').length === n, want.length);
	assert.deepEqual(await listed(page), want);
	assert.ok(want.includes(retried), 'the request m1 answered 429 to concerns m1');

	// From the cooldown history: the requests that got the 429 from m1.
	await page.click('#requests-clear');
	await page.waitForSelector(rowSel('br-404'));
	await page.waitForSelector('#cooldowns-body [data-action=cooldown-requests]');
	await page.click('#cooldowns-body [data-action=cooldown-requests]');
	await page.waitForFunction(() => location.hash.includes('outcome=rate_limited'));
	await page.waitForFunction((rid) => {
		const rows = document.querySelectorAll('#requests-body tr[data-rid]');
		return rows.length === 1 && rows[0].dataset.rid === rid;
	}, retried, { timeout: 5000 });
	assert.match(await page.textContent('#requests-scope'), /attempts that ended rate_limited on m1/);
	t.diagnostic(`screenshot: ${await screenshot(page, 'requests-1280')}`);
	await page.click('#requests-scope [data-action=requests-all]');
	await page.waitForSelector(rowSel('br-ok-1'));

	const text = await page.textContent('body');
	for (const k of [K1, K2, st.token]) assert.ok(!text.includes(k), 'a secret appears in the page');
	const errors = page.consoleErrors.filter((e) => !/40[0-9] \((Unauthorized|Not Found)\)/.test(e));
	assert.deepEqual(errors, [], 'errors in the browser console');
});
