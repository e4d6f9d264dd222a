"""One S3 bucket's client (aiobotocore), for every S3-backed store: the recordings, the audit checkpoints.

URL: `s3://BUCKET?endpoint=http://HOST:PORT[&region=R]`; credentials from the standard `AWS_*` variables;
region defaults to us-east-1; path-style addressing. The client is created at the first use. Errors map to
the storage tree with messages naming the bucket, the endpoint and the S3 error code, never object data: an
endpoint that cannot be reached, times out or answers 5xx raises StorageUnavailableError.

Imported only where S3 is configured (`storage.factory` opens the store lazily): a plain install has no
aiobotocore.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage.errors import NotFoundError, StorageError, StorageUnavailableError, StoreClosedError

_BUSY = ("SlowDown", "ServiceUnavailable", "RequestTimeout")


def parse_s3_url(url: str) -> tuple[str, str | None, str]:
    """`s3://BUCKET?endpoint=...&region=...` -> (bucket, endpoint or None, region)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.hostname or parts.path not in ("", "/"):
        raise StorageError("object store URL must look like s3://BUCKET?endpoint=http://HOST:PORT")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise StorageError(f"object store URL has unknown parameters: {', '.join(unknown)}")
    endpoint = query.get("endpoint", [None])[-1]
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise StorageError("object store endpoint must be an http:// or https:// URL")
    region = query.get("region", [None])[-1] or os.environ.get("AWS_REGION") or "us-east-1"
    return parts.hostname, endpoint, region


class S3Bucket:
    """The client of the bucket of `url`. `where` (for messages) is `s3://BUCKET[/prefix][ at ENDPOINT]`;
    `name` says what uses it: `StoreClosedError("<name> <where> is closed")`."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        prefix: str = "",
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
    ) -> None:
        self.bucket, self.endpoint, self.region = parse_s3_url(url)
        self.where = f"s3://{self.bucket}{'/' + prefix if prefix else ''}"
        self.where += f" at {self.endpoint}" if self.endpoint else ""
        self.name = name
        self._config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},  # the spool, not botocore, rides out outages
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._opening = asyncio.Lock()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosedError(f"{self.name} {self.where} is closed")

    async def _ensure_client(self) -> Any:
        async with self._opening:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3", endpoint_url=self.endpoint, region_name=self.region, config=self._config
                    )
                )
                self._stack = stack
            return self._client

    @asynccontextmanager
    async def client(self, what: str = "") -> AsyncIterator[Any]:
        """The client, for requests on this bucket. With `what` (an object, in words), a missing object
        raises `NotFoundError("<what> not found")`; a missing bucket raises StorageError saying so."""
        self.check_open()
        try:
            yield await self._ensure_client()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code = str(err.get("Code", "?"))
            if code in ("NoSuchKey", "404", "NotFound") and what:
                raise NotFoundError(f"{what} not found") from None
            if code == "NoSuchBucket" or (code in ("404", "NotFound") and not what):
                raise StorageError(f"bucket {self.bucket} does not exist ({self.where})") from None
            if status >= 500 or code in _BUSY:
                raise StorageUnavailableError(f"{self.where}: {code} (HTTP {status})") from None
            raise StorageError(f"{self.where}: {code} (HTTP {status})") from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:  # refused, reset, timed out
            raise StorageUnavailableError(f"{self.where}: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        async with self._opening:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
