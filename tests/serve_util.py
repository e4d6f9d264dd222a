"""Start a real `converse-worker serve` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO, cli_env

TOKEN = "test-static-token-0123456789"


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    env: dict[str, str]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@contextmanager
def serve(tmp: Path, **settings: str) -> Iterator[Server]:
    env = cli_env(
        tmp / "data",
        tmp / "keys" / "kek.json",
        CONVERSE_API_TOKEN=TOKEN,
        CONVERSE_HTTP_PORT="0",
        CONVERSE_LOOPBACK_ONLY="true",
        CONVERSE_LOG_FORMAT="json",
        **{f"CONVERSE_{k.upper()}": v for k, v in settings.items()},
    )
    log = tmp / "serve.log"
    fh = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "serve"],
        env=env,
        cwd=REPO,
        stdout=fh,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and url is None:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            m = re.search(r"serving on (http://[0-9.]+:\d+)", log.read_text())
            if m:
                url = m.group(1)
            else:
                time.sleep(0.2)
        assert url, "serve did not start: " + log.read_text()[-2000:]
        yield Server(proc, url, env, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fh.close()


def call_env(server: Server) -> dict[str, str]:
    env = dict(server.env)
    env["CONVERSE_LOOPBACK_ONLY"] = "true"
    return env


def start_call(server: Server, fixture: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "call",
            server.url,
            str(fixture),
            "--json",
            "--token",
            TOKEN,
            *extra,
        ],
        env=call_env(server),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
