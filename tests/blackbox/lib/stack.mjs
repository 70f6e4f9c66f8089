// Black-box helpers for the data plane: a temporary directory with a database
// made by the built `sidecarctl` (init + import of a provider YAML file), the
// real `sidecar-dataplane` started on ephemeral loopback ports (it writes the
// bound ports to --port-file), and small fetch helpers. Everything started
// here is killed by stop(), which tests call in `after`/finally blocks.
//
// While sidecarctl is not built yet, the database is made with the sqlite3
// command-line tool from sql/schema.sql and provider keys are encrypted here
// the way common/crypto.c does (AES-256-GCM, "v1:" + base64(iv|ct|tag), the
// provider id as associated data).
import { spawn, execFileSync } from 'node:child_process';
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';

export const SRCDIR = process.env.SC_TOP_SRCDIR || new URL('../../..', import.meta.url).pathname;
export const BUILDDIR = process.env.SC_TOP_BUILDDIR || join(SRCDIR, 'build');

export function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

// pred() until it returns something truthy (returned), checked every everyMs; throws after timeoutMs.
export async function until(pred, timeoutMs, what, everyMs = 50) {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await pred();
		if (v) return v;
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await sleep(everyMs);
	}
}

function yamlQuote(v) {
	return JSON.stringify(String(v));
}

// YAML text of providers in the format of seed/providers-example.yaml.
export function providersYaml(list) {
	let y = 'providers:\n';
	for (const p of list) {
		y += `- account: ${yamlQuote(p.name)}\n`;
		y += `  api_key: ${yamlQuote(p.key)}\n`;
		y += `  endpoint_url: ${yamlQuote(p.url)}\n`;
		y += `  model_prefix: ${yamlQuote(p.prefix ?? 'mock/')}\n`;
		y += `  pool: ${p.pool ?? 'main'}\n`;
		y += `  rpm_limit: ${p.rpm ?? 1000}\n`;
		for (const k of ['max_tokens_field', 'flatten_content', 'stream_usage', 'weight', 'status']) {
			if (p[k] !== undefined) y += `  ${k}: ${p[k]}\n`;
		}
		if (p.modelRpm) {
			y += '  model_rpm_limits:\n';
			for (const [m, n] of Object.entries(p.modelRpm)) y += `    ${yamlQuote(m)}: ${n}\n`;
		}
	}
	return y;
}

function sidecarctlPath() {
	for (const p of [join(BUILDDIR, 'sidecarctl'), join(BUILDDIR, 'ctl', 'sidecarctl')]) {
		if (existsSync(p)) return p;
	}
	return null;
}

