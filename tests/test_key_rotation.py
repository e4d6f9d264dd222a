"""KEK rotation re-wraps everything the KEK wraps (issue 19, item 7): track keys, per-call transcript text
keys and TOTP secrets, on SQLite and PostgreSQL; `keys status` counts each kind per KEK version. The proof
from outside: after a rotation the old KEK version can be deleted from the key file and every transcript,
recording and TOTP login still works."""

from __future__ import annotations

import json
import time
from pathlib import Path

from storage.keys import LocalKeyFile, key_versions, new_data_key, rewrap_all, track_key_context
from storage.protocols import KeyedTranscriptStore
from storage.sealed_text import SealedTranscriptStore, text_key_context
from storage.sql.postgres import PgTranscriptStore
from storage.sql.sqlite import LocalTranscriptStore
from tests.cli_plant import plant_call
from tests.servers import pg_server, pg_url
from tests.storage_contract import make_call, make_track, make_utt
from tests.support import cli_env, run_cli
from worker.auth.totp import TotpStore, code_at

__all__ = ["pg_server", "pg_url"]  # fixtures, re-exported


def test_rotate_rewraps_every_kind_and_the_old_version_can_go(tmp_path: Path) -> None:
    data, kek = tmp_path / "data", tmp_path / "keys" / "kek.json"
    plant_call(data, kek, "c1", "default", text="words under the old key")
    env = cli_env(data, kek)
    enrol = run_cli(["token", "enroll", "--user", "u1", "--role", "owner", "--json"], env)
    secret = json.loads(enrol.stdout)["secret"]

    before = json.loads(run_cli(["keys", "status", "--json"], env).stdout)
    assert before["version"] == 1
    assert before["kinds"] == {"track": {"1": 1}, "text": {"1": 1}, "totp": {"1": 1}}
    rotated = json.loads(run_cli(["keys", "rotate", "--json"], env).stdout)
    assert rotated["version"] == 2 and (rotated["rewrapped"], rotated["skipped"]) == (3, 0)
    assert {kind: k["rewrapped"] for kind, k in rotated["kinds"].items()} == {
        "track": 1,
        "text": 1,
        "totp": 1,
    }
    after = json.loads(run_cli(["keys", "status", "--json"], env).stdout)
    assert after["kinds"] == {"track": {"2": 1}, "text": {"2": 1}, "totp": {"2": 1}}
    text = run_cli(["keys", "status"], env).stdout
    assert text.splitlines()[1:] == ["  track: v2: 1", "  text: v2: 1", "  totp: v2: 1"]

    doc = json.loads(kek.read_text())  # nothing is left under version 1: remove it
    del doc["versions"]["1"]
    kek.write_text(json.dumps(doc))
    assert "words under the old key" in run_cli(["transcripts", "show", "c1"], env).stdout
    run_cli(["export", "--call", "c1", "-o", str(tmp_path / "c1.wav")], env)
    issued = run_cli(["token", "issue", "--user", "u1", "--totp", code_at(secret, time.time())], env)
    assert issued.stdout.count(".") == 2


async def test_rewrap_all_covers_text_keys_on_sqlite(tmp_path: Path) -> None:
    store = LocalTranscriptStore(tmp_path / "converse.db")
    await store.open()
    try:
        await check_rewrap_all(store, tmp_path)
    finally:
        await store.close()


async def test_rewrap_all_covers_text_keys_on_postgres(pg_url: str, tmp_path: Path) -> None:
    store = PgTranscriptStore(pg_url)
    await store.open()
    try:
        await check_rewrap_all(store, tmp_path)
    finally:
        await store.close()


async def check_rewrap_all(keyed: KeyedTranscriptStore, tmp_path: Path) -> None:
    keys = LocalKeyFile(tmp_path / "keys" / "kek.json")
    sealed = SealedTranscriptStore(keyed, keys)
    for cid in ("c1", "c2", "c3"):
        await sealed.create_call(make_call(cid))
        await sealed.append_utterance(make_utt(cid, text=f"text of {cid}"))
    await keyed.put_track(
        make_track("c1", 0, wrapped_key=keys.wrap(new_data_key(), track_key_context("c1", 0)))
    )
    assert await sealed.destroy_call_key("c3")
    assert await key_versions(sealed) == {"track": {1: 1}, "text": {1: 2}}
    keys.rotate()
    report = await rewrap_all(sealed, keys)
    assert {k: (r.rewrapped, r.unchanged, r.skipped) for k, r in report.kinds.items()} == {
        "track": (1, 0, 0),
        "text": (2, 0, 0),
    }
    assert await key_versions(sealed) == {"track": {2: 1}, "text": {2: 2}}
    destroyed = await keyed.get_call_key("c3")
    assert destroyed is not None and destroyed.blob == b""
    fresh = SealedTranscriptStore(keyed, LocalKeyFile(keys.path))  # no cached data keys
    assert [u.text for u in await fresh.get_utterances("c2")] == ["text of c2"]
    again = await rewrap_all(sealed, keys)
    assert (again.rewrapped, again.unchanged) == (0, 3)
    # A key replaced meanwhile (another pod's rotation) is skipped, never overwritten with a stale one.
    keys.rotate()
    old = await keyed.get_call_key("c1")
    assert old is not None
    newer = keys.wrap(keys.unwrap(old, text_key_context("c1")), text_key_context("c1"))
    assert await keyed.replace_call_key("c1", newer, expected=old)
    assert not await keyed.replace_call_key("c1", newer, expected=old)


def test_totp_rewrap_and_versions(tmp_path: Path) -> None:
    keys = LocalKeyFile(tmp_path / "keys" / "kek.json")
    totp = TotpStore(tmp_path / "users.json", key_provider=keys)
    secrets = {u: totp.enroll(u, f"{u}@example.org").secret for u in ("u1", "u2")}
    assert totp.key_versions() == {1: 2}
    keys.rotate()
    report = totp.rewrap()
    assert (report.rewrapped, report.unchanged) == (2, 0)
    assert totp.key_versions() == {2: 2}
    assert (totp.rewrap().rewrapped, totp.rewrap().unchanged) == (0, 2)
    now = time.time()
    assert totp.verify("u1", code_at(secrets["u1"], now), now) >= 0
    plain = TotpStore(tmp_path / "plain.json")
    plain.enroll("u3", "u3@example.org")
    assert (plain.rewrap().rewrapped, plain.key_versions()) == (0, {})
