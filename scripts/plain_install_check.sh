#!/usr/bin/env bash
# A real plain install: `pip install .` with no extras into a virtual environment of its own, then the
# embedded commands as a user runs them (replay, transcripts list and show, export, audit verify, keys
# status), from outside the checkout so nothing is imported from the source tree. scripts/test.sh runs it;
# it fails if asyncpg or aiobotocore came along, or if any command fails.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=$repo/build/plain-venv
PY=${PYTHON:-python3}

rm -rf "$venv"
"$PY" -m venv "$venv"
log=$repo/build/plain-install.log
if ! { "$venv/bin/python" -m pip install -q --upgrade pip && "$venv/bin/python" -m pip install -q "$repo"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "plain-install: pip install . failed (full log: $log)" >&2
  exit 1
fi
for extra_only in asyncpg aiobotocore; do
  if "$venv/bin/python" -c "import $extra_only" 2>/dev/null; then
    echo "plain-install: $extra_only is installed without the scale extra" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export CONVERSE_DATA_DIR=$work/data CONVERSE_KEK_FILE=$work/keys/kek.json CONVERSE_ASR_THREADS=2
cw=$venv/bin/converse-worker

step() { echo "plain-install: $*" >&2; }
step "replay"
replayed=$("$cw" replay --json "$repo/fixtures/example_call.flac")
call_id=$("$venv/bin/python" -c 'import json, sys; print(next(e["call_id"] for e in map(json.loads, sys.stdin) if e["event"] == "call_started"))' <<<"$replayed")
step "transcripts list"
listed=$("$cw" transcripts list --json)
grep -q "\"$call_id\"" <<<"$listed"
step "transcripts show"
shown=$("$cw" transcripts show "$call_id" --json)
[[ -n $shown ]] || { echo "plain-install: transcripts show printed nothing" >&2; exit 1; }
step "export"
"$cw" export --call "$call_id" --track 0 -o "$work/track0.wav"
[[ $(stat -c %s "$work/track0.wav") -gt 44 ]] || { echo "plain-install: export wrote no audio" >&2; exit 1; }
step "audit verify"
"$cw" audit verify >/dev/null
step "keys status"
"$cw" keys status >/dev/null
step "a scale-out setting names the extra"
if err=$(CONVERSE_DATABASE_URL=postgresql://127.0.0.1:9/none "$cw" transcripts list 2>&1); then
  echo "plain-install: a PostgreSQL URL without the scale extra did not fail" >&2; exit 1
fi
[[ $(wc -l <<<"$err") == 1 && $err == *"scale"* ]] || { echo "plain-install: unclear error: $err" >&2; exit 1; }
step "ok: every embedded command ran on a plain install"
