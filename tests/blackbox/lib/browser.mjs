// Headless Chromium for the dashboard tests: playwright-core driving Debian's
// /usr/bin/chromium (no browser download), offline, loopback only.
//
//   const b = await launchBrowser();           // skips cleanly when unavailable: see browserSkipReason()
//   const page = await b.newPage({ width: 1280, height: 800 });
//   await login(page, baseUrl, adminToken);
//   await screenshot(page, 'dashboard-1280');  // tests/blackbox/screenshots/dashboard-1280.png
//   await b.close();
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const CHROMIUM = process.env.SC_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
	'--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync',
	'--disable-dev-shm-usage',
];

let pw = null;
function loadPlaywright() {
	if (pw) return pw;
	try {
		pw = require('playwright-core');
	} catch (e) {
		pw = null;
	}
	return pw;
}

// Why the browser tests cannot run here (null when they can).
export function browserSkipReason() {
	if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} not installed (apt-get install chromium)`;
	if (!loadPlaywright()) return 'playwright-core not installed (cd tests && npm ci)';
	return null;
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
