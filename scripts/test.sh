#!/usr/bin/env bash
# The whole test suite: set-up, lint, types, tests (slow end-to-end ones included).
# Pass pytest arguments through, e.g. `scripts/test.sh -m "not slow"` for the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The package once more as `pip install .` without extras, its embedded commands run as a user runs them.
scripts/plain_install_check.sh
# Four workers on two cores: most end-to-end tests wait on real-time audio, not on the CPU. Files stay
# whole on one worker (their servers are module- or session-scoped), in the order tests/conftest.py gives
# (long real-time files first, so the soak overlaps the rest). `-n 0` runs serially.
exec .venv/bin/pytest -n 4 --dist loadfile --no-loadscope-reorder "$@"
