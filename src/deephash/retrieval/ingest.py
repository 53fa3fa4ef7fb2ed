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
it. A first sync that fails (or is interrupted) before its model is written removes what it wrote; one killed
there leaves an index with no photos and no model, which the next sync builds again with its own settings. An
index that holds photos keeps its model: settings that differ from it (``bits``, ``image_size``, ``model``,
``backbone``, ``supervised``) are refused, naming them, rather than ignored.

The fit computes each sampled photo's backbone features once, in ONNX Runtime when installed (the encoder's
fast path), and those photos are then encoded from the stored features by the fitted head alone: each photo
runs through the backbone once per sync, not once to fit and again to encode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import IMAGE_EXTENSIONS
from ..errors import DeephashError, IncompatibleError, InvalidInputError, MissingFileError
from ..index import HammingIndex
from ..index.storage import MANIFEST, check_target, index_lock
from ..index.storage.locking import LOCK_NAME
from ..index.storage.manifest import _OWN_FILE
from .image_index import ImageIndex, open_index

DEFAULT_DIR = ".deephash"
# a new model's settings when the caller gives none (None in ``sync_folder``: "the index's own, or these")
DEFAULT_BITS, DEFAULT_IMAGE_SIZE, DEFAULT_SAMPLE, DEFAULT_BACKBONE = 48, 160, 2000, "efficientnet_lite0"
MODEL_DIR = "model"
PREVIOUS_MODEL_DIR = ".model.previous"  # an index built again keeps its former model here until the new one is in
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
                supervised: bool = False, bits: int | None = None, image_size: int | None = None,
                sample: int | None = None, backbone: str | None = None, weights: str | None = "imagenet",
                config: str | Path | None = None, rehash: bool = False, commit_seconds: float = 10.0,
                batch_size: int = BATCH, seed: int = 0, progress: bool = True, log=None,
                labels: str | Path | None = None) -> SyncReport:
    """Bring the index at ``index_dir`` (default ``<photos>/.deephash``) in step with the photos under ``photos``:
    add new and changed files, remove deleted ones, skip unchanged ones (see the module docstring).

    A new index needs a model: ``model`` (a checkpoint or run folder) is used as given; otherwise ITQ with
    ``bits`` bits (default 48) is fitted on ``sample`` (2,000) random photos' features from ``backbone``
    (EfficientNet-Lite0, ``weights``) at ``image_size`` (160) px, or with ``supervised`` the DSH head of
    ``config`` (default: the best CIFAR recipe) is trained on the class sub-folders' photos, or on the photos a
    label file ``labels`` names (see ``read_photo_labels``; implies ``supervised``; photos it does not name are
    indexed, without a class, but not trained on). An existing index keeps its model; a ``bits``,
    ``image_size``, ``model``, ``backbone`` or ``supervised`` given that differs from it is refused
    (IncompatibleError naming each), unless the index holds no photos yet: then it is built again with the
    settings given. A new index whose fit fails leaves nothing behind. Photos are encoded
    ``batch_size`` at a time and committed at most every ``commit_seconds`` (the work a crash may cost).
    ``log`` (a callable taking a line) hears what happens."""
    if batch_size < 1 or commit_seconds < 0:
        raise InvalidInputError(f"batch_size must be >= 1 and commit_seconds >= 0, got {batch_size} and "
                                f"{commit_seconds}")
    for name, value in (("bits", bits), ("image_size", image_size), ("sample", sample)):
        if value is not None and value < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
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
    asked = _Asked(model, bits, image_size, backbone, supervised)
    check_target(index_dir)  # a folder that holds something else is refused before anything is written to it
    made = _made_by_us(index_dir)
    with index_lock(index_dir):  # one writer for the whole sync: a second sync or a service write waits
        was = (made, _names(index_dir))  # what a new index that fails goes back to, seen under the lock
        index, fitted = _open(index_dir, asked, sample, say), None
        if index is None:
            settings = (root, asked, sample, backbone, weights, config, seed, files, progress, say, report, labelled)
            index, fitted = _create_or_undo(index_dir, was, settings)
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
        _ingest(index, root, todo, report, commit_seconds, batch_size, progress, _labeller(index, root, labelled),
                fitted)
        if fitted is not None:
            _record_graph(index)
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
            progress: bool, label_of, fitted: "_Fitted | None" = None) -> None:
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
                failures = _add(index, paths, meta, fitted, progress)
                failed = {f for f, _ in failures}
                report.unreadable += failures
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


