// Black-box: what the data plane makes of upstream answers (issue 14): a
// Retry-After as an HTTP-date in its three forms, or past the one-day cap,
// sets the cooldown it says (item 5); proxied answers update
// provider_health.last_status_code, and a cooldown replaced by a newer one
// is no longer active (item 9); a rate-limit error event inside a 200
// stream, in NIM's or OpenAI's shape, is a 429 for the key, and retried on
// another key when it is the first event (item 7).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { startMock } from './lib/mock.mjs';
import { cleanup, logShows, makeDb, postJson, request, sleep, startDataplane } from './lib/stack.mjs';


const KEYS = Array.from({ length: 6 }, (_, i) => `nvapi-TEST-014${i}-xxxxxxxxxxxxxxxx`);
const sql = (st, q) => execFileSync('sqlite3', [st.db, q]).toString().trim();
// Poll the database (saves go through the statistics writer thread) until
// q gives something accepted by ok (up to 6 s); the last answer.
async function until(st, q, ok) {
	let got;
	for (let i = 0; i < 60; i++) {
		got = sql(st, q);
		if (ok(got)) return got;
		await sleep(100);
	}
	return got;
}
// Seconds from now to the persisted end of provider name's cooldown, once saved.
const coolingFor = async (st, name) =>
	+(await until(st, `SELECT CAST(strftime('%s', cooldown_until) AS INTEGER) - CAST(strftime('%s', 'now') AS INTEGER) ` +
		`FROM providers WHERE name='${name}'`, (v) => v !== ''));

