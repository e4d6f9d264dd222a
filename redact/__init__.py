"""PHI redaction for call transcripts and logs. Pure: no I/O.

`redact_text(text, variables=None)` replaces phone numbers, email addresses, payment card numbers and SSNs,
in the digit, spoken, spelled and broken-up forms speech recognition writes, plus the values of runtime PHI
variables, by placeholders ([PHONE], [EMAIL], [CARD], [SSN], [NAME], [DOB], ...).
"""

from redact.dialogue import redact_in_dialogue
from redact.errors import RedactionError
from redact.ids import safe_hex_id
from redact.pipeline import (
    CARD,
    DEFAULT_ENTITIES,
    EMAIL,
    PHONE,
    SSN,
    Redaction,
    Redactor,
    redact_detailed,
    redact_text,
)


def compiled() -> bool:
    """Whether the redaction core runs compiled by mypyc (scripts/build_native.py), not as plain Python."""
    from redact import pipeline

    return not (pipeline.__file__ or "").endswith(".py")


__all__ = [
    "CARD",
    "DEFAULT_ENTITIES",
    "EMAIL",
    "PHONE",
    "SSN",
    "Redaction",
    "RedactionError",
    "Redactor",
    "compiled",
    "redact_detailed",
    "redact_in_dialogue",
    "redact_text",
    "safe_hex_id",
]
