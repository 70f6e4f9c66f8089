// Helpers for the operations black-box tests (ops_*.test.mjs): run a program
// with a time limit, query a database with the sqlite3 command-line shell,
// temporary directories that are always removed, and a fake encryption key.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const SRC = process.env.SC_TOP_SRCDIR ?? path.resolve(import.meta.dirname, '../..');
export const BUILD = process.env.SC_TOP_BUILDDIR ?? process.cwd();
// The real sidecarctl runs init/backup/restore/migrate; the test driver
// ctl/sc-ops adds `hold-lock`, the data plane's side of the lock convention.
export const CTL = path.join(BUILD, 'sidecarctl');
export const OPS = path.join(BUILD, 'ctl', 'sc-ops');
// An obviously fake 32-byte key (base64), never a real one.
export const FAKE_KEY = Buffer.from('TEST-KEY-0001-xxxxxxxxxxxxxxxxxx').toString('base64');
export const OTHER_KEY = Buffer.from('TEST-KEY-0002-yyyyyyyyyyyyyyyyyy').toString('base64');

// Run a program to completion (bounded); returns { code, stdout, stderr }.
export function run(cmd, args, opts = {}) {
	const r = spawnSync(cmd, args, {
		encoding: 'utf8',
		timeout: opts.timeout ?? 30000,
		env: { ...process.env, SIDECAR_ENCRYPTION_KEY: FAKE_KEY, ...(opts.env ?? {}) },
		cwd: opts.cwd,
		input: opts.input,
	});
	if (r.error) throw r.error;
	return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// sidecarctl against db (init, backup, restore, migrate, ...).
export function ops(db, args, opts = {}) {
	return run(CTL, ['--db', db, ...args], opts);
}

// Run SQL with the sqlite3 shell; returns stdout trimmed (rows '|'-separated).
export function sql(db, text, opts = {}) {
	const r = spawnSync('sqlite3', ['-batch', '-cmd', '.timeout 5000', db], {
		encoding: 'utf8', input: text, timeout: opts.timeout ?? 30000,
	});
	if (r.error) throw r.error;
	if (r.status !== 0 && !opts.allowFail) throw new Error(`sqlite3 ${db}: ${r.stderr}`);
	return opts.allowFail ? { code: r.status, out: r.stdout.trim(), err: r.stderr } : r.stdout.trim();
}

// A temporary directory, removed when the test ends (pass the test context).
export function tmpdir(t, prefix = 'sc-ops-') {
	const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	t.after(() => fs.rmSync(d, { recursive: true, force: true }));
	return d;
}

// Start a long-running process that is killed when the test ends.
export function start(t, cmd, args, opts = {}) {
	const p = spawn(cmd, args, { stdio: opts.stdio ?? ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) } });
	t.after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
	return p;
}

