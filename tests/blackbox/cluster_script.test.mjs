// Property test of the cluster admission script (dataplane/cluster.lua, the
// exact file the data plane compiles in) against a reference model in JS.
// A real redis-server runs the script; random operations (asks with random
// candidates, limits, pools and host counts, a model window per (key,
// model) with its own limits or none, heartbeats of several hosts,
// 429 reports with and without Retry-After, successes, invalid marks,
// clears, replays) are applied to both, with short sleeps so the 300 ms
// windows slide and cooldowns end, and every answer must match the model.
// The script reports its own clock (Redis TIME) in every answer and decides
// everything with it (a cooldown's end included), so the model, computing
// with that clock, must agree exactly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis } from './lib/redis.mjs';
import { SRCDIR, sleep } from './lib/stack.mjs';

const SCRIPT = readFileSync(join(SRCDIR, 'dataplane', 'cluster.lua'), 'utf8');
const P = 'sc:prop:';
const SPAN = 300, STALE = 120, MEMBERSHIP = 900, BASE = 40, MAX = 160;
const FPS = ['f0', 'f1', 'f2', 'f3'];
const HOSTS = ['ha', 'hb', 'hc'];
const MODELS = ['ma', 'mb'];	/* model-hash stand-ins: the script only sees key names */

// A seeded generator, so a failure names the seed that reproduces it.
function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (s + 0x6d2b79f5) >>> 0;
		let t = s;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

class Model {
	constructor() {
		this.keys = new Map(FPS.map((f) => [f, { w: [], e: [], m: new Map(MODELS.map((x) => [x, []])), cd: null, nh: null, inv: null }]));
		this.hosts = new Map();
	}

	static trim(list, now) {
		for (let i = list.length - 1; i >= 0; i--) if (list[i].score <= now - SPAN) list.splice(i, 1);
		return list.length;
	}

	static freesIn(list, count, limit, now) {
		if (limit <= 0) return SPAN;
		const sorted = list.map((x) => x.score).sort((a, b) => a - b);
		const s = sorted[count - limit];
		if (s === undefined) return 1;
		return Math.max(1, s + SPAN - now);
	}

	// The cooldown at now: 'yes' or 'no' (forgotten once ended).
	cooling(k, now) {
		if (!k.cd) return 'no';
		const left = k.cd.until - now;
		if (left <= 0) {
			k.cd = null;
			return 'no';
		}
		return 'yes';
	}

	hostCounts(now, known) {
		let hosts = 0, live = 0;
		for (const t of this.hosts.values()) {
			if (t >= now - MEMBERSHIP) hosts++;
			if (t >= now - STALE) live++;
		}
		return { hosts: Math.max(hosts, known), live };
	}
}

