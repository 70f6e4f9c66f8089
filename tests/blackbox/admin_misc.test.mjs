// The admin API's answers to bad input (each a precise 4xx, never a 500,
// never a partial write), settings, the statistics routes, writes while
// another process keeps taking the database's write lock, and the end-to-end
// path: a provider added through the API serves data-plane requests within
// 2 s, and stops serving within 2 s of being disabled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { makeAdminDb, startLighttpd, api, cleanup, request, sleep } from './lib/lighttpd.mjs';
import { startDataplane } from './lib/stack.mjs';
import { startMock } from './lib/mock.mjs';

const KEY = 'nvapi-TEST-0101-xxxxxxxxxxxxxxxxMISC';

let st;
let lt;
let mock;
const T = () => ({ token: st.token });

before(async () => {
	mock = await startMock({ keys: [{ key: KEY, rpm: 0 }] });
	st = makeAdminDb();
	lt = await startLighttpd(st);
});

after(async () => {
	if (lt) await lt.stop();
	if (mock) await mock.stop();
	cleanup(st);
});

function sql(q) {
	return execFileSync('sqlite3', ['-cmd', '.timeout 5000', st.db, q]).toString().trim();
}

function provider(name, extra = {}) {
	return { name, api_key: KEY, endpoint_url: mock.url, model_prefix: `${name}/`, rpm_limit: 40, ...extra };
}

