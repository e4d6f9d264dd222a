"""Context from the previous turn of the call.

A caller often answers a question with the bare value: the agent asks "and your email address?", the
patient says "jane dot doe at example dot com", which Whisper may write as "jan.go.example.com" with the "at"
lost. Alone, that line is indistinguishable from a URL (a hard negative); after the question it is an email.
So when the previous utterance of the call asked for an email, phone or card, the answer is also redacted as
if it had been said with that lead-in, and whichever reading finds more PHI wins. Fail closed: context can
only add placeholders, never remove one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from redact.pipeline import Redaction, redact_detailed

# (cue in the previous turn, lead-in that puts the answer in that context)
_CUES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\be-?mail\b", re.IGNORECASE), "My email is "),
    (re.compile(r"\b(card|visa|mastercard|amex|credit|debit)\b", re.IGNORECASE), "My card number is "),
    (re.compile(r"\b(phone|number|call|reach|cell|fax|text)\b", re.IGNORECASE), "My phone number is "),
)


def _placeholders(r: Redaction) -> int:
    return sum(r.counts.values())


def redact_in_dialogue(
    text: str, variables: Mapping[str, str] | None = None, *, context: str | None = None
) -> Redaction:
    """`redact_detailed(text, variables)`, strengthened by the cue words of the previous turn (`context`)."""
    best = redact_detailed(text, variables)
    if not context:
        return best
    for cue, lead_in in _CUES:
        if not cue.search(context):
            continue
        primed = redact_detailed(lead_in + text, variables)
        if not primed.text.startswith(lead_in):
            continue  # the lead-in itself changed: its reading cannot be split back off safely
        if _placeholders(primed) > _placeholders(best):
            best = Redaction(primed.text[len(lead_in) :], primed.counts)
    return best
