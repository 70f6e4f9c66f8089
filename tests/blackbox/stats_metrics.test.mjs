// The metrics port of the real data plane: `promtool check metrics` accepts
// the output, counters move exactly as requests flow, queue rejections are
// counted by reason, the database and backup gauges match the files and the
// backups table, and the data plane's "<db>.lock" keeps both a second data
// plane and `sidecarctl restore` away while it runs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startMock } from './lib/mock.mjs';
import { BUILDDIR, cleanup, makeDb, postJson, request, sleep, startDataplane } from './lib/stack.mjs';

const KEY1 = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const KEY2 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';

function sql(st, q) {
	return execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q], { encoding: 'utf8' }).trim();
}
async function scrape(dp) {
	const r = await request(`http://127.0.0.1:${dp.metricsPort}/metrics`);
	assert.equal(r.status, 200);
	assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
	return r.body;
}
// The value of one series (exact name and labels as rendered), or undefined.
function value(text, series) {
	for (const line of text.split('\n')) {
		if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
	}
	return undefined;
}
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

describe('metrics port', () => {
	let mock, st, dp;
	before(async () => {
		mock = await startMock({ keys: [{ key: KEY1 }, { key: KEY2 }], chunks: 3, intervalMs: 5 });
		st = makeDb({
			settings: { stats_flush_ms: 200, status_publish_ms: 200, queue_timeout_seconds: 1, queue_capacity: 1 },
			providers: [
				{ name: 'p-main', key: KEY1, url: mock.url, prefix: 'mock/' },
				{ name: 'p-slow', key: KEY2, url: mock.url, prefix: 'slow/', rpm: 1 },
			],
		});
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		if (mock) await mock.stop();
		cleanup(st);
	});

	it('passes promtool check metrics (Debian package prometheus)', async () => {
		await postJson(`${dp.url}/chat/completions`, chat('mock/m', { stream: true }));
		const text = await scrape(dp);
		const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
		assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
		for (const fam of ['sidecar_requests_total', 'sidecar_upstream_latency_seconds', 'sidecar_ttft_seconds',
			'sidecar_queue_depth', 'sidecar_queue_wait_seconds', 'sidecar_queue_rejected_total',
			'sidecar_provider_rpm_used', 'sidecar_provider_rpm_limit', 'sidecar_provider_state',
			'sidecar_provider_healthy', 'sidecar_cooldowns_total', 'sidecar_fallback_requests_total',
			'sidecar_emergency_requests_total', 'sidecar_prompt_tokens_total', 'sidecar_completion_tokens_total',
			'sidecar_streams_without_usage_total', 'sidecar_db_size_bytes', 'sidecar_db_wal_size_bytes',
			'sidecar_db_integrity_ok', 'sidecar_stats_flush_seconds', 'process_resident_memory_bytes',
			'process_open_fds', 'process_start_time_seconds']) {
			assert.match(text, new RegExp(`^# TYPE ${fam} `, 'm'), fam);
		}
		assert.ok(!text.includes('nvapi-'), 'no key in the metrics');
	});

	it('counters move as requests flow', async () => {
		const before = await scrape(dp);
		const s2xx = 'sidecar_requests_total{provider="p-main",pool="main",code="2xx"}';
		const s4xx = 'sidecar_requests_total{provider="p-main",pool="main",code="4xx"}';
		const b2 = value(before, s2xx) ?? 0;
		const b4 = value(before, s4xx) ?? 0;
		const bp = value(before, 'sidecar_prompt_tokens_total{provider="p-main"}') ?? 0;
		const bc = value(before, 'sidecar_completion_tokens_total{provider="p-main"}') ?? 0;
		const bl = value(before, 'sidecar_upstream_latency_seconds_count{provider="p-main"}') ?? 0;
		await mock.reset();
		for (let i = 0; i < 4; i++) assert.equal((await postJson(`${dp.url}/chat/completions`, chat('mock/m'))).status, 200);
		const bad = await postJson(`${dp.url}/chat/completions`, chat('mock/m'), { 'x-mock-fault': 'status=400' });
		assert.equal(bad.status, 400);
		const rec = await mock.record();
		const ok = rec.filter((e) => e.usage);
		const after = await scrape(dp);
		assert.equal(value(after, s2xx) - b2, 4);
		assert.equal(value(after, s4xx) - b4, 1);
		assert.equal(value(after, 'sidecar_prompt_tokens_total{provider="p-main"}') - bp,
			ok.reduce((a, e) => a + e.usage.prompt_tokens, 0));
		assert.equal(value(after, 'sidecar_completion_tokens_total{provider="p-main"}') - bc,
			ok.reduce((a, e) => a + e.usage.completion_tokens, 0));
		assert.equal(value(after, 'sidecar_upstream_latency_seconds_count{provider="p-main"}') - bl, 5);
		assert.ok(value(after, 'sidecar_upstream_responses_total{provider="p-main",result="4xx"}') >= 1);
		assert.ok(value(after, 'sidecar_provider_rpm_used{provider="p-main"}') >= 5);
		assert.equal(value(after, 'sidecar_provider_rpm_limit{provider="p-main",kind="configured"}'), 1000);
		assert.equal(value(after, 'sidecar_provider_rpm_limit{provider="p-main",kind="effective"}'), 1000);
		assert.equal(value(after, 'sidecar_provider_state{provider="p-main",state="ok"}'), 1);
		assert.equal(value(after, 'sidecar_provider_healthy{provider="p-main"}'), 1);
		assert.ok(value(after, 'process_resident_memory_bytes') > 1e6);
		assert.ok(value(after, 'process_open_fds') > 3);
		assert.ok(Math.abs(value(after, 'process_start_time_seconds') - Date.now() / 1000) < 120);
	});

	it('counts queue rejections by reason (overflow, timeout)', async () => {
		// p-slow allows one start per minute and the queue holds one request
		// for at most a second: #1 goes, #2 waits and times out, #3 finds the
		// queue full.
		const first = await postJson(`${dp.url}/chat/completions`, chat('slow/m'));
		assert.equal(first.status, 200);
		const waiting = postJson(`${dp.url}/chat/completions`, chat('slow/m'));
		await sleep(200);
		const full = await postJson(`${dp.url}/chat/completions`, chat('slow/m'));
		assert.equal(full.status, 503);
		assert.equal((await waiting).status, 503);
		const text = await scrape(dp);
		assert.equal(value(text, 'sidecar_queue_rejected_total{reason="overflow"}'), 1);
		assert.equal(value(text, 'sidecar_queue_rejected_total{reason="timeout"}'), 1);
		assert.equal(value(text, 'sidecar_queue_depth'), 0);
		assert.equal(value(text, 'sidecar_provider_state{provider="p-slow",state="full"}'), 1);
		assert.ok(value(text, 'sidecar_queue_wait_seconds_bucket{le="+Inf"}') >= 1);
		await sleep(400);
		const snap = JSON.parse(sql(st, 'SELECT snapshot FROM live_status'));
		assert.equal(snap.queue.rejected_overflow, 1);
		assert.equal(snap.queue.rejected_timeout, 1);
		assert.equal(snap.providers.find((p) => p.name === 'p-slow').state, 'full');
	});

	it('reports the database file sizes, integrity and the backup outcome', async () => {
		let text, size;
		for (let i = 0; i < 5; i++) {	// a checkpoint may grow the file between the two reads
			text = await scrape(dp);
			size = statSync(st.db).size;
			if (value(text, 'sidecar_db_size_bytes') === size) break;
		}
		assert.equal(value(text, 'sidecar_db_size_bytes'), size);
		assert.ok(value(text, 'sidecar_db_wal_size_bytes') >= 0);
		assert.equal(value(text, 'sidecar_db_integrity_ok'), 1);
		assert.equal(value(text, 'sidecar_backup_success'), undefined, 'no backup recorded: omitted');
		assert.equal(value(text, 'sidecar_backup_last_timestamp_seconds'), undefined);
		// A good backup, then a failed one: the newest decides success, the time is the last good one.
		sql(st, `INSERT INTO backups (started_at, finished_at, success, path) VALUES
			('2026-11-20T03:00:00Z', '2026-11-20T03:00:05Z', 1, '/x/a.db'),
			('2026-11-21T03:00:00Z', '2026-11-21T03:00:02Z', 0, '')`);
		const end = Date.now() + 8000;
		for (;;) {
			text = await scrape(dp);
			if (value(text, 'sidecar_backup_success') !== undefined || Date.now() > end) break;
			await sleep(200);
		}
		assert.equal(value(text, 'sidecar_backup_success'), 0);
		assert.equal(value(text, 'sidecar_backup_last_timestamp_seconds'), Date.parse('2026-11-20T03:00:05Z') / 1000);
	});
});

