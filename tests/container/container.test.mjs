// The container image and compose.yaml, built and run with podman (the
// container pass of scripts/test; tests/README.md). No registry is reachable
// from CI machines, so the image builds on a local debootstrap base
// (tests/container/base-image.sh) with --build-arg BASE. The tests run in
// order and share the compose project's state:
//
//   1. the image: built from a clean checkout (the tracked and new files of the
//      tree, no build directories), no compiler, runs as sidecar, its size;
//   2. both roles from compose.yaml (podman-compose), with the mock upstream in
//      a third container sharing the data plane's network namespace: a chat
//      completion reaches it, the admin panel answers with its token, /metrics
//      passes promtool, HEALTHCHECK, every process non-root;
//   3. SIGTERM under load: in-flight requests finish, exit 0; a restart keeps
//      providers, cooldowns and statistics; `compose run --rm ... backup`;
//   4. a wrong, missing or unreadable key: exit 1 with the message, the database
//      byte for byte as it was; no key in any `podman logs`;
//   5. --network host with a loopback listener: no client token, runs as on a
//      host; the non-loopback refusal without client tokens is kept;
//   6. an old (version 1) database is migrated on start, after a backup.
//
// Ports (loopback only): 19510-19512 compose, 19519 the mock inside the data
// plane's namespace, 19520-19522 host networking.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SRC = process.env.SC_TOP_SRCDIR ?? path.resolve(import.meta.dirname, '../..');
const BUILD = process.env.SC_TOP_BUILDDIR ?? path.join(SRC, 'build');
process.env.SC_TOP_BUILDDIR = BUILD;	// for ops_lib's makeV1
const { makeV1, FAKE_KEY } = await import('../blackbox/ops_lib.mjs');

const IMAGE = process.env.SC_CONTAINER_IMAGE ?? 'localhost/sidecar-v2:test';
const BASE = process.env.SC_CONTAINER_BASE ?? 'localhost/sidecar-test-base:bookworm';
const P = 'sc-ctest';	// compose project; every name below starts with it
const DP = `${P}_dataplane_1`, ADMIN = `${P}_admin_1`, MOCK = `${P}-mock`, HOSTDP = `${P}-hostdp`;
const VOL = `${P}_sidecar-state`, HOSTVOL = `${P}-hoststate`, V1VOL = `${P}-v1state`, EMPTYVOL = `${P}-empty`;
const PORTS = { dp: 19510, metrics: 19511, admin: 19512, mock: 19519, hostMock: 19520, hostDp: 19521, hostMetrics: 19522 };
const UID = 10190;
const ULIMITS = ['--ulimit', 'nofile=16384:16384', '--ulimit', 'nproc=4096:4096'];
// Obviously fake provider keys; K2 is allowed 2 requests a minute upstream
// while the sidecar believes 40, so it gets a 429 and cools down.
const K1 = 'nvapi-TEST-ctr-0001-xxxxxxxxxxxxxxxx';
const K2 = 'nvapi-TEST-ctr-0002-ratelimitedxxxxx';
const WRONG_KEY = Buffer.from('TEST-KEY-9999-wrongwrongwrongwro').toString('base64');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-ctest-'));
const env = { ...process.env, CONTAINERS_CONF: path.join(SRC, 'tests/container/containers.conf') };
const keyFile = path.join(work, 'encryption.key');
let encKey = '';	// the stack's key (base64), never to appear in a log
const tokens = { admin: '', client: '' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sh(cmd, args, opts = {}) {
	const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...env, ...(opts.env ?? {}) },
		timeout: opts.timeout ?? 120000, input: opts.input, cwd: opts.cwd ?? SRC, maxBuffer: 64 << 20 });
	if (r.error) throw r.error;
	return { code: r.status, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr };
}
const podman = (args, opts) => sh('podman', args, opts);
// podman's complaints about healthcheck timers on hosts without systemd are noise.
const clean = (s) => s.split('\n').filter((l) => !/systemd connection|healthcheck timer/i.test(l)).join('\n');

