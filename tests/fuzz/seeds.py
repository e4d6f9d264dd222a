"""Seed inputs and mutators shared by the hypothesis fuzz tests (tests/test_fuzz_*.py) and the atheris
harnesses (tests/fuzz/fuzz_*.py): a real aiortc offer, sealed recordings, Opus packets, audio files.

Mutators take a `random.Random` so that hypothesis (`st.randoms()`) and atheris (a seed drawn from the
fuzzer's bytes) drive the same code.
"""

from __future__ import annotations

import io
import random
import re
import unicodedata
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from media.frames import FRAME_SAMPLES
from media.recording import RecordingHeader, RecordingWriter
from redact.card import luhn_valid
from redact.context import WINDOW, Cue, cue_index

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FLAC = ROOT / "fixtures" / "example_call.flac"

# An offer as aiortc 1.x writes it for one send-only Opus track (candidates are documentation addresses).
OFFER = (
    "v=0\r\n"
    "o=- 4004787552 4004787552 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=msid-semantic:WMS *\r\n"
    "m=audio 47233 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 192.0.2.2\r\n"
    "a=sendonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=mid:0\r\n"
    "a=msid:c67de3b9-c2d9-4d2f-bafd-80368bab3481 73d61d2a-fa43-4ecc-95e6-a5125c8eae12\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=rtcp-mux\r\n"
    "a=ssrc:2211251076 cname:c217827a-2abd-48a9-b057-742e1c6bffc7\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 47233 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:SCXa\r\n"
    "a=ice-pwd:ahmln9hvSBQItw2xKiJGAF\r\n"
    "a=fingerprint:sha-256 E8:25:17:26:CD:D1:88:47:14:7A:39:84:3A:C9:8E:57:F1:BE:D0:5B:D4:3E:7B:DF:30:35:"
    "2C:17:9A:98:60:95\r\n"
    "a=setup:actpass\r\n"
)
OFFER_LINES = OFFER.split("\r\n")[:-1]
# Tokens a mutated SDP line is made of: field names, numbers at their limits, directions, codecs.
SDP_TOKENS = [
    "v=0", "m=audio", "m=video", "m=application", "a=mid:", "a=mid", "a=rtpmap:", "opus/48000/2",
    "opus/48000", "PCMU/8000", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=setup:",
    "a=group:BUNDLE", "a=ice-ufrag:", "a=fingerprint:sha-256", "c=IN IP6 ::1", "0", "-1", "96", "127",
    "65536", "4294967296", "18446744073709551616", " ", ":", "/", "=", "\r\n", "\n", "\x00", "é", "\u2028",
]  # fmt: skip


def mutate_sdp(rnd: random.Random, text: str = OFFER, steps: int = 3) -> str:
    lines = text.split("\r\n")
    for _ in range(rnd.randint(1, steps)):
        if not lines:
            lines = [""]
        i = rnd.randrange(len(lines))
        line = lines[i]
        op = rnd.randrange(7)
        if op == 0 and line:  # replace one character
            p = rnd.randrange(len(line))
            lines[i] = line[:p] + rnd.choice(SDP_TOKENS) + line[p + 1 :]
        elif op == 1:  # truncate a line
            lines[i] = line[: rnd.randrange(len(line) + 1)]
        elif op == 2:  # delete a line
            del lines[i]
        elif op == 3:  # duplicate a seed line elsewhere
            lines.insert(i, rnd.choice(OFFER_LINES))
        elif op == 4:  # insert a token
            p = rnd.randrange(len(line) + 1)
            lines[i] = line[:p] + rnd.choice(SDP_TOKENS) + line[p:]
        elif op == 5:  # swap two lines
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], line
        else:  # change a number
            lines[i] = re.sub(r"\d+", lambda _: rnd.choice(SDP_TOKENS[19:25]), line, count=1)
    return "\r\n".join(lines)


# -- bytes ---------------------------------------------------------------------------------------------


