#!/usr/bin/env bash
# Install and run the main job on the embedded default (SQLite + local files under ./converse-data):
# the worker serving WebRTC calls over WHIP, with the demo page. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export CONVERSE_API_TOKEN=${CONVERSE_API_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')}
exec .venv/bin/converse-worker serve "$@"