function compose(args, opts = {}) {
	return sh('podman-compose', ['-p', P, '-f', path.join(SRC, 'compose.yaml'), ...args], {
		...opts, env: { SIDECAR_IMAGE: IMAGE, SIDECAR_KEY_FILE: keyFile, SIDECAR_PORT: String(PORTS.dp),
			SIDECAR_METRICS_PORT: String(PORTS.metrics), SIDECAR_ADMIN_PORT: String(PORTS.admin) },
	});
}

// Containers with -v: the image declares VOLUME /var/lib/sidecar, so one
// started without that mount (the mock) has an anonymous volume.
function removeAll() {
	for (const c of [MOCK, HOSTDP, DP, ADMIN]) podman(['rm', '-f', '-v', '-t', '2', c]);
	for (const v of [VOL, HOSTVOL, V1VOL, EMPTYVOL]) podman(['volume', 'rm', '-f', v]);
	podman(['network', 'rm', '-f', `${P}_default`]);
}

function volumeDir(v) {
	const r = podman(['volume', 'inspect', '--format', '{{.Mountpoint}}', v]);
	assert.equal(r.code, 0, r.stderr);
	return r.stdout.trim();
}

// Every file in a directory tree with its SHA-256: "the database is untouched".
// Not the -shm file: SQLite's shared-memory index of the WAL, which every
// reader, even a read-only one, may rebuild; it holds no data.
function snapshot(dir) {
	const out = {};
	const walk = (d) => {
		for (const e of fs.readdirSync(d, { withFileTypes: true })) {
			const p = path.join(d, e.name);
			if (e.isDirectory()) walk(p);
			else if (!e.name.endsWith('-shm')) out[path.relative(dir, p)] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
		}
	};
	walk(dir);
	return out;
}

async function waitHttp(url, okStatus = (s) => s > 0, ms = 30000) {
	const end = Date.now() + ms;
	let last = '';
	while (Date.now() < end) {
		try {
			const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
			await r.arrayBuffer();
			if (okStatus(r.status)) return r.status;
			last = `status ${r.status}`;
		} catch (e) { last = e.message; }
		await sleep(200);
	}
	throw new Error(`${url} did not answer in time (${last})`);
}

function chat(port, token, headers = {}) {
	const h = { 'content-type': 'application/json', ...headers };
	if (token) h.authorization = `Bearer ${token}`;
	return fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
		method: 'POST', headers: h, signal: AbortSignal.timeout(30000),
		body: JSON.stringify({ model: 'mock/test-model', messages: [{ role: 'user', content: 'hello' }] }),
	});
}

async function admin(pathname, token = tokens.admin) {
	const r = await fetch(`http://127.0.0.1:${PORTS.admin}${pathname}`, {
		headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10000) });
	const text = await r.text();
	return { status: r.status, text, json: r.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null };
}

function providersYaml(endpoint) {
	return `providers:
- account: ctr-main-1
  email: ops@example.invalid
  api_key: ${K1}
  endpoint_url: ${endpoint}
  model_prefix: "mock/"
  pool: main
  rpm_limit: 40
- account: ctr-main-2-limited
  email: ops@example.invalid
  api_key: ${K2}
  endpoint_url: ${endpoint}
  model_prefix: "mock/"
  pool: main
  rpm_limit: 40
`;
}

// sidecarctl inside a running container (it has the container's environment).
function ctlIn(ctr, args, input) {
	const r = podman(['exec', '-i', ctr, 'sh', '-c', input === undefined ? 'exec sidecarctl "$@"' :
		'cat > /tmp/in.yaml && exec sidecarctl "$@" /tmp/in.yaml', 'sh', ...args], { input });
	assert.equal(r.code, 0, `sidecarctl ${args.join(' ')} in ${ctr}: ${r.out}`);
	return r.stdout;
}