describe('cluster admission script against a reference model', { timeout: 120000 }, () => {
	it('random operations: every answer matches the model', async (t) => {
		const redis = await startRedis();
		try {
			const sha = await redis.cmd('SCRIPT', 'LOAD', SCRIPT);
			const seed = Number(process.env.SC_PROP_SEED || Date.now() % 100000);
			t.diagnostic(`seed ${seed} (SC_PROP_SEED=${seed} reproduces it)`);
			const rnd = rng(seed);
			const pick = (a) => a[Math.floor(rnd() * a.length)];
			const m = new Model();
			const evalsha = (keys, args) => redis.cmd('EVALSHA', sha, keys.length, ...keys, ...args);
			let seq = 0, grants = 0, denials = 0, cools = 0, escalations = 0, replayed = 0, late = 0;
			let modelFull = 0, modelGrants = 0, modelReplayed = 0;
			let lastNow = 0;	/* the script's clock as last seen */
			// A command's deadline on the script's clock: none, far ahead, or already past.
			const deadline = () => {
				const x = rnd();
				return x < 0.5 ? 0 : x < 0.9 ? lastNow + 60000 : Math.max(1, lastNow - 1);
			};
			const recent = [];	/* [{fp, member, score}] granted by asks */
			const OPS = Number(process.env.SC_PROP_OPS || 700);

			for (let op = 0; op < OPS; op++) {
				if (rnd() < 0.35) await sleep(Math.floor(rnd() * 40));
				const r = rnd();
				const ctx = `seed ${seed} op ${op}`;
				if (r < 0.6) {
					// ask
					const cand = [...FPS].sort(() => rnd() - 0.5).slice(0, 1 + Math.floor(rnd() * 4));
					// The configured limit, and the asking host's effective (learned) one, 1..configured.
					const conf = cand.map(() => 1 + Math.floor(rnd() * 4));
					const lim = conf.map((c) => (rnd() < 0.4 ? 1 + Math.floor(rnd() * c) : c));
					const bud = cand.map(() => 1 + Math.floor(rnd() * 2));
					const pool = rnd() < 0.15 ? 'emergency' : 'main';
					const known = Math.floor(rnd() * 4);
					const member = `h:${++seq}`;
					// The request's model; per candidate its window's configured and
					// effective limits, or none (0 0: that key has no limit for it).
					const model = pick(MODELS);
					const mconf = cand.map(() => (rnd() < 0.45 ? 0 : 1 + Math.floor(rnd() * 3)));
					const mlim = mconf.map((c) => (c && rnd() < 0.4 ? 1 + Math.floor(rnd() * c) : c));
					const keys = [`${P}hosts`];
					for (const f of cand) keys.push(`${P}w:${f}`, `${P}e:${f}`, `${P}c:${f}`, `${P}i:${f}`, `${P}m:${f}:${model}`);
					const dl = deadline();
					const args = ['ask', SPAN, member, pool, known, STALE, MEMBERSHIP, dl];
					cand.forEach((_, i) => args.push(lim[i], conf[i], bud[i], mlim[i], mconf[i]));
					const rep = await evalsha(keys, args);
					const now = rep[1];
					lastNow = now;
					const hc = m.hostCounts(now, known);
					assert.deepEqual([rep[2], rep[3]], [hc.hosts, hc.live], `${ctx}: hosts/live`);
					if (dl > 0 && now > dl) {
						// Ran after its deadline: nothing looked at, nothing granted.
						assert.deepEqual(rep, [0, now, hc.hosts, hc.live], `${ctx}: a late ask`);
						late++;
						continue;
					}
					const absent = Math.max(0, hc.hosts - hc.live);
					let granted = 0;
					for (let i = 0; i < cand.length; i++) {
						const k = m.keys.get(cand[i]);
						const got = rep.slice(4 + 8 * i, 12 + 8 * i);
						assert.ok(got.length === 8, `${ctx}: candidate ${i} missing in ${JSON.stringify(rep)}`);
						const count = Model.trim(k.w, now);
						const cstate = m.cooling(k, now);
						const info = k.cd ? [k.cd.n, k.cd.started, k.cd.len] : [0, 0, 0];
						const mw = k.m.get(model);
						const roomOf = (l, c) => (hc.hosts > 0 ? l - absent * Math.floor(c / hc.hosts) : l);
						let state = 0, wait = 0, mcount = -1, mwait = 0;
						if (k.inv !== null) state = 3;
						else {
							if (pool !== 'emergency' && cstate === 'yes') {
								state = 2;
								wait = k.cd.until - now;
							} else {
								const room = roomOf(lim[i], conf[i]);
								if (mlim[i] > 0) {
									mcount = Model.trim(mw, now);
									const mroom = roomOf(mlim[i], mconf[i]);
									if (mcount >= mroom) mwait = Model.freesIn(mw, mcount, mroom, now);
								}
								if (count >= room) {
									state = 1;
									wait = Model.freesIn(k.w, count, room, now);
								} else if (mwait > 0) {
									state = 4;
									wait = mwait;
								} else if (pool === 'emergency') {
									const ec = Model.trim(k.e, now);
									if (ec >= bud[i]) {
										state = 1;
										wait = Model.freesIn(k.e, ec, bud[i], now);
									}
								}
							}
						}
						assert.equal(got[0], state, `${ctx}: candidate ${i} (${cand[i]}) state; reply ${JSON.stringify(rep)}`);
						assert.equal(got[1], wait, `${ctx}: candidate ${i} wait`);
						assert.equal(got[2], state === 0 ? count + 1 : count, `${ctx}: candidate ${i} count`);
						assert.deepEqual(got.slice(3, 6), info, `${ctx}: candidate ${i} cooldown info`);
						assert.deepEqual(got.slice(6), [state === 0 && mcount >= 0 ? mcount + 1 : mcount, mwait],
							`${ctx}: candidate ${i} model window (${model}, ${mlim[i]} of ${mconf[i]})`);
						if (state === 4) modelFull++;
						if (state === 0) {
							k.w.push({ score: now, member });
							if (pool === 'emergency') k.e.push({ score: now, member });
							if (mlim[i] > 0) {
								mw.push({ score: now, member });
								modelGrants++;
							}
							recent.push({ fp: cand[i], member, score: now, em: pool === 'emergency', model: mlim[i] > 0 ? model : null });
							granted = i + 1;
							break;
						}
					}
					assert.equal(rep[0], granted, `${ctx}: granted`);
					assert.equal(rep.length, 4 + 8 * (granted ? granted : cand.length), `${ctx}: candidates looked at`);
					if (granted) grants++;
					else denials++;
				} else if (r < 0.72) {
					// beat
					const host = pick(HOSTS);
					const keys = [`${P}hosts`];
					for (const f of FPS) keys.push(`${P}w:${f}`, `${P}c:${f}`, `${P}i:${f}`);
					const dl = deadline();
					const rep = await evalsha(keys, ['beat', host, SPAN, STALE, MEMBERSHIP, dl]);
					const now = rep[0];
					lastNow = now;
					if (dl === 0 || now <= dl) m.hosts.set(host, now);
					else late++;
					for (const [h, at] of [...m.hosts]) if (at <= now - MEMBERSHIP) m.hosts.delete(h);
					const hc = m.hostCounts(now, 0);
					assert.deepEqual([rep[1], rep[2]], [m.hosts.size, hc.live], `${ctx}: beat hosts`);
					const list = [];
					for (const [h, at] of [...m.hosts].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))) list.push(h, now - at);
					assert.deepEqual(rep[3], list, `${ctx}: beat host list`);
					FPS.forEach((f, i) => {
						const k = m.keys.get(f);
						const got = rep.slice(4 + 6 * i, 10 + 6 * i);
						const count = Model.trim(k.w, now);
						m.cooling(k, now);
						assert.equal(got[0], count, `${ctx}: beat count ${f}`);
						if (k.cd) {
							assert.deepEqual(got.slice(1, 5), [k.cd.until - now, k.cd.n, k.cd.started, k.cd.len], `${ctx}: beat cooldown ${f}`);
						} else assert.deepEqual(got.slice(1, 5), [0, 0, 0, 0], `${ctx}: beat no cooldown ${f}`);
						assert.equal(got[5], k.inv !== null ? 1 : 0, `${ctx}: beat invalid ${f}`);
					});
				} else if (r < 0.8) {
					// cool: a 429 for an attempt granted at some time
					const f = pick(FPS);
					const k = m.keys.get(f);
					const g = recent.filter((x) => x.fp === f);
					const grantedAt = rnd() < 0.7 && g.length ? pick(g).score : 0;
					const ra = rnd() < 0.3 ? 20 + Math.floor(rnd() * 200) : -1;
					// current: the host's episode rule (issue 15) called it a new overload.
					const current = rnd() < 0.8 ? 1 : 0;
					const rep = await evalsha([`${P}c:${f}`, `${P}n:${f}`], ['cool', grantedAt, BASE, MAX, ra, current]);
					cools++;
					const n0 = k.nh ? k.nh.n : 0, started0 = k.nh ? k.nh.started : 0;
					const now = rep[5];
					lastNow = now;
					const cs = m.cooling(k, now);
					if (!current && cs === 'no') {
						// Old news, no cooldown running: never a step; a Retry-After holds the key.
						if (ra > 0) {
							assert.deepEqual(rep, [0, n0, ra, now, ra, now], `${ctx}: old news with Retry-After`);
							k.cd = { n: n0, started: now, len: ra, until: now + ra };
						} else assert.deepEqual(rep, [0, n0, 0, 0, 0, now], `${ctx}: old news`);
					} else if (rep[0] === 1) {
						assert.ok(current && !(cs === 'yes' && grantedAt < started0), `${ctx}: escalated during the same overload`);
						let len = BASE;
						for (let i = 2; i <= n0 + 1 && len < MAX; i++) len *= 2;
						len = Math.min(len, MAX);
						if (ra > len) len = ra;
						assert.deepEqual(rep, [1, n0 + 1, len, now, len, now], `${ctx}: escalation`);
						k.cd = { n: n0 + 1, started: now, len, until: now + len };
						k.nh = { n: n0 + 1, started: now };
						escalations++;
					} else {
						assert.ok(k.cd && cs !== 'no' && (grantedAt < started0 || !current),
							`${ctx}: not escalated without a running cooldown of a later overload`);
						assert.equal(rep[1], k.cd.n, `${ctx}: the episode's step kept`);
						assert.equal(rep[3], k.cd.started, `${ctx}: started kept`);
						const ttl = k.cd.until - now;
						if (ra > 0 && ra > ttl) {
							k.cd.len += ra - ttl;
							k.cd.until = now + ra;
						}
						assert.deepEqual(rep, [0, k.cd.n, k.cd.until - now, k.cd.started, k.cd.len, now], `${ctx}: same overload`);
					}
				} else if (r < 0.86) {
					const f = pick(FPS);
					await evalsha([`${P}n:${f}`], ['ok']);
					const k = m.keys.get(f);
					if (k.nh) k.nh.n = 0;
				} else if (r < 0.88) {
					const f = pick(FPS);
					await evalsha([`${P}i:${f}`], ['inv', 'HTTP 401']);
					m.keys.get(f).inv = 'HTTP 401';
				} else if (r < 0.94) {
					const f = pick(FPS);
					const all = rnd() < 0.5;
					await evalsha([`${P}c:${f}`, `${P}n:${f}`, `${P}i:${f}`], ['clear', all ? 'all' : 'cooldown']);
					const k = m.keys.get(f);
					k.cd = null;
					k.nh = null;
					if (all) k.inv = null;
				} else {
					// replay: fresh members at recent times, members granted recently, and stale times
					const tm = await redis.cmd('TIME');
					const t0 = Number(tm[0]) * 1000 + Math.floor(Number(tm[1]) / 1000);
					const items = [];
					for (let j = 0, n = 1 + Math.floor(rnd() * 4); j < n; j++) {
						const f = pick(FPS), x = rnd();
						const mo = rnd() < 0.5 ? pick(MODELS) : null;
						if (x < 0.4) items.push({ fp: f, member: `r:${++seq}`, score: t0 - Math.floor(rnd() * (SPAN / 3)), em: rnd() < 0.3, model: mo, fresh: true });
						else if (x < 0.7) items.push({ fp: f, member: `r:${++seq}`, score: t0 - SPAN - 100, em: false, model: mo, fresh: false });
						else {
							const g = recent.filter((y) => y.score > t0 - SPAN / 3);
							if (g.length) items.push({ ...pick(g), fresh: true });
						}
					}
					if (!items.length) continue;
					const keys = [], args = ['replay', SPAN];
					for (const it of items) {
						keys.push(`${P}w:${it.fp}`, `${P}e:${it.fp}`, `${P}m:${it.fp}:${it.model ?? MODELS[0]}`);
						args.push(it.score, it.member, it.em ? 1 : 0, it.model ? 1 : 0);
					}
					const added = await evalsha(keys, args);
					let want = 0;
					for (const it of items) {
						if (!it.fresh) continue;
						const k = m.keys.get(it.fp);
						if (!k.w.some((y) => y.member === it.member)) {
							k.w.push({ score: it.score, member: it.member });
							want++;
						}
						if (it.em && !k.e.some((y) => y.member === it.member)) k.e.push({ score: it.score, member: it.member });
						const mw = it.model ? k.m.get(it.model) : null;
						if (mw && !mw.some((y) => y.member === it.member)) {
							mw.push({ score: it.score, member: it.member });
							modelReplayed++;
						}
					}
					assert.equal(added, want, `${ctx}: replayed ${JSON.stringify(items)}`);
					replayed += added;
				}
			}
			t.diagnostic(`${grants} grants (${modelGrants} in a model window), ${denials} denials (${modelFull} for a full model window), ` +
				`${cools} 429 reports (${escalations} steps), ${replayed} replayed (${modelReplayed} in a model window), ${late} late commands`);
			assert.ok(grants > 40 && denials > 40 && escalations > 5 && replayed > 0 && late > 5, 'the operations covered the cases');
			assert.ok(modelGrants > 15 && modelFull > 3 && modelReplayed > 0, 'the operations covered the model windows');
		} finally {
			await redis.stop();
		}
	});
});