// Insert providers without sidecarctl (fallback only).
function insertDirect(db, keyB64, list) {
	const key = Buffer.from(keyB64, 'base64');
	let sql = 'BEGIN;\n';
	for (const p of list) {
		const id = randomUUID();
		const iv = randomBytes(12);
		const c = createCipheriv('aes-256-gcm', key, iv);
		c.setAAD(Buffer.from(id));
		const ct = Buffer.concat([c.update(Buffer.from(p.key)), c.final()]);
		const stored = 'v1:' + Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64');
		const md = {};
		for (const k of ['max_tokens_field', 'flatten_content', 'stream_usage']) {
			if (p[k] !== undefined) md[k] = p[k];
		}
		if (p.modelRpm) md.model_rpm_limits = p.modelRpm;
		const q = (s) => "'" + String(s).replace(/'/g, "''") + "'";
		sql += `INSERT INTO providers (id, name, api_key, api_key_mask, endpoint_url, model_prefix, pool, status, ` +
			`source, rpm_limit, weight, metadata) VALUES (${q(id)}, ${q(p.name)}, ${q(stored)}, '****', ` +
			`${q(p.url)}, ${q(p.prefix ?? 'mock/')}, ${q(p.pool ?? 'main')}, ${q(p.status ?? 'active')}, 'cli', ` +
			`${p.rpm ?? 1000}, ${p.weight ?? 1}, ${q(JSON.stringify(md))});\n`;
	}
	sql += 'COMMIT;\n';
	execFileSync('sqlite3', [db], { input: sql });
}

// A temporary directory with an initialised database and an encryption key.
export function makeDb({ providers = [], settings = {} } = {}) {
	const dir = mkdtempSync(join(tmpdir(), 'sc-dp-'));
	const db = join(dir, 'sidecar_v2.db');
	const key = randomBytes(32).toString('base64');
	const env = { ...process.env, SIDECAR_ENCRYPTION_KEY: key };
	const ctl = sidecarctlPath();
	const st = { dir, db, key, env, ctl };
	if (ctl) {
		execFileSync(ctl, ['--db', db, 'init'], { env, stdio: 'pipe' });
	} else {
		execFileSync('sqlite3', [db], { input: readFileSync(join(SRCDIR, 'sql', 'schema.sql')) });
		const migs = readdirSync(join(SRCDIR, 'sql', 'migrations')).filter((f) => /^\d+_.*\.sql$/.test(f));
		const ver = Math.max(1, ...migs.map((f) => parseInt(f, 10)));
		execFileSync('sqlite3', [db, `PRAGMA user_version=${ver}; PRAGMA journal_mode=WAL;`]);
	}
	for (const [k, v] of Object.entries(settings)) setSetting(st, k, v);
	if (providers.length) addProviders(st, providers);
	return st;
}

export function setSetting(st, k, v) {
	execFileSync('sqlite3', [st.db, `PRAGMA busy_timeout=5000; UPDATE system_config SET value='${v}' WHERE key='${k}'; ` +
		`UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version';`]);
}

// Add providers [{name, key, url, prefix, pool, rpm, max_tokens_field, ..., modelRpm: {model: rpm}}].
export function addProviders(st, list) {
	if (st.ctl) {
		const f = join(st.dir, `import-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
		writeFileSync(f, providersYaml(list));
		execFileSync(st.ctl, ['--db', st.db, 'import', f], { env: st.env, stdio: 'pipe' });
	} else {
		insertDirect(st.db, st.key, list);
	}
}

// Start sidecar-dataplane on ephemeral ports. Returns {port, url, base, pid, proc, stop, logs}.
// nofile: start it under `ulimit -n nofile` (file-descriptor exhaustion tests).
export async function startDataplane(st, { args = [], env = {}, nofile } = {}) {
	const bin = join(BUILDDIR, 'sidecar-dataplane');
	const portFile = join(st.dir, `ports-${Date.now()}-${Math.random().toString(36).slice(2)}`);
	const argv = ['--db', st.db, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--port-file', portFile, ...args];
	const opts = { env: { ...st.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] };
	const proc = nofile ? spawn('sh', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, bin, ...argv], opts) : spawn(bin, argv, opts);
	let logs = '';
	proc.stdout.on('data', (d) => { logs += d; });
	proc.stderr.on('data', (d) => { logs += d; });
	let exited = null;
	const exitP = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; r(exited); }));
	const ports = await until(() => {
		if (exited) throw new Error(`sidecar-dataplane exited (${JSON.stringify(exited)}): ${logs}`);
		if (!existsSync(portFile)) return null;
		const t = readFileSync(portFile, 'utf8');
		const m = /data (\d+)\nmetrics (\d+)/.exec(t);
		return m ? { data: +m[1], metrics: +m[2] } : null;
	}, 10000, 'the data plane port file', 20);
	const dp = {
		proc, pid: proc.pid, port: ports.data, metricsPort: ports.metrics,
		base: `http://127.0.0.1:${ports.data}`,
		url: `http://127.0.0.1:${ports.data}/v1`,
		logs: () => logs,
		exited: () => exited,
		wait: () => exitP,
		async stop(signal = 'SIGKILL') {
			if (!exited) proc.kill(signal);
			return exitP;
		},
	};
	return dp;
}

// Whether dp's log matches re within 3 s (its stderr arrives through a pipe).
export async function logShows(dp, re) {
	for (let i = 0; i < 50; i++) {
		if (re.test(dp.logs())) return true;
		await sleep(60);
	}
	return re.test(dp.logs());
}

export function cleanup(st) {
	if (st && st.dir) rmSync(st.dir, { recursive: true, force: true });
}

// A plain HTTP request; resolves {status, headers, body (string)}.
export function request(url, { method = 'GET', headers = {}, body, agent = false } = {}) {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method, headers, agent }, (res) => {
			const parts = [];
			res.on('data', (d) => parts.push(d));
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
				body: Buffer.concat(parts).toString('utf8') }));
			res.on('error', reject);
		});
		req.on('error', reject);
		if (body !== undefined) req.write(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
		req.end();
	});
}

// One sample of the data plane's metrics endpoint: the value of the line whose name (with labels) is name, or undefined.
export async function metric(dp, name) {
	const t = (await request(`http://127.0.0.1:${dp.metricsPort}/metrics`)).body;
	const line = t.split('\n').find((l) => l.startsWith(name + ' '));
	return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

export function postJson(url, obj, headers = {}) {
	return request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(obj) });
}

// Raw TCP exchange: send bytes, collect everything until the server closes or idleMs passes.
export function rawExchange(port, data, { idleMs = 1000, totalMs = 10000 } = {}) {
	return new Promise((resolve, reject) => {
		const s = net.connect(port, '127.0.0.1');
		const parts = [];
		let idle;
		const done = () => { clearTimeout(idle); clearTimeout(total); s.destroy(); resolve(Buffer.concat(parts).toString('latin1')); };
		const total = setTimeout(done, totalMs);
		const arm = () => { clearTimeout(idle); idle = setTimeout(done, idleMs); };
		s.on('connect', () => { s.write(data); arm(); });
		s.on('data', (d) => { parts.push(d); arm(); });
		s.on('end', done);
		s.on('error', (e) => { if (parts.length) done(); else reject(e); });
	});
}

// VmRSS of a process in kB.
export function rssKb(pid) {
	const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
	return m ? +m[1] : 0;
}

// CPU time (user + system) of a process in clock ticks (normally 1/100 s).
export function cpuTicks(pid) {
	const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
	const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
	return +rest[11] + +rest[12];
}

// Open n raw TCP connections to port (they stay idle); resolves the sockets.
export async function openIdle(port, n) {
	const socks = [];
	for (let i = 0; i < n; i++) {
		const s = net.connect(port, '127.0.0.1');
		s.on('error', () => {});
		s.got = '';
		s.on('data', (d) => { s.got += d.toString('latin1'); });
		socks.push(s);
	}
	await Promise.all(socks.map((s) => new Promise((r) => { s.once('connect', r); s.once('error', r); s.once('close', r); })));
	return socks;
}
