#!/usr/bin/env bash
# Set-up on a fresh machine (Python 3.11): a virtual environment inside the repo with every Python
# dependency pinned in pyproject.toml. With --test, also the Debian tools the end-to-end tests drive
# (Chromium + ChromeDriver, espeak-ng, sox, PostgreSQL) when they are missing. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.converse-installed
extras="scale,native"
[[ $want_test == 1 ]] && extras="scale,native,dev,base"  # base: the real-model tests of --model base
if [[ ! -f $stamp ]] || [[ pyproject.toml -nt $stamp ]] || ! grep -qx "$extras" "$stamp"; then
  log=.venv/install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[${extras}]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$extras" > "$stamp"
fi
# Compile the redaction package with mypyc when its source changed (a no-op otherwise); on failure it
# says so in one line and redact runs as plain Python.
.venv/bin/python scripts/build_native.py || true

if [[ $want_test == 1 ]]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v sox >/dev/null || missing+=(sox)
  # Other synthesisers for the generated calls of benchmarks/models.py (its smoke test runs them).
  command -v flite >/dev/null || missing+=(flite)
  command -v text2wave >/dev/null || missing+=(festival)
  fv=/usr/share/festival/voices
  [[ -d $fv/us/cmu_us_slt_arctic_hts ]] || missing+=(festvox-us-slt-hts)
  [[ -d $fv/english/kal_diphone ]] || missing+=(festvox-kallpc16k)
  [[ -d $fv/english/ked_diphone ]] || missing+=(festvox-kdlpc16k)
  command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
  if (( ${#missing[@]} )); then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  # The PostgreSQL tests run the server as `postgres` (it refuses to run as root).
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
fi