// The mock upstream of this build, in a container that joins ctr's network namespace.
function startMock(ctr) {
	podman(['rm', '-f', '-v', '-t', '1', MOCK]);
	const r = podman(['run', '-d', '--name', MOCK, '--network', `container:${ctr}`, '--user', String(UID),
		...ULIMITS, '--no-healthcheck', '-v', `${path.join(BUILD, 'tests/mock-upstream')}:/usr/local/bin/mock-upstream:ro`,
		'--entrypoint', '/usr/local/bin/mock-upstream', IMAGE,
		'--listen', `127.0.0.1:${PORTS.mock}`, '--key', `${K1}:1000`, '--key', `${K2}:2`, '--quiet']);
	assert.equal(r.code, 0, r.out);
}

function mockStats() {
	const r = podman(['exec', MOCK, 'curl', '-fsS', `http://127.0.0.1:${PORTS.mock}/_mock/stats`]);
	assert.equal(r.code, 0, r.out);
	return JSON.parse(r.stdout);
}

// The tokens the first start printed, from both containers' logs.
function tokensFromLogs() {
	const logs = clean(podman(['logs', DP]).out + podman(['logs', ADMIN]).out);
	const admins = [...logs.matchAll(/admin token for the admin panel, shown only this once.*: (sc_admin_\S+)/g)];
	const clients = [...logs.matchAll(/client token for OpenClaw.*shown only this once.*: (sc_client_\S+)/g)];
	return { logs, admins: admins.map((m) => m[1]), clients: clients.map((m) => m[1]) };
}

async function providersState() {
	const r = await admin('/api/v2/providers');
	assert.equal(r.status, 200, r.text);
	return Object.fromEntries(r.json.providers.map((p) => [p.name, p]));
}

async function totalRequests() {
	const r = await admin('/api/v2/stats/totals?range=day');
	assert.equal(r.status, 200, r.text);
	return r.json.totals?.requests ?? 0;
}

before(async () => {
	for (const p of ['podman', 'podman-compose', 'promtool', 'debootstrap']) {
		assert.equal(sh('sh', ['-c', `command -v ${p}`]).code, 0, `${p} not found: run scripts/install-deps`);
	}
	for (const f of ['tests/mock-upstream', 'ctl/sc-ops', 'sidecarctl'])
		assert.ok(fs.existsSync(path.join(BUILD, f)), `${BUILD}/${f} missing (make ${f})`);
	removeAll();
	(encKey = sh(path.join(BUILD, 'sidecarctl'), ['keygen']).stdout.trim());
	fs.writeFileSync(keyFile, encKey + '\n', { mode: 0o400 });
	fs.chownSync(keyFile, UID, UID);
});

after(() => {
	removeAll();
	fs.rmSync(work, { recursive: true, force: true });
});

