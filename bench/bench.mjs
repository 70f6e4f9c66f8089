// bench/bench.mjs: the scenarios of bench/run (issue 9), side by side.
//
// Started by bench/run after it has built the optimised binaries, streamload
// and the Portkey gateway. For each scenario it starts fresh processes on
// 127.0.0.1 (mock upstream, nginx, sidecar-dataplane, Portkey), drives the
// same load through each with wrk (bench/post.lua) or bench/streamload, and
// at the end writes bench/RESULTS.md (tables with ratios to nginx and to the
// direct floor) and bench/out/results.json (every raw figure).
//
//   node bench/bench.mjs --build DIR [--quick] [--only 1,3,4b] [--no-pin] [--no-profile] [--dp-before BIN] [--runs N]
//
// --runs N: scenario 1's and 6's throughput figures (req/s, requests per proxy
// CPU-second) and the libcurl floor's CPU per transfer are the median of N runs
// (default: the best of 2), scenario 3 runs N times per system (median peak RSS).
//
// Every process started here is recorded in bench/out/pids (bench/run's trap
// kills those too) and killed on exit, also on failure or Ctrl-C.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const TOP = dirname(HERE);
const OUT = join(HERE, 'out');

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const opt = { quick: false, pin: true, profile: true, only: null, build: join(OUT, 'build') };
for (let i = 0; i < argv.length; i++) {
	const a = argv[i];
	if (a === '--quick') opt.quick = true;
	else if (a === '--no-pin') opt.pin = false;
	else if (a === '--no-profile') opt.profile = false;
	else if (a === '--callgrind-only') { opt.cgOnly = true; opt.only = new Set(); }
	else if (a === '--build') opt.build = argv[++i];
	else if (a === '--only') opt.only = new Set(argv[++i].split(',').map((x) => x.trim()));	/* 1..6, 4b */
	else if (a === '--dp-before') opt.dpBefore = argv[++i];	/* scenario 4b: an older sidecar-dataplane to compare */
	else if (a === '--runs') { opt.runs = Number(argv[++i]); if (!(opt.runs >= 1 && opt.runs <= 9)) { console.error('bench.mjs: --runs takes 1..9'); process.exit(2); } }
	else { console.error(`bench.mjs: unknown option ${a}`); process.exit(2); }
}
const NCPU = os.cpus().length;
const PIN = opt.pin && NCPU >= 2;
// CPU sets: the proxy under test alone on CPU 0; load generator and mock on CPU 1.
const CPU_PROXY = '0';
const CPU_LOAD = String(NCPU >= 2 ? 1 : 0);
const Q = opt.quick;
const P = {
	s1Dur: Q ? 3 : 8, s1Conns: 64, s1Warm: 1, s1Runs: Q ? 1 : 2, s1LatRuns: Q ? 1 : 2, s1Light: 1000, s3Runs: Q ? 1 : 2,
	s2Req: Q ? 60 : 240, s2Conns: 4, s2Chunks: 10, s2Interval: 10,
	s3Sizes: [1000, 5000], s3Rounds: Q ? 1 : 3, s3Chunks: 50, s3Interval: 20,
	s4Windows: Q ? 3 : 5, s4WindowS: 3, s4Keys: 11, s4Rpm: 40, s4MarginMs: 100,
	s4bRealRpm: 25, s4bWindows: Q ? 4 : 6,
	s5Req: Q ? 8 : 24,
	// the libcurl floor (issue 20): transfers per timed run, 32 at a time; under callgrind 300 + 3,000 like the data plane
	floorN: Q ? 30000 : 100000, floorConc: 32, floorCgN: Q ? 1000 : 3000,
};
if (opt.runs) { P.s1Runs = opt.runs; P.s3Runs = opt.runs; }
// with --runs the throughput figures are medians (robust to a busy machine both ways), else the best run
const MEDIAN = !!opt.runs;
const median = (a) => { const v = a.filter((x) => x != null).sort((x, y) => x - y); return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null; };

const BIN = {
	dp: join(opt.build, 'sidecar-dataplane'),
	ctl: join(opt.build, 'sidecarctl'),
	mock: join(opt.build, 'tests', 'mock-upstream'),
	load: join(OUT, 'streamload'),
	floor: join(OUT, 'floor'),
	portkey: join(HERE, 'portkey', 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.patched.js'),
};
const KEY = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const MODEL = 'mock/meta/llama-3.1-8b-instruct';

const log = (...a) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ processes
const live = new Set();
const PIDFILE = join(OUT, 'pids');
writeFileSync(PIDFILE, '');
function killAll() {
	for (const p of live) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
	live.clear();
}
process.on('exit', killAll);
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => { killAll(); process.exit(130); });

// Scenario 1's max-throughput runs are not pinned (see report()); everything else is.
let pinNow = true;
function pinned(cpu, cmd, args) {
	return PIN && pinNow ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args];
}

// Start a long-running process; returns {proc, pid, out(), stop()}.
function startProc(name, cpu, cmd, args, { env = {}, cwd } = {}) {
	const [c, a] = pinned(cpu, cmd, args);
	const proc = spawn(c, a, { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	const keep = (d) => { out = (out + d).slice(-200000); };
	proc.stdout.on('data', keep);
	proc.stderr.on('data', keep);
	let exited = null;
	const exitP = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; live.delete(h); r(exited); }));
	const h = {
		name, proc, pid: proc.pid,
		out: () => out,
		exited: () => exited,
		async stop() {
			if (exited) return exited;
			try { proc.kill('SIGTERM'); } catch { /* gone */ }
			const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
			await exitP;
			clearTimeout(t);
			return exited;
		},
	};
	live.add(h);
	appendFileSync(PIDFILE, `${proc.pid}\n`);
	return h;
}

// Run a command to completion; resolves {code, stdout, stderr}.
function run(cpu, cmd, args, { env = {}, timeoutMs = 600000 } = {}) {
	const [c, a] = pinned(cpu, cmd, args);
	return new Promise((resolve) => {
		const proc = spawn(c, a, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
		const h = { pid: proc.pid };
		live.add(h);
		appendFileSync(PIDFILE, `${proc.pid}\n`);
		let stdout = '', stderr = '';
		proc.stdout.on('data', (d) => { stdout += d; });
		proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20000); });
		const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
		proc.on('exit', (code) => { clearTimeout(t); live.delete(h); resolve({ code, stdout, stderr }); });
	});
}

async function waitFor(pred, ms, what) {
	const end = Date.now() + ms;
	for (;;) {
		const v = await pred();
		if (v) return v;
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await sleep(50);
	}
}

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
	});
}

function httpReq(port, method, path, { headers = {}, body } = {}) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
		const req = http.request({ host: '127.0.0.1', port, method, path, agent: false,
			headers: { connection: 'close', ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}), ...headers } },
		(res) => {
			const parts = [];
			res.on('data', (d) => parts.push(d));
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }));
			res.on('error', reject);
		});
		req.setTimeout(30000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
		req.on('error', reject);
		req.end(data);
	});
}

// /proc figures of a process: CPU seconds (utime+stime, and each alone; main_*: its main thread's,
// the task whose id is the pid) and memory in kB.
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;
function statTimes(path) {
	const st = readFileSync(path, 'utf8');
	const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
	return { user_s: Number(f[11]) / CLK_TCK, sys_s: Number(f[12]) / CLK_TCK };
}
function procStat(pid) {
	try {
		const t = statTimes(`/proc/${pid}/stat`);
		const mt = statTimes(`/proc/${pid}/task/${pid}/stat`);
		const status = readFileSync(`/proc/${pid}/status`, 'utf8');
		const kb = (k) => { const m = new RegExp(`${k}:\\s+(\\d+)`).exec(status); return m ? +m[1] : 0; };
		return { cpu_s: t.user_s + t.sys_s, user_s: t.user_s, sys_s: t.sys_s, main_user_s: mt.user_s, main_sys_s: mt.sys_s,
			rss_kb: kb('VmRSS'), hwm_kb: kb('VmHWM') };
	} catch {
		return { cpu_s: 0, user_s: 0, sys_s: 0, main_user_s: 0, main_sys_s: 0, rss_kb: 0, hwm_kb: 0 };
	}
}
// TcpExt counters of the (shared) network namespace: ListenOverflows shows a listener whose accept queue overflowed.
function tcpExt() {
	try {
		const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
		const h = lines[0].split(/\s+/), v = lines[1].split(/\s+/);
		const o = {};
		h.forEach((k, i) => { if (i) o[k] = Number(v[i]); });
		return o;
	} catch { return {}; }
}
function childPids(pid) {
	const r = spawnSync('pgrep', ['-P', String(pid)]);
	return r.stdout.toString().split('\n').filter(Boolean).map(Number);
}

// ------------------------------------------------------------------ systems
async function startMock({ keys = [{ key: KEY }], windowMs, cpu, chunks, interval }) {
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-mock-'));
	const pf = join(dir, 'port');
	const args = ['--listen', '127.0.0.1:0', '--port-file', pf, '--quiet'];
	for (const k of keys) args.push('--key', k.rpm ? `${k.key}:${k.rpm}` : k.key);
	if (windowMs) args.push('--window-ms', String(windowMs));
	// stream shape as defaults too: Portkey does not forward the X-Mock-* request headers
	if (chunks) args.push('--chunks', String(chunks), '--chunk-interval-ms', String(interval), '--first-chunk-delay-ms', '0');
	const h = startProc('mock', cpu, BIN.mock, args);
	const port = await waitFor(() => {
		if (h.exited()) throw new Error(`mock exited: ${h.out()}`);
		return existsSync(pf) && parseInt(readFileSync(pf, 'utf8'), 10);
	}, 10000, 'mock port');
	h.port = port;
	h.stats = async () => JSON.parse((await httpReq(port, 'GET', '/_mock/stats')).body);
	h.record = async () => JSON.parse((await httpReq(port, 'GET', '/_mock/record')).body).requests;
	const stop = h.stop;
	h.stop = async () => { await stop(); rmSync(dir, { recursive: true, force: true }); };
	return h;
}

function ctl(st, ...args) {
	return execFileSync(BIN.ctl, ['--db', st.db, ...args], { env: { ...process.env, SIDECAR_ENCRYPTION_KEY: st.key }, stdio: 'pipe' }).toString();
}

async function startSidecar(mock, { keys = [{ key: KEY, rpm: 100000 }], settings = {}, wrap = null, tls = null, dp = BIN.dp } = {}) {
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-sc-'));
	const st = { dir, db: join(dir, 'sidecar_v2.db'), key: randomBytes(32).toString('base64') };
	ctl(st, 'init');
	let y = 'providers:\n';
	keys.forEach((k, i) => {
		y += `- account: "bench-${String(i + 1).padStart(2, '0')}"\n  api_key: "${k.key}"\n` +
			`  endpoint_url: "${tls ? `https://127.0.0.1:${tls.port}` : `http://127.0.0.1:${mock.port}`}/v1"\n  model_prefix: "mock/"\n  pool: main\n  rpm_limit: ${k.rpm}\n`;
	});
	writeFileSync(join(dir, 'providers.yaml'), y);
	ctl(st, 'import', join(dir, 'providers.yaml'));
	for (const [k, v] of Object.entries(settings)) ctl(st, 'config', 'set', k, String(v));
	const pf = join(dir, 'ports');
	const dpArgs = ['--db', st.db, '--listen', '127.0.0.1:0',
		'--metrics-listen', '127.0.0.1:0', '--port-file', pf, '--log-level', 'warn', '--log-file', join(dir, 'dp.log')];
	if (tls) dpArgs.push('--ca-file', tls.ca);
	const h = wrap ? startProc('sidecar', CPU_PROXY, wrap[0], [...wrap.slice(1), dp, ...dpArgs], { env: { SIDECAR_ENCRYPTION_KEY: st.key } })
		: startProc('sidecar', CPU_PROXY, dp, dpArgs, { env: { SIDECAR_ENCRYPTION_KEY: st.key } });
	const port = await waitFor(() => {
		if (h.exited()) throw new Error(`sidecar-dataplane exited: ${h.out()}`);
		if (!existsSync(pf)) return null;
		const m = /data (\d+)/.exec(readFileSync(pf, 'utf8'));
		return m && +m[1];
	}, wrap ? 60000 : 10000, 'sidecar port file');
	h.port = port;
	h.mainPid = h.pid;
	h.workPids = () => [h.pid];
	h.logFile = join(dir, 'dp.log');
	const stop = h.stop;
	h.stop = async () => { await stop(); rmSync(dir, { recursive: true, force: true }); };
	return h;
}

async function startNginx(mock, { wrap = null, tls = null } = {}) {
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-nginx-'));
	const port = await freePort();
	const user = os.userInfo().username;
	// with tls: https to the TLS front, its certificate checked against the test CA, sessions reused
	const proxySsl = tls ? `\n\t\t\tproxy_ssl_trusted_certificate ${tls.ca};\n\t\t\tproxy_ssl_verify on;` +
		'\n\t\t\tproxy_ssl_name 127.0.0.1;\n\t\t\tproxy_ssl_session_reuse on;' : '';
	const conf = readFileSync(join(HERE, 'nginx.conf.in'), 'utf8')
		.replaceAll('@USER@', user).replaceAll('@DIR@', dir).replaceAll('@PORT@', String(port))
		.replaceAll('@MOCK_PORT@', String(tls ? tls.port : mock.port)).replaceAll('@KEY@', KEY).replaceAll('@MASTER@', wrap ? 'off' : 'on')
		.replaceAll('@SCHEME@', tls ? 'https' : 'http').replaceAll('@PROXY_SSL@', proxySsl);
	writeFileSync(join(dir, 'nginx.conf'), conf);
	const nargs = ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
	const h = wrap ? startProc('nginx', CPU_PROXY, wrap[0], [...wrap.slice(1), '/usr/sbin/nginx', ...nargs]) : startProc('nginx', CPU_PROXY, 'nginx', nargs);
	await waitFor(async () => {
		if (h.exited()) throw new Error(`nginx exited: ${h.out()} ${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`);
		try { return (await httpReq(port, 'GET', '/')).status > 0; } catch { return false; }
	}, wrap ? 60000 : 10000, 'nginx');
	h.port = port;
	h.workPids = () => childPids(h.pid);
	const stop = h.stop;
	h.stop = async () => { await stop(); rmSync(dir, { recursive: true, force: true }); };
	return h;
}