test('bad input: each a precise 4xx with the error shape, nothing written', async () => {
	let r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: provider('base') });
	assert.equal(r.status, 201);
	const id = r.json.id;
	const snapshot = () => sql('SELECT count(*), group_concat(rpm_limit), group_concat(name) FROM providers');
	const before0 = snapshot();
	const version0 = sql("SELECT value FROM meta WHERE key='config_version'");
	const cases = [
		['POST', '/providers', { body: '{"name": "x",', type: 'application/json' }, 400, null],
		['POST', '/providers', { body: 'name=x&api_key=y', type: 'application/json' }, 400, null],
		['POST', '/providers', { body: '{} {}', type: 'application/json' }, 400, null],
		['POST', '/providers', { body: '', type: 'application/json' }, 400, null],
		['POST', '/providers', { body: '[]', type: 'application/json' }, 422, null],
		['POST', '/providers', { body: '{"name":"x"}', type: 'text/plain' }, 415, null],
		['POST', '/providers', { body: '{"name":"x"}', type: 'application/x-www-form-urlencoded' }, 415, null],
		['POST', '/providers', { body: { ...provider('t1'), rpm_limit: '40' } }, 422, 'rpm_limit'],
		['POST', '/providers', { body: { ...provider('t2'), rpm_limit: 4.5 } }, 422, 'rpm_limit'],
		['POST', '/providers', { body: { ...provider('t3'), weight: 'heavy' } }, 422, 'weight'],
		['POST', '/providers', { body: { ...provider('t4'), name: ['x'] } }, 422, 'name'],
		['POST', '/providers', { body: { ...provider('t5'), flatten_content: 'yes' } }, 422, 'flatten_content'],
		['POST', '/providers', { body: { ...provider('t6'), colour: 'red' } }, 422, 'colour'],
		['POST', '/providers', { body: { ...provider('t7'), pool: 'emergency' } }, 422, 'pool'],
		['POST', '/providers', { body: { ...provider('t8'), endpoint_url: 'http://203.0.113.1/v1' } }, 422, 'endpoint_url'],
		['POST', '/providers', { body: { ...provider('t9'), api_key: undefined } }, 422, 'api_key'],
		['POST', '/providers', { body: { ...provider('t10'), id: 'mine' } }, 422, 'id'],
		['POST', '/providers?validate=false', { body: provider('base') }, 409, 'name'],
		['PATCH', `/providers/${id}`, { body: { rpm_limit: 10, bogus: true } }, 422, 'bogus'],
		['PATCH', `/providers/${id}`, { body: { rpm_limit: -1 } }, 422, 'rpm_limit'],
		['PATCH', `/providers/${id}`, { body: { status: 'paused' } }, 422, 'status'],
		['PATCH', `/providers/${id}`, { body: { metadata: 'x' } }, 422, 'metadata'],
		['PATCH', `/providers/${id}`, { body: '{"rpm_limit": 1', type: 'application/json' }, 400, null],
		['PATCH', `/providers/${id}`, { body: { rpm_limit: 10 }, type: 'text/plain' }, 415, null],
		['GET', '/providers/00000000-0000-4000-8000-000000000000', {}, 404, null],
		['PATCH', '/providers/00000000-0000-4000-8000-000000000000', { body: { rpm_limit: 10 } }, 404, null],
		['DELETE', '/providers/00000000-0000-4000-8000-000000000000', {}, 404, null],
		['POST', '/providers/00000000-0000-4000-8000-000000000000/validate', {}, 404, null],
		['POST', '/providers/00000000-0000-4000-8000-000000000000/reset-cooldown', {}, 404, null],
		['POST', `/providers/${id}/explode`, {}, 404, null],
		['GET', '/nothing-here', {}, 404, null],
		['PUT', '/providers', { body: {} }, 405, null],
		['DELETE', '/config', {}, 405, null],
		['GET', '/providers/import', {}, 405, null],
		['PATCH', '/config', { body: { max_attempts: 'three' } }, 422, 'max_attempts'],
		['PATCH', '/config', { body: { max_attempts: 2, queue_capacity: -1 } }, 422, 'queue_capacity'],
		['PATCH', '/config', { body: { not_a_setting: 1 } }, 422, 'not_a_setting'],
		['GET', '/stats/hourly?from=last-tuesday', {}, 400, 'from'],
		['GET', '/stats/hourly?from=2025-01-02&to=2025-01-01', {}, 400, 'from'],
		['GET', '/stats/totals?range=month', {}, 400, 'range'],
		['GET', '/stats/daily?pool=gold', {}, 400, 'pool'],
		['GET', '/cooldowns?limit=-3', {}, 400, 'limit'],
		['POST', '/session', { body: { token: 42 } }, 422, 'token'],
	];
	for (const [method, path, opts, status, field] of cases) {
		r = await api(lt, method, path, { ...T(), ...opts });
		const what = `${method} ${path} ${JSON.stringify(opts.body ?? '')}`;
		assert.equal(r.status, status, `${what}: ${r.body}`);
		assert.match(r.headers['content-type'], /^application\/json/, what);
		assert.equal(typeof r.json?.error?.message, 'string', what);
		if (field) assert.equal(r.json.error.field, field, what);
	}
	// A 2 MB JSON body and a 5 MB YAML file: 413 in the same shape.
	r = await api(lt, 'POST', '/providers', { ...T(), body: JSON.stringify({ name: 'big', notes: 'x'.repeat(2 * 1024 * 1024) }), type: 'application/json' });
	assert.equal(r.status, 413);
	assert.equal(typeof r.json.error.message, 'string');
	r = await api(lt, 'POST', '/providers/import', { ...T(), body: '#'.repeat(5 * 1024 * 1024), type: 'application/yaml' });
	assert.equal(r.status, 413);
	// A deeply nested body is refused by the depth cap.
	r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: `{"metadata":${'['.repeat(100)}${']'.repeat(100)}}`, type: 'application/json' });
	assert.equal(r.status, 400);
	assert.equal(snapshot(), before0, 'nothing written');
	assert.equal(sql("SELECT value FROM meta WHERE key='config_version'"), version0, 'no config change');
	assert.equal(sql("SELECT value FROM system_config WHERE key='max_attempts'"), '3');
});

