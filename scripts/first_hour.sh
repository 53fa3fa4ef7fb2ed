#!/usr/bin/env bash
# The transcript of docs/first-hour.md: a tiny photo folder through up, search and dupes, as a new user would.
# Needs the set-up .venv (./scripts/setup.sh) and ../shared (or DEEPHASH_SHARED); works in a temporary folder.
set -u
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
SHARED=${DEEPHASH_SHARED:-$(cd .. && pwd)/shared}
W=$(mktemp -d); cd "$W"
export DEEPHASH_CACHE="$W/cache"
mkdir tiny
ls "$SHARED"/datasets/coco128/images/train2017/*.jpg | head -10 | xargs -I{} cp {} tiny/
show() { echo "\$ $*"; ( "$@" ) 2>&1 | sed "s#$W/##g"; echo "[exit ${PIPESTATUS[0]}]"; echo; }
timed() { echo "\$ $*"; local t0=$(date +%s.%N); ( "$@" ) 2>&1 | sed "s#$W/##g"; local rc=${PIPESTATUS[0]}; local t1=$(date +%s.%N); echo "[exit $rc, $(python3 -c "print(f'{$t1-$t0:.2f}')") s wall]"; echo; }
show ls tiny
timed deephash up tiny --no-serve
show ls -A tiny
timed deephash up tiny --no-serve --bits 8
show deephash up tiny --no-serve --bits 16
timed deephash search tiny/.deephash --image tiny/$(ls tiny | head -1) -k 3
timed deephash search tiny/.deephash --image tiny/$(ls tiny | head -1) -k 3
timed deephash dupes tiny/.deephash
rm -rf "$W"