// Scenario 6: a test CA and a certificate for 127.0.0.1 (ECDSA P-256), made once per run.
let TLS_FILES = null;
function tlsFiles() {
	if (TLS_FILES) return TLS_FILES;
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-tls-'));
	process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
	const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
	o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
		'-days', '2', '-subj', '/CN=sidecar bench CA');
	o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
	writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n');
	o('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
	TLS_FILES = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
	return TLS_FILES;
}

// The HTTPS "provider": nginx ending TLS in front of the mock, on the load side's core.
async function startTlsFront(mock) {
	const f = tlsFiles();
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-tlsfront-'));
	const port = await freePort();
	const conf = readFileSync(join(HERE, 'nginx-tls-front.conf.in'), 'utf8')
		.replaceAll('@USER@', os.userInfo().username).replaceAll('@DIR@', dir).replaceAll('@PORT@', String(port))
		.replaceAll('@MOCK_PORT@', String(mock.port)).replaceAll('@CERT@', f.cert).replaceAll('@CERT_KEY@', f.key);
	writeFileSync(join(dir, 'nginx.conf'), conf);
	const h = startProc('tlsfront', CPU_LOAD, 'nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')]);
	await waitFor(async () => {
		if (h.exited()) throw new Error(`TLS front exited: ${h.out()} ${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`);
		return new Promise((res) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); res(true); }); s.on('error', () => res(false)); });
	}, 10000, 'TLS front');
	h.port = port;
	h.ca = f.ca;
	const stop = h.stop;
	h.stop = async () => { await stop(); rmSync(dir, { recursive: true, force: true }); };
	return h;
}

function portkeyConfig(mock, keys, extra = {}) {
	return JSON.stringify({
		...extra,
		strategy: { mode: 'loadbalance' },
		targets: keys.map((k) => ({ provider: 'openai', api_key: k.key, custom_host: `http://127.0.0.1:${mock.port}/v1`, weight: 1 })),
	});
}

async function startPortkey() {
	if (!existsSync(BIN.portkey)) throw new Error(`Portkey gateway not installed (${BIN.portkey})`);
	const port = await freePort();
	const h = startProc('portkey', CPU_PROXY, process.execPath, ['--require', join(HERE, 'portkey', 'loopback.cjs'),
		BIN.portkey, `--port=${port}`, '--headless'], { env: { NODE_ENV: 'production' }, cwd: join(HERE, 'portkey') });
	await waitFor(async () => {
		if (h.exited()) throw new Error(`portkey exited: ${h.out()}`);
		try { return (await httpReq(port, 'GET', '/')).status === 200; } catch { return false; }
	}, 20000, 'portkey');
	h.port = port;
	h.workPids = () => [h.pid];
	return h;
}

// A system under test for one scenario: mock + (proxy). Returns {url, headers, proxy, mock, stop}.
const SYSTEMS = ['direct', 'nginx', 'sidecar', 'portkey'];
async function bringUp(sys, { sidecarSettings = {}, mockCpu, chunks, interval, tls = false } = {}) {
	// the mock shares the load generator's core for every system, the floor included, so that the only
	// difference between "direct" and a proxy is the proxy (on its own core)
	const mock = await startMock({ cpu: mockCpu ?? CPU_LOAD, chunks, interval });
	const front = tls && sys !== 'direct' ? await startTlsFront(mock) : null;
	let proxy = null;
	const headers = [];
	if (sys === 'direct') headers.push(`Authorization: Bearer ${KEY}`);
	else if (sys === 'nginx') proxy = await startNginx(mock, { tls: front });
	else if (sys === 'sidecar') proxy = await startSidecar(mock, { settings: { ...SIDECAR_OPEN, ...sidecarSettings }, tls: front });
	else if (sys === 'portkey') {
		proxy = await startPortkey();
		headers.push(`x-portkey-config: ${portkeyConfig(mock, [{ key: KEY }])}`);
	}
	const port = proxy ? proxy.port : mock.port;
	return {
		sys, mock, proxy, headers, port,
		url: `http://127.0.0.1:${port}/v1/chat/completions`,
		async stop() { if (proxy) await proxy.stop(); if (front) await front.stop(); await mock.stop(); },
	};
}
// One key with no practical limit: rpm_limit is capped at 100000 per window, so a 1 s window.
// The load generators send no client token, so every connection between two requests counts as
// "pending" (issue 14): past max_pending_connections (default 1,024) the oldest is closed, which
// at 5,000 streams closed a third of them between rounds; it gets the same room as max_connections.
const SIDECAR_OPEN = { rpm_window_seconds: 1, rpm_window_margin_ms: 0, max_connections: 20000, max_pending_connections: 20000, queue_capacity: 10000 };
// Under callgrind the statistics flush and the status snapshot (once a second by default) run
// as often as the slowed-down run lasts, so their share of "instructions per request" follows the
// machine's load, not the code: the longest intervals keep them out of the count.
const SIDECAR_CG = { ...SIDECAR_OPEN, stats_flush_ms: 60000, status_publish_ms: 60000 };
// with an HTTPS upstream valgrind slows the TLS handshakes past the default 10 s connect timeout
const SIDECAR_CG_TLS = { ...SIDECAR_CG, upstream_connect_timeout: 300 };

// A redis-server for scenario 7 (nothing on disk), on the load side's core.
async function startRedisServer() {
	const port = await freePort();
	const h = startProc('redis', CPU_LOAD, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
		'--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning']);
	await waitFor(() => new Promise((res) => {
		const s = net.connect(port, '127.0.0.1', () => { s.destroy(); res(true); });
		s.on('error', () => res(false));
	}), 10000, 'redis-server');
	h.port = port;
	return h;
}

// ------------------------------------------------------------------ load
async function streamload(target, { body, conns = 1, requests, duration, rate, ramp, chunks, interval, firstDelay = 0, timeout = 60, cpu = CPU_LOAD }) {
	const args = ['--url', target.url, '--conns', String(conns), '--timeout-s', String(timeout)];
	if (body) args.push('--body', body);
	for (const h of target.headers) args.push('-H', h);
	if (requests) args.push('--requests', String(requests));
	if (duration) args.push('--duration', String(duration));
	if (rate) args.push('--rate', String(rate));
	if (ramp) args.push('--ramp-ms', String(ramp));
	if (chunks) args.push('--chunks', String(chunks), '--interval-ms', String(interval), '--first-delay-ms', String(firstDelay));
	const r = await run(cpu, BIN.load, args, { timeoutMs: ((duration || 0) + timeout + 120) * 1000 });
	if (r.code !== 0) throw new Error(`streamload failed (${r.code}): ${r.stderr}`);
	return JSON.parse(r.stdout);
}

async function wrk(target, { body, conns, duration }) {
	const r = await run(CPU_LOAD, 'wrk', ['-t', PIN && pinNow ? '1' : '2', '-c', String(conns), '-d', `${duration}s`, '--timeout', '10s',
		'-s', join(HERE, 'post.lua'), target.url],
	{ env: { BENCH_BODY: body, BENCH_HEADERS: target.headers.join('\n') }, timeoutMs: (duration + 60) * 1000 });
	const m = /BENCHJSON (.*)/.exec(r.stdout);
	if (!m) throw new Error(`wrk: no summary (${r.code}): ${r.stdout} ${r.stderr}`);
	return JSON.parse(m[1]);
}

// CPU and memory of the proxy's worker process(es) around fn().
async function measured(target, fn) {
	const pids = target.proxy ? target.proxy.workPids() : [target.mock.pid];
	const before = pids.map(procStat);
	const nb = tcpExt();
	const t0 = Date.now();
	const res = await fn();
	const el = (Date.now() - t0) / 1000;
	const after = pids.map(procStat);
	const na = tcpExt();
	res.listen_overflows = (na.ListenOverflows ?? 0) - (nb.ListenOverflows ?? 0);
	const sum = (k) => after.reduce((s, a, i) => s + a[k] - before[i][k], 0);
	const cpu = sum('cpu_s');
	// main_*: the first process's main thread (the data plane's event loop; for nginx, its worker's)
	return { res, cpu_s: cpu, user_s: sum('user_s'), sys_s: sum('sys_s'), main_user_s: after[0].main_user_s - before[0].main_user_s,
		main_sys_s: after[0].main_sys_s - before[0].main_sys_s, cpu_pct: el > 0 ? (100 * cpu) / el : 0,
		hwm_kb: after.reduce((s, a) => s + a.hwm_kb, 0), rss_kb: after.reduce((s, a) => s + a.rss_kb, 0), elapsed_s: el };
}

// ------------------------------------------------------------------ bodies
const BODY_DIR = mkdtempSync(join(os.tmpdir(), 'bench-bodies-'));
process.on('exit', () => rmSync(BODY_DIR, { recursive: true, force: true }));
function bodyFile(name, obj) {
	const f = join(BODY_DIR, name);
	writeFileSync(f, JSON.stringify(obj));
	return f;
}
function padTo(obj, size, fill) {
	const base = JSON.stringify(obj).length;
	fill(obj, 'x'.repeat(Math.max(0, size - base)));
	return obj;
}
// 1 KB chat completion.
const BODY_SMALL = bodyFile('small.json', padTo({ model: MODEL, max_tokens: 64, messages: [
	{ role: 'system', content: 'You are a helpful assistant.' },
	{ role: 'user', content: '' }] }, 1024, (o, s) => { o.messages[1].content = 'Summarise this: ' + s.slice(16); }));
// OpenClaw-sized: 60 KB with tools, streaming.
function openclawBody() {
	const tools = [];
	for (let i = 0; i < 24; i++) {
		tools.push({ type: 'function', function: { name: `tool_${i}`, description: `Tool number ${i}: does something useful with files, shells and the web. `.repeat(3),
			parameters: { type: 'object', properties: { path: { type: 'string', description: 'A path' }, query: { type: 'string', description: 'What to look for' },
				limit: { type: 'integer', description: 'At most this many' } }, required: ['path'] } } });
	}
	const messages = [{ role: 'system', content: 'You are OpenClaw, an agent. '.repeat(40) }];
	for (let i = 0; i < 30; i++) {
		messages.push({ role: 'user', content: `Step ${i}: please look at the repository and continue. ` });
		messages.push({ role: 'assistant', content: `Working on step ${i}. `.repeat(10) });
	}
	const o = { model: MODEL, stream: true, max_tokens: 1024, tools, tool_choice: 'auto', messages };
	return padTo(o, 60 * 1024, (obj, s) => { obj.messages.push({ role: 'user', content: s }); });
}
const BODY_OPENCLAW = bodyFile('openclaw.json', openclawBody());
const BODY_STREAM = bodyFile('stream.json', { model: MODEL, stream: true, messages: [{ role: 'user', content: 'Tell me a story.' }] });
const BODY_8MB = bodyFile('large.json', padTo({ model: MODEL, messages: [{ role: 'user', content: '' }] }, 8 * 1024 * 1024,
	(o, s) => { o.messages[0].content = s; }));

// ------------------------------------------------------------------ results
const R = { meta: {}, s1: {}, s2: {}, s3: {}, s4: {}, s4b: {}, s5: {}, s6: {}, s7: {}, notes: [], errors: [], profile: null };
function note(s) { R.notes.push(s); log('note:', s); }
// The machine's load average when a scenario starts: other sessions share it.
function loadMark(name) {
	const la = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
	(R.load ||= {})[name] = la;
	log(`  load average ${la}`);
}
async function tryOrNote(what, fn) {
	try { return await fn(); } catch (e) {
		R.errors.push(`${what}: ${e.message.split('\n')[0].slice(0, 400)}`);
		log(`FAILED ${what}:`, e.message.slice(0, 2000));
		return null;
	}
}

// ------------------------------------------------------------------ scenarios
// Scenario 1's and 6's max throughput: P.s1Runs wrk runs on one system. The best run (other
// tenants of a shared machine only ever make a run slower) or, with --runs, the median run
// (req/s) and the median requests per proxy CPU-second.
async function throughput(t) {
	const xs = [];
	for (let i = 0; i < P.s1Runs; i++) xs.push(await measured(t, () => wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: P.s1Dur })));
	const pc = (x) => (x.cpu_s > 0 ? x.res.requests / x.cpu_s : null);
	const byRps = [...xs].sort((a, b) => a.res.rps - b.res.rps);
	const m = MEDIAN ? byRps[(byRps.length - 1) >> 1] : byRps[byRps.length - 1];
	const us = (k) => (m.res.requests > 0 ? (1e6 * m[k]) / m.res.requests : null);
	return { max: m.res, runs: xs.map((x) => Math.round(x.res.rps)), per_cpu_runs: xs.map((x) => Math.round(pc(x) ?? 0)),
		cpu_pct: m.cpu_pct, cpu_s: m.cpu_s, per_cpu_s: MEDIAN ? median(xs.map(pc)) : pc(m), hwm_kb: m.hwm_kb, pick: MEDIAN ? 'median' : 'best',
		// the picked run's CPU per request, user and system, for the process and its main thread
		split_us: { user: us('user_s'), sys: us('sys_s'), main_user: us('main_user_s'), main_sys: us('main_sys_s') } };
}

