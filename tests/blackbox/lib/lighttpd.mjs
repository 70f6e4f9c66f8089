// Black-box helpers for the admin API: a real lighttpd ($SC_LIGHTTPD or
// /usr/sbin/lighttpd, `-D -f conf`) with lighttpd/sidecar.conf.in rendered
// into a temporary directory on an ephemeral loopback port, spawning the
// built sidecar-admin (and sidecar-events when built) through mod_fastcgi
// with SIDECAR_DB and SIDECAR_ENCRYPTION_KEY_FILE in their environment.
//
//   const st = makeAdminDb();                 // temp dir, database, key file, admin token
//   const lt = await startLighttpd(st);        // {base, api, port, stop(), errorLog()}
//   const r = await api(lt, 'GET', '/providers', { token: st.token });
//   await lt.stop(); cleanup(st);
//
// stop() ends lighttpd and every FastCGI process it spawned (found through
// /proc before lighttpd is told to stop), also when a test failed.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { SRCDIR, BUILDDIR, makeDb, cleanup, request, sleep } from './stack.mjs';

export { SRCDIR, BUILDDIR, cleanup, request, sleep };

export const LIGHTTPD = process.env.SC_LIGHTTPD && existsSync(process.env.SC_LIGHTTPD)
	? process.env.SC_LIGHTTPD : '/usr/sbin/lighttpd';

function findBin(name, dirs) {
	for (const d of dirs) {
		const p = join(BUILDDIR, d, name);
		if (existsSync(p)) return p;
	}
	return null;
}

export const ADMIN_BIN = findBin('sidecar-admin', ['.', 'admin-fcgi']);
export const EVENTS_BIN = findBin('sidecar-events', ['.', 'admin-fcgi']);

// A free loopback port: bind 127.0.0.1:0, read the port, close.
export function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

// Fill in lighttpd/sidecar.conf.in. vars: {BIND, PORT, HTDOCS, RUNDIR, LOGDIR,
// ADMIN_BIN, EVENTS_BIN, DB, KEY_FILE}; without EVENTS_BIN the events block goes.
export function renderConfig(vars, template = readFileSync(join(SRCDIR, 'lighttpd', 'sidecar.conf.in'), 'utf8')) {
	let t = template;
	if (!vars.EVENTS_BIN) t = t.replace(/^#@EVENTS_BEGIN@$[\s\S]*?^#@EVENTS_END@$\n?/m, '');
	// Comment lines keep their @NAME@ documentation.
	return t.split('\n').map((line) => (/^\s*#/.test(line) ? line : line.replace(/@([A-Z_]+)@/g, (m, name) => {
		if (vars[name] === undefined || vars[name] === null) throw new Error(`renderConfig: no value for ${m}`);
		return String(vars[name]);
	}))).join('\n');
}

// A temporary directory with an initialised database, an encryption key file
// and an admin bearer token ({dir, db, key, keyFile, token, env, ctl}).
export function makeAdminDb(opts = {}) {
	const st = makeDb(opts);
	st.keyFile = join(st.dir, 'encryption.key');
	writeFileSync(st.keyFile, st.key + '\n', { mode: 0o600 });
	chmodSync(st.keyFile, 0o600);
	if (st.ctl) {
		const out = execFileSync(st.ctl, ['--db', st.db, 'token', 'create', '--admin'],
			{ env: st.env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
		const m = /sc_admin_[A-Za-z0-9_-]{43}/.exec(out);
		if (!m) throw new Error('sidecarctl token create --admin printed no token');
		st.token = m[0];
	} else {
		// Fallback while sidecarctl is not built: the row tokens_create writes.
		st.token = 'sc_admin_' + randomBytes(32).toString('base64url');
		const hash = createHash('sha256').update(st.token).digest('hex');
		execFileSync('sqlite3', [st.db, `PRAGMA busy_timeout=5000; INSERT INTO tokens (id, kind, hash, label) ` +
			`VALUES ('${randomUUID()}', 'admin', '${hash}', 'test');`]);
	}
	return st;
}

// Direct children of a process (from /proc).
function childrenOf(pid) {
	const out = [];
	for (const d of readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
			const ppid = +stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
			if (ppid === pid) out.push(+d);
		} catch { /* gone */ }
	}
	return out;
}

// Every lighttpd started here and not yet stopped: killed with its FastCGI
// children when the test process exits, even after a failure or a timeout.
const live = new Set();
process.on('exit', () => {
	for (const pid of live) {
		// lighttpd first, so that it cannot respawn the children killed next.
		const kids = descendants(pid);
		try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
		for (const k of kids) { try { process.kill(k, 'SIGKILL'); } catch { /* gone */ } }
	}
});

function descendants(pid, out = new Set()) {
	for (const c of childrenOf(pid)) {
		out.add(c);
		descendants(c, out);
	}
	return out;
}

// Whether pid still runs: a zombie (exited, not yet reaped by its new
// parent) does not.
function alive(pid) {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
		return stat[stat.lastIndexOf(')') + 2] !== 'Z';
	} catch {
		return false;
	}
}

