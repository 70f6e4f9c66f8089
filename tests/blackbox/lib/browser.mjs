// Headless Chromium for the dashboard tests: playwright-core driving Debian's
// /usr/bin/chromium (no browser download), offline, loopback only.
//
//   requireBrowser();                          // throws when chromium or playwright-core is missing
//   const b = await launchBrowser();
//   const page = await b.newPage({ width: 1280, height: 800 });
//   await login(page, baseUrl, adminToken);
//   await screenshot(page, 'dashboard-1280');  // tests/blackbox/screenshots/dashboard-1280.png
//   await b.close();
//
// Also startSnapshotShim(): a stand-in for the data plane's live status, for
// as long as the data plane does not publish it itself.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dep, requireFiles } from './deps.mjs';

export const CHROMIUM = process.env.SC_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
	'--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync',
	'--disable-dev-shm-usage',
];

let pw = null;
function loadPlaywright() {
	if (!pw) pw = dep('playwright-core');
	return pw;
}

// Throw unless Debian's chromium and playwright-core are installed.
export function requireBrowser() {
	requireFiles([[CHROMIUM, 'chromium (apt-get install chromium)']]);
	loadPlaywright();
}

// Launch Chromium. Every page it opens refuses any request that is not to
// 127.0.0.1 / localhost, so a test can never reach the internet.
export async function launchBrowser() {
	const { chromium } = loadPlaywright();
	const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 });
	const contexts = [];
	return {
		browser,
		// A fresh context (own cookies) with one page at this viewport.
		async newPage(viewport = { width: 1280, height: 800 }) {
			const context = await browser.newContext({ viewport, deviceScaleFactor: 1, serviceWorkers: 'block' });
			contexts.push(context);
			await context.route(/.*/, (route) => {
				const u = new URL(route.request().url());
				if (u.protocol === 'data:' || u.protocol === 'blob:' || u.hostname === '127.0.0.1' || u.hostname === 'localhost')
					return route.continue();
				return route.abort('blockedbyclient');
			});
			const page = await context.newPage();
			page.setDefaultTimeout(10000);
			page.consoleErrors = [];
			page.on('console', (m) => { if (m.type() === 'error') page.consoleErrors.push(m.text()); });
			page.on('pageerror', (e) => page.consoleErrors.push(String(e)));
			return page;
		},
		async close() {
			for (const c of contexts) await c.close().catch(() => {});
			await browser.close().catch(() => {});
		},
	};
}

// Log in through the page's form and wait for the dashboard.
export async function login(page, baseUrl, token) {
	await page.goto(baseUrl + '/', { waitUntil: 'domcontentloaded' });
	await page.locator('#login-token').waitFor({ state: 'visible' });
	await page.fill('#login-token', token);
	await page.click('#login-form button[type=submit]');
	await page.locator('#app-view').waitFor({ state: 'visible' });
}

export const SCREENSHOT_DIR = path.join(process.env.SC_TOP_SRCDIR || process.cwd(), 'tests', 'blackbox', 'screenshots');

// Full-page screenshot into tests/blackbox/screenshots/<name>.png; returns the path.
export async function screenshot(page, name, opts = {}) {
	fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
	const file = path.join(SCREENSHOT_DIR, `${name}.png`);
	await page.screenshot({ path: file, fullPage: opts.fullPage !== false, animations: 'disabled' });
	return file;
}

// ---------------------------------------------------------------------------
// Stand-in for the data plane's live status (docs/status-snapshot.md) while a
// data plane does not publish it yet: every 500 ms, unless the data plane with
// pid dpPid has written a fresh snapshot itself, write one built from the
// providers table and the requests the test itself sent (log entries
// {t: ms, provider: name, status}). Cooling comes from providers.cooldown_until.
// Returns {stop(), real(): true once the data plane's own snapshots were seen}.
function sqliteJson(db, sql) {
	const out = execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', db, sql], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
	return out.trim() ? JSON.parse(out) : [];
}

function isoFromMs(ms) {
	return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function buildSnapshot(db, log, { demo = false } = {}) {
	const now = Date.now();
	const provs = sqliteJson(db, 'SELECT id, name, pool, status, rpm_limit, cooldown_until, consecutive_429 FROM providers ORDER BY name');
	const recent = log.filter((e) => now - e.t < 60000);
	const minutes = [];
	const m0 = Math.floor(now / 60000) * 60;
	for (let k = 59; k >= 0; k--) {
		const t = m0 - 60 * k;
		const inMin = log.filter((e) => Math.floor(e.t / 60000) * 60 === t);
		minutes.push({ t, requests: inMin.length, errors: inMin.filter((e) => e.status >= 400).length, total_tokens: inMin.length * 30 });
	}
	return {
		ts: isoFromMs(now), ts_ms: now, pid: 0, shim: true, version: 'test', demo,
		inflight: 0,
		queue: { depth: 0, capacity: 500, rejected_overflow: 0, rejected_timeout: 0 },
		last_minute: { requests: recent.length, errors: recent.filter((e) => e.status >= 400).length,
			prompt_tokens: recent.length * 20, completion_tokens: recent.length * 10, total_tokens: recent.length * 30,
			cost: 0, fallback: 0, emergency: 0, upstream_429: 0 },
		minutes,
		providers: provs.map((p) => {
			const until = p.cooldown_until ? Date.parse(p.cooldown_until) : 0;
			const used = recent.filter((e) => e.provider === p.name).length;
			const cooling = until > now;
			const state = p.status !== 'active' ? p.status : cooling ? 'cooling' : used >= p.rpm_limit ? 'full' : 'ok';
			return {
				id: p.id, name: p.name, pool: p.pool, status: p.status, state,
				rpm_used: used, rpm_limit: p.rpm_limit,
				cooldown_remaining_ms: cooling ? until - now : 0, cooldown_until: cooling ? p.cooldown_until : null,
				consecutive_429: p.consecutive_429, consecutive_failures: 0, health: 'healthy',
				last_latency_ms: used ? 5 : 0, inflight: 0, requests_1m: used, errors_1m: 0,
			};
		}),
	};
}

export function startSnapshotShim({ db, dpPid = -1, log = [], demo = false }) {
	let real = false;
	let stopped = false;
	const tickOnce = () => {
		if (stopped) return;
		try {
			const row = sqliteJson(db, 'SELECT snapshot FROM live_status WHERE id = 1')[0];
			if (row) {
				const s = JSON.parse(row.snapshot);
				if (!s.shim && s.pid === dpPid && Date.now() - (s.ts_ms || 0) < 5000) {
					real = true;
					return;
				}
			}
			if (real) return;	// the data plane publishes: never overwrite it
			const json = JSON.stringify(buildSnapshot(db, log, { demo })).replace(/'/g, "''");
			execFileSync('sqlite3', ['-cmd', '.timeout 5000', db,
				`INSERT INTO live_status (id, updated_at, snapshot) VALUES (1, '${isoFromMs(Date.now())}', '${json}') ` +
				'ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, snapshot = excluded.snapshot;'], { stdio: 'ignore' });
		} catch { /* busy: next tick */ }
	};
	tickOnce();
	const timer = setInterval(tickOnce, 500);
	return {
		real: () => real,
		stop() { stopped = true; clearInterval(timer); },
	};
}
