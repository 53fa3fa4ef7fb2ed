"""The one training engine for every method (plug-ins of ``deephash.methods``, found through ``deephash.runs``,
which also holds the config, the checkpoint file and the LR schedule): batches sliced from an in-memory
uint8 array, batched augmentation, an iteration-based LR schedule, an optional frozen-backbone feature
store, and an atomic checkpoint every epoch that resumes exactly (weights, optimiser, RNG, history).

Under torchrun (``deephash.distributed``) every rank draws the same global batches and augmentation, trains on
a contiguous share of each batch through DistributedDataParallel, and the objective sees the global batch
(outputs gathered across ranks), so N ranks train the single-process run; only rank 0 writes.

A training set with fewer than two classes is refused (every pair would be similar, nothing to learn); a loss or
weights that become NaN or infinite stop the run before the next checkpoint, so the last good one is kept."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..data import HashDataset
from ..data.augment import mirror_mask, random_crop, to_float
from ..data.samplers import balanced_batches, epoch_batches
from ..errors import CorruptFileError, InvalidInputError
from ..models import load_matching
from ..runs import CKPT_FORMAT, Run, TrainConfig, get_method, load_checkpoint, save_checkpoint
from ..utils.cpu import bf16_unavailable_reason
from ..utils.progress import tqdm

log = logging.getLogger("deephash.train")


def set_threads(n: int) -> None:
    """Use all cores unless told otherwise (``threads`` = 0)."""
    torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))


rank = distributed.rank  # only rank 0 writes files


class _MethodForward(nn.Module):
    """The method's forward as a module, so DistributedDataParallel sees every call and synchronises the gradients
    of the parameters it used."""

    def __init__(self, model: nn.Module, method):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x, idx, flipped, stored: bool):
        return self.method.forward(self.model, x, idx, flipped, stored)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation generator of one epoch: a resumed run redraws exactly what it would have."""
    return torch.Generator().manual_seed(seed * 100003 + epoch)


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@dataclass
class TrainResult:
    model: nn.Module
    checkpoint: Path
    history: list = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    feature_seconds: float = 0.0  # of ``seconds``: computing (or reading) a frozen backbone's features


