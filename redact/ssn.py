"""US Social Security numbers: 9 digits, said or written 3-2-4 or introduced as a social."""

from __future__ import annotations

from redact.context import Cue


def is_ssn(digits: str, group_sizes: list[int], cue: Cue | None) -> bool:
    if len(digits) != 9 or digits.startswith(("000", "666", "9")):
        return False
    return cue is Cue.SSN or group_sizes == [3, 2, 4]