test('settings: every key with value, default, description, type and range; all-or-nothing PATCH', async () => {
	let r = await api(lt, 'GET', '/config', T());
	assert.equal(r.status, 200);
	const keys = r.json.settings.map((s) => s.key);
	const dbKeys = sql('SELECT key FROM system_config ORDER BY key').split('\n');
	assert.deepEqual([...keys].sort(), dbKeys);
	for (const s of r.json.settings) {
		for (const f of ['value', 'default', 'description', 'type', 'min', 'max']) assert.ok(f in s, `${s.key}.${f}`);
		assert.ok(s.type === 'int' || s.type === 'double' || s.type === 'string', `${s.key}: ${s.type}`);
	}
	// String settings (docs/cluster.md): checked, stored as given, the Redis password never shown.
	assert.equal(r.json.settings.find((s) => s.key === 'redis_url').type, 'string');
	const url = 'redis://:Adm1n-Secret-Pw@10.9.8.7:6390/2';
	let rs = await api(lt, 'PATCH', '/config', { ...T(), body: { redis_url: url, cluster_namespace: 'blue-1' } });
	assert.equal(rs.status, 200, rs.body);
	assert.equal(sql("SELECT value FROM system_config WHERE key='redis_url'"), url);
	assert.equal(rs.json.settings.find((s) => s.key === 'redis_url').value, 'redis://:****@10.9.8.7:6390/2');
	assert.ok(!rs.body.includes('Adm1n-Secret-Pw'));
	rs = await api(lt, 'GET', '/config', T());
	assert.ok(!rs.body.includes('Adm1n-Secret-Pw'));
	for (const [body, field] of [[{ redis_url: 'redis://:****@10.9.8.7:6390/2' }, 'redis_url'], [{ redis_url: 'redis://redis.example:6379' }, 'redis_url'],
		[{ cluster_namespace: 5 }, 'cluster_namespace'], [{ cluster_host_name: 'a b' }, 'cluster_host_name']]) {
		rs = await api(lt, 'PATCH', '/config', { ...T(), body });
		assert.equal(rs.status, 422, JSON.stringify(body));
		assert.equal(rs.json.error.field, field);
	}
	assert.equal(sql("SELECT value FROM system_config WHERE key='redis_url'"), url);
	rs = await api(lt, 'PATCH', '/config', { ...T(), body: { redis_url: '', cluster_namespace: 'sidecar' } });
	assert.equal(rs.status, 200, rs.body);
	assert.equal(sql("SELECT value FROM system_config WHERE key='redis_url'"), '');
	const v0 = Number(r.json.config_version);
	r = await api(lt, 'PATCH', '/config', { ...T(), body: { queue_timeout_seconds: 45, emergency_rpm_ratio: 0.2 } });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.settings.find((s) => s.key === 'queue_timeout_seconds').value, 45);
	assert.equal(r.json.settings.find((s) => s.key === 'emergency_rpm_ratio').value, 0.2);
	assert.ok(r.json.config_version > v0);
	assert.equal(sql("SELECT value FROM system_config WHERE key='queue_timeout_seconds'"), '45');
	r = await api(lt, 'PATCH', '/config', { ...T(), body: { queue_timeout_seconds: 50, emergency_rpm_ratio: 7 } });
	assert.equal(r.status, 422);
	assert.equal(r.json.error.field, 'emergency_rpm_ratio');
	assert.equal(sql("SELECT value FROM system_config WHERE key='queue_timeout_seconds'"), '45');
});

