"""A folder of photos kept in step with an index: ``sync_folder`` (what ``deephash up`` runs).

The index itself is the journal. Every indexed photo's metadata holds its absolute ``path``, the blake2b
digest of its bytes (``blake2b``) and the ``size`` and ``mtime_ns`` it had when hashed; the codes, ids and
metadata are saved together by one atomic manifest swap (``index/storage.py``). A sync compares the folder
with that metadata: files whose size and modification time are unchanged are skipped without being read
(``rehash=True`` reads and hashes every file), the others are hashed, and a file whose digest differs from
its entry (or that has no entry) is encoded and added, replacing its old entry in the same commit; entries
of files no longer present are removed. Work is committed every ``commit_seconds`` (and at the end) under
the folder's writer lock, which the sync holds throughout, so a process killed at any point leaves the last
committed version: the next sync sees exactly which photos it holds and finishes the rest. No photo is
indexed twice (one entry per path, replaced in the same save that adds the new one) and none is lost.

Layout (default ``index_dir``: ``<photos>/.deephash``, skipped by the scan like every hidden folder)::

    <index_dir>/manifest.json, codes.*, ids.*, meta.*   the index (``deephash serve <index_dir>`` serves it)
    <index_dir>/model/last.ckpt                         the model it was made with (unless one was given)

The model of a new index is fitted on the folder: ITQ (``methods/itq.py``) on a frozen ImageNet
EfficientNet-Lite0 over a random sample of the photos, or with ``supervised=True`` and class sub-folders (or
a label file, ``labels=``), the DSH head of the best CIFAR recipe (``configs/cifar10_best.yaml``) trained on the
frozen features. The empty index is saved first (it records ``model/last.ckpt``), then the model is fitted into
it: a sync killed before the model file exists refits it; a model is never replaced once photos are encoded
with it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import IMAGE_EXTENSIONS
from ..errors import DeephashError, IncompatibleError, InvalidInputError, MissingFileError
from ..index import HammingIndex
from ..index.storage import MANIFEST, index_lock
from .image_index import ImageIndex, open_index

DEFAULT_DIR = ".deephash"
MODEL_DIR = "model"
MODEL_CHECKPOINT = f"{MODEL_DIR}/last.ckpt"
BATCH = 256  # images encoded per call: several of the encoder's chunks, so decoding overlaps the model
# Test hook: seconds to sleep after each commit (lets a test kill a sync that has committed part of its work).
PAUSE_ENV = "DEEPHASH_TEST_INGEST_PAUSE"
RECIPE = Path(__file__).resolve().parents[3] / "configs" / "cifar10_best.yaml"


@dataclass
class SyncReport:
    index_dir: Path
    added: list = field(default_factory=list)       # paths newly indexed
    replaced: list = field(default_factory=list)    # paths whose content changed (old entry removed, new added)
    removed: list = field(default_factory=list)     # paths no longer in the folder, taken out of the index
    skipped: int = 0                                # unchanged files
    unreadable: list = field(default_factory=list)  # (path, reason) of files that could not be decoded
    total: int = 0                                  # images in the index afterwards
    model: str = ""                                 # the checkpoint the codes come from
    fitted: bool = False                            # this sync fitted that model
    commits: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"added {len(self.added)}, replaced {len(self.replaced)}, skipped {self.skipped} unchanged, "
                f"removed {len(self.removed)}, unreadable {len(self.unreadable)}; {self.total} images in "
                f"{self.index_dir} ({self.seconds:.1f} s)")


def default_index_dir(photos: str | Path) -> Path:
    return Path(photos).resolve() / DEFAULT_DIR


def scan_photos(root: str | Path, exclude: list[str | Path] = ()) -> list[Path]:
    """Image files under ``root`` (absolute, sorted), recursively, without following links into folders;
    hidden files and folders (a leading dot: ``.deephash``, ``.git``, thumbnail caches) and ``exclude``
    folders are skipped."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise MissingFileError(f"not a folder: {root}")
    skip = {os.path.realpath(p) for p in exclude}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and os.path.realpath(os.path.join(dirpath, d)) not in skip]
        out += [Path(dirpath, f) for f in filenames
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(p for p in out if p.is_file())


def file_digest(path: str | Path) -> str:
    """blake2b (128-bit) of the file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sync_folder(photos: str | Path, index_dir: str | Path | None = None, model: str | Path | None = None,
                supervised: bool = False, bits: int = 48, image_size: int = 160, sample: int = 2000,
                backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                config: str | Path | None = None, rehash: bool = False, commit_seconds: float = 10.0,
                batch_size: int = BATCH, seed: int = 0, progress: bool = True, log=None,
                labels: str | Path | None = None) -> SyncReport:
    """Bring the index at ``index_dir`` (default ``<photos>/.deephash``) in step with the photos under ``photos``:
    add new and changed files, remove deleted ones, skip unchanged ones (see the module docstring).

    A new index needs a model: ``model`` (a checkpoint or run folder) is used as given; otherwise ITQ with
    ``bits`` bits is fitted on ``sample`` random photos' features from ``backbone`` (``weights``) at
    ``image_size`` px, or with ``supervised`` the DSH head of ``config`` (default: the best CIFAR recipe) is
    trained on the class sub-folders' photos, or on the photos a label file ``labels`` names (see
    ``read_photo_labels``; implies ``supervised``; photos it does not name are indexed, without a class, but
    not trained on). An existing index keeps its model. Photos are encoded
    ``batch_size`` at a time and committed at most every ``commit_seconds`` (the work a crash may cost).
    ``log`` (a callable taking a line) hears what happens."""
    if batch_size < 1 or commit_seconds < 0:
        raise InvalidInputError(f"batch_size must be >= 1 and commit_seconds >= 0, got {batch_size} and "
                                f"{commit_seconds}")
    start = time.perf_counter()
    say = log or (lambda line: None)
    root = Path(photos).resolve()
    if not root.is_dir():
        raise MissingFileError(f"not a folder: {photos}")
    index_dir = Path(index_dir).resolve() if index_dir is not None else default_index_dir(root)
    if index_dir == root:
        raise InvalidInputError(f"the index folder cannot be the photo folder itself ({root}); use a subfolder")
    files = scan_photos(root, exclude=[index_dir])
    labelled = read_photo_labels(labels, root, files) if labels is not None else None  # refused before any write
    supervised = supervised or labelled is not None
    report = SyncReport(index_dir)
    with index_lock(index_dir):  # one writer for the whole sync: a second sync or a service write waits
        index = _open_or_create(index_dir, root, model, supervised, bits, image_size, sample, backbone, weights,
                                config, seed, files, progress, say, report, labelled)
        if labelled is not None:
            unknown = sorted(set(labelled[2]) - set(index.class_names))
            if unknown:
                raise IncompatibleError(f"the label file {labels} names classes the index's model was not trained on: "
                                        f"{', '.join(unknown[:5])}; give another --index, or delete this one to "
                                        "rebuild it")
        report.model = str(index._checkpoint_path())
        known, extra = _entries(index, root)
        here = {str(p) for p in files}
        gone = [(path, i) for path, (i, *_rest) in known.items() if path not in here]
        todo = []
        for p in files:
            entry = known.get(str(p))
            try:
                st = p.stat()
            except OSError as e:
                report.unreadable.append((str(p), f"cannot read {p}: {e.strerror or e}"))
                continue
            if entry is not None and not rehash and entry[2] == st.st_size and entry[3] == st.st_mtime_ns:
                report.skipped += 1
            else:
                todo.append((p, entry, st))
        if gone or extra:
            index.remove([i for _, i in gone] + extra)
            report.removed = [path for path, _ in gone]
            _commit(index, report)
        _ingest(index, root, todo, report, commit_seconds, batch_size, progress, _labeller(index, root, labelled))
        report.total = len(index)
    report.seconds = time.perf_counter() - start
    return report


def _entries(index: ImageIndex, root: Path) -> tuple[dict[str, tuple], list]:
    """(path -> (id, digest, size, mtime_ns), extra ids) of the index's entries that a sync of ``root`` manages
    (those it added: they carry a digest and lie under ``root``). A sync never writes a path twice; should
    another writer have, the later entries are the extra ids, which the sync removes."""
    ids = index.semantic.ids
    out, extra = {}, []
    prefix = str(root) + os.sep
    for i, md in zip(ids.tolist(), index.semantic.get_metadata(ids)):
        if md and "blake2b" in md and str(md.get("path", "")).startswith(prefix):
            if md["path"] in out:
                extra.append(i)
            else:
                out[md["path"]] = (i, md["blake2b"], md.get("size"), md.get("mtime_ns"))
    return out, extra


def _ingest(index: ImageIndex, root: Path, todo: list, report: SyncReport, commit_seconds: float, batch_size: int,
            progress: bool, label_of) -> None:
    from ..utils.progress import tqdm

    if not todo:
        return

    last = time.monotonic()
    dirty = False
    with tqdm(total=len(todo), desc="up", unit=" img", disable=not progress, smoothing=0.1) as bar:
        for s in range(0, len(todo), batch_size):
            batch, paths, meta, replace = todo[s:s + batch_size], [], [], []
            for p, entry, st in batch:
                try:
                    digest = file_digest(p)
                except OSError as e:
                    report.unreadable.append((str(p), f"cannot read {p}: {e.strerror or e}"))
                    continue
                if entry is not None and entry[1] == digest:  # touched, same bytes
                    report.skipped += 1
                    continue
                paths.append(str(p))
                row = {"path": str(p), "blake2b": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
                names = label_of(p)
                if names:
                    row["labels"] = names
                meta.append(row)
                replace.append(entry[0] if entry is not None else None)
            if paths:
                result = index.add(paths, metadata=meta)
                failed = {f for f, _ in result.failures}
                report.unreadable += result.failures
                old = [i for i in replace if i is not None]
                if old:  # in the same commit as the new entries: never both, never neither (an old entry
                    # whose file now cannot be read goes too: it describes bytes that are no longer there)
                    index.remove(old)
                for p, i in zip(paths, replace):
                    if p not in failed:
                        (report.replaced if i is not None else report.added).append(p)
                dirty = True
            bar.update(len(batch))
            if dirty and time.monotonic() - last >= commit_seconds:
                _commit(index, report)
                last, dirty = time.monotonic(), False
    if dirty:
        _commit(index, report)


def _labeller(index: ImageIndex, root: Path, labelled):
    """path -> the class names its metadata row records: from the label file when one was given, else (for a
    supervised index) the photo's class sub-folder."""
    if labelled is not None:
        paths, onehot, classes = labelled
        names = {str(p): [classes[c] for c in np.flatnonzero(row)] for p, row in zip(paths, onehot)}
        return lambda p: names.get(str(p))
    classes = set(index.class_names)

    def folder(p: Path):
        parts = p.relative_to(root).parts
        return [parts[0]] if len(parts) > 1 and parts[0] in classes else None
    return folder


