"""The embedded stores import no scale-out driver: with asyncpg and aiobotocore unimportable (as on a plain
`pip install .`), the storage modules the embedded path uses import and work, and a scale-out setting names
the one extra to install and the package that is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

BLOCK = """
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""

EMBEDDED = """
import asyncio
from pathlib import Path

import storage.checked, storage.local, storage.memory, storage.retention
import storage.sql.sqlite, storage.sql.store
from storage.factory import open_stores

async def main():
    stores = await open_stores(Path(DATA))
    print(len(await stores.transcripts.list_calls()))
    await stores.close()

asyncio.run(main())
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"asyncpg", "aiobotocore", "botocore"})
print(loaded)
"""

SCALE = """
import asyncio
from pathlib import Path

from storage.errors import StorageError
from storage.factory import open_stores

try:
    asyncio.run(open_stores(Path(DATA), database_url="postgresql://127.0.0.1:1/x", object_store_url="s3://b"))
except StorageError as exc:
    print(exc)
"""


def run(code: str, blocked: set[str], data: Path) -> str:
    script = f"BLOCKED = {sorted(blocked)!r}\nDATA = {str(data)!r}\n{BLOCK}\n{code}"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout


def test_embedded_storage_never_imports_a_scale_out_driver(tmp_path: Path) -> None:
    assert run(EMBEDDED, {"asyncpg", "aiobotocore", "botocore"}, tmp_path / "data").splitlines() == [
        "0",
        "[]",
    ]


@pytest.mark.parametrize(
    ("blocked", "line"),
    [
        (
            {"asyncpg", "aiobotocore", "botocore"},
            "CONVERSE_DATABASE_URL needs the PostgreSQL/S3 backend, which is "
            "not installed (asyncpg is missing): pip install 'converse-worker[scale]'",
        ),
        (
            {"aiobotocore"},
            "CONVERSE_OBJECT_STORE_URL needs the PostgreSQL/S3 backend, which is not installed "
            "(aiobotocore is missing): pip install 'converse-worker[scale]'",
        ),
    ],
)
def test_a_missing_driver_names_the_extra(tmp_path: Path, blocked: set[str], line: str) -> None:
    assert run(SCALE, blocked, tmp_path / "data").splitlines() == [line]
