"""The development corpus: every line must come out exactly as its gold `redacted` text."""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from redact import redact_text

NAME = "redaction_dev.jsonl"


def corpus_path() -> Path:
    """The repo's copy first (self-contained), then ../shared, then $CONVERSE_SHARED_DIR."""
    candidates = [Path(__file__).parent / "data" / NAME, Path(__file__).parents[2] / "shared/data" / NAME]
    if env := os.environ.get("CONVERSE_SHARED_DIR"):
        candidates.append(Path(env) / "data" / NAME)
        candidates.append(Path(env) / NAME)
    for path in candidates:
        if path.is_file():
            return path
    pytest.fail(f"{NAME} not found in {[str(c) for c in candidates]}")


def load() -> list[dict[str, Any]]:
    with corpus_path().open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def per_tag_report(rows: list[dict[str, Any]], failed: set[str]) -> str:
    totals: dict[str, int] = defaultdict(int)
    bad: dict[str, int] = defaultdict(int)
    for row in rows:
        for tag in row["tags"]:
            totals[tag] += 1
            bad[tag] += row["id"] in failed
    lines = [f"{tag:24s} {totals[tag] - bad[tag]:4d}/{totals[tag]:<4d}" for tag in sorted(totals)]
    return "\n".join(lines)


# sha256 of ../shared/data/redaction_dev.jsonl as given to this project: the repo's copy must stay that file.
SHARED_SHA256 = "b543f69cdeed00ac6c7aaf4d3879b2ade3296ccfcd866e5abf336dfaf9810796"


def test_corpus_is_the_shared_one() -> None:
    copy = (Path(__file__).parent / "data" / NAME).read_bytes()
    assert hashlib.sha256(copy).hexdigest() == SHARED_SHA256
    shared = Path(__file__).parents[2] / "shared/data" / NAME
    if shared.is_file():  # a checkout beside ../shared (a clean clone elsewhere has only the pinned hash)
        assert copy == shared.read_bytes()


def test_every_dev_line_exact() -> None:
    rows = load()
    assert len(rows) >= 200
    failures = {row["id"]: (row, redact_text(row["text"])) for row in rows}
    failures = {k: v for k, v in failures.items() if v[1] != v[0]["redacted"]}
    if failures:
        detail = "\n".join(
            f"{rid}: want {row['redacted']!r}\n{' ' * len(rid)}  got  {got!r}"
            for rid, (row, got) in failures.items()
        )
        pytest.fail(
            f"{len(failures)}/{len(rows)} lines wrong: {sorted(failures)}\n"
            f"per-tag exact-line accuracy:\n{per_tag_report(rows, set(failures))}\n{detail}"
        )