def _add(index: ImageIndex, paths: list[str], meta: list[dict], fitted: "_Fitted | None", progress: bool) -> list:
    """Add one batch; photos whose bytes the model fit already ran through the backbone take their codes from
    those features (head only), the rest are decoded and encoded (with the encoder's own progress: a batch can
    take minutes on a busy machine). Returns the (path, reason) failures."""
    rows = [fitted.row(p, m["blake2b"]) if fitted is not None else None for p, m in zip(paths, meta)]
    stored = [k for k, r in enumerate(rows) if r is not None]
    fresh = [k for k, r in enumerate(rows) if r is None]
    if stored:
        index.add_encoded(fitted.encode([rows[k] for k in stored], index.keeps_features), [meta[k] for k in stored])
    if not fresh:
        return []
    enc = index.encoder.encode_images([paths[k] for k in fresh], skip_unreadable=True, progress=progress,
                                      features=index.keeps_features)
    if len(enc.indices):
        index.add_encoded(enc, [meta[fresh[i]] for i in enc.indices])
    return enc.failures


def _record_graph(index: ImageIndex) -> None:
    """Load the fitted model's encoder once, as encoding would have: it exports the model's fast graph and records
    it (``query_graph``), so the first one-photo search after ``up`` runs without torch too. (The photos encoded
    from the fit's features never needed the encoder; ``deephash serve`` would load it anyway.)"""
    from ..models.runtime import available

    if available():
        index.encoder  # noqa: B018 - loading it is the point


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


@dataclass
class _Asked:
    """The model settings a sync was given; None (False) where not given, so that an existing index's own stand
    and only a value the caller chose can conflict with them."""
    model: str | Path | None
    bits: int | None
    image_size: int | None
    backbone: str | None
    supervised: bool


@dataclass
class _Fitted:
    """The backbone features the model fit computed, by photo (path -> (blake2b of the bytes decoded, row)): such
    a photo's code is the fitted head applied to them, so its backbone (the slow part) runs once per sync."""
    model: object     # the fitted HashingModel
    features: object  # (N, D) float32 tensor of pooled features
    rows: dict

    def row(self, path: str, digest: str) -> int | None:
        """The features' row of this photo if the fit decoded these very bytes, else None."""
        hit = self.rows.get(path)
        return hit[1] if hit is not None and hit[0] == digest else None

    def encode(self, rows: list[int], features: bool = False):
        """``Encoded`` codes (and float16 features, for an index that keeps them) of these rows, by the head alone."""
        from ..runs import Encoded

        codes, feats = self.model.encode_stored(self.features[rows], features=features)
        return Encoded(codes, np.arange(len(rows)), [], bits=self.model.bits, features=feats)


def _made_by_us(index_dir: Path) -> Path | None:
    """The outermost folder of ``index_dir`` that does not exist yet (this sync creates it), None if it exists."""
    if index_dir.exists():
        return None
    top = index_dir
    while not top.parent.exists():
        top = top.parent
    return top


def _names(index_dir: Path) -> set:
    return set(os.listdir(index_dir)) if index_dir.is_dir() else set()


def _ours(name: str) -> bool:
    """A name a new index's own writes use (its data files and manifest, its model folder), not its lock."""
    return (bool(_OWN_FILE.match(name)) or name in (MANIFEST, MODEL_DIR)) and name != LOCK_NAME


