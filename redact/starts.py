"""Regex searches that enter the matcher only where a match can start.

A pattern that begins with a lookbehind ("(?<![\\w@])at\\b") gives the regex engine no first character to
skip to, so `finditer` runs the matcher at every position of the text; on ASR lines that was most of the
redactor's time. `find_at` walks the text once in compiled code and tries the pattern only at a
character that may start a match and does not follow one that rules a match out, as a table says. It
returns the matches `finditer` would (the pattern itself still decides; the table only skips positions
where it provably fails, and any non-ASCII character is tried).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

Match = Callable[[str, int, int], "re.Match[str] | None"]

START: Final = 1
BLOCKS: Final = 2  # Final: compiled as constants, not module look-ups per character


def table(starts: str, blocks: str) -> bytes:
    """A 128-entry table: START for an ASCII character a match may begin with, BLOCKS for one after
    which none may begin (what the pattern's leading lookbehind rejects)."""
    t = bytearray(128)
    for c in starts:
        t[ord(c)] |= START
    for c in blocks:
        t[ord(c)] |= BLOCKS
    return bytes(t)


WORD: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"  # ASCII \w


def _is_ascii_letter(o: int) -> bool:
    return 97 <= o <= 122 or 65 <= o <= 90


def find_at(
    match: Match, text: str, tbl: bytes, pos: int = 0, endpos: int = -1, words: frozenset[str] | None = None
) -> list[re.Match[str]]:
    """`list(pattern.finditer(text, pos, endpos))` for a pattern whose matches are never empty, given
    `match = pattern.match` and its `table`. `words`: when a match that starts with an ASCII letter
    starts with a whole word (a run of ASCII letters), the lower-cased words it may start with; other
    letter runs are skipped without the regex."""
    out: list[re.Match[str]] = []
    n = len(text) if endpos < 0 else min(endpos, len(text))
    i = pos
    while i < n:
        o = ord(text[i])
        if o > 127 or tbl[o] & START:
            p = ord(text[i - 1]) if i > 0 else 128
            if p > 127 or not tbl[p] & BLOCKS:
                if words is not None and _is_ascii_letter(o):
                    j = i + 1
                    while j < n and _is_ascii_letter(ord(text[j])):
                        j += 1
                    if text[i:j].lower() not in words:
                        i = j if tbl[ord(text[j - 1])] & BLOCKS else i + 1
                        continue
                m = match(text, i, n)
                if m is not None:
                    out.append(m)
                    i = m.end() if m.end() > i else i + 1
                    continue
        i += 1
    return out
