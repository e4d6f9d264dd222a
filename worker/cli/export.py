"""`export`: unseal a track into a playable file, through the access check and an audit entry."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from media.export import as_opus, silence_budget_s, write_ogg_file, write_wav_file
from media.recording import RecordingError, RecordingHeader, RecordingIntegrityError, read_recording
from storage.errors import NotFoundError
from storage.keys import track_key_context
from worker.cli.errors import CommandError
from worker.cli.guard import cli_guard
from worker.runtime import open_runtime


async def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    fmt = args.format or ("wav" if out.suffix.lower() == ".wav" else "ogg")
    resource = f"call/{args.call_id}/track/{args.track}/recording"
    async with open_runtime(args) as rt:
        store = rt.stores.transcripts
        async with cli_guard(args, rt, "export_recordings", resource, call_id=args.call_id) as who:
            call = who.call
            if call is None:  # cli_guard names the call or refuses
                raise CommandError(f"no call {args.call_id}")
            try:
                info = await store.get_track(args.call_id, args.track)
                data = await rt.stores.recordings.read_track(args.call_id, args.track)
            except NotFoundError as exc:
                raise CommandError(str(exc)) from None

            def key_for(header: RecordingHeader) -> bytes:
                if header.call_id != args.call_id or header.track != args.track:
                    raise RecordingIntegrityError(
                        f"header: recording belongs to call {header.call_id} track {header.track}"
                    )
                return rt.keys.unwrap(info.wrapped_key, track_key_context(args.call_id, args.track))

            try:
                contents = read_recording(data, key_for)
            except RecordingError as exc:
                raise CommandError(f"call {args.call_id} track {args.track}: {exc}") from None
        frames = contents.frames
        note = None
        if not contents.complete:
            if call.status == "ended" and len(frames) < info.frames_sealed:
                # The call ended cleanly, so a short recording is tampering, not a crash.
                raise CommandError(
                    f"call {args.call_id} track {args.track}: recording truncated after record "
                    f"{len(frames) - 1}: {info.frames_sealed} records were sealed"
                )
            note = f"recording truncated after record {len(frames) - 1} (call did not end cleanly)"
        if fmt == "ogg":
            codec = contents.header.codec  # mu-law (media streams) is transcoded to Opus
            await asyncio.to_thread(lambda: write_ogg_file(out, as_opus(frames, codec)))
        else:
            budget = silence_budget_s(call.started_at, call.ended_at, datetime.now(UTC))
            await asyncio.to_thread(
                write_wav_file, out, frames, max_silence_s=budget, codec=contents.header.codec
            )
        result = {
            "call_id": args.call_id,
            "track": args.track,
            "output": str(out),
            "format": fmt,
            "frames": len(frames),
            "duration": round(len(frames) * 0.02, 2),
            "complete": contents.complete,
        }
        if note:
            result["warning"] = note
            print(f"warning: {note}", file=sys.stderr)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"wrote {out} ({result['duration']} s, {len(frames)} frames, {fmt})")
        return 0