def _open(index_dir: Path, asked: _Asked, sample, say) -> ImageIndex | None:
    """The index to sync into, or None when one is to be built: there is none, or it holds no photos and has no
    model (a first sync was killed before writing it) or has its own model but was asked for other settings."""
    if not (index_dir / MANIFEST).is_file():
        return None
    index = open_index(index_dir, mmap=False)
    own = index.checkpoint == MODEL_CHECKPOINT
    if own and not (index_dir / MODEL_CHECKPOINT).is_file():
        if len(index):
            raise MissingFileError(f"the index {index_dir} holds {len(index)} images but its model "
                                   f"{index_dir / MODEL_CHECKPOINT} is gone: delete the index to rebuild it")
        say(f"the index {index_dir} holds no photos and no model yet (an earlier run stopped): building it")
        return None
    conflicts = _conflicts(index, asked)
    if conflicts and own and not len(index):
        say(f"the index {index_dir} holds no photos yet: building it again ({'; '.join(conflicts)})")
        return None
    if conflicts:
        raise IncompatibleError(f"the index {index_dir} holds {len(index)} images made with other settings: "
                                f"{'; '.join(conflicts)}. Leave these options out to keep adding to it, give another "
                                f"--index, or delete {index_dir} to rebuild it with them (every photo is encoded "
                                "again)")
    if sample is not None:
        say(f"--sample only matters when a model is fitted: the index {index_dir} keeps its model")
    return index


def _conflicts(index: ImageIndex, asked: _Asked) -> list[str]:
    """Each setting asked for that differs from the index's model, as '--option value, but ...'."""
    out = []
    if asked.model is not None and index.checkpoint:
        from ..runs import checkpoint_file  # (imports torch: only when a model is named)

        if checkpoint_file(asked.model).resolve() != checkpoint_file(index._checkpoint_path()).resolve():
            out.append(f"--model {asked.model}, but it was made with the model {index.checkpoint}")
    if asked.bits is not None and asked.bits != index.bits:
        out.append(f"--bits {asked.bits}, but its codes have {index.bits} bits")
    if asked.image_size is None and asked.backbone is None and not asked.supervised:
        return out
    from ..runs import load_checkpoint

    cfg = load_checkpoint(index._checkpoint_path()).get("config", {})  # the model's own settings
    if asked.image_size is not None and asked.image_size != cfg.get("image_size"):
        out.append(f"--image-size {asked.image_size}, but its model reads {cfg.get('image_size')} px images")
    if asked.backbone is not None and asked.backbone != cfg.get("model"):
        out.append(f"backbone {asked.backbone}, but its model's is {cfg.get('model')}")
    if asked.supervised and cfg.get("method") == "itq":
        out.append("--supervised, but its codes are unsupervised (ITQ)")
    return out


def _create_or_undo(index_dir: Path, was: tuple, settings: tuple):
    """``_create``, undone when it fails or is interrupted before the index is complete (so a first run that
    fails leaves nothing to trip the next one). Only what an index writes is removed: ``index_dir`` itself when
    this sync created it (and the parents it created, while empty); in a folder that was there, only the index's
    own new files, never its lock (a writer waiting on it must keep it). An index being built again is left with
    no photos and no new model (the next sync builds it with its own settings); its former model stays in
    ``PREVIOUS_MODEL_DIR`` until a rebuild succeeds."""
    made, before = was
    set_aside = MANIFEST in before and MODEL_DIR in before
    if set_aside:  # an index without photos built again: its former model waits aside until the new one is in
        given = settings[1].model
        if given is not None and (index_dir / MODEL_DIR).resolve() in Path(given).resolve().parents:
            raise InvalidInputError(f"--model {given} lies inside the index's own model folder, which building "
                                    "the index again replaces: copy it elsewhere first")
        shutil.rmtree(index_dir / PREVIOUS_MODEL_DIR, ignore_errors=True)
        (index_dir / MODEL_DIR).rename(index_dir / PREVIOUS_MODEL_DIR)
    try:
        created = _create(index_dir, *settings)
    except BaseException:
        try:
            if made is not None:
                shutil.rmtree(index_dir, ignore_errors=True)
                for parent in index_dir.parents:  # the folders made on the way, while empty
                    if parent == made.parent:
                        break
                    try:
                        parent.rmdir()
                    except OSError:
                        break
            elif MANIFEST in before:  # only a model folder this run wrote
                shutil.rmtree(index_dir / MODEL_DIR, ignore_errors=True)
            else:
                for name in _names(index_dir) - before:
                    p = index_dir / name
                    if _ours(name):
                        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(
                            missing_ok=True)
        except OSError:
            pass  # the failure that brought us here is the one to report
        raise
    shutil.rmtree(index_dir / PREVIOUS_MODEL_DIR, ignore_errors=True)
    return created


