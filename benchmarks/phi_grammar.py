"""A seeded grammar of spoken and written PHI in call-transcript lines, with gold redactions.

    .venv/bin/python benchmarks/phi_grammar.py [--lines N] [--seed S] [--out tests/data]

Each line is built from parts: words that stay (lead-ins such as "my email is", fillers, sentences around)
and entity spans (a phone, an email address, a card), so the gold `redacted` text is the line with each
entity span replaced by its placeholder and every other character kept, as the dev rules say
(../shared/data/redaction_dev.md). Families cover the shapes speech recognition writes: several-word local
parts, initials and digits in them, clarifiers ("that's one word"), organisation mailboxes, several-word and
dashed domains ("north shore dash clinic dot example dot org", "g mail"), an address whose "at" was lost,
grouped and one-per-comma spoken digits, "oh"/"zero", "double"/"triple", tens words, toll-free, extensions,
international numbers, fillers, read-backs, the words tiny.en writes for digits it mishears ("free" for
three), and hard negatives that must stay (dates, times, dosages, prices, labelled IDs, NPIs, ZIP codes,
"press 1").

Split: line i is HELD-OUT when i % 3 == 0, else TUNE; held-out lines draw their names, mailbox words and
organisation words from pools disjoint from the tune lines' (the odd entries of each list, the tune lines
the even ones), so a rule that memorised tune values gains nothing on held-out. Tune the redactor on TUNE
failures only. Values are reserved or fictional (555 numbers, published test cards, example domains) except
the webmail provider names, which are the point of their family.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SEED = 20261204
LINES = 7800  # BASE_LINES, then 600 of the later families
HELD_OUT_EVERY = 3  # line i is held out when i % HELD_OUT_EVERY == 0

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# What tiny.en writes for a digit word it mishears inside a run of digits.
ASR_DIGIT_WORDS = {"3": ["free"], "5": ["fine"], "4": ["for"], "1": ["won"], "8": ["ate"], "2": ["to", "too"]}

_FIRST = """james mary robert patricia john jennifer michael linda david elizabeth william barbara
richard susan
joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra
mark ashley donald kimberly steven emily paul donna andrew michelle joshua carol kenneth amanda
kevin melissa brian deborah george stephanie timothy rebecca ronald sharon jason laura edward
cynthia jeffrey kathleen ryan amy jacob angela gary shirley nicholas anna eric brenda jonathan
pamela stephen emma larry nicole justin helen scott samantha brandon katherine benjamin christine
samuel debra gregory rachel alexander carolyn frank janet raymond catherine patrick maria jack
heather dennis diane jerry ruth tyler julie aaron olivia jose joyce adam virginia nathan victoria
henry kelly douglas lauren zachary christina peter joan kyle evelyn ethan judith walter megan noah
andrea jeremy cheryl christian hannah keith jacqueline roger martha terry gloria gerald teresa
harold ann sean sara austin madison carl frances arthur kathryn lawrence janice dylan jean jesse
abigail jordan alice bryan judy billy sophia joe grace bruce denise gabriel amber logan doris albert
marilyn willie danielle alan beverly juan isabella wayne theresa elijah diana randy natalie roy
brittany vincent charlotte ralph marie eugene kayla russell alexis bobby lori mason priya wei mei
hiroshi yuki aisha omar fatima kwame amara ravi anil sunita chen li ngozi tariq leila mateo sofia
diego lucia ivan olga kofi zara arjun deepa jo lee kim sam""".split()
_LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark
ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams
nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker
cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper
peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james
bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez
powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales fisher vasquez
simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno west cole
hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens
harrison fernandez mcdonald woods washington kennedy wells vargas henry chen freeman webb tucker
guzman burns crawford olson simpson porter hunter gordon mendez silva shaw snyder mason dixon munoz
hunt hicks holmes palmer wagner black robertson boyd rose stone salazar fox warren mills meyer rice
schmidt garza daniels ferguson nichols stephens soto weaver ryan gardner payne grant dunn kelley
spencer hawkins arnold pierce hansen peters santos hart bradley knight elliott cunningham duncan
armstrong hudson carroll lane riley andrews ray berry perkins hoffman singh wong osei okafor
nakamura tanaka kowalski novak ivanova haddad khan ali rahman mensah kovacs""".split()
# Syllables for made-up names, so the pools hold a few thousand names no rule can list.
_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "ch",
    "dr",
    "gr",
    "kr",
    "sh",
    "st",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "n", "r", "l", "s", "m", "th", "x", "nd", "rk"]
# Never a made-up name: words the redactor (or English) gives a meaning of their own.
_NOT_NAMES = frozenset(
    [
        *_ONES,
        *_TEENS,
        *_TENS,
        *"""oh hundred double triple plus dot dash at and for to too free fine won ate the is me my mail
    com org
    net per sir her his him she tax fax box bus gun sun son man men ban bin den fan fun pin pen run sin tin
    van win hi ha has had was are can did not but you out our how who why let get got say see use may way
    day new now old all any via put tell told give need want mine much very well have does will would could
    should might this that then than them they there here what when where which with from into onto also
    just send sent call text number phone home work line page site more less""".split(),
    ]
)  # common English words and the words the grammar itself uses: no parent names a child so


