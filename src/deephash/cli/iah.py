"""Instance-Aware Hashing commands: ``iah-train``, ``iah-encode`` (an index with semantic and category-aware
codes, see ``deephash.retrieval``) and ``iah-demo`` (coco128 end to end). Searching goes through
``deephash search`` like any index."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InvalidInputError
from ._app import app

# iah-train's defaults for a new run (a resumed run keeps its own settings)
IAH_TRAIN_DEFAULTS = dict(bits=32, model="dsh", image_size=128, epochs=10, batch_size=32, lr=3e-3, seed=0,
                          frozen_backbone=False, out="runs/iah")


@app.command("iah-train")
def iah_train(
    data: Optional[str] = typer.Option(None, help="A dataset with labels: YOLO folder (data.yaml), VOC folder or COCO "
                                       "JSON (required unless resuming)."),
    split: Optional[str] = typer.Option(None, help="Which split to train on (default: the first)."),
    bits: Optional[int] = typer.Option(None, help="Default 32."),
    backbone: Optional[str] = typer.Option(None, help="dsh (default; small images), resnet18, googlenet or "
                                           "efficientnet_lite0."),
    weights: Optional[Path] = typer.Option(None, help="Local backbone weights file."),
    image_size: Optional[int] = typer.Option(None, help="Default 128."),
    proposals: Optional[str] = typer.Option(None, help="grid (default), selective (OpenCV selective search) or gt "
                                            "(dataset boxes)."),
    top_n: Optional[int] = typer.Option(None, help="Proposals per image after NMS, whole image included (default 24)."),
    epochs: Optional[int] = typer.Option(None, help="Default 10."),
    batch_size: Optional[int] = typer.Option(None, help="Default 32."),
    lr: Optional[float] = typer.Option(None, help="Default 3e-3."),
    margin: Optional[float] = typer.Option(None, help="Triplet margin on squared distances (default bits/2)."),
    frozen_backbone: Optional[bool] = typer.Option(None, "--frozen-backbone/--no-frozen-backbone",
                                                   help="Keep a pretrained backbone fixed: one conv pass per image "
                                                   "for the whole run, only the proposal heads train."),
    device: Optional[str] = typer.Option(None, help="cpu (default) or cuda."),
    seed: Optional[int] = typer.Option(None),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/iah)."),
    resume: Optional[Path] = typer.Option(None, help="Continue exactly from this checkpoint (or its run folder) with "
                                          "its own settings."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train IAH on one split (deephash train --method iah with these defaults): label probabilities
    (cross-hypothesis max pooling) + triplet ranking on relaxed codes.

    Example:

    \b
        deephash iah-train --data coco128 --proposals selective --out runs/iah
    """
    from ..data import load_box_split
    from ..runs import Run, TrainConfig
    from ..train import Trainer

    flags = {k: v for k, v in dict(data=data, bits=bits, model=backbone, weights=str(weights) if weights else None,
                                   image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr, margin=margin,
                                   frozen_backbone=frozen_backbone, device=device, seed=seed,
                                   out=str(out) if out else None).items() if v is not None}
    options = {k: v for k, v in dict(proposals=proposals, top_n=top_n).items() if v is not None}
    if resume is None:
        flags = {"method": "iah", **IAH_TRAIN_DEFAULTS, **flags}
    if options:
        flags["method_options"] = options
    run = Run.open(resume) if resume is not None else None
    cfg = TrainConfig.assemble(None, flags, run)
    if cfg.method != "iah":
        raise InvalidInputError(f"{resume} is a {cfg.method} run; resume it with deephash train --resume")
    if not cfg.data or cfg.data == "digits":
        raise InvalidInputError("iah-train needs --data: a YOLO folder, VOC folder or COCO JSON with labels")
    if run is not None:  # refused before the data is loaded
        run.check_resume(cfg)
    trainer = Trainer(cfg, load_box_split(cfg.data, split, cfg.image_size), progress=not quiet)
    if run is not None:
        trainer.restore(run)
    res = trainer.fit()
    last = res.history[-1]
    typer.echo(f"trained {cfg.bits}-bit IAH in {res.seconds:.0f} s (bce {last['bce']:.3f}, semantic triplet "
               f"{last['semantic']:.3f}, category triplet {last['category']:.3f}); checkpoint {res.checkpoint}")


@app.command("iah-encode")
def iah_encode(
    checkpoint: Path = typer.Option(..., help="An IAH checkpoint (iah-train)."),
    data: str = typer.Option(..., help="Dataset with boxes/labels, as for iah-train (labels are stored, not used)."),
    split: Optional[str] = typer.Option(None),
    out: Path = typer.Option(..., help="Index folder to write."),
    threshold: float = typer.Option(0.5, help="A category code is stored when its probability exceeds this "
                                              "(the top category is always stored)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Encode a dataset into an index with semantic and category-aware codes (with proposal boxes).

    Example:

    \b
        deephash iah-encode --checkpoint runs/iah --data coco128 --out idx-iah
    """
    from ..retrieval import Encoder, ImageIndex

    index = ImageIndex.build(checkpoint, Encoder(checkpoint).dataset(data, split), threshold=threshold,
                             progress=not quiet)
    index.save(out)
    typer.echo(f"wrote {out}: {len(index)} semantic codes, {len(index.category)} category codes")


@app.command("iah-demo")
def iah_demo(
    data: Path = typer.Option(..., help="coco128 (YOLO layout): trains on its first split, queries from the second."),
    bits: int = typer.Option(32),
    epochs: Optional[int] = typer.Option(None, help="Default: 40 with a frozen backbone, 8 when it is fine-tuned."),
    image_size: int = typer.Option(160),
    lr: Optional[float] = typer.Option(None, help="Default: 3e-3 with a frozen backbone, 1e-3 when fine-tuned."),
    proposals: str = typer.Option("selective", help="selective (needs OpenCV contrib), grid or gt."),
    backbone: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 (ImageNet weights from the efficientnet "
                                 "extra), dsh (small, from scratch), resnet18 or googlenet."),
    weights: Optional[str] = typer.Option("auto", help="Local backbone weights file; 'auto': the installed ImageNet "
                                          "weights for efficientnet_lite0, none for the others; 'none'."),
    queries: int = typer.Option(4, help="Query images drawn in the grid."),
    frozen_backbone: Optional[bool] = typer.Option(None, "--frozen-backbone/--no-frozen-backbone",
                                                   help="Train only the proposal heads on stored feature maps "
                                                   "(default: yes with pretrained weights)."),
    out: Path = typer.Option(Path("runs/iah-demo")),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """IAH end to end on a multi-label dataset with boxes: train, build the index, evaluate semantic codes,
    and draw a category-aware result grid with proposal boxes.

    Example:

    \b
        deephash iah-demo --data ../shared/datasets/coco128 --out runs/iah-demo
    """
    from ..demos import iah_demo as run_demo

    r = run_demo(data, bits, epochs, image_size, lr, proposals, backbone, weights, queries, frozen_backbone, out, seed,
                 progress=not quiet, log=typer.echo)
    typer.echo(f"semantic codes, {r.query_images} queries vs {r.train_images}: mAP {r.semantic_map:.4f}, "
               f"NDCG@100 {r.semantic_ndcg100:.4f}")
    typer.echo(f"wrote {r.index} and {r.grid}")