def _create(index_dir, root, asked: _Asked, sample, backbone, weights, config, seed, files, progress, say, report,
            labelled):
    """A new index (none was there, or one without photos is built again) and its model: the one given, or one
    fitted on the photos. Returns (index, the fit's features as ``_Fitted`` or None)."""
    if asked.model is not None:
        from .encoder import Encoder

        encoder = Encoder(asked.model)
        _check_given_model(encoder, asked)
        index = ImageIndex(_empty(encoder.bits, encoder.class_names), checkpoint=str(Path(encoder.checkpoint).resolve()))
        index.semantic.checkpoint = index.checkpoint
        index._encoder = encoder
        index.save(index_dir)
        return index, None
    plan = _fit_plan(index_dir, root, asked, sample, backbone, weights, config, seed, files, labelled)  # may refuse
    index = ImageIndex(_empty(plan[0].bits, []), checkpoint=MODEL_CHECKPOINT)
    index.semantic.checkpoint = MODEL_CHECKPOINT  # relative: the folder can move with its model
    index.save(index_dir)
    index.semantic.class_names, fitted = _fit(*plan, progress, say)
    index.save()  # with the class names: a sync killed from here on finds the model and its classes
    report.fitted = True
    return index, fitted


def _check_given_model(encoder, asked: _Asked) -> None:
    conflicts = []
    if asked.bits is not None and asked.bits != encoder.bits:
        conflicts.append(f"--bits {asked.bits}, but it makes {encoder.bits}-bit codes")
    if asked.image_size is not None and asked.image_size != encoder.image_size[0]:
        conflicts.append(f"--image-size {asked.image_size}, but it reads {encoder.image_size[0]} px images")
    if asked.backbone is not None and asked.backbone != encoder.config.model:
        conflicts.append(f"backbone {asked.backbone}, but its backbone is {encoder.config.model}")
    if conflicts:
        raise IncompatibleError(f"the model {asked.model} does not match the settings given: {'; '.join(conflicts)}. "
                                "Leave these options out to use the model as it is")


