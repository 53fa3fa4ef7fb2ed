"""``deephash up`` (retrieval/ingest.py) and ``deephash dupes`` (retrieval/dupes.py) on small real photo folders:
incremental syncs, changed and unreadable files, a real SIGKILL mid-way, near-duplicate groups."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from deephash import DeephashError
from deephash.retrieval import open_index
from deephash.retrieval.dupes import contact_sheet, find_duplicates
from deephash.retrieval.ingest import file_digest, scan_photos, sync_folder

# the shared data: $DEEPHASH_SHARED, else the folder beside the repository (../shared)
SHARED = Path(os.environ.get("DEEPHASH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
COCO = SHARED / "datasets" / "coco128" / "images" / "train2017"
SRC = Path(__file__).resolve().parents[1] / "src"
FAST = dict(bits=16, image_size=64, progress=False)
needs_coco = pytest.mark.skipif(not COCO.is_dir(), reason=f"coco128 photos not found at {COCO} (set DEEPHASH_SHARED "
                                                          "to the folder holding datasets/coco128)")


def photos(n, start=0):
    return sorted(COCO.glob("*.jpg"))[start:start + n]


def small_copy(src: Path, dst: Path, fmt=None):
    """A 160 px copy of a photo (keeps the tests' decoding cheap); ``fmt`` another file format."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").resize((160, 120)).save(dst, format=fmt)


def make_folder(root: Path, n: int, start: int = 0) -> list[Path]:
    out = []
    for k, p in enumerate(photos(n, start)):
        dst = root / ("nested/deeper" if k % 3 == 0 else "") / p.name
        small_copy(p, dst)
        out.append(dst)
    return out


def paths_in(index_dir: Path) -> list[str]:
    index = open_index(index_dir)
    return [md["path"] for md in index.get_metadata(index.ids)]


@pytest.fixture(scope="module")
def itq_checkpoint(tmp_path_factory):
    """One folder synced with the default model (ITQ fitted on it); later tests reuse its model."""
    root = tmp_path_factory.mktemp("fit") / "photos"
    make_folder(root, 20)
    report = sync_folder(root, **FAST)
    assert report.fitted and len(report.added) == 20 and report.total == 20
    assert Path(report.model) == root / ".deephash" / "model" / "last.ckpt"
    return report.model


@needs_coco
def test_sync_is_incremental(tmp_path, itq_checkpoint):
    root = tmp_path / "photos"
    files = make_folder(root, 14)
    small_copy(photos(1, 40)[0], root / "more.png", "PNG")
    small_copy(photos(1, 41)[0], root / "more.webp", "WEBP")
    Image.open(files[1]).save(root / "anim.gif")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    small_copy(photos(1, 42)[0], root / ".hidden" / "skip.jpg")  # hidden folders are not scanned
    (root / "notes.txt").write_text("not an image")
    first = sync_folder(root, model=itq_checkpoint, **FAST)
    assert len(first.added) == 17 and first.total == 17 and not first.removed
    assert [p for p, _ in first.unreadable] == [str(root / "broken.jpg")]
    assert sorted(paths_in(first.index_dir)) == sorted(first.added)

    second = sync_folder(root, **FAST)
    assert (len(second.added), len(second.removed), second.skipped, second.total) == (0, 0, 17, 17)
    assert [p for p, _ in second.unreadable] == [str(root / "broken.jpg")]  # listed again, never indexed

    new = make_folder(root / "new", 5, start=60)
    for gone in files[2:4]:
        gone.unlink()
    third = sync_folder(root, **FAST)
    assert sorted(third.added) == sorted(map(str, new))
    assert sorted(third.removed) == sorted(map(str, files[2:4]))
    assert third.total == 20 and third.skipped == 15

    # a changed file replaces its entry; a touched file with the same bytes is hashed and kept
    index = open_index(first.index_dir)
    old_id = [i for i, md in zip(index.ids, index.get_metadata(index.ids))
              if md["path"] == str(files[0])][0]
    small_copy(photos(1, 70)[0], files[0])
    os.utime(files[5], ns=(time.time_ns(), time.time_ns() + 10**9))
    fourth = sync_folder(root, **FAST)
    assert fourth.replaced == [str(files[0])] and not fourth.added and not fourth.removed
    assert fourth.total == 20 and fourth.skipped == 19
    index = open_index(first.index_dir)
    rows = {md["path"]: (i, md) for i, md in zip(index.ids, index.get_metadata(index.ids))}
    assert len(rows) == 20 == len(index)
    assert rows[str(files[0])][0] != old_id and rows[str(files[0])][1]["blake2b"] == file_digest(files[0])
    code = index.get_codes([rows[str(files[0])][0]])
    assert (index.encode([str(files[0])]).codes == code).all()  # the new bytes' code, not the old one

    # a path another writer added a second time is cleaned up
    from deephash.retrieval import update_index

    with update_index(first.index_dir) as ix:
        ix.semantic.add(code, metadata=[dict(rows[str(files[0])][1])])
    assert len(open_index(first.index_dir)) == 21
    fifth = sync_folder(root, **FAST)
    assert fifth.total == 20 and sorted(paths_in(first.index_dir)) == sorted(rows)


@needs_coco
def test_scan_skips_the_index_folder(tmp_path):
    root = tmp_path / "photos"
    make_folder(root, 2)
    (root / "idx").mkdir()
    small_copy(photos(1, 5)[0], root / "idx" / "inside.jpg")
    assert len(scan_photos(root)) == 3
    assert len(scan_photos(root, exclude=[root / "idx"])) == 2
    with pytest.raises(DeephashError, match="cannot be the photo folder"):
        sync_folder(root, index_dir=root, **FAST)
    with pytest.raises(DeephashError, match="more readable photos than bits"):
        sync_folder(root, index_dir=tmp_path / "x" / "y", **FAST)
    assert not (tmp_path / "x").exists()  # refused before anything was written


@needs_coco
def test_supervised_trains_the_dsh_head_on_class_folders(tmp_path):
    root = tmp_path / "photos"
    for c, start in (("cats", 0), ("dogs", 10)):
        for p in photos(6, start):
            small_copy(p, root / c / p.name)
    with pytest.raises(DeephashError, match="class sub-folders"):
        sync_folder(root / "cats", index_dir=tmp_path / "x", supervised=True, **FAST)
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "cifar10_best.yaml").read_text())
    (tmp_path / "short.yaml").write_text(yaml.safe_dump({**recipe, "epochs": 2}))  # the best recipe, 2 epochs
    report = sync_folder(root, supervised=True, config=tmp_path / "short.yaml", **FAST)
    index = open_index(report.index_dir)
    assert report.fitted and report.total == 12 and index.class_names == ["cats", "dogs"]
    assert index.encoder.method == "dsh" and index.encoder.config.model_kwargs["hidden"] == 1024  # the best recipe
    labels = {Path(md["path"]).parent.name: md["labels"] for md in index.get_metadata(index.ids)}
    assert labels == {"cats": ["cats"], "dogs": ["dogs"]}