// Start lighttpd for st (from makeAdminDb). Options: {events: bool (default:
// when sidecar-events is built), env: extra environment for lighttpd}.
export async function startLighttpd(st, { events = false, env = {} } = {}) {
	if (!ADMIN_BIN) throw new Error(`sidecar-admin not built under ${BUILDDIR}`);
	let lastErr;
	for (let attempt = 0; attempt < 5; attempt++) {
		const port = await freePort();
		try {
			return await tryStart(st, port, { events, env });
		} catch (e) {
			lastErr = e;
			if (!/bind|address already in use|EADDRINUSE|exited/i.test(String(e))) throw e;
		}
	}
	throw lastErr;
}

async function tryStart(st, port, { events, env }) {
	const conf = join(st.dir, `lighttpd-${port}.conf`);
	const errorLog = join(st.dir, 'lighttpd-error.log');
	writeFileSync(conf, renderConfig({
		BIND: '127.0.0.1', PORT: port, HTDOCS: join(SRCDIR, 'htdocs'), RUNDIR: st.dir, LOGDIR: st.dir,
		ADMIN_BIN, EVENTS_BIN: events && EVENTS_BIN ? EVENTS_BIN : '', DB: st.db, KEY_FILE: st.keyFile,
	}));
	// A clean environment: no SIDECAR_ENCRYPTION_KEY from the test process
	// reaches the FastCGI programs; they must use the key file.
	// Sanitizer options do pass, so that an --enable-asan run sees reports
	// from the FastCGI programs too (scripts/test collects them by log_path).
	const san = {};
	for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']) {
		if (process.env[k] !== undefined) san[k] = process.env[k];
	}
	const proc = spawn(LIGHTTPD, ['-D', '-f', conf], {
		env: { PATH: process.env.PATH, ...san, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
	});
	let out = '';
	proc.stdout.on('data', (d) => { out += d; });
	proc.stderr.on('data', (d) => { out += d; });
	live.add(proc.pid);
	let exited = null;
	const exitP = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; r(exited); }));
	const readLog = () => (existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '');
	const lt = {
		port, proc, pid: proc.pid, conf,
		base: `http://127.0.0.1:${port}`,
		api: `http://127.0.0.1:${port}/api/v2`,
		errorLog: () => out + readLog(),
		async stop() {
			const kids = exited ? new Set() : descendants(proc.pid);
			if (!exited) proc.kill('SIGTERM');
			const t = setTimeout(() => { if (!exited) proc.kill('SIGKILL'); }, 3000);
			await exitP;
			clearTimeout(t);
			live.delete(proc.pid);
			// lighttpd exits before its FastCGI children, which it told to
			// stop: let them finish exiting (in the ASan pass LeakSanitizer
			// checks them then, and a SIGKILL in the middle of that check
			// leaves a truncated report), then kill any that hang.
			const end = Date.now() + 10000;
			while ([...kids].some(alive) && Date.now() < end) await sleep(10);
			for (const k of kids) {
				if (alive(k)) { try { process.kill(k, 'SIGKILL'); } catch { /* gone */ } }
			}
		},
	};
	// Ready when the API answers (401 without a token).
	const end = Date.now() + 10000;
	for (;;) {
		if (exited) throw new Error(`lighttpd exited (${JSON.stringify(exited)}): ${lt.errorLog()}`);
		try {
			const r = await request(`${lt.api}/providers`);
			if (r.status === 401) return lt;
			if (r.status !== 503) {
				await lt.stop();
				throw new Error(`lighttpd answered ${r.status} at start: ${r.body}\n${lt.errorLog()}`);
			}
		} catch (e) {
			if (!/ECONNREFUSED|ECONNRESET|socket hang up/.test(String(e))) {
				await lt.stop();
				throw e;
			}
		}
		if (Date.now() > end) {
			await lt.stop();
			throw new Error(`lighttpd did not become ready: ${lt.errorLog()}`);
		}
		await sleep(50);
	}
}

// One admin API call. path is below /api/v2. Options: token (bearer),
// cookie, csrf, body (object → JSON, string/Buffer as is), type (content type),
// headers. Resolves {status, headers, body, json}.
export async function api(lt, method, path, { token, cookie, csrf, body, type, headers = {} } = {}) {
	const h = { ...headers };
	if (token) h.authorization = `Bearer ${token}`;
	if (cookie) h.cookie = cookie;
	if (csrf) h['x-sidecar-csrf'] = csrf;
	let payload;
	if (body !== undefined) {
		payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
		h['content-type'] = type ?? (typeof body === 'object' && !Buffer.isBuffer(body) ? 'application/json' : 'application/octet-stream');
	} else if (type) {
		h['content-type'] = type;
	}
	const r = await request(lt.api + path, { method, headers: h, body: payload });
	try {
		r.json = JSON.parse(r.body);
	} catch {
		r.json = null;
	}
	return r;
}