describe('the data plane lock', () => {
	let st, dp;
	before(async () => {
		st = makeDb();
		dp = await startDataplane(st);
	});
	after(async () => {
		if (dp) await dp.stop();
		cleanup(st);
	});

	it('a second data plane on the same database refuses to start', () => {
		const r = spawnSync(join(BUILDDIR, 'sidecar-dataplane'), ['--db', st.db, '--listen', '127.0.0.1:0',
			'--metrics-listen', '127.0.0.1:0'], { env: st.env, encoding: 'utf8', timeout: 10000 });
		assert.equal(r.status, 1);
		assert.match(r.stderr, /another data plane or a restore is running \(.*sidecar_v2\.db\.lock\)/);
	});

	it('sidecarctl restore refuses while the data plane runs, and works once it stopped', async () => {
		const ctl = join(BUILDDIR, 'sidecarctl');
		const bk = spawnSync(ctl, ['--db', st.db, 'backup', '--dir', join(st.dir, 'bk')], { env: st.env, encoding: 'utf8' });
		assert.equal(bk.status, 0, bk.stderr);
		const file = /backup ok: (\S+) /.exec(bk.stdout)[1];
		let r = spawnSync(ctl, ['--db', st.db, 'restore', file], { env: st.env, encoding: 'utf8', timeout: 20000 });
		assert.equal(r.status, 1, r.stdout + r.stderr);
		assert.match(r.stderr, new RegExp(`refused: the data plane is running \\(pid ${dp.pid} holds \\S+\\.lock\\)`));
		const ex = await dp.stop('SIGTERM');
		assert.equal(ex.code, 0);
		r = spawnSync(ctl, ['--db', st.db, 'restore', file], { env: st.env, encoding: 'utf8', timeout: 20000 });
		assert.equal(r.status, 0, r.stderr);
	});
});
