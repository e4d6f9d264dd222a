"""Admin API: recording export. Unseals a track's recording and answers it as Ogg Opus or WAV.

Everything runs off the event loop (unwrap, AES-GCM opening, muxing, decoding), and nothing in the clear
touches the disk: the Ogg file is muxed into an `io.BytesIO`; the WAV is decoded and streamed in bounded
pieces (`media.export`: gaps become silence, capped by the call's wall-clock length).
Any integrity failure of the sealed recording answers 409 with the record's one-line message, before any
audio byte is sent (the whole recording is verified first).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Final

import structlog
from aiohttp import web

from media.export import as_opus, ogg_bytes, pcm_pieces, silence_budget_s, wav_header
from media.recording import RecordingError, RecordingHeader, RecordingIntegrityError, read_recording
from storage.errors import KeyDestroyedError, NotFoundError, StorageError
from storage.keys import track_key_context
from storage.protocols import MAX_TRACKS
from worker.auth.access import Permission
from worker.http.api.calls import authorize_call
from worker.http.api.model import CALL_ID, TRACK, Media, Route, query
from worker.http.auth import ApiError, ctx_of

log = structlog.get_logger("worker.http.api.recording")

FORMATS: Final = {"ogg": "audio/ogg", "wav": "audio/wav"}


def track_of(request: web.Request) -> int:
    raw = request.match_info.get("track", "")
    if not raw.isdigit() or len(raw) > 4 or int(raw) >= MAX_TRACKS:
        raise ApiError(400, f"invalid track number: expected an integer in 0..{MAX_TRACKS - 1}")
    return int(raw)


async def export_recording(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    track = track_of(request)
    fmt = request.query.get("format", "ogg")
    if fmt not in FORMATS:
        raise ApiError(400, "format must be ogg or wav")
    call = await authorize_call(request, f"/track/{track}/recording")
    cid = call.call_id
    try:
        info = await ctx.stores.transcripts.get_track(cid, track)
        if info.key_destroyed:
            raise ApiError(404, f"recording of call {cid} track {track} was deleted")
        data = await ctx.stores.recordings.read_track(cid, track)
    except NotFoundError:
        raise ApiError(404, f"no recording for call {cid} track {track}") from None

    def key_for(header: RecordingHeader) -> bytes:
        if header.call_id != cid or header.track != track:
            raise RecordingIntegrityError(
                f"header: recording belongs to call {header.call_id} track {header.track}"
            )
        return ctx.keys.unwrap(info.wrapped_key, track_key_context(cid, track))

    try:
        contents = await asyncio.to_thread(read_recording, data, key_for)
    except RecordingError as exc:
        raise ApiError(409, f"call {cid} track {track}: {exc}") from None
    except KeyDestroyedError:
        raise ApiError(404, f"recording of call {cid} track {track} was deleted") from None
    except StorageError as exc:  # the message may name the key file: logged, not answered
        log.error("track_key_unwrap_failed", call_id=cid, track=track, error=type(exc).__name__)
        raise ApiError(409, f"call {cid} track {track}: the track key cannot be unwrapped") from None
    frames = contents.frames
    if not contents.complete and call.status == "ended" and len(frames) < info.frames_sealed:
        raise ApiError(  # the call ended cleanly, so a short recording is tampering, not a crash
            409,
            f"call {cid} track {track}: recording truncated after record {len(frames) - 1}: "
            f"{info.frames_sealed} records were sealed",
        )
    headers = {
        "Content-Disposition": f'attachment; filename="{cid}-track{track}.{fmt}"',
        "Cache-Control": "no-store",
        "Converse-Recording-Complete": "true" if contents.complete else "false",
        "Converse-Recording-Frames": str(len(frames)),
    }
    if fmt == "ogg":
        codec = contents.header.codec  # mu-law (media streams) is transcoded to Opus
        body = await asyncio.to_thread(lambda: ogg_bytes(as_opus(frames, codec)))
        return web.Response(body=body, content_type=FORMATS[fmt], headers=headers)
    resp = web.StreamResponse(headers={**headers, "Content-Type": FORMATS[fmt]})
    await resp.prepare(request)
    await resp.write(wav_header())
    budget = silence_budget_s(call.started_at, call.ended_at, datetime.now(UTC))
    pieces = pcm_pieces(
        frames, max_silence_s=budget, codec=contents.header.codec
    )  # bounded pieces, each decoded off the loop
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        await resp.write(piece)
    await resp.write_eof()
    return resp


ROUTES: Final = (
    Route(
        "GET",
        "/v1/calls/{call_id}/tracks/{track}/recording",
        export_recording,
        "exportRecording",
        "Unseal and download one track's recording (Ogg Opus or WAV)",
        Permission.EXPORT_RECORDINGS,
        Media(
            "The recording",
            {t: {"schema": {"type": "string", "contentMediaType": t}} for t in FORMATS.values()},
        ),
        errors=(400, 404, 409),
        params=(CALL_ID, TRACK, query("format", {"enum": list(FORMATS), "default": "ogg"})),
    ),
)
