"""A fake `worker.calls.contracts.Engine` that records what the call edges hand it (until worker.calls.engine
lands)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from media.frames import EncodedFrame
from storage.protocols import OrgSettings
from worker.calls.contracts import CallSummary, LiveEvent


@dataclass(slots=True)
class FakePipeline:
    index: int
    push_delay_s: float = 0.0  # simulate a slow pipeline (backpressure)
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)
    frames: list[EncodedFrame] = field(default_factory=list)
    lost: int = 0

    async def push(self, frame: EncodedFrame) -> None:
        if self.push_delay_s:
            await asyncio.sleep(self.push_delay_s)
        self.frames.append(frame)
        self.first_frame.set()

    def count_lost(self, frames: int) -> None:
        self.lost += frames


@dataclass(slots=True)
class FakeSession:
    call_id: str
    org_id: str
    source: str
    variables: Mapping[str, str] | None
    push_delay_s: float = 0.0
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)  # any track's first frame
    tracks: list[FakePipeline] = field(default_factory=list)
    finishes: list[tuple[str, str | None]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    settings: OrgSettings | None = None  # the org's settings, as the real engine fixes them at start
    e2ee: Any = None  # worker.webrtc.e2ee.E2eeState, attached by the WHIP on_sframe hook

    async def open_track(self) -> FakePipeline:
        pipeline = FakePipeline(
            index=len(self.tracks), push_delay_s=self.push_delay_s, first_frame=self.first_frame
        )
        self.tracks.append(pipeline)
        return pipeline

    async def finish(self, status: str = "ended", reason: str | None = None) -> CallSummary:
        self.finishes.append((status, reason))
        self.finished.set()
        received = sum(len(t.frames) for t in self.tracks)
        return CallSummary(
            call_id=self.call_id,
            status=status,
            reason=reason,
            tracks=len(self.tracks),
            frames_received=received,
            frames_sealed=received,
            frames_lost=sum(t.lost for t in self.tracks),
            utterances=0,
            failed_utterances=0,
            duration_s=time.monotonic() - self.started,
        )

    async def live(self) -> AsyncIterator[LiveEvent]:
        await self.finished.wait()
        yield LiveEvent(self.call_id, 0, "ended", "", 0.0, 0.0)


@dataclass(slots=True)
class FakeEngine:
    push_delay_s: float = 0.0
    e2ee_required: bool = False
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    call_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def start_call(
        self,
        *,
        org_id: str,
        source: str,
        fixture: str | None = None,
        variables: Mapping[str, str] | None = None,
        call_id: str | None = None,
    ) -> FakeSession:
        session = FakeSession(
            call_id=call_id or uuid.uuid4().hex,
            org_id=org_id,
            source=source,
            variables=variables,
            push_delay_s=self.push_delay_s,
            settings=OrgSettings(org_id, e2ee_required=self.e2ee_required),
        )
        self.sessions[session.call_id] = session
        self.call_started.set()
        return session

    def get_call(self, call_id: str) -> FakeSession | None:
        return self.sessions.get(call_id)

    def only(self) -> FakeSession:
        (session,) = self.sessions.values()
        return session
