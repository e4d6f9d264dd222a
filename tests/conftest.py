from __future__ import annotations

import subprocess
import sys
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


# Long real-time files start first, so the 10-minute soak overlaps everything else under xdist (the test
# command passes --no-loadscope-reorder: xdist would otherwise queue files by test count, one-test files
# last).
_FIRST = (
    "test_soak.py",
    "test_pods.py",
    "test_outage_calls.py",
    "test_faults_serve.py",
    "test_serve_e2e.py",
    "test_storage_outage.py",
    "test_fixtures_accuracy.py",
    "test_bench_smoke.py",
    "test_phi_sweep.py",
    "test_webrtc_cpu.py",
    "test_storage_scale.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_FIRST)))


def pytest_configure(config: pytest.Config) -> None:
    """Rebuild the mypyc modules of `redact` if its source changed, before any test imports it (on the
    xdist controller only; a no-op when current): tests never run stale compiled code."""
    if hasattr(config, "workerinput"):
        return
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(repo / "scripts" / "build_native.py")], cwd=repo, check=False)
