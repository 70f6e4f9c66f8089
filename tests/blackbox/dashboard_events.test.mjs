// sidecar-events through a real lighttpd: authentication, the event stream
// (status on change, provider on config change, cooldown start/end with ids
// that resume through Last-Event-ID), 32 concurrent dashboards while the
// admin API stays fast, and threads freed when browsers go away.
// The live snapshot is written by the test itself (as the data plane does).
import { test, before, after } from 'node:test';
import { requireFiles } from './lib/deps.mjs';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeAdminDb, startLighttpd, api, cleanup, sleep, EVENTS_BIN, ADMIN_BIN } from './lib/lighttpd.mjs';

requireFiles([[EVENTS_BIN, 'sidecar-events'], [ADMIN_BIN, 'sidecar-admin']]);

function sql(st, text) {
	return execFileSync('sqlite3', [st.db], { input: `PRAGMA busy_timeout=5000;\n${text}\n` }).toString();
}

function isoNow(offsetS = 0) {
	return new Date(Date.now() + offsetS * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function writeSnapshot(st, snap) {
	const json = JSON.stringify({ ts: isoNow(), ts_ms: Date.now(), ...snap }).replace(/'/g, "''");
	sql(st, `INSERT INTO live_status (id, updated_at, snapshot) VALUES (1, '${isoNow()}', '${json}')
		ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, snapshot = excluded.snapshot;`);
}

// An SSE client: {status, headers, events[], comments, next(pred, ms), close()}.
function openStream(base, { token, cookie, lastEventId } = {}) {
	return new Promise((resolve, reject) => {
		const headers = { accept: 'text/event-stream' };
		if (token) headers.authorization = `Bearer ${token}`;
		if (cookie) headers.cookie = cookie;
		if (lastEventId) headers['last-event-id'] = lastEventId;
		const req = http.request(`${base}/api/v2/events`, { headers, agent: false });
		const s = { events: [], comments: 0, waiters: [], ended: false, buf: '' };
		s.close = () => { req.destroy(); };
		s.next = (pred, ms = 5000) => new Promise((res, rej) => {
			const found = s.events.find((e) => !e.taken && pred(e));
			if (found) { found.taken = true; res(found); return; }
			const w = { pred, res };
			w.timer = setTimeout(() => { s.waiters = s.waiters.filter((x) => x !== w); rej(new Error(`no matching event within ${ms} ms; got ${JSON.stringify(s.events.map((e) => e.event))}`)); }, ms);
			s.waiters.push(w);
		});
		const dispatch = (ev) => {
			s.events.push(ev);
			for (const w of s.waiters) {
				if (w.pred(ev)) {
					ev.taken = true;
					clearTimeout(w.timer);
					s.waiters = s.waiters.filter((x) => x !== w);
					w.res(ev);
					break;
				}
			}
		};
		req.on('response', (res) => {
			s.status = res.statusCode;
			s.headers = res.headers;
			res.setEncoding('utf8');
			res.on('data', (chunk) => {
				s.buf += chunk;
				let i;
				while ((i = s.buf.indexOf('\n\n')) !== -1) {
					const block = s.buf.slice(0, i);
					s.buf = s.buf.slice(i + 2);
					const ev = { event: 'message', data: [], id: null };
					let any = false;
					for (const line of block.split('\n')) {
						if (line.startsWith(':')) { s.comments++; continue; }
						const c = line.indexOf(':');
						const k = c === -1 ? line : line.slice(0, c);
						const v = c === -1 ? '' : line.slice(c + 1).replace(/^ /, '');
						if (k === 'event') { ev.event = v; any = true; }
						else if (k === 'data') { ev.data.push(v); any = true; }
						else if (k === 'id') ev.id = v;
					}
					if (any) {
						ev.data = ev.data.join('\n');
						try { ev.json = JSON.parse(ev.data); } catch { ev.json = null; }
						dispatch(ev);
					}
				}
			});
			res.on('end', () => { s.ended = true; });
			res.on('error', () => { s.ended = true; });
			resolve(s);
		});
		req.on('error', (e) => { if (s.status === undefined) reject(e); else s.ended = true; });
		req.end();
	});
}

let st, lt;
before(async () => {
	st = makeAdminDb();
	sql(st, `INSERT INTO providers (id, name, api_key, endpoint_url, model_prefix) VALUES
		('p1', 'account01', 'v1:x', 'http://127.0.0.1:9/v1', 'mock/'),
		('p2', 'account02', 'v1:x', 'http://127.0.0.1:9/v1', 'mock/');`);
	lt = await startLighttpd(st, { events: true });
});
after(async () => {
	if (lt) await lt.stop();
	if (st) cleanup(st);
});

test('the stream needs the admin token or a session cookie', { timeout: 20000 }, async () => {
	const r = await api(lt, 'GET', '/events');
	assert.equal(r.status, 401);
	const bad = await api(lt, 'GET', '/events', { token: 'sc_admin_wrong' });
	assert.equal(bad.status, 401);
	const post = await api(lt, 'POST', '/events', { token: st.token, body: {} });
	assert.equal(post.status, 405);

	// Logged in through the admin API: the cookie opens the stream too.
	const login = await api(lt, 'POST', '/session', { body: { token: st.token } });
	assert.equal(login.status, 200);
	const cookie = String(login.headers['set-cookie']).split(';')[0];
	const s = await openStream(lt.base, { cookie });
	try {
		assert.equal(s.status, 200);
		assert.match(s.headers['content-type'], /^text\/event-stream/);
		const hello = await s.next((e) => e.event === 'hello', 3000);
		assert.deepEqual(hello.json, { demo: false });
		assert.equal(hello.id, null, 'hello must not move the resume cursor');
	} finally {
		s.close();
	}
});

test('status on change, provider on config change, cooldown start and end, resume by id', { timeout: 30000 }, async () => {
	writeSnapshot(st, { n: 1, providers: [] });
	const s = await openStream(lt.base, { token: st.token });
	try {
		assert.equal(s.status, 200);
		const first = await s.next((e) => e.event === 'status', 3000);
		assert.equal(first.json.n, 1);
		// A changed snapshot arrives within 2 s, with a larger id.
		const t0 = Date.now();
		writeSnapshot(st, { n: 2, providers: [] });
		const second = await s.next((e) => e.event === 'status' && e.json.n === 2, 2500);
		assert.ok(Date.now() - t0 < 2000, `status took ${Date.now() - t0} ms`);
		const seq = (id) => Number(id.split('-')[1]);
		assert.ok(seq(second.id) > seq(first.id), `${second.id} after ${first.id}`);

		// Operator edits a provider: "provider".
		sql(st, `UPDATE providers SET rpm_limit = 30 WHERE id = 'p1';`);
		await s.next((e) => e.event === 'provider', 3000);

		// A cooldown starts (as the data plane records it) and is then reset.
		sql(st, `UPDATE providers SET cooldown_until = '${isoNow(60)}', consecutive_429 = 1 WHERE id = 'p2';
			INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary, started_at, ended_at)
			VALUES ('cd-1', 'p2', 1, 60, '429 Too Many Requests', '${isoNow()}', '${isoNow(60)}');`);
		const start = await s.next((e) => e.event === 'cooldown' && e.json.kind === 'start', 3000);
		assert.equal(start.json.provider_name, 'account02');
		assert.equal(start.json.cooldown_seconds, 60);
		const rowid = Number(start.id.split('-')[0]);
		assert.ok(rowid > 0);
		sql(st, `UPDATE providers SET cooldown_until = NULL, consecutive_429 = 0 WHERE id = 'p2';`);
		const end = await s.next((e) => e.event === 'cooldown' && e.json.kind === 'end', 3000);
		assert.equal(end.json.provider_id, 'p2');

		// A browser that was away since before the cooldown gets it replayed.
		const s2 = await openStream(lt.base, { token: st.token, lastEventId: `${rowid - 1}-${seq(second.id)}` });
		try {
			const replay = await s2.next((e) => e.event === 'cooldown' && e.json.kind === 'start', 3000);
			assert.equal(replay.json.id, 'cd-1');
			const st2 = await s2.next((e) => e.event === 'status', 3000);
			assert.ok(seq(st2.id) > seq(second.id), 'status ids keep increasing after a resume');
		} finally {
			s2.close();
		}
		// One that saw it does not get it again.
		const s3 = await openStream(lt.base, { token: st.token, lastEventId: end.id });
		try {
			await s3.next((e) => e.event === 'status', 3000);
			await sleep(1200);
			assert.equal(s3.events.filter((e) => e.event === 'cooldown').length, 0);
		} finally {
			s3.close();
		}
	} finally {
		s.close();
	}
});

test('32 dashboards at once, and the admin API stays fast', { timeout: 40000 }, async () => {
	writeSnapshot(st, { n: 100, providers: [] });
	const streams = await Promise.all(Array.from({ length: 32 }, () => openStream(lt.base, { token: st.token })));
	try {
		for (const s of streams) assert.equal(s.status, 200);
		await Promise.all(streams.map((s) => s.next((e) => e.event === 'status', 5000)));
		const t0 = Date.now();
		const r = await api(lt, 'GET', '/providers', { token: st.token });
		assert.equal(r.status, 200);
		assert.ok(Date.now() - t0 < 1000, `admin API took ${Date.now() - t0} ms with 32 streams open`);
		// Every stream sees the next change.
		writeSnapshot(st, { n: 101, providers: [] });
		await Promise.all(streams.map((s) => s.next((e) => e.event === 'status' && e.json.n === 101, 3000)));
	} finally {
		for (const s of streams) s.close();
	}
});

test('a gone browser frees its thread', { timeout: 40000 }, async () => {
	// A second lighttpd (own state directory) whose sidecar-events has only 2 threads.
	const st2 = { ...st, dir: mkdtempSync(join(tmpdir(), 'sc-events-')) };
	const lt2 = await startLighttpd(st2, { events: true, env: { SIDECAR_EVENTS_THREADS: '2', SIDECAR_DEMO: '1' } });
	let writer;
	try {
		let n = 1000;
		writer = setInterval(() => { try { writeSnapshot(st, { n: n++, providers: [] }); } catch { /* busy */ } }, 300);
		const a = await openStream(lt2.base, { token: st.token });
		const b = await openStream(lt2.base, { token: st.token });
		assert.equal(a.status, 200);
		assert.equal(b.status, 200);
		assert.deepEqual((await a.next((e) => e.event === 'hello', 3000)).json, { demo: true });
		// Both threads busy: a third waits.
		let third = null;
		const thirdP = openStream(lt2.base, { token: st.token }).then((s) => { third = s; return s; });
		await sleep(1000);
		assert.equal(third, null, 'a third stream was served although both threads were busy');
		a.close();
		b.close();
		const c = await Promise.race([thirdP, sleep(5000).then(() => null)]);
		assert.ok(c, 'the third stream was not served within 5 s of the others leaving');
		assert.equal(c.status, 200);
		await c.next((e) => e.event === 'status', 3000);
		c.close();
	} finally {
		clearInterval(writer);
		await lt2.stop();
		rmSync(st2.dir, { recursive: true, force: true });
	}
});

test('SIGTERM ends sidecar-events at once (lighttpd stopping)', { timeout: 20000 }, async () => {
	const sock = join(st.dir, 'term-test.sock');
	const p = spawn(EVENTS_BIN, ['--socket', sock, '--threads', '8', '--db', st.db], { stdio: 'ignore' });
	try {
		for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(20);
		assert.ok(existsSync(sock), 'no socket');
		const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
		p.kill('SIGTERM');
		const r = await Promise.race([exited, sleep(2000).then(() => null)]);
		assert.ok(r, 'still running 2 s after SIGTERM');
		assert.equal(r.sig, 'SIGTERM');
	} finally {
		if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
	}
});