def _made_up_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 2, 2, 3)))]
        name = "".join(parts) + rng.choice(_CODAS)
        if 3 <= len(name) <= 10 and name not in _NOT_NAMES:
            names.add(name)
    return sorted(names)


_POOL_RNG = random.Random(7)
FIRST_NAMES = [*_FIRST, *_made_up_names(_POOL_RNG, 1400)]
LAST_NAMES = [*_LAST, *_made_up_names(_POOL_RNG, 1600)]
MAILBOXES = [
    "reception",
    "billing",
    "appointments",
    "records",
    "scheduling",
    "intake",
    "referrals",
    "pharmacy",
    "frontdesk",
    "nurse line",
    "care team",
    "help",
    "support",
    "office",
    "admin",
    "benefits",
    "claims",
    "lab results",
    "triage",
    "info",
]
ORG_WORDS = [
    "north",
    "shore",
    "valley",
    "river",
    "oak",
    "cedar",
    "lake",
    "bay",
    "summit",
    "pine",
    "harbor",
    "mercy",
    "grace",
    "hope",
    "sunrise",
    "meadow",
    "maple",
    "willow",
    "granite",
    "bright",
    "east",
    "west",
    "central",
    "park",
    "hill",
    "spring",
    "golden",
    "silver",
    "ridge",
    "coast",
]
ORG_KINDS = [
    "clinic",
    "health",
    "medical",
    "care",
    "family",
    "pediatrics",
    "dental",
    "labs",
    "pharmacy",
    "hospital",
    "wellness",
    "therapy",
]
# (how it is said, how it is written) of webmail domains the ASR splits into words.
PROVIDERS = [
    ("g mail", "gmail"),
    ("gmail", "gmail"),
    ("hot mail", "hotmail"),
    ("hotmail", "hotmail"),
    ("proton mail", "protonmail"),
    ("yahoo", "yahoo"),
    ("outlook", "outlook"),
    ("aol", "aol"),
    ("i cloud", "icloud"),
    ("icloud", "icloud"),
    ("comcast", "comcast"),
]
TEST_CARDS = [
    "4111111111111111",
    "4242424242424242",
    "4012888888881881",
    "5555555555554444",
    "5105105105105100",
    "2223003122003222",
    "5200828282828210",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "3530111333300000",
    "4000056655665556",
    "6011111111111117",
]
TOLL_FREE = ["800", "833", "844", "855", "866", "877", "888"]


def _pool(items: list[str], held_out: bool) -> list[str]:
    return items[1::2] if held_out else items[0::2]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


@dataclass
class Line:
    """Parts of one line: (text, placeholder or None)."""

    parts: list[tuple[str, str | None]] = field(default_factory=list)

    def say(self, text: str) -> Line:
        self.parts.append((text, None))
        return self

    def ent(self, text: str, label: str) -> Line:
        self.parts.append((text, label))
        return self

    def text(self) -> str:
        return "".join(t for t, _ in self.parts)

    def redacted(self) -> str:
        return "".join(f"[{label}]" if label else t for t, label in self.parts)

    def spans(self) -> list[tuple[int, int, str]]:
        out, pos = [], 0
        for t, label in self.parts:
            if label:
                out.append((pos, pos + len(t), label))
            pos += len(t)
        return out


class Gen:
    """One line's choices: its random stream and its split's pools."""

    def __init__(self, rng: random.Random, held_out: bool) -> None:
        self.r = rng
        self.first = _pool(FIRST_NAMES, held_out)
        self.last = _pool(LAST_NAMES, held_out)
        self.boxes = _pool(MAILBOXES, held_out)
        self.org = _pool(ORG_WORDS, held_out)
        self.kinds = _pool(ORG_KINDS, held_out)

    def pick(self, items: Sequence[T]) -> T:
        return self.r.choice(items)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # --- spoken digits ---
    def zero(self) -> str:
        return "oh" if self.chance(0.7) else "zero"

    def digit_word(self, d: str) -> str:
        return self.zero() if d == "0" else _ONES[int(d)]

    def spoken_group(self, digits: str, *, repeat_words: bool = True) -> str:
        """ "555" -> "five five five" / "triple five"; "0142" -> "oh one four two" / "zero one forty two"."""
        if digits == "800" and self.chance(0.5):
            return "eight hundred"
        words: list[str] = []
        i = 0
        while i < len(digits):
            d = digits[i]
            run = len(digits) - i - len(digits[i:].lstrip(d))
            if repeat_words and run >= 2 and self.chance(0.35):
                n = 3 if run >= 3 and self.chance(0.5) else 2
                words.append(("triple " if n == 3 else "double ") + self.digit_word(d))
                i += n
                continue
            words.append(self.digit_word(d))
            i += 1
        return " ".join(words)

    def tens_pair(self, two: str) -> str:
        """Two digits said as one number: "50" -> "fifty", "14" -> "fourteen", "05" -> "oh five"."""
        n = int(two)
        if two[0] == "0":
            return f"{self.zero()} {_ONES[n]}"
        if n < 10 + len(_TEENS) and n >= 10:
            return _TEENS[n - 10]
        if n < 20:
            return "nineteen"
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")

    # --- names and addresses ---
    def name(self) -> str:
        return self.pick(self.first)

    def surname(self) -> str:
        return self.pick(self.last)

    def cap(self, word: str) -> str:
        return " ".join(w[:1].upper() + w[1:] for w in word.split(" "))


