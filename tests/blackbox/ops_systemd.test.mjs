// The systemd units (packaging/systemd/*.service.in), rendered with the paths
// of this build, pass `systemd-analyze verify` without a single warning; the
// programs they start must exist (the data plane as built, lighttpd as found
// by configure). Also checks the hardening the units promise and that the
// sysusers.d file creates the user and group in a scratch root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SRC, BUILD, run, tmpdir } from './ops_lib.mjs';

// The substitutions ctl/ops.mk makes at install time, with this build's programs.
function render(dir, name) {
	const lighttpd = process.env.SC_LIGHTTPD && process.env.SC_LIGHTTPD.startsWith('/') ?
		process.env.SC_LIGHTTPD : '/usr/sbin/lighttpd';
	const text = fs.readFileSync(path.join(SRC, 'packaging/systemd', `${name}.in`), 'utf8')
		.replaceAll('@bindir@', BUILD)
		.replaceAll('@sbindir@', BUILD)
		.replaceAll('@docdir@', path.join(SRC, 'docs'))
		.replaceAll('@localstatedir@', path.join(dir, 'var'))
		.replaceAll('@sysconfdir@', path.join(dir, 'etc'))
		.replaceAll('@LIGHTTPD@', lighttpd);
	assert.ok(!/@[a-zA-Z_]+@/.test(text), `${name}: every placeholder substituted`);
	const file = path.join(dir, name);
	fs.writeFileSync(file, text);
	return { file, text };
}

test('systemd units pass systemd-analyze verify', (t) => {
	const dir = tmpdir(t);
	const units = ['sidecar-dataplane.service', 'sidecar-lighttpd.service'].map((n) => render(dir, n));
	assert.ok(fs.existsSync(path.join(BUILD, 'sidecar-dataplane')), 'the data plane is built');
	const r = run('systemd-analyze', ['verify', ...units.map((u) => u.file)], { cwd: dir });
	assert.equal(r.code, 0, r.stdout + r.stderr);
	assert.equal(r.stderr.trim(), '', 'no warnings');
	for (const { text } of units) {
		for (const want of ['Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateTmp=yes',
			'ProtectHome=yes', 'UMask=0007', `ReadWritePaths=${path.join(dir, 'var')}/lib/sidecar`,
			`LoadCredential=encryption.key:${path.join(dir, 'etc')}/sidecar/encryption.key`,
			'Environment=SIDECAR_ENCRYPTION_KEY_FILE=%d/encryption.key'])
			assert.ok(text.includes(want), want);
	}
	assert.match(units[0].text, /^User=sidecar$/m);
	assert.match(units[0].text, new RegExp(`^ExecStart=${BUILD}/sidecar-dataplane `, 'm'));
	assert.match(units[1].text, /^User=www-data$/m);
	assert.match(units[1].text, /^SupplementaryGroups=sidecar$/m);
});

test('a unit that starts a missing program fails verification (the check can fail)', (t) => {
	const dir = tmpdir(t);
	const { text } = render(dir, 'sidecar-dataplane.service');
	const bad = path.join(dir, 'broken.service');
	fs.writeFileSync(bad, text.replace(/^ExecStart=\S+/m, `ExecStart=${dir}/no-such-program`));
	const r = run('systemd-analyze', ['verify', bad], { cwd: dir });
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /no-such-program/);
});

test('sysusers.d creates the sidecar user and adds www-data to its group', (t) => {
	const root = tmpdir(t);
	fs.mkdirSync(path.join(root, 'etc'));
	fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n');
	fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nwww-data:x:33:\n');
	const r = run('systemd-sysusers', [`--root=${root}`, path.join(SRC, 'packaging/sysusers.d/sidecar.conf')]);
	assert.equal(r.code, 0, r.stderr);
	const passwd = fs.readFileSync(path.join(root, 'etc', 'passwd'), 'utf8');
	const group = fs.readFileSync(path.join(root, 'etc', 'group'), 'utf8');
	assert.match(passwd, /^sidecar:x:\d+:\d+:Sidecar V2:\/var\/lib\/sidecar:\/usr\/sbin\/nologin$/m);
	assert.match(group, /^sidecar:x:\d+:www-data$/m);
});

test('the lighttpd configuration the unit starts: rendered as ctl/ops.mk does, lighttpd -tt accepts it', (t) => {
	const dir = tmpdir(t);
	const lighttpd = process.env.SC_LIGHTTPD && process.env.SC_LIGHTTPD.startsWith('/') ?
		process.env.SC_LIGHTTPD : '/usr/sbin/lighttpd';
	const subst = {
		BIND: '127.0.0.1', PORT: '9192', HTDOCS: path.join(SRC, 'htdocs'), RUNDIR: dir,
		LOGDIR: dir, ADMIN_BIN: path.join(BUILD, 'sidecar-admin'), EVENTS_BIN: path.join(BUILD, 'sidecar-events'),
		DB: path.join(dir, 'sidecar_v2.db'), KEY_FILE: '/run/credentials/sidecar-lighttpd.service/encryption.key',
	};
	let text = fs.readFileSync(path.join(SRC, 'lighttpd/sidecar.conf.in'), 'utf8');
	for (const [k, v] of Object.entries(subst)) text = text.replaceAll(`@${k}@`, v);
	const code = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
	assert.ok(!/@[A-Z_]+@/.test(code), 'ctl/ops.mk substitutes every placeholder of the template');
	// The same list as the rule in ctl/ops.mk.
	const mk = fs.readFileSync(path.join(SRC, 'ctl/ops.mk'), 'utf8');
	for (const k of Object.keys(subst)) assert.ok(mk.includes(`s|@${k}@|`), `ops.mk substitutes @${k}@`);
	const conf = path.join(dir, 'lighttpd.conf');
	fs.writeFileSync(conf, text);
	const r = run(lighttpd, ['-tt', '-f', conf]);
	assert.equal(r.code, 0, r.stdout + r.stderr);
	assert.doesNotMatch(r.stdout + r.stderr, /invalid|error/i);
});