test('the image builds from a clean checkout; no compiler; user sidecar; size', { timeout: 900000 }, (t) => {
	let r = sh(path.join(SRC, 'tests/container/base-image.sh'), [BASE], { timeout: 600000 });
	assert.equal(r.code, 0, r.out);
	t.diagnostic(r.stderr.match(/base-image: made .*/)?.[0] ?? `base image ${BASE} reused`);
	// A clean checkout: what git tracks plus new files it does not ignore.
	const ctx = path.join(work, 'context');
	fs.mkdirSync(ctx);
	r = sh('sh', ['-c', 'git ls-files -z -co --exclude-standard | xargs -0 sh -c \'for f; do [ -e "$f" ] && printf "%s\\0" "$f"; done\' sh | tar --null -T - -c | tar -x -C "$0"', ctx]);
	assert.equal(r.code, 0, r.out);
	assert.ok(!fs.existsSync(path.join(ctx, 'build')) && !fs.existsSync(path.join(ctx, 'configure')));
	const t0 = Date.now();
	const old = podman(['image', 'inspect', '--format', '{{.Id}}', IMAGE]).stdout.trim();
	r = podman(['build', '--format', 'docker', ...ULIMITS, '--build-arg', `BASE=${BASE}`, '-t', IMAGE, ctx], { timeout: 1200000 });
	assert.equal(r.code, 0, r.out.slice(-6000));
	t.diagnostic(`image built in ${Math.round((Date.now() - t0) / 1000)} s`);
	const id = podman(['image', 'inspect', '--format', '{{.Id}}', IMAGE]).stdout.trim();
	// The previous image of this tag and builds' leftovers older than this one.
	if (old && old !== id) podman(['rmi', old]);
	for (const label of ['io.sidecar-v2.stage=build', 'org.opencontainers.image.title=sidecar-v2'])
		podman(['image', 'prune', '-f', '--filter', `label=${label}`, '--filter', `until=${new Date(t0).toISOString()}`]);

	const info = JSON.parse(podman(['image', 'inspect', IMAGE]).stdout)[0];
	assert.equal(info.Config.User, 'sidecar');
	assert.deepEqual(info.Config.Entrypoint, ['sidecar-entrypoint']);
	assert.deepEqual(info.Healthcheck?.Test, ['CMD', 'sidecar-healthcheck'], 'HEALTHCHECK kept (docker format)');
	assert.ok(Object.keys(info.Config.Volumes ?? {}).includes('/var/lib/sidecar'));
	t.diagnostic(`image ${IMAGE}: ${(info.Size / 1e6).toFixed(0)} MB`);

	r = podman(['run', '--rm', ...ULIMITS, '--no-healthcheck', '--entrypoint', 'sh', IMAGE, '-c', `
		id -un; id -u
		for c in cc gcc c99 c++ g++ cpp clang tcc ld as make autoconf; do command -v "$c" && echo "COMPILER $c"; done
		for p in gcc gcc-12 cpp cpp-12 binutils build-essential libc6-dev clang; do dpkg -s "$p" >/dev/null 2>&1 && echo "COMPILER package $p"; done
		[ -e /usr/include/stdio.h ] && echo "COMPILER headers"
		for b in sidecar-dataplane sidecar-admin sidecar-events sidecarctl; do ldd /usr/bin/$b | grep 'not found' && echo "MISSING lib for $b"; done
		ls /usr/share/sidecar-v2/htdocs/index.html /usr/share/sidecar-v2/sql/schema.sql /usr/share/sidecar-v2/sidecar.conf.in >/dev/null && echo files-ok
		sidecarctl version`]);
	assert.equal(r.code, 0, r.out);
	assert.match(r.stdout, /^sidecar\n10190\n/);
	assert.doesNotMatch(r.stdout, /COMPILER|MISSING/);
	assert.match(r.stdout, /files-ok/);
	assert.match(r.stdout, /sidecarctl \(sidecar-v2\) .* schema version \d+/);
});