// The libcurl floor (issue 20, bench/floor.c) timed: scenario 1's request straight to the mock, or
// through the TLS front (tls), P.floorN transfers P.s1Conns (64) at a time — the concurrency wrk's
// connections give the proxies — after 1,000 warm-up ones; the floor
// pinned where the proxy runs, the mock (and the TLS front) on the load side's core. Its own
// utime+stime per transfer: the lowest of P.s1Runs runs, or with --runs the median.
async function floorTimed(tls) {
	const mock = await startMock({ cpu: CPU_LOAD });
	const front = tls ? await startTlsFront(mock) : null;
	const was = pinNow;
	try {
		const url = front ? `https://127.0.0.1:${front.port}/v1/chat/completions` : `http://127.0.0.1:${mock.port}/v1/chat/completions`;
		const args = ['--url', url, '--body', BODY_SMALL, '--transfers', String(P.floorN), '--concurrency', String(P.s1Conns),
			'--warmup', '1000', '-H', `Authorization: Bearer ${KEY}`, ...(front ? ['--cacert', front.ca] : [])];
		const xs = [];
		pinNow = true;
		for (let i = 0; i < P.s1Runs; i++) {
			const r = await run(CPU_PROXY, BIN.floor, args, { timeoutMs: 900000 });
			if (r.code !== 0) throw new Error(`floor failed (${r.code}): ${r.stderr.slice(-400)} ${r.stdout}`);
			xs.push(JSON.parse(r.stdout));
		}
		const byCpu = [...xs].sort((a, b) => a.cpu_us_per_transfer - b.cpu_us_per_transfer);
		const m = MEDIAN ? byCpu[(byCpu.length - 1) >> 1] : byCpu[0];
		return { ...m, cpu_runs: xs.map((x) => x.cpu_us_per_transfer), rps_runs: xs.map((x) => Math.round(x.rps)), pick: MEDIAN ? 'median' : 'lowest',
			concurrency: P.s1Conns, split_us: { user: (1e6 * m.utime_s) / m.transfers, sys: (1e6 * m.stime_s) / m.transfers } };
	} finally {
		pinNow = was;
		if (front) await front.stop();
		await mock.stop();
	}
}

async function scenario1() {
	loadMark('1');
	log('scenario 1: small chat completion, max req/s then latency at half of nginx max');
	pinNow = false;
	for (const sys of SYSTEMS) {
		await tryOrNote(`s1 ${sys} throughput`, async () => {
			const t = await bringUp(sys);
			try {
				await wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: P.s1Warm });
				R.s1[sys] = await throughput(t);
				const m = R.s1[sys];
				log(`  ${sys}: ${m.max.rps.toFixed(0)} req/s (runs ${m.runs}), ${f0(m.per_cpu_s)} per proxy CPU-s (runs ${m.per_cpu_runs}), wrk p50 ${m.max.lat_us.p50} us p99 ${m.max.lat_us.p99} us, errors ${JSON.stringify(m.max.errors)}`);
			} finally { await t.stop(); }
		});
	}
	pinNow = true;
	await tryOrNote('s1 libcurl floor', async () => {
		R.s1.floor = await floorTimed(false);
		log(`  libcurl floor: ${R.s1.floor.cpu_us_per_transfer} CPU us per transfer (runs ${R.s1.floor.cpu_runs}), ${f0(R.s1.floor.rps)} transfers/s, ${R.s1.floor.failures} failures`);
	});
	const nginxMax = R.s1.nginx?.max?.rps;
	const rate = Math.round((nginxMax || R.s1.direct?.max?.rps || 2000) / 2);
	R.s1.rate = rate;
	for (const sys of SYSTEMS) {
		await tryOrNote(`s1 ${sys} latency`, async () => {
			let r = rate;
			const own = R.s1[sys]?.max?.rps;
			if (own && own < rate * 1.05) {
				r = Math.round(own / 2);
				R.s1[sys].lat_rate_note = `its max ${own.toFixed(0)} req/s is below the common rate ${rate}; measured at half its own max`;
			}
			const t = await bringUp(sys);
			try {
				await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, requests: 500 });
				let res = null;
				const p99s = [];
				for (let i = 0; i < (sys === 'portkey' ? 1 : P.s1LatRuns); i++) {
					const x = await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, rate: r, duration: P.s1Dur, timeout: 30 });
					p99s.push(x.lat_us.p99);
					if (!res || x.lat_us.p99 < res.lat_us.p99) res = x;
				}
				R.s1[sys] = { ...(R.s1[sys] || {}), fixed: res, fixed_rate: r, fixed_p99s: p99s };
				// and at a light load, where nothing is near saturation: the per-request overhead alone
				const lr = R.s1[sys].lat_rate_note ? Math.min(P.s1Light, r) : P.s1Light;
				let light = null;
				for (let i = 0; i < (sys === 'portkey' ? 1 : P.s1LatRuns); i++) {
					const x = await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, rate: lr, duration: P.s1Dur, timeout: 30 });
					if (!light || x.lat_us.p99 < light.lat_us.p99) light = x;
				}
				R.s1[sys].light = light;
				R.s1[sys].light_rate = lr;
				log(`  ${sys} @${lr}/s: p50 ${light.lat_us.p50} us p99 ${light.lat_us.p99} us ok ${light.ok}/${light.issued}`);
				log(`  ${sys} @${r}/s: p50 ${res.lat_us.p50} us p99 ${res.lat_us.p99} us ok ${res.ok}/${res.issued}`);
			} finally { await t.stop(); }
		});
	}
}

// Scenario 1's small request with an HTTPS upstream (every real provider is HTTPS): nginx
// (proxy_pass https:// with a keep-alive pool) and the data plane (https endpoint_url, --ca-file)
// in front of the same TLS front; "direct" is the plain mock as in scenario 1, so "added" includes
// the TLS front's work, which both proxies pay alike.
const SYSTEMS6 = ['direct', 'nginx', 'sidecar'];
async function scenario6() {
	loadMark('6');
	log('scenario 6: small chat completion with an HTTPS upstream (TLS front, test CA)');
	pinNow = false;
	for (const sys of SYSTEMS6) {
		await tryOrNote(`s6 ${sys} throughput`, async () => {
			const t = await bringUp(sys, { tls: true });
			try {
				await wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: P.s1Warm });
				R.s6[sys] = await throughput(t);
				const m = R.s6[sys];
				log(`  ${sys}: ${m.max.rps.toFixed(0)} req/s (runs ${m.runs}), ${f0(m.per_cpu_s)} per proxy CPU-s (runs ${m.per_cpu_runs}), errors ${JSON.stringify(m.max.errors)}`);
			} finally { await t.stop(); }
		});
	}
	pinNow = true;
	await tryOrNote('s6 libcurl floor', async () => {
		R.s6.floor = await floorTimed(true);
		log(`  libcurl floor (https): ${R.s6.floor.cpu_us_per_transfer} CPU us per transfer (runs ${R.s6.floor.cpu_runs}), ${f0(R.s6.floor.rps)} transfers/s, ${R.s6.floor.failures} failures`);
	});
	for (const sys of SYSTEMS6) {
		await tryOrNote(`s6 ${sys} latency`, async () => {
			const t = await bringUp(sys, { tls: true });
			try {
				await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, requests: 500 });
				let light = null;
				for (let i = 0; i < P.s1LatRuns; i++) {
					const x = await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, rate: P.s1Light, duration: P.s1Dur, timeout: 30 });
					if (!light || x.lat_us.p99 < light.lat_us.p99) light = x;
				}
				R.s6[sys] = { ...(R.s6[sys] || {}), light };
				log(`  ${sys} @${P.s1Light}/s: p50 ${light.lat_us.p50} us p99 ${light.lat_us.p99} us ok ${light.ok}/${light.issued}`);
			} finally { await t.stop(); }
		});
	}
}

async function scenario2() {
	loadMark('2');
	log('scenario 2: OpenClaw-sized streaming request (60 KB with tools)');
	for (const sys of SYSTEMS) {
		await tryOrNote(`s2 ${sys}`, async () => {
			const t = await bringUp(sys, { chunks: P.s2Chunks, interval: P.s2Interval });
			try {
				const o = { body: BODY_OPENCLAW, conns: P.s2Conns, chunks: P.s2Chunks, interval: P.s2Interval };
				await streamload(t, { ...o, requests: 20 });
				const res = await streamload(t, { ...o, requests: P.s2Req });
				R.s2[sys] = res;
				log(`  ${sys}: first event p50 ${res.first_event_us.p50} us p99 ${res.first_event_us.p99}, last byte p50 ${res.lat_us.p50} p99 ${res.lat_us.p99}, ok ${res.ok}/${res.issued}`);
			} finally { await t.stop(); }
		});
	}
}

async function scenario3() {
	loadMark('3');
	log('scenario 3: concurrent SSE streams');
	for (const n of P.s3Sizes) {
		R.s3[n] = {};
		for (const sys of SYSTEMS) {
			if (sys === 'portkey' && n > 1000 && Q) { R.s3[n].portkey_skipped = true; continue; }
			await tryOrNote(`s3 ${sys} ${n}`, async () => {
				const t = await bringUp(sys, { chunks: P.s3Chunks, interval: P.s3Interval });
				try {
					const o = { body: BODY_STREAM, conns: n, chunks: P.s3Chunks, interval: P.s3Interval, ramp: Math.max(500, n / 5), timeout: 60 };
					const rounds = sys === 'portkey' ? 1 : P.s3Rounds;
					let m = await measured(t, () => streamload(t, { ...o, requests: n * rounds }));
					const p99s = [m.res.chunk_delay_us.p99];
					const hwms = [m.hwm_kb];
					for (let i = 1; i < (sys === 'portkey' ? 1 : P.s3Runs); i++) {
						// best of runs by p99 on a fresh process (so peak RSS stays per run)
						await t.stop();
						Object.assign(t, await bringUp(sys, { chunks: P.s3Chunks, interval: P.s3Interval }));
						const x = await measured(t, () => streamload(t, { ...o, requests: n * rounds }));
						p99s.push(x.res.chunk_delay_us.p99);
						hwms.push(x.hwm_kb);
						if (x.res.chunk_delay_us.p99 < m.res.chunk_delay_us.p99) m = x;
					}
					m.res.p99_runs = p99s;
					R.s3[n][sys] = { ...m.res, rounds, cpu_s: m.cpu_s, cpu_pct: m.cpu_pct, hwm_kb: m.hwm_kb, rss_kb: m.rss_kb, hwm_runs: hwms, hwm_median_kb: median(hwms) };
					const mk = await t.mock.stats();
					R.s3[n][sys].mock_max_streams = mk.max_concurrent_streams;
					R.s3[n][sys].upstream_conns = mk.connections_total;
					const e = m.res.errors;
					log(`  ${sys} x${n}: chunk delay p50 ${m.res.chunk_delay_us.p50} us p99 ${m.res.chunk_delay_us.p99}, peak ${m.res.peak_active}, ` +
						`ok ${m.res.ok}/${m.res.issued} short ${m.res.short_streams} err ${JSON.stringify(e)}, HWM ${(m.hwm_kb / 1024).toFixed(1)} MB, CPU ${m.cpu_s.toFixed(2)} s, ${m.res.elapsed_s} s, listen overflows ${m.res.listen_overflows}, p99 runs ${m.res.p99_runs}`);
				} finally { await t.stop(); }
			});
		}
		// the libcurl floor's memory for the same streams: n transfers at once (no warm-up: the
		// peak is what n concurrent transfers with their connections hold), its own peak RSS
		await tryOrNote(`s3 libcurl floor ${n}`, async () => {
			const t = await bringUp('direct', { chunks: P.s3Chunks, interval: P.s3Interval });
			const was = pinNow;
			try {
				pinNow = true;
				// the data plane's receive buffer for a stream (UPSTREAM_STREAM_BUF in dataplane/upstream.c)
				const r = await run(CPU_PROXY, BIN.floor, ['--url', t.url, '--body', BODY_STREAM, '--transfers', String(n * P.s3Rounds),
					'--concurrency', String(n), '--warmup', '0', '--buffer-size', '1024', '-H', `Authorization: Bearer ${KEY}`, '-H', `X-Mock-Chunks: ${P.s3Chunks}`,
					'-H', `X-Mock-Interval-Ms: ${P.s3Interval}`, '-H', 'X-Mock-First-Delay-Ms: 0'], { timeoutMs: 600000 });
				if (r.code !== 0) throw new Error(`floor failed (${r.code}): ${r.stderr.slice(-400)} ${r.stdout}`);
				R.s3[n].floor = JSON.parse(r.stdout);
				log(`  libcurl floor x${n}: peak RSS ${(R.s3[n].floor.maxrss_kb / 1024).toFixed(1)} MB, ${R.s3[n].floor.failures} failures, CPU ${R.s3[n].floor.cpu_us_per_transfer} us per stream`);
			} finally { pinNow = was; await t.stop(); }
		});
	}
}

