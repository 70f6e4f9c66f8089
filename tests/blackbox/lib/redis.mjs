// tests/blackbox/lib/redis.mjs: a real redis-server for the cluster tests,
// started on a loopback port it picks (--save '' --appendonly no: nothing on
// disk), a small RESP client to look inside it and drive the admission script
// directly, and a killable loopback TCP proxy to cut one host off.
//
//   const redis = await startRedis();        // redis.port, redis.url
//   await redis.cmd('ZCARD', 'sc:ns:w:...'); // one command on a fresh connection
//   redis.pause() / redis.resume()           // SIGSTOP / SIGCONT
//   await redis.kill(); await redis.restart(); // same port, empty
//   const px = await startProxy(redis.port); px.cut(); await px.restore();
//   px.lag(700)                              // Redis's answers come 700 ms late
//
// Every server started here is killed when the process exits.
import { spawn } from 'node:child_process';
import net from 'node:net';

const live = new Set();
process.on('exit', () => {
	for (const c of live) {
		try { c.kill('SIGKILL'); } catch { /* gone */ }
	}
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A free loopback port (bound and released; the caller binds it next).
export function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function encode(args) {
	let out = `*${args.length}\r\n`;
	for (const a of args) {
		const b = Buffer.from(String(a));
		out += `$${b.length}\r\n${b.toString('latin1')}\r\n`;
	}
	return Buffer.from(out, 'latin1');
}

// Parse one RESP value at buf[i]; returns [value, next] or null when incomplete.
function parse(buf, i) {
	if (i >= buf.length) return null;
	const nl = buf.indexOf('\r\n', i, 'latin1');
	if (nl < 0) return null;
	const t = String.fromCharCode(buf[i]);
	const line = buf.toString('latin1', i + 1, nl);
	if (t === '+') return [line, nl + 2];
	if (t === '-') return [new RedisError(line), nl + 2];
	if (t === ':') return [Number(line), nl + 2];
	if (t === '$') {
		const n = Number(line);
		if (n < 0) return [null, nl + 2];
		if (buf.length < nl + 2 + n + 2) return null;
		return [buf.toString('utf8', nl + 2, nl + 2 + n), nl + 2 + n + 2];
	}
	if (t === '*') {
		const n = Number(line);
		if (n < 0) return [null, nl + 2];
		const arr = [];
		let j = nl + 2;
		for (let k = 0; k < n; k++) {
			const r = parse(buf, j);
			if (!r) return null;
			arr.push(r[0]);
			j = r[1];
		}
		return [arr, j];
	}
	throw new Error(`bad RESP type ${t}`);
}

export class RedisError extends Error {}

// A connection that sends commands in order and resolves their replies.
export class RedisClient {
	constructor(port) {
		this.port = port;
		this.queue = [];
		this.buf = Buffer.alloc(0);
	}

	connect() {
		return new Promise((resolve, reject) => {
			this.sock = net.connect(this.port, '127.0.0.1', () => resolve(this));
			this.sock.on('error', (e) => {
				reject(e);
				for (const q of this.queue.splice(0)) q.reject(e);
			});
			this.sock.on('close', () => {
				for (const q of this.queue.splice(0)) q.reject(new Error('redis connection closed'));
			});
			this.sock.on('data', (d) => {
				this.buf = Buffer.concat([this.buf, d]);
				for (;;) {
					const r = parse(this.buf, 0);
					if (!r) break;
					this.buf = this.buf.subarray(r[1]);
					const q = this.queue.shift();
					if (!q) continue;
					if (r[0] instanceof RedisError) q.reject(r[0]);
					else q.resolve(r[0]);
				}
			});
		});
	}

	cmd(...args) {
		return new Promise((resolve, reject) => {
			this.queue.push({ resolve, reject });
			this.sock.write(encode(args));
		});
	}

	close() {
		this.sock?.destroy();
	}
}

export async function startRedis({ password } = {}) {
	const port = await freePort();
	let child = null;
	let errText = '';
	const r = {
		port,
		url: password ? `redis://:${password}@127.0.0.1:${port}/0` : `redis://127.0.0.1:${port}/0`,
		async start() {
			const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
				'--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'];
			if (password) args.push('--requirepass', password);
			child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
			live.add(child);
			child.stderr.on('data', (d) => { errText = (errText + d).slice(-8192); });
			const me = child;
			me.exitP = new Promise((res) => me.on('exit', () => { live.delete(me); res(); }));
			const end = Date.now() + 10000;
			for (;;) {
				try {
					const c = await new RedisClient(port).connect();
					try {
						if (password) await c.cmd('AUTH', password);
						await c.cmd('PING');
						c.close();
						return;
					} catch (e) {
						c.close();
						if (!/LOADING/.test(String(e))) throw e;
					}
				} catch (e) {
					if (Date.now() > end) throw new Error(`redis-server did not start: ${e} ${errText}`);
					await sleep(30);
				}
			}
		},
		async cmd(...args) {
			const c = await new RedisClient(port).connect();
			try {
				if (password) await c.cmd('AUTH', password);
				return await c.cmd(...args);
			} finally {
				c.close();
			}
		},
		pause() { child.kill('SIGSTOP'); },
		resume() { child.kill('SIGCONT'); },
		async kill() {
			if (!child) return;
			const c = child;
			child = null;
			c.kill('SIGCONT');
			c.kill('SIGKILL');
			await c.exitP;
		},
		async restart() {
			await r.kill();
			await r.start();
		},
		stop() { return r.kill(); },
	};
	await r.start();
	return r;
}

// A loopback TCP proxy to target: cut() closes it and every connection
// through it (the host behind it loses Redis), restore() listens again on
// the same port, lag(ms) delays Redis's answers on the connections accepted
// from then on by ms (the commands still reach Redis at once: a host that
// times out has had them run).
export async function startProxy(target) {
	const port = await freePort();
	const socks = new Set();
	let server = null, lagMs = 0;
	const listen = () => new Promise((resolve, reject) => {
		server = net.createServer((c) => {
			const u = net.connect(target, '127.0.0.1');
			const lag = lagMs;
			socks.add(c);
			socks.add(u);
			c.pipe(u);
			if (lag > 0) u.on('data', (d) => setTimeout(() => { if (!c.destroyed) c.write(d); }, lag));
			else u.pipe(c);
			const done = () => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u); };
			c.on('error', done);
			u.on('error', done);
			c.on('close', done);
			u.on('close', done);
		});
		server.on('error', reject);
		server.listen(port, '127.0.0.1', resolve);
	});
	await listen();
	return {
		port,
		url: `redis://127.0.0.1:${port}/0`,
		cut() {
			server?.close();
			server = null;
			for (const s of socks) s.destroy();
			socks.clear();
		},
		async restore() {
			if (!server) await listen();
		},
		lag(ms) { lagMs = ms; },
		stop() { this.cut(); },
	};
}
