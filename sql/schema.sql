-- Sidecar V2 database schema (the latest version, for new databases).
-- Existing databases are brought here by sql/migrations/NNN_*.sql; the schema
-- version lives in PRAGMA user_version; a new database gets the number of the newest migration (1 when there is none).
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SSZ'; hour buckets 'YYYY-MM-DDTHH'.

-- One row per provider key. api_key holds AES-256-GCM ciphertext only.
CREATE TABLE providers (
    id             TEXT PRIMARY KEY,                 -- random UUID, also the AEAD associated data
    name           TEXT NOT NULL UNIQUE,             -- operator's name (YAML: account)
    api_key        TEXT NOT NULL,                    -- 'v1:' || base64(iv | ciphertext | tag)
    api_key_mask   TEXT NOT NULL DEFAULT '',         -- display form, e.g. 'nvapi-WGop…aTDz'
    endpoint_url   TEXT NOT NULL,                    -- base URL, e.g. https://integrate.api.nvidia.com/v1
    model_prefix   TEXT NOT NULL,                    -- e.g. 'nvidia/'
    pool           TEXT NOT NULL DEFAULT 'main' CHECK (pool IN ('main', 'fallback')),
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'invalid')),
    status_reason  TEXT NOT NULL DEFAULT '',         -- why invalid/disabled (upstream answer, operator note)
    source         TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('yaml', 'api', 'webui', 'cli')),
    rpm_limit      INTEGER NOT NULL DEFAULT 40 CHECK (rpm_limit > 0),
    tpm_limit      INTEGER NOT NULL DEFAULT 0 CHECK (tpm_limit >= 0),   -- 0 = no token limit
    weight         REAL NOT NULL DEFAULT 1.0 CHECK (weight > 0),
    cost_per_1k    REAL NOT NULL DEFAULT 0 CHECK (cost_per_1k >= 0),
    cooldown_until TEXT,                             -- NULL = not cooling
    consecutive_429 INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_429 >= 0),
    metadata       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),  -- account, email, notes, compat options
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX providers_pool_status ON providers (pool, status);
CREATE INDEX providers_prefix ON providers (model_prefix);

-- Usage aggregated per provider, model and hour; written by UPSERT.
CREATE TABLE provider_usage_logs (
    id                TEXT PRIMARY KEY,              -- provider_id || '|' || model || '|' || hour_bucket
    provider_id       TEXT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    model             TEXT NOT NULL,                 -- as forwarded (prefix stripped)
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    cost              REAL NOT NULL DEFAULT 0,
    request_count     INTEGER NOT NULL DEFAULT 0,
    error_count       INTEGER NOT NULL DEFAULT 0,
    unknown_usage_count INTEGER NOT NULL DEFAULT 0,  -- requests whose token counts were never reported
    latency_sum_ms    INTEGER NOT NULL DEFAULT 0,    -- avg_latency_ms = latency_sum_ms / request_count
    avg_latency_ms    INTEGER NOT NULL DEFAULT 0,
    hour_bucket       TEXT NOT NULL,
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (provider_id, model, hour_bucket)
);
CREATE INDEX usage_hour ON provider_usage_logs (hour_bucket);
CREATE INDEX usage_model_hour ON provider_usage_logs (model, hour_bucket);

-- One row per cooldown a provider went through.
CREATE TABLE cooldown_events (
    id                TEXT PRIMARY KEY,
    provider_id       TEXT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    consecutive_count INTEGER NOT NULL CHECK (consecutive_count > 0),
    cooldown_seconds  INTEGER NOT NULL CHECK (cooldown_seconds >= 0),
    response_summary  TEXT NOT NULL DEFAULT '',      -- short, key-free summary of the upstream answer
    started_at        TEXT NOT NULL,
    ended_at          TEXT                           -- planned end; NULL while unknown
);
CREATE INDEX cooldown_events_started ON cooldown_events (started_at);
CREATE INDEX cooldown_events_provider ON cooldown_events (provider_id, started_at);

-- Latest health of each provider.
CREATE TABLE provider_health (
    provider_id          TEXT PRIMARY KEY REFERENCES providers (id) ON DELETE CASCADE,
    state                TEXT NOT NULL DEFAULT 'healthy' CHECK (state IN ('healthy', 'unhealthy', 'unknown')),
    last_latency_ms      INTEGER NOT NULL DEFAULT 0,
    last_status_code     INTEGER NOT NULL DEFAULT 0,
    success_rate_5m      REAL NOT NULL DEFAULT 1.0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT NOT NULL DEFAULT '',
    last_probe_at        TEXT,
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- Totals per day and pool; written by UPSERT.
CREATE TABLE daily_stats (
    id               TEXT PRIMARY KEY,               -- date || '|' || pool
    date             TEXT NOT NULL,                  -- YYYY-MM-DD (UTC)
    pool             TEXT NOT NULL CHECK (pool IN ('main', 'fallback', 'emergency')),
    total_requests   INTEGER NOT NULL DEFAULT 0,
    total_errors     INTEGER NOT NULL DEFAULT 0,
    total_tokens     INTEGER NOT NULL DEFAULT 0,
    total_cost       REAL NOT NULL DEFAULT 0,
    unique_providers INTEGER NOT NULL DEFAULT 0,
    UNIQUE (date, pool)
);

-- Every tunable with its default; programs re-read it when it changes.
CREATE TABLE system_config (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- Internal values that are not settings: the encryption key check value,
-- the config version counter bumped on every admin change.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('config_version', '1');

-- Client and admin bearer tokens, stored as SHA-256 hex only.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('admin', 'client')),
    hash       TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    revoked_at TEXT
);