# ---------------------------------------------------------------- emails


def _domain(g: Gen) -> tuple[str, str]:
    """(spoken, written) domain."""
    kind = g.r.random()
    if kind < 0.35:
        said, written = g.pick(PROVIDERS)
        tld = "com"
        return f"{said} dot {tld}", f"{written}.{tld}"
    if kind < 0.75:
        words = [g.pick(g.org) for _ in range(g.r.choice((1, 2, 2)))] + [g.pick(g.kinds)]
        joint = g.pick(("dash", "space", "none"))
        tld = g.pick(("org", "com", "net", "org"))
        example = g.chance(0.5)
        if joint == "dash":
            said_label = " dash ".join(words)
            written_label = "-".join(words)
        elif joint == "space":
            said_label = " ".join(words)
            written_label = "".join(words)
        else:
            said_label = written_label = "".join(words)
        said = said_label + (" dot example" if example else "") + f" dot {tld}"
        written = written_label + (".example" if example else "") + f".{tld}"
        return said, written
    tld = g.pick(("com", "org", "net", "co dot uk", "health", "us"))
    return f"example dot {tld}", f"example.{tld.replace(' dot ', '.')}"


def _local(g: Gen) -> tuple[str, str, str]:
    """(spoken local part, written local part, family tag)."""
    f, last = g.name(), g.surname()
    k = g.r.random()
    if k < 0.14:
        return f"{f} dot {last}", f"{f}.{last}", "email_dotted_name"
    if k < 0.28:
        if g.chance(0.4):
            f = f"{f} {g.name()}"  # "jo ann baker"
        return f"{f} {last}", f"{f.replace(' ', '')}{last}", "email_multiword_local"
    if k < 0.40:
        initial = f[0]
        said = g.pick((f"{initial} {last}", f"{initial} dot {last}", f"{initial.upper()}. {g.cap(last)}"))
        return said, f"{initial}{last}", "email_initial"
    if k < 0.54:
        n = str(g.r.randint(1, 99)) if g.chance(0.6) else str(g.r.randint(1950, 2010))
        said_n = n if g.chance(0.5) else (g.tens_pair(n) if len(n) == 2 else g.spoken_group(n))
        base = g.pick((f"{f} {last}", last, f"{f[0]} {last}", f"{f} dot {last}"))
        return f"{base} {said_n}", f"{base.replace(' dot ', '.').replace(' ', '')}{n}", "email_digits"
    if k < 0.66:
        clar = g.pick(("that's one word", "all one word", "one word", "no spaces", "no space"))
        if g.chance(0.5):
            return f"{f}, {clar}, {last}", f"{f}{last}", "email_clarifier"
        return f"{f} {last}, {clar},", f"{f}{last}", "email_clarifier"
    if k < 0.76:
        letters = list(last[: g.r.randint(3, 6)])
        style = g.r.random()
        if style < 0.4:
            said = "-".join(c.upper() for c in letters)
        elif style < 0.7:
            said = ", ".join(letters)
        else:
            said = f"{letters[0]} as in {g.cap(g.name())}, " + ", ".join(letters[1:])
        return said, "".join(letters), "email_spelled"
    if k < 0.88:
        box = g.pick(g.boxes)
        return box, box.replace(" ", ""), "email_org_mailbox"
    if k < 0.93:
        fill = g.pick((", um, ", " uh ", ", uh, ", "... ", ", sorry, "))
        return f"{f}{fill}{last}", f"{f}{last}", "email_filler"
    if k < 0.96:
        mid = g.pick("abcdefghjklmnprstw")
        return f"{f} dot {mid} dot {last}", f"{f}.{mid}.{last}", "email_dotted_name"
    sep = g.pick(("underscore", "dash"))
    return f"{f} {sep} {last}", f"{f}{'_' if sep == 'underscore' else '-'}{last}", "email_dotted_name"


_EMAIL_LEADS = [
    "My email is ",
    "My email address is ",
    "Email me at ",
    "You can email me at ",
    "Send it to ",
    "Please send the forms to ",
    "It's ",
    "The address is ",
    "Write to ",
    "You can reach us at ",
    "Forward the results to ",
    "My e-mail is ",
    "Sure, my email is ",
    "Um, it's ",
    "The best email is ",
    "Please email ",
]
_ENDS = [".", ".", ".", "", ", thanks.", " please.", "?", ", okay?", ", thank you."]


def email_line(g: Gen) -> tuple[Line, str]:
    said_local, written_local, fam = _local(g)
    said_dom, written_dom = _domain(g)
    style = g.r.random()
    line = Line().say(g.pick(_EMAIL_LEADS))
    if style < 0.45:  # all spoken
        addr = f"{said_local} at {said_dom}"
    elif style < 0.7:  # Whisper's mix: spoken local, written domain
        addr = f"{said_local} at {written_dom}"
    elif style < 0.85:
        addr = f"{written_local}@{written_dom}"
        fam = "email_written"
    else:
        said_local = g.cap(said_local) if "," not in said_local else said_local
        addr = f"{said_local} at {said_dom if g.chance(0.5) else written_dom}"
    if (
        any(p in said_dom for p in ("g mail", "hot mail", "proton mail", "i cloud"))
        and fam != "email_written"
    ):
        fam = "email_split_provider"
    elif fam != "email_written" and (" dash " in said_dom or " " in said_dom.split(" dot ")[0]):
        fam = "email_multiword_domain"
    line.ent(addr, "EMAIL")
    if g.chance(0.12):
        line.say(", all lowercase.")
    else:
        line.say(g.pick(_ENDS))
    return line, fam


