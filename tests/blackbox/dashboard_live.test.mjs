// The dashboard in headless Chromium against the whole stack on loopback:
// mock upstream, sidecar-dataplane, lighttpd with sidecar-admin and
// sidecar-events. Logs in through the form, sees the providers, sends traffic
// through the data plane and watches the RPM bars and the trend chart move
// without a reload, triggers a cooldown at the mock and sees it counted down
// and listed in the history, and saves screenshots at 1280×800 and 390 px
// (tests/blackbox/screenshots/dashboard-*.png).
//
// Until the data plane publishes live_status and persists cooldowns itself,
// the test stands in for those writes (lib/browser.mjs startSnapshotShim and
// the cooldown row below) and says so in a diagnostic.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { startDataplane, postJson, BUILDDIR } from './lib/stack.mjs';
import { makeAdminDb, startLighttpd, cleanup, sleep, EVENTS_BIN, ADMIN_BIN } from './lib/lighttpd.mjs';
import { requireFiles } from './lib/deps.mjs';
import { requireBrowser, launchBrowser, login, screenshot, startSnapshotShim } from './lib/browser.mjs';

const KEYS = ['nvapi-TEST-0001-xxxxxxxxxxxxxxxx', 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx', 'nvapi-TEST-0003-xxxxxxxxxxxxxxxx'];
const NAMES = ['acct-alpha', 'acct-beta', 'acct-gamma'];

// Prerequisites are installed by scripts/test and built by make: missing ones fail.
requireBrowser();
requireFiles([[EVENTS_BIN, 'sidecar-events'], [ADMIN_BIN, 'sidecar-admin'], [join(BUILDDIR, 'sidecar-dataplane'), 'sidecar-dataplane']]);

let mock, st, dp, lt, b, shim;
const sent = [];	// {t, provider, status}: what the test sent through the data plane

function sql(text) {
	return execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, text]).toString().trim();
}

async function send(n, model = 'mock/some-model') {
	const out = [];
	for (let i = 0; i < n; i++) {
		const r = await postJson(`${dp.url}/chat/completions`, {
			model, max_tokens: 8, messages: [{ role: 'user', content: `dashboard test ${i}` }],
		});
		const e = { t: Date.now(), provider: r.headers['x-sidecar-provider'] || '', status: r.status };
		sent.push(e);
		out.push(e);
	}
	return out;
}

before(async () => {
	mock = await startMock({ keys: KEYS.map((key) => ({ key, rpm: 1000 })) });
	st = makeAdminDb({
		providers: KEYS.map((key, i) => ({ name: NAMES[i], key, url: mock.url, prefix: 'mock/', rpm: 40 })),
	});
	dp = await startDataplane(st);
	lt = await startLighttpd(st, { events: true });
	shim = startSnapshotShim({ db: st.db, dpPid: dp.pid, log: sent });
	b = await launchBrowser();
});

after(async () => {
	if (shim) shim.stop();
	if (b) await b.close();
	if (lt) await lt.stop();
	if (dp) await dp.stop();
	if (mock) await mock.stop();
	if (st) cleanup(st);
});

// Sum of the "used" numbers on the RPM bars.
async function rpmUsed(page) {
	return page.$$eval('#providers-body .bar-text', (els) => els.reduce((a, e) => a + Number(e.textContent.split('/')[0]), 0));
}