// Portkey twice: its plain loadbalance config, and the same with its retry block (3 attempts on 429).
const S4_SYSTEMS = ['sidecar', 'portkey', 'portkey_retry'];
async function scenario4() {
	loadMark('4');
	log('scenario 4: scheduling under oversubscription (11 keys, compressed window)');
	const keys = [];
	for (let i = 1; i <= P.s4Keys; i++) keys.push({ key: `nvapi-TEST-${String(i).padStart(4, '0')}-xxxxxxxxxxxxxxxx`, rpm: P.s4Rpm });
	const winMs = P.s4WindowS * 1000;
	const capPerS = (P.s4Keys * P.s4Rpm) / P.s4WindowS;
	const dur = P.s4Windows * P.s4WindowS;
	const rate = 2 * capPerS;
	R.s4.setup = { keys: P.s4Keys, rpm: P.s4Rpm, window_s: P.s4WindowS, margin_ms: P.s4MarginMs, capacity_per_s: capPerS, demand_per_s: rate, duration_s: dur };
	for (const sys of S4_SYSTEMS) {
		if (sys !== 'sidecar' && !SYSTEMS.includes('portkey')) continue;
		if (sys === 'portkey_retry' && Q) continue;	/* --quick stays under 3 minutes */
		await tryOrNote(`s4 ${sys}`, async () => {
			const mock = await startMock({ keys, windowMs: winMs, cpu: CPU_LOAD });
			let proxy = null;
			try {
				const headers = [];
				if (sys === 'sidecar') {
					proxy = await startSidecar(mock, { keys, settings: { rpm_window_seconds: P.s4WindowS, rpm_window_margin_ms: P.s4MarginMs, max_connections: 20000 } });
				} else {
					proxy = await startPortkey();
					headers.push(`x-portkey-config: ${portkeyConfig(mock, keys, sys === 'portkey_retry' ? { retry: { attempts: 3, on_status_codes: [429] } } : {})}`);
				}
				const t = { url: `http://127.0.0.1:${proxy.port}/v1/chat/completions`, headers, proxy, mock };
				const res = await streamload(t, { body: BODY_SMALL, conns: 1500, rate, duration: dur, timeout: 45 });
				const stats = await mock.stats();
				const rec = await mock.record();
				let acc = 0, r429 = 0;
				for (const k of Object.values(stats.by_key)) { acc += k.accepted; r429 += k.rejected_429; }
				// goodput: upstream successes whose start lies in the demand period, against the capacity of that period
				const ok = rec.filter((e) => e.status === 200).map((e) => e.t_ms).sort((a, b) => a - b);
				const t0 = rec.length ? Math.min(...rec.map((e) => e.t_ms)) : 0;
				const inWin = ok.filter((x) => x < t0 + dur * 1000).length;
				const capacity = P.s4Keys * P.s4Rpm * P.s4Windows;
				R.s4[sys] = { client: res, upstream_accepted: acc, upstream_429: r429, goodput: inWin, capacity, goodput_frac: inWin / capacity,
					client_errors: res.issued - res.ok, by_status: res.status, per_key: stats.by_key };
				log(`  ${sys}: goodput ${inWin}/${capacity} (${(100 * inWin / capacity).toFixed(1)}%), upstream 429 ${r429}, client ${JSON.stringify(res.status)} errors ${JSON.stringify(res.errors)}, queue p50 ${res.queue_ms.p50} ms p99 ${res.queue_ms.p99} ms`);
			} finally {
				if (proxy) await proxy.stop();
				await mock.stop();
			}
		});
	}
}

// 4b (issue 15): the upstream's real limit is lower than configured. The mock
// enforces s4bRealRpm per key, the sidecar is told s4Rpm. Runs: the data plane
// given with --dp-before (before issue 15), this build with learn_limits 0,
// this build as is (learned limits, episodes, half-open).
const S4B_RUNS = ['before', 'learn_off', 'after'];
async function scenario4b() {
	loadMark('4b');
	log(`scenario 4b: real limit ${P.s4bRealRpm} per key, configured ${P.s4Rpm} (11 keys, compressed window)`);
	const mkeys = [], skeys = [];
	for (let i = 1; i <= P.s4Keys; i++) {
		const k = `nvapi-TEST-${String(i).padStart(4, '0')}-xxxxxxxxxxxxxxxx`;
		mkeys.push({ key: k, rpm: P.s4bRealRpm });
		skeys.push({ key: k, rpm: P.s4Rpm });
	}
	const realPerS = (P.s4Keys * P.s4bRealRpm) / P.s4WindowS;
	const dur = P.s4bWindows * P.s4WindowS;
	const rate = 1.5 * (P.s4Keys * P.s4Rpm) / P.s4WindowS;	/* above the configured capacity, so above the real one too */
	R.s4b.setup = { keys: P.s4Keys, configured: P.s4Rpm, real: P.s4bRealRpm, window_s: P.s4WindowS, margin_ms: P.s4MarginMs,
		real_capacity_per_s: realPerS, demand_per_s: rate, duration_s: dur, windows: P.s4bWindows, before: opt.dpBefore || null };
	for (const run of S4B_RUNS) {
		if (run === 'before' && !opt.dpBefore) continue;
		await tryOrNote(`s4b ${run}`, async () => {
			const mock = await startMock({ keys: mkeys, windowMs: P.s4WindowS * 1000, cpu: CPU_LOAD });
			let proxy = null;
			try {
				const settings = { rpm_window_seconds: P.s4WindowS, rpm_window_margin_ms: P.s4MarginMs, max_connections: 20000,
					cooldown_base_seconds: 1, cooldown_max_seconds: 30 };
				if (run === 'learn_off') settings.learn_limits = 0;
				proxy = await startSidecar(mock, { keys: skeys, settings, dp: run === 'before' ? opt.dpBefore : BIN.dp });
				const t = { url: `http://127.0.0.1:${proxy.port}/v1/chat/completions`, headers: [], proxy, mock };
				const res = await streamload(t, { body: BODY_SMALL, conns: 1500, rate, duration: dur, timeout: 45 });
				const stats = await mock.stats();
				const rec = await mock.record();
				let r429 = 0;
				for (const k of Object.values(stats.by_key)) r429 += k.rejected_429;
				const t0 = rec.length ? Math.min(...rec.map((e) => e.t_ms)) : 0;
				const ok = rec.filter((e) => e.status === 200 && e.t_ms < t0 + dur * 1000).length;
				// after the first window: where learning has had its chance
				const late429 = rec.filter((e) => e.status === 429 && e.t_ms >= t0 + P.s4WindowS * 1000 && e.t_ms < t0 + dur * 1000).length;
				const capacity = P.s4Keys * P.s4bRealRpm * P.s4bWindows;
				R.s4b[run] = { client: res, upstream_429: r429, upstream_429_after_first_window: late429, goodput: ok, capacity,
					goodput_frac: ok / capacity, by_status: res.status };
				log(`  ${run}: goodput ${ok}/${capacity} (${(100 * ok / capacity).toFixed(1)}%), upstream 429 ${r429} (${late429} after the first window), ` +
					`client ${JSON.stringify(res.status)}, queue p50 ${res.queue_ms.p50} ms p99 ${res.queue_ms.p99} ms`);
			} finally {
				if (proxy) await proxy.stop();
				await mock.stop();
			}
		});
	}
}

async function scenario5() {
	loadMark('5');
	log('scenario 5: 8 MB request body');
	for (const sys of SYSTEMS) {
		await tryOrNote(`s5 ${sys}`, async () => {
			const t = await bringUp(sys);
			try {
				await streamload(t, { body: BODY_8MB, conns: 1, requests: 2 });
				const res = await streamload(t, { body: BODY_8MB, conns: 1, requests: P.s5Req, timeout: 30 });
				R.s5[sys] = res;
				log(`  ${sys}: p50 ${res.lat_us.p50} us p99 ${res.lat_us.p99} us ok ${res.ok}/${res.issued} ${JSON.stringify(res.status)}`);
			} finally { await t.stop(); }
		});
	}
}

// Scenario 7: the same small request through the data plane deciding alone and with its
// admission in Redis (docs/cluster.md): one EVALSHA round trip per upstream start.
const SYSTEMS7 = ['sidecar', 'sidecar_redis'];
async function scenario7() {
	loadMark('7');
	log('scenario 7: cluster admission through Redis vs local, small chat completion');
	for (const sys of SYSTEMS7) {
		await tryOrNote(`s7 ${sys}`, async () => {
			const redis = sys === 'sidecar_redis' ? await startRedisServer() : null;
			const mock = await startMock({ cpu: CPU_LOAD });
			const settings = { ...SIDECAR_OPEN, ...(redis ? { redis_url: `redis://127.0.0.1:${redis.port}/0`, cluster_host_name: 'bench' } : {}) };
			const proxy = await startSidecar(mock, { settings });
			const t = { sys, mock, proxy, headers: [], port: proxy.port, url: `http://127.0.0.1:${proxy.port}/v1/chat/completions` };
			try {
				if (redis) {
					await waitFor(async () => /"mode":"shared"/.test((await httpReq(proxy.port, 'GET', '/health')).body), 10000, 'shared mode');
				}
				pinNow = false;
				await wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: P.s1Warm });
				let m = null;
				const all = [];
				for (let i = 0; i < P.s1Runs; i++) {
					const x = await measured(t, () => wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: P.s1Dur }));
					all.push(Math.round(x.res.rps));
					if (!m || x.res.rps > m.res.rps) m = x;
				}
				pinNow = true;
				let light = null;
				for (let i = 0; i < P.s1LatRuns; i++) {
					const x = await streamload(t, { body: BODY_SMALL, conns: P.s1Conns, rate: P.s1Light, duration: P.s1Dur, timeout: 30 });
					if (!light || x.lat_us.p99 < light.lat_us.p99) light = x;
				}
				const started = (await mock.stats()).requests;
				R.s7[sys] = { max: m.res, runs: all, cpu_pct: m.cpu_pct, light, light_rate: P.s1Light, upstream: started };
				log(`  ${sys}: ${m.res.rps.toFixed(0)} req/s; @${P.s1Light}/s p50 ${light.lat_us.p50} us p99 ${light.lat_us.p99} us ok ${light.ok}/${light.issued}`);
			} finally {
				await proxy.stop();
				await mock.stop();
				if (redis) await redis.stop();
			}
		});
	}
}

// Profile the data plane (perf) under scenario 1 and 3 load; top functions.
async function profile() {
	const perf = spawnSync('perf', ['--version']);
	if (perf.status !== 0) { note('perf is not available: no profile'); return; }
	R.profile = {};
	for (const [what, pin, fn] of [
		['scenario 1 (max req/s)', false, (t) => wrk(t, { body: BODY_SMALL, conns: P.s1Conns, duration: Q ? 3 : 5 })],
		['scenario 3 (5,000 streams)', true, (t) => streamload(t, { body: BODY_STREAM, conns: 5000, requests: 5000, chunks: P.s3Chunks, interval: P.s3Interval, ramp: 1000 })],
	]) {
		pinNow = pin;
		await tryOrNote(`profile ${what}`, async () => {
			const t = await bringUp('sidecar', { chunks: P.s3Chunks, interval: P.s3Interval });
			const data = join(OUT, `perf-${R.profile ? Object.keys(R.profile).length : 0}.data`);
			try {
				// DWARF unwinding: the -O2 build has no frame pointers
				const rec = spawn('perf', ['record', '-F', '299', '--call-graph', 'dwarf,16384', '-o', data, '-p', String(t.proxy.pid)], { stdio: 'ignore' });
				const h = { pid: rec.pid };
				live.add(h);
				const done = new Promise((r) => rec.on('exit', r));
				await sleep(300);
				await fn(t);
				rec.kill('SIGINT');
				await done;
				live.delete(h);
				const rep = spawnSync('perf', ['report', '-i', data, '--stdio', '--no-children', '--sort', 'symbol', '--percent-limit', '1.5', '-g', 'none'], { maxBuffer: 64 << 20 });
				const lines = rep.stdout.toString().split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, 25);
				const dso = spawnSync('perf', ['report', '-i', data, '--stdio', '--no-children', '--sort', 'dso', '--percent-limit', '1', '-g', 'none'], { maxBuffer: 64 << 20 });
				const dsoLines = dso.stdout.toString().split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, 12);
				const inc = spawnSync('perf', ['report', '-i', data, '--stdio', '--children', '--sort', 'dso,symbol', '--percent-limit', '1.5', '-g', 'none'], { maxBuffer: 256 << 20 });
				const incLines = inc.stdout.toString().split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l))
					.filter((l) => /sidecar-dataplane|\] (\S*poll|curl_|json_|sqlite3_|malloc|free|__libc_write|__libc_read|__libc_send|__libc_recv)/.test(l))
					.filter((l) => !/\] (_start|main|__libc)/.test(l)).slice(0, 30);
				R.profile[what] = { symbols: lines.map((l) => l.trim()), dsos: dsoLines.map((l) => l.trim()), inclusive: incLines.map((l) => l.trim()) };
				log(`  profile ${what}:\n    ${lines.slice(0, 12).join('\n    ')}`);
			} finally { await t.stop(); rmSync(data, { force: true }); rmSync(`${data}.old`, { force: true }); }
		});
	}
	pinNow = true;
	await tryOrNote('callgrind', callgrind);
}

// Instructions per request under callgrind: deterministic, so unlike times it does not
// depend on what else the machine is doing. Counters are zeroed after a warm-up.
async function callgrind() {
	if (spawnSync('valgrind', ['--version']).status !== 0) { note('valgrind is not available: no callgrind profile'); return; }
	R.callgrind = {};
	R.callgrind_tls = {};
	// the plain upstream (with streams), then the HTTPS one through the TLS front (requests only);
	// BENCH_CG_SYS=sidecar and BENCH_CG_PLAIN=1 narrow it while working on one change (bench/README.md)
	const systems = (process.env.BENCH_CG_SYS || 'floor,sidecar,nginx').split(',');
	for (const tls of process.env.BENCH_CG_PLAIN ? [false] : [false, true]) {
		for (const sys of systems) {
			await tryOrNote(`callgrind ${sys}${tls ? ' https' : ''}`, () => (sys === 'floor' ? callgrindFloor(tls) : callgrindOne(sys, tls)));
		}
	}
}