test('compose: both roles; chat reaches the mock; admin panel; metrics; health; non-root', { timeout: 300000 }, async (t) => {
	let r = compose(['up', '-d'], { timeout: 180000 });
	assert.equal(r.code, 0, r.out);
	await waitHttp(`http://127.0.0.1:${PORTS.dp}/health`);
	await waitHttp(`http://127.0.0.1:${PORTS.admin}/`, (s) => s === 200);

	// The first start printed one admin and one client token, in one of the two logs.
	const tl = tokensFromLogs();
	assert.equal(tl.admins.length, 1, tl.logs);
	assert.equal(tl.clients.length, 1, tl.logs);
	tokens.admin = tl.admins[0];
	tokens.client = tl.clients[0];

	// Providers pointing at the mock, which listens in the data plane's namespace.
	ctlIn(DP, ['config', 'set', 'cooldown_base_seconds', '900']);
	ctlIn(DP, ['import'], providersYaml(`http://127.0.0.1:${PORTS.mock}/v1`));
	startMock(DP);
	await waitHttp(`http://127.0.0.1:${PORTS.dp}/health`, (s) => s === 200);

	// The data plane listens beyond loopback in its network: a token is required.
	let res = await chat(PORTS.dp, null);
	assert.equal(res.status, 401, await res.text());
	res = await chat(PORTS.dp, 'sc_client_not-a-real-token');
	assert.equal(res.status, 401, await res.text());
	for (let i = 0; i < 8; i++) {
		res = await chat(PORTS.dp, tokens.client);
		const body = await res.text();
		assert.equal(res.status, 200, body);
		assert.ok(JSON.parse(body).choices.length > 0, body);
		assert.match(res.headers.get('x-sidecar-provider') ?? '', /^ctr-main-/);
	}
	// They reached the mock (one 429 of the limited key was retried invisibly).
	const ms = mockStats();
	assert.ok(ms.by_status['200'] >= 8, JSON.stringify(ms));
	t.diagnostic(`mock stats: ${JSON.stringify(ms)}`);

	// The admin panel with its token; the limited key is now cooling.
	assert.equal((await admin('/api/v2/providers', null)).status, 401);
	const page = await fetch(`http://127.0.0.1:${PORTS.admin}/`);
	assert.equal(page.status, 200);
	assert.match(page.headers.get('content-type'), /text\/html/);
	await page.text();
	const prov = await providersState();
	assert.deepEqual(Object.keys(prov).sort(), ['ctr-main-1', 'ctr-main-2-limited']);
	assert.equal(prov['ctr-main-2-limited'].cooling, true, JSON.stringify(prov));
	const list = JSON.stringify(prov);
	assert.ok(!list.includes(K1) && !list.includes(K2), 'keys are masked');

	// /metrics through the published port passes promtool.
	const metrics = await (await fetch(`http://127.0.0.1:${PORTS.metrics}/metrics`)).text();
	assert.match(metrics, /^sidecar_/m);
	r = sh('promtool', ['check', 'metrics'], { input: metrics });
	assert.equal(r.code, 0, r.out);

	// HEALTHCHECK of both roles, and every process runs as sidecar.
	for (const c of [DP, ADMIN]) {
		r = podman(['healthcheck', 'run', c]);
		assert.equal(r.code, 0, `${c}: ${r.out}`);
		r = podman(['top', c, 'user', 'args']);
		assert.equal(r.code, 0, r.out);
		const rows = r.stdout.trim().split('\n').slice(1);
		assert.ok(rows.length >= (c === ADMIN ? 3 : 1), r.stdout);
		for (const row of rows) assert.match(row, /^sidecar\s/, `${c}: ${row}`);
	}
	r = podman(['top', ADMIN, 'args']);
	assert.match(r.stdout, /lighttpd/);
	assert.match(r.stdout, /sidecar-admin/);
	assert.match(r.stdout, /sidecar-events/);
});