def email_readback_line(g: Gen) -> tuple[Line, str]:
    """The agent reads the address back: two placeholders, the words between them kept."""
    said_local, _, _ = _local(g)
    said_dom, written_dom = _domain(g)
    line = Line().say(g.pick(_EMAIL_LEADS)).ent(f"{said_local} at {said_dom}", "EMAIL")
    line.say(g.pick((". Let me repeat that: ", ". So that's ", ". Okay, I have ")))
    line.ent(f"{said_local} at {g.pick((said_dom, written_dom))}", "EMAIL")
    return line.say(g.pick(("?", ", correct?", ", right?", "."))), "email_readback"


def email_lost_at_line(g: Gen) -> tuple[Line, str]:
    """tiny.en dropped the "at": "My email is Sam Reyes, example.com."."""
    f, last = g.cap(g.name()), g.cap(g.surname())
    _, dom = _domain(g)
    local = g.pick((f"{f} {last},", f"{f} {last}", f"{f}.{last}.", f"{f} dot {last}"))
    sep = "" if local.endswith(".") else " "
    lead = g.pick(("My email is ", "My email address is ", "Email me, ", "The email is ", "Send it to "))
    return Line().say(lead).ent(f"{local}{sep}{dom}", "EMAIL").say(g.pick(_ENDS)), "email_lost_at"


# ---------------------------------------------------------------- phones


def _nanp(g: Gen) -> tuple[str, str, str]:
    area = g.pick(("212", "312", "415", "617", "202", "713", "404", "646", "917", "555", "303", "206", "512"))
    return area, "555", f"01{g.r.randint(0, 99):02d}"


def _ext(g: Gen) -> tuple[str, str]:
    """(text after the number, family) for an extension."""
    n = g.r.randint(2, 999)
    s = str(n)
    k = g.r.random()
    if k < 0.25:
        return g.pick((f", extension {s}", f" ext. {s}", f" x{s}", f", ext {s}")), "phone_ext"
    if n >= 100 and k < 0.6:
        spoken = f"{_ONES[n // 100]} {g.tens_pair(s[1:]) if s[1] != '0' else g.spoken_group(s[1:])}"
    elif n >= 20 and k < 0.8:
        spoken = g.tens_pair(s[-2:])
    else:
        spoken = g.spoken_group(s, repeat_words=False)
    return f", extension {spoken}", "phone_ext_words"


_PHONE_LEADS = [
    "My number is ",
    "Call me at ",
    "You can reach me at ",
    "My cell is ",
    "The best number is ",
    "It's ",
    "Please call the office back at ",
    "Her phone is ",
    "Text me at ",
    "The fax is ",
    "Call us at ",
    "My daughter's number is ",
    "Yeah, it's ",
    "Reach the nurse line at ",
    "The number on file is ",
    "Please update my phone to ",
    "Um, my number is ",
]


def _digits_phone(g: Gen, a: str, b: str, c: str) -> str:
    return g.pick(
        (f"{a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", f"{a}{b}{c}", f"{a}-{b}{c}")
    )


def phone_line(g: Gen) -> tuple[Line, str]:
    a, b, c = _nanp(g)
    k = g.r.random()
    ext = ""
    if k < 0.12:
        fam, text = "phone_digits", _digits_phone(g, a, b, c)
    elif k < 0.24:
        t = g.pick(TOLL_FREE)
        fam = "phone_tollfree"
        text = g.pick(
            (
                f"1-{t}-{b}-{c}",
                f"1 ({t}) {b}-{c}",
                f"1-{t}-{b}{c}",
                f"1.{t}.{b}.{c}",
                f"{t}-{b}-{c}",
                f"1 {t} {b} {c}",
                f"+1 {t} {b} {c}",
                f"one {g.spoken_group(t)}, {g.spoken_group(b)}, {g.spoken_group(c)}",
            )
        )
    elif k < 0.36:
        fam = "phone_spoken_grouped"
        sep = g.pick((", ", " ", ", ", "... "))
        text = sep.join(g.spoken_group(x) for x in (a, b, c))
    elif k < 0.48:
        fam = "phone_spoken_one_per_comma"
        head = g.pick(
            (f"{g.spoken_group(a, repeat_words=False)}, {g.spoken_group(b, repeat_words=False)}, ", "")
        )
        tail = a + b + c if not head else c
        text = head + ", ".join(g.digit_word(d) for d in tail)
    elif k < 0.56:
        fam = "phone_local7"
        text = g.pick((f"{b}-{c}", f"{g.spoken_group(b)}, {g.spoken_group(c)}", f"{b} {c}"))
    elif k < 0.64:
        fam = "phone_mixed"
        text = g.pick(
            (f"{a} {b} {g.spoken_group(c)}", f"{g.spoken_group(a)} {b}-{c}", f"{a}, {g.spoken_group(b)}, {c}")
        )
    elif k < 0.74:
        fam = "phone_filler"
        fill = g.pick((", um, ", ", uh, ", "... uh... ", ", sorry, ", ", let me see, ", " um "))
        parts = [g.spoken_group(a) if g.chance(0.5) else a, g.spoken_group(b) if g.chance(0.5) else b]
        parts.append(g.spoken_group(c) if g.chance(0.5) else c)
        text = parts[0] + fill + parts[1] + g.pick((", ", fill)) + parts[2]
    elif k < 0.86:
        return phone_asr_line(g, a, b, c)
    else:
        fam = "phone_intl"
        text = g.pick(
            (
                "+44 20 7946 0958",
                "+44 7700 900417",
                "0044 20 7946 0123",
                "+49 30 5550 2290",
                "+91 98765 43210",
                "+33 1 99 00 27 45",
                "+61 491 570 156",
                "+61 2 5550 1234",
                "plus four four, two oh, seven nine four six, oh nine five eight",
                "plus one, " + ", ".join(g.spoken_group(x) for x in (a, b, c)),
                "0049 (0)30 5550 2291",
                "+44 (0)20 7946 0321",
            )
        )
    if fam not in ("phone_intl",) and g.chance(0.25):
        ext, fam2 = _ext(g)
        fam = fam2 if g.chance(0.5) or fam2 == "phone_ext_words" else fam
    line = Line().say(g.pick(_PHONE_LEADS)).ent(text + ext, "PHONE")
    return line.say(g.pick(_ENDS)), fam


