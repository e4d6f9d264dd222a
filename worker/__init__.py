"""Worker: configuration, CLI, HTTP app, call sessions, access control and wiring.

No media or redaction logic lives here. Layout, by boundary:

- `worker.cli`: `converse-worker` (`main` parses; one module per command group; `errors.CommandError`;
  the `call` command's WHIP and media-streams clients).
- `worker.http`: the aiohttp app, bearer authentication, admission control, CORS, the OpenAPI document,
  and `worker.http.api`, the admin API under `/v1/`, one module per route group.
- `worker.auth`: identities (tokens -> `Principal`), TOTP, the role x permission table, `Security`.
- the call side: the engine and per-call pipeline, WebRTC/WHIP and telephony media streams.
- top level: `config` (flags and `CONVERSE_*` variables), `logs`, `metrics`, `runtime` (stores and keys of
  a command), `app_context` (what the HTTP handlers share), `key_rotation` (shared by CLI and HTTP).
"""