test('live dashboard: providers, traffic, cooldown, screenshots', { timeout: 90000 }, async (t) => {
	const page = await b.newPage({ width: 1280, height: 800 });
	await login(page, lt.base, st.token);

	// The provider panel lists the providers, keys only masked.
	await page.waitForFunction((n) => document.querySelectorAll('#providers-body tr[data-provider]').length === n, NAMES.length);
	const names = await page.$$eval('#providers-body tr[data-provider]', (rows) => rows.map((r) => r.dataset.provider));
	assert.deepEqual(names.sort(), [...NAMES].sort());
	const text = await page.textContent('body');
	for (const k of KEYS) assert.ok(!text.includes(k), 'a key appears in the page');
	await page.waitForSelector('#conn.pill-ok', { timeout: 5000 });

	// Traffic: RPM bars and the trend chart change within 3 s, without a reload.
	await page.evaluate(() => { window.__noReload = true; });
	await page.waitForFunction(() => document.querySelector('#panel-trends').hasAttribute('data-requests'));
	const before = { rpm: await rpmUsed(page), reqs: Number(await page.getAttribute('#panel-trends', 'data-requests')) };
	const res = await send(12);
	assert.ok(res.every((r) => r.status === 200), `traffic failed: ${JSON.stringify(res.map((r) => r.status))}`);
	const t0 = Date.now();
	await page.waitForFunction((n) => Array.from(document.querySelectorAll('#providers-body .bar-text'))
		.reduce((a, e) => a + Number(e.textContent.split('/')[0]), 0) >= n, before.rpm + 12, { timeout: 3000 });
	await page.waitForFunction((n) => Number(document.querySelector('#panel-trends').dataset.requests) >= n,
		before.reqs + 12, { timeout: 3000 });
	t.diagnostic(`RPM bars and trend chart updated ${Date.now() - t0} ms after the traffic`);
	assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');
	const kpi = Number((await page.textContent('#kpi-requests')).replace(/,/g, ''));
	assert.ok(kpi >= 12, `requests/min shows ${kpi}`);
	if (!shim.real()) t.diagnostic('the data plane does not publish live_status yet: the test wrote the snapshots');

	// A cooldown at the mock: every request on the third key gets 429 with Retry-After.
	await mock.setKey(KEYS[2], 0, 'status=429', 0, 45);
	const gamma = sql(`SELECT id FROM providers WHERE name = '${NAMES[2]}'`);
	let hit = false;
	for (let i = 0; i < 20 && !hit; i++) {
		await send(3);
		hit = (await mock.record()).some((e) => e.key === KEYS[2] && e.status === 429);
	}
	assert.ok(hit, 'no request reached the third key, so no 429 happened');
	const recorded = async () => Number(sql(`SELECT count(*) FROM cooldown_events WHERE provider_id = '${gamma}'`));
	const end = Date.now() + 3000;
	while ((await recorded()) === 0 && Date.now() < end) await sleep(100);
	if ((await recorded()) === 0) {
		t.diagnostic('the data plane does not persist cooldowns yet: the test recorded the cooldown');
		sql(`UPDATE providers SET cooldown_until = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+45 seconds'), consecutive_429 = 1 WHERE id = '${gamma}';
			INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary, started_at, ended_at)
			VALUES ('test-cd-1', '${gamma}', 1, 45, '429 {"status":429,"title":"Too Many Requests"}',
			strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+45 seconds'));`);
	}
	const row = `#providers-body tr[data-provider="${NAMES[2]}"]`;
	await page.waitForSelector(`${row} [data-state="cooling"]`, { timeout: 3000 });
	await page.waitForFunction((sel) => /^\d+:\d\d$/.test(document.querySelector(`${sel} .countdown`).textContent), row, { timeout: 3000 });
	const c1 = await page.textContent(`${row} .countdown`);
	await sleep(2100);
	const c2 = await page.textContent(`${row} .countdown`);
	const secs = (s) => s.split(':').reduce((a, x) => a * 60 + Number(x), 0);
	assert.ok(secs(c2) < secs(c1), `the countdown did not tick: ${c1} then ${c2}`);
	await page.waitForFunction((name) => Array.from(document.querySelectorAll('#cooldowns-body tr'))
		.some((r) => r.textContent.includes(name)), NAMES[2], { timeout: 3000 });
	assert.ok(await page.isVisible(`${row} [data-action="reset"]`), 'no reset button on a cooling provider');
	// That 429 came with the window far below the configured 40: the Limit
	// column shows configured / effective (learned, at most halved), highlighted.
	if (shim.real()) {
		await page.waitForSelector(`${row} .lim-learned`, { timeout: 3000 });
		const lim = (await page.textContent(`${row} .lim-learned`)).split('/').map((x) => Number(x.trim()));
		assert.ok(lim[0] === 40 && lim[1] >= 20 && lim[1] < 40, `Limit shows ${lim.join(' / ')}`);
		assert.equal(await page.textContent(`#providers-body tr[data-provider="${NAMES[0]}"] .lim`), '40 / 40');
	}

	// Screenshots: desktop and a narrow phone, both without horizontal overflow.
	t.diagnostic(`screenshot: ${await screenshot(page, 'dashboard-1280x800', { fullPage: false })}`);
	t.diagnostic(`screenshot: ${await screenshot(page, 'dashboard-1280-full')}`);
	const phone = await b.newPage({ width: 390, height: 844 });
	await login(phone, lt.base, st.token);
	await phone.waitForFunction((n) => document.querySelectorAll('#providers-body tr[data-provider]').length === n, NAMES.length);
	await phone.waitForSelector(`${row} [data-state="cooling"]`, { timeout: 5000 });
	await sleep(500);
	const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
	assert.ok(overflow <= 390, `the 390-px page scrolls sideways (${overflow} px wide)`);
	t.diagnostic(`screenshot: ${await screenshot(phone, 'dashboard-390x844', { fullPage: false })}`);
	t.diagnostic(`screenshot: ${await screenshot(phone, 'dashboard-390-full')}`);
	const errors = [...page.consoleErrors, ...phone.consoleErrors].filter((e) => !/401 \(Unauthorized\)/.test(e));
	assert.deepEqual(errors, [], 'errors in the browser console');
	assert.equal(await page.isVisible('#demo-banner'), false, 'DEMO banner outside demo mode');
});

test('demo mode is labelled', { timeout: 30000 }, async (t) => {
	// What scripts/run --demo does: SIDECAR_DEMO=1 in the environment of lighttpd (and the data plane).
	const st3 = { ...st, dir: mkdtempSync(join(tmpdir(), 'sc-demo-')) };
	const lt3 = await startLighttpd(st3, { events: true, env: { SIDECAR_DEMO: '1' } });
	try {
		const phone = await b.newPage({ width: 390, height: 844 });
		await login(phone, lt3.base, st.token);
		await phone.waitForSelector('#demo-banner', { state: 'visible', timeout: 5000 });
		assert.match(await phone.textContent('#demo-banner'), /DEMO/);
		await phone.waitForSelector('#providers-body tr[data-provider]');
		t.diagnostic(`screenshot: ${await screenshot(phone, 'dashboard-demo-390x844', { fullPage: false })}`);
	} finally {
		await lt3.stop();
		rmSync(st3.dir, { recursive: true, force: true });
	}
});
