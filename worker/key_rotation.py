"""KEK rotation over everything the KEK wraps: track keys, per-call transcript text keys, TOTP secrets.

Shared by `keys rotate|status` and `POST /v1/keys/rotate`. Each kind is re-wrapped under the new version
without touching what the data keys protect; `status` counts, per kind, the keys on each KEK version (after a
complete rotation every kind is on the current one only).
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage.keys import RewrapReport, key_versions, rewrap_all
from storage.protocols import KeyProvider, TranscriptStore
from worker.auth.totp import TotpStore


async def rotate(keys: KeyProvider, store: TranscriptStore, totp: TotpStore) -> RewrapReport:
    """A new KEK version, then every kind re-wrapped under it (safe to rerun: `rewrap` alone finishes a
    rotation that was interrupted)."""
    await asyncio.to_thread(keys.rotate)
    return await rewrap(keys, store, totp)


async def rewrap(keys: KeyProvider, store: TranscriptStore, totp: TotpStore) -> RewrapReport:
    report = await rewrap_all(store, keys)
    return report.with_kind("totp", await asyncio.to_thread(totp.rewrap))


async def status(keys: KeyProvider, store: TranscriptStore, totp: TotpStore) -> dict[str, Any]:
    """{"kek_id", "version", "kinds": {"track": {"1": n, ...}, "text": {...}, "totp": {...}}}."""
    kek_id, version = await asyncio.to_thread(keys.current)
    kinds = await key_versions(store)
    kinds["totp"] = await asyncio.to_thread(totp.key_versions)
    return {
        "kek_id": kek_id,
        "version": version,
        "kinds": {kind: {str(v): n for v, n in counts.items()} for kind, counts in kinds.items()},
    }


def report_json(report: RewrapReport) -> dict[str, Any]:
    """Totals plus, per kind, how many were re-wrapped, already current, or skipped."""
    return {
        "kek_id": report.kek_id,
        "version": report.version,
        "rewrapped": report.rewrapped,
        "unchanged": report.unchanged,
        "skipped": report.skipped,
        "kinds": {
            kind: {"rewrapped": k.rewrapped, "unchanged": k.unchanged, "skipped": k.skipped}
            for kind, k in report.kinds.items()
        },
    }