// Resolve when the stream has printed a line matching re (bounded).
export function waitFor(stream, re, ms = 10000) {
	return new Promise((resolve, reject) => {
		let buf = '';
		const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}; got: ${buf}`)), ms);
		stream.on('data', (d) => {
			buf += d;
			if (re.test(buf)) { clearTimeout(timer); resolve(buf); }
		});
	});
}

// The data tables a v1 data plane writes, as text, for before/after comparisons.
export function dumpData(db) {
	return sql(db, `
		SELECT id, name, api_key, api_key_mask, pool, status, rpm_limit, metadata, created_at FROM providers ORDER BY id;
		SELECT * FROM provider_usage_logs ORDER BY id;
		SELECT * FROM cooldown_events ORDER BY id;
		SELECT * FROM daily_stats ORDER BY id;
		SELECT * FROM provider_health ORDER BY provider_id;
		SELECT key, value FROM system_config ORDER BY key;`);
}

// Settings that migrations after version 1 add with their defaults (a
// version-1 database upgraded gains these rows and nothing else).
export const SETTINGS_SINCE_V1 = ['request_log_rows|20000'];

// dumpData of a database upgraded from version 1, without SETTINGS_SINCE_V1
// (each must be present exactly once), to compare with the version-1 dump.
export function dumpUpgraded(db) {
	let d = dumpData(db);
	for (const line of SETTINGS_SINCE_V1) {
		const lines = d.split('\n');
		const i = lines.indexOf(line);
		if (i < 0)
			throw new Error(`upgraded database lacks the setting row ${line}`);
		lines.splice(i, 1);
		d = lines.join('\n');
	}
	return d;
}

// The schema version this build creates and migrates to.
export const LATEST_VERSION = 4;

// Rows a v1 system holds: providers, usage, cooldowns, health, daily totals.
export const V1_DATA = `
INSERT INTO providers (id, name, api_key, api_key_mask, endpoint_url, model_prefix, pool, source, metadata) VALUES
 ('00000000-0000-4000-8000-000000000001', 'nim-01', 'v1:AAAAfakeciphertext01', 'nvapi-TEST…0001', 'http://127.0.0.1:9/v1', 'nvidia/', 'main', 'yaml', '{"email":"ops@example.invalid"}'),
 ('00000000-0000-4000-8000-000000000002', 'nim-02', 'v1:AAAAfakeciphertext02', 'nvapi-TEST…0002', 'http://127.0.0.1:9/v1', 'nvidia/', 'fallback', 'api', '{}');
INSERT INTO provider_usage_logs (id, provider_id, model, prompt_tokens, completion_tokens, total_tokens, cost,
  request_count, error_count, latency_sum_ms, avg_latency_ms, hour_bucket) VALUES
 ('00000000-0000-4000-8000-000000000001|llama|2026-11-25T10', '00000000-0000-4000-8000-000000000001', 'llama', 100, 200, 300, 0.3, 5, 1, 1500, 300, '2026-11-25T10'),
 ('00000000-0000-4000-8000-000000000002|llama|2026-11-25T11', '00000000-0000-4000-8000-000000000002', 'llama', 10, 20, 30, 0.03, 1, 0, 90, 90, '2026-11-25T11');
INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary, started_at, ended_at) VALUES
 ('c-1', '00000000-0000-4000-8000-000000000001', 1, 30, '429 rate limited', '2026-11-25T10:05:00Z', '2026-11-25T10:05:30Z'),
 ('c-2', '00000000-0000-4000-8000-000000000001', 2, 60, '429 rate limited', '2026-11-25T10:06:00Z', '2026-11-25T10:07:00Z');
INSERT INTO provider_health (provider_id, state, last_latency_ms, last_status_code) VALUES
 ('00000000-0000-4000-8000-000000000001', 'healthy', 300, 200);
INSERT INTO daily_stats (id, date, pool, total_requests, total_errors, total_tokens, total_cost, unique_providers) VALUES
 ('2026-11-25|main', '2026-11-25', 'main', 5, 1, 300, 0.3, 1);
UPDATE system_config SET value = '45' WHERE key = 'queue_timeout_seconds';
`;

// A version-1 database from the frozen schema, with V1_DATA in it and the
// check value of FAKE_KEY (as `sidecarctl init` of version 1 stored it; the
// value does not depend on the schema, so it is taken from a new database).
export function makeV1(db) {
	const schema = fs.readFileSync(path.join(SRC, 'tests/fixtures/schema-v1.sql'), 'utf8');
	const keydb = db + '.keysrc';
	const r = ops(keydb, ['init']);
	if (r.code !== 0) throw new Error(`sidecarctl init: ${r.stderr}`);
	const check = sql(keydb, "SELECT value FROM meta WHERE key = 'key_check';");
	for (const f of [keydb, keydb + '-wal', keydb + '-shm', keydb + '.lock']) fs.rmSync(f, { force: true });
	sql(db, `PRAGMA journal_mode=WAL;\n${schema}\nPRAGMA user_version=1;\n${V1_DATA}
		INSERT INTO meta (key, value) VALUES ('key_check', '${check.replace(/'/g, "''")}');`);
}

export function isRoot() {
	return typeof process.getuid === 'function' && process.getuid() === 0;
}
