"""The PHI sweep (invariant 1): scan every file a run wrote for the PHI a fixture spoke and for clear Opus.

Use it at the end of an end-to-end test:

    needles = PhiNeedles.from_fixture(FIXTURES / "call_phi")
    payloads = export_payloads(env, call_id, tracks=(0, 1), out_dir=tmp_path / "exports")  # audited read
    hits = sweep([data_dir, tmpdir, serve_log], needles, payloads=payloads, texts={"call stdout": out})
    assert hits == [], hits

What counts as a hit, in every file under the roots (and in each extra captured text):
- a PHI value (fixture.json `expected.phi`, plus the call `variables`), case-insensitively, as UTF-8/Latin-1,
  UTF-16-LE or UTF-16-BE (either byte alignment); variables (names) as whole words inside readable text
  only ("Doe" is PHI, "does" is not, and three letters turn up by chance in any 500 KB of ciphertext);
- any 7-digit window of a PHI number inside a number-like token of the file, after dropping separators
  (`555-123-4567`, `(555) 123 4567`, `4111 1111 1111 1111`) or spelling digits as words
  ("five five five one two three four");
- a 12-byte window of a clear Opus payload (taken from an authorised export of the call's recordings),
  found by sampling the file at a stride against the set of every window of every payload, so any payload
  of 12 + stride - 1 bytes or more copied anywhere is found. Near-constant payloads (silence, DTX) carry no
  audio and are skipped, since their bytes also occur by chance.
Hits name the file and the kind of needle (`phi[2] digits`), never the PHI itself, so CI logs stay clean.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import run_cli

WINDOW = 12
STRIDE = 4
MIN_DIGITS = 7
MIN_DISTINCT = 8  # a 12-byte window with fewer distinct bytes is too regular to prove a copy
_WORD_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
# A number-like token: digits joined by at most two separator characters at a time.
_NUMBER = re.compile(r"\d(?:[\s\-().+/]{0,2}\d)*")
_SPOKEN = re.compile(
    r"\b(?:" + "|".join(_WORD_DIGITS) + r")(?:[\s,\-]+(?:" + "|".join(_WORD_DIGITS) + r"))+\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class PhiNeedles:
    values: tuple[str, ...]  # searched as substrings, case-insensitively
    words: tuple[str, ...]  # searched as whole words, case-insensitively (names)
    numbers: tuple[str, ...]  # digit strings of PHI numbers (7+ digits)

    @classmethod
    def from_fixture(cls, fixture: Path) -> PhiNeedles:
        spec = json.loads((fixture / "fixture.json").read_text())
        phi = [str(v) for v in spec.get("expected", {}).get("phi", [])]
        variables = [str(v) for v in spec.get("variables", {}).values()]
        return cls.of(phi, variables)

    @classmethod
    def of(cls, phi: Iterable[str], words: Iterable[str] = ()) -> PhiNeedles:
        values = tuple(dict.fromkeys(p for p in phi if p))
        numbers = tuple(dict.fromkeys(d for p in values if len(d := re.sub(r"\D", "", p)) >= MIN_DIGITS))
        return cls(values, tuple(dict.fromkeys(w for w in words if w)), numbers)

    def label(self, kind: str, value: str) -> str:
        pool = {"phi": self.values, "word": self.words, "digits": self.numbers}[kind]
        return f"{kind}[{pool.index(value)}]"


def _views(data: bytes) -> list[tuple[str, str]]:
    """The file as text in every encoding a PHI string could be written in (lossless for Latin-1)."""
    views = [("text", data.decode("latin-1"))]
    for enc in ("utf-16-le", "utf-16-be"):
        for shift in (0, 1):
            chunk = data[shift:]
            chunk = chunk[: len(chunk) - len(chunk) % 2]
            views.append((f"{enc}+{shift}", chunk.decode(enc, errors="replace")))
    return views


def _readable(text: str) -> bool:
    return all(" " <= c <= "~" or c in "\t\r\n" for c in text)


def _digit_windows(numbers: Sequence[str]) -> dict[str, str]:
    return {n[i : i + MIN_DIGITS]: n for n in numbers for i in range(len(n) - MIN_DIGITS + 1)}


def scan_text(text: str, needles: PhiNeedles, windows: Mapping[str, str] | None = None) -> list[str]:
    """Labels of the PHI needles found in one text."""
    found: list[str] = []
    low = text.lower()
    for v in needles.values:
        if v.lower() in low:
            found.append(needles.label("phi", v))
    for w in needles.words:
        for m in re.finditer(r"(?<![a-z0-9])" + re.escape(w.lower()) + r"(?![a-z0-9])", low):
            # A short name occurs by chance in ciphertext; count it only inside readable text.
            if _readable(low[max(0, m.start() - 4) : m.end() + 4]):
                found.append(needles.label("word", w))
                break
    windows = _digit_windows(needles.numbers) if windows is None else windows
    if windows:
        tokens = [re.sub(r"\D", "", m.group()) for m in _NUMBER.finditer(text)]
        tokens += [
            "".join(_WORD_DIGITS[w] for w in re.findall(r"[a-z]+", m.group().lower()))
            for m in _SPOKEN.finditer(text)
        ]
        hit: set[str] = set()
        for digits in tokens:
            if len(digits) < MIN_DIGITS:
                continue
            for i in range(len(digits) - MIN_DIGITS + 1):
                n = windows.get(digits[i : i + MIN_DIGITS])
                if n is not None:
                    hit.add(n)
        found += [needles.label("digits", n) + " digits" for n in needles.numbers if n in hit]
    return found


def _as_written(stream: str) -> str:
    """A transcript as an address reader sees it: the cuts' punctuation gone, spoken "at"/"dot" written."""
    s = re.sub(r"[,.!?;:]+(?=\s|$)", "", stream.lower())
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\s*\b(?:dot|period)\b\s*", ".", s)
    s = re.sub(r"\s*(?:\bat\b|@)\s*", "@", s)
    return re.sub(r"\s*\bunderscore\b\s*", "_", s)


