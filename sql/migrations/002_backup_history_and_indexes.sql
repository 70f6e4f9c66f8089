-- Migration 2: upgrades a version-1 database to version 2.
-- Runs inside db_migrate's single write transaction (no BEGIN/COMMIT here);
-- sql/schema.sql contains the same changes for new databases, and
-- tests/unit/test_backup.c checks that both give the same structure.
--
-- What version 1 lacked:
-- 1. The dashboard's per-provider history ("this key over the last 24 h")
--    filters provider_usage_logs on provider_id and a range of hour_bucket;
--    the UNIQUE (provider_id, model, hour_bucket) index only narrows it to the
--    provider and then scans every model's rows. (daily_stats needs no new
--    index: UNIQUE (date, pool) already serves date ranges.)
-- 2. sessions.token_id is a foreign key with ON DELETE CASCADE but had no
--    index, so revoking or deleting a token scanned every session; the
--    expired-session sweep filters on expires_at.
-- 3. Operators need to tell routine backups from the one taken before an
--    upgrade (the one to restore for a rollback) and to know the schema
--    version inside each backup: backups.kind and backups.schema_version.
-- 4. A record of when each schema upgrade ran and which backup precedes it:
--    table schema_migrations (sidecarctl migrate fills in backup_path).

CREATE INDEX usage_provider_hour ON provider_usage_logs (provider_id, hour_bucket);
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

ALTER TABLE backups ADD COLUMN kind TEXT NOT NULL DEFAULT 'manual'
    CHECK (kind IN ('manual', 'scheduled', 'pre-migrate'));
ALTER TABLE backups ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,             -- the version reached
    applied_at  TEXT NOT NULL,                   -- UTC 'YYYY-MM-DDTHH:MM:SSZ'
    description TEXT NOT NULL DEFAULT '',
    backup_path TEXT NOT NULL DEFAULT ''         -- backup taken just before, '' if none
);
INSERT INTO schema_migrations (version, applied_at, description) VALUES
 (2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
  'upgraded from 1: usage/sessions indexes, backups.kind and schema_version, schema_migrations');