def mutate_bytes(rnd: random.Random, data: bytes, steps: int = 4) -> bytes:
    """Bit flips, byte sets, truncations, insertions, deletions, duplications and extensions."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, steps)):
        op = rnd.randrange(8)
        if not b:
            b += rnd.randbytes(rnd.randint(1, 8))
            continue
        # Half the edits land in the first 256 bytes, where headers are (FLAC, Ogg, WAV, SFrame, recording).
        p = rnd.randrange(min(len(b), 256) if rnd.random() < 0.5 else len(b))
        if op == 0:
            b[p] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[p] = rnd.choice([0, 1, 0x7F, 0x80, 0xFF, rnd.randrange(256)])
        elif op == 2:
            del b[rnd.randrange(len(b) + 1) :]
        elif op == 3:
            b[p:p] = rnd.randbytes(rnd.randint(1, 16))
        elif op == 4:
            del b[p : p + rnd.randint(1, 16)]
        elif op == 5:
            q = rnd.randrange(len(b))
            b[p:p] = b[q : q + rnd.randint(1, 32)]
        elif op == 6:
            b += rnd.randbytes(rnd.randint(1, 32))
        else:  # an interesting 32-bit value, either byte order
            value = rnd.choice([0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF])
            b[p : p + 4] = value.to_bytes(4, rnd.choice(["big", "little"]))
    return bytes(b)


# -- sealed recordings ---------------------------------------------------------------------------------

RECORDING_KEY = bytes(range(32))


def recording_header(suite: int = 4) -> RecordingHeader:
    return RecordingHeader(suite=suite, kid=9, kek_id="local", kek_version=1, call_id="call-fuzz", track=1)


def sealed_recording(
    suite: int = 4, frames: int = 6, *, end: bool = True
) -> tuple[bytes, list[int], list[tuple[int, bytes]]]:
    """(file bytes, offsets where each record starts (and the end), the sealed (timestamp, payload) list)."""
    writer = RecordingWriter(recording_header(suite), RECORDING_KEY)
    sealed = [(FRAME_SAMPLES * i, bytes([i]) * (20 + 7 * i)) for i in range(frames)]
    data = writer.header_bytes()
    offsets = [len(data)]
    for ts, payload in sealed:
        data += writer.seal(ts, payload)
        offsets.append(len(data))
    if end:
        data += writer.end()
        offsets.append(len(data))
    return data, offsets, sealed


def recording_key(_header: RecordingHeader) -> bytes:
    return RECORDING_KEY


# -- Opus and audio files ------------------------------------------------------------------------------


def tone(seconds: float, freq: float = 440.0, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(rate * seconds))
    return (np.sin(2 * np.pi * freq * t / rate) * 8000).astype(np.int16)


def opus_packets(count: int = 10) -> list[bytes]:
    from media.opus import OpusEncoder

    encoder = OpusEncoder()
    pcm = tone(count * FRAME_SAMPLES / 48000)
    packets = [
        encoder.encode(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].tobytes()) for i in range(count)
    ]
    return [p for p in packets if p]


def wav_bytes(pcm: np.ndarray, rate: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def ogg_opus_bytes(tmp: Path, seconds: float = 0.5) -> bytes:
    from media.opus import write_ogg_opus

    packets = opus_packets(int(seconds * 50))
    path = tmp / "seed.ogg"
    write_ogg_opus(path, [(FRAME_SAMPLES * i, p) for i, p in enumerate(packets)])
    return path.read_bytes()


def audio_seeds(tmp: Path) -> dict[str, bytes]:
    """Suffix -> a valid file: the example call (FLAC, 9 s), a generated WAV and a generated Ogg Opus."""
    return {
        ".flac": EXAMPLE_FLAC.read_bytes(),
        ".wav": wav_bytes(tone(0.25, rate=8000), rate=8000),
        ".ogg": ogg_opus_bytes(tmp),
    }


Mutator = Callable[[random.Random, bytes], bytes]


# -- redaction ---------------------------------------------------------------------------------------

_RUN = re.compile(r"(?<!\d)\d+(?!\d)")  # \d is any Unicode decimal digit, as ASR or a client may send


def surviving_runs(text: str) -> list[str]:
    """Digit runs in redacted `text` that are PHI: any Luhn-valid 13-19-digit run, and any 10-digit run
    except one after an ID label. The dev rules keep a phone-shaped number the speaker labels as another
    identifier ("MRN 5551234567", "NPI 1669428715") on purpose: it is no phone, and the call's own MRN is
    redacted as a runtime variable. The redactor keeps such a run only when the nearest cue before it is
    the label; this check is looser, any label (the redactor's list of them, `redact.context`) within the
    window it looks back over, so as not to re-implement the nearest-cue rule: a phone cue between label
    and run is not checked here (tests/test_fuzz_redact.py is)."""
    bad = []
    labels = [s for s, e, cue in cue_index(text) if cue is Cue.OTHER_ID]
    for m in _RUN.finditer(text):
        run = m.group()
        ascii_run = "".join(str(unicodedata.digit(c)) for c in run)
        if 13 <= len(ascii_run) <= 19 and luhn_valid(ascii_run):
            bad.append(run)
        elif len(ascii_run) == 10 and not any(m.start() - WINDOW <= s < m.start() for s in labels):
            bad.append(run)
    return bad
