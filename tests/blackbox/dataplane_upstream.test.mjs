// Black-box: what the data plane makes of upstream answers (issue 14): a
// Retry-After as an HTTP-date in its three forms, or past the one-day cap,
// sets the cooldown it says (item 5).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startMock } from './lib/mock.mjs';
import { cleanup, makeDb, postJson, startDataplane } from './lib/stack.mjs';

const KEYS = Array.from({ length: 6 }, (_, i) => `nvapi-TEST-014${i}-xxxxxxxxxxxxxxxx`);
const sql = (st, q) => execFileSync('sqlite3', [st.db, q]).toString().trim();
// Seconds from now to the persisted end of provider name's cooldown.
const coolingFor = (st, name) =>
	+sql(st, `SELECT CAST(strftime('%s', cooldown_until) AS INTEGER) - CAST(strftime('%s', 'now') AS INTEGER) FROM providers WHERE name='${name}'`);

describe('upstream Retry-After', { timeout: 60000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: KEYS.map((key) => ({ key })) });
		st = makeDb({ providers: KEYS.map((key, i) => ({ name: `r${i}`, key, url: mock.url, prefix: `r${i}/` })) });
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop();
		await mock.stop();
		cleanup(st);
	});

	// A 429 on route rN with the given Retry-After; the cooldown it leaves, in seconds.
	async function cooldownAfter(n, seconds, form) {
		const h = { 'x-mock-fault': 'status=429', 'x-mock-retry-after': String(seconds) };
		if (form) h['x-mock-retry-after-form'] = form;
		const r = await postJson(`${dp.url}/chat/completions`, { model: `r${n}/m`, messages: [] }, h);
		assert.equal(r.status, 503, r.body);	// the only key of the route is cooling
		return coolingFor(st, `r${n}`);
	}

	it('honours an HTTP-date (IMF-fixdate, RFC 850, asctime) as the cooldown', async () => {
		const imf = await cooldownAfter(0, 90, 'imf');
		assert.ok(imf >= 85 && imf <= 92, `IMF-fixdate 90 s ahead gave a ${imf} s cooldown`);
		const rfc850 = await cooldownAfter(1, 7200, 'rfc850');
		assert.ok(rfc850 >= 7195 && rfc850 <= 7202, `RFC 850 date 2 h ahead gave ${rfc850} s`);
		const asc = await cooldownAfter(2, 300, 'asctime');
		assert.ok(asc >= 295 && asc <= 302, `asctime date 5 min ahead gave ${asc} s`);
	});

	it('caps a large Retry-After at one day instead of ignoring it', async () => {
		const num = await cooldownAfter(3, 100000);
		assert.ok(num >= 86395 && num <= 86401, `Retry-After: 100000 gave ${num} s`);
		const date = await cooldownAfter(4, 3 * 86400, 'imf');
		assert.ok(date >= 86395 && date <= 86401, `a date 3 days ahead gave ${date} s`);
		const plain = await cooldownAfter(5, 45);
		assert.ok(plain >= 43 && plain <= 46, `Retry-After: 45 gave ${plain} s`);
	});
});