test('SIGTERM under load drains; restart keeps providers, cooldowns, statistics; compose run backup', { timeout: 300000 }, async (t) => {
	const before = await providersState();
	const cooldownUntil = before['ctr-main-2-limited'].cooldown_until;
	assert.ok(cooldownUntil, JSON.stringify(before));

	// 12 requests the mock holds for 2.5 s each; SIGTERM while they are in flight.
	const inflight = [];
	for (let i = 0; i < 12; i++)
		inflight.push(chat(PORTS.dp, tokens.client, { 'x-mock-latency-ms': '2500' }).then(async (r) => ({ status: r.status, body: await r.text() })));
	await sleep(800);
	// podman stop sends the image's STOPSIGNAL (SIGTERM) and waits up to 45 s.
	const stopped = new Promise((resolve) => {
		const p = spawn('podman', ['stop', '-t', '45', DP], { env, stdio: 'ignore' });
		p.on('exit', (code) => resolve(code));
	});
	const results = await Promise.all(inflight);
	for (const x of results) assert.equal(x.status, 200, x.body);
	assert.equal(await stopped, 0, 'podman stop');
	let r = podman(['inspect', '--format', '{{.State.ExitCode}}', DP]);
	assert.equal(r.stdout.trim(), '0', `exit status after SIGTERM: ${r.out}`);
	assert.match(podman(['logs', DP]).out, /SIGTERM: draining[\s\S]*drained; exiting/);

	// Restart everything (the mock first: it lives in the data plane's namespace).
	podman(['rm', '-f', '-v', '-t', '1', MOCK]);
	r = podman(['stop', '-t', '45', ADMIN]);
	assert.equal(r.code, 0, r.out);
	r = podman(['start', DP, ADMIN]);
	assert.equal(r.code, 0, r.out);
	await waitHttp(`http://127.0.0.1:${PORTS.admin}/`, (s) => s === 200);
	startMock(DP);
	await waitHttp(`http://127.0.0.1:${PORTS.dp}/health`, (s) => s === 200);

	const afterP = await providersState();
	assert.deepEqual(Object.keys(afterP).sort(), Object.keys(before).sort());
	assert.equal(afterP['ctr-main-2-limited'].cooling, true, 'the cooldown survived the restart');
	assert.equal(afterP['ctr-main-2-limited'].cooldown_until, cooldownUntil);
	const cd = await admin('/api/v2/cooldowns');
	assert.equal(cd.status, 200, cd.text);
	assert.ok(cd.json.cooldowns.some((c) => c.provider === 'ctr-main-2-limited'), cd.text);
	// 8 + 12 answered requests, flushed at the latest by the graceful stop.
	const n = await totalRequests();
	assert.ok(n >= 20, `statistics after the restart: ${n} requests`);
	// No new tokens on later starts.
	const tl = tokensFromLogs();
	assert.equal(tl.admins.length, 1);
	assert.equal(tl.clients.length, 1);
	const res = await chat(PORTS.dp, tokens.client);
	assert.equal(res.status, 200, await res.text());

	// The documented cron backup: a one-off container of the same image.
	// podman-compose 1.0.3 (Debian 12) exits 0 whatever `run` did, so the
	// outcome is read from the output (and the files).
	r = compose(['run', '--rm', '-T', '--no-deps', 'dataplane', 'sidecarctl', 'backup'], { timeout: 120000 });
	assert.match(r.stdout, /^backup ok: \/var\/lib\/sidecar\/backups\/sidecar_v2-\d{8}T\d{6}Z\.db/m, r.out);
	const backups = fs.readdirSync(path.join(volumeDir(VOL), 'backups')).filter((f) => f.endsWith('.db'));
	assert.ok(backups.length >= 1, `backups: ${backups}`);
	r = compose(['run', '--rm', '-T', '--no-deps', 'dataplane', 'sidecarctl', 'providers', 'list'], { timeout: 120000 });
	assert.match(r.stdout, /ctr-main-1/, r.out);
	assert.ok(!r.stdout.includes(K1));

	// The documented restore: refused while the data plane runs, done when stopped.
	const file = `/var/lib/sidecar/backups/${backups.sort().at(-1)}`;
	r = compose(['run', '--rm', '-T', '--no-deps', 'dataplane', 'sidecarctl', 'restore', file], { timeout: 120000 });
	assert.match(r.stderr, /sidecarctl restore: refused: the data plane is running/, r.out);
	podman(['rm', '-f', '-v', '-t', '1', MOCK]);
	for (const c of [DP, ADMIN]) assert.equal(podman(['stop', '-t', '45', c]).code, 0);
	r = compose(['run', '--rm', '-T', '--no-deps', 'dataplane', 'sidecarctl', 'restore', file], { timeout: 120000 });
	assert.match(r.stdout, /^restored /m, r.out);
	assert.doesNotMatch(r.stderr, /sidecarctl restore: /, r.out);
	assert.equal(podman(['start', DP, ADMIN]).code, 0);
	await waitHttp(`http://127.0.0.1:${PORTS.admin}/`, (s) => s === 200);
	assert.deepEqual(Object.keys(await providersState()).sort(), ['ctr-main-1', 'ctr-main-2-limited']);
	await waitHttp(`http://127.0.0.1:${PORTS.dp}/health`, (s) => s === 200);
});

