#!/usr/bin/env bash
# Set up, then run the default test suite on every core (at most 4 pytest-xdist workers; DEEPHASH_TEST_WORKERS
# sets another number, 0 runs in one process). Slow tests are excluded: add `-m slow` to run only those.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cores=$(nproc 2>/dev/null || echo 1)
workers=${DEEPHASH_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile "$@"