def _misheard(g: Gen, digits: str, *, written: bool) -> str:
    """Digits one by one, one or two inner ones written as tiny.en mishears them."""
    toks = [d if written else g.digit_word(d) for d in digits]
    inner = [i for i in range(1, len(digits) - 1) if digits[i] in ASR_DIGIT_WORDS]
    for i in g.r.sample(inner, min(len(inner), g.r.choice((1, 1, 2)))):
        toks[i] = g.pick(ASR_DIGIT_WORDS[digits[i]])
    return " ".join(toks)


def phone_asr_line(g: Gen, a: str, b: str, c: str) -> tuple[Line, str]:
    written = g.chance(0.4)
    if g.chance(0.5):  # in groups: "six one seven, fine fine oh one for two"
        head = " ".join(d if written else g.digit_word(d) for d in a)
        text = f"{head}, {_misheard(g, b + c, written=written)}"
    else:
        text = _misheard(g, a + b + c, written=written)
    return Line().say(g.pick(_PHONE_LEADS)).ent(text, "PHONE").say(g.pick(_ENDS)), "phone_asr_homophone"


def phone_split_line(g: Gen) -> tuple[Line, str]:
    """The ASR broke one number into sentences: "Two oh one. Five five five. Oh one eight four."."""
    a, b, c = _nanp(g)
    groups = [g.cap(g.spoken_group(x, repeat_words=False)) for x in (a, b, c)]
    return Line().say(g.pick(_PHONE_LEADS)).ent(". ".join(groups), "PHONE").say("."), "phone_asr_split"


def readback_line(g: Gen) -> tuple[Line, str]:
    a, b, c = _nanp(g)
    first = _digits_phone(g, a, b, c) if g.chance(0.5) else ", ".join(g.spoken_group(x) for x in (a, b, c))
    again = g.pick((f"{b}-{c}", f"{a}-{b}-{c}", ", ".join(g.spoken_group(x) for x in (a, b, c))))
    line = Line().say(g.pick(_PHONE_LEADS)).ent(first, "PHONE")
    line.say(g.pick((". Let me read that back: ", ". So that's ", ". Okay, ")))
    return line.ent(again, "PHONE").say(g.pick(("?", ", correct?", ", right?", "."))), "phone_readback"


# ---------------------------------------------------------------- cards


def _card(g: Gen) -> str:
    if g.chance(0.5):
        return g.pick(TEST_CARDS)
    prefix = g.pick(("4", "51", "52", "53", "54", "55", "2221", "2720", "6011", "4000"))
    body = prefix + "".join(str(g.r.randint(0, 9)) for _ in range(15 - len(prefix)))
    return luhn_complete(body)


_CARD_LEADS = [
    "My card number is ",
    "The card is ",
    "Charge it to my Visa, ",
    "My credit card is ",
    "The debit card number is ",
    "Use card ",
    "It's ",
    "The Mastercard is ",
    "The card number, um, is ",
    "My card is ",
]


def card_line(g: Gen) -> tuple[Line, str]:
    n = _card(g)
    k = g.r.random()
    groups = [n[i : i + 4] for i in range(0, len(n), 4)] if len(n) != 15 else [n[:4], n[4:10], n[10:]]
    if k < 0.4:
        fam, text = "card_digits", g.pick((" ".join(groups), "-".join(groups), n))
    elif k < 0.65:
        fam, text = "card_spoken", ", ".join(g.spoken_group(x) for x in groups)
    elif k < 0.8:
        fam = "card_filler"
        text = (
            ", um, ".join(groups)
            if g.chance(0.5)
            else groups[0] + " " + groups[1] + ", uh, " + " ".join(groups[2:])
        )
    else:
        fam = "card_asr_homophone"
        text = _misheard(g, n, written=g.chance(0.6))
    return Line().say(g.pick(_CARD_LEADS)).ent(text, "CARD").say(g.pick(_ENDS)), fam


