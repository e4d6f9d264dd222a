"""docs/configuration.md names every CONVERSE_* variable the code reads, flags and environment-only ones."""

from __future__ import annotations

import re

from tests.support import REPO

PACKAGES = ("worker", "storage", "media", "redact")
NOT_VARIABLES = {"CONVERSE_NAME_WITH_UNDERSCORES", "CONVERSE_ADMISSION_"}  # a comment, a prefix


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text("utf-8")
    used: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            used |= set(re.findall(r"CONVERSE_[A-Z][A-Z0-9_]*", path.read_text("utf-8")))
    used -= NOT_VARIABLES
    assert {"CONVERSE_OIDC_ISSUER", "CONVERSE_TOKEN", "CONVERSE_SFRAME_KEY"} <= used
    missing = sorted(name for name in used if f"`{name}`" not in doc)
    assert not missing, f"docs/configuration.md misses {missing}"
    assert "`CONVERSE_ADMISSION_OFFER_BURST`" in doc  # each admission override has its row
