-- Calls, tracks (wrapped data keys and frame counts), redacted utterances, per-org settings.
-- Timestamps are UTC ISO 8601 text with milliseconds and `Z`, so text order is time order.

CREATE TABLE calls (
    call_id     TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL DEFAULT 'active',
    end_reason  TEXT,
    fixture     TEXT,
    escalated   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_org_ended ON calls (org_id, ended_at);
CREATE INDEX calls_started ON calls (started_at, call_id);

CREATE TABLE tracks (
    call_id          TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    track            INTEGER NOT NULL,
    suite            INTEGER NOT NULL,
    kid              TEXT NOT NULL,      -- decimal: SFrame KIDs go up to 2^64 - 1
    kek_id           TEXT NOT NULL,
    kek_version      INTEGER NOT NULL,
    wrapped_key      BLOB,               -- NULL once destroyed (crypto-shredded)
    key_destroyed_at TEXT,
    frames_received  INTEGER NOT NULL DEFAULT 0,
    frames_sealed    INTEGER NOT NULL DEFAULT 0,
    frames_lost      INTEGER NOT NULL DEFAULT 0,
    duration_s       REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, track)
);

CREATE TABLE utterances (
    call_id      TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    track        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    start_s      REAL NOT NULL,
    end_s        REAL NOT NULL,
    text         TEXT NOT NULL,          -- already redacted
    committed_at TEXT NOT NULL,
    redactions   TEXT NOT NULL DEFAULT '{}',  -- JSON object: placeholder -> count
    PRIMARY KEY (call_id, track, seq)
);

CREATE TABLE org_settings (
    org_id            TEXT PRIMARY KEY,
    phi_protection    INTEGER NOT NULL DEFAULT 1,
    e2ee_required     INTEGER NOT NULL DEFAULT 0,
    recording_enabled INTEGER NOT NULL DEFAULT 1,
    retention_days    INTEGER,          -- NULL: keep until deleted by hand
    updated_at        TEXT NOT NULL
);
