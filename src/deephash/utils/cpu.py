"""What this machine's processor can do natively, so speed settings follow the CPU instead of a recipe.

bfloat16 autocast is only a speed setting: where the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)
it runs the backbone blocks 1.5-2x faster than float32, but where it is emulated (an AVX2-only CPU) the same
step measured 8.5x *slower*. The math libraries can also be held to a lower instruction set than the chip has
(``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``), which this check honours: it asks oneDNN, the library that
runs the bfloat16 kernels, and the CPU's own feature flags."""

from __future__ import annotations

import os

import torch

_AVX2_OR_LOWER = ("default", "avx2", "sse", "none")


def bf16_unavailable_reason(device: torch.device | str = "cpu") -> str | None:
    """None when bfloat16 autocast runs natively on ``device``; else why not, in words a log line can carry."""
    device = torch.device(device)
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this CUDA device has no bfloat16 support"
    if device.type != "cpu":
        return None
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if aten.startswith(_AVX2_OR_LOWER):
        return f"the math libraries are held to {aten.upper()} (ATEN_CPU_CAPABILITY)"
    try:
        features = torch._C._cpu._get_cpu_capability()
        native = bool(features.get("avx512_bf16") or features.get("amx_bf16"))
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # another torch build: assume the slow, emulated path
        return "this torch build cannot tell whether the CPU has bfloat16 instructions"
    if not native:
        return "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bfloat16 would be emulated and slower"
    if not onednn:
        return "oneDNN's bfloat16 kernels are unavailable here (ONEDNN_MAX_CPU_ISA may hold them back)"
    return None
