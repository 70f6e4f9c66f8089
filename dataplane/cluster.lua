-- The cluster admission script (docs/cluster.md): every data plane of a
-- cluster runs this one script, through EVALSHA (EVAL again on NOSCRIPT),
-- for every decision that must hold across hosts. It is compiled into the
-- data plane (dataplane/cluster_lua.c is generated from this file) and
-- driven directly by tests/blackbox/cluster_script.test.mjs.
--
-- One clock: redis.call('TIME'), so host clocks never matter. Keys (the
-- data plane passes them all in KEYS, P = "sc:<namespace>:", F = a key's
-- fingerprint, the hex SHA-256 of the API key, never the key):
--   P.."hosts"   sorted set, host name -> last heartbeat (ms)
--   P.."w:"..F   sorted set, the key's sliding window: member = a grant's
--                stable id ("host:sequence"), score = its start (ms)
--   P.."e:"..F   the same for the emergency channel's budget
--   P.."m:"..F..":"..M  the same for one model's window on the key
--                (model_rpm_limits; M = 16 hex digits of the SHA-256 of
--                the model's name as the upstream knows it)
--   P.."c:"..F   the shared cooldown, "n:started:length:until" (ms on TIME's
--                clock; the key expires a second after its end, PX, only to
--                clean up: the end is read from the value, so Redis's own
--                cached clock, which may lag TIME, never decides)
--   P.."n:"..F   hash {n, started}: the backoff count, kept past the cooldown
--   P.."i:"..F   the shared invalid mark (401/403): its reason
--
-- ARGV[1] is the operation:
--   ask     KEYS hosts, then w, e, c, i, m per candidate (m: the window of
--                the request's model on that key; untouched when it has none)
--           ARGV span_ms, member, pool ("main"|"emergency"), hosts_known,
--                stale_ms, member_ms, deadline, then per candidate: effective
--                limit, configured limit, budget, the model window's
--                effective and configured limits (0 0 = no model window;
--                effective limits are the asking host's learned ones,
--                docs/scheduling.md). An ask that runs after its deadline
--                (TIME ms, 0 = none: a paused Redis running what a dead
--                connection left behind) grants nothing and looks at nothing.
--           Grants the first candidate (the caller's preference order) that
--           is not invalid, not cooling (unless pool is emergency), has room
--           in its key window and, with a model window, in that one too,
--           records the grant in both, and says for every candidate it
--           looked at why it did not grant and when it frees.
--           A window's room is its effective limit minus the shares of the
--           cluster's hosts that are not live (they may be running on their
--           local share without Redis, at most floor(configured / hosts)).
--           Returns {granted (1-based, 0 none), now, hosts, live,
--                    then per candidate looked at: state (0 granted,
--                    1 key window (or emergency budget) full, 2 cooling,
--                    3 invalid, 4 only the model window full), wait_ms
--                    (when that frees), count, cooldown n, cooldown started,
--                    cooldown length, model count (-1 none or not looked
--                    at), model wait_ms (0 = the model window has room)}
--   replay  KEYS w, e, m per grant; ARGV span_ms, then score, member,
--           emergency (0|1), model (0|1) per grant: re-adds this host's own
--           recent grants (ZADD NX) to the key window and, flagged, to the
--           emergency and model windows after a reconnect or a failover.
--           Returns the number added to key windows.
--   cool    KEYS c, n; ARGV granted_ms (the failed attempt's grant, 0 =
--           unknown), base_ms, max_ms, retry_after_ms (-1 none), current
--           (1 = the host's episode rule says a new overload, 0 = only an
--           extension: sent before the host's last cooldown ended, or
--           during it on the emergency channel). A 429: a new backoff step
--           when current and the attempt was not granted before the
--           running cooldown began (the same overload, seen by another
--           host or in flight); else only a longer Retry-After extends the
--           running cooldown (or, with none running, starts one of that
--           length without a step).
--           Returns {escalated 0|1, n, remaining_ms, started, length, now}.
--   ok      KEYS n: a success resets the backoff count.
--   inv     KEYS i; ARGV reason: the key answered 401/403.
--   clear   KEYS c, n, i; ARGV what ("cooldown"|"all"): the operator reset
--           the cooldown or re-enabled the key.
--   beat    KEYS hosts, then w, c, i per key; ARGV host, span_ms, stale_ms,
--           member_ms, deadline: the heartbeat; one that runs after its
--           deadline does not count (the host may be running on its local
--           share by then, and must not look live to the others). Returns {now, hosts, live,
--           {name, age_ms, ...}, then per key: count, cooldown remaining
--           ms (0 none), n, started, length, invalid 0|1}, so every host
--           learns every shared cooldown within one heartbeat.

local function now_ms()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drop window entries at or before now - span: the window is (now - span, now].
local function trim(key, now, span)
	redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
	return redis.call('ZCARD', key)
end

-- When a window holding count entries has room for one more under limit.
local function frees_in(key, count, limit, now, span)
	if limit <= 0 then
		return span
	end
	local e = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
	if e[2] == nil then
		return 1
	end
	local w = tonumber(e[2]) + span - now
	if w < 1 then
		w = 1
	end
	return w
end

-- A running cooldown: n, started, length, remaining ms; all 0 when none.
local function cooldown_info(key, now)
	local v = redis.call('GET', key)
	if not v then
		return 0, 0, 0, 0
	end
	local n, started, len, ends = string.match(v, '^(%d+):(%d+):(%d+):(%d+)$')
	ends = tonumber(ends) or 0
	if ends <= now then
		return 0, 0, 0, 0
	end
	return tonumber(n) or 0, tonumber(started) or 0, tonumber(len) or 0, ends - now
end

local function cooldown_set(key, n, started, len, ends, now)
	redis.call('SET', key, n .. ':' .. started .. ':' .. len .. ':' .. ends, 'PX', ends - now + 1000)
end

local op = ARGV[1]

if op == 'ask' then
	local span, member, pool = tonumber(ARGV[2]), ARGV[3], ARGV[4]
	local known, stale, membership = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
	local deadline = tonumber(ARGV[8])
	local now = now_ms()
	local hosts = redis.call('ZCOUNT', KEYS[1], now - membership, '+inf')
	local live = redis.call('ZCOUNT', KEYS[1], now - stale, '+inf')
	if known > hosts then
		hosts = known
	end
	local absent = hosts - live
	if absent < 0 then
		absent = 0
	end
	local out = {0, now, hosts, live}
	local ncand = (#KEYS - 1) / 5
	if deadline > 0 and now > deadline then
		ncand = 0
	end
	-- The room of a window: its effective limit less the absent hosts' shares.
	local function room_of(limit, conf)
		if hosts > 0 then
			return limit - absent * math.floor(conf / hosts)
		end
		return limit
	end
	for i = 1, ncand do
		local w, e, c, inv, m = KEYS[5 * i - 3], KEYS[5 * i - 2], KEYS[5 * i - 1], KEYS[5 * i], KEYS[5 * i + 1]
		local a = 8 + 5 * (i - 1)
		local limit, conf, budget = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
		local mlimit, mconf = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
		local count = trim(w, now, span)
		local n, started, len, ttl = cooldown_info(c, now)
		local state, wait, mcount, mwait = 0, 0, -1, 0
		if redis.call('EXISTS', inv) == 1 then
			state = 3
		else
			if pool ~= 'emergency' and ttl > 0 then
				state, wait = 2, ttl
			else
				local room = room_of(limit, conf)
				if mlimit > 0 then
					mcount = trim(m, now, span)
					local mroom = room_of(mlimit, mconf)
					if mcount >= mroom then
						mwait = frees_in(m, mcount, mroom, now, span)
					end
				end
				if count >= room then
					state, wait = 1, frees_in(w, count, room, now, span)
				elseif mwait > 0 then
					state, wait = 4, mwait
				elseif pool == 'emergency' then
					local ecount = trim(e, now, span)
					if ecount >= budget then
						state, wait = 1, frees_in(e, ecount, budget, now, span)
					end
				end
			end
		end
		if state == 0 then
			redis.call('ZADD', w, now, member)
			redis.call('PEXPIRE', w, span + 1000)
			if pool == 'emergency' then
				redis.call('ZADD', e, now, member)
				redis.call('PEXPIRE', e, span + 1000)
			end
			if mlimit > 0 then
				redis.call('ZADD', m, now, member)
				redis.call('PEXPIRE', m, span + 1000)
				mcount = mcount + 1
			end
			count = count + 1
			out[1] = i
		end
		table.insert(out, state)
		table.insert(out, wait)
		table.insert(out, count)
		table.insert(out, n)
		table.insert(out, started)
		table.insert(out, len)
		table.insert(out, mcount)
		table.insert(out, mwait)
		if state == 0 then
			break
		end
	end
	return out
elseif op == 'replay' then
	local span = tonumber(ARGV[2])
	local now = now_ms()
	local added = 0
	for i = 1, #KEYS / 3 do
		local score, member = tonumber(ARGV[4 * i - 1]), ARGV[4 * i]
		local em, mo = ARGV[4 * i + 1], ARGV[4 * i + 2]
		if score > now - span then
			added = added + redis.call('ZADD', KEYS[3 * i - 2], 'NX', score, member)
			redis.call('PEXPIRE', KEYS[3 * i - 2], span + 1000)
			if em == '1' then
				redis.call('ZADD', KEYS[3 * i - 1], 'NX', score, member)
				redis.call('PEXPIRE', KEYS[3 * i - 1], span + 1000)
			end
			if mo == '1' then
				redis.call('ZADD', KEYS[3 * i], 'NX', score, member)
				redis.call('PEXPIRE', KEYS[3 * i], span + 1000)
			end
		end
	end
	return added
elseif op == 'cool' then
	local granted, base, max, ra = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
	local current = ARGV[6] ~= '0'
	local now = now_ms()
	local st = redis.call('HMGET', KEYS[2], 'n', 'started')
	local n0, started0 = tonumber(st[1]) or 0, tonumber(st[2]) or 0
	local cn, cstarted, clen, ttl = cooldown_info(KEYS[1], now)
	if ttl == 0 and not current then
		-- Old news with no cooldown running: a Retry-After still holds the key.
		if ra > 0 then
			cooldown_set(KEYS[1], n0, now, ra, now + ra, now)
			return {0, n0, ra, now, ra, now}
		end
		return {0, n0, 0, 0, 0, now}
	end
	if ttl > 0 and (granted < started0 or not current) then
		-- The same overload: another host or an earlier attempt already counted it.
		-- (The episode keeps its step even if a success reset the count since.)
		if ra > 0 and ra > ttl then
			clen = clen + (ra - ttl)
			ttl = ra
			cooldown_set(KEYS[1], cn, cstarted, clen, now + ttl, now)
		end
		return {0, cn, ttl, cstarted, clen, now}
	end
	local n = n0 + 1
	local len = base
	for _ = 2, n do
		if len >= max then
			break
		end
		len = len * 2
	end
	if len > max then
		len = max
	end
	if ra > len then
		len = ra
	end
	cooldown_set(KEYS[1], n, now, len, now + len, now)
	redis.call('HSET', KEYS[2], 'n', n, 'started', now)
	redis.call('PEXPIRE', KEYS[2], 86400000)
	return {1, n, len, now, len, now}
elseif op == 'ok' then
	if redis.call('HEXISTS', KEYS[1], 'n') == 1 then
		redis.call('HSET', KEYS[1], 'n', 0)
	end
	return 0
elseif op == 'inv' then
	redis.call('SET', KEYS[1], ARGV[2])
	return 0
elseif op == 'clear' then
	redis.call('DEL', KEYS[1], KEYS[2])
	if ARGV[2] == 'all' then
		redis.call('DEL', KEYS[3])
	end
	return 0
elseif op == 'beat' then
	local host, span, stale, membership = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
	local deadline = tonumber(ARGV[6])
	local now = now_ms()
	if deadline == 0 or now <= deadline then
		redis.call('ZADD', KEYS[1], now, host)
	end
	redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - membership)
	local list = {}
	local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
	for i = 1, #all, 2 do
		table.insert(list, all[i])
		table.insert(list, now - tonumber(all[i + 1]))
	end
	local out = {now, redis.call('ZCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[1], now - stale, '+inf'), list}
	for i = 1, (#KEYS - 1) / 3 do
		local w, c, inv = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
		local n, started, len, ttl = cooldown_info(c, now)
		table.insert(out, trim(w, now, span))
		table.insert(out, ttl)
		table.insert(out, n)
		table.insert(out, started)
		table.insert(out, len)
		table.insert(out, redis.call('EXISTS', inv))
	end
	return out
end
return redis.error_reply('unknown operation')
