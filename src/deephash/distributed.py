"""torch.distributed for training and encoding: process-group set-up from torchrun's environment, contiguous
shards, and gathers that keep the gradient of the local part.

A distributed run is the single-process run cut into ranks: every rank holds the whole (uint8) training set,
draws the same global batches and augmentation randomness, takes a contiguous slice of each batch
(``shard_range``), and the objective sees the global batch (``gather_outputs``). Labels are not communicated:
every rank knows the global batch's indices and so its labels. Nothing here does anything when the process
group is not initialised (world size 1).
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from .errors import InvalidInputError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank when a process group is initialised, else 0; only rank 0 writes files."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def launched() -> bool:
    """True when started by torchrun (or any launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT or a rendezvous), with
    NCCL for CUDA and gloo for CPU; a no-op when not launched by torchrun or already joined. True if joined."""
    if not launched():
        return False
    if dist.is_initialized():
        return True
    cuda = str(device).startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise InvalidInputError("device cuda requested but torch sees no CUDA device")
        torch.cuda.set_device(local_device("cuda"))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return True


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda`` under torchrun becomes this rank's GPU (``cuda:LOCAL_RANK``); anything else is unchanged."""
    if str(device) == "cuda" and launched():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return str(device)


def shard_range(n: int, index: int, count: int, align: int = 1) -> tuple[int, int]:
    """Rows [lo, hi) of shard ``index`` of ``count`` over ``n`` rows: contiguous, in order, sizes differing by at
    most one block of ``align`` rows (shard boundaries fall on multiples of ``align``, so a shard encodes the
    same batches a single process does)."""
    if not 0 <= index < count:
        raise InvalidInputError(f"shard {index} of {count} does not exist (shards are numbered 0..{count - 1})")
    blocks = -(-n // align)
    return min(n, blocks * index // count * align), min(n, blocks * (index + 1) // count * align)


def batch_counts(n: int, count: int) -> list[int]:
    """Rows each rank takes of a global batch of ``n`` (``shard_range`` with align 1)."""
    return [hi - lo for lo, hi in (shard_range(n, r, count) for r in range(count))]


def gather_rows(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """The ranks' tensors concatenated along dim 0 in rank order (rank r holds ``counts[r]`` rows; other dims
    equal); no gradient. Unequal shards are padded for the collective and trimmed after."""
    if not is_distributed():
        return x
    most = max(counts)
    pad = x.new_zeros((most - len(x), *x.shape[1:]))
    parts = [x.new_empty((most, *x.shape[1:])) for _ in counts]
    dist.all_gather(parts, torch.cat([x.detach(), pad]).contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def gather_with_grad(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """``gather_rows`` with this rank's own rows put back as ``x`` itself, so the result's gradient flows into the
    local rows (the other ranks' rows are constants here; each rank back-propagates into its own)."""
    if not is_distributed():
        return x
    r = rank()
    full = gather_rows(x, counts)
    lo = sum(counts[:r])
    return torch.cat([full[:lo], x, full[lo + counts[r]:]])


def gather_outputs(outputs, counts: list[int]):
    """A method's batch outputs (a tensor, or a dataclass of tensors with the batch first) for the global batch."""
    if not is_distributed():
        return outputs
    if isinstance(outputs, torch.Tensor):
        return gather_with_grad(outputs, counts)
    if dataclasses.is_dataclass(outputs):
        return dataclasses.replace(outputs, **{f.name: gather_outputs(getattr(outputs, f.name), counts)
                                               for f in dataclasses.fields(outputs) if f.init})
    raise InvalidInputError(f"cannot gather method outputs of type {type(outputs).__name__} across ranks")


def all_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank (e.g. a cache hit everywhere)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(bool(flag))], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_objects(obj, dst: int | None = None) -> list | None:
    """Every rank's ``obj`` (picklable), in rank order: on every rank, or with ``dst`` on that rank only (None
    elsewhere)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    if dst is None:
        dist.all_gather_object(out, obj)
        return out
    dist.gather_object(obj, out if rank() == dst else None, dst=dst)
    return out if rank() == dst else None


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def sharded(n: int, compute, dim: int = 0, align: int = 1) -> torch.Tensor:
    """``compute(lo, hi)`` (a tensor of rows lo..hi along ``dim``) evaluated once over [0, n): each rank computes
    its contiguous share (boundaries on multiples of ``align``: the batches a single process would run) and the
    shares are gathered on every rank, so N ranks do the work once, not N times."""
    if not is_distributed():
        return compute(0, n)
    bounds = [shard_range(n, r, world_size(), align) for r in range(world_size())]
    counts = [hi - lo for lo, hi in bounds]
    lo, hi = bounds[rank()]
    part = compute(lo, hi).movedim(dim, 0)
    dev = part.device
    full = gather_rows(part.to(_collective_device()), counts).to(dev)
    return full.movedim(0, dim)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
