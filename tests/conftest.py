from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.servers"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    return d


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "kek.json"