def read_photo_labels(labels: str | Path, root: str | Path, photos: list[Path] | None = None):
    """(paths, multi-hot labels, class names) of the photos under ``root`` that the label file ``labels`` names:
    a ``.csv`` of ``path,label`` rows (class names; ``data.read_label_csv``), or else the list-file convention
    ``path 0 1 0 ...`` (0/1 per class, names from a ``classes.txt`` beside it; ``data.read_list_file``), paths
    relative to ``root``. A list-file row may name several classes: DSH treats two photos as similar when they
    share one (``miners.similarity_matrix``), so such rows train with all of them. Refused, naming the culprit:
    a missing file or photo, a path that is not one of ``photos`` (the photos a sync indexes: default, the
    scan of ``root``), a row without a class, and fewer than two classes with photos."""
    from ..data import read_label_csv, read_list_file

    root = Path(root).resolve()
    labels = Path(labels)
    ds = (read_label_csv if labels.suffix.lower() == ".csv" else read_list_file)(labels, images_root=root)
    known = {os.path.abspath(p) for p in (scan_photos(root) if photos is None else photos)}
    paths = [Path(os.path.abspath(p)) for p in ds.paths]
    seen = set()
    for p, row in zip(paths, ds.labels):
        if p in seen:
            raise InvalidInputError(f"label file {labels}: {p} is listed twice")
        seen.add(p)
        if str(p) not in known:
            raise InvalidInputError(f"label file {labels}: {p} is not one of the photos indexed under {root} (outside "
                                    "the folder, hidden, in the index folder, or not an image file)")
        if not row.any():
            raise InvalidInputError(f"label file {labels}: no class given for {p}")
    present = int(ds.labels.any(0).sum())
    if present < 2:
        raise InvalidInputError(f"label file {labels}: supervised codes need photos of at least two classes, found "
                                f"{present}")
    return paths, ds.labels, list(ds.class_names)