-- Admin panel sessions (cookie value stored hashed).
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Live status snapshot the data plane publishes every status_publish_ms.
CREATE TABLE live_status (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    updated_at TEXT NOT NULL,
    snapshot   TEXT NOT NULL CHECK (json_valid(snapshot))
);

-- Outcome of each `sidecarctl backup`, read by the metrics.
CREATE TABLE backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    success     INTEGER NOT NULL CHECK (success IN (0, 1)),
    path        TEXT NOT NULL DEFAULT '',
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    -- Since version 2 (migration 002): column order matters, ALTER TABLE appends.
    kind        TEXT NOT NULL DEFAULT 'manual'
        CHECK (kind IN ('manual', 'scheduled', 'pre-migrate')),
    schema_version INTEGER NOT NULL DEFAULT 0        -- PRAGMA user_version of the copy
);

-- Since version 2: one row per schema upgrade (a new database gets one row
-- for the version it was created at); `sidecarctl migrate` sets backup_path.
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,             -- the version reached
    applied_at  TEXT NOT NULL,                   -- UTC 'YYYY-MM-DDTHH:MM:SSZ'
    description TEXT NOT NULL DEFAULT '',
    backup_path TEXT NOT NULL DEFAULT ''         -- backup taken just before, '' if none
);
-- Keep this row's version equal to the newest migration.
INSERT INTO schema_migrations (version, applied_at, description) VALUES
 (4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'new database');

-- Since version 2: per-provider history, and the sessions foreign key and sweep.
CREATE INDEX usage_provider_hour ON provider_usage_logs (provider_id, hour_bucket);
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Since version 3 (migration 003): the request log, a ring of the most recent
-- request_log_rows requests that the data plane's statistics writer fills and
-- prunes in its flush transaction (seq only grows: newest = highest). Since
-- version 4 (migration 004, issue 20) the pool checks are comparisons, not IN
-- lists (SQLite builds a table per row checked for those), and the writer
-- deletes a pruned row's attempts itself (no ON DELETE CASCADE).
CREATE TABLE request_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- grows by one per request, never reused; the cursor
    request_id     TEXT NOT NULL,                -- the X-Request-Id the client received
    finished_at    TEXT NOT NULL,                -- UTC 'YYYY-MM-DDTHH:MM:SSZ'
    finished_ms    INTEGER NOT NULL,             -- the same, Unix ms
    client         TEXT NOT NULL DEFAULT '',     -- client token label, '' without tokens
    model          TEXT NOT NULL DEFAULT '',     -- as the client asked for it
    provider_id    TEXT,                         -- the provider of the last attempt, NULL when none
    provider_name  TEXT NOT NULL DEFAULT '',
    pool           TEXT CHECK (pool IS NULL OR pool = 'main' OR pool = 'fallback' OR pool = 'emergency'),
    status         INTEGER NOT NULL,             -- sent to the client; 499 = the client went away
    error_code     TEXT NOT NULL DEFAULT '',     -- e.g. queue_timeout, upstream_error; '' on success
    attempts       INTEGER NOT NULL DEFAULT 0,   -- upstream attempts (rows in request_attempts)
    queue_ms       INTEGER NOT NULL DEFAULT 0,   -- time parked in the wait queue
    ttfb_ms        INTEGER NOT NULL DEFAULT -1,  -- arrival to the first body byte relayed, -1 none
    latency_ms     INTEGER NOT NULL DEFAULT 0,   -- arrival to end
    prompt_tokens     INTEGER NOT NULL DEFAULT -1,  -- -1 unknown
    completion_tokens INTEGER NOT NULL DEFAULT -1,
    total_tokens      INTEGER NOT NULL DEFAULT -1,
    cost           REAL NOT NULL DEFAULT 0,
    streamed       INTEGER NOT NULL DEFAULT 0 CHECK (streamed IN (0, 1)),
    client_disconnected INTEGER NOT NULL DEFAULT 0 CHECK (client_disconnected IN (0, 1))
);
CREATE INDEX request_log_rid ON request_log (request_id);

