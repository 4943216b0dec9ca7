-- A project store as Conveyor made it before Alembic (hand-written schema version 4), with
-- a few rows: tests/test_store_server.py opens it and expects it stamped and upgraded.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, project TEXT, status TEXT NOT NULL, created_at REAL NOT NULL,
    finished_at REAL, duration REAL, pid INTEGER, host TEXT, invocation TEXT, command TEXT,
    overrides TEXT, config TEXT, config_hash TEXT, git_commit TEXT, git_dirty INTEGER,
    packages TEXT, error TEXT, exit_code INTEGER, plugins TEXT);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
CREATE INDEX IF NOT EXISTS runs_invocation ON runs(invocation);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER, type TEXT, type_version TEXT,
    status TEXT NOT NULL, fingerprint TEXT, cached INTEGER DEFAULT 0, reason TEXT,
    started_at REAL, duration REAL, settings TEXT, upstream TEXT, files TEXT, outputs TEXT,
    error TEXT, PRIMARY KEY (run_id, name));
CREATE INDEX IF NOT EXISTS stages_fingerprint ON stages(fingerprint, status);
CREATE INDEX IF NOT EXISTS stages_name ON stages(name, status, started_at);
CREATE TABLE IF NOT EXISTS params (run_id TEXT, key TEXT, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, stage TEXT, key TEXT, value REAL, PRIMARY KEY (run_id, stage, key));
CREATE TABLE IF NOT EXISTS artifacts (
    sha256 TEXT PRIMARY KEY, size INTEGER, codec TEXT, suffix TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id TEXT, stage TEXT, name TEXT, sha256 TEXT, PRIMARY KEY (run_id, stage, name));
CREATE TABLE IF NOT EXISTS data_inputs (
    run_id TEXT, path TEXT, sha256 TEXT, size INTEGER, PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT);
CREATE TABLE IF NOT EXISTS model_versions (
    name TEXT, version INTEGER, run_id TEXT, stage TEXT, artifact TEXT, metrics TEXT,
    gate TEXT, decision TEXT, config_hash TEXT, data TEXT, created_at REAL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_contracts (
    name TEXT, version INTEGER, contract TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT, alias TEXT, version INTEGER, updated_at REAL, PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, alias TEXT, version INTEGER,
    previous INTEGER, action TEXT, actor TEXT, reason TEXT, forced INTEGER, at REAL);
INSERT INTO meta VALUES ('schema_version', '4');
INSERT INTO runs (id, project, status, created_at, finished_at, pid, host, plugins)
    VALUES ('20250101-120000-aaaa', 'old', 'completed', 1735732800.25, 1735732805.5, 4242, 'old-host', '{}');
INSERT INTO stages (run_id, name, position, status, fingerprint, cached, started_at)
    VALUES ('20250101-120000-aaaa', 'train', 0, 'completed', 'fp1', 0, 1735732801.0);
INSERT INTO metrics VALUES ('20250101-120000-aaaa', 'train', 'accuracy', 0.875);
INSERT INTO model_versions VALUES ('old', 1, '20250101-120000-aaaa', 'register', '{}', '{"accuracy": 0.875}',
    '{}', 'passed', 'h', '{}', 1735732805.0);
INSERT INTO aliases VALUES ('old', 'champion', 1, 1735732806.0);
INSERT INTO alias_history (name, alias, version, previous, action, actor, reason, forced, at)
    VALUES ('old', 'champion', 1, NULL, 'gate', 'ann', 'passed', 0, 1735732806.0);