// The program total of a callgrind dump (instructions, Ir).
function cgTotal(file) {
	const ann = spawnSync('callgrind_annotate', [file], { maxBuffer: 64 << 20 }).stdout.toString();
	const tot = /([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS/.exec(ann) || /([\d,]+)\s+PROGRAM TOTALS/.exec(ann);
	return tot ? Number(tot[1].replace(/,/g, '')) : null;
}

// The libcurl floor under callgrind: bench/floor.c zeroes the counters itself after its warm-up
// (300 transfers, as the data plane gets 300 warm-up requests) and dumps them after the measured
// transfers (callgrind.out.1), so the dump holds exactly those. Plain upstream: also per stream of
// 50 SSE chunks (20 at a time, as the data plane's stream figure).
async function callgrindFloor(tls) {
	const mock = await startMock({ cpu: CPU_LOAD });
	const front = tls ? await startTlsFront(mock) : null;
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-cgf-'));
	try {
		const url = front ? `https://127.0.0.1:${front.port}/v1/chat/completions` : `http://127.0.0.1:${mock.port}/v1/chat/completions`;
		// valgrind slows the TLS handshakes of 32 new connections past the default 10 s connect timeout
		const common = ['--url', url, '-H', `Authorization: Bearer ${KEY}`, '--connect-timeout-s', '300', '--timeout-s', '300', ...(front ? ['--cacert', front.ca] : [])];
		const one = async (name, args) => {
			const out = join(dir, `${name}.out`);
			const r = await run(CPU_PROXY, 'valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, BIN.floor, ...common, ...args], { timeoutMs: 900000 });
			if (r.code !== 0) throw new Error(`floor under callgrind failed (${r.code}): ${r.stderr.slice(-600)} ${r.stdout}`);
			const res = JSON.parse(r.stdout.trim().split('\n').pop());
			if (!existsSync(`${out}.1`)) throw new Error(`no callgrind dump ${out}.1`);
			return { res, total: cgTotal(`${out}.1`) };
		};
		const q = await one('requests', ['--body', BODY_SMALL, '--transfers', String(P.floorCgN), '--warmup', '300', '--concurrency', String(P.floorConc)]);
		const e = { requests: q.res.transfers, failures: q.res.failures, new_connections: q.res.new_connections, total_ir: q.total,
			ir_per_request: q.total && q.res.transfers ? q.total / q.res.transfers : null, concurrency: P.floorConc };
		if (!tls) {
			const st = await one('streams', ['--body', BODY_STREAM, '--transfers', String(Q ? 40 : 100), '--warmup', '20', '--concurrency', '20', '--buffer-size', '1024',
				'-H', 'X-Mock-Chunks: 50', '-H', 'X-Mock-Interval-Ms: 20', '-H', 'X-Mock-First-Delay-Ms: 0']);
			e.streams = st.res.transfers;
			e.ir_per_stream = st.total && st.res.transfers ? st.total / st.res.transfers : null;
			e.ir_per_chunk = e.ir_per_stream ? e.ir_per_stream / 50 : null;
		}
		(tls ? R.callgrind_tls : R.callgrind).floor = e;
		log(`  callgrind floor${tls ? ' https' : ''}: ${e.ir_per_request ? Math.round(e.ir_per_request).toLocaleString('en-US') : '?'} instructions per transfer (${e.requests}, ${e.failures} failed)` +
			`${e.ir_per_stream ? `, ${Math.round(e.ir_per_stream).toLocaleString('en-US')} per stream of 50 chunks` : ''}`);
	} finally {
		if (process.env.BENCH_CALLGRIND_KEEP) spawnSync('cp', ['-r', dir, join(process.env.BENCH_CALLGRIND_KEEP, `floor${tls ? '-https' : ''}`)]);
		rmSync(dir, { recursive: true, force: true });
		if (front) await front.stop();
		await mock.stop();
	}
}

async function callgrindOne(sys, tls = false) {
	const N = Q ? 1000 : 3000;
	const mock = await startMock({ cpu: CPU_LOAD });
	const front = tls ? await startTlsFront(mock) : null;
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-cg-'));
	const out = join(dir, 'callgrind.out');
	const wrap = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`];
	let px = null;
	try {
		px = sys === 'sidecar' ? await startSidecar(mock, { settings: tls ? SIDECAR_CG_TLS : SIDECAR_CG, wrap, tls: front }) : await startNginx(mock, { wrap, tls: front });
		const t = { url: `http://127.0.0.1:${px.port}/v1/chat/completions`, headers: [], proxy: px, mock };
		// (under valgrind on a busy machine an HTTPS run takes minutes: streamload's own bound is timeout + 120 s)
		await streamload(t, { body: BODY_SMALL, conns: 8, requests: 300, timeout: tls ? 600 : 60 });
		spawnSync('callgrind_control', ['-z', String(px.pid)]);
		const res = await streamload(t, { body: BODY_SMALL, conns: 8, requests: N, timeout: tls ? 900 : 60 });
		spawnSync('callgrind_control', ['-d', String(px.pid)]);
		await sleep(500);
		const dump = readdirSync(dir).filter((f) => f.startsWith('callgrind.out.')).sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop())).pop();
		if (!dump) throw new Error(`no callgrind dump in ${dir}: ${readdirSync(dir).join(' ')}`);
		const ann = spawnSync('callgrind_annotate', ['--inclusive=yes', join(dir, dump)], { maxBuffer: 64 << 20 }).stdout.toString();
		const tot = /([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS/.exec(ann) || /([\d,]+)\s+PROGRAM TOTALS/.exec(ann);
		const total = tot ? Number(tot[1].replace(/,/g, '')) : null;
		// one line per function: drop the start-up frames and the duplicate absolute-path entries
		const keep = (l) => /^\s*[\d,]+ \(\s*\d+\.\d+%\)\s+\S/.test(l) && !/PROGRAM TOTALS|below main|libc-start|ld-linux|main\.c:main |\)\s+\//.test(l);
		const lines = ann.split('\n').filter(keep).slice(0, 30);
		// and per relayed stream (50 SSE chunks), plain upstream only
		let sres = null, total2 = null;
		if (!tls) {
			spawnSync('callgrind_control', ['-z', String(px.pid)]);
			sres = await streamload(t, { body: BODY_STREAM, conns: 20, requests: Q ? 40 : 100, chunks: 50, interval: 20, timeout: 60 });
			spawnSync('callgrind_control', ['-d', String(px.pid)]);
			await sleep(500);
			const dump2 = readdirSync(dir).filter((f) => f.startsWith('callgrind.out.')).sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop())).pop();
			const ann2 = dump2 && dump2 !== dump ? spawnSync('callgrind_annotate', [join(dir, dump2)], { maxBuffer: 64 << 20 }).stdout.toString() : '';
			const tot2 = /([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS/.exec(ann2);
			total2 = tot2 ? Number(tot2[1].replace(/,/g, '')) : null;
		}
		const e = { requests: res.ok, total_ir: total, ir_per_request: total && res.ok ? total / res.ok : null,
			streams: sres?.ok, stream_events: sres?.events, ir_per_stream: total2 && sres?.ok ? total2 / sres.ok : null,
			ir_per_chunk: total2 && sres?.events ? total2 / sres.events : null,
			inclusive: lines.map((l) => l.replace(/\s+$/, '')) };
		(tls ? R.callgrind_tls : R.callgrind)[sys] = e;
		log(`  callgrind ${sys}${tls ? ' https' : ''}: ${e.ir_per_request ? Math.round(e.ir_per_request).toLocaleString('en-US') : '?'} instructions per request (${res.ok} requests), ` +
			`${e.ir_per_stream ? Math.round(e.ir_per_stream).toLocaleString('en-US') : '?'} per stream of 50 chunks`);
	} finally {
		if (px) await px.stop();
		if (front) await front.stop();
		await mock.stop();
		// BENCH_CALLGRIND_KEEP=DIR keeps the dumps (callgrind_annotate them to compare two builds)
		if (process.env.BENCH_CALLGRIND_KEEP) spawnSync('cp', ['-r', dir, join(process.env.BENCH_CALLGRIND_KEEP, `${sys}${tls ? '-https' : ''}`)]);
		rmSync(dir, { recursive: true, force: true });
	}
}

// ------------------------------------------------------------------ report
const f0 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const f1 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(1));
const f2 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(2));
const ms = (us) => (us == null ? 'n/a' : (us / 1000).toFixed(us < 10000 ? 3 : 1));
const ratio = (a, b) => (a == null || b == null || b === 0 ? 'n/a' : `${(a / b).toFixed(2)}×`);
const NAMES = { direct: 'direct (mock, floor)', nginx: 'nginx', sidecar: '**Sidecar V2**', portkey: 'Portkey gateway', portkey_retry: 'Portkey gateway + retry' };