describe('upstream Retry-After', { timeout: 60000 }, () => {
	let mock, st, dp;

	before(async () => {
		mock = await startMock({ keys: KEYS.map((key) => ({ key })) });
		st = makeDb({ providers: KEYS.map((key, i) => ({ name: `r${i}`, key, url: mock.url, prefix: `r${i}/` })) });
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop('SIGTERM');	// a clean exit: LeakSanitizer checks it in the ASan pass
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

describe('status the data plane persists', { timeout: 60000 }, () => {
	let mock, st, dp;
	const H = 'nvapi-TEST-0149-hhhhhhhhhhhhhhhh', C = 'nvapi-TEST-0149-cccccccccccccccc';

	before(async () => {
		mock = await startMock({ keys: [{ key: H }, { key: C }] });
		st = makeDb({ providers: [
			{ name: 'h', key: H, url: mock.url, prefix: 'h/' },
			{ name: 'c', key: C, url: mock.url, prefix: 'c/', rpm: 40 },
		], settings: { cooldown_base_seconds: 1, recover_wait_seconds: 0 } });
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop('SIGTERM');	// a clean exit: LeakSanitizer checks it in the ASan pass
		await mock.stop();
		cleanup(st);
	});

	const untilIs = (q, want) => until(st, q, (v) => v === want);

	it('provider_health.last_status_code follows proxied answers, not only probes', async () => {
		const q = "SELECT last_status_code FROM provider_health h JOIN providers p ON p.id = h.provider_id WHERE p.name='h'";
		const ok = await postJson(`${dp.url}/chat/completions`, { model: 'h/m', messages: [] });
		assert.equal(ok.status, 200, ok.body);
		assert.equal(await untilIs(q, '200'), '200');
		const nf = await postJson(`${dp.url}/chat/completions`, { model: 'h/m', messages: [] }, { 'x-mock-fault': 'status=404' });
		assert.equal(nf.status, 404, nf.body);
		assert.equal(await untilIs(q, '404'), '404');
		assert.equal((await postJson(`${dp.url}/chat/completions`, { model: 'h/m', messages: [] })).status, 200);
		assert.equal(await untilIs(q, '200'), '200');
	});

	it('a cooldown replaced by a newer one is no longer active', async () => {
		const chat = () => postJson(`${dp.url}/chat/completions`, { model: 'c/m', messages: [] }, { 'x-mock-fault': 'status=429' });
		const events = "SELECT COUNT(*) FROM cooldown_events e JOIN providers p ON p.id = e.provider_id WHERE p.name='c'";
		assert.equal((await chat()).status, 503);
		// The key is cooling: the emergency channel sends the next one, which gets a 429 again.
		// The same overload (issue 15): it adds no backoff step, so no second cooldown.
		assert.equal((await chat()).status, 503);
		assert.equal(await untilIs(events, '1'), '1');
		await sleep(300);
		assert.equal(sql(st, events), '1', 'an emergency attempt during the cooldown started a second cooldown');
		// The 1 s cooldown ends (the key is probing); its half-open probe meets 429: the next step,
		// a newer cooldown while the first one's rounded-up end may still lie ahead.
		for (let i = 0; i < 60 && JSON.parse((await request(`${dp.base}/health`)).body).providers.probing !== 1; i++)
			await sleep(50);
		assert.equal((await chat()).status, 503);
		assert.equal(await untilIs(events, '2'), '2', 'the probe\'s 429 started a second cooldown');
		const active = `${events} AND e.ended_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')`;
		const fmt = sql(st, "SELECT ended_at FROM cooldown_events LIMIT 1");
		assert.match(fmt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'ended_at format');
		assert.equal(sql(st, active), '1', sql(st, "SELECT started_at, ended_at, cooldown_seconds FROM cooldown_events"));
		// The one still active is the newer, longer one (base 1 s, second step 2 s).
		assert.equal(sql(st, `SELECT e.cooldown_seconds FROM cooldown_events e JOIN providers p ON p.id = e.provider_id
			WHERE p.name='c' AND e.ended_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')`), '2');
	});
});

describe('a 429 inside a 200 stream', { timeout: 60000 }, () => {
	let mock, st, dp;
	const S1 = 'nvapi-TEST-0171-ssssssssssssssss', S2 = 'nvapi-TEST-0172-ssssssssssssssss';
	const T1 = 'nvapi-TEST-0173-tttttttttttttttt', U1 = 'nvapi-TEST-0174-uuuuuuuuuuuuuuuu';

	before(async () => {
		mock = await startMock({ keys: [S1, S2, T1, U1].map((key) => ({ key })), chunks: 4, intervalMs: 5 });
		st = makeDb({ providers: [
			{ name: 's1', key: S1, url: mock.url, prefix: 's/' },
			{ name: 's2', key: S2, url: mock.url, prefix: 's/' },
			{ name: 't1', key: T1, url: mock.url, prefix: 't/' },
			{ name: 'u1', key: U1, url: mock.url, prefix: 'u/' },
		] });
		dp = await startDataplane(st);
	});
	after(async () => {
		await dp.stop('SIGTERM');	// a clean exit: LeakSanitizer checks it in the ASan pass
		await mock.stop();
		cleanup(st);
	});

	const stream = (model) => postJson(`${dp.url}/chat/completions`, { model, stream: true, messages: [{ role: 'user', content: 'hi' }] });
	const metric = async (provider, result) => {
		const m = (await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body;
		const line = m.split('\n').find((l) => l.startsWith('sidecar_upstream_responses_total{') &&
			l.includes(`provider="${provider}"`) && l.includes(`result="${result}"`));
		return line ? +line.split(' ').pop() : 0;
	};
	const consecutive429 = (name) => until(st, `SELECT consecutive_429 FROM providers WHERE name='${name}'`, (v) => v !== '0');

	it('a first event that says 429 (NIM shape) cools the key and the request is retried on another', async () => {
		await mock.setKey(S1, 0, 'sse-429=0', 0);
		for (let i = 0; i < 3; i++) {
			const r = await stream('s/m');
			assert.equal(r.status, 200, r.body);
			assert.equal(r.headers['x-sidecar-provider'], 's2');
			assert.doesNotMatch(r.body, /429|Too Many Requests/);
			assert.match(r.body, /data: \[DONE\]/);
		}
		const rec = await mock.record();
		assert.equal(rec.filter((x) => x.key === S1).length, 1, 'the cooling key was used again');
		assert.equal(await consecutive429('s1'), '1');
		assert.ok(await coolingFor(st, 's1') >= 25, 'cooldown persisted');
		assert.equal(await metric('s1', '429'), 1);
		assert.equal(await metric('s1', '2xx'), 0);
		assert.ok(await logShows(dp, /provider s1 sent a rate-limit error as its stream's first event; treated as 429/), dp.logs().slice(-2000));
		await mock.setKey(S1, 0, null, 0);
	});

	it('with no other key, a first-event 429 (OpenAI shape) is answered as rate limited, not as a 200', async () => {
		await mock.setKey(U1, 0, 'sse-429-openai=0', 0);
		const r = await stream('u/m');
		assert.equal(r.status, 503, r.body);
		assert.equal(JSON.parse(r.body).error.code, 'rate_limited');	// issue 16: the 503 reason's code
		assert.match(JSON.parse(r.body).error.message, /^the key of u\/ is rate limited; the next frees in \d+ s$/);
		assert.ok(+r.headers['retry-after'] > 0);
		assert.equal(await consecutive429('u1'), '1');
		assert.equal(await metric('u1', '429'), 1);
		await mock.setKey(U1, 0, null, 0);
	});

	it('a later rate-limit event (OpenAI shape) is relayed, and counts as a 429 for the key', async () => {
		await mock.setKey(T1, 0, 'sse-429-openai=2', 0);
		const r = await stream('t/m');
		assert.equal(r.status, 200, r.body);
		assert.match(r.body, /rate_limit_exceeded/);	// the client already had two chunks: it gets the rest as sent
		assert.equal(await consecutive429('t1'), '1');
		assert.ok(await coolingFor(st, 't1') >= 25, 'cooldown persisted');
		assert.equal(await metric('t1', '429'), 1);
		assert.ok(await logShows(dp, /provider t1 sent a rate-limit error inside its 200 stream/), dp.logs().slice(-2000));
		await mock.setKey(T1, 0, null, 0);
	});
});

// An upstream whose answer comes framed by Transfer-Encoding although it also
// names a Content-Length (RFC 9112 §6.3: the length is then ignored, and
// curl does): the first chunk is exactly as long as that Content-Length.
// The data plane must hold the JSON answer until its real end and send all
// of it, the model rewritten, with the length it has; taking the first chunk
// for the whole answer would cut it (a JSON answer that arrives in one piece
// of its Content-Length is sent from curl's buffer at once).
describe('a JSON answer framed by chunks despite a Content-Length', { timeout: 60000 }, () => {
	let server, st, dp;
	const doc = JSON.stringify({ id: 'x', object: 'chat.completion', model: 'meta/m', choices: [{ index: 0,
		message: { role: 'assistant', content: 'chunked answer' }, finish_reason: 'stop' }],
	usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } });
	const part1 = doc.slice(0, 60), part2 = doc.slice(60);

	before(async () => {
		server = net.createServer((sock) => {
			let got = Buffer.alloc(0);
			sock.on('data', (b) => {
				got = Buffer.concat([got, b]);
				const end = got.indexOf('\r\n\r\n');
				if (end < 0) return;
				const cl = +(/content-length:\s*(\d+)/i.exec(got.subarray(0, end).toString()) || [0, 0])[1];
				if (got.length < end + 4 + cl) return;
				got = Buffer.alloc(0);
				sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${part1.length}\r\n` +
					`Transfer-Encoding: chunked\r\n\r\n${part1.length.toString(16)}\r\n${part1}\r\n`);
				setTimeout(() => sock.write(`${part2.length.toString(16)}\r\n${part2}\r\n0\r\n\r\n`), 50);
			});
			sock.on('error', () => {});
		});
		await new Promise((res) => server.listen(0, '127.0.0.1', res));
		st = makeDb({ providers: [{ name: 'c1', key: 'nvapi-TEST-0149-xxxxxxxxxxxxxxxx',
			url: `http://127.0.0.1:${server.address().port}/v1`, prefix: 'c/' }] });
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop('SIGTERM');
		server?.close();
		cleanup(st);
	});

	it('is sent whole, its model the client\'s, with its own length', async () => {
		const r = await postJson(`${dp.url}/chat/completions`, { model: 'c/meta/m', messages: [{ role: 'user', content: 'hi' }] });
		assert.equal(r.status, 200, r.body);
		const want = JSON.parse(doc);
		want.model = 'c/meta/m';
		assert.deepEqual(JSON.parse(r.body), want);
		assert.equal(+r.headers['content-length'], Buffer.byteLength(r.body));
	});
});
