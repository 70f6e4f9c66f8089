/*
 * Sidecar V2 admin panel. Plain browser JavaScript, no build step.
 *
 * Data sources:
 *   - /api/v2/events (EventSource, sidecar-events): "status" carries the live
 *     snapshot (docs/status-snapshot.md) at least every 2 s while anything
 *     changes; "cooldown" says a cooldown started or ended; "provider" says
 *     the provider list or settings changed; "request" carries one new row
 *     of the request log (added to the Requests view when it matches the
 *     filters), "requests_skipped" says the stream skipped ahead (reload).
 *   - /api/v2/* (sidecar-admin, docs/admin-api.md): session, providers,
 *     settings, hourly stats, usage by provider/model, cooldown history,
 *     the request log (GET /requests, GET /requests/{id}).
 * Links to the Requests view are plain anchors, #requests?provider=ID&…,
 * applied on hashchange, so they can be bookmarked and shared.
 * Mutating calls send the session's CSRF value as X-Sidecar-CSRF.
 * Keys never reach this page: the API returns masks only.
 */
'use strict';

(function () {
	const API = '/api/v2';
	const STALE_MS = 5000;		/* a snapshot older than this: data plane not running */

	const S = {
		csrf: sessionStorage.getItem('sc_csrf') || '',
		es: null,			/* EventSource */
		snap: null,			/* last live snapshot */
		snapAt: 0,			/* Date.now() when it arrived */
		providers: [],			/* from GET /providers */
		cooldownEnds: new Map(),	/* provider id -> Date.now()-based end time */
		range: '1h',
		period: 'day',
		hourly: null,
		charts: {},
		settings: [],
		settingsEdits: 0,		/* bumped by every keystroke in the settings form */
		settingsLoads: 0,		/* loadSettings calls started */
		settingsShown: 0,		/* the call whose answer the form shows */
		historyTimer: null,
		openedAt: 0,			/* Date.now() when the stream first opened */
		demoEnv: false,		/* sidecar-events runs in demo mode ($SIDECAR_DEMO) */
		req: { rows: [], next: null, reload: null, gen: 0 },	/* the Requests view */
	};
	const REQ_PAGE = 100;		/* rows per page of GET /requests */
	const REQ_MAX_ROWS = 500;	/* rows kept in the table while live rows arrive */

	const $ = (sel, root) => (root || document).querySelector(sel);
	const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

	/* ---------- small helpers ---------- */

	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === null || v === undefined || v === false) continue;
			if (k === 'class') e.className = v;
			else if (k === 'text') e.textContent = v;
			else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
			else if (k === 'style') e.style.cssText = v;
			else e.setAttribute(k, v === true ? '' : v);
		}
		for (const k of kids) {
			if (k === null || k === undefined || k === false) continue;
			e.append(k instanceof Node ? k : document.createTextNode(String(k)));
		}
		return e;
	}

	const nf = new Intl.NumberFormat('en-US');
	function fmtInt(n) { return n === null || n === undefined || Number.isNaN(+n) ? '–' : nf.format(Math.round(+n)); }
	function fmtCompact(n) {
		n = +n || 0;
		if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(1) + 'G';
		if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + 'M';
		if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + 'k';
		return nf.format(Math.round(n));
	}
	/* Axis labels: short, at most 4 digits. */
	function fmtAxis(n) {
		const a = Math.abs(n);
		if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
		if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e5 ? 0 : 1).replace(/\.0$/, '') + 'k';
		return nf.format(n);
	}
	function fmtCost(n) {
		n = +n || 0;
		if (n === 0) return '$0';
		if (n < 0.01) return '$' + n.toFixed(4);
		return '$' + n.toFixed(2);
	}
	function fmtMs(ms) {
		if (ms === null || ms === undefined || !(+ms > 0)) return '–';
		return ms >= 10000 ? (ms / 1000).toFixed(1) + ' s' : Math.round(ms) + ' ms';
	}
	function fmtDuration(sec) {
		sec = Math.max(0, Math.round(sec));
		const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
		const pad = (x) => String(x).padStart(2, '0');
		return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
	}
	function fmtTime(ts) {
		if (!ts) return '–';
		const d = new Date(ts);
		if (Number.isNaN(d.getTime())) return ts;
		const today = new Date();
		const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
		return d.toDateString() === today.toDateString() ? hm
			: d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm;
	}

	let toastTimer = null;
	function toast(msg) {
		const t = $('#toast');
		t.textContent = msg;
		t.hidden = false;
		clearTimeout(toastTimer);
		toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
	}

	function showMsg(node, text, isError) {
		node.textContent = text;
		node.classList.toggle('error', !!isError);
		node.hidden = !text;
	}

	/* ---------- API ---------- */

	class ApiError extends Error {
		constructor(status, body) {
			const err = body && body.error ? body.error : {};
			super(err.message || `HTTP ${status}`);
			this.status = status;
			this.field = err.field || null;
			this.body = body;
		}
	}

	async function api(method, path, body, opts) {
		opts = opts || {};
		const headers = { Accept: 'application/json' };
		if (method !== 'GET' && S.csrf) headers['X-Sidecar-CSRF'] = S.csrf;
		let payload;
		if (body !== undefined && body !== null) {
			if (typeof body === 'string') {
				payload = body;
				headers['Content-Type'] = opts.contentType || 'text/plain';
			} else {
				payload = JSON.stringify(body);
				headers['Content-Type'] = 'application/json';
			}
		}
		const r = await fetch(API + path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
		let data = null;
		const ct = r.headers.get('Content-Type') || '';
		if (ct.includes('json')) {
			try { data = await r.json(); } catch (e) { data = null; }
		} else {
			data = await r.text();
		}
		if (r.status === 401 && !opts.noLogout) {
			loggedOut('Your session ended; log in again.');
		}
		if (!r.ok) throw new ApiError(r.status, data);
		return data;
	}

	/* ---------- login / logout ---------- */

	function loggedOut(msg) {
		if (S.es) { S.es.close(); S.es = null; }
		S.openedAt = 0;
		clearInterval(S.historyTimer);
		S.csrf = '';
		sessionStorage.removeItem('sc_csrf');
		$('#app-view').hidden = true;
		$('#logout').hidden = true;
		$('#topbar-status').hidden = true;
		$('#login-view').hidden = false;
		showMsg($('#login-error'), msg || '', true);
		$('#login-token').focus();
	}

	async function login(ev) {
		ev.preventDefault();
		const token = $('#login-token').value.trim();
		const err = $('#login-error');
		if (!token) { showMsg(err, 'Enter an admin token.', true); return; }
		try {
			const r = await api('POST', '/session', { token }, { noLogout: true });
			S.csrf = r.csrf || '';
			sessionStorage.setItem('sc_csrf', S.csrf);
			$('#login-token').value = '';
			showMsg(err, '', false);
			start();
		} catch (e) {
			showMsg(err, e.status === 401 ? 'That token is not a valid admin token.' : e.message, true);
		}
	}

	async function logout() {
		try { await api('DELETE', '/session', null, { noLogout: true }); } catch (e) { /* ended anyway */ }
		loggedOut('');
	}

	/* ---------- live stream ---------- */

	function setConn(text, cls) {
		const c = $('#conn');
		c.textContent = text;
		c.className = 'pill ' + cls;
	}

	function connect() {
		if (S.es) S.es.close();
		const es = new EventSource(API + '/events');
		S.es = es;
		setConn('connecting…', 'pill-muted');
		es.onopen = () => {
			setConn('live', 'pill-ok');
			if (!S.openedAt) {
				S.openedAt = Date.now();	/* start() has just loaded everything */
				return;
			}
			/* A reconnect: reload what the stream does not replay. */
			loadProviders();
			loadCooldowns();
			loadRequests(false);
		};
		es.onerror = async () => {
			if (es.readyState === EventSource.CLOSED) {
				/* The server refused the stream (401 after a logout, 5xx): find out which. */
				setConn('offline', 'pill-bad');
				try {
					await api('GET', '/session');
					setTimeout(() => { if (S.es === es) connect(); }, 3000);
				} catch (e) {
					if (e.status !== 401) setTimeout(() => { if (S.es === es) connect(); }, 5000);
				}
			} else {
				setConn('reconnecting…', 'pill-warn');
			}
		};
		es.addEventListener('hello', (m) => {
			try { S.demoEnv = !!JSON.parse(m.data).demo; } catch (e) { S.demoEnv = false; }
			$('#demo-banner').hidden = !(S.demoEnv || (S.snap && S.snap.demo));
		});
		es.addEventListener('status', (m) => {
			try { onSnapshot(JSON.parse(m.data)); } catch (e) { console.error('bad status event', e); }
		});
		es.addEventListener('cooldown', (m) => {
			let ev = null;
			try { ev = JSON.parse(m.data); } catch (e) { return; }
			if (ev.kind === 'start') toast(`Cooldown started: ${ev.provider_name || ev.provider_id} for ${ev.cooldown_seconds} s`);
			loadCooldowns();
			loadProviders();	/* the list's cooling flag and reset button follow the event */
		});
		es.addEventListener('provider', () => { loadProviders(); loadSettings(false); });
		es.addEventListener('request', (m) => {
			let r = null;
			try { r = JSON.parse(m.data); } catch (e) { return; }
			onRequestEvent(r);
		});
		es.addEventListener('requests_skipped', () => loadRequests(false));
	}

	/* ---------- snapshot rendering ---------- */

	function onSnapshot(snap) {
		S.snap = snap;
		S.snapAt = Date.now();
		$('#demo-banner').hidden = !(snap.demo || S.demoEnv);
		const now = Date.now();
		for (const p of snap.providers || []) {
			if (p.cooldown_remaining_ms > 0) S.cooldownEnds.set(p.id, now + p.cooldown_remaining_ms);
			else S.cooldownEnds.delete(p.id);
		}
		renderKpis();
		renderProviders();
		renderHealth();
		renderCluster();
		if (S.range === '1h') renderTrends();
		updateDataPlaneBadge();
	}

	/* Several data planes through Redis (docs/cluster.md): shown only when redis_url is set. */
	function renderCluster() {
		const c = (S.snap || {}).cluster;
		const panel = $('#panel-cluster');
		panel.hidden = !c;
		if (!c) return;
		const mode = $('#cluster-mode');
		const label = { shared: 'shared', quarantine: 'QUARANTINE: sending nothing', local_share: 'LOCAL SHARE: Redis unreachable' };
		mode.textContent = label[c.mode] || c.mode;
		mode.className = 'pill ' + (c.mode === 'shared' ? 'pill-ok' : c.mode === 'local_share' ? 'pill-warn' : 'pill-bad');
		$('#cluster-summary').textContent = `This host: ${c.host} · namespace ${c.namespace} · Redis ${c.connection} · ` +
			`${c.hosts_live} of ${c.hosts_known} hosts live`;
		const hb = $('#cluster-hosts');
		hb.replaceChildren();
		for (const h of c.hosts || []) {
			hb.append(el('tr', {},
				el('td', { text: h.name + (h.name === c.host ? ' (this host)' : '') }),
				el('td', { class: 'num', text: fmtDuration(h.last_seen_ms_ago / 1000) + ' ago' }),
				el('td', {}, el('span', { class: 'pill ' + (h.live ? 'pill-ok' : 'pill-bad'), text: h.live ? 'live' : 'not seen' }))));
		}
		if (!(c.hosts || []).length) hb.append(el('tr', { class: 'empty' }, el('td', { colspan: 3, text: 'No heartbeat read yet.' })));
		const kb = $('#cluster-keys');
		kb.replaceChildren();
		for (const k of c.keys || []) {
			kb.append(el('tr', {}, el('td', { text: k.provider }), el('td', { class: 'num', text: `${fmtInt(k.cluster_used)} / ${fmtInt(k.limit)}` })));
		}
	}

	function snapAge() {
		if (!S.snap) return Infinity;
		/* Both the writer's clock and our own receipt time: either going stale counts. */
		const byTs = S.snap.ts_ms ? Date.now() - S.snap.ts_ms : 0;
		return Math.max(Date.now() - S.snapAt, byTs);
	}

	function updateDataPlaneBadge() {
		const dp = $('#dp');
		if (!S.snap) {
			/* Connected for a while and still no snapshot: the data plane never published one. */
			const waited = S.openedAt && Date.now() - S.openedAt > STALE_MS;
			dp.textContent = waited ? 'data plane: no live status' : 'data plane: …';
			dp.className = 'pill ' + (waited ? 'pill-bad' : 'pill-muted');
			return;
		}
		if (snapAge() > STALE_MS) { dp.textContent = 'data plane not running'; dp.className = 'pill pill-bad'; return; }
		const ps = (S.snap.providers || []);
		const serving = ps.filter((p) => p.state === 'ok' || p.state === 'full' || p.state === 'probing').length;
		dp.textContent = `data plane up · ${serving}/${ps.length} serving`;
		dp.className = 'pill ' + (serving > 0 || ps.length === 0 ? 'pill-ok' : 'pill-warn');
	}

	function renderKpis() {
		const s = S.snap || {};
		const lm = s.last_minute || {};
		const q = s.queue || {};
		$('#kpi-requests').textContent = fmtInt(lm.requests);
		$('#kpi-errors').textContent = fmtInt(lm.errors);
		$('#kpi-tokens').textContent = fmtCompact(lm.total_tokens);
		$('#kpi-cost').textContent = fmtCost(lm.cost);
		$('#kpi-inflight').textContent = fmtInt(s.inflight);
		$('#kpi-queue').textContent = q.capacity ? `${fmtInt(q.depth)} / ${fmtInt(q.capacity)}` : fmtInt(q.depth);
		$('#kpi-degraded').textContent = `${fmtInt(lm.fallback || 0)} / ${fmtInt(lm.emergency || 0)}`;
		const ps = (s.providers || []).filter((p) => p.status === 'active' && p.pool === 'main');
		const used = ps.reduce((a, p) => a + (p.rpm_used || 0), 0);
		const lim = ps.reduce((a, p) => a + (p.rpm_limit || 0), 0);
		$('#kpi-capacity').textContent = lim ? `${fmtInt(used)} / ${fmtInt(lim)}` : '–';
	}

	const STATE_PILL = {
		ok: 'pill-ok', full: 'pill-warn', cooling: 'pill-cool', probing: 'pill-warn', unhealthy: 'pill-bad',
		invalid: 'pill-bad', disabled: 'pill-off',
	};

	/* Providers: configuration from the API merged with live state from the snapshot. */
	function mergedProviders() {
		const live = new Map(((S.snap && S.snap.providers) || []).map((p) => [p.id, p]));
		const seen = new Set();
		const out = [];
		for (const p of S.providers) {
			seen.add(p.id);
			out.push({ cfg: p, live: live.get(p.id) || p.live || null });
		}
		/* Providers in the snapshot that the list does not have yet (just added elsewhere). */
		for (const [id, l] of live) if (!seen.has(id)) out.push({ cfg: null, live: l });
		return out;
	}

	/* The stored status wins for disabled/invalid (an operator's change shows at
	 * once); otherwise the data plane's live state. */
	function liveState(cfg, l) {
		if (cfg && cfg.status && cfg.status !== 'active') return cfg.status;
		if (l && l.state) return l.state;
		if (cfg && cfg.cooling) return 'cooling';
		return 'unknown';
	}

	function rpmBar(used, limit) {
		const pct = limit > 0 ? Math.min(100, (used / limit) * 100) : 0;
		const cls = pct >= 100 ? 'full' : pct >= 80 ? 'warn' : '';
		return el('div', { class: 'rpm', title: `${used} of ${limit} requests in the current window` },
			el('div', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': limit, 'aria-valuenow': used },
				el('div', { class: 'bar-fill ' + cls, style: `width:${pct.toFixed(1)}%` })),
			el('span', { class: 'bar-text', text: `${used} / ${limit}` }));
	}

	/* Configured vs effective (learned from 429s below the configured limit). */
	function limitCell(configured, effective, models) {
		const learned = effective > 0 && effective < configured;
		const parts = [el('span', { class: 'lim' + (learned ? ' lim-learned' : ''),
			title: learned ? `The upstream answered 429 below ${configured}: ${effective} in force` : 'as configured',
			text: `${fmtInt(configured)} / ${fmtInt(effective || configured)}` })];
		for (const [m, v] of Object.entries(models || {})) {
			parts.push(el('div', { class: 'prov-sub', 'data-model': m,
				text: `${m}: ${fmtInt(v.rpm_limit)} / ${fmtInt(v.rpm_limit_effective || v.rpm_limit)}` }));
		}
		return el('div', {}, ...parts);
	}

	function cooldownCell(id) {
		const end = S.cooldownEnds.get(id);
		const span = el('span', { class: 'countdown', 'data-cooldown-for': id });
		const on = !!end && end > Date.now();
		span.textContent = on ? fmtDuration((end - Date.now()) / 1000) : '–';
		span.classList.toggle('none', !on);
		return span;
	}

	/* Rebuild the rows, but touch the DOM only where a row changed, so a
	 * snapshot every second does not steal focus or hover from the buttons. */
	function renderProviders() {
		const body = $('#providers-body');
		const rows = mergedProviders();
		if (rows.length === 0) {
			body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 9, text: 'No providers yet. Add one or import a YAML file.' })));
			return;
		}
		const fresh = [];
		for (const { cfg, live } of rows) {
			const id = (cfg && cfg.id) || live.id;
			const name = (cfg && cfg.name) || live.name;
			const state = liveState(cfg, live);
			const used = live ? live.rpm_used || 0 : 0;
			const configured = (live && live.rpm_limit) || (cfg && cfg.rpm_limit) || 0;
			const effective = (live && live.rpm_limit_effective) || (cfg && cfg.rpm_limit_effective) || configured;
			const limit = effective;
			const health = (live && live.health) || (cfg && cfg.health && cfg.health.state) || 'unknown';
			const latency = live ? live.last_latency_ms : cfg && cfg.health ? cfg.health.last_latency_ms : null;
			const status = (cfg && cfg.status) || (live && live.status) || 'active';
			const cooling = state === 'cooling' || (cfg && cfg.cooling);
			const tr = el('tr', { 'data-provider': name, 'data-id': id, class: status === 'disabled' ? 'is-disabled' : '' },
				el('td', { class: 'cell-name', 'data-label': 'Provider' },
					el('div', { class: 'prov-name', text: name }),
					el('div', { class: 'prov-sub', text: [(cfg && cfg.pool) || (live && live.pool), cfg && cfg.api_key_mask, cfg && cfg.model_prefix].filter(Boolean).join(' · ') })),
				el('td', { 'data-label': 'State' }, el('span', { class: 'pill ' + (STATE_PILL[state] || 'pill-off'), 'data-state': state, text: state })),
				el('td', { 'data-label': 'RPM', class: 'col-rpm' }, rpmBar(used, limit)),
				el('td', { 'data-label': 'Limit', class: 'num col-limit' }, limitCell(configured, effective, live && live.models)),
				el('td', { 'data-label': 'Cooldown' }, cooldownCell(id)),
				el('td', { 'data-label': 'Health' }, el('span', { class: 'pill ' + (health === 'healthy' ? 'pill-ok' : health === 'unhealthy' ? 'pill-bad' : 'pill-off'), text: health })),
				el('td', { 'data-label': 'Latency', class: 'num', text: latency === 0 && live && live.requests_1m > 0 ? '<1 ms' : fmtMs(latency) }),
				el('td', { 'data-label': 'Req/min', class: 'num', text: live ? fmtInt(live.requests_1m) : '–' }),
				el('td', { 'data-label': 'Actions' }, cfg ? providerActions(cfg, cooling) : ''));
			fresh.push(tr);
		}
		const old = Array.from(body.children);
		const sameOrder = old.length === fresh.length && old.every((tr, i) => tr.dataset.id === fresh[i].dataset.id);
		if (!sameOrder) {
			body.replaceChildren(...fresh);
			return;
		}
		for (let i = 0; i < fresh.length; i++) {
			if (old[i].outerHTML !== fresh[i].outerHTML) old[i].replaceWith(fresh[i]);
		}
	}

	function providerActions(p, cooling) {
		const wrap = el('div', { class: 'actions' });
		wrap.append(el('button', { class: 'btn btn-sm', 'data-action': 'edit', onclick: () => openProviderDialog(p), text: 'Edit' }));
		if (p.status === 'disabled')
			wrap.append(el('button', { class: 'btn btn-sm', 'data-action': 'enable', onclick: () => setStatus(p, 'active'), text: 'Enable' }));
		else
			wrap.append(el('button', { class: 'btn btn-sm', 'data-action': 'disable', onclick: () => setStatus(p, 'disabled'), text: 'Disable' }));
		if (cooling)
			wrap.append(el('button', { class: 'btn btn-sm', 'data-action': 'reset', onclick: () => resetCooldown(p), text: 'Reset cooldown' }));
		wrap.append(el('a', { class: 'btn btn-sm', 'data-action': 'requests', href: reqLink({ provider: p.id }),
			title: `Requests ${p.name} served or was tried for`, text: 'Requests' }));
		wrap.append(el('button', { class: 'btn btn-sm', 'data-action': 'delete', onclick: () => deleteProvider(p), text: 'Delete' }));
		return wrap;
	}

	/* The countdowns tick every second without waiting for the next snapshot. */
	function tick() {
		const now = Date.now();
		for (const span of $$('[data-cooldown-for]')) {
			const end = S.cooldownEnds.get(span.getAttribute('data-cooldown-for'));
			const on = !!end && end > now;
			span.textContent = on ? fmtDuration((end - now) / 1000) : '–';
			span.classList.toggle('none', !on);
		}
		if (S.es) updateDataPlaneBadge();
	}

	function renderHealth() {
		const s = S.snap || {};
		const lm = s.last_minute || {};
		const q = s.queue || {};
		$('#health-success').textContent = lm.requests ? ((1 - (lm.errors || 0) / lm.requests) * 100).toFixed(1) + '%' : '–';
		$('#health-429').textContent = fmtInt(lm.upstream_429 || 0);
		$('#health-rejected').textContent = fmtInt((q.rejected_overflow || 0) + (q.rejected_timeout || 0));
		const body = $('#health-body');
		body.replaceChildren();
		const rows = mergedProviders();
		for (const { cfg, live } of rows) {
			const name = (cfg && cfg.name) || live.name;
			const h = (live && live.health) || (cfg && cfg.health && cfg.health.state) || 'unknown';
			const cf = live ? live.consecutive_failures : cfg && cfg.health ? cfg.health.consecutive_failures : 0;
			const sr = cfg && cfg.health && typeof cfg.health.success_rate_5m === 'number' ? cfg.health.success_rate_5m : null;
			body.append(el('tr', {},
				el('td', { text: name, title: name }),
				el('td', { class: 'num', text: live ? fmtInt(live.errors_1m) : '–' }),
				el('td', { class: 'num hide-narrow', text: sr === null ? '–' : (sr * 100).toFixed(sr >= 0.9995 || sr === 0 ? 0 : 1) + '%' }),
				el('td', { class: 'num', text: fmtInt(cf || 0) }),
				el('td', {}, el('span', { class: 'pill ' + (h === 'healthy' ? 'pill-ok' : h === 'unhealthy' ? 'pill-bad' : 'pill-off'), text: h }))));
		}
		if (rows.length === 0) body.append(el('tr', { class: 'empty' }, el('td', { colspan: 5, text: 'No providers.' })));
		const inv = $('#invalid-list');
		inv.replaceChildren();
		const bad = S.providers.filter((p) => p.status === 'invalid');
		if (bad.length === 0) inv.append(el('li', { class: 'muted', text: 'None.' }));
		for (const p of bad) inv.append(el('li', {}, el('strong', { text: p.name }), ' ', el('span', { class: 'muted', text: `${p.api_key_mask || ''} — ${p.status_reason || 'refused by upstream'}` })));
	}

	/* ---------- charts (uPlot) ---------- */

	function chartWidth(node) { return Math.max(240, Math.floor(node.getBoundingClientRect().width)); }

	function makeChart(id, series) {
		const node = document.getElementById(id);
		const opts = {
			width: chartWidth(node),
			height: 170,
			legend: { live: false },
			cursor: { drag: { x: false, y: false } },
			scales: { x: { time: true } },
			axes: [
				{ stroke: '#647084', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e2e6ec' }, space: 72 },
				{ stroke: '#647084', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e2e6ec' }, size: 56, values: (u, v) => v.map(fmtAxis) },
			],
			series: [{}].concat(series),
		};
		const data = [[]].concat(series.map(() => []));
		const u = new uPlot(opts, data, node);
		S.charts[id] = u;
		return u;
	}

	function ensureCharts() {
		if (S.charts['chart-requests'] || typeof uPlot === 'undefined') return;
		makeChart('chart-requests', [
			{ label: 'Requests', stroke: '#2563eb', fill: 'rgba(37,99,235,0.10)', width: 2, points: { show: false } },
			{ label: 'Errors', stroke: '#b91c1c', width: 2, points: { show: false } },
		]);
		makeChart('chart-tokens', [
			{ label: 'Tokens', stroke: '#15803d', fill: 'rgba(21,128,61,0.10)', width: 2, points: { show: false } },
		]);
		const ro = new ResizeObserver(() => {
			for (const [id, u] of Object.entries(S.charts)) u.setSize({ width: chartWidth(document.getElementById(id)), height: 170 });
		});
		ro.observe($('#panel-trends'));
	}

	function renderTrends() {
		ensureCharts();
		if (!S.charts['chart-requests']) return;
		let xs = [], req = [], err = [], tok = [];
		if (S.range === '1h') {
			for (const m of (S.snap && S.snap.minutes) || []) {
				xs.push(m.t); req.push(m.requests || 0); err.push(m.errors || 0); tok.push(m.total_tokens || 0);
			}
		} else {
			for (const h of S.hourly || []) {
				xs.push(h.t); req.push(h.requests || 0); err.push(h.errors || 0); tok.push(h.total_tokens || 0);
			}
		}
		S.charts['chart-requests'].setData([xs, req, err]);
		S.charts['chart-tokens'].setData([xs, tok]);
		$('#panel-trends').setAttribute('data-points', String(xs.length));
		$('#panel-trends').setAttribute('data-requests', String(req.reduce((a, b) => a + b, 0)));
	}

	/* Normalise GET /stats/hourly into [{t (Unix s), requests, errors, total_tokens}]. */
	function normaliseHourly(r) {
		const rows = Array.isArray(r) ? r : (r && (r.series || r.hours || r.rows)) || [];
		return rows.map((h) => {
			let t = h.t;
			if (t === undefined) {
				const b = h.hour_bucket || h.hour || h.bucket;
				t = b ? Date.parse(b.length === 13 ? b + ':00:00Z' : b) / 1000 : NaN;
			}
			return {
				t, requests: h.requests ?? h.request_count ?? h.total_requests ?? 0,
				errors: h.errors ?? h.error_count ?? h.total_errors ?? 0,
				total_tokens: h.total_tokens ?? h.tokens ?? 0,
			};
		}).filter((h) => Number.isFinite(h.t)).sort((a, b) => a.t - b.t);
	}

	async function loadHourly() {
		try {
			S.hourly = normaliseHourly(await api('GET', '/stats/hourly'));
		} catch (e) {
			if (e.status === 401) return;
			S.hourly = [];
		}
		if (S.range === '24h') renderTrends();
	}

	function setRange(r) {
		S.range = r;
		for (const b of $$('[data-range]')) { b.classList.toggle('active', b.dataset.range === r); b.setAttribute('aria-pressed', String(b.dataset.range === r)); }
		for (const u of $$('.unit-label')) u.textContent = r === '1h' ? 'minute' : 'hour';
		if (r === '24h') loadHourly(); else renderTrends();
	}

	/* ---------- usage by provider and model ---------- */

	function emptyRow(body, cols, text) {
		body.append(el('tr', { class: 'empty' }, el('td', { colspan: cols, text })));
	}

	async function loadUsage() {
		const range = S.period;
		let tot = null, mod = null;
		try {
			[tot, mod] = await Promise.all([api('GET', `/stats/totals?range=${range}`), api('GET', `/stats/by-model?range=${range}`)]);
		} catch (e) {
			if (e.status === 401) return;
		}
		const t = (tot && tot.totals) || {};
		const totals = $('#usage-totals');
		totals.replaceChildren(
			el('div', {}, el('span', { class: 'kpi-label', text: 'Requests' }), el('span', { class: 'kpi-value', text: fmtInt(t.requests || 0) })),
			el('div', {}, el('span', { class: 'kpi-label', text: 'Tokens' }), el('span', { class: 'kpi-value', text: fmtCompact(t.total_tokens || 0) })),
			el('div', {}, el('span', { class: 'kpi-label', text: 'Cost' }), el('span', { class: 'kpi-value', text: fmtCost(t.cost || 0) })),
			el('div', {}, el('span', { class: 'kpi-label', text: 'Error rate' }), el('span', { class: 'kpi-value', text: t.requests ? (100 * (t.error_rate || 0)).toFixed(1) + '%' : '–' })));
		const pb = $('#usage-prov-body');
		pb.replaceChildren();
		const prov = (tot && tot.by_provider) || [];
		if (prov.length === 0) emptyRow(pb, 5, tot === null ? 'Usage statistics unavailable.' : 'No usage in this period.');
		for (const u of prov) {
			pb.append(el('tr', {},
				el('td', { text: u.name || u.provider_id || '–' }),
				el('td', { class: 'num', text: fmtInt(u.requests) }),
				el('td', { class: 'num', text: fmtCompact(u.total_tokens) }),
				el('td', { class: 'num', text: fmtCost(u.cost) }),
				el('td', { class: 'num', text: fmtMs(u.avg_latency_ms) })));
		}
		const mb = $('#usage-model-body');
		mb.replaceChildren();
		const models = (mod && mod.models) || [];
		if (models.length === 0) emptyRow(mb, 4, mod === null ? 'Usage statistics unavailable.' : 'No usage in this period.');
		for (const u of models) {
			mb.append(el('tr', {},
				el('td', { text: u.model || '–' }),
				el('td', { class: 'num', text: fmtInt(u.requests) }),
				el('td', { class: 'num', text: fmtCompact(u.total_tokens) }),
				el('td', { class: 'num', text: fmtCost(u.cost) })));
		}
	}

	function setPeriod(p) {
		S.period = p;
		for (const b of $$('[data-period]')) { b.classList.toggle('active', b.dataset.period === p); b.setAttribute('aria-pressed', String(b.dataset.period === p)); }
		loadUsage();
	}

	/* ---------- cooldown history ---------- */

	async function loadCooldowns() {
		let r;
		try { r = await api('GET', '/cooldowns?limit=100'); } catch (e) { return; }
		const rows = Array.isArray(r) ? r : (r && r.cooldowns) || [];
		const body = $('#cooldowns-body');
		body.replaceChildren();
		if (rows.length === 0) {
			body.append(el('tr', { class: 'empty' }, el('td', { colspan: 5, text: 'No cooldowns.' })));
			return;
		}
		for (const c of rows) {
			body.append(el('tr', { 'data-cooldown': c.id || '', class: c.active ? 'active-cooldown' : '' },
				el('td', {}, fmtTime(c.started_at), c.active ? el('span', { class: 'pill pill-cool', style: 'margin-left:6px', text: 'active' }) : null),
				el('td', {}, c.provider_name || c.provider || c.provider_id || '–', ' ',
					c.provider_id ? el('a', { class: 'req-link', 'data-action': 'cooldown-requests', href: cooldownLink(c),
						title: 'The requests that got a 429 from this provider around the start of this cooldown', text: 'requests' }) : null),
				el('td', { class: 'num hide-narrow', text: fmtInt(c.consecutive_count) }),
				el('td', { class: 'num', text: fmtDuration(c.cooldown_seconds || 0) }),
				el('td', { class: 'summary', text: c.response_summary || '' })));
		}
	}

	/* ---------- the request log ---------- */

	/* An anchor to the Requests view with these filters (see applyHash). */
	function reqLink(f) {
		const q = new URLSearchParams();
		for (const [k, v] of Object.entries(f)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
		return '#requests?' + q.toString();
	}

	/* The requests a cooldown concerns: 429s from its provider from shortly
	 * before it started to when a retried request could have ended. */
	function cooldownLink(c) {
		const t = Math.floor(new Date(c.started_at).getTime() / 1000);
		return reqLink({ provider: c.provider_id, outcome: 'rate_limited', from: t - 10, to: t + 120 });
	}

	function reqForm() { return $('#requests-filters'); }

	/* The filters as the form holds them ("since" made absolute now). */
	function reqFilters() {
		const f = reqForm().elements;
		const out = {
			status: f.status.value, errors: f.errors.checked, provider: f.provider.value, pool: f.pool.value,
			model: f.model.value.trim(), request_id: f.request_id.value.trim(), outcome: f.outcome.value,
			from: f.from.value, to: f.to.value,
		};
		if (f.since.value && !out.from) out.from = String(Math.floor(Date.now() / 1000) - +f.since.value);
		return out;
	}

	function reqQuery(f, cursor) {
		const q = new URLSearchParams({ limit: String(REQ_PAGE) });
		for (const k of ['status', 'provider', 'pool', 'model', 'request_id', 'outcome', 'from', 'to']) if (f[k]) q.set(k, f[k]);
		if (f.errors) q.set('errors', '1');
		if (cursor) q.set('cursor', String(cursor));
		return q.toString();
	}

	/* Would row r be listed under filters f? null when the row alone cannot
	 * tell (the filter looks at attempts, which the event does not carry). */
	function reqMatches(r, f) {
		if (f.status) {
			const cls = /^[1-5]xx$/.test(f.status) ? +f.status[0] : null;
			if (cls !== null ? Math.floor(r.status / 100) !== cls : r.status !== +f.status) return false;
		}
		if (f.errors && !r.error) return false;
		if (f.pool && r.pool !== f.pool) return false;
		if (f.model && r.model !== f.model) return false;
		if (f.request_id && r.request_id !== f.request_id) return false;
		if (f.from && r.finished_ms < +f.from * 1000) return false;
		if (f.to && r.finished_ms >= (+f.to + 1) * 1000) return false;
		if (f.outcome) return null;
		if (f.provider && r.provider_id !== f.provider && r.provider !== f.provider)
			return r.attempts > 1 ? null : false;
		return true;
	}

	function reqStatusText(r) {
		return r.error_code ? `${r.status} ${r.error_code}` : String(r.status);
	}

	function reqRow(r, isNew) {
		const tr = el('tr', { 'data-seq': r.seq, 'data-rid': r.request_id, tabindex: '0',
			class: (r.error ? 'is-error' : '') + (isNew ? ' is-new' : ''), title: 'Open the attempts of this request' },
			el('td', { text: fmtTime(r.finished_at) }),
			el('td', { class: 'rid', text: r.request_id, title: r.request_id }),
			el('td', { class: 'hide-narrow', text: r.client || '–' }),
			el('td', { text: r.model || '–' }),
			el('td', { text: r.provider || '–' }),
			el('td', { class: 'hide-narrow', text: r.pool || '–' }),
			el('td', { class: 'st', text: reqStatusText(r) }),
			el('td', { class: 'num', text: fmtInt(r.attempts) }),
			el('td', { class: 'num hide-narrow', text: fmtMs(r.queue_ms) }),
			el('td', { class: 'num hide-narrow', text: r.ttfb_ms === null ? '–' : r.ttfb_ms === 0 ? '<1 ms' : fmtMs(r.ttfb_ms) }),
			el('td', { class: 'num', text: r.latency_ms === 0 ? '<1 ms' : fmtMs(r.latency_ms) }),
			el('td', { class: 'num hide-narrow', text: r.total_tokens === null ? '–' : fmtInt(r.total_tokens) }));
		tr.addEventListener('click', () => openRequest(r));
		tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') openRequest(r); });
		return tr;
	}

	/* The request_log_rows setting as last loaded (null: not known yet). */
	function reqLogRows() {
		const s = S.settings.find((x) => x.key === 'request_log_rows');
		return s ? +s.value : null;
	}

	function renderRequests() {
		const body = $('#requests-body');
		const rows = reqLogRows();
		$('#requests-note').textContent = rows === 0 ? 'The request log is off (setting request_log_rows = 0).'
			: `The most recent ${rows ? fmtInt(rows) + ' ' : ''}requests; a row opens its attempts.`;
		if (S.req.rows.length === 0) {
			body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 12, text: rows === 0 ? 'The request log is off.' : 'No requests match.' })));
		} else {
			body.replaceChildren(...S.req.rows.map((r) => reqRow(r, false)));
		}
		$('#requests-more').hidden = !S.req.next;
	}

	/* The scope line for filters a link set (outcome, time window). */
	function renderReqScope(f) {
		const p = $('#requests-scope');
		if (!f.outcome && !reqForm().elements.from.value) { p.hidden = true; return; }
		const prov = S.providers.find((x) => x.id === f.provider);
		const parts = [];
		if (f.outcome) parts.push(`attempts that ended ${f.outcome}`);
		if (f.provider) parts.push(`on ${prov ? prov.name : f.provider}`);
		if (f.from) parts.push(`from ${fmtTime(new Date(+f.from * 1000).toISOString())}`);
		if (f.to) parts.push(`to ${fmtTime(new Date(+f.to * 1000).toISOString())}`);
		p.replaceChildren(el('span', { text: 'Showing ' + parts.join(' ') }),
			el('button', { type: 'button', class: 'btn btn-sm', 'data-action': 'requests-all', onclick: clearRequestFilters, text: 'Show all' }));
		p.hidden = false;
	}

	/* Load the first page (more = false) or the next older one. */
	async function loadRequests(more) {
		const f = reqFilters();
		const gen = more ? S.req.gen : ++S.req.gen;
		let r;
		try {
			r = await api('GET', '/requests?' + reqQuery(f, more ? S.req.next : null));
		} catch (e) {
			if (e.status !== 401) showMsg($('#requests-msg'), 'Could not load the request log: ' + e.message, true);
			return;
		}
		if (gen !== S.req.gen) return;	/* the filters changed meanwhile */
		showMsg($('#requests-msg'), '', false);
		const list = (r && r.requests) || [];
		S.req.rows = more ? S.req.rows.concat(list) : list;
		S.req.next = r ? r.next_cursor : null;
		renderReqScope(f);
		renderRequests();
	}

	/* A new row from the stream: shown at once when it matches, else the
	 * list is reloaded (debounced) when only the server can tell. */
	function onRequestEvent(r) {
		const m = reqMatches(r, reqFilters());
		if (m === false || S.req.rows.some((x) => x.seq === r.seq)) return;
		if (m === null) {
			clearTimeout(S.req.reload);
			S.req.reload = setTimeout(() => loadRequests(false), 1000);
			return;
		}
		S.req.rows.unshift(r);
		const body = $('#requests-body');
		if (body.querySelector('tr.empty')) body.replaceChildren();
		body.prepend(reqRow(r, true));
		while (S.req.rows.length > REQ_MAX_ROWS) {
			S.req.rows.pop();
			body.lastElementChild.remove();
			S.req.next = S.req.rows[S.req.rows.length - 1].seq;	/* older ones stay one click away */
		}
		$('#requests-more').hidden = !S.req.next;
	}

	function fillProviderFilter() {
		const sel = reqForm().elements.provider;
		const cur = sel.value;
		sel.replaceChildren(el('option', { value: '', text: 'any' }),
			...S.providers.map((p) => el('option', { value: p.id, text: p.name })));
		if (cur && !S.providers.some((p) => p.id === cur)) sel.append(el('option', { value: cur, text: cur }));
		sel.value = cur;
	}

	function clearRequestFilters() {
		reqForm().reset();
		for (const k of ['outcome', 'from', 'to']) reqForm().elements[k].value = '';
		if (location.hash.startsWith('#requests')) history.replaceState(null, '', location.pathname + location.search);
		loadRequests(false);
	}

	/* #requests?provider=…&outcome=…&from=…&to=…: set the filters from a link and show the view. */
	function applyHash() {
		const h = location.hash;
		if (!h.startsWith('#requests')) return;
		const q = new URLSearchParams(h.slice(h.indexOf('?') + 1 || h.length));
		const f = reqForm();
		f.reset();
		for (const k of ['outcome', 'from', 'to']) f.elements[k].value = '';
		for (const [k, v] of q) {
			const e = f.elements[k];
			if (!e) continue;
			if (e.type === 'checkbox') e.checked = v === '1' || v === 'true';
			else {
				if (e.tagName === 'SELECT' && !Array.from(e.options).some((o) => o.value === v)) e.append(el('option', { value: v, text: v }));
				e.value = v;
			}
		}
		loadRequests(false);
		$('#panel-requests').scrollIntoView({ block: 'start' });
	}

	/* The attempts timeline of one request. */
	async function openRequest(r) {
		let d;
		try {
			d = await api('GET', `/requests/${encodeURIComponent(r.request_id)}?seq=${r.seq}`);
		} catch (e) {
			toast(e.status === 404 ? 'That request has left the log (it keeps the most recent ones).' : 'Could not load the request: ' + e.message);
			return;
		}
		$('#request-dialog-id').textContent = d.request_id;
		const tok = d.total_tokens === null ? 'not reported'
			: `${fmtInt(d.total_tokens)} (prompt ${fmtInt(d.prompt_tokens)}, completion ${fmtInt(d.completion_tokens)})`;
		const facts = [
			['Finished', `${fmtTime(d.finished_at)} (${d.finished_at})`],
			['Client', d.client || '–'],
			['Model', d.model || '–'],
			['Provider', d.provider ? `${d.provider} (${d.pool})` : 'none'],
			['Status', reqStatusText(d)],
			['Waited in queue', fmtMs(d.queue_ms)],
			['First byte', d.ttfb_ms === null ? '–' : d.ttfb_ms === 0 ? '<1 ms' : fmtMs(d.ttfb_ms)],
			['Total', d.latency_ms === 0 ? '<1 ms' : fmtMs(d.latency_ms)],
			['Tokens', tok],
			['Cost', fmtCost(d.cost)],
			['Streamed', d.streamed ? 'yes' : 'no'],
			['Client disconnected', d.client_disconnected ? 'yes' : 'no'],
		];
		if (d.same_id > 1) facts.push(['Note', `${d.same_id} logged requests carry this id (the client reused it)`]);
		$('#request-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
		const atts = d.attempt_list || [];
		const span = Math.max(1, d.latency_ms, ...atts.map((a) => a.start_ms + a.duration_ms));
		const tl = $('#request-timeline');
		tl.replaceChildren();
		if (atts.length === 0)
			tl.append(el('div', { class: 'muted', text: d.queue_ms > 0 ? `No attempt: waited ${fmtMs(d.queue_ms)} in the queue.` : 'No attempt went upstream.' }));
		for (const a of atts) {
			const left = (a.start_ms / span) * 100, width = Math.max(0.5, (a.duration_ms / span) * 100);
			tl.append(el('div', { class: 'tl-row', 'data-attempt': a.n },
				el('span', { text: `${a.n}. ${a.provider || a.provider_id}` }),
				el('div', { class: 'tl-track' }, el('div', { class: 'tl-bar o-' + a.outcome, style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%`,
					title: `${a.outcome}${a.status ? ' (HTTP ' + a.status + ')' : ''}: +${a.start_ms} ms, ${a.duration_ms} ms` }))));
		}
		const body = $('#request-attempts-body');
		body.replaceChildren(...atts.map((a) => el('tr', { 'data-attempt': a.n },
			el('td', { text: String(a.n) }),
			el('td', { text: a.provider || a.provider_id }),
			el('td', { text: a.pool }),
			el('td', { text: a.status ? String(a.status) : 'none' }),
			el('td', { class: 'outcome', text: a.outcome }),
			el('td', { class: 'num', text: `+${fmtInt(a.start_ms)} ms` }),
			el('td', { class: 'num', text: `${fmtInt(a.duration_ms)} ms` }))));
		if (atts.length === 0) body.append(el('tr', { class: 'empty' }, el('td', { colspan: 7, text: 'None.' })));
		const dlg = $('#request-dialog');
		if (!dlg.open) dlg.showModal();
	}

	/* ---------- providers: list and management ---------- */

	async function loadProviders() {
		try {
			const r = await api('GET', '/providers');
			S.providers = (r && r.providers) || (Array.isArray(r) ? r : []);
		} catch (e) {
			if (e.status !== 401) showMsg($('#providers-msg'), 'Could not load providers: ' + e.message, true);
			return;
		}
		renderProviders();
		renderHealth();
		fillProviderFilter();
	}

	function openProviderDialog(p) {
		const dlg = $('#provider-dialog');
		const f = $('#provider-form');
		f.reset();
		for (const i of $$('input, select', f)) i.classList.remove('field-error');
		showMsg($('#provider-error'), '', true);
		const edit = !!p;
		f.elements.id.value = edit ? p.id : '';
		$('#provider-dialog-title').textContent = edit ? `Edit ${p.name}` : 'Add provider';
		$('#provider-submit').textContent = edit ? 'Save' : 'Add';
		for (const n of $$('[data-edit-only]', f)) n.hidden = !edit;
		if (edit) {
			for (const k of ['name', 'pool', 'endpoint_url', 'model_prefix', 'rpm_limit', 'tpm_limit', 'weight', 'cost_per_1k'])
				if (p[k] !== undefined && p[k] !== null) f.elements[k].value = p[k];
			const md = p.metadata || {};
			f.elements.notes.value = md.notes || '';
			f.elements.flatten_content.checked = !!md.flatten_content;
			f.elements.max_tokens_field.checked = !!md.max_tokens_field;
			f.elements.stream_usage.checked = md.stream_usage !== false;
			const ml = p.model_rpm_limits || md.model_rpm_limits || {};
			f.elements.model_rpm_limits.value = Object.keys(ml).length ? JSON.stringify(ml) : '';
			$('#key-mask').textContent = p.api_key_mask || '****';
			f.elements.api_key.required = false;
		} else {
			f.elements.api_key.required = true;
		}
		dlg.showModal();
		f.elements.name.focus();
	}

	/* Build the JSON body; for an edit only the fields that changed. */
	function providerBody(f, orig) {
		const b = {};
		const str = (k) => f.elements[k].value.trim();
		const num = (k) => f.elements[k].value === '' ? undefined : Number(f.elements[k].value);
		const vals = {
			name: str('name'), pool: f.elements.pool.value, endpoint_url: str('endpoint_url'),
			model_prefix: str('model_prefix'), rpm_limit: num('rpm_limit'), tpm_limit: num('tpm_limit'),
			weight: num('weight'), cost_per_1k: num('cost_per_1k'),
		};
		for (const [k, v] of Object.entries(vals)) {
			if (v === undefined) continue;
			if (!orig || orig[k] !== v) b[k] = v;
		}
		const md = (orig && orig.metadata) || {};
		const notes = f.elements.notes.value.trim();
		if (!orig ? notes !== '' : notes !== (md.notes || '')) b.notes = notes;
		for (const k of ['flatten_content', 'max_tokens_field']) {
			const v = f.elements[k].checked;
			if (!orig ? v : v !== !!md[k]) b[k] = v;
		}
		const su = f.elements.stream_usage.checked;
		if (!orig ? !su : su !== (md.stream_usage !== false)) b.stream_usage = su;
		const mlText = f.elements.model_rpm_limits.value.trim();
		const ml = mlText === '' ? {} : JSON.parse(mlText);	/* clientCheck parsed it already */
		const origMl = (orig && (orig.model_rpm_limits || md.model_rpm_limits)) || {};
		if (JSON.stringify(ml) !== JSON.stringify(origMl)) b.model_rpm_limits = Object.keys(ml).length ? ml : null;
		const key = f.elements.api_key.value.trim();
		if (key) b.api_key = key;
		if (!orig) b.source = 'webui';
		return b;
	}

	function clientCheck(f, edit) {
		const need = ['name', 'endpoint_url', 'model_prefix'];
		if (!edit) need.push('api_key');
		for (const k of need) {
			if (!f.elements[k].value.trim()) return { field: k, message: `${k.replace('_', ' ')} is required` };
		}
		if (!/^https?:\/\//.test(f.elements.endpoint_url.value.trim()))
			return { field: 'endpoint_url', message: 'endpoint URL must start with http:// or https://' };
		const ml = f.elements.model_rpm_limits.value.trim();
		if (ml !== '') {
			let o = null;
			try { o = JSON.parse(ml); } catch { o = null; }
			if (o === null || typeof o !== 'object' || Array.isArray(o) ||
			    !Object.values(o).every((v) => Number.isInteger(v) && v >= 1 && v <= 100000))
				return { field: 'model_rpm_limits', message: 'per-model limits: a JSON object of "model": requests per window (1 to 100000)' };
		}
		return null;
	}

	function validationText(v) {
		if (!v) return '';
		const parts = [v.message || v.result];
		if (v.http_status && !String(parts[0]).includes(String(v.http_status))) parts.push(`(upstream answered ${v.http_status})`);
		return parts.filter(Boolean).join(' ');
	}

	async function submitProvider(ev) {
		ev.preventDefault();
		const f = $('#provider-form');
		const errBox = $('#provider-error');
		const id = f.elements.id.value;
		const orig = id ? S.providers.find((p) => p.id === id) : null;
		for (const i of $$('input, select', f)) i.classList.remove('field-error');
		const bad = clientCheck(f, !!id);
		if (bad) {
			showMsg(errBox, bad.message, true);
			if (f.elements[bad.field]) f.elements[bad.field].classList.add('field-error');
			return;
		}
		const body = providerBody(f, orig);
		const q = f.elements.skip_validation.checked ? '?validate=false' : '';
		const btn = $('#provider-submit');
		btn.disabled = true;
		showMsg(errBox, id ? '' : 'Checking the key with a test call…', false);
		errBox.classList.remove('error');
		try {
			const r = id ? await api('PATCH', `/providers/${encodeURIComponent(id)}${q}`, body)
				: await api('POST', `/providers${q}`, body);
			$('#provider-dialog').close();
			const v = r && r.validation;
			showMsg($('#providers-msg'), `${id ? 'Saved' : 'Added'} ${r.name || body.name}.` + (v ? ` Key check: ${validationText(v)}.` : ''), false);
			await loadProviders();
		} catch (e) {
			const v = e.body && e.body.error && e.body.error.validation;
			const msg = v ? `Key refused: ${validationText(v)}` : e.message;
			showMsg(errBox, msg, true);
			const field = e.field || (v ? 'api_key' : null);
			if (field && f.elements[field]) f.elements[field].classList.add('field-error');
		} finally {
			btn.disabled = false;
		}
	}

	async function setStatus(p, status) {
		try {
			await api('PATCH', `/providers/${encodeURIComponent(p.id)}?validate=false`, { status });
			showMsg($('#providers-msg'), `${p.name} ${status === 'disabled' ? 'disabled' : 'enabled'}.`, false);
			await loadProviders();
		} catch (e) {
			showMsg($('#providers-msg'), `Could not change ${p.name}: ${e.message}`, true);
		}
	}

	async function resetCooldown(p) {
		try {
			await api('POST', `/providers/${encodeURIComponent(p.id)}/reset-cooldown`, {});
			S.cooldownEnds.delete(p.id);
			showMsg($('#providers-msg'), `Cooldown of ${p.name} reset.`, false);
			await loadProviders();
		} catch (e) {
			showMsg($('#providers-msg'), `Could not reset ${p.name}: ${e.message}`, true);
		}
	}

	function confirmDialog(title, text, okLabel) {
		const dlg = $('#confirm-dialog');
		$('#confirm-title').textContent = title;
		$('#confirm-text').textContent = text;
		$('#confirm-ok').textContent = okLabel || 'OK';
		return new Promise((resolve) => {
			dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
			dlg.returnValue = 'cancel';
			dlg.showModal();
		});
	}

	async function deleteProvider(p) {
		const ok = await confirmDialog(`Delete ${p.name}?`,
			`The provider ${p.name} (${p.api_key_mask || 'key'}) and its statistics will be removed. This cannot be undone.`, 'Delete');
		if (!ok) return;
		try {
			await api('DELETE', `/providers/${encodeURIComponent(p.id)}`);
			showMsg($('#providers-msg'), `${p.name} deleted.`, false);
			await loadProviders();
		} catch (e) {
			showMsg($('#providers-msg'), `Could not delete ${p.name}: ${e.message}`, true);
		}
	}

	function openImportDialog() {
		$('#import-form').reset();
		showMsg($('#import-error'), '', true);
		$('#import-dialog').showModal();
	}

	async function importYaml(ev) {
		ev.preventDefault();
		const file = $('#import-file').files[0];
		const validate = $('#import-validate').checked;
		const errBox = $('#import-error');
		const btn = $('#import-submit');
		if (!file) { showMsg(errBox, 'Choose a YAML file.', true); return; }
		if (file.size > 4 * 1024 * 1024) { showMsg(errBox, 'That file is larger than 4 MB.', true); return; }
		const text = await file.text();
		btn.disabled = true;
		showMsg(errBox, validate ? 'Checking keys and importing…' : 'Importing…', false);
		errBox.classList.remove('error');
		try {
			const r = await api('POST', `/providers/import${validate ? '' : '?validate=false'}`, text, { contentType: 'application/yaml' });
			$('#import-dialog').close();
			showMsg($('#providers-msg'), `Imported ${file.name}: ${r.created || 0} created, ${r.updated || 0} updated, ${r.unchanged || 0} unchanged.`, false);
			await loadProviders();
		} catch (e) {
			let t = e.message;
			const err = e.body && e.body.error;
			if (err && err.line && !t.includes(`line ${err.line}`)) t += ` (line ${err.line})`;
			if (err && Array.isArray(err.entries)) {
				const badOnes = err.entries.filter((x) => x.validation && !x.validation.ok).map((x) => `${x.name}: ${validationText(x.validation)}`);
				if (badOnes.length) t += ' — ' + badOnes.slice(0, 5).join('; ');
			}
			showMsg(errBox, 'Import failed: ' + t, true);
		} finally {
			btn.disabled = false;
		}
	}

	/* ---------- settings ---------- */

	function normaliseSettings(r) {
		let rows = Array.isArray(r) ? r : (r && (r.settings || r.config || r.items)) || r;
		if (rows && !Array.isArray(rows) && typeof rows === 'object')
			rows = Object.entries(rows).map(([key, v]) => (typeof v === 'object' && v !== null ? { key, ...v } : { key, value: v }));
		return (rows || []).filter((s) => s && s.key);
	}

	/* One typed value: "changed" while it differs from the stored one. */
	function settingEdited(input) {
		input.parentElement.classList.toggle('changed', input.value !== input.dataset.stored);
		input.parentElement.classList.remove('invalid');
		$('#settings-save').disabled = !$('#settings-form').querySelector('.changed');
	}

	/* Show stored settings. An input typed into after edit stamp `since`
	 * keeps what the operator typed (only its stored value moves), and the
	 * inputs are updated in place so focus and caret survive. */
	function renderSettings(rows, since) {
		const form = $('#settings-form');
		const old = new Map($$('input', form).map((i) => [i.name, i]));
		const typed = (i) => i !== undefined && Number(i.dataset.edit || 0) > since;
		const same = old.size === rows.length && rows.every((s) => old.has(s.key));
		if (!same) form.replaceChildren();
		for (const s of rows) {
			const range = s.type === 'string' ? '' : s.min !== undefined && s.max !== undefined ? ` (${s.min}–${s.max})` : '';
			let input = old.get(s.key);
			const keep = typed(input) ? input.value : null;
			if (!same) {
				const id = 'set-' + s.key;
				input = el('input', { id, name: s.key, inputmode: s.type === 'string' ? 'text' : 'decimal', spellcheck: 'false' });
				input.addEventListener('input', () => {
					input.dataset.edit = String(++S.settingsEdits);
					settingEdited(input);
				});
				form.append(el('div', { class: 'setting', 'data-key': s.key, 'data-type': s.type || '' },
					el('label', { for: id, text: s.key }), input, el('small')));
			}
			$('small', input.parentElement).textContent = (s.description || '') + range;
			input.dataset.stored = String(s.value);
			if (keep !== null) {
				input.value = keep;
				input.dataset.edit = String(S.settingsEdits);
			} else {
				input.value = String(s.value);
				delete input.dataset.edit;
				input.parentElement.classList.remove('invalid');
			}
			input.parentElement.classList.toggle('changed', input.value !== input.dataset.stored);
		}
		$('#settings-save').disabled = !form.querySelector('.changed');
	}

	/* Fetch and show the settings. Not forced (a provider event): nothing is
	 * touched while an edit is in progress. Forced (start, after a save):
	 * edits up to stamp `since` are replaced, anything typed after it is
	 * kept. An answer older than the one shown is dropped, so a slow load
	 * started earlier never lands over a newer form. */
	async function loadSettings(force, since = S.settingsEdits) {
		const form = $('#settings-form');
		if (!force && form.querySelector('.changed')) return;	/* do not clobber edits in progress */
		const seq = ++S.settingsLoads;
		let r;
		try { r = await api('GET', '/config'); } catch (e) {
			if (e.status !== 401) showMsg($('#settings-msg'), 'Settings unavailable: ' + e.message, true);
			return;
		}
		if (seq < S.settingsShown) return;			/* a newer answer is shown */
		if (!force && form.querySelector('.changed')) return;	/* edited while we fetched */
		S.settingsShown = seq;
		S.settings = normaliseSettings(r);
		renderRequests();	/* its note says how many requests the log keeps */
		renderSettings(S.settings, since);
	}

	async function saveSettings() {
		const form = $('#settings-form');
		const changed = {};
		const since = S.settingsEdits;	/* what is typed after this is not part of the save */
		for (const d of $$('.setting.changed', form)) {
			const v = $('input', d).value.trim();
			/* The API wants numbers; anything else goes as text so its error names the field. */
			changed[d.dataset.key] = d.dataset.type !== 'string' && v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
		}
		if (Object.keys(changed).length === 0) return;
		try {
			await api('PATCH', '/config', changed);
			/* Refresh the form first: "Saved" then means the form shows the
			 * stored values, and nothing typed after it is overwritten. */
			await loadSettings(true, since);
			showMsg($('#settings-msg'), `Saved ${Object.keys(changed).join(', ')}. The data plane applies them within 2 s.`, false);
		} catch (e) {
			showMsg($('#settings-msg'), 'Not saved: ' + e.message, true);
			if (e.field) {
				const d = form.querySelector(`.setting[data-key="${CSS.escape(e.field)}"]`);
				if (d) d.classList.add('invalid');
			}
		}
	}

	/* ---------- start ---------- */

	function start() {
		$('#login-view').hidden = true;
		$('#app-view').hidden = false;
		$('#logout').hidden = false;
		$('#topbar-status').hidden = false;
		ensureCharts();
		connect();
		loadProviders();
		loadCooldowns();
		loadUsage();
		loadSettings(true);
		loadHourly();
		if (location.hash.startsWith('#requests')) applyHash(); else loadRequests(false);
		clearInterval(S.historyTimer);
		/* Statistics are flushed every second but read here every 15 s: enough
		 * for day/week totals; the live parts come from the stream. */
		S.historyTimer = setInterval(() => {
			if (document.hidden) return;
			loadUsage();
			if (S.range === '24h') loadHourly();
		}, 15000);
	}

	async function boot() {
		$('#login-form').addEventListener('submit', login);
		$('#logout').addEventListener('click', logout);
		$('#btn-add').addEventListener('click', () => openProviderDialog(null));
		$('#provider-form').addEventListener('submit', submitProvider);
		for (const b of $$('[data-close]')) b.addEventListener('click', () => b.closest('dialog').close());
		$('#btn-import').addEventListener('click', openImportDialog);
		$('#import-form').addEventListener('submit', importYaml);
		for (const b of $$('[data-range]')) b.addEventListener('click', () => setRange(b.dataset.range));
		for (const b of $$('[data-period]')) b.addEventListener('click', () => setPeriod(b.dataset.period));
		$('#settings-save').addEventListener('click', saveSettings);
		reqForm().addEventListener('change', () => loadRequests(false));
		reqForm().addEventListener('submit', (ev) => { ev.preventDefault(); loadRequests(false); });
		$('#requests-clear').addEventListener('click', clearRequestFilters);
		$('#requests-more').addEventListener('click', () => loadRequests(true));
		window.addEventListener('hashchange', applyHash);
		setInterval(tick, 1000);
		/* Already logged in (cookie still valid)? */
		try {
			const r = await api('GET', '/session', null, { noLogout: true });
			if (r && r.csrf) { S.csrf = r.csrf; sessionStorage.setItem('sc_csrf', S.csrf); }
			start();
		} catch (e) {
			loggedOut('');
		}
	}

	if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
	else boot();
})();