# ---------------------------------------------------------------- runs of misheard digit words

_RUN_PHONE_LEADS = [
    "My number is ",
    "The phone number is ",
    "My cell is ",
    "Call me at ",
    "You can reach me at ",
    "Her phone number is ",
    "The number is, um, ",
]
_RUN_CARD_LEADS = [
    "The card number is ",
    "The car number is ",
    "The cart number is ",
    "My card number is ",
    "The car number is, uh, ",
    "My Visa is ",
]


def _all_misheard(g: Gen, digits: str) -> str:
    """Digits one word each, every digit that has a homophone written as one with even odds, the first
    and last included (a run led or ended by "free"/"for"), at least one homophone."""
    toks = [g.digit_word(d) for d in digits]
    can = [i for i, d in enumerate(digits) if d in ASR_DIGIT_WORDS]
    swapped = [i for i in can if g.chance(0.5)]
    if can and not swapped:
        swapped = [g.pick(can)]
    for i in swapped:
        words = ASR_DIGIT_WORDS[digits[i]]
        if i == len(digits) - 1:  # "... 0199 to activate": a last "to"/"for" is the word (dev rules)
            words = [w for w in words if w not in ("to", "for")] or [g.digit_word(digits[i])]
        toks[i] = g.pick(words)
    return " ".join(toks)


def asr_run_line(g: Gen) -> tuple[Line, str]:
    """Issue 14: tiny.en writes a number read fast as a run of homophones: "The car number is fine,
    fine, fine, ..." for a card of fives, "free won two, fine fine five, ..." for a phone."""
    if g.chance(0.45):
        if g.chance(0.4):  # one homophone again and again: a card read as one repeated digit
            d = g.pick(sorted(ASR_DIGIT_WORDS))
            word = g.pick(ASR_DIGIT_WORDS[d])
            text = ", ".join([word] * g.pick((15, 16)))
        else:
            n = _card(g)
            groups = [n[i : i + 4] for i in range(0, len(n), 4)]
            text = ", ".join(_all_misheard(g, x) for x in groups) if g.chance(0.6) else _all_misheard(g, n)
        line = Line().say(g.pick(_RUN_CARD_LEADS)).ent(text, "CARD")
        return line.say(g.pick(_ENDS)), "card_asr_run"
    a, b, c = _nanp(g)
    if g.chance(0.6):
        text = ", ".join(_all_misheard(g, x) for x in (a, b, c))
    else:
        text = _all_misheard(g, a + b + c)
    return Line().say(g.pick(_RUN_PHONE_LEADS)).ent(text, "PHONE").say(g.pick(_ENDS)), "phone_asr_run"


def homophone_negative_line(g: Gen) -> tuple[Line, str]:
    """The homophones as the words they are, beside numbers and number cues; all of it stays."""
    n = g.r.randint(2, 9)
    choices = [
        f"I've had the cough for four weeks, maybe {g.pick(_ONES[2:6])}.",
        "Take two to three times a day, with food.",
        "Fine, fine, thank you. And you?",
        f"I ate at five, then took {g.pick(('one', 'two'))} tablets.",
        "My number is the same, fine, fine, thanks for asking.",
        f"For two to four weeks, then {n} for a week, fine?",
        "The phone is fine, I called for two hours to get through.",
        f"We won {g.pick(_ONES[2:9])} to {g.pick(_ONES[1:5])}, fine, fine, fine game.",
    ]
    return Line().say(g.pick(choices)), "hn_homophone"


# ---------------------------------------------------------------- several entities and hard negatives