test('statistics routes answer the dashboard panels', async () => {
	const r0 = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: provider('statx') });
	const id = r0.json.id;
	const now = new Date();
	const hour = now.toISOString().slice(0, 13);
	const day = now.toISOString().slice(0, 10);
	sql(`INSERT INTO provider_usage_logs (id, provider_id, model, prompt_tokens, completion_tokens, total_tokens,
	       cost, request_count, error_count, latency_sum_ms, hour_bucket)
	     VALUES ('u1', '${id}', 'llama', 100, 50, 150, 0.15, 10, 2, 1000, '${hour}'),
	            ('u2', '${id}', 'qwen', 10, 5, 15, 0.01, 1, 0, 80, '${hour}');
	     INSERT INTO daily_stats (id, date, pool, total_requests, total_errors, total_tokens, total_cost)
	     VALUES ('${day}|main', '${day}', 'main', 11, 2, 165, 0.16);
	     INSERT INTO provider_health (provider_id, state, last_latency_ms, last_status_code) VALUES ('${id}', 'healthy', 80, 200);
	     INSERT INTO cooldown_events (id, provider_id, consecutive_count, cooldown_seconds, response_summary, started_at, ended_at)
	     VALUES ('c1', '${id}', 1, 30, '429 Too Many Requests', '${day}T00:00:00Z', '${day}T00:00:30Z');`);
	let r = await api(lt, 'GET', `/stats/hourly?provider=statx&model=llama`, T());
	assert.equal(r.status, 200);
	assert.equal(r.json.series.length, 1);
	assert.equal(r.json.series[0].hour, hour);
	assert.equal(r.json.series[0].requests, 10);
	assert.equal(r.json.series[0].avg_latency_ms, 100);
	r = await api(lt, 'GET', `/stats/hourly?group_by=model&pool=main`, T());
	assert.equal(r.json.series.length, 2);
	r = await api(lt, 'GET', `/stats/daily?from=${day}&to=${day}`, T());
	assert.equal(r.json.series[0].requests, 11);
	r = await api(lt, 'GET', `/stats/totals?range=week`, T());
	assert.equal(r.json.totals.requests, 11);
	assert.equal(r.json.totals.errors, 2);
	assert.equal(r.json.by_provider[0].name, 'statx');
	r = await api(lt, 'GET', `/stats/by-model?range=day`, T());
	assert.deepEqual(r.json.models.map((m) => m.model), ['llama', 'qwen']);
	r = await api(lt, 'GET', `/cooldowns?limit=5&provider=${id}`, T());
	assert.equal(r.json.cooldowns.length, 1);
	assert.equal(r.json.cooldowns[0].provider, 'statx');
	r = await api(lt, 'GET', '/health', T());
	assert.equal(r.status, 200);
	assert.ok(r.json.providers.some((p) => p.name === 'statx' && p.state === 'healthy'));
	r = await api(lt, 'GET', '/status', T());
	assert.equal(r.status, 200);
	assert.ok(r.json && typeof r.json === 'object');
});

test('admin writes succeed while another process keeps taking the write lock', async (t) => {
	// One sqlite3 process that holds BEGIN IMMEDIATE for ~50 ms, pauses
	// ~30 ms, again and again: far heavier than the data plane's statistics
	// flush (a few ms per second). The hold is a sleep inside the transaction
	// (.shell), not CPU work, so it keeps its length on a loaded machine; the
	// hog counts its own commits so we know it really ran.
	const step = `BEGIN IMMEDIATE;
UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'hog_commits';
INSERT INTO meta (key, value) SELECT 'hog_commits', '1' WHERE changes() = 0;
.shell sleep 0.05
COMMIT;
.shell sleep 0.03
`;
	const hog = spawn('bash', ['-c', `while :; do printf '%s' "$STEP"; done | sqlite3 -bail -cmd '.timeout 10000' '${st.db}' >/dev/null`],
	    { stdio: 'ignore', detached: true, env: { ...process.env, STEP: step } });
	const hogCommits = () => Number(sql("SELECT coalesce((SELECT value FROM meta WHERE key = 'hog_commits'), 0)"));
	try {
		let t0 = Date.now();
		while (hogCommits() === 0) {
			assert.ok(Date.now() - t0 < 10000, 'the other writer never committed');
			await sleep(20);
		}
		// The batches run at least 6 rounds and 2 s, and until the hog has
		// taken the lock a few times while they ran (a slow machine gets
		// more rounds, not a failure); 30 s is the bound.
		const before = hogCommits();
		const results = [];
		t0 = Date.now();
		for (let round = 0; round < 6 || Date.now() - t0 < 2000 || hogCommits() - before < 5; round++) {
			assert.ok(Date.now() - t0 < 30000, `the other writer committed ${hogCommits() - before} times in 30 s of admin writes`);
			const batch = [];
			for (let i = 0; i < 4; i++) {
				const n = round * 4 + i;
				if (i % 2 === 0) {
					batch.push(api(lt, 'POST', '/providers?validate=false', { ...T(), body: provider(`busy${n}`) }));
				} else {
					batch.push(api(lt, 'PATCH', '/config', { ...T(), body: { retry_after_seconds: 20 + n } }));
				}
			}
			results.push(...await Promise.all(batch));
		}
		const during = hogCommits() - before;
		t.diagnostic(`${results.length} admin writes in ${Date.now() - t0} ms, ${during} hog commits meanwhile`);
		for (const r of results) assert.ok(r.status === 200 || r.status === 201, `${r.status} ${r.body}`);
		assert.equal(Number(sql("SELECT count(*) FROM providers WHERE name LIKE 'busy%'")), results.length / 2);
		assert.ok(during >= 5, `the other writer ran during the admin writes (${during} commits)`);
	} finally {
		try { process.kill(-hog.pid, 'SIGKILL'); } catch { /* gone */ }
	}
});

