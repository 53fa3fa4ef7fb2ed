from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InvalidInputError
from ..utils.io import atomic_write
from ._app import app


def parse_options(items: List[str]) -> dict:
    """``KEY=VALUE`` method options; values are read as YAML scalars (24, 0.5, true, [1, 2], gt)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise InvalidInputError(f"--option {item!r}: {e}") from None
    return out


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of TrainConfig keys; flags override it."),
    method: Optional[str] = typer.Option(None, help="Hashing method: dsh (default), iah, dpsh, hashnet, "
                                                  "greedyhash, csq (docs/methods.md) or itq (unsupervised)."),
    option: List[str] = typer.Option([], "--option", "-o", help="A method option KEY=VALUE (repeatable), e.g. "
                                     "-o proposals=gt -o top_n=16 for iah."),
    device: Optional[str] = typer.Option(None, help="cpu (default) or cuda."),
    data: Optional[str] = typer.Option(None, help="'digits', a CIFAR-10 archive/folder, a YOLO/VOC folder or COCO "
                                       ".json (boxes, for iah), an image folder (or .tar.gz), a label list."),
    protocol: Optional[str] = typer.Option(None, help="Split protocol: dsh, cifar10, cifar10-1, cifar10-2, per-class, holdout, given."),
    bits: Optional[int] = typer.Option(None, help="Code length, 1..1024 (packed to whole bytes with zero padding)."),
    model: Optional[str] = typer.Option(None, help="Architecture from the model registry, or iah's backbone (default dsh, the paper's net)."),
    epochs: Optional[int] = typer.Option(None),
    iterations: Optional[int] = typer.Option(None, help="Stop after this many iterations (overrides epochs)."),
    batch_size: Optional[int] = typer.Option(None),
    optimizer: Optional[str] = typer.Option(None, help="sgd, adam or adamw."),
    lr: Optional[float] = typer.Option(None),
    weight_decay: Optional[float] = typer.Option(None),
    schedule: Optional[str] = typer.Option(None, help="step, cosine, constant or onecycle."),
    margin: Optional[float] = typer.Option(None, help="Loss margin (dsh default 2·bits, iah bits/2)."),
    alpha: Optional[float] = typer.Option(None, help="Weight of the binary regulariser (dsh default 0.01, iah 0)."),
    crop_pad: Optional[int] = typer.Option(None, help="Random crop after padding by this many pixels."),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror"),
    balanced: Optional[bool] = typer.Option(None, "--balanced/--no-balanced", help="Class-balanced batches."),
    image_size: Optional[int] = typer.Option(None),
    data_size: Optional[int] = typer.Option(None, help="Decode and hold images at this size (default: --image-size); "
                                            "a frozen backbone resizes each batch, other runs resize the set "
                                            "once when training starts."),
    weights: Optional[str] = typer.Option(None, help="Local backbone weights file, or 'imagenet' for efficientnet_lite0's installed weights."),
    init_from: Optional[str] = typer.Option(None, help="Start from another checkpoint (e.g. the 12-bit model)."),
    seed: Optional[int] = typer.Option(None),
    threads: Optional[int] = typer.Option(None, help="Torch threads (0 = all cores)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="NHWC layout (faster for EfficientNet's depthwise convs on CPU)."),
    frozen_backbone: Optional[bool] = typer.Option(None, "--frozen-backbone/--no-frozen-backbone",
                                                   help="Keep the (pretrained) backbone fixed: its features are computed "
                                                   "once per image and its mirror, cached, and only the head trains."),
    train_blocks: Optional[int] = typer.Option(None, help="With --frozen-backbone: also train the backbone's last N "
                                               "blocks and conv head, on cached maps of the frozen rest "
                                               "(EfficientNet-Lite backbones)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16",
                                        help="bfloat16 autocast of the forward pass (about 1.5-2x faster backbone "
                                        "blocks on CPUs with AVX512-BF16 or AMX; elsewhere float32, with a log line "
                                        "saying why; the loss stays float32)."),
    mirror_average: Optional[bool] = typer.Option(None, "--mirror-average/--no-mirror-average",
                                                  help="Encode each image as the mean of its and its mirror's "
                                                  "outputs (test-time mirroring; two passes per image)."),
    hidden: Optional[int] = typer.Option(None, help="Width of a ReLU layer before the hash layer (0 = none)."),
    dropout: Optional[float] = typer.Option(None, help="Dropout around that hidden layer."),
    out: Optional[str] = typer.Option(None, help="Run folder for checkpoints (default runs/<method>)."),
    resume: Optional[Path] = typer.Option(None, help="Continue exactly from this checkpoint (or its run folder), "
                                          "with its own settings; only --threads, --out, --channels-last and --device "
                                          "may change."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a hashing network by any registered method (--method); a checkpoint is saved atomically every epoch.

    Example:

    \b
        deephash train --data digits --bits 32 --epochs 20 --out runs/dsh
        torchrun --standalone --nproc-per-node 2 -m deephash train --threads 1
    """
    from .. import distributed
    from ..runs import Run, TrainConfig
    from ..train.trainer import Trainer

    flags = {k: v for k, v in dict(
        method=method, device=device, data=data, protocol=protocol, bits=bits, model=model, epochs=epochs,
        iterations=iterations, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        schedule=schedule, margin=margin, alpha=alpha, crop_pad=crop_pad, mirror=mirror, balanced=balanced,
        image_size=image_size, data_size=data_size, weights=weights, init_from=init_from, seed=seed, threads=threads,
        channels_last=channels_last, frozen_backbone=frozen_backbone, train_blocks=train_blocks,
        bf16=bf16, mirror_average=mirror_average, out=out).items() if v is not None}
    head = {k: v for k, v in dict(hidden=hidden, dropout=dropout).items() if v is not None}
    if head:
        flags["model_kwargs"] = head
    options = parse_options(option)
    if options:
        flags["method_options"] = options
    run = Run.open(resume) if resume is not None else None  # the checkpoint's one read
    cfg = TrainConfig.assemble(config, flags, run)
    distributed.init_from_env(cfg.device)  # under torchrun: DDP over every rank, gloo on CPU and NCCL on CUDA
    try:
        lead = distributed.rank() == 0
        if run is not None:  # refused before the data is loaded
            run.check_resume(cfg)
        split = cfg.load_split(progress=not quiet and lead)
        if lead:
            typer.echo(f"data {cfg.data}: {split.describe()}")
        trainer = Trainer(cfg, split.train, progress=not quiet)
        if run is not None:
            trainer.restore(run)
        result = trainer.fit()
    finally:
        distributed.close()
    last = result.history[-1] if result.history else {}
    summary = {"checkpoint": str(result.checkpoint), "method": cfg.method, "bits": cfg.bits,
               "epochs": last.get("epoch"), "iterations": last.get("step"), "final_loss": last.get("loss"),
               "seconds": round(result.seconds, 1),
               "train_images_per_second": round(result.images_per_second, 1), **split.sizes()}
    if lead:
        atomic_write(Path(cfg.out, "train.json"), lambda fh: fh.write(json.dumps(summary, indent=2).encode()))
        typer.echo(json.dumps(summary))