def run_up(root, *args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "deephash", "up", str(root), "--no-serve", "--bits", "16",
                             "--image-size", "64", "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})}, **kw)


@needs_coco
def test_sigkill_midway_then_the_next_run_completes(tmp_path, itq_checkpoint):
    root = tmp_path / "photos"
    files = make_folder(root, 24)
    manifest = root / ".deephash" / "manifest.json"
    proc = run_up(root, "--model", itq_checkpoint, "--batch-size", "3", "--commit-seconds", "0",
                  env={"DEEPHASH_TEST_INGEST_PAUSE": "0.4"})
    count, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            count = json.loads(manifest.read_text())["count"]
        except (OSError, ValueError, KeyError):
            count = 0
        if 6 <= count:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    partial = len(open_index(root / ".deephash"))
    assert 6 <= partial < 24  # killed with part of the work committed
    done = run_up(root)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert f"added {24 - partial}," in out and "removed 0" in out
    indexed = paths_in(root / ".deephash")
    assert sorted(indexed) == sorted(map(str, files))  # exactly the photos: none twice, none lost


@needs_coco
def test_dupes_finds_planted_duplicates(tmp_path, itq_checkpoint):
    root = tmp_path / "photos"
    files = make_folder(root, 12)
    shutil.copy(files[1], root / "copy_of_1.jpg")
    shutil.copy(files[1], root / "nested" / "again_1.jpg")
    shutil.copy(files[4], root / "copy_of_4.jpg")
    report = sync_folder(root, model=itq_checkpoint, **FAST)
    index = open_index(report.index_dir)
    groups = find_duplicates(index, radius=0)
    as_sets = [set(g.paths) for g in groups]
    assert {str(files[1]), str(root / "copy_of_1.jpg"), str(root / "nested" / "again_1.jpg")} in as_sets
    assert {str(files[4]), str(root / "copy_of_4.jpg")} <= next(s for s in as_sets if str(files[4]) in s)
    assert [len(g.ids) for g in groups] == sorted((len(g.ids) for g in groups), reverse=True)
    assert all(g.distances[0] == 0 and g.ids[0] == min(g.ids) for g in groups)
    wide = find_duplicates(index, radius=16)  # every code within 16 bits of every other: one group
    assert len(wide) == 1 and len(wide[0].ids) == len(index)
    sheet = contact_sheet(groups, tmp_path / "sheet.png")
    assert Image.open(sheet).size[1] > 100
    with pytest.raises(DeephashError, match="radius"):
        find_duplicates(index, radius=-1)
    out = subprocess.run([sys.executable, "-m", "deephash", "dupes", str(report.index_dir), "--radius", "0", "--json"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["groups"][0]["size"] == len(groups[0].ids) and got["images"] == len(index)


@needs_coco
def test_up_command_syncs_then_serves_the_index(tmp_path, itq_checkpoint, monkeypatch):
    import contextlib
    import io

    import deephash.service as service
    from deephash.cli import main

    served = []
    monkeypatch.setattr(service, "serve", lambda settings, host, port, workers, **kw: served.append((settings, host, port)))

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        return e.value.code, out.getvalue(), err.getvalue()

    root = tmp_path / "photos"
    make_folder(root, 3)
    code, out, _ = run("up", root, "--model", itq_checkpoint, "--port", "8123", "-q")
    assert code == 0 and "added 3," in out
    (settings, host, port), = served
    assert Path(settings.index_dir) == root / ".deephash" and port == 8123 and host == "127.0.0.1"
    assert settings.allow_root == str(root) and settings.token is None
    code, _, err = run("up", tmp_path / "nowhere", "--no-serve")
    assert code == 2 and err.startswith("error: not a folder") and len(served) == 1


def synthetic_photo(path: Path, colour, rng) -> None:
    """A 64x48 photo of one colour with noise and a random grey square: two colours, two classes a frozen
    ImageNet backbone tells apart."""
    img = np.clip(np.array(colour, np.float32) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
    y, x = rng.integers(0, 24), rng.integers(0, 32)
    img[y:y + 20, x:x + 20] = rng.integers(0, 256)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


@pytest.fixture()
def flat_folder(tmp_path):
    """A flat folder: 8 red and 8 blue photos, and 3 green ones that no label file names."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    names = {}
    for cls, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for k in range(8):
            name = f"{cls[0]}{k:02d}.jpg"
            synthetic_photo(root / name, colour, rng)
            names[name] = cls
    for k in range(3):
        synthetic_photo(root / f"g{k}.jpg", (40, 200, 40), rng)
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "cifar10_best.yaml").read_text())
    (tmp_path / "short.yaml").write_text(yaml.safe_dump({**recipe, "epochs": 30}))
    return root, names, tmp_path / "short.yaml"


def test_supervised_with_a_label_file_on_a_flat_folder(tmp_path, flat_folder):
    root, names, short = flat_folder
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{n},{c}\n" for n, c in sorted(names.items())))
    report = sync_folder(root, labels=csv, config=short, **FAST)  # --labels implies --supervised
    index = open_index(report.index_dir)
    assert report.fitted and report.total == 19 and index.class_names == ["blue", "red"]
    assert index.encoder.method == "dsh"
    ids = index.ids
    meta = {Path(md["path"]).name: md.get("labels") for md in index.get_metadata(ids)}
    assert meta == {**{n: [c] for n, c in names.items()}, "g0.jpg": None, "g1.jpg": None, "g2.jpg": None}
    # the codes separate the two classes: every photo's Hamming distance to its own class is below its distance
    # to the other class on average, and so by a wide margin overall
    bits = np.unpackbits(index.get_codes(ids), axis=1)[:, :16].astype(int)
    cls = np.array([{"red": 0, "blue": 1}.get(names.get(Path(md["path"]).name), -1)
                    for md in index.get_metadata(ids)])
    d = (bits[:, None, :] != bits[None, :, :]).sum(2)
    same, other = cls[:, None] == cls[None, :], cls[:, None] != cls[None, :]
    lab = cls >= 0
    off = ~np.eye(len(cls), dtype=bool)
    intra = np.array([d[i][same[i] & off[i] & lab].mean() for i in np.flatnonzero(lab)])
    inter = np.array([d[i][other[i] & lab].mean() for i in np.flatnonzero(lab)])
    assert (intra < inter).all(), (intra, inter)
    assert inter.mean() - intra.mean() > 4, (intra.mean(), inter.mean())
    assert sync_folder(root, labels=csv, **FAST).skipped == 19  # a second run: nothing to do


def test_label_list_file_with_a_multi_label_row(tmp_path, flat_folder):
    root, names, short = flat_folder
    lst = tmp_path / "lists" / "labels.txt"
    lst.parent.mkdir()
    (lst.parent / "classes.txt").write_text("red\nblue\ngreen\n")
    rows = [f"{n} {int(c == 'red')} {int(c == 'blue')} 0" for n, c in sorted(names.items())] + ["g0.jpg 1 0 1"]
    lst.write_text("\n".join(rows) + "\n")
    short.write_text(yaml.safe_dump({**yaml.safe_load(short.read_text()), "epochs": 1}))  # only the labels matter
    report = sync_folder(root, labels=lst, config=short, **FAST)
    index = open_index(report.index_dir)
    assert index.class_names == ["red", "blue", "green"] and report.total == 19
    meta = {Path(md["path"]).name: md.get("labels") for md in index.get_metadata(index.ids)}
    assert meta["g0.jpg"] == ["red", "green"] and meta["b03.jpg"] == ["blue"] and meta["g1.jpg"] is None


@pytest.mark.parametrize("text, message", [
    ("a.jpg,red\nmissing.jpg,blue\n", "image not found"),
    ("a.jpg,red\nb.jpg,\n", "empty label for b.jpg"),
    ("# nothing\n\npath,label\n", "has no entries"),
    ("a.jpg,red\nb.jpg,red\n", "at least two classes"),
    ("a.jpg,red\na.jpg,blue\n", "listed twice"),
    ("a.jpg,red,blue\n", "expected 'path,label'"),
    ("a.jpg,red\n.hidden.jpg,blue\n", "not one of the photos indexed"),
    ("a.jpg 1 0\nb.jpg 0 0\n", "no class given for"),  # a list file (not .csv) row without a class
])
def test_bad_label_files_are_refused_before_anything_is_written(tmp_path, text, message):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", ".hidden.jpg"):
        synthetic_photo(root / name, (200, 40, 40), rng)
    labels = tmp_path / ("labels.txt" if "1 0" in text else "labels.csv")
    labels.write_text(text)
    with pytest.raises(DeephashError, match=message):
        sync_folder(root, labels=labels, **FAST)
    assert not (root / ".deephash").exists()


def test_up_labels_option_errors_cleanly(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    synthetic_photo(root / "a.jpg", (200, 40, 40), rng)
    (tmp_path / "l.csv").write_text("a.jpg,red\nb.jpg,blue\n")
    out = subprocess.run([sys.executable, "-m", "deephash", "up", str(root), "--labels", str(tmp_path / "l.csv"),
                          "--no-serve", "-q"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "image not found" in out.stderr
    assert "Traceback" not in out.stderr


# ---- the first hour: failed first runs, settings that conflict, one backbone pass per photo, logs ------------


def colour_folder(root: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic photos of random colours (no shared data needed)."""
    rng = np.random.default_rng(seed)
    out = [root / f"p{k:02d}.jpg" for k in range(n)]
    for path in out:
        synthetic_photo(path, tuple(int(c) for c in rng.integers(0, 256, 3)), rng)
    return out


def run_cli(*args):
    """``deephash ARGS`` in this process (stderr is not a terminal): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from deephash.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code, out.getvalue(), err.getvalue()


def test_a_failed_first_run_leaves_nothing_and_conflicting_settings_are_refused(tmp_path):
    root = tmp_path / "tiny"
    names = sorted(p.name for p in colour_folder(root, 10))
    code, _, err = run_cli("up", root, "--no-serve", "--image-size", "64")
    assert code == 2 and err.startswith("error: ITQ needs more readable photos than bits") and "10 for 48 bits" in err
    assert "Traceback" not in err and sorted(os.listdir(root)) == names  # no hidden index folder left
    code, out, _ = run_cli("up", root, "--no-serve", "--image-size", "64", "--bits", "8", "-q")
    assert code == 0 and "added 10," in out and open_index(root / ".deephash").bits == 8  # the new --bits holds
    from deephash.models.runtime import available
    from deephash.retrieval.query_graph import QueryGraph

    if available():  # encoded from the fit's features, yet the model's graph is recorded for one-photo searches
        assert QueryGraph.find(root / ".deephash" / "model" / "last.ckpt") is not None
    code, _, err = run_cli("up", root, "--no-serve", "--bits", "16", "--image-size", "32")
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert "--bits 16, but its codes have 8 bits" in err and "--image-size 32, but its model reads 64 px" in err
    assert "Leave these options out" in err and f"delete {root / '.deephash'}" in err
    code, out, _ = run_cli("up", root, "--no-serve", "--bits", "8", "-q")  # the index's own value is no conflict
    assert code == 0 and "skipped 10 unchanged" in out
    with pytest.raises(DeephashError, match="--supervised, but its codes are unsupervised"):
        sync_folder(root, supervised=True, progress=False)
    with pytest.raises(DeephashError, match="--model .* but it was made with the model model/last.ckpt"):
        sync_folder(root, model=tmp_path / "other.ckpt", progress=False)


def test_a_fit_that_fails_midway_is_undone(tmp_path, monkeypatch):
    from deephash.retrieval import ingest

    def interrupted(cfg, *args):
        assert (Path(cfg.out).parent / "manifest.json").is_file()  # the empty index was saved: undone below
        raise KeyboardInterrupt  # Ctrl-C while the model is fitted

    monkeypatch.setattr(ingest, "_fit", interrupted)
    root = tmp_path / "photos"
    colour_folder(root, 12)
    with pytest.raises(KeyboardInterrupt):
        sync_folder(root, bits=8, image_size=64, progress=False)
    assert not (root / ".deephash").exists()
    mine = tmp_path / "a" / "b"  # --index folders that did not exist: all of them go
    with pytest.raises(KeyboardInterrupt):
        sync_folder(root, index_dir=mine, bits=8, image_size=64, progress=False)
    assert not (tmp_path / "a").exists()
    mine.mkdir(parents=True)  # an empty folder that was there stays, with only its lock (a waiting writer's)
    with pytest.raises(KeyboardInterrupt):
        sync_folder(root, index_dir=mine, bits=8, image_size=64, progress=False)
    assert mine.is_dir() and os.listdir(mine) == [".lock"]


def test_undoing_a_failed_first_run_removes_only_what_it_wrote(tmp_path, monkeypatch):
    from deephash.retrieval import ingest

    root = tmp_path / "photos"
    colour_folder(root, 12)
    other = tmp_path / "new" / "b" / "index.txt"

    def interrupted(cfg, *args):  # meanwhile, something else writes beside the folders this run made
        other.parent.mkdir(parents=True)
        other.write_text("another writer's")
        (Path(cfg.out).parent.parent / "notes.txt").write_text("a file in the index folder's parent")
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sync_folder(root, index_dir=tmp_path / "new" / "a", bits=8, image_size=64, progress=False)
    assert not (tmp_path / "new" / "a").exists()  # what it made goes; the parent it made stays while in use
    assert other.read_text() == "another writer's" and (tmp_path / "new" / "notes.txt").is_file()
    held = tmp_path / "held"  # a folder that holds something else is refused before anything is written
    held.mkdir()
    (held / "photo.jpg").write_bytes(b"not ours")
    with pytest.raises(DeephashError, match="not empty and holds no deephash index"):
        sync_folder(root, index_dir=held, bits=8, image_size=64, progress=False)
    assert sorted(os.listdir(held)) == ["photo.jpg"]


def test_building_an_index_again_keeps_its_former_model_until_the_new_one_is_in(tmp_path, monkeypatch):
    from deephash.retrieval import ingest

    root = tmp_path / "tiny"
    colour_folder(root, 20)
    index_dir = sync_folder(root, bits=8, image_size=64, progress=False).index_dir
    held = tmp_path / "held"
    held.mkdir()
    for p in root.glob("*.jpg"):
        p.rename(held / p.name)
    assert sync_folder(root, progress=False).total == 0  # no photos left: the next run may build it again
    model = index_dir / ingest.MODEL_CHECKPOINT
    former = model.read_bytes()
    kept = model.with_name("best.ckpt")  # a model of the user's, kept in the folder a rebuild replaces
    shutil.copy(model, kept)
    with pytest.raises(DeephashError, match="inside the index's own model folder"):
        sync_folder(root, model=kept, progress=False)
    assert model.read_bytes() == former and kept.read_bytes() == former
    for p in held.iterdir():
        p.rename(root / p.name)

    def interrupted(cfg, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):  # other settings, and the rebuild fails: the former model is kept
        sync_folder(root, bits=16, image_size=64, progress=False)
    assert (index_dir / ingest.PREVIOUS_MODEL_DIR / "last.ckpt").read_bytes() == former
    monkeypatch.undo()
    assert sync_folder(root, bits=16, image_size=64, progress=False).fitted  # a rebuild that succeeds drops it
    assert not (index_dir / ingest.PREVIOUS_MODEL_DIR).exists() and open_index(index_dir).bits == 16


def test_an_index_without_photos_is_built_again_with_the_new_settings(tmp_path):
    from deephash.retrieval import ImageIndex, ingest

    root = tmp_path / "tiny"
    colour_folder(root, 10)
    # what a first run killed while fitting leaves (and an older deephash's failed one): an empty 48-bit index
    # that names its model, and no model
    empty = ImageIndex(ingest._empty(48, []), checkpoint=ingest.MODEL_CHECKPOINT)
    empty.semantic.checkpoint = ingest.MODEL_CHECKPOINT
    empty.save(root / ".deephash")
    first = sync_folder(root, bits=8, image_size=64, progress=False)
    assert first.fitted and first.total == 10 and open_index(first.index_dir).bits == 8
    held = tmp_path / "held"
    held.mkdir()
    for p in root.glob("*.jpg"):
        p.rename(held / p.name)
    assert sync_folder(root, progress=False).total == 0  # the photos are gone: the index is empty
    for p in held.iterdir():
        p.rename(root / p.name)
    again = sync_folder(root, bits=4, progress=False)  # it holds no photos: refitted with 4 bits, not refused
    assert again.fitted and again.total == 10 and open_index(first.index_dir).bits == 4


def test_the_fit_features_encode_the_sampled_photos_and_progress_is_logged(tmp_path, monkeypatch, capsys):
    """The photos the fit decoded are encoded from its backbone features (the backbone runs once per photo);
    the others, and a photo whose bytes changed after the fit read them, go through the encoder. Both give the
    encoder's codes. Without a terminal, each long step logs count, rate and ETA lines."""
    from deephash.retrieval import ingest
    from deephash.retrieval.encoder import Encoder

    root = tmp_path / "photos"
    files = colour_folder(root, 14)
    encoded, sampled = [], []
    encode_images, fit = Encoder.encode_images, ingest._fit

    def spy(self, images, **kwargs):
        encoded.extend(map(str, images))
        return encode_images(self, images, **kwargs)

    def fit_then_edit(cfg, paths, *args):
        out = fit(cfg, paths, *args)
        sampled.extend(map(str, paths))
        synthetic_photo(paths[0], (10, 200, 10), np.random.default_rng(9))  # changed after the fit read it
        return out

    monkeypatch.setattr(Encoder, "encode_images", spy)
    monkeypatch.setattr(ingest, "_fit", fit_then_edit)
    monkeypatch.delenv("DEEPHASH_PROGRESS", raising=False)
    monkeypatch.setenv("DEEPHASH_PROGRESS_INTERVAL", "1e-9")  # every update logs
    report = sync_folder(root, bits=8, image_size=64, sample=12, progress=True)
    assert report.total == 14 and len(sampled) == 12
    assert sorted(encoded) == sorted({str(p) for p in files} - set(sampled[1:]))  # 2 not sampled + the edited one
    index = open_index(report.index_dir)
    ids = index.ids
    rows = index.get_metadata(ids)
    assert {md["path"]: md["blake2b"] for md in rows}[sampled[0]] == file_digest(sampled[0])
    fresh = encode_images(index.encoder, [md["path"] for md in rows])
    stored = np.unpackbits(index.get_codes(ids), axis=1)[:, :8]
    assert (np.unpackbits(fresh.codes, axis=1)[:, :8] == stored).mean() >= 0.95  # equal up to rounding
    err = capsys.readouterr().err
    for step in ("decode: 12/12 (100%)", "backbone features: ", "encode: 3/3 (100%)", "up: 14/14 (100%)", "ETA",
                 "img/s"):
        assert step in err, step
    assert "\r" not in err and "it/s" not in err
