"""`transcripts list|show`: stored (redacted) transcripts, through the access check and an audit entry."""

from __future__ import annotations

import argparse
import json

from storage.errors import NotFoundError
from worker.cli.errors import CommandError
from worker.cli.guard import cli_guard
from worker.records import call_json, utterance_json
from worker.runtime import open_runtime

# How each call came in, by the engine's `source`: a WHIP call is WebRTC, a replay a replay.
CHANNELS = {"whip": "webrtc", "media-streams": "media-streams", "replay": "replay"}


async def run(args: argparse.Namespace) -> int:
    async with open_runtime(args) as rt:
        store = rt.stores.transcripts
        if args.action == "list":
            async with cli_guard(args, rt, "list_calls", "calls") as who:
                scope = who.org_scope  # with a token: the token's organisation only, as over HTTP
                calls = await store.list_calls(scope)
            for c in calls:
                if scope is not None and c.org_id != scope:
                    continue
                row = {
                    **call_json(c),
                    "channel": CHANNELS.get(c.source, c.source),
                    "external_id": c.external_id,
                }
                if args.json:
                    print(json.dumps(row))
                else:
                    print(f"{c.call_id}  {c.started_at}  {c.status:7}  {c.source:6}  {c.fixture or ''}")
            return 0
        resource = f"call/{args.call_id}/transcript"
        async with cli_guard(args, rt, "read_transcripts", resource, call_id=args.call_id):
            try:
                utts = await store.get_utterances(args.call_id)
            except NotFoundError:  # deleted by retention meanwhile
                raise CommandError(f"no call {args.call_id}") from None
        for u in utts:
            if args.json:
                print(json.dumps({"call_id": u.call_id, **utterance_json(u)}, ensure_ascii=False))
            else:
                print(f"[t{u.track} {u.start:7.2f}-{u.end:7.2f}] {u.text}")
        return 0
