// Black-box: an HTTPS upstream behind a private CA (the shape of every real
// provider). A CA and a server certificate for 127.0.0.1 are made here with
// openssl; a node https server plays the provider. With --ca-file the data
// plane verifies the upstream against that CA and forwards; without it the
// same upstream fails verification (502, nothing relayed); an unreadable
// --ca-file stops the start.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { BUILDDIR, cleanup, makeDb, postJson, startDataplane } from './lib/stack.mjs';

const KEY = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';

function makeCa(dir) {
	const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
	o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sidecar test CA');
	o('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
	writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n');
	o('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem',
		'-days', '2', '-extfile', 'ext.cnf');
}

describe('data plane with an HTTPS upstream', { timeout: 60000 }, () => {
	let dir, server, port;
	const seen = [];

	before(async () => {
		dir = mkdtempSync(join(os.tmpdir(), 'sc-tls-'));
		makeCa(dir);
		server = https.createServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) }, (req, res) => {
			let body = '';
			req.on('data', (d) => { body += d; });
			req.on('end', () => {
				seen.push({ url: req.url, auth: req.headers.authorization, model: JSON.parse(body || '{}').model });
				res.writeHead(200, { 'content-type': 'application/json' });
				res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' } }],
					usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
			});
		});
		await new Promise((r) => server.listen(0, '127.0.0.1', r));
		port = server.address().port;
	});
	after(() => {
		server?.close();
		if (dir) rmSync(dir, { recursive: true, force: true });
	});

	const withDp = async (args, fn) => {
		const st = makeDb({ providers: [{ name: 'tls1', key: KEY, url: `https://127.0.0.1:${port}/v1`, prefix: 'tls/' }] });
		const dp = await startDataplane(st, { args });
		try { await fn(dp); } finally { await dp.stop(); cleanup(st); }
	};

	it('verifies the upstream against --ca-file and forwards', async () => {
		await withDp(['--ca-file', join(dir, 'ca.pem')], async (dp) => {
			const n = seen.length;
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'tls/some-model', messages: [] });
			assert.equal(r.status, 200, r.body);
			assert.equal(r.headers['x-sidecar-provider'], 'tls1');
			assert.equal(JSON.parse(r.body).choices[0].message.content, 'hi');
			assert.equal(seen.length, n + 1);
			assert.deepEqual(seen[n], { url: '/v1/chat/completions', auth: `Bearer ${KEY}`, model: 'some-model' });
		});
	});

	it('refuses an upstream its CA bundle does not vouch for', async () => {
		await withDp([], async (dp) => {
			const n = seen.length;
			const r = await postJson(`${dp.url}/chat/completions`, { model: 'tls/some-model', messages: [] });
			assert.equal(r.status, 502, r.body);
			assert.equal(JSON.parse(r.body).error.code, 'upstream_error');
			assert.equal(seen.length, n, 'a request reached an unverified upstream');
			assert.match(dp.logs(), /provider tls1 failed \([^)]*(certificate|SSL)/i);
		});
	});

	it('does not start with an unreadable --ca-file', () => {
		const st = makeDb({ providers: [] });
		try {
			const r = spawnSync(join(BUILDDIR, 'sidecar-dataplane'), ['--db', st.db, '--listen', '127.0.0.1:0',
				'--metrics-listen', '127.0.0.1:0', '--ca-file', join(dir, 'missing.pem')], { env: { ...st.env }, timeout: 10000 });
			assert.notEqual(r.status, 0);
			assert.match(r.stderr.toString(), /cannot read --ca-file .*missing\.pem/);
		} finally { cleanup(st); }
	});
});
