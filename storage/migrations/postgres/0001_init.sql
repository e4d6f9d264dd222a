-- Calls, tracks (wrapped data keys and frame counts), sealed utterances, per-org settings.
-- Same shape as the embedded schema. Text columns that are compared or ordered use COLLATE "C" (byte
-- order, as SQLite does), and timestamps are UTC ISO 8601 text with milliseconds and `Z`, so text order is
-- time order on every server whatever its locale.

CREATE TABLE calls (
    call_id     TEXT COLLATE "C" PRIMARY KEY,
    org_id      TEXT COLLATE "C" NOT NULL,
    source      TEXT NOT NULL,
    started_at  TEXT COLLATE "C" NOT NULL,
    ended_at    TEXT COLLATE "C",
    status      TEXT NOT NULL DEFAULT 'active',
    end_reason  TEXT,
    fixture     TEXT,
    escalated   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX calls_org_ended ON calls (org_id, ended_at);
CREATE INDEX calls_started ON calls (started_at, call_id);

CREATE TABLE tracks (
    call_id          TEXT COLLATE "C" NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    track            INTEGER NOT NULL,
    suite            INTEGER NOT NULL,
    kid              NUMERIC(20, 0) NOT NULL,  -- SFrame KIDs go up to 2^64 - 1
    kek_id           TEXT NOT NULL,
    kek_version      INTEGER NOT NULL,
    wrapped_key      BYTEA,                    -- NULL once destroyed (crypto-shredded)
    key_destroyed_at TEXT,
    frames_received  BIGINT NOT NULL DEFAULT 0,
    frames_sealed    BIGINT NOT NULL DEFAULT 0,
    frames_lost      BIGINT NOT NULL DEFAULT 0,
    duration_s       DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, track)
);

CREATE TABLE utterances (
    call_id      TEXT COLLATE "C" NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    track        INTEGER NOT NULL,
    seq          BIGINT NOT NULL,
    start_s      DOUBLE PRECISION NOT NULL,
    end_s        DOUBLE PRECISION NOT NULL,
    text         TEXT NOT NULL,               -- redacted, and sealed by storage.sealed_text
    committed_at TEXT NOT NULL,
    redactions   JSONB NOT NULL DEFAULT '{}', -- placeholder -> count
    PRIMARY KEY (call_id, track, seq)
);

CREATE TABLE org_settings (
    org_id            TEXT COLLATE "C" PRIMARY KEY,
    phi_protection    BOOLEAN NOT NULL DEFAULT TRUE,
    e2ee_required     BOOLEAN NOT NULL DEFAULT FALSE,
    recording_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    retention_days    INTEGER,                -- NULL: keep until deleted by hand
    updated_at        TEXT NOT NULL
);
