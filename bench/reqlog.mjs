// bench/reqlog.mjs: what the request log (issue 19) costs. The same data
// plane and mock upstream, request_log_rows = 20000 (the default) against
// 0 (off), alternating runs of wrk with bench/post.lua (small non-streaming
// chat completions, 32 connections): data-plane throughput, and the
// statistics writer's flush time from /metrics (sidecar_stats_flush_seconds:
// the whole BEGIN IMMEDIATE transaction, usage UPSERTs, snapshot and, when
// on, the request log's INSERTs and ring pruning).
//
//   node bench/reqlog.mjs [--build DIR] [--seconds S] [--runs N] [--no-pin]
//
// Started by `bench/run --reqlog` after the optimised build (default DIR
// bench/out/build). The data plane runs alone on CPU 0, wrk and the mock on
// CPU 1. Writes its section of bench/RESULTS.md (between the reqlog:begin
// and reqlog:end markers, which a full bench/run keeps) and the raw figures
// to bench/out/reqlog.json. Every process started here is killed on exit.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = join(HERE, 'out');
const argv = process.argv.slice(2);
const opt = { build: join(OUT, 'build'), seconds: 6, runs: 2, pin: true };
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === '--build') opt.build = argv[++i];
	else if (argv[i] === '--seconds') opt.seconds = +argv[++i];
	else if (argv[i] === '--runs') opt.runs = +argv[++i];
	else if (argv[i] === '--no-pin') opt.pin = false;
	else { console.error(`reqlog.mjs: unknown option ${argv[i]}`); process.exit(2); }
}
const PIN = opt.pin && os.cpus().length >= 2;
const BIN = { dp: join(opt.build, 'sidecar-dataplane'), ctl: join(opt.build, 'sidecarctl'), mock: join(opt.build, 'tests', 'mock-upstream') };
const KEY = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const log = (...a) => console.log(`[reqlog ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
process.on('exit', () => { for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ } });
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));

function start(cpu, cmd, args, env = {}) {
	const full = PIN ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args];
	const p = spawn(full[0], full[1], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	p.stdout.on('data', (d) => { out = (out + d).slice(-65536); });
	p.stderr.on('data', (d) => { out = (out + d).slice(-65536); });
	live.add(p);
	p.on('exit', () => live.delete(p));
	p.out = () => out;
	p.stop = () => new Promise((r) => { if (p.exitCode !== null || p.signalCode) return r(); p.on('exit', r); p.kill('SIGTERM'); });
	return p;
}

async function waitFile(f, re, ms, p) {
	const end = Date.now() + ms;
	for (;;) {
		if (existsSync(f)) { const m = re.exec(readFileSync(f, 'utf8')); if (m) return m; }
		if (p.exitCode !== null) throw new Error(`exited: ${p.out()}`);
		if (Date.now() > end) throw new Error(`timed out waiting for ${f}`);
		await sleep(20);
	}
}

function get(port, path) {
	return new Promise((resolve, reject) => {
		http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
			let b = '';
			res.on('data', (d) => { b += d; });
			res.on('end', () => resolve(b));
		}).on('error', reject);
	});
}

// CPU seconds (user + system) of the process's threads: [the loop thread, all others].
function threadCpu(pid) {
	const tick = 100;	/* USER_HZ on Linux */
	let main = 0, rest = 0;
	for (const tid of readdirSync(`/proc/${pid}/task`)) {
		try {
			const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
			const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
			const t = (+f[11] + +f[12]) / tick;
			if (+tid === pid) main += t; else rest += t;
		} catch { /* thread gone */ }
	}
	return [main, rest];
}

function metric(text, name) {
	const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(text);
	return m ? +m[1] : NaN;
}

async function runOnce(rows, mockPort) {
	const dir = mkdtempSync(join(os.tmpdir(), 'bench-reqlog-'));
	const st = { db: join(dir, 'sidecar_v2.db'), key: randomBytes(32).toString('base64') };
	const env = { ...process.env, SIDECAR_ENCRYPTION_KEY: st.key };
	const ctl = (...a) => execFileSync(BIN.ctl, ['--db', st.db, ...a], { env, stdio: 'pipe' });
	ctl('init');
	writeFileSync(join(dir, 'p.yaml'), `providers:\n- account: "bench-01"\n  api_key: "${KEY}"\n` +
		`  endpoint_url: "http://127.0.0.1:${mockPort}/v1"\n  model_prefix: "mock/"\n  pool: main\n  rpm_limit: 100000\n`);
	ctl('import', join(dir, 'p.yaml'));
	for (const [k, v] of Object.entries({ rpm_window_seconds: 1, max_connections: 20000, request_log_rows: rows }))
		ctl('config', 'set', k, String(v));
	const pf = join(dir, 'ports');
	const dp = start('0', BIN.dp, ['--db', st.db, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0',
		'--port-file', pf, '--log-level', 'warn', '--log-file', join(dir, 'dp.log')], { SIDECAR_ENCRYPTION_KEY: st.key });
	const m = await waitFile(pf, /data (\d+)\nmetrics (\d+)/, 10000, dp);
	const port = +m[1], mport = +m[2];
	const body = join(dir, 'body.json');
	writeFileSync(body, JSON.stringify({ model: 'mock/meta/llama-3.1-8b-instruct', max_tokens: 16,
		messages: [{ role: 'user', content: 'x'.repeat(900) }] }));
	const wrk = (secs) => {
		const a = ['-t', '1', '-c', '32', '-d', `${secs}s`, '--latency', '-s', join(HERE, 'post.lua'), `http://127.0.0.1:${port}/v1/chat/completions`];
		const out = execFileSync(PIN ? 'taskset' : 'wrk', PIN ? ['-c', '1', 'wrk', ...a] : a,
			{ env: { ...process.env, BENCH_BODY: body, BENCH_HEADERS: '' }, maxBuffer: 16 << 20 }).toString();
		return JSON.parse(/BENCHJSON (\{.*\})/.exec(out)[1]);
	};
	wrk(1);	/* warm-up: connections, caches, the first rows */
	const before = await get(mport, '/metrics');
	const cpu0 = threadCpu(dp.pid);
	const r = wrk(opt.seconds);
	await sleep(1500);	/* the last flush of the run */
	const cpu1 = threadCpu(dp.pid);
	const after = await get(mport, '/metrics');
	const d = (n) => metric(after, n) - metric(before, n);
	const flushes = d('sidecar_stats_flush_seconds_count');
	const res = {
		rows, rps: r.rps, p50_us: r.lat_us.p50, p99_us: r.lat_us.p99, requests: r.requests,
		/* CPU µs per request: the event loop, and the other threads (statistics writer, maintenance) */
		loop_us: (cpu1[0] - cpu0[0]) / r.requests * 1e6, other_us: (cpu1[1] - cpu0[1]) / r.requests * 1e6,
		errors: r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout,
		flushes, flush_mean_ms: flushes > 0 ? d('sidecar_stats_flush_seconds_sum') / flushes * 1000 : NaN,
		flush_max_ms: metric(after, 'sidecar_stats_flush_max_seconds') * 1000,
		logged: d('sidecar_request_log_written_total'),
		log_rows: +execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, 'SELECT count(*) FROM request_log']).toString().trim(),
		db_mb: +(execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db,
			'SELECT page_count * page_size FROM pragma_page_count, pragma_page_size']).toString().trim()) / 1048576,
	};
	await dp.stop();
	rmSync(dir, { recursive: true, force: true });
	return res;
}