test('a wrong, missing or unreadable key: exit 1 with the message, the database untouched', { timeout: 300000 }, async () => {
	podman(['rm', '-f', '-v', '-t', '1', MOCK]);
	for (const c of [DP, ADMIN]) assert.equal(podman(['stop', '-t', '45', c]).code, 0);
	let r;
	const dir = volumeDir(VOL);
	const snap = snapshot(dir);
	assert.ok(snap['sidecar_v2.db'], JSON.stringify(Object.keys(snap)));

	const wrong = path.join(work, 'wrong.key');
	fs.writeFileSync(wrong, WRONG_KEY + '\n', { mode: 0o400 });
	fs.chownSync(wrong, UID, UID);
	const unreadable = path.join(work, 'root-only.key');
	fs.writeFileSync(unreadable, encKey + '\n', { mode: 0o400 });
	const secret = (f) => ['-v', `${f}:/run/secrets/sidecar_encryption_key:ro`];
	const cases = [
		['wrong key, data plane', [...secret(wrong)], ['dataplane'], /cannot start: encryption key does not match this database/],
		['wrong key, admin', [...secret(wrong)], ['admin'], /cannot start: encryption key does not match this database/],
		['no key file', [], ['dataplane'], /cannot start: the encryption key file \/run\/secrets\/sidecar_encryption_key is missing/],
		['unreadable key file', [...secret(unreadable)], ['admin'], /cannot start: the encryption key file .* is not readable by uid 10190/],
		['key in the environment', ['-e', `SIDECAR_ENCRYPTION_KEY=${WRONG_KEY}`, ...secret(keyFile)], ['dataplane'],
			/cannot start: SIDECAR_ENCRYPTION_KEY is set in the environment/],
	];
	for (const [what, opts, cmd, re] of cases) {
		r = podman(['run', '--rm', ...ULIMITS, '--no-healthcheck', '--network', 'none', '-v', `${VOL}:/var/lib/sidecar`, ...opts, IMAGE, ...cmd]);
		assert.notEqual(r.code, 0, `${what}: exit status ${r.code}`);
		assert.match(clean(r.stderr), re, what);
		assert.ok(!r.out.includes(encKey), `${what}: the key was printed`);
		assert.deepEqual(snapshot(dir), snap, `${what}: the volume changed`);
	}
	// A fresh volume without a key gets no database.
	r = podman(['run', '--rm', ...ULIMITS, '--no-healthcheck', '--network', 'none', '-v', `${EMPTYVOL}:/var/lib/sidecar`, IMAGE, 'admin']);
	assert.notEqual(r.code, 0);
	assert.match(clean(r.stderr), /encryption key file .* is missing/);
	assert.ok(!fs.existsSync(path.join(volumeDir(EMPTYVOL), 'sidecar_v2.db')));
});