def _commit(index: ImageIndex, report: SyncReport) -> None:
    index.save()
    report.commits += 1
    if os.environ.get(PAUSE_ENV):
        time.sleep(float(os.environ[PAUSE_ENV]))


# ---- a new index and its model ----------------------------------------------------------------------------


def _open_or_create(index_dir, root, model, supervised, bits, image_size, sample, backbone, weights, config, seed,
                    files, progress, say, report, labelled) -> ImageIndex:
    if (index_dir / MANIFEST).is_file():
        index = open_index(index_dir, mmap=False)
        recorded = index.checkpoint
        if model is not None and recorded and Path(model).resolve() != index._checkpoint_path().resolve():
            raise IncompatibleError(f"the index {index_dir} was made with the model {recorded}, not {model}: "
                                    "give another --index, or delete this one to rebuild it")
        if recorded == MODEL_CHECKPOINT and not (index_dir / MODEL_CHECKPOINT).is_file():
            if len(index):
                raise MissingFileError(f"the index {index_dir} holds {len(index)} images but its model "
                                       f"{index_dir / MODEL_CHECKPOINT} is gone: delete the index to rebuild it")
            index.semantic.class_names = _fit_model(index_dir, root, supervised, index.bits, image_size, sample,
                                                    backbone, weights, config, seed, files, progress, say, labelled)
            index.save()
            report.fitted = True
        _check_kind(index, supervised, index_dir)
        return index
    if model is not None:
        from .encoder import Encoder

        encoder = Encoder(model)
        index = ImageIndex(_empty(encoder.bits, encoder.class_names), checkpoint=str(Path(encoder.checkpoint).resolve()))
        index.semantic.checkpoint = index.checkpoint
        index._encoder = encoder
        index.save(index_dir)
        return index
    if supervised and labelled is None:
        _class_folders(root)  # refuse before anything is written
    index = ImageIndex(_empty(bits, []), checkpoint=MODEL_CHECKPOINT)
    index.semantic.checkpoint = MODEL_CHECKPOINT  # relative: the folder can move with its model
    index.save(index_dir)
    index.semantic.class_names = _fit_model(index_dir, root, supervised, bits, image_size, sample, backbone,
                                            weights, config, seed, files, progress, say, labelled)
    index.save()  # with the class names: a sync killed from here on finds the model and its classes
    report.fitted = True
    return index