def stream_leaks(
    stream: str, numbers: Iterable[str] = (), emails: Iterable[tuple[str, str]] = ()
) -> list[str]:
    """What a call's stored transcript, read as one text (`stream`), still gives back of its entities:
    any 7-digit window of a PHI number (digits or spoken), or an email's domain or whole address
    (`emails`: (local part, domain)) in written or spoken form, spaces or not. Labels, never values."""
    nums = [n for n in numbers if n]
    found: list[str] = []
    if nums:  # also across the cuts' punctuation: "five five five, two one three. Four seven six two."
        unpunctuated = re.sub(r"[,.!?;:]+(?=\s|$)", " ", stream)
        found = list(
            dict.fromkeys(
                scan_text(stream, PhiNeedles.of(nums)) + scan_text(unpunctuated, PhiNeedles.of(nums))
            )
        )
    norm = _as_written(stream)
    squashed = norm.replace(" ", "")
    for i, (local, domain) in enumerate(emails):
        if domain.lower() in norm or domain.lower() in squashed:
            found.append(f"email[{i}] domain")
        if f"{local.lower()}@" in squashed:
            found.append(f"email[{i}] address")
    return found


def opus_windows(payloads: Iterable[bytes], width: int = WINDOW) -> set[bytes]:
    """Every `width`-byte window of every payload that is irregular enough to prove a copy."""
    out: set[bytes] = set()
    for p in payloads:
        for i in range(len(p) - width + 1):
            w = p[i : i + width]
            if len(set(w)) >= MIN_DISTINCT:
                out.add(w)
    return out


def scan_bytes_for_opus(data: bytes, windows: set[bytes], width: int = WINDOW, stride: int = STRIDE) -> int:
    """How many sampled positions of `data` start a window of a clear payload."""
    if not windows:
        return 0
    return sum(1 for i in range(0, len(data) - width + 1, stride) if data[i : i + width] in windows)


def _files(roots: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return files


def sweep(
    roots: Iterable[Path],
    needles: PhiNeedles,
    *,
    payloads: Iterable[bytes] = (),
    texts: Mapping[str, str] | None = None,
    exclude: Iterable[Path] = (),
) -> list[str]:
    """Every hit as `"<file or text name>: <needle label>"`; empty when clean. `exclude`: files or
    directories to skip (e.g. the export outputs, which hold clear audio by design)."""
    skip = [Path(p).resolve() for p in exclude]
    windows = _digit_windows(needles.numbers)
    opus = opus_windows(payloads)
    hits: list[str] = []
    for path in _files(roots):
        real = path.resolve()
        if any(real == s or s in real.parents for s in skip):
            continue
        data = path.read_bytes()
        found: list[str] = []
        for view, text in _views(data):
            found += [f"{label} ({view})" for label in scan_text(text, needles, windows)]
        copies = scan_bytes_for_opus(data, opus)
        if copies:
            found.append(f"clear opus ({copies} windows)")
        hits += [f"{path}: {f}" for f in dict.fromkeys(found)]
    for name, text in (texts or {}).items():
        hits += [f"<{name}>: {label}" for label in scan_text(text, needles, windows)]
        copies = scan_bytes_for_opus(text.encode("utf-8", "surrogateescape"), opus)
        if copies:
            hits.append(f"<{name}>: clear opus ({copies} windows)")
    return hits


def ogg_payloads(path: Path) -> list[bytes]:
    """The Opus packets of an Ogg Opus file (as `export` writes it)."""
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def export_payloads(
    env: Mapping[str, str], call_id: str, tracks: Iterable[int], out_dir: Path
) -> list[bytes]:
    """The clear Opus payloads of a call, read the authorised way (`converse-worker export`, audited)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payloads: list[bytes] = []
    for track in tracks:
        out = out_dir / f"{call_id}-{track}.ogg"
        run_cli(["export", "--call", call_id, "--track", str(track), "-o", str(out), "--json"], env)
        payloads += ogg_payloads(out)
    return payloads


def process_texts(proc: subprocess.CompletedProcess[str] | None = None, **named: str) -> dict[str, str]:
    """Captured outputs to sweep along with the files: `process_texts(cli_run, serve_log=...)`."""
    texts = dict(named)
    if proc is not None:
        texts["stdout"], texts["stderr"] = proc.stdout or "", proc.stderr or ""
    return texts
