"""Random identifiers that redaction leaves whole.

Logs and audit entries run every string through the redactor, which fails closed on long digit runs
("5551234567" anywhere in a token is a phone). A uuid4 hex holds a 10-digit run about once in a
hundred draws, so one call in a hundred would log and audit a mangled id ("8e50...81d[PHONE]e3") that
no command can find again. Ids drawn here hold no run of seven digits (the shortest entity), so no
recogniser can take any part of them; the format stays plain lowercase hex.
"""

from __future__ import annotations

import re
import secrets

_DIGIT_RUN_RE = re.compile(r"\d{7}")


def safe_hex_id(nbytes: int = 16) -> str:
    """`nbytes` random bytes as lowercase hex, redrawn until no seven digits stand in a row."""
    while True:
        candidate = secrets.token_hex(nbytes)
        if _DIGIT_RUN_RE.search(candidate) is None:
            return candidate