test('--network host with a loopback listener runs as on a host; the non-loopback refusal stays', { timeout: 300000 }, async (t) => {
	const mock = spawn(path.join(BUILD, 'tests/mock-upstream'), ['--listen', `127.0.0.1:${PORTS.hostMock}`, '--key', `${K1}:1000`, '--quiet'], { stdio: 'ignore' });
	t.after(() => mock.kill('SIGKILL'));
	let r = podman(['run', '-d', '--name', HOSTDP, '--network', 'host', ...ULIMITS, '-v', `${HOSTVOL}:/var/lib/sidecar`,
		'-v', `${keyFile}:/run/secrets/sidecar_encryption_key:ro`,
		'-e', `SIDECAR_LISTEN=127.0.0.1:${PORTS.hostDp}`, '-e', `SIDECAR_METRICS_LISTEN=127.0.0.1:${PORTS.hostMetrics}`, IMAGE]);
	assert.equal(r.code, 0, r.out);
	await waitHttp(`http://127.0.0.1:${PORTS.hostDp}/health`);
	let logs = clean(podman(['logs', HOSTDP]).out);
	assert.match(logs, /admin token for the admin panel, shown only this once/);
	assert.doesNotMatch(logs, /client token/, 'a loopback listener needs no client token');
	ctlIn(HOSTDP, ['import'], providersYaml(`http://127.0.0.1:${PORTS.hostMock}/v1`).split('- account: ctr-main-2')[0]);
	await waitHttp(`http://127.0.0.1:${PORTS.hostDp}/health`, (s) => s === 200);
	const res = await chat(PORTS.hostDp, null);
	assert.equal(res.status, 200, await res.text());
	r = podman(['stop', '-t', '45', HOSTDP]);
	assert.equal(r.code, 0, r.out);
	assert.equal(podman(['inspect', '--format', '{{.State.ExitCode}}', HOSTDP]).stdout.trim(), '0');

	// The same database (no client token) behind a non-loopback listener: refused,
	// and the entrypoint does not make a token for it. --network none: nothing is exposed.
	r = podman(['run', '--rm', ...ULIMITS, '--no-healthcheck', '--network', 'none', '-v', `${HOSTVOL}:/var/lib/sidecar`,
		'-v', `${keyFile}:/run/secrets/sidecar_encryption_key:ro`, '-e', 'SIDECAR_LISTEN=0.0.0.0:9190', IMAGE, 'dataplane']);
	assert.equal(r.code, 1, r.out);
	assert.match(r.stderr, /refusing to listen on non-loopback 0\.0\.0\.0:9190 without client tokens/);
	assert.doesNotMatch(r.out, /client token for OpenClaw/);
	logs = clean(podman(['logs', HOSTDP]).out);
	assert.ok(!logs.includes(encKey));
});

test('an old database is migrated on start, after a pre-migration backup', { timeout: 300000 }, async () => {
	assert.equal(podman(['volume', 'create', V1VOL]).code, 0);
	const dir = volumeDir(V1VOL);
	makeV1(path.join(dir, 'sidecar_v2.db'));
	for (const f of fs.readdirSync(dir)) fs.chownSync(path.join(dir, f), UID, UID);
	fs.chownSync(dir, UID, UID);
	const fake = path.join(work, 'fake.key');
	fs.writeFileSync(fake, FAKE_KEY + '\n', { mode: 0o400 });
	fs.chownSync(fake, UID, UID);
	const r = podman(['run', '--rm', ...ULIMITS, '--no-healthcheck', '--network', 'none', '-v', `${V1VOL}:/var/lib/sidecar`,
		'-v', `${fake}:/run/secrets/sidecar_encryption_key:ro`, IMAGE, 'dataplane', '--help']);
	assert.equal(r.code, 0, r.out);
	// `dataplane --help` went through the setup: the migration ran with its backup.
	assert.match(r.stdout, /migrated .* from schema version 1 to \d+ \(pre-migration backup: .*premigrate-v1/);
	assert.ok(fs.readdirSync(path.join(dir, 'backups')).some((f) => f.includes('premigrate-v1')));
	assert.doesNotMatch(r.out, /admin token/, 'an existing database gets no new admin token');
});

test('no key in any container log', () => {
	for (const c of [DP, ADMIN, HOSTDP]) {
		const logs = podman(['logs', c]).out;
		assert.ok(logs.length > 0, `${c} has logs`);
		for (const secret of [encKey, K1, K2]) assert.ok(!logs.includes(secret), `${c}: a key in the log`);
	}
});
