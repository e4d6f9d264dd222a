"""Durable SFrame counter reservations (`media.sframe.CounterStore`) in a directory of small files.

One file per (key fingerprint, KID) holds the next unreserved CTR as decimal text. Updates write a temp
file, fsync it, rename it over the old one and fsync the directory, so after a crash the file holds either
the old or the new mark, never a torn one. The fingerprint is an HMAC of the key, never the key itself.
Files are 0600 in a 0700 directory. Calls block on fsync: call from a thread, or reserve large blocks.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from storage.errors import StorageError


class FileCounterStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self._dir.stat().st_mode) & 0o077:
            os.chmod(self._dir, 0o700)  # tighten a directory created earlier under a loose umask

    def _path(self, key_fingerprint: bytes, kid: int) -> Path:
        if not key_fingerprint or kid < 0:
            raise ValueError("counter store needs a fingerprint and a non-negative KID")
        return self._dir / f"{key_fingerprint.hex()}-{kid}.ctr"

    def load(self, key_fingerprint: bytes, kid: int) -> int:
        path = self._path(key_fingerprint, kid)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"counter file for KID {kid} is unreadable") from exc
        if not text.endswith("\n") or not text[:-1].isdigit():
            # Fail closed: guessing a counter could reuse a nonce.
            raise StorageError(f"counter file for KID {kid} is corrupt")
        return int(text)

    def reserve(self, key_fingerprint: bytes, kid: int, upto: int) -> None:
        path = self._path(key_fingerprint, kid)
        if upto <= self.load(key_fingerprint, kid):
            return  # marks only move up
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".ctr-")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{upto}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