def multi_line(g: Gen) -> tuple[Line, str]:
    p, _ = phone_line(g)
    e, _ = email_line(g)
    line = Line(parts=[*p.parts[:-1]])
    line.say(g.pick((" or email ", ", or you can email ", ". My email is ", " and my email is ")))
    line.parts.extend(e.parts[1:])
    return line, "multi"


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def negative_line(g: Gen) -> tuple[Line, str]:
    m, d, y = g.pick(_MONTHS), g.r.randint(1, 28), g.r.randint(2019, 2027)
    h, mi = g.r.randint(1, 12), g.pick(("00", "15", "30", "45"))
    dose = g.pick(("5", "10", "20", "25", "40", "50", "81", "100", "250", "500", "1000"))
    choices: list[tuple[str, str]] = [
        (f"Your appointment is on {m} {d}, {y} at {h}:{mi} p.m.", "hn_date"),
        (f"The visit is on {g.r.randint(1, 12):02d}/{d:02d}/{y}.", "hn_date"),
        (f"Come in on the {g.pick(('fourth', 'twelfth', 'twenty first', 'third'))} of {m}.", "hn_date"),
        (f"We open at {h}:{mi} and close at {g.r.randint(4, 9)} p.m.", "hn_time"),
        (
            f"Your appointment is at {g.pick(('ten thirty', 'nine fifteen', 'two forty five', 'eleven'))} "
            "tomorrow.",
            "hn_time",
        ),
        (f"Take {dose} mg twice a day for {g.r.randint(5, 14)} days.", "hn_dosage"),
        (f"Take one to two tablets every four to six hours, {dose} milligrams each.", "hn_dosage"),
        (
            f"Take {g.pick(('2', 'two', 'one'))} to {g.pick(('3', 'four', 'three'))} tablets for "
            f"{g.pick(('5', 'ten', 'seven'))} days.",
            "hn_dosage",
        ),
        (
            f"The copay is ${g.r.randint(10, 95)} and the balance is ${g.r.randint(1, 9)},"
            f"{g.r.randint(100, 999)}.{g.r.randint(10, 99)}.",
            "hn_price",
        ),
        (f"That comes to {g.pick(('forty five', 'one hundred twenty', 'sixty'))} dollars.", "hn_price"),
        (
            f"Your appointment ID is {g.r.randint(100, 999)} {g.r.randint(100, 999)} "
            f"{g.r.randint(1000, 9999)}.",
            "hn_labeled_id",
        ),
        (f"The Rx number is {g.r.randint(100, 999)}-{g.r.randint(1000, 9999)}.", "hn_labeled_id"),
        (f"The provider's NPI is 1{g.r.randint(100000000, 999999999)}.", "hn_npi"),
        (f"The MRN is {g.r.randint(1000, 9999)} {g.r.randint(1000, 9999)}.", "hn_labeled_id"),
        (
            f"The authorization number is {g.r.randint(1000, 9999)} {g.r.randint(1000, 9999)} "
            f"{g.r.randint(1000, 9999)}.",
            "hn_labeled_id",
        ),
        (f"My zip code is {g.r.randint(10000, 99999)}.", "hn_zip"),
        (f"The ZIP is {g.r.randint(10000, 99999)}-{g.r.randint(1000, 9999)}.", "hn_zip"),
        (f"Press {g.r.randint(1, 9)} for billing or {g.r.randint(1, 9)} for the pharmacy.", "hn_press"),
        (f"If this is an emergency, hang up and dial {g.pick(('911', '988'))}.", "hn_press"),
        (f"She is in room {g.r.randint(100, 999)} on floor {g.r.randint(2, 9)}.", "hn_room"),
        (f"Your blood pressure was {g.r.randint(100, 160)} over {g.r.randint(60, 99)}.", "hn_vitals"),
        (f"He is {g.r.randint(20, 99)} years old and was born in {g.r.randint(1930, 2000)}.", "hn_age_year"),
        (f"The card ending in {g.r.randint(1000, 9999)} was declined.", "hn_last4"),
        (f"Extension {g.r.randint(100, 9999)} is the billing desk.", "hn_bare_ext"),
        ("Count with me: one, two, three, four, five, six, seven.", "hn_counting"),
        ("Oh, okay, I see. Oh, that works.", "hn_oh"),
        (f"We met {g.cap(g.name())} at the clinic at noon.", "hn_at_dot"),
        (f"Please visit {g.pick(g.org)}{g.pick(g.kinds)}.example.com/billing to pay.", "hn_url"),
        (f"Log in at portal.{g.pick(g.org)}.example.org for your results.", "hn_url"),
        (f"The claim number is {_not_luhn(g)}.", "hn_claim16"),
        (
            f"I have been on it for {g.pick(('two', 'three', '4'))} to {g.pick(('five', 'six', '8'))} weeks "
            f"since {y}.",
            "hn_for_to",
        ),
        (f"I'll be there at {h} for {g.pick(('two', 'an'))} hours.", "hn_for_to"),
    ]
    text, fam = choices[g.r.randrange(len(choices))]
    return Line().say(text), fam


def _not_luhn(g: Gen) -> str:
    """A 16-digit claim number that fails Luhn (a Luhn-valid one is a [CARD] in any context)."""
    digits = "5021" + "".join(str(g.r.randint(0, 9)) for _ in range(12))
    if luhn_ok(digits):
        digits = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


_BEFORE = [
    "Hi, this is {name} from {org} clinic. ",
    "Okay. ",
    "Oh, okay, sure. ",
    "Yes, one second. ",
    "I'm at work right now, but ",
    "Your appointment is on March 4th at 3:30. ",
    "Thanks for holding. ",
    "So for the refill, ",
    "Dr. {Name} asked me to call. ",
    "We talked at the front desk. ",
]
_AFTER = [
    " I'll be home after 5.",
    " Thanks so much.",
    " The appointment is at 10:15 on Monday.",
    " That's the best way to reach me.",
    " Take 20 mg for 10 days.",
    " My zip is 30305.",
    " Press 2 if you need the pharmacy.",
]


def context(g: Gen, line: Line) -> Line:
    """Sentences around the entity that hold names, times, "at" and numbers of their own."""
    if g.chance(0.3):
        text = g.pick(_BEFORE).format(name=g.cap(g.name()), Name=g.cap(g.surname()), org=g.cap(g.pick(g.org)))
        first, label = line.parts[0]
        if label is None:
            lead = first[:1].lower() + first[1:] if text.endswith(", ") else first
            line.parts[0] = (text + lead, None)
    if g.chance(0.25):
        last, label = line.parts[-1]
        if label is None and last.rstrip().endswith((".", "?")):
            line.parts.append((g.pick(_AFTER), None))
    return line


