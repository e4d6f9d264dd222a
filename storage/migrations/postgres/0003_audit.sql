-- The scale-out audit log (storage.audit_pg): one row per entry, in one chain shared by every pod.
-- `entry` is the entry's canonical JSON exactly as hashed (TEXT, not JSONB: JSONB would reorder keys and
-- change the bytes); `leaf_hash` is its RFC 9162 leaf hash and `chain_hash` H(previous chain_hash ||
-- leaf_hash), both hex. Writers serialise on an advisory lock and insert seq = max + 1.
-- Triggers refuse UPDATE, DELETE and TRUNCATE, and any INSERT that is not the next seq. They stop mistakes
-- and ordinary roles; an owner can drop them, which `audit verify` reports, and the signed checkpoints
-- (written outside the database) name whatever was changed meanwhile.

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts         TEXT COLLATE "C" NOT NULL,
    entry      TEXT NOT NULL,
    leaf_hash  TEXT NOT NULL,
    chain_hash TEXT NOT NULL
);

CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION audit_log_next_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log) THEN
        RAISE EXCEPTION 'audit log is append-only: seq must be the next one'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_append_only BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_next_seq();
