#!/usr/bin/env bash
# The training, encoding and search tests again with the math libraries held to a lower instruction set than
# this CPU's (SSE4 instead of AVX2/AVX-512, numba's kernels compiled for a generic x86-64), as on a user's older
# or different CPU: a test that pinned one CPU's float bits fails here on the developer's own machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 NUMBA_CPU_NAME=generic
# a separate numba cache: kernels compiled for this CPU must not be read back as if generic (and vice versa)
export NUMBA_CACHE_DIR="${TMPDIR:-/tmp}/deephash-numba-generic-$(id -u)"
if [ $# -eq 0 ]; then
  set -- tests/test_methods.py tests/test_train.py tests/test_train_blocks.py tests/test_frozen_backbone.py \
    tests/test_mirror_average.py tests/test_fast_encode.py tests/test_hash_methods.py tests/test_itq.py \
    tests/test_model_loss.py tests/test_models_registry.py tests/test_distributed.py tests/test_index.py \
    tests/test_index_engines.py tests/test_retrieval.py tests/test_iah_core.py
  [ -f tests/test_conformance.py ] && set -- "$@" tests/test_conformance.py
fi
.venv/bin/python -c "import torch; print('torch CPU capability:', torch.backends.cpu.get_cpu_capability())"
exec .venv/bin/python -m pytest -q -n "${DEEPHASH_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}" --dist loadfile "$@"
