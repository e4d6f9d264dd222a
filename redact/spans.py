"""A recognised entity: a half-open character range and the placeholder name that replaces it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    label: str  # placeholder name without brackets: "PHONE", "NAME", "MEMBER_ID"
