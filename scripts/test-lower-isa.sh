#!/usr/bin/env bash
# The default test suite again with the math libraries held to a lower instruction set than this CPU's (SSE4
# instead of AVX2/AVX-512; numba's kernels compiled for a generic x86-64), as on a user's older or different
# CPU: a test that pinned one CPU's float bits fails here on the developer's own machine. Arguments pass to
# pytest (e.g. a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 NUMBA_CPU_NAME=generic
# a separate numba cache: kernels compiled for this CPU must not be read back as if generic (and vice versa)
export NUMBA_CACHE_DIR="${TMPDIR:-/tmp}/deephash-numba-generic-$(id -u)"
.venv/bin/python -c "import torch; print('torch CPU capability:', torch.backends.cpu.get_cpu_capability())"
cores=$(nproc 2>/dev/null || echo 1)
exec .venv/bin/python -m pytest -q -n "${DEEPHASH_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}" --dist loadfile "$@"
