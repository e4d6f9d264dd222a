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


# Long real-time files start first, so the 10-minute soak overlaps everything else under xdist.
_FIRST = (
    "test_soak.py",
    "test_pods.py",
    "test_outage_calls.py",
    "test_faults_serve.py",
    "test_serve_e2e.py",
    "test_storage_outage.py",
    "test_fixtures_accuracy.py",
    "test_storage_scale.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_FIRST)))
