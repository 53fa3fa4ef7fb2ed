#!/usr/bin/env bash
# The main job: set up, then train DSH on the embedded digits at 12/24/32/48 bits, evaluate,
# print the table and write runs/demo/grid.png. Extra arguments go to `deephash demo`
# (e.g. --data ../shared/datasets/cifar10-jpg.tar.gz --bits 48).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/deephash demo "$@"
