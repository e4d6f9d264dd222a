#!/usr/bin/env bash
# Long fuzz runs (the suite runs a bounded, derandomized budget; see docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs each atheris harness tests/fuzz/fuzz_TARGET.py for SECONDS (default 60) and prints one summary line
# per target. Targets: sdp sframe recording fixtures opus redact whip_headers (default: all). Corpora and
# crash inputs go under $FUZZ_OUT (default ${TMPDIR:-/tmp}/converse-fuzz); a crash input is replayed with
# `PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_TARGET.py CRASH_FILE`.
# Without atheris (or with FUZZ_ENGINE=hypothesis) it runs the hypothesis fuzz tests instead, with fresh
# random examples and FUZZ_SCALE (default SECONDS/10) times the suite's budget.
# Exit status: 0 if no target crashed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(sdp sframe recording fixtures opus redact whip_headers)
PY=.venv/bin/python
OUT="${FUZZ_OUT:-${TMPDIR:-/tmp}/converse-fuzz}"
export PYTHONPATH=.

if [ "${FUZZ_ENGINE:-atheris}" = hypothesis ] || ! "$PY" -c "import atheris" 2>/dev/null; then
    export FUZZ_SCALE="${FUZZ_SCALE:-$(( SECONDS_EACH / 10 > 0 ? SECONDS_EACH / 10 : 1 ))}"
    echo "fuzz: hypothesis, FUZZ_SCALE=$FUZZ_SCALE"
    exec .venv/bin/pytest -q -p no:cacheprovider tests/test_fuzz_*.py
fi

failed=0
for target in "${TARGETS[@]}"; do
    harness="tests/fuzz/fuzz_${target}.py"
    [ -f "$harness" ] || { echo "fuzz: no harness $harness" >&2; failed=1; continue; }
    mkdir -p "$OUT/corpus/$target" "$OUT/crashes/$target"
    log="$OUT/$target.log"
    start=$(date +%s)
    timeout --signal=INT $(( SECONDS_EACH + 300 )) "$PY" "$harness" \
        -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="$OUT/crashes/$target/" "$OUT/corpus/$target" >"$log" 2>&1
    rc=$?
    runs=$(grep -Eo '^Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 || true)
    extra=$(grep -E '^fuzz_' "$log" | tail -1 || true)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $target ok: $runs runs in $(( $(date +%s) - start )) s, ${cov:-cov: ?}${extra:+; $extra}"
    else
        failed=1
        echo "fuzz: $target CRASH (rc $rc), see $log and $OUT/crashes/$target/"
        grep -E 'Error|assert' "$log" | grep -v INFO | head -3 | sed 's/^/    /'
    fi
done
exit $failed
