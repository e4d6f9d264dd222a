-- Each call's wrapped transcript-text data key (storage.sealed_text). NULL until set; destroying it
-- (retention's crypto-shredding) sets text_key to NULL and text_key_destroyed_at.

ALTER TABLE calls ADD COLUMN text_kek_id TEXT;
ALTER TABLE calls ADD COLUMN text_kek_version INTEGER;
ALTER TABLE calls ADD COLUMN text_key BYTEA;
ALTER TABLE calls ADD COLUMN text_key_destroyed_at TEXT;