def hard_negative_line(g: Gen) -> tuple[Line, str]:
    """Numbers and "at"/"dot" that look like entities but are not (dev rules 5 and 7)."""
    n = g.r.randint(2, 9)
    choices: list[tuple[str, str]] = [
        (f"Take {n} to {n + 2} tablets for {g.r.randint(5, 14)} days, then {n} for a week.", "hn_for_to"),
        (f"I'll be there at {n} for {g.pick(('two', 'three', 'an'))} hours, from 9 to 5.", "hn_for_to"),
        (f"The dose goes from {n}00 to {n + 1}00 milligrams for the next {n} weeks.", "hn_for_to"),
        (
            f"Your member ID is {g.r.randint(100, 999)} {g.r.randint(100, 999)} {g.r.randint(1000, 9999)}.",
            "hn_labeled_id",
        ),
        (f"The group number is {g.r.randint(10000000, 99999999)}.", "hn_labeled_id"),
        (
            f"The office is at {g.r.randint(100, 9999)} Main Street, suite {g.r.randint(100, 999)}.",
            "hn_address",
        ),
        (f"I saw {g.cap(g.name())} at the {g.pick(g.org)} clinic, the one by the lake.", "hn_at_dot"),
        (
            f"He weighs {g.r.randint(100, 250)} pounds and his glucose was {g.r.randint(80, 200)}.",
            "hn_vitals",
        ),
        (
            f"The balance is ${g.r.randint(1, 9)},{g.r.randint(100, 999)}, due on {g.r.randint(1, 12)}/{n}.",
            "hn_price",
        ),
        (f"Visit the website at {g.pick(g.org)} clinic dot org slash forms.", "hn_url"),
        (f"We won {n} to {n - 1} last night, and I ate at {n}.", "hn_for_to"),
        (f"It's {n} for {n + 1} dollars, or {n + 2} for {n + 5}.", "hn_for_to"),
        (f"Your appointment is {g.pick(_MONTHS)} {g.r.randint(1, 28)}, 2025, at {n}:30.", "hn_date"),
    ]
    text, fam = choices[g.r.randrange(len(choices))]
    return Line().say(text), fam


# Family makers and their weights (out of 100).
MAKERS = [
    (email_line, 34),
    (email_lost_at_line, 4),
    (email_readback_line, 2),
    (hard_negative_line, 6),
    (phone_line, 30),
    (phone_split_line, 2),
    (readback_line, 3),
    (card_line, 9),
    (multi_line, 4),
    (negative_line, 14),
]


# Families added later draw lines BASE_LINES and up only, so the earlier lines stay as they were (the rules
# were never tuned on the held-out ones); the split is the same i % HELD_OUT_EVERY.
BASE_LINES = 7200
LATER_MAKERS = [(asr_run_line, 3), (homophone_negative_line, 1)]


def generate(lines: int = LINES, seed: int = SEED) -> Iterator[dict[str, Any]]:
    """Rows {"id", "text", "redacted", "family", "split", "spans"} in order (spans: [start, end, label]
    of each entity in `text`); the same for the same
    arguments on any machine (random.Random with a str seed is stable across runs and platforms)."""
    makers = [m for m, w in MAKERS for _ in range(w)]
    later = [m for m, w in LATER_MAKERS for _ in range(w)]
    for i in range(lines):
        held_out = i % HELD_OUT_EVERY == 0
        rng = random.Random(f"{seed}:{i}")
        g = Gen(rng, held_out)
        line, fam = rng.choice(makers if i < BASE_LINES else later)(g)
        line = context(g, line)
        text = line.text()
        yield {
            "id": f"gen-{i:05d}",
            "text": text[:1].upper() + text[1:],
            "redacted": (red := line.redacted())[:1].upper() + red[1:],
            "family": fam,
            "split": "heldout" if held_out else "tune",
            "spans": line.spans(),
        }


_PLACEHOLDER_RE = re.compile(r"\[[A-Z_]+\]")


def removed(text: str, output: str) -> list[bool] | None:
    """Which characters of `text` a placeholder in `output` replaced (the redactor keeps every other
    character byte for byte); None if `output` is not `text` with some spans replaced by placeholders."""
    pieces = _PLACEHOLDER_RE.split(output)
    pattern = "(.+?)".join(re.escape(p) for p in pieces)
    m = re.fullmatch(pattern, text, re.DOTALL)
    if m is None:
        return None
    mask = [False] * len(text)
    for k in range(1, len(pieces)):
        for i in range(m.start(k), m.end(k)):
            mask[i] = True
    return mask


@dataclass(frozen=True, slots=True)
class Score:
    exact: bool
    leaked: bool  # a letter or digit of an entity is still in the output
    over: bool  # a letter or digit outside every entity was replaced


def score(row: dict[str, Any], output: str) -> Score:
    text = row["text"]
    if output == row["redacted"]:
        return Score(True, False, False)
    mask = removed(text, output)
    if mask is None:
        return Score(False, True, True)  # not a redaction of the text: count it as both
    inside = [False] * len(text)
    for start, end, _ in row["spans"]:
        for i in range(start, end):
            inside[i] = True
    leaked = any(c.isalnum() and ins and not rm for c, ins, rm in zip(text, inside, mask, strict=True))
    over = any(c.isalnum() and rm and not ins for c, ins, rm in zip(text, inside, mask, strict=True))
    return Score(False, leaked, over)


def split(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["split"] == name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data")
    args = parser.parse_args(argv)
    rows = list(generate(args.lines, args.seed))
    for name in ("tune", "heldout"):
        path = args.out / f"redaction_gen_{name}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for row in split(rows, name):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{len(split(rows, name))} lines -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
