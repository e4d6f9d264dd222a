"""The real base model (the `base` extra, joined into a test cache): the short-window decode pinned to
English with beam 5 and a domain prompt, `replay --model base` end to end, and serve's /metrics naming it."""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.asr import WhisperTranscriber
from media.models import resolve
from media.wer import normalize
from tests.serve_util import serve
from tests.support import FIXTURES, cli_env, json_lines, run_cli
from tests.test_asr_model import decode_16k, utterances

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root)
    yield root
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.mark.parametrize(("beam", "prompt"), [(1, None), (5, "Appointment, Tuesday, milligrams.")])
def test_base_short_window_decodes_english(cache: Path, beam: int, prompt: str | None) -> None:
    model = resolve("base", None)
    assert Path(model.path).is_relative_to(cache / "converse-worker" / "models")
    asr = WhisperTranscriber(model.path, beam_size=beam, prompt=prompt)
    assert asr._model.model.is_multilingual
    tok = asr._tokenizer
    assert tok.sot_sequence == [tok.sot, tok.language, tok.transcribe] and tok.language_code == "en"
    first, second = (asr.transcribe(u.pcm) for u in utterances(decode_16k(FIXTURES / "example_call.flac")))
    assert {"like", "appointment", "next", "week"} <= set(normalize(first.text))
    assert {"tuesday", "morning"} <= set(normalize(second.text))
    assert asr.fallbacks == 0 and first.words  # word times from the short encoder output


def test_replay_model_base_end_to_end(cache: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "kek.json", CONVERSE_MODEL="base", XDG_CACHE_HOME=str(cache))
    proc = run_cli(["replay", "--json", str(FIXTURES / "example_call.flac")], env)
    model_line = [e for e in json_lines(proc.stderr) if e.get("event") == "asr_model"]
    assert model_line and model_line[0]["model"] == "base"
    assert model_line[0]["compute_type"].startswith("int8")
    finals = [e for e in json_lines(proc.stdout) if "text" in e]
    words = set(normalize(" ".join(e["text"] for e in finals)))
    assert {"appointment", "morning"} <= words  # base hears "Tuesday" as "To stay" after Opus
    assert not list((tmp_path / "data").rglob("model.bin*"))  # the joined model lives outside the data dir


def test_serve_metrics_name_the_model(cache: Path, tmp_path: Path) -> None:
    with serve(tmp_path, model="base") as srv:
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    assert re.search(r'^converse_asr_model_info\{compute_type="int8\w*",model="base"\} 1\.0$', text, re.M)
