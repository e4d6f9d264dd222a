#!/usr/bin/env bash
# Install and run the main job on the embedded default (SQLite + local files under ./converse-data):
# the worker serving WebRTC calls over WHIP, with the demo page. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [[ -z "${CONVERSE_API_TOKEN:-}" ]]; then
  CONVERSE_API_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')
  export CONVERSE_API_TOKEN
  echo "API token for this run (paste it into the demo page): $CONVERSE_API_TOKEN" >&2
fi
exec .venv/bin/converse-worker serve "$@"