class Trainer:
    def __init__(self, cfg: TrainConfig, train_set: HashDataset, progress: bool = True):
        self.cfg = cfg.validate()
        self.progress = progress
        self.rank, self.world = rank(), distributed.world_size()
        self.device = torch.device(distributed.local_device(cfg.device))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError("device cuda requested but torch sees no CUDA device")
        self.bf16 = cfg.bf16
        if cfg.bf16 and (why := bf16_unavailable_reason(self.device)):
            self.bf16 = False  # a speed setting: float32 trains the same recipe, at this machine's best speed
            if self.rank == 0:
                log.warning("bf16 asked for, but %s: training in float32", why)
        set_threads(cfg.threads)
        self.method = get_method(cfg.method)(cfg)
        self.data = data = self.method.arrays(train_set, progress)
        present = int((data.labels.reshape(len(data), -1) > 0).any(0).sum()) if len(data) else 0
        if present < 2 and self.method.needs_labels:
            raise InvalidInputError(f"training set {getattr(train_set, 'name', '')!r} has {present} class(es) with "
                                    "images: with one class every pair is similar, so codes cannot learn to tell "
                                    "images apart; give at least two classes")
        self.method.prepare(data, progress)
        self.images = torch.from_numpy(data.images)
        self.labels = torch.from_numpy(data.labels.astype(np.float32))
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run's identity
        with self._input_size_check():
            self.model = self.method.build_model(data.num_classes)
        self.method.setup(self.model, data)
        if cfg.init_from:
            # start from another checkpoint's weights (e.g. the 12-bit model for longer codes); tensors of
            # another shape (a new hash layer) keep their initial values
            load_matching(self.model, load_checkpoint(cfg.init_from)["model"], str(cfg.init_from))
        self.model.to(self.device)
        self.forward_module = _MethodForward(self.model, self.method)
        if self.world > 1:
            if cfg.batch_size < self.world:
                raise InvalidInputError(f"batch_size {cfg.batch_size} is the global batch, shared by {self.world} "
                                        f"processes; give at least one image per process")
            if self.device.type == "cuda":  # batch statistics over the global batch (CPU has no SyncBatchNorm)
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                self.forward_module.model = self.model
            if any(p.requires_grad for p in self.model.parameters()):
                from torch.nn.parallel import DistributedDataParallel

                self.forward_module = DistributedDataParallel(
                    self.forward_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            # the initial weights are shared (same seed); dropout masks must differ between ranks' shares
            torch.manual_seed(cfg.seed * 1009 + distributed.rank() + 1)
        self.features: torch.Tensor | None = None  # the frozen-backbone store, (views, N, ...)
        self.optimizer = make_optimizer(self.method.parameter_groups(self.model), cfg)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]  # before any schedule or resume
        self.steps_per_epoch = len(self._batches(0))
        self.total_steps = cfg.iterations or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.out = Path(cfg.out)
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self.cfg.balanced:
            return balanced_batches(self.data.labels, self.cfg.batch_size, self.cfg.seed, epoch)
        return epoch_batches(len(self.data), self.cfg.batch_size, self.cfg.seed, epoch)

    def _payload(self, rank_rngs: list | None = None) -> dict:
        payload = {
            "format": CKPT_FORMAT,
            "method": self.cfg.method,
            "config": self.cfg.to_dict(),
            "bits": self.cfg.bits,
            "class_names": self.data.class_names,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "method_state": self.method.state(),
            "world_size": self.world,
        }
        if rank_rngs is not None:
            payload["rank_rngs"] = rank_rngs
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return payload

    def resume(self, run: Run | str | Path) -> None:
        """Continue ``run`` (a ``Run``, or a checkpoint or run folder opened as one) exactly: refused unless it can
        (``Run.check_resume``), then ``restore``d."""
        run = run if isinstance(run, Run) else Run.open(run)
        run.check_resume(self.cfg)
        self.restore(run)

    def restore(self, run: Run) -> None:
        """Weights, optimiser, step, history and RNG state from a run already checked for this config."""
        ckpt = run.payload
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.epoch, self.step, self.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
            torch.set_rng_state(ckpt["rank_rngs"][distributed.rank()] if "rank_rngs" in ckpt else ckpt["torch_rng"])
            if "cuda_rng" in ckpt and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
            self.method.load_state(ckpt.get("method_state", {}))
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:300]
            raise CorruptFileError(f"{run.checkpoint}: its training state does not fit this run: {reason}") from None

    @contextlib.contextmanager
    def _input_size_check(self):
        """Turns torch's shape error when the model is built or takes its first batch into one naming image_size."""
        try:
            yield
        except RuntimeError as e:
            if "size" not in str(e).lower():
                raise
            raise InvalidInputError(f"image_size {self.cfg.image_size} does not fit model {self.cfg.model!r}: "
                                    f"{' '.join(str(e).split())[:200]}") from None

    def _inputs(self, batch: torch.Tensor, gen: torch.Generator, lo: int = 0,
                hi: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows lo..hi of a global batch as the model's trainable part takes them, and which are mirrored:
        augmented images, or stored features of a random view (the original or its mirror) per item when the
        backbone is frozen. The random draws are the whole batch's, whatever share this rank takes."""
        n = len(batch)
        t = batch[lo:hi]
        if self.features is not None:
            view = torch.randint(0, len(self.features), (n,), generator=gen)[lo:hi]
            return self.features[view.to(self.features.device), t.to(self.features.device)], view == 1
        x = to_float(self.images[t])
        if self.cfg.crop_pad:
            x = random_crop(x, self.cfg.crop_pad, gen, n, lo)
        flipped = mirror_mask(x, gen, n, lo) if self.cfg.mirror else torch.zeros(len(t), dtype=torch.bool)
        return x.to(self.device), flipped

    def backward(self, idx: np.ndarray, gen: torch.Generator, check_size: bool = False) -> dict[str, float]:
        """One global batch (dataset positions ``idx``): this rank's share forward, the objective over the whole
        batch, and gradients left in the parameters (equal on every rank, and to a single process's); returns the
        objective's terms. DDP averages gradients over ranks and each rank back-propagates only into its own rows
        of the same global loss, so the loss is scaled by the world size to make the average their sum."""
        lo, hi = distributed.shard_range(len(idx), distributed.rank(), self.world)
        counts = distributed.batch_counts(len(idx), self.world)
        batch = torch.from_numpy(idx)
        x, flipped = self._inputs(batch, gen, lo, hi)
        with self._input_size_check() if check_size else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.forward_module(x, batch[lo:hi], flipped, self.features is not None)
        if self.bf16 and isinstance(out, torch.Tensor):
            out = out.float()
        out = distributed.gather_outputs(out, counts)
        terms = self.method.objective(out, self.labels[batch].to(self.device))
        values = {k: v.item() for k, v in terms.items()}
        if not math.isfinite(values["loss"]):
            raise InvalidInputError(f"training diverged: the loss is {values['loss']} at epoch "
                                    f"{self.epoch + 1}, iteration {self.step + 1} (lr {self.cfg.lr:g}); lower "
                                    f"--lr or check the data; {self.out / 'last.ckpt'} was left as it was")
        self.optimizer.zero_grad(set_to_none=True)
        (terms["loss"] * self.world if self.world > 1 else terms["loss"]).backward()
        return values

    def fit(self) -> TrainResult:
        set_threads(self.cfg.threads)
        writer = self.rank == 0
        if writer:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InvalidInputError(f"cannot create the run folder {self.out}: {e.strerror or e}") from None
        base_lrs = self.base_lrs
        start = time.perf_counter()
        seen = 0
        first = True  # a first forward pass that fails is most likely an input size the model cannot take
        if (self.cfg.frozen_backbone or self.method.closed_form) and self.features is None:
            with self._input_size_check():
                self.features = self.method.frozen_store(self.model, self.data.images,
                                                         self.progress and writer).to(self.device)
        feature_seconds = time.perf_counter() - start
        if self.method.closed_form and self.epoch < self.epochs:
            return self._fit_closed_form(start, feature_seconds, writer)
        quiet = not (self.progress and writer)
        self.model.train()
        # the run as a whole (epochs, the last epoch's loss, ETA): in a log, the line a long run writes
        epochs = tqdm(total=self.epochs, initial=self.epoch, desc=f"{self.cfg.method} training", unit="epoch",
                      disable=True if quiet else None, leave=False)
        while self.epoch < self.epochs and self.step < self.total_steps:
            gen = epoch_generator(self.cfg.seed, self.epoch)
            batches = self._batches(self.epoch)
            bar = tqdm(batches, desc=f"{self.cfg.method} epoch {self.epoch + 1}/{self.epochs}", unit="batch",
                       disable=True if quiet else None, leave=False)  # None: log lines when not a terminal
            sums: dict[str, float] = {}
            count = 0
            for idx in bar:
                if self.step >= self.total_steps:
                    break
                f = self.method.lr_factor(self.step, self.total_steps)
                for g, lr in zip(self.optimizer.param_groups, base_lrs):
                    g["lr"] = lr * f
                self.method.before_step(self.model, self.step, self.total_steps)
                values = self.backward(idx, gen, check_size=first)
                first = False
                self.optimizer.step()
                self.step += 1
                seen += len(idx)
                count += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(**{k: f"{v:.4f}" for k, v in values.items()}, lr=f"{base_lrs[0] * f:.2g}")
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "step": self.step,
                                 **{k: s / max(1, count) for k, s in sums.items()},
                                 "seconds": time.perf_counter() - start})
            epochs.set_postfix(**{k: f"{v:.4f}" for k, v in self.history[-1].items() if k not in ("epoch", "step",
                                                                                                    "seconds")})
            epochs.update(1)
            # every rank checks (their weights are equal) so all stop together
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                raise InvalidInputError(f"training diverged: the weights hold NaN or infinity after epoch "
                                        f"{self.epoch} (lr {self.cfg.lr:g}); lower --lr; "
                                        f"{self.out / 'last.ckpt'} was left as it was")
            rngs = distributed.gather_objects(torch.get_rng_state()) if self.world > 1 else None
            if writer:
                save_checkpoint(self.out / "last.ckpt", self._payload(rngs))
        epochs.close()
        distributed.barrier()  # the other ranks return once rank 0's checkpoint is on disk
        seconds = time.perf_counter() - start
        self.model.eval()
        return TrainResult(self.model, self.out / "last.ckpt", self.history, seconds, seen / max(seconds, 1e-9),
                           feature_seconds)


    def _fit_closed_form(self, start: float, feature_seconds: float, writer: bool) -> TrainResult:
        """A method fitted in one step on the frozen store (ITQ): one history entry, one checkpoint."""
        terms = self.method.fit_features(self.model, self.features)
        if not all(math.isfinite(v) for v in terms.values()):
            raise InvalidInputError(f"{self.cfg.method} fit failed: {terms}; check the data")
        self.epoch, self.step = self.epochs, self.total_steps
        seconds = time.perf_counter() - start
        self.history.append({"epoch": self.epoch, "step": self.step, **terms, "seconds": seconds})
        if writer:
            save_checkpoint(self.out / "last.ckpt", self._payload())
        self.model.eval()
        return TrainResult(self.model, self.out / "last.ckpt", self.history, seconds,
                           len(self.data) / max(seconds, 1e-9), feature_seconds)


def train(cfg: TrainConfig, train_set: HashDataset, resume: Run | str | Path | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``cfg.method`` on ``train_set`` (optionally continuing a run exactly: ``Trainer.resume``)."""
    trainer = Trainer(cfg, train_set, progress=progress)
    if resume:
        trainer.resume(resume)
    return trainer.fit()
