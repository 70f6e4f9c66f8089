-- Migration 3: upgrades a version-2 database to version 3.
-- Runs inside db_migrate's single write transaction (no BEGIN/COMMIT here);
-- sql/schema.sql contains the same changes for new databases, and
-- tests/unit/test_backup.c checks that both give the same structure.
--
-- The request log (docs/admin-api.md, GET /api/v2/requests): what happened to
-- each of the most recent request_log_rows requests, written by the data
-- plane's statistics writer in its flush transaction and pruned there to
-- exactly that many rows. seq only grows (AUTOINCREMENT never reuses one), so the
-- newest rows are the highest seq, the cursor of the list pages, and pruning
-- is one range delete. Never prompts, responses or keys: the client is its
-- token's label, the provider its id and name.

CREATE TABLE request_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- grows by one per request, never reused; the cursor
    request_id     TEXT NOT NULL,                -- the X-Request-Id the client received
    finished_at    TEXT NOT NULL,                -- UTC 'YYYY-MM-DDTHH:MM:SSZ'
    finished_ms    INTEGER NOT NULL,             -- the same, Unix ms
    client         TEXT NOT NULL DEFAULT '',     -- client token label, '' without tokens
    model          TEXT NOT NULL DEFAULT '',     -- as the client asked for it
    provider_id    TEXT,                         -- the provider of the last attempt, NULL when none
    provider_name  TEXT NOT NULL DEFAULT '',
    pool           TEXT CHECK (pool IS NULL OR pool IN ('main', 'fallback', 'emergency')),
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
    seq            INTEGER NOT NULL REFERENCES request_log (seq) ON DELETE CASCADE,
    n              INTEGER NOT NULL,             -- 1, 2, ...
    provider_id    TEXT NOT NULL,
    provider_name  TEXT NOT NULL DEFAULT '',
    pool           TEXT NOT NULL CHECK (pool IN ('main', 'fallback', 'emergency')),
    status         INTEGER NOT NULL DEFAULT 0,   -- upstream HTTP status, 0 when none came
    outcome        TEXT NOT NULL,                -- ok, rate_limited, invalid_key, server_error, ...
    start_ms       INTEGER NOT NULL DEFAULT 0,   -- from the request's arrival
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, n)
) WITHOUT ROWID;

INSERT OR IGNORE INTO system_config (key, value, description) VALUES
 ('request_log_rows', '20000', 'Requests kept in the request log (the most recent ones); 0 turns the log off');

INSERT INTO schema_migrations (version, applied_at, description) VALUES
 (3, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'upgraded from 2: request_log, request_attempts, request_log_rows');