// Issue 20: the libcurl floor (bench/floor.c) beside nginx and the data plane, the data plane's
// own share (data plane − floor) and the issue's targets.
function floorReport(L, pass) {
	const cg = R.callgrind || {}, ct = R.callgrind_tls || {};
	const s3 = R.s3[5000] || {};
	const us = (perCpuS) => (perCpuS ? 1e6 / perCpuS : null);
	const ir = (x) => (x == null ? 'n/a' : Math.round(x).toLocaleString('en-US'));
	const us1 = (x) => (x == null ? 'n/a' : x.toFixed(1));
	const diff = (a, b) => (a == null || b == null ? null : a - b);
	const own = diff(cg.sidecar?.ir_per_request, cg.floor?.ir_per_request);
	const ownT = diff(ct.sidecar?.ir_per_request, ct.floor?.ir_per_request);
	const r = (a, b) => (a == null || b == null || !b ? null : a / b);
	const thr = r(R.s1.sidecar?.max?.rps, R.s1.nginx?.max?.rps), pcs = r(R.s1.sidecar?.per_cpu_s, R.s1.nginx?.per_cpu_s);
	const thrT = r(R.s6.sidecar?.max?.rps, R.s6.nginx?.max?.rps), pcsT = r(R.s6.sidecar?.per_cpu_s, R.s6.nginx?.per_cpu_s);
	const pickTxt = (x) => (x?.runs ? ` (${x.pick === 'median' ? 'median' : 'best'} of ${x.runs.length}: ${x.runs.join(', ')} vs nginx)` : '');
	const rss = s3.sidecar ? (s3.sidecar.hwm_median_kb ?? s3.sidecar.hwm_kb) / 1024 : null;
	const drop = s3.sidecar ? s3.sidecar.issued - s3.sidecar.ok + s3.sidecar.short_streams : null;
	const tg = [
		['own instructions per small request (data plane − libcurl floor, plain upstream) ≤ 25,000', own == null ? 'n/a' : `${ir(own)} (${ir(cg.sidecar.ir_per_request)} − ${ir(cg.floor.ir_per_request)})`, pass(own == null ? null : own <= 25000)],
		['S1 throughput ≥ 0.7 × nginx', thr == null ? 'n/a' : `${thr.toFixed(2)} × nginx${MEDIAN ? ', medians' : ', best runs'}`, pass(thr == null ? null : thr >= 0.7)],
		['S1 requests per proxy CPU-second ≥ 0.7 × nginx', pcs == null ? 'n/a' : `${pcs.toFixed(2)} × nginx (${f0(R.s1.sidecar.per_cpu_s)} vs ${f0(R.s1.nginx.per_cpu_s)})`, pass(pcs == null ? null : pcs >= 0.7)],
		['1t (HTTPS upstream) throughput ≥ 0.7 × nginx', thrT == null ? 'n/a' : `${thrT.toFixed(2)} × nginx${MEDIAN ? ', medians' : ', best runs'}`, pass(thrT == null ? null : thrT >= 0.7)],
		['1t requests per proxy CPU-second ≥ 0.7 × nginx', pcsT == null ? 'n/a' : `${pcsT.toFixed(2)} × nginx (${f0(R.s6.sidecar.per_cpu_s)} vs ${f0(R.s6.nginx.per_cpu_s)})`, pass(pcsT == null ? null : pcsT >= 0.7)],
		['S3 5,000 streams: peak RSS ≤ 100 MB', rss == null ? 'n/a' : `${rss.toFixed(1)} MB${s3.sidecar.hwm_runs?.length > 1 ? ` (median of ${s3.sidecar.hwm_runs.map((k) => (k / 1024).toFixed(1)).join(', ')})` : ''}`, pass(rss == null ? null : rss <= 100)],
		['S3 5,000 streams: nothing dropped', drop == null ? 'n/a' : `${drop} dropped/failed`, pass(drop == null ? null : drop === 0)],
	];
	R.targets20 = tg;
	L.push('## Issue 20: the libcurl floor, nginx and the data plane', '');
	L.push('The **libcurl floor** (`bench/floor.c`) is a minimal client that drives libcurl exactly as the data plane does ' +
		'(`curl_multi_socket_action` from a `poll()` loop with `CURLMOPT_SOCKETFUNCTION`/`TIMERFUNCTION`, easy handles reused with the data plane\'s ' +
		'options and buffer sizes, connections kept alive, `CURLOPT_NOSIGNAL`) and does nothing else: scenario 1\'s 1 KB POST with the headers any upstream client needs ' +
		'(Authorization, Content-Type, an empty Expect; the data plane\'s X-Request-Id line costs libcurl about 5,000 instructions and counts as its own), ' +
		`${P.s1Conns} transfers at a time for the CPU µs (scenario 1's wrk connections), ${P.floorConc} for the instructions, straight to the mock (or through the TLS front for the HTTPS upstream). ` +
		'What one transfer costs it is what libcurl costs the data plane per upstream request at the least; **own = data plane − floor** is what the ' +
		'data plane adds (the client side, parsing, routing, scheduling, accounting, logging). nginx does both sides of a request in its figure. ' +
		`Instructions: callgrind, ${P.floorCgN.toLocaleString('en-US')} transfers after 300 warm-up ones (the floor zeroes and dumps its counters itself), the ` +
		'data plane and nginx as in the callgrind section below (300 warm-up, then 3,000 requests over 8 connections). CPU µs: the floor\'s own ' +
		`utime+stime over ${P.floorN.toLocaleString('en-US')} transfers (pinned where the proxy runs, ${MEDIAN ? `median of ${P.s1Runs}` : `lowest of ${P.s1Runs}`} runs); ` +
		'nginx and the data plane: 10⁶ / requests per proxy CPU-second of scenario 1 / 1t (wrk at saturation, unpinned) — the floor runs at ' +
		`${P.s1Conns} transfers without saturating a core, so its µs are not measured under the same pressure; the instructions are the exact comparison.`, '');
	L.push('### Targets (issue 20)', '', '| Target | Measured | |', '|---|---|---|');
	for (const [a, b, c] of tg) L.push(`| ${a} | ${b} | ${c} |`);
	L.push('');
	L.push('### Per request and per stream: floor, nginx, data plane', '');
	L.push('| Scenario | Figure | libcurl floor | nginx | **data plane** | own (data plane − floor) | own × nginx |', '|---|---|---|---|---|---|---|');
	const row = (sc, fig, f, n, d, fmt) => {
		const o = diff(d, f);
		L.push(`| ${sc} | ${fig} | ${fmt(f)} | ${fmt(n)} | **${fmt(d)}** | ${fmt(o)} | ${o != null && n ? `${(o / n).toFixed(2)}×` : 'n/a'} |`);
	};
	row('1 small request, plain upstream', 'instructions (callgrind)', cg.floor?.ir_per_request, cg.nginx?.ir_per_request, cg.sidecar?.ir_per_request, ir);
	row('1 small request, plain upstream', 'CPU µs per request', R.s1.floor?.cpu_us_per_transfer, us(R.s1.nginx?.per_cpu_s), us(R.s1.sidecar?.per_cpu_s), us1);
	row('1t small request, HTTPS upstream', 'instructions (callgrind)', ct.floor?.ir_per_request, ct.nginx?.ir_per_request, ct.sidecar?.ir_per_request, ir);
	row('1t small request, HTTPS upstream', 'CPU µs per request', R.s6.floor?.cpu_us_per_transfer, us(R.s6.nginx?.per_cpu_s), us(R.s6.sidecar?.per_cpu_s), us1);
	row('3 one stream of 50 SSE chunks', 'instructions (callgrind)', cg.floor?.ir_per_stream, cg.nginx?.ir_per_stream, cg.sidecar?.ir_per_stream, ir);
	for (const n of P.s3Sizes) {
		const X = R.s3[n] || {};
		const mb = (k) => (k == null ? null : k / 1024);
		row(`3 ${n.toLocaleString('en-US')} concurrent streams`, 'peak RSS (MB)', mb(X.floor?.maxrss_kb), mb(X.nginx?.hwm_median_kb ?? X.nginx?.hwm_kb),
			mb(X.sidecar?.hwm_median_kb ?? X.sidecar?.hwm_kb), (x) => (x == null ? 'n/a' : x.toFixed(1)));
	}
	const fl = [];
	if (R.s1.floor) fl.push(`plain: ${R.s1.floor.cpu_runs.join(', ')} µs per transfer, ${R.s1.floor.rps_runs.join(', ')} transfers/s, ${R.s1.floor.failures} failed, ${R.s1.floor.new_connections} new connections`);
	if (R.s6.floor) fl.push(`HTTPS: ${R.s6.floor.cpu_runs.join(', ')} µs per transfer, ${R.s6.floor.rps_runs.join(', ')} transfers/s, ${R.s6.floor.failures} failed, ${R.s6.floor.new_connections} new connections`);
	for (const n of P.s3Sizes) if (R.s3[n]?.floor) fl.push(`${n.toLocaleString('en-US')} streams: ${R.s3[n].floor.transfers} streams, ${R.s3[n].floor.failures} failed`);
	if (cg.floor) fl.push(`callgrind plain: ${cg.floor.requests} transfers, ${cg.floor.failures} failed, ${cg.floor.new_connections} new connections`);
	if (ct.floor) fl.push(`callgrind HTTPS: ${ct.floor.requests} transfers, ${ct.floor.failures} failed, ${ct.floor.new_connections} new connections`);
	if (fl.length) L.push('', `Floor runs: ${fl.join('; ')}.`);
	L.push('', 'Peak RSS: the floor\'s own (`ru_maxrss`: N transfers at once with their connections, the same streams as scenario 3, no warm-up); ' +
		`the proxies' VmHWM as in scenario 3${MEDIAN ? ' (median of the runs)' : ' (of the run with the best p99)'}. The floor holds libcurl\'s share of a stream ` +
		'(easy handle, connection, receive buffer) and little else, so data plane − floor is the data plane\'s own memory for those streams (plus its fixed base: SQLite, the route table).', '');
	// Where a small request's CPU goes, and the bound that sets for the CPU-second targets.
	L.push('### Where a small request\'s CPU goes: user / system µs per request', '');
	L.push('| Upstream | libcurl floor | nginx | data plane | its event loop | its other threads | floor + the loop\'s system time beyond the floor\'s | allowed: nginx ÷ 0.7 |',
		'|---|---|---|---|---|---|---|---|');
	const us2 = (u, s) => (u == null || s == null ? 'n/a' : `${u.toFixed(1)} / ${s.toFixed(1)} = ${(u + s).toFixed(1)}`);
	for (const [name, X] of [['plain (scenario 1)', R.s1], ['HTTPS (1t)', R.s6]]) {
		const f = X.floor?.split_us, n = X.nginx?.split_us, d = X.sidecar?.split_us;
		const bound = f && d ? f.user + f.sys + Math.max(0, d.main_sys - f.sys) : null;
		const allowed = us(X.nginx?.per_cpu_s);
		L.push(`| ${name} | ${f ? us2(f.user, f.sys) : 'n/a'} | ${n ? us2(n.user, n.sys) : 'n/a'} | ${d ? us2(d.user, d.sys) : 'n/a'} | ` +
			`${d ? us2(d.main_user, d.main_sys) : 'n/a'} | ${d ? us2(d.user - d.main_user, d.sys - d.main_sys) : 'n/a'} | ` +
			`${bound == null ? 'n/a' : bound.toFixed(1)} | ${allowed == null ? 'n/a' : (allowed / 0.7).toFixed(1)} |`);
	}
	L.push('', 'utime / stime per request of the run the throughput figure comes from (for the floor: its measured transfers, ' +
		`${P.s1Conns} at a time). The event loop is the data plane\'s main thread; its other threads are the statistics writer (SQLite) and the ` +
		'health checker. The floor is what libcurl costs per upstream request at the least. The event loop also reads each request from the ' +
		'client and writes each answer to it, and the kernel time of that (reads, writes, waking wrk) is its system time beyond the floor\'s; ' +
		'nginx pays the same for its client side. So **floor + that** is what a request would cost the data plane if all its own user-space ' +
		'work (HTTP parsing, routing, admission, accounting, the request log) took no time. When it is above "allowed", requests per proxy ' +
		'CPU-second cannot reach 0.7 × nginx with libcurl on this machine, whatever the data plane\'s own code does.', '');
}