def _empty(bits: int, class_names: list) -> HammingIndex:
    semantic = HammingIndex(-(-bits // 8) * 8)
    semantic.code_bits = bits
    semantic.class_names = list(class_names)
    return semantic


def _check_kind(index: ImageIndex, supervised: bool, index_dir: Path) -> None:
    if supervised and index.encoder.method == "itq":
        raise IncompatibleError(f"the index {index_dir} holds unsupervised (ITQ) codes; for --supervised codes give "
                                "another --index, or delete this one to rebuild it")


def _fit_model(index_dir, root, supervised, bits, image_size, sample, backbone, weights, config, seed, files,
               progress, say, labelled=None) -> list:
    """Fit the folder's model into ``<index_dir>/model`` with the one training engine; returns its class names."""
    from ..train.config import TrainConfig
    from ..train.trainer import train

    out = index_dir / MODEL_DIR
    if supervised:
        paths, labels, classes = labelled if labelled is not None else _class_folders(root)
        recipe = TrainConfig.read_yaml(config or _recipe())
        recipe.pop("protocol", None)
        cfg = TrainConfig.from_dict({**recipe, "bits": bits, "image_size": image_size, "data_size": image_size,
                                     "data": str(root), "seed": seed, "out": str(out)}).validate()
        say(f"training the {cfg.method} head on {len(paths)} photos of {len(classes)} classes")
    else:
        rng = np.random.default_rng(seed)
        paths = [files[i] for i in np.sort(rng.permutation(len(files))[:sample])]
        labels, classes = np.zeros((len(paths), 0), np.uint8), []
        cfg = TrainConfig(method="itq", model=backbone, weights=weights, bits=bits, image_size=image_size,
                          data_size=image_size, data=str(root), seed=seed, mirror=False, out=str(out)).validate()
        say(f"fitting ITQ ({bits} bits) on the {backbone} features of {len(paths)} photos")
    data = _decode(paths, labels, classes, image_size, progress)
    if not cfg.method_class().needs_labels and len(data) <= bits:
        raise InvalidInputError(f"ITQ needs more readable photos than bits to fit a model: {len(data)} for {bits} "
                                "bits (add photos or lower --bits)")
    train(cfg, data, progress=progress)
    return classes


def _recipe() -> Path:
    if not RECIPE.is_file():
        raise MissingFileError(f"the supervised recipe {RECIPE} is not installed: give a training config")
    return RECIPE


def _class_folders(root: Path):
    """(paths, one-hot labels, class names) of ``root/<class>/...`` photos; at least two classes."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, targets = [], []
    for c, name in enumerate(classes):
        found = scan_photos(root / name)
        paths += found
        targets += [c] * len(found)
    present = sorted(set(targets))
    if len(present) < 2:
        raise InvalidInputError(f"--supervised needs class sub-folders with photos ({root}/<class>/...): found "
                                f"{len(present)} class(es) with photos")
    from ..data.base import one_hot

    return paths, one_hot(targets, len(classes)), classes


def _decode(paths, labels, classes, size: int, progress: bool):
    """The photos as an in-memory array at ``size`` px; unreadable ones left out (the sync lists them later)."""
    from ..data import ArrayDataset, load_image
    from ..utils.progress import tqdm

    images, keep = [], []
    for i, p in enumerate(tqdm(paths, desc="decode", disable=not progress, leave=False)):
        try:
            images.append(load_image(p, (size, size)))
            keep.append(i)
        except DeephashError:
            continue
    if not images:
        raise InvalidInputError(f"none of the {len(paths)} photos sampled to fit the model could be read")
    return ArrayDataset(np.stack(images), labels[keep], classes, [str(paths[i]) for i in keep], name="photos")