test('end to end: a provider added through the API serves within 2 s; disabled, it stops', async () => {
	const dp = await startDataplane(st);
	try {
		const chat = () => request(`${dp.url}/chat/completions`, {
			method: 'POST', headers: { 'content-type': 'application/json' },
			body: JSON.stringify({ model: 'e2e/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
		});
		let r = await chat();
		assert.notEqual(r.status, 200, 'no provider yet');
		r = await api(lt, 'POST', '/providers', { ...T(), body: provider('e2e') });
		assert.equal(r.status, 201, r.body);
		const id = r.json.id;
		let t0 = Date.now();
		for (;;) {
			r = await chat();
			if (r.status === 200) break;
			assert.ok(Date.now() - t0 < 2500, `not served within 2 s (last ${r.status} ${r.body})`);
			await sleep(50);
		}
		r = await api(lt, 'PATCH', `/providers/${id}`, { ...T(), body: { status: 'disabled' } });
		assert.equal(r.status, 200);
		t0 = Date.now();
		for (;;) {
			r = await chat();
			if (r.status !== 200) break;
			assert.ok(Date.now() - t0 < 2500, 'still served 2 s after disabling');
			await sleep(50);
		}
	} finally {
		await dp.stop();
	}
});

test('reset-cooldown through the API ends the running data plane cooldown within 2 s', async () => {
	const KEY2 = 'nvapi-TEST-0102-xxxxxxxxxxxxxxxxRSET';
	await mock.setKey(KEY2, 0, null, 0);
	const dp = await startDataplane(st);
	try {
		let r = await api(lt, 'POST', '/providers?validate=false', { ...T(), body: { ...provider('rst'), api_key: KEY2 } });
		assert.equal(r.status, 201, r.body);
		const id = r.json.id;
		const chat = () => request(`${dp.url}/chat/completions`, {
			method: 'POST', headers: { 'content-type': 'application/json' },
			body: JSON.stringify({ model: 'rst/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
		});
		const t0 = Date.now();
		for (;;) {	// wait for the data plane to load the provider
			r = await chat();
			if (r.status === 200) break;
			assert.ok(Date.now() - t0 < 2500, `not served within 2 s (last ${r.status})`);
			await sleep(50);
		}
		// One upstream 429: a 30 s cooldown. That request has no other key to
		// try (503); the next one is served by the emergency channel.
		await mock.setKey(KEY2, 0, 'status=429', 1);
		r = await chat();
		assert.equal(r.status, 503, r.body);
		assert.ok(r.headers['retry-after']);
		r = await chat();
		assert.equal(r.status, 200, r.body);
		assert.equal(r.headers['x-sidecar-degraded'], 'emergency');
		r = await api(lt, 'POST', `/providers/${id}/reset-cooldown`, T());
		assert.equal(r.status, 200, r.body);
		const t1 = Date.now();
		for (;;) {	// until the reset lands: emergency (budget 4 a window), then 503
			r = await chat();
			if (r.status === 200 && r.headers['x-sidecar-degraded'] === undefined
			    && r.headers['x-sidecar-pool'] === 'main') break;
			assert.ok(Date.now() - t1 < 2500, `still cooling in the data plane 2 s after the reset (${r.status})`);
			await sleep(200);
		}
		r = await request(`${dp.base}/health`, {});
		assert.equal(JSON.parse(r.body).providers.cooling, 0, r.body);
	} finally {
		await dp.stop();
	}
});

test('the panel is served with a strict content security policy and no-sniff', async () => {
	const r = await request(lt.base + '/', {});
	assert.equal(r.status, 200);
	assert.match(r.body, /<!doctype html>/i);
	const csp = r.headers['content-security-policy'];
	assert.ok(csp, 'Content-Security-Policy header present');
	assert.match(csp, /default-src 'self'/);
	assert.match(csp, /frame-ancestors 'none'/);
	assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
	assert.equal(r.headers['x-content-type-options'], 'nosniff');
});