function report() {
	const L = [];
	const m = R.meta;
	L.push('# Benchmark results', '');
	L.push(`Written by \`bench/run${Q ? ' --quick' : ''}${MEDIAN ? ` --runs ${P.s1Runs}` : ''}\` on ${m.date}. Commit \`${m.commit}\`${m.dirty ? ' (work tree had uncommitted changes elsewhere)' : ''}.`, '');
	L.push(`- Machine: ${m.cpus} CPU core(s) (${m.cpu_model}), ${m.mem_gb} GB RAM, Linux ${m.kernel}.`);
	L.push(`- Tools: ${m.nginx}, ${m.wrk}, Node ${process.version}, @portkey-ai/gateway ${m.portkey}; data plane built with \`CFLAGS=${m.cflags}\`.`);
	L.push(`- Everything runs on 127.0.0.1. **With ${m.cpus} cores the load generator, the proxy and the mock upstream share CPUs**, so absolute figures are` +
		' lower than on a real deployment and drift between runs; compare the ratios.' +
		(PIN ? ` Pinning (taskset): the proxy under test alone on CPU ${CPU_PROXY}; wrk/streamload and the mock on CPU ${CPU_LOAD}` +
			` for every system, the floor included (so "direct" differs from a proxied run only by the proxy) — except scenario 1's max-throughput runs, which are not pinned: pinned, the load generator and ` +
			'the mock saturate their core long before nginx saturates its own, so the figure would measure the load side; unpinned, the proxy that costs ' +
			'less CPU leaves more to the load side and serves more. nginx runs one worker, like the single-threaded data plane.' : ' No CPU pinning.'));
	L.push('- Every system gets the same single mock key without a rate limit for scenarios 1–3 and 5 (nginx cannot pick keys; the data plane' +
		' gets one provider with `rpm_limit` 100000 over a 1 s window so its limiter never engages); scenario 4 is Sidecar vs Portkey only.');
	L.push('- "Added" = figure − the same figure against the mock directly. Ratios: × nginx = figure / nginx\'s, × direct = figure / direct\'s.');
	L.push('- Raw figures of this run: `bench/out/results.json` (not committed).');
	if (R.load) L.push(`- Load average (1/5/15 min) when each scenario started — other sessions were using this machine at the same time: ` +
		Object.entries(R.load).map(([k, v]) => `S${k} ${v}`).join('; ') + '. Figures from a busy machine are noisy; rerun `bench/run` on a quiet one for cleaner numbers.');
	L.push('');

	// targets
	const s1 = R.s1, s3 = R.s3[5000] || {};
	const tg = [];
	const thrN = s1.sidecar?.max && s1.nginx?.max ? s1.sidecar.max.rps / s1.nginx.max.rps : null;
	const thrP = s1.sidecar?.max && s1.portkey?.max ? s1.sidecar.max.rps / s1.portkey.max.rps : null;
	const addP99 = s1.sidecar?.fixed && s1.direct?.fixed ? (s1.sidecar.fixed.lat_us.p99 - s1.direct.fixed.lat_us.p99) / 1000 : null;
	const rss = s3.sidecar ? s3.sidecar.hwm_kb / 1024 : null;
	const cd = s3.sidecar && s3.direct ? (s3.sidecar.chunk_delay_us.p99 - s3.direct.chunk_delay_us.p99) / 1000 : null;
	const s4 = R.s4.sidecar;
	const pass = (ok) => (ok == null ? 'not measured' : ok ? 'met' : '**missed**');
	tg.push(['S1 throughput ≥ 0.9 × nginx', thrN == null ? 'n/a' : `${thrN.toFixed(2)} × nginx`, pass(thrN == null ? null : thrN >= 0.9)]);
	tg.push(['S1 throughput ≥ 10 × Portkey', thrP == null ? 'n/a' : `${thrP.toFixed(1)} × Portkey`, pass(thrP == null ? null : thrP >= 10)]);
	tg.push(['S1 added p99 ≤ 0.5 ms (at half nginx\'s max rate)', addP99 == null ? 'n/a' : `${addP99.toFixed(3)} ms at ${f0(s1.sidecar.fixed_rate)} req/s` +
		`${s1.sidecar.lat_rate_note ? ' (half its own max)' : ''}; ${s1.sidecar.light && s1.direct?.light ? `${((s1.sidecar.light.lat_us.p99 - s1.direct.light.lat_us.p99) / 1000).toFixed(3)} ms at ${f0(s1.sidecar.light_rate)} req/s` : ''}`,
	pass(addP99 == null ? null : addP99 <= 0.5)]);
	tg.push(['S3 5,000 streams: RSS ≤ 100 MB', rss == null ? 'n/a' : `${rss.toFixed(1)} MB`, pass(rss == null ? null : rss <= 100)]);
	tg.push(['S3 5,000 streams: added per-chunk p99 ≤ 2 ms', cd == null ? 'n/a' : `${cd.toFixed(3)} ms`, pass(cd == null ? null : cd <= 2)]);
	const s3drop = s3.sidecar ? s3.sidecar.issued - s3.sidecar.ok + s3.sidecar.short_streams : null;
	tg.push(['S3 nothing dropped', s3drop == null ? 'n/a' : `${s3drop} dropped/failed`, pass(s3drop == null ? null : s3drop === 0)]);
	tg.push(['S4 zero upstream 429s', s4 ? String(s4.upstream_429) : 'n/a', pass(s4 ? s4.upstream_429 === 0 : null)]);
	tg.push(['S4 ≥ 99% of capacity used', s4 ? `${(100 * s4.goodput_frac).toFixed(1)}%` : 'n/a', pass(s4 ? s4.goodput_frac >= 0.99 : null)]);
	R.targets = tg;
	L.push('## Targets (issue 9)', '', '| Target | Measured | |', '|---|---|---|');
	for (const [a, b, c] of tg) L.push(`| ${a} | ${b} | ${c} |`);
	L.push('');
	floorReport(L, pass);

	// S1
	L.push('## 1. Small chat completion (1 KB, non-streaming)', '');
	L.push(`Max throughput: wrk, ${P.s1Conns} connections, ${P.s1Dur} s, 2 threads (\`bench/post.lua\`), not pinned. Latency (pinned, best of ${P.s1LatRuns} by p99): \`bench/streamload --rate\` at a fixed ` +
		`rate of half nginx's max (${f0(s1.rate)} req/s), ${P.s1Conns} connections, ${P.s1Dur} s, latency counted from each request's due time ` +
		'(open loop, no coordinated omission — wrk2 is not packaged).', '');
	L.push('| System | req/s | × nginx | × direct | proxy CPU % | req per proxy CPU-s | × nginx | p50 at fixed rate (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | p99 × nginx | errors |');
	L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
	for (const s of SYSTEMS) {
		const x = s1[s];
		if (!x) { L.push(`| ${NAMES[s]} | failed | | | | | | | | | | | |`); continue; }
		const fx = x.fixed?.lat_us;
		const dfx = s1.direct?.fixed?.lat_us;
		const errs = (x.max ? Object.values(x.max.errors).reduce((a, b) => a + b, 0) : 0) + (x.fixed ? x.fixed.issued - x.fixed.ok : 0);
		L.push(`| ${NAMES[s]} | ${f0(x.max?.rps)} | ${ratio(x.max?.rps, s1.nginx?.max?.rps)} | ${ratio(x.max?.rps, s1.direct?.max?.rps)} | ` +
			`${s === 'direct' ? '—' : f0(x.cpu_pct)} | ${s === 'direct' ? '—' : f0(x.per_cpu_s)} | ${s === 'direct' ? '—' : ratio(x.per_cpu_s, s1.nginx?.per_cpu_s)} | ${ms(fx?.p50)}${x.lat_rate_note ? ' ¹' : ''} | ${ms(fx?.p99)} | ` +
			`${s === 'direct' || !fx || !dfx ? '—' : ms(fx.p50 - dfx.p50)} | ${s === 'direct' || !fx || !dfx ? '—' : ms(fx.p99 - dfx.p99)} | ` +
			`${ratio(fx?.p99, s1.nginx?.fixed?.lat_us?.p99)} | ${errs} |`);
	}
	for (const s of SYSTEMS) if (s1[s]?.lat_rate_note) L.push('', `¹ ${NAMES[s]}: ${s1[s].lat_rate_note}.`);
	L.push('', `The same at a light load, ${P.s1Light.toLocaleString('en-US')} req/s (nothing near saturation: the per-request overhead alone; best of ${P.s1LatRuns} by p99):`, '');
	L.push('| System | p50 (ms) | p90 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | p99 × nginx |', '|---|---|---|---|---|---|---|');
	for (const s of SYSTEMS) {
		const x = s1[s]?.light?.lat_us, d = s1.direct?.light?.lat_us;
		if (!x) { L.push(`| ${NAMES[s]} | failed ||||||`); continue; }
		L.push(`| ${NAMES[s]} | ${ms(x.p50)}${s1[s].light_rate !== P.s1Light ? ` (at ${s1[s].light_rate} req/s)` : ''} | ${ms(x.p90)} | ${ms(x.p99)} | ${s === 'direct' || !d ? '—' : ms(x.p50 - d.p50)} | ` +
			`${s === 'direct' || !d ? '—' : ms(x.p99 - d.p99)} | ${ratio(x.p99, s1.nginx?.light?.lat_us?.p99)} |`);
	}
	L.push('', `req/s is the ${MEDIAN ? 'median' : 'best'} of ${P.s1Runs} run(s)${MEDIAN ? ' (requests per proxy CPU-second: the median of the runs\' own)' : ''} (${SYSTEMS.filter((s) => s1[s]?.runs).map((s) => `${s}: ${s1[s].runs.join(', ')}${s1[s].per_cpu_runs ? ` req/s, ${s1[s].per_cpu_runs.join(', ')} per CPU-s` : ''}`).join('; ')}). ` +
		'"proxy CPU %" is the proxy\'s utime+stime over the run as a share of one core: below 100% the proxy was not the bottleneck (with pinning the load ' +
		'generator and the mock share the other core), so "req per proxy CPU-s" — requests served per CPU-second the proxy used — is the fairer ' +
		'comparison of proxy cost on this machine.');
	L.push('', 'wrk\'s own latency at max load (closed loop, for reference): ' + SYSTEMS.filter((s) => s1[s]?.max)
		.map((s) => `${s} p50 ${ms(s1[s].max.lat_us.p50)} / p99 ${ms(s1[s].max.lat_us.p99)} ms`).join('; ') + '.', '');

	// S6 (next to S1: the same request, HTTPS upstream)
	if (Object.keys(R.s6).length) {
		const s6 = R.s6;
		L.push('## 1t. (scenario 6) The small request with an HTTPS upstream', '');
		L.push('Scenario 1\'s request through nginx (`proxy_pass https://`, keep-alive upstream pool, `proxy_ssl_verify` against the test CA, ' +
			'sessions reused) and the data plane (`https://` endpoint, `--ca-file`), both in front of the same TLS front (`bench/nginx-tls-front.conf.in`: ' +
			'nginx ending TLS 1.3 with an ECDSA P-256 certificate from a CA made by bench.mjs, on the load side\'s core with the mock). ' +
			`wrk as in scenario 1 (${P.s1Conns} connections, ${P.s1Dur} s, ${MEDIAN ? 'median' : 'best'} of ${P.s1Runs}); latency with \`streamload --rate ${P.s1Light}\` (pinned, best of ${P.s1LatRuns} by p99). ` +
			'"direct" is the plain-HTTP mock, so "added" includes the TLS front\'s work, which both proxies pay alike.', '');
		L.push('| System | req/s | × nginx | proxy CPU % | req per proxy CPU-s | × nginx | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | errors |');
		L.push('|---|---|---|---|---|---|---|---|---|---|---|');
		for (const s of SYSTEMS6) {
			const x = s6[s];
			if (!x) { L.push(`| ${NAMES[s]} | failed |||||||||| `); continue; }
			const lt = x.light?.lat_us, d = s6.direct?.light?.lat_us;
			const errs = (x.max ? Object.values(x.max.errors).reduce((a, b) => a + b, 0) : 0) + (x.light ? x.light.issued - x.light.ok : 0);
			L.push(`| ${NAMES[s]}${s === 'direct' ? ' (plain HTTP)' : ''} | ${f0(x.max?.rps)} | ${ratio(x.max?.rps, s6.nginx?.max?.rps)} | ${s === 'direct' ? '—' : f0(x.cpu_pct)} | ` +
				`${s === 'direct' ? '—' : f0(x.per_cpu_s)} | ${s === 'direct' ? '—' : ratio(x.per_cpu_s, s6.nginx?.per_cpu_s)} | ${ms(lt?.p50)} | ${ms(lt?.p99)} | ` +
				`${s === 'direct' || !lt || !d ? '—' : ms(lt.p50 - d.p50)} | ${s === 'direct' || !lt || !d ? '—' : ms(lt.p99 - d.p99)} | ${errs} |`);
		}
		L.push('', `req/s ${MEDIAN ? 'median' : 'best'} of ${P.s1Runs} run(s) (${SYSTEMS6.filter((s) => s6[s]?.runs).map((s) => `${s}: ${s6[s].runs.join(', ')}${s6[s].per_cpu_runs ? ` req/s, ${s6[s].per_cpu_runs.join(', ')} per CPU-s` : ''}`).join('; ')}).`, '');
	}

	// S7 (next to S1: the same request, admission through Redis)
	if (Object.keys(R.s7).length) {
		const s7 = R.s7, loc = s7.sidecar?.light?.lat_us;
		L.push('## 1r. (scenario 7) Cluster admission through Redis (docs/cluster.md)', '');
		L.push('Scenario 1\'s request through the data plane deciding alone, and with `redis_url` set (one local `redis-server` on the load ' +
			'side\'s core, `--save \'\'`): every upstream start is one `EVALSHA` of the admission script. ' +
			`wrk as in scenario 1 (${P.s1Conns} connections, ${P.s1Dur} s, best of ${P.s1Runs}); latency with \`streamload --rate ${P.s1Light}\` ` +
			`(best of ${P.s1LatRuns} by p99); "added" is against the data plane alone.`, '');
		L.push('| Admission | req/s | proxy CPU % | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | errors |');
		L.push('|---|---|---|---|---|---|---|---|');
		for (const s of SYSTEMS7) {
			const x = s7[s];
			const name = s === 'sidecar' ? 'local (no redis_url)' : 'Redis (one round trip per start)';
			if (!x) { L.push(`| ${name} | failed ||||||| `); continue; }
			const lt = x.light?.lat_us;
			const errs = Object.values(x.max.errors).reduce((a, b) => a + b, 0) + (x.light ? x.light.issued - x.light.ok : 0);
			L.push(`| ${name} | ${f0(x.max.rps)} | ${f0(x.cpu_pct)} | ${ms(lt?.p50)} | ${ms(lt?.p99)} | ` +
				`${s === 'sidecar' || !lt || !loc ? '—' : ms(lt.p50 - loc.p50)} | ${s === 'sidecar' || !lt || !loc ? '—' : ms(lt.p99 - loc.p99)} | ${errs} |`);
		}
		L.push('', `req/s best of ${P.s1Runs} run(s) (${SYSTEMS7.filter((s) => s7[s]?.runs).map((s) => `${s}: ${s7[s].runs.join(', ')}`).join('; ')}).`, '');
	}

	// S2
	L.push('## 2. OpenClaw-sized request (60 KB with 24 tools, streaming)', '');
	L.push(`\`streamload\`, ${P.s2Conns} connections, ${P.s2Req} requests; the mock streams ${P.s2Chunks} chunks ${P.s2Interval} ms apart. ` +
		'First byte = first SSE `data:` event; last byte = end of the response. Times from the request\'s first byte.', '');
	L.push('| System | first byte p50 (ms) | p99 | added p50 | added p99 | × nginx (p50) | last byte p50 (ms) | p99 | added p50 | added p99 | ok |');
	L.push('|---|---|---|---|---|---|---|---|---|---|---|');
	const d2 = R.s2.direct;
	for (const s of SYSTEMS) {
		const x = R.s2[s];
		if (!x) { L.push(`| ${NAMES[s]} | failed |||||||||| `); continue; }
		const a = (k, p) => (s === 'direct' || !d2 ? '—' : ms(x[k][p] - d2[k][p]));
		L.push(`| ${NAMES[s]} | ${ms(x.first_event_us.p50)} | ${ms(x.first_event_us.p99)} | ${a('first_event_us', 'p50')} | ${a('first_event_us', 'p99')} | ` +
			`${ratio(x.first_event_us.p50, R.s2.nginx?.first_event_us?.p50)} | ${ms(x.lat_us.p50)} | ${ms(x.lat_us.p99)} | ${a('lat_us', 'p50')} | ${a('lat_us', 'p99')} | ${x.ok}/${x.issued} |`);
	}
	L.push('');

	// S3
	L.push('## 3. Concurrent SSE streams', '');
	L.push(`\`streamload\`: N connections, each running ${P.s3Rounds} stream(s) back to back (connections opened over ${'max(0.5 s, N/5 ms)'}); ` +
		`the mock sends ${P.s3Chunks} chunks ${P.s3Interval} ms apart. Per-chunk delay = arrival − (request start + i × ${P.s3Interval} ms). ` +
		'RSS = peak VmHWM of the proxy process(es) from /proc (fresh process per run); CPU = utime+stime over the run. ' +
		'"Dropped" = failed requests + streams that ended early.', '');
	for (const n of P.s3Sizes) {
		const X = R.s3[n] || {};
		L.push(`### ${n.toLocaleString('en-US')} streams`, '');
		L.push('| System | chunk delay p50 (ms) | p99 | added p50 | added p99 | p99 × nginx | peak simultaneous | dropped | proxy peak RSS (MB) | RSS × nginx | proxy CPU (s) | CPU × nginx | run (s) | listen overflows | upstream connections opened |');
		L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
		for (const s of SYSTEMS) {
			const x = X[s];
			if (!x) { L.push(`| ${NAMES[s]} | ${X[`${s}_skipped`] ? 'not run with --quick (takes about a minute)' : 'failed'} |||||||||||||`); continue; }
			const d = X.direct;
			const drop = x.issued - x.ok + x.short_streams;
			L.push(`| ${NAMES[s]} | ${ms(x.chunk_delay_us.p50)} | ${ms(x.chunk_delay_us.p99)} | ${s === 'direct' || !d ? '—' : ms(x.chunk_delay_us.p50 - d.chunk_delay_us.p50)} | ` +
				`${s === 'direct' || !d ? '—' : ms(x.chunk_delay_us.p99 - d.chunk_delay_us.p99)} | ${ratio(x.chunk_delay_us.p99, X.nginx?.chunk_delay_us?.p99)} | ` +
				`${f0(x.peak_active)} | ${drop}${drop ? ` (${JSON.stringify(x.errors)}, status ${JSON.stringify(x.status)})` : ''} | ` +
				`${s === 'direct' ? '—' : f1(x.hwm_kb / 1024)} | ${s === 'direct' ? '—' : ratio(x.hwm_kb, X.nginx?.hwm_kb)} | ` +
				`${s === 'direct' ? '—' : f2(x.cpu_s)} | ${s === 'direct' ? '—' : ratio(x.cpu_s, X.nginx?.cpu_s)} | ${f1(x.elapsed_s)} | ${x.listen_overflows ?? 'n/a'} | ${x.upstream_conns != null ? `${f0(x.upstream_conns)} for ${f0(x.issued)} streams` : 'n/a'} |`);
		}
		if (X.direct && X.direct.chunk_delay_us.p50 > 5000) {
			L.push('', `At ${n.toLocaleString('en-US')} streams the floor itself is saturated: against the mock directly a chunk already arrives ` +
				`${ms(X.direct.chunk_delay_us.p50)} ms late at p50 (${n.toLocaleString('en-US')} × ${1000 / P.s3Interval} = ${(n * 1000 / P.s3Interval).toLocaleString('en-US')} chunks/s ` +
				'written by the mock and read by the load generator on a shared core). Through a proxy every chunk is read and written once more on a busy ' +
				'2-core machine, so the added delays here measure CPU contention as much as the proxy.');
		}
		if (Object.values(X).some((x) => x?.listen_overflows > 0)) {
			L.push('', '"listen overflows" is the kernel\'s TcpExt ListenOverflows counter during the run (the network namespace is shared, so ' +
				'other sessions\' tests can add a few): connections completed by the kernel that the server had not accepted before its accept queue ' +
				'filled; their requests wait until the server catches up, which shows as chunk delay.');
		}
		if (X.portkey && X.portkey.rounds !== P.s3Rounds) L.push('', `Portkey ran 1 round per connection (the others ${P.s3Rounds}) to keep the run bounded.`);
		L.push('');
	}

	// S4
	const st = R.s4.setup || {};
	L.push('## 4. Scheduling under oversubscription', '');
	L.push(`${st.keys} mock keys, each enforcing ${st.rpm} requests per ${st.window_s} s sliding window (the 60 s window compressed), capacity ` +
		`${f1(st.capacity_per_s)} req/s; demand ${f1(st.demand_per_s)} req/s (2×) at a fixed rate for ${st.duration_s} s (${P.s4Windows} windows), 1 KB non-streaming requests. ` +
		`Sidecar: the same 11 keys as providers with rpm_limit ${st.rpm}, \`rpm_window_seconds=${st.window_s}\`, \`rpm_window_margin_ms=${st.margin_ms}\`, ` +
		'default queue (capacity 500, timeout 30 s). Portkey: `strategy.mode = loadbalance`, 11 targets (provider `openai`, `custom_host` = the mock, one key each, weight 1), ' +
		'passed in the `x-portkey-config` header; no retry block (the default) and, in a second run, with `retry: {attempts: 3, on_status_codes: [429]}`. Goodput = upstream successes that started within the demand period / (keys × rpm × windows). ' +
		'Queue wait from the `X-Sidecar-Queue-Ms` response header (successful requests).', '');
	L.push('| System | goodput | % of capacity | upstream 429s | client 2xx | client errors | client statuses | queue wait p50 (ms) | p99 (ms) |');
	L.push('|---|---|---|---|---|---|---|---|---|');
	for (const s of S4_SYSTEMS) {
		if ((!SYSTEMS.includes('portkey') || (Q && s === 'portkey_retry')) && s !== 'sidecar') continue;
		const x = R.s4[s];
		if (!x) { L.push(`| ${NAMES[s]} | failed |||||||| `); continue; }
		const q = x.client.queue_ms;
		L.push(`| ${NAMES[s]} | ${x.goodput} / ${x.capacity} | ${f1(100 * x.goodput_frac)}% | ${x.upstream_429} | ${x.client.ok} | ${x.client_errors} | ` +
			`${JSON.stringify(x.by_status)}${Object.values(x.client.errors).some(Boolean) ? ` ${JSON.stringify(x.client.errors)}` : ''}` +
			`${x.client.stale_retries ? `, ${x.client.stale_retries} resent after a keep-alive close` : ''} | ` +
			`${s === 'sidecar' && q.n ? q.p50 : '—'} | ${s === 'sidecar' && q.n ? q.p99 : '—'} |`);
	}
	L.push('', 'Client errors for Sidecar V2 are its 503 + `Retry-After` answers when the queue is full (demand is twice the capacity, so about half ' +
		'the requests cannot be served in time); for Portkey they are the upstream 429s passed through (after its retries, with the retry block).', '');

	// S4b
	if (R.s4b.setup) {
		const sb = R.s4b.setup;
		L.push('## 4b. Real limit lower than configured', '');
		L.push(`${sb.keys} mock keys, each really allowing ${sb.real} requests per ${sb.window_s} s window; the sidecar is told rpm_limit ${sb.configured} ` +
			`(\`rpm_window_seconds=${sb.window_s}\`, \`rpm_window_margin_ms=${sb.margin_ms}\`, \`cooldown_base_seconds=1\`). Demand ${f1(sb.demand_per_s)} req/s ` +
			`at a fixed rate for ${sb.duration_s} s (${sb.windows} windows); real capacity ${f1(sb.real_capacity_per_s)} req/s. Goodput = upstream successes ` +
			'that started within the demand period / (keys × real limit × windows). *before*: the data plane before issue 15' +
			`${sb.before ? '' : ' (not run: no --dp-before)'}; *learning off*: this build with \`learn_limits=0\` (episodes and half-open only); *after*: this build.`, '');
		L.push('| Run | goodput | % of real capacity | upstream 429s | of them after the first window | client 2xx | client statuses | queue wait p50 (ms) | p99 (ms) |');
		L.push('|---|---|---|---|---|---|---|---|---|');
		const label = { before: 'before', learn_off: 'learning off', after: 'after' };
		for (const run of S4B_RUNS) {
			const x = R.s4b[run];
			if (!x) continue;
			const q = x.client.queue_ms;
			L.push(`| ${label[run]} | ${x.goodput} / ${x.capacity} | ${f1(100 * x.goodput_frac)}% | ${x.upstream_429} | ${x.upstream_429_after_first_window} | ` +
				`${x.client.ok} | ${JSON.stringify(x.by_status)} | ${q.n ? q.p50 : '—'} | ${q.n ? q.p99 : '—'} |`);
		}
		L.push('');
	}

	// S5
	L.push('## 5. Large body (8 MB, non-streaming)', '');
	L.push(`\`streamload\`, 1 connection, ${P.s5Req} requests, time from the first request byte to the end of the response.`, '');
	L.push('| System | p50 (ms) | p99 (ms) | added p50 (ms) | × nginx (p50) | × direct (p50) | ok |');
	L.push('|---|---|---|---|---|---|---|');
	for (const s of SYSTEMS) {
		const x = R.s5[s];
		if (!x) { L.push(`| ${NAMES[s]} | failed ||||||`); continue; }
		L.push(`| ${NAMES[s]} | ${ms(x.lat_us.p50)} | ${ms(x.lat_us.p99)} | ${s === 'direct' || !R.s5.direct ? '—' : ms(x.lat_us.p50 - R.s5.direct.lat_us.p50)} | ` +
			`${ratio(x.lat_us.p50, R.s5.nginx?.lat_us?.p50)} | ${ratio(x.lat_us.p50, R.s5.direct?.lat_us?.p50)} | ${x.ok}/${x.issued} ${x.ok < x.issued ? JSON.stringify(x.status) : ''} |`);
	}
	L.push('');

	if (R.profile) {
		L.push('## Profile of the data plane (targets missed)', '');
		L.push('`perf record -F 299 --call-graph dwarf -p <sidecar-dataplane>` on the optimised build (`-O2 -g`) during the load named (unpinned ' +
			'wrk for scenario 1, 5,000 streams for scenario 3); `perf report`: self time per symbol (≥ 1.5%) and per shared object (≥ 1%), then ' +
			'inclusive time of the data plane\'s functions. libcurl has no symbols here (addresses only).', '');
		for (const [what, p] of Object.entries(R.profile)) {
			L.push(`### ${what}`, '', 'Self time by symbol (`[k]` kernel, `[.]` user space):', '', '```', ...p.symbols, '```', '',
				'Self time by shared object:', '', '```', ...p.dsos, '```', '',
				'Inclusive time (children included, ≥ 1.5%) of the data plane\'s own functions and the library entry points it calls ' +
				'(columns: children, self, object, symbol):', '', '```', ...(p.inclusive || []), '```', '');
		}
		if (R.callgrind) {
			const c = R.callgrind.sidecar, n = R.callgrind.nginx;
			const ir = (x) => (x?.ir_per_request ? Math.round(x.ir_per_request).toLocaleString('en-US') : 'n/a');
			L.push('### callgrind: instructions per request (scenario 1 request, 8 connections)', '',
				'`valgrind --tool=callgrind` on the optimised data plane and on nginx (one process, `master_process off`); counters zeroed after ' +
				`300 warm-up requests, then ${c?.requests ?? 'n/a'} requests: **data plane ${ir(c)} instructions (Ir) per request, nginx ${ir(n)}` +
				`${c?.ir_per_request && n?.ir_per_request ? ` (${(c.ir_per_request / n.ir_per_request).toFixed(1)} × nginx)` : ''}**, ` +
				'libraries included, the kernel not. Deterministic: it does not depend on the other load on the machine, so it is the figure to ' +
				'compare before and after a change.', '');
			if (c?.ir_per_stream) {
				L.push(`Per SSE stream of 50 chunks (${c.streams} streams, 20 at a time): **data plane ${Math.round(c.ir_per_stream).toLocaleString('en-US')} Ir ` +
					`(${Math.round(c.ir_per_chunk).toLocaleString('en-US')} per chunk), nginx ${n?.ir_per_stream ? Math.round(n.ir_per_stream).toLocaleString('en-US') : 'n/a'} ` +
					`(${n?.ir_per_chunk ? Math.round(n.ir_per_chunk).toLocaleString('en-US') : 'n/a'} per chunk)` +
					`${n?.ir_per_stream ? `, ${(c.ir_per_stream / n.ir_per_stream).toFixed(1)} × nginx` : ''}**.`, '');
			}
			if (c) L.push('Data plane, inclusive (`callgrind_annotate --inclusive=yes`; libcurl has no symbols here):', '', '```', ...c.inclusive, '```', '');
		}
		if (R.profileNotes) L.push(...R.profileNotes, '');
	}
	if (R.notes.length || R.errors.length) {
		L.push('## Notes', '');
		for (const n of R.notes) L.push(`- ${n}`);
		for (const e of R.errors) L.push(`- Failed: ${e}`);
		L.push('');
	}
	return L.join('\n');
}