def _empty(bits: int, class_names: list) -> HammingIndex:
    semantic = HammingIndex(-(-bits // 8) * 8)
    semantic.code_bits = bits
    semantic.class_names = list(class_names)
    return semantic


def _fit_plan(index_dir, root, asked: _Asked, sample, backbone, weights, config, seed, files, labelled):
    """(config, photos, labels, class names) of the model to fit, every setting checked before anything is
    written (an ITQ fit on fewer photos than bits, bad bits or image size, missing class sub-folders)."""
    from ..models.runtime import available
    from ..runs import TrainConfig

    bits = asked.bits or DEFAULT_BITS
    image_size = asked.image_size or DEFAULT_IMAGE_SIZE
    fast = available()  # the fit's features in the encoder's fast runtime: computed once, reused to encode
    out = str(index_dir / MODEL_DIR)
    if asked.supervised:
        paths, labels, classes = labelled if labelled is not None else _class_folders(root)
        recipe = TrainConfig.read_yaml(config or _recipe())
        recipe.pop("protocol", None)
        if fast and recipe.get("frozen_backbone") and "fast_features" not in recipe:
            recipe["fast_features"] = True
        cfg = TrainConfig.from_dict({**recipe, **({"model": backbone} if backbone else {}), "bits": bits,
                                     "image_size": image_size, "data_size": image_size, "data": str(root),
                                     "seed": seed, "out": out}).validate()
        return cfg, paths, labels, classes
    sample = DEFAULT_SAMPLE if sample is None else sample
    cfg = TrainConfig(method="itq", model=backbone or DEFAULT_BACKBONE, weights=weights, bits=bits,
                      image_size=image_size, data_size=image_size, data=str(root), seed=seed, mirror=False,
                      crop_pad=0, frozen_backbone=fast, fast_features=fast, out=out).validate()
    n = min(len(files), sample)
    if n <= bits:
        raise InvalidInputError(f"ITQ needs more readable photos than bits to fit a model: {n} for {bits} bits ("
                                + ("raise --sample or lower --bits)" if sample < len(files)
                                   else "add photos or lower --bits)"))
    rng = np.random.default_rng(seed)
    paths = [files[i] for i in np.sort(rng.permutation(len(files))[:sample])]
    return cfg, paths, np.zeros((len(paths), 0), np.uint8), []


def _fit(cfg, paths, labels, classes, progress, say) -> tuple[list, _Fitted | None]:
    """Fit the folder's model into ``cfg.out`` with the one training engine; returns its class names and the
    backbone features it computed (``_Fitted``; None when the model cannot be applied to them)."""
    from ..train.trainer import Trainer

    if cfg.method == "itq":
        say(f"fitting ITQ ({cfg.bits} bits) on the {cfg.model} features of {len(paths)} photos")
    else:
        say(f"training the {cfg.method} head on {len(paths)} photos of {len(classes)} classes")
    data, digests = _decode(paths, labels, classes, cfg.image_size, progress)
    if not cfg.method_class().needs_labels and len(data) <= cfg.bits:
        raise InvalidInputError(f"ITQ needs more readable photos than bits to fit a model: {len(data)} for {cfg.bits} "
                                "bits (add photos or lower --bits)")
    trainer = Trainer(cfg, data, progress=progress)
    model = trainer.fit().model
    if trainer.features is None or model.mirror_average or getattr(model, "train_blocks", 0):
        return classes, None  # no pooled store of the original view: every photo is encoded from its pixels
    rows = {path: (digest, i) for i, (path, digest) in enumerate(zip(data.paths, digests))}
    return classes, _Fitted(model, trainer.features[0], rows)


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
    """(the photos as an in-memory array at ``size`` px, the blake2b digest of the bytes each was decoded from);
    unreadable ones left out (the sync lists them later). Each file is read once, for both, by a pool of threads
    (Pillow releases the GIL while decoding), so the digest names exactly the pixels that were fitted on."""
    from concurrent.futures import ThreadPoolExecutor

    from ..data import ArrayDataset
    from ..data.images import decode_image
    from ..utils.progress import tqdm

    def read(path):
        try:
            data = Path(path).read_bytes()
            return decode_image(data, (size, size), str(path)), hashlib.blake2b(data, digest_size=16).hexdigest()
        except (DeephashError, OSError):
            return None

    images, digests, keep = [], [], []
    with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="deephash-decode") as pool:
        for i, got in enumerate(tqdm(pool.map(read, paths), total=len(paths), desc="decode", unit="img",
                                     disable=not progress, leave=False)):
            if got is not None:
                images.append(got[0])
                digests.append(got[1])
                keep.append(i)
    if not images:
        raise InvalidInputError(f"none of the {len(paths)} photos sampled to fit the model could be read")
    return ArrayDataset(np.stack(images), labels[keep], classes, [str(paths[i]) for i in keep], name="photos"), digests
