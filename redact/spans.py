"""A recognised entity: a half-open character range and the placeholder name that replaces it."""

from __future__ import annotations

from typing import Final


class Span:
    """Immutable (Final attributes) and compared by value. A plain class, not a dataclass: mypyc
    compiles the methods written here, while a dataclass's generated __init__ runs interpreted."""

    __slots__ = ("end", "label", "start")

    def __init__(self, start: int, end: int, label: str) -> None:
        self.start: Final = start
        self.end: Final = end
        self.label: Final = label  # placeholder name without brackets: "PHONE", "NAME", "MEMBER_ID"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Span):
            return NotImplemented
        return self.start == other.start and self.end == other.end and self.label == other.label

    def __hash__(self) -> int:
        return hash((self.start, self.end, self.label))

    def __repr__(self) -> str:
        return f"Span(start={self.start!r}, end={self.end!r}, label={self.label!r})"