// ------------------------------------------------------------------ main
async function main() {
	mkdirSync(OUT, { recursive: true });
	for (const b of [BIN.dp, BIN.ctl, BIN.mock, BIN.load, BIN.floor]) if (!existsSync(b)) throw new Error(`missing ${b}: run bench/run`);
	const git = (...a) => spawnSync('git', ['-C', TOP, ...a]).stdout.toString().trim();
	const sh = (c, a) => { const r = spawnSync(c, a); return (r.stdout.toString() + r.stderr.toString()).trim().split('\n')[0]; };
	let pkv = 'not installed';
	try { pkv = JSON.parse(readFileSync(join(HERE, 'portkey', 'node_modules', '@portkey-ai', 'gateway', 'package.json'), 'utf8')).version; } catch { /* absent */ }
	R.meta = {
		date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
		commit: git('rev-parse', '--short=12', 'HEAD'),
		dirty: git('status', '--porcelain', '--untracked-files=no').length > 0,
		cpus: NCPU, cpu_model: os.cpus()[0]?.model?.trim() || 'unknown', mem_gb: (os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(),
		nginx: sh('nginx', ['-v']).replace('nginx version: ', ''), wrk: sh('wrk', ['-v']).split(' [')[0],
		portkey: pkv, cflags: process.env.BENCH_CFLAGS || '-O2', quick: Q, pinned: PIN, runs: opt.runs || null,
	};
	log(`${NCPU} cores, commit ${R.meta.commit}, ${Q ? 'quick' : 'full'} run, pinning ${PIN ? 'on' : 'off'}`);
	if (R.meta.portkey === 'not installed' || !existsSync(BIN.portkey)) {
		note('@portkey-ai/gateway is not installed (npm ci failed, see bench/run output): Portkey rows are missing.');
		SYSTEMS.splice(SYSTEMS.indexOf('portkey'), 1);
	} else {
		note('Portkey: @portkey-ai/gateway ' + R.meta.portkey + ' on Node ' + process.version + ' fails every streaming request ' +
			'("TypeError: immutable" when it adds its x-portkey-* headers to the Response from fetch()); bench/portkey/patch-gateway.sh applies a one-expression ' +
			'workaround (copy the Response when its headers are immutable) to a copy of start-server.js. Its streaming path also waits 25 ms before the first ' +
			'chunk (in the gateway\'s code), which shows in scenarios 2 and 3. The gateway has no host option; bench/portkey/loopback.cjs makes it listen on 127.0.0.1.');
	}
	if (process.env.BENCH_STALE) {
		note(`**The build failed at the time of this run; the data plane measured is an earlier build (${process.env.BENCH_STALE}), not the commit above.**`);
	}
	const want = (n) => !opt.only || opt.only.has(String(n));
	const t0 = Date.now();
	if (want(1)) await scenario1();
	if (want(2)) await scenario2();
	if (want(3)) await scenario3();
	if (want(4)) await scenario4();
	if (want(4) || want('4b')) await scenario4b();
	if (want(5)) await scenario5();
	if (want(6)) await scenario6();
	if (want(7)) await scenario7();
	if (opt.cgOnly) { await callgrind(); R.profile = R.profile || {}; }
	report();	// computes R.targets
	const missed = (R.targets || []).filter(([, , c]) => c.includes('missed')).map(([a]) => a);
	if (opt.profile && missed.length && (want(1) || want(3))) {
		log(`targets missed (${missed.join('; ')}): profiling the data plane`);
		await profile();
	}
	R.meta.elapsed_s = (Date.now() - t0) / 1000;
	writeFileSync(join(OUT, 'results.json'), JSON.stringify(R, null, 1));
	let md = report();
	/* Kept as they are: the readings written by hand after earlier runs (<!-- kept:NAME:begin -->
	 * ... <!-- kept:NAME:end -->, in their order) and the section bench/reqlog.mjs maintains. */
	const old = existsSync(join(HERE, 'RESULTS.md')) ? readFileSync(join(HERE, 'RESULTS.md'), 'utf8') : '';
	for (const k of old.matchAll(/<!-- kept:([\w-]+):begin -->[\s\S]*?<!-- kept:\1:end -->/g)) md += '\n\n' + k[0];
	const kept = /<!-- reqlog:begin -->[\s\S]*<!-- reqlog:end -->/.exec(old);
	if (kept) md += '\n\n' + kept[0];
	writeFileSync(join(HERE, opt.only ? join('out', 'RESULTS.partial.md') : 'RESULTS.md'), md + '\n');
	log(`done in ${R.meta.elapsed_s.toFixed(0)} s; wrote ${opt.only ? 'bench/out/RESULTS.partial.md' : 'bench/RESULTS.md'}`);
}

main().then(() => { killAll(); process.exit(0); }, (e) => { console.error(e); killAll(); process.exit(1); });
