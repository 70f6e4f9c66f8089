-- Migration 4: upgrades a version-3 database to version 4.
-- Runs inside db_migrate's single write transaction (no BEGIN/COMMIT here);
-- sql/schema.sql contains the same tables for new databases, and
-- tests/unit/test_backup.c checks that both give the same structure.
--
-- Issue 20: what the statistics writer pays per request. Two things in
-- migration 003's request log cost more than the rows themselves:
--   - SQLite 3.40 builds an ephemeral table for every row it checks against
--     CHECK (pool IN ('main', 'fallback', 'emergency')) (three or more
--     constants); the same check written as comparisons costs a few
--     instructions. Same rule, same values accepted.
--   - ON DELETE CASCADE runs a sub-program, with its own ephemeral table,
--     for every row the ring deletes. The writer now deletes the attempts
--     of the pruned rows itself, by one range over their key, before the
--     rows (dataplane/reqlog.c); the foreign key stays, so a row still
--     cannot be deleted while it has attempts, nor an attempt point nowhere.
-- Nothing else changes: the same columns, defaults, keys and index, every
-- row copied, and seq's AUTOINCREMENT counter carried over (it only grows,
-- also when the log is empty).

CREATE TABLE request_log_v4 (
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
-- The counter first: it is what AUTOINCREMENT continues from.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'request_log_v4', seq FROM sqlite_sequence WHERE name = 'request_log';
INSERT INTO request_log_v4 SELECT * FROM request_log;

CREATE TABLE request_attempts_v4 (
    seq            INTEGER NOT NULL REFERENCES request_log_v4 (seq),  -- deleted by the writer before its row
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
INSERT INTO request_attempts_v4 SELECT * FROM request_attempts;

DROP TABLE request_attempts;
DROP TABLE request_log;
-- RENAME carries the sqlite_sequence row and the foreign key's target along.
ALTER TABLE request_log_v4 RENAME TO request_log;
ALTER TABLE request_attempts_v4 RENAME TO request_attempts;
CREATE INDEX request_log_rid ON request_log (request_id);

INSERT INTO schema_migrations (version, applied_at, description) VALUES
 (4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'upgraded from 3: request log checks without IN lists, attempts pruned by the writer');
