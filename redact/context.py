"""What the words before a number say it is: a phone, a card, an SSN, or another identifier.

The nearest cue wins: "call the pharmacy with Rx number 555-0172" is an Rx number, "your claim is approved,
call 555-0104" is a phone. Cues are looked for in a short window before the number, across a sentence end
("Can you confirm the MRN for me? It's 555-0194.").
"""

from __future__ import annotations

import re
from enum import Enum

WINDOW = 80


class Cue(Enum):
    PHONE = "phone"
    CARD = "card"
    SSN = "ssn"
    OTHER_ID = "other_id"


_CUES: tuple[tuple[Cue, str], ...] = (
    (
        Cue.OTHER_ID,
        r"mrn|npi|dea|medical\s+record|record\s+number|chart\s+number|rx|prescription\s+(?:number|id|#)"
        r"|appointment\s+(?:id|number|code|#)|confirmation|authori[sz]ation|auth\s+(?:number|code|#|id)"
        r"|(?:claim|member|policy|group|account|acct|reference|case|ticket|invoice|order|lot|batch|plan)"
        r"\s*(?:id|number|no\.?|#|code)|claim|policy|ticket|invoice|tracking|patient\s+(?:id|number)|id"
        r"|identification|license|serial"
        r"|pin|passcode|(?:security|access|verification|promo)\s+code|cvv|cvc|voucher|booking|visit\s+number"
        r"|encounter|insurance\s+number|subscriber",
    ),
    (Cue.CARD, r"card|visa|master\s*card|amex|american\s+express|discover|jcb|diners|debit|credit|hsa|fsa"),
    (Cue.SSN, r"social|ssn|social\s+security"),
    (
        Cue.PHONE,
        r"phone|cell|cellphone|mobile|fax|call|calls|calling|text|dial|reach|reached|line|landline"
        r"|telephone|tel|contact|area\s+code|pager",
    ),
)
_CUE_RE = re.compile(
    "|".join(rf"\b(?P<{cue.name}>{pattern})\b" for cue, pattern in _CUES),
    re.IGNORECASE,
)


def nearest_cue(text: str, start: int, floor: int = 0) -> Cue | None:
    """The cue closest before `start` (not before `floor`, e.g. the end of the previous entity)."""
    last: Cue | None = None
    for m in _CUE_RE.finditer(text, max(floor, start - WINDOW), start):
        assert m.lastgroup is not None
        last = Cue[m.lastgroup]
    return last