async function main() {
	for (const b of Object.values(BIN)) if (!existsSync(b)) throw new Error(`${b} is missing: run bench/run --reqlog (it builds them)`);
	mkdirSync(OUT, { recursive: true });
	const mpf = join(mkdtempSync(join(os.tmpdir(), 'bench-reqlog-mock-')), 'port');
	const mock = start('1', BIN.mock, ['--listen', '127.0.0.1:0', '--port-file', mpf, '--quiet', '--key', KEY]);
	const mockPort = +(await waitFile(mpf, /(\d+)/, 10000, mock))[1];
	const all = [];
	for (let i = 0; i < opt.runs; i++) {
		for (const rows of [20000, 0]) {	/* alternate, so drift in the machine's load hits both */
			const r = await runOnce(rows, mockPort);
			log(JSON.stringify(r));
			all.push(r);
		}
	}
	await mock.stop();
	const best = (rows) => all.filter((r) => r.rows === rows).sort((a, b) => b.rps - a.rps)[0];
	const mean = (rows, k) => { const x = all.filter((r) => r.rows === rows).map((r) => r[k]); return x.reduce((a, b) => a + b, 0) / x.length; };
	const on = best(20000), off = best(0);
	const summary = {
		when: new Date().toISOString(), loadavg: os.loadavg(), seconds: opt.seconds, runs: opt.runs, pinned: PIN, all,
		rps_ratio: on.rps / off.rps, flush_mean_ratio: mean(20000, 'flush_mean_ms') / mean(0, 'flush_mean_ms'),
	};
	writeFileSync(join(OUT, 'reqlog.json'), JSON.stringify(summary, null, 2));
	const f = (x, d = 1) => Number.isFinite(x) ? x.toFixed(d) : '–';
	const perRow = (rows) => {
		const x = all.filter((r) => r.rows === rows && r.logged > 0);
		return x.length ? x.reduce((a, r) => a + r.flush_mean_ms * r.flushes / r.logged, 0) / x.length * 1000 : NaN;
	};
	const lines = [
		'<!-- reqlog:begin -->',
		'## Request log on vs off (issue 19)',
		'',
		`Written by \`bench/run --reqlog\` (bench/reqlog.mjs) on ${summary.when}. Small non-streaming chat completions, ` +
		`wrk with 32 connections, ${opt.seconds} s per run, ${opt.runs} run(s) per setting alternated, ` +
		`${PIN ? 'the data plane pinned alone on CPU 0 (its statistics writer thread shares that core), wrk and the mock on CPU 1' : 'not pinned'}; ` +
		'a fresh data plane and database per run. Flush time: `sidecar_stats_flush_seconds` over the run (the whole ' +
		'BEGIN IMMEDIATE transaction: usage UPSERTs, live snapshot and, when on, the request log INSERTs and ring pruning, ' +
		'about one flush per `stats_flush_ms` = 1 s).',
		'',
		`| request_log_rows | req/s (best of ${opt.runs}) | p50 | p99 | loop CPU / request | other threads CPU / request | flushes | flush mean (all runs) | flush max | rows logged | rows kept | db size |`,
		'|---|---|---|---|---|---|---|---|---|---|---|---|',
	];
	for (const [name, r, rows] of [['20000 (on, default)', on, 20000], ['0 (off)', off, 0]])
		lines.push(`| ${name} | ${f(r.rps, 0)} | ${f(r.p50_us / 1000, 2)} ms | ${f(r.p99_us / 1000, 2)} ms | ` +
			`${f(mean(rows, 'loop_us'), 1)} µs | ${f(mean(rows, 'other_us'), 1)} µs | ${r.flushes} | ` +
			`${f(mean(rows, 'flush_mean_ms'), 2)} ms | ${f(r.flush_max_ms, 1)} ms | ${r.logged} | ${r.log_rows} | ${f(r.db_mb, 2)} MB |`);
	lines.push('', `- **Throughput on / off: ${f(summary.rps_ratio, 3)}**; mean flush time on / off: ${f(summary.flush_mean_ratio, 1)}; ` +
		`flush time per logged request: ${f(perRow(20000), 1)} µs (wall, on the writer thread).`);
	lines.push(`- CPU per request (mean of all runs, from /proc per-thread times, so less sensitive to the machine's load than ` +
		`req/s): event loop on ${f(mean(20000, 'loop_us'), 1)} vs off ${f(mean(0, 'loop_us'), 1)} µs; statistics writer and ` +
		`other threads on ${f(mean(20000, 'other_us'), 1)} vs off ${f(mean(0, 'other_us'), 1)} µs.`);
	lines.push('- Where the cost is: the statistics writer (the INSERTs of the row and its attempts, the index, the ring\'s ' +
		'range delete with its cascade) runs off the request path; the event loop\'s own part, copying the record, is about ' +
		'1 µs per request when measured alone. The rest of the loop\'s extra CPU here is the writer competing for the same ' +
		'two shared cores (scheduling, caches), at its worst when pinned to the data plane\'s core. At the design load ' +
		'(hundreds of requests per minute) the writer needs well under 1 % of a core; at thousands of requests per second ' +
		'it is the part to make cheaper (request_log_rows = 0 turns it off).');
	lines.push(`- Load average (1/5/15 min) at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; every run: ` +
		all.map((r) => `${r.rows ? 'on' : 'off'} ${f(r.rps, 0)} req/s`).join(', ') + '.');
	lines.push('<!-- reqlog:end -->');
	const section = lines.join('\n');
	console.log('\n' + section);
	const file = join(HERE, 'RESULTS.md');
	const cur = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
	const re = /<!-- reqlog:begin -->[\s\S]*<!-- reqlog:end -->/;
	writeFileSync(file, re.test(cur) ? cur.replace(re, section) : cur.replace(/\n*$/, '\n\n') + section + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