-- The upstream attempts of one request, in order.
CREATE TABLE request_attempts (
    seq            INTEGER NOT NULL REFERENCES request_log (seq),  -- deleted by the writer before its row
    n              INTEGER NOT NULL,             -- 1, 2, ...
    provider_id    TEXT NOT NULL,
    provider_name  TEXT NOT NULL DEFAULT '',
    pool           TEXT NOT NULL CHECK (pool = 'main' OR pool = 'fallback' OR pool = 'emergency'),
    status         INTEGER NOT NULL DEFAULT 0,   -- upstream HTTP status, 0 when none came
    outcome        TEXT NOT NULL,                -- ok, rate_limited, invalid_key, server_error, ...
    start_ms       INTEGER NOT NULL DEFAULT 0,   -- from the request's arrival
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, n)
) WITHOUT ROWID;

-- Bump the config version on any provider or setting change, so that running
-- programs notice within their poll interval without comparing whole tables.
CREATE TRIGGER providers_ins AFTER INSERT ON providers BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER providers_del AFTER DELETE ON providers BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER providers_upd AFTER UPDATE OF name, api_key, endpoint_url, model_prefix, pool, status,
    rpm_limit, tpm_limit, weight, cost_per_1k, metadata ON providers BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER config_upd AFTER UPDATE ON system_config BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER config_ins AFTER INSERT ON system_config BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;

-- The tunables of SPEC §5 and §6. Types and ranges are checked in common/config.c,
-- whose table must list exactly these keys (a unit test compares the two).
INSERT INTO system_config (key, value, description) VALUES
 ('rpm_window_seconds',            '60',       'Length of the sliding rate-limit window, seconds'),
 ('rpm_window_margin_ms',          '500',      'Safety margin added to the window so network jitter never lets the upstream count more than rpm_limit, ms'),
 ('queue_capacity',                '500',      'Requests that may wait for capacity at once; more are rejected with 503'),
 ('queue_timeout_seconds',         '30',       'Longest a request waits in the queue before a 503'),
 ('retry_after_seconds',           '30',       'Retry-After sent with queue rejections, seconds'),
 ('cooldown_base_seconds',         '30',       'First cooldown after a 429; doubles with each consecutive 429'),
 ('cooldown_max_seconds',          '600',      'Cap on the exponential cooldown (a longer upstream Retry-After still wins)'),
 ('max_attempts',                  '3',        'Upstream attempts per request, retries on other providers included'),
 ('recover_wait_seconds',          '10',       'Wait for a main-pool provider that recovers within this many seconds before using the fallback pool'),
 ('emergency_rpm_ratio',           '0.1',      'Share of rpm_limit the emergency channel may use while its provider is cooling'),
 ('learn_limits',                  '1',        '1: lower a key''s (or model''s) effective limit when the upstream answers 429 below rpm_limit, 0: never'),
 ('upstream_connect_timeout',      '10',       'Upstream connect timeout, seconds'),
 ('upstream_ttfb_timeout',         '120',      'Longest wait for the first response byte from upstream, seconds'),
 ('unhealthy_after_failures',      '3',        'Consecutive failures (5xx, connect error, first-byte timeout) that make a provider unhealthy'),
 ('health_probe_interval_seconds', '30',       'Interval between active probes of an unhealthy provider, seconds'),
 ('max_body_bytes',                '33554432', 'Largest request body accepted, bytes (413 beyond)'),
 ('header_timeout_seconds',        '10',       'Time a client has to send its request headers (408 beyond)'),
 ('max_connections',               '4096',     'Client connections held at once; more are refused cleanly'),
 ('max_pending_connections',       '1024',     'Connections sending a request without a valid client token held at once; beyond, or at max_connections, the oldest is closed'),
 ('body_timeout_seconds',          '10',       'Time a client has to send a request body, plus 1 s per body_min_rate_bytes received (408 beyond)'),
 ('body_min_rate_bytes',           '65536',    'Bytes per second a request body must average past body_timeout_seconds (0: no extension)'),
 ('max_body_memory_bytes',         '268435456','Memory all request bodies may hold together, bytes (a new body past it gets 503 with Retry-After)'),
 ('drain_timeout_seconds',         '30',       'On SIGTERM, how long in-flight requests may take to finish'),
 ('models_cache_seconds',          '300',      'How long upstream model lists are cached for GET /v1/models'),
 ('stats_flush_ms',                '1000',     'Interval between statistics flushes to the database, ms'),
 ('status_publish_ms',             '1000',     'Interval between live status snapshots for the dashboard, ms'),
 ('stats_retention_days',          '90',       'Usage rows older than this are pruned daily'),
 ('events_retention_days',         '30',       'Cooldown events older than this are pruned daily'),
 ('db_size_warn_bytes',            '104857600','Database size past which the metrics warn (practical limit 100 MB)'),
 ('request_log_rows',              '20000',    'Requests kept in the request log (the most recent ones); 0 turns the log off'),
 ('redis_url',                     '',         'Redis shared by several data planes, redis://[:password@]IP:port[/db]; empty = this host alone'),
 ('cluster_namespace',             'sidecar',  'Prefix of this cluster''s Redis keys, so two clusters can share one Redis'),
 ('cluster_host_name',             '',         'This data plane''s name in the cluster; empty = the host name'),
 ('cluster_reply_timeout_ms',      '500',      'A Redis reply later than this counts as Redis unreachable, ms');

