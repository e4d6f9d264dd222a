"""Sealed recording format, version 1: one audio track as SFrame records. This docstring is the spec.

All integers are unsigned big-endian. A file is a header, then records, then (after a clean close) an
END record::

    header  = magic "\\x89CVSREC\\n" (8) | version u16 (=1) | body_len u16 | body
    body    = suite u16 | kid u64 | kek_version u32 | sample_rate u32 | frame_samples u32
              | channels u8 | track u16 | kek_id str8 | codec str8 | call_id str8
    str8    = length u8 | UTF-8 bytes
    record  = type u8 (0 DATA, 1 END) | length u32 (<= 65536) | frame (length bytes)
    frame   = SFrame protect(suite, track key, kid, ctr = record index, plaintext, metadata = M(type))
    DATA plaintext = timestamp u64 (48 kHz samples since track start) | codec payload (one Opus frame)
    END plaintext  = record count u64 (the number of DATA records before it)
    M(type) = SHA-256(header bytes) | track u16 | call_id str8 | type u8

Binding. M puts the whole header (suite, KID, KEK id/version, codec parameters, call id, track) and the
record type into every record's AAD, so a record cannot be moved to another call, track or file, a header
cannot be swapped or edited, and DATA/END cannot be exchanged, without authentication failing. The CTR is
the record index, so a reader detects removal and reordering (counter != index) and duplication (an
authentic record whose counter is below its index). The track key is random per track and wrapped
elsewhere under the KEK named in the header; a writer never resumes a file, so (key, KID, CTR) is unique.

Crashes and truncation. Records are appended and flushed by the caller; a kill leaves a prefix of whole
records and perhaps a partial last one. Readers accept that: `complete` is False, `truncated_after` is the
number of DATA records recovered, `trailing_bytes` the partial tail dropped. An attacker who cuts whole
records (or the END record) off the tail is indistinguishable from a crash here; the stored frame count
(and the END record on clean close) catch it one layer up. Bytes after END are an error.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from media.sframe import (
    SUITES,
    KeyContext,
    MalformedHeaderError,
    SFrameAuthError,
    SFrameError,
    parse_header,
)

MAGIC = b"\x89CVSREC\n"
VERSION = 1
DATA, END = 0, 1
MAX_RECORD_LEN = 1 << 16
_FIXED = struct.Struct(">HQIIIBH")  # suite, kid, kek_version, sample_rate, frame_samples, channels, track
_RECORD = struct.Struct(">BI")
_U64 = struct.Struct(">Q")


class RecordingError(SFrameError):
    """Base of sealed-recording failures."""


class RecordingFormatError(RecordingError):
    """Not a sealed recording this code can read (magic, version, header layout)."""


class RecordingIntegrityError(RecordingError):
    """A record was altered, removed, reordered, duplicated or followed by extra data."""


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    suite: int
    kid: int
    kek_id: str
    kek_version: int
    call_id: str
    track: int
    codec: str = "opus"
    sample_rate: int = 48000
    channels: int = 1
    frame_samples: int = 960


@dataclass(slots=True)
class RecordingContents:
    header: RecordingHeader
    frames: list[tuple[int, bytes]] = field(default_factory=list)  # (timestamp, payload)
    complete: bool = False  # END record present and its count matches
    truncated_after: int | None = None  # DATA records recovered before a crash/truncation; None if complete
    trailing_bytes: int = 0  # partial final record dropped


def _str8(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("recording header strings are at most 255 bytes")
    return bytes((len(raw),)) + raw


def encode_header(h: RecordingHeader) -> bytes:
    if h.suite not in SUITES:
        raise ValueError(f"unknown SFrame cipher suite {h.suite}")
    fixed = (h.suite, h.kid, h.kek_version, h.sample_rate, h.frame_samples, h.channels, h.track)
    try:
        body = _FIXED.pack(*fixed) + _str8(h.kek_id) + _str8(h.codec) + _str8(h.call_id)
    except struct.error as exc:
        raise ValueError("recording header field out of range") from exc
    return MAGIC + struct.pack(">HH", VERSION, len(body)) + body


def decode_header(data: bytes) -> tuple[RecordingHeader, int]:
    """(header, its length in bytes)."""
    if data[: len(MAGIC)] != MAGIC:
        raise RecordingFormatError("not a sealed recording (bad magic)")
    if len(data) < len(MAGIC) + 4:
        raise RecordingFormatError("sealed recording header truncated")
    version, body_len = struct.unpack_from(">HH", data, len(MAGIC))
    if version != VERSION:
        raise RecordingFormatError(f"unsupported sealed recording version {version}")
    start = len(MAGIC) + 4
    body = data[start : start + body_len]
    if len(body) != body_len:
        raise RecordingFormatError("sealed recording header truncated")
    try:
        suite, kid, kek_version, rate, samples, channels, track = _FIXED.unpack_from(body)
        pos, strings = _FIXED.size, []
        for _ in range(3):
            n = body[pos]
            if pos + 1 + n > body_len:
                raise IndexError
            strings.append(body[pos + 1 : pos + 1 + n].decode())
            pos += 1 + n
    except (struct.error, IndexError, UnicodeDecodeError):
        raise RecordingFormatError("sealed recording header malformed") from None
    if pos != body_len or suite not in SUITES:
        raise RecordingFormatError("sealed recording header malformed")
    kek_id, codec, call_id = strings
    header = RecordingHeader(suite, kid, kek_id, kek_version, call_id, track, codec, rate, channels, samples)
    return header, start + body_len


def _metadata(header_bytes: bytes, h: RecordingHeader, rtype: int) -> bytes:
    return (
        hashlib.sha256(header_bytes).digest()
        + h.track.to_bytes(2, "big")
        + _str8(h.call_id)
        + bytes((rtype,))
    )


class RecordingWriter:
    """Seals one track. Not resumable: a new file needs a new key (so (key, KID, CTR) never repeats)."""

    __slots__ = ("_ctx", "_ended", "_header_bytes", "_meta", "records")

    def __init__(self, header: RecordingHeader, base_key: bytes) -> None:
        self._header_bytes = encode_header(header)
        self._ctx = KeyContext(header.suite, base_key, header.kid)
        self._meta = (_metadata(self._header_bytes, header, DATA), _metadata(self._header_bytes, header, END))
        self.records = 0  # records sealed so far (DATA, then END)
        self._ended = False

    def header_bytes(self) -> bytes:
        return self._header_bytes

    def _record(self, rtype: int, plaintext: bytes) -> bytes:
        if self._ended:
            raise RecordingError("recording already ended")
        frame = self._ctx.protect(self.records, plaintext, self._meta[rtype])
        if len(frame) > MAX_RECORD_LEN:
            raise ValueError(f"record of {len(frame)} bytes exceeds {MAX_RECORD_LEN}")
        self.records += 1
        return _RECORD.pack(rtype, len(frame)) + frame

    def seal(self, timestamp: int, payload: bytes) -> bytes:
        """One complete DATA record: type, length and the SFrame of timestamp || payload."""
        return self._record(DATA, _U64.pack(timestamp) + payload)

    def end(self) -> bytes:
        record = self._record(END, _U64.pack(self.records))
        self._ended = True
        return record


def read_recording(data: bytes, key_for: Callable[[RecordingHeader], bytes]) -> RecordingContents:
    """Verify and open a sealed recording. Raises RecordingFormatError / RecordingIntegrityError."""
    header, pos = decode_header(data)
    header_bytes = data[:pos]
    ctx = KeyContext(header.suite, key_for(header), header.kid)
    meta = (_metadata(header_bytes, header, DATA), _metadata(header_bytes, header, END))
    out = RecordingContents(header)
    index, size = 0, len(data)
    while pos < size:
        if size - pos < _RECORD.size:
            break
        rtype, length = _RECORD.unpack_from(data, pos)
        if rtype not in (DATA, END):
            raise RecordingIntegrityError(f"record {index}: unknown record type {rtype}")
        if length > MAX_RECORD_LEN:
            raise RecordingIntegrityError(f"record {index}: length {length} exceeds {MAX_RECORD_LEN}")
        if pos + _RECORD.size + length > size:
            break  # partial final record: a crash mid-write
        frame = data[pos + _RECORD.size : pos + _RECORD.size + length]
        pos += _RECORD.size + length
        plaintext = _open_record(ctx, index, frame, meta[rtype])
        if rtype == END:
            if len(plaintext) != _U64.size:
                raise RecordingIntegrityError(f"record {index}: END record malformed")
            if (count := _U64.unpack(plaintext)[0]) != index:
                raise RecordingIntegrityError(
                    f"record {index}: END record counts {count} records, found {index}"
                )
            if pos != size:
                raise RecordingIntegrityError(f"record {index}: {size - pos} bytes after the END record")
            out.complete = True
            return out
        if len(plaintext) < _U64.size:
            raise RecordingIntegrityError(f"record {index}: data record too short ({len(plaintext)} bytes)")
        out.frames.append((_U64.unpack_from(plaintext)[0], plaintext[_U64.size :]))
        index += 1
    out.truncated_after = len(out.frames)
    out.trailing_bytes = size - pos
    return out


def _open_record(ctx: KeyContext, index: int, frame: bytes, metadata: bytes) -> bytes:
    try:
        kid, ctr, hlen = parse_header(frame)
    except MalformedHeaderError:
        raise RecordingIntegrityError(f"record {index}: malformed SFrame header") from None
    if kid != ctx.kid:
        raise RecordingIntegrityError(f"record {index}: KID {kid} does not match the header's KID {ctx.kid}")
    try:
        plaintext = ctx.unprotect_parsed(ctr, hlen, frame, metadata)
    except SFrameAuthError as exc:
        raise RecordingIntegrityError(f"record {index}: authentication failed") from exc
    # Authentic but misplaced: the counter says where the writer put it.
    if ctr < index:
        raise RecordingIntegrityError(f"record {index}: duplicate of record {ctr}")
    if ctr > index:
        raise RecordingIntegrityError(
            f"record {index}: expected counter {index}, found {ctr} (record removed or reordered)"
        )
    return plaintext
