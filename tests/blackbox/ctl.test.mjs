// Black-box test of sidecarctl: runs the built program the way an operator
// does (init, import, list, disable, token, config, rekey, check) in its own
// temporary directory, and checks that bad input (wrong or missing key, bad
// YAML, newer schema, unknown command) fails with one clear line and leaves
// the database exactly as it was. No network, no servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

const builddir = process.env.SC_TOP_BUILDDIR ?? process.cwd();
const srcdir = process.env.SC_TOP_SRCDIR ?? process.cwd();
const CTL = join(builddir, 'sidecarctl');
const EXAMPLE = join(srcdir, 'tests/fixtures/providers-example.yaml');

const dir = mkdtempSync(join(tmpdir(), 'sc-ctl-'));
const db = join(dir, 'sidecar_v2.db');
const key1 = join(dir, 'key1');
const key2 = join(dir, 'key2');
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// Run sidecarctl with a clean environment (no key unless given); 10 s cap.
function ctl(args, { keyFile, env = {} } = {}) {
  const e = { PATH: process.env.PATH, SIDECAR_DB: db, ...env };
  if (keyFile) e.SIDECAR_ENCRYPTION_KEY_FILE = keyFile;
  const r = spawnSync(CTL, args, { env: e, encoding: 'utf8', timeout: 10000 });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// A failure is a non-zero exit and exactly one "sidecarctl: ..." line on stderr.
function assertFails(r, pattern) {
  assert.notEqual(r.code, 0, `expected failure, got: ${r.out}`);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.err}`);
  assert.match(lines[0], /^sidecarctl: /);
  if (pattern) assert.match(lines[0], pattern);
}

function dbDigest() {
  // Closed connections checkpoint and remove the WAL, so the file is the state.
  const h = createHash('sha256').update(readFileSync(db));
  if (existsSync(db + '-wal')) h.update(readFileSync(db + '-wal'));
  return h.digest('hex');
}

test('sidecarctl end to end', { timeout: 60000 }, () => {
  assert.ok(existsSync(CTL), `${CTL} not built`);

  // keygen: base64 of 32 bytes, different each time.
  const k1 = ctl(['keygen']);
  assert.equal(k1.code, 0);
  assert.equal(Buffer.from(k1.out.trim(), 'base64').length, 32);
  writeFileSync(key1, k1.out, { mode: 0o600 });
  const k2 = ctl(['keygen']);
  assert.notEqual(k2.out, k1.out);
  writeFileSync(key2, k2.out, { mode: 0o600 });

  // init without a key: refused, nothing created.
  assertFails(ctl(['init']), /no encryption key: set SIDECAR_ENCRYPTION_KEY/);
  assert.ok(!existsSync(db));

  // init creates (0600), then is idempotent.
  let r = ctl(['init'], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /created .* \(schema version \d+\)/);
  assert.equal(statSync(db).mode & 0o777, 0o600);
  r = ctl(['--db', db, 'init'], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /up to date/);

  // Commands before import.
  r = ctl(['providers', 'list']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim().split('\n').length, 1);   // header only

  // import: 11 created, then 11 unchanged.
  r = ctl(['import', EXAMPLE], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /11 providers: 11 created, 0 updated, 0 unchanged/);
  r = ctl(['import', EXAMPLE], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /11 providers: 0 created, 0 updated, 11 unchanged/);

  // list: masked keys, never the plaintext.
  r = ctl(['providers', 'list']);
  assert.equal(r.code, 0, r.err);
  const rows = r.out.trim().split('\n');
  assert.equal(rows.length, 12);
  assert.match(rows[0], /NAME\s+POOL\s+STATUS\s+PREFIX\s+RPM\s+KEY\s+COOLDOWN/);
  assert.match(rows[1], /^account01\s+main\s+active\s+nvidia\/\s+40\s+nvapi-PLAC…xxxx\s+-$/);
  assert.ok(!r.out.includes('PLACEHOLDER'), 'plaintext key printed');
  const total = rows.slice(1).reduce((s, l) => s + Number(l.split(/\s+/)[4]), 0);
  assert.equal(total, 440);

  // disable / enable / delete by name.
  r = ctl(['providers', 'disable', 'account02']);
  assert.equal(r.code, 0, r.err);
  assert.match(ctl(['providers', 'list']).out, /account02\s+main\s+disabled/);
  r = ctl(['providers', 'enable', 'account02']);
  assert.equal(r.code, 0, r.err);
  assert.match(ctl(['providers', 'list']).out, /account02\s+main\s+active/);
  assertFails(ctl(['providers', 'disable', 'nobody']), /no provider named "nobody"/);
  r = ctl(['providers', 'delete', 'account11']);
  assert.equal(r.code, 0, r.err);
  assert.equal(ctl(['providers', 'list']).out.trim().split('\n').length, 11);
  r = ctl(['import', EXAMPLE], { keyFile: key1 });
  assert.match(r.out, /1 created, 0 updated, 10 unchanged/);

  // token: printed once, stored only as its hash.
  r = ctl(['token', 'create', '--admin', '--label', 'ops']);
  assert.equal(r.code, 0, r.err);
  const tok = r.out.trim();
  assert.match(tok, /^sc_admin_[A-Za-z0-9_-]{43}$/);
  assert.ok(!readFileSync(db).includes(tok));
  r = ctl(['token', 'create', '--client']);
  assert.match(r.out.trim(), /^sc_client_/);
  assert.notEqual(ctl(['token', 'create']).code, 0);
  assert.notEqual(ctl(['token', 'create', '--admin', '--client']).code, 0);

  // config get/set with validation.
  r = ctl(['config', 'get', 'queue_capacity']);
  assert.equal(r.out.trim(), '500');
  r = ctl(['config', 'set', 'queue_capacity', '800']);
  assert.equal(r.code, 0, r.err);
  assert.equal(ctl(['config', 'get', 'queue_capacity']).out.trim(), '800');
  r = ctl(['config', 'get']);
  // One line per setting the database holds (sql/schema.sql seeds them all).
  const nsettings = +spawnSync('sqlite3', [db, 'SELECT COUNT(*) FROM system_config']).stdout.toString().trim();
  assert.ok(nsettings >= 28, `${nsettings} settings`);
  assert.equal(r.out.trim().split('\n').length, nsettings);
  assert.match(r.out, /^queue_capacity=800$/m);
  assertFails(ctl(['config', 'set', 'queue_capacity', 'lots']), /queue_capacity: must be an integer/);
  assertFails(ctl(['config', 'set', 'no_such', '1']), /unknown setting/);
  assert.equal(ctl(['config', 'get', 'queue_capacity']).out.trim(), '800');

  // check passes with the right key.
  r = ctl(['check'], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ok\s+integrity_check/);
  assert.match(r.out, /ok\s+encryption key matches/);
  assert.match(r.out, /ok\s+11 provider keys decrypt/);

  // Wrong key: clear message, database untouched.
  let before = dbDigest();
  assertFails(ctl(['import', EXAMPLE], { keyFile: key2 }),
    /encryption key does not match this database \(check SIDECAR_ENCRYPTION_KEY/);
  assertFails(ctl(['init'], { keyFile: key2 }), /does not match/);
  assertFails(ctl(['rekey', '--new-key-file', key1], { keyFile: key2 }), /does not match/);
  r = ctl(['check'], { keyFile: key2 });
  assert.equal(r.code, 1);
  assert.match(r.out, /PROBLEM\s+encryption key does not match/);
  assertFails(ctl(['import', EXAMPLE]), /no encryption key/);
  const badKey = join(dir, 'badkey');
  writeFileSync(badKey, 'not-a-key\n');
  assertFails(ctl(['import', EXAMPLE], { keyFile: badKey }), /base64 of exactly 32 bytes/);
  assertFails(ctl(['--key-file', badKey, 'import', EXAMPLE]), /base64 of exactly 32 bytes/);
  assert.equal(dbDigest(), before);

  // Bad YAML: message with the line, database untouched.
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, readFileSync(EXAMPLE, 'utf8').replace('pool: main\n  rpm_limit: 40\n  notes: ""',
    'pool: spare\n  rpm_limit: 40\n  notes: ""'));
  assertFails(ctl(['import', bad], { keyFile: key1 }), /bad\.yaml: line 17: pool: unknown pool "spare"/);
  writeFileSync(bad, 'providers:\n- account: x\n  api_key: [oops\n');
  assertFails(ctl(['import', bad], { keyFile: key1 }), /line \d+: YAML syntax error/);
  writeFileSync(bad, 'providers:\n- account: x\n  api_key: nvapi-TEST-0001-xxxxxxxxxxxxxxxx\n' +
    '  endpoint_url: http://api.example.com/v1\n  model_prefix: x/\n  rpm_limit: 40\n');
  assertFails(ctl(['import', bad], { keyFile: key1 }), /line 4: endpoint_url: must use https/);
  assertFails(ctl(['import', join(dir, 'missing.yaml')], { keyFile: key1 }), /No such file/);
  assert.equal(dbDigest(), before);

  // rekey: every key re-encrypted; the old key stops working.
  r = ctl(['rekey', '--new-key-file', key2], { keyFile: key1 });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /re-encrypted 11 provider keys/);
  assert.equal(ctl(['check'], { keyFile: key2 }).code, 0);
  assert.equal(ctl(['check'], { keyFile: key1 }).code, 1);
  r = ctl(['import', EXAMPLE], { keyFile: key2 });
  assert.match(r.out, /11 unchanged/);
  assertFails(ctl(['rekey', '--new-key-file', key2], { keyFile: key2 }), /same as the current one/);

  // The key never reaches the database file in clear.
  assert.ok(!readFileSync(db).includes('PLACEHOLDER-01'));

  // Usage errors.
  assertFails(ctl(['bogus']), /unknown command "bogus"/);
  assert.equal(ctl(['bogus']).code, 2);
  assert.equal(ctl(['help']).code, 0);
  assert.match(ctl(['help']).out, /rekey/);
  assert.match(ctl(['version']).out, /^sidecarctl \(sidecar-v2\) /);
  assertFails(ctl(['--db', join(dir, 'none.db'), 'providers', 'list']), /does not exist \(run `sidecarctl init`\)/);
});

test('sidecarctl refuses a newer schema and a non-database file', { timeout: 30000 }, () => {
  const d2 = mkdtempSync(join(tmpdir(), 'sc-ctl2-'));
  try {
    const path = join(d2, 'x.db');
    const env = { SIDECAR_DB: path };
    const kf = join(d2, 'k');
    writeFileSync(kf, ctl(['keygen']).out);
    assert.equal(ctl(['init'], { keyFile: kf, env }).code, 0);
    // Bump user_version behind sidecarctl's back: header bytes 60..63, big-endian.
    const buf = readFileSync(path);
    buf.writeUInt32BE(999, 60);
    writeFileSync(path, buf);
    const before = createHash('sha256').update(readFileSync(path)).digest('hex');
    assertFails(ctl(['init'], { keyFile: kf, env }),
      /database schema version 999 is newer than this program supports \(\d+\); upgrade sidecar/);
    assertFails(ctl(['providers', 'list'], { env }), /newer than this program supports/);
    assertFails(ctl(['import', EXAMPLE], { keyFile: kf, env }), /newer than this program supports/);
    const r = ctl(['check'], { keyFile: kf, env });
    assert.equal(r.code, 1);
    assert.match(r.out, /PROBLEM\s+schema version 999/);
    assert.equal(createHash('sha256').update(readFileSync(path)).digest('hex'), before);

    const junk = join(d2, 'junk.db');
    writeFileSync(junk, 'x'.repeat(8192));
    assertFails(ctl(['providers', 'list'], { env: { SIDECAR_DB: junk } }), /not a SQLite database/);
  } finally {
    rmSync(d2, { recursive: true, force: true });
  }
});
