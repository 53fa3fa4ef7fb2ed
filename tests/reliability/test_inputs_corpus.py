"""Fault corpus, inputs: bad images, datasets, codes files and command-line arguments through the real CLI.

Every case is built here from generated files. A bad image inside a folder being encoded is skipped and named
(exit 0); any other bad input ends in exit 2 with exactly one ``error:`` line naming the culprit, no traceback,
and nothing that existed before (a codes file, an index) changed.
"""

import contextlib
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.codes import CodesFile, pack_bits

BITS = 12


def run(*args, cwd=None):
    """``deephash ARGS`` in-process, as the console script runs it: (exit code, stdout, stderr). An exception
    that escapes the CLI (a traceback for the user) fails the test."""
    from deephash.cli import main

    out, err = io.StringIO(), io.StringIO()
    here, code = os.getcwd(), 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([a if isinstance(a, bytes) else str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def tree_digest(path: Path) -> str:
    """sha256 over every file's relative name and bytes under ``path`` (or of one file)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(os.fsencode(p.relative_to(path) if path.is_dir() else p.name) + b"\0" + p.read_bytes())
    return h.hexdigest()


def refused(result, *names):
    """Exit 2, exactly one ``error:`` line naming every one of ``names``, no traceback."""
    code, out, err = result
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert "Traceback" not in out + err
    return lines[0]


# ---- shared state: a tiny trained model, a codes file and an index built from it ----------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    code, out, err = run("train", "--data", "digits", "--bits", BITS, "--epochs", "1", "--batch-size", "100",
                         "--out", d / "run", "-q", cwd=d)
    assert code == 0, err
    for split in ("query", "database"):
        assert run("encode", d / "run", "--split", split, "--out", d / f"{split}.npz", "-q")[0] == 0
    assert run("index", "build", "--codes", d / "database.npz", "--out", d / "index")[0] == 0
    return d


@pytest.fixture
def unchanged(base):
    """Asserts after the test that the shared codes files and index were not modified."""
    before = {p: tree_digest(base / p) for p in ("query.npz", "database.npz", "index")}
    yield
    assert {p: tree_digest(base / p) for p in before} == before


# ---- images ---------------------------------------------------------------------------------------------------------


def rgb(h=24, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares w x h RGB pixels but holds almost no data: what a size check must refuse unread."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def exif_rotated_jpeg() -> bytes:
    """40 wide x 20 tall, left half red, right half blue, EXIF orientation 6 (display rotated 90° clockwise:
    40 tall x 20 wide, red on top)."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20, 0] = 255
    a[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=100, exif=exif.tobytes())
    return buf.getvalue()


def write_case(folder: Path, kind: str) -> Path:
    """Write the image of case ``kind`` into ``folder``; returns its path."""
    if kind == "zero-bytes":
        p = folder / "empty.jpg"
        p.write_bytes(b"")
    elif kind == "truncated-jpeg":
        data = jpeg_bytes(rgb(64, 64))
        p = folder / "cut.jpg"
        p.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-png":
        data = png_bytes(rgb(64, 64))
        p = folder / "cut.png"
        p.write_bytes(data[: len(data) // 2])
    elif kind == "text-as-image":
        p = folder / "notes.png"
        p.write_text("this is a text file, not a PNG\n")
    elif kind == "bomb-above-pillow-guard":
        p = folder / "bomb.png"
        p.write_bytes(png_header_only(20000, 20000))  # 400 Mpx
    elif kind == "144-mpx-below-pillow-guard":
        p = folder / "huge.png"
        p.write_bytes(png_header_only(12000, 12000))
    elif kind == "wrong-extension":
        p = folder / "really-a-png.jpg"
        p.write_bytes(png_bytes(rgb(20, 30)))
    elif kind == "cmyk":
        p = folder / "cmyk.jpg"
        Image.fromarray(rgb()).convert("CMYK").save(p)
    elif kind == "16-bit":
        p = folder / "deep.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 65535, (16, 16)).astype(np.uint16)).save(p)
    elif kind == "1x1":
        p = folder / "dot.png"
        Image.fromarray(rgb(1, 1)).save(p)
    elif kind == "animated-gif":
        p = folder / "anim.gif"
        frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
        frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    elif kind == "palette-transparency":
        p = folder / "palette.png"
        im = Image.new("P", (16, 16), 1)
        im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        im.paste(0, (0, 0, 8, 16))
        im.save(p, transparency=0)
    elif kind == "exif-rotated":
        p = folder / "rotated.jpg"
        p.write_bytes(exif_rotated_jpeg())
    elif kind == "non-utf8-name":
        p = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png"))
        p.write_bytes(png_bytes(rgb(seed=2)))
    elif kind == "255-byte-name":
        p = folder / ("x" * 251 + ".png")
        p.write_bytes(png_bytes(rgb(seed=3)))
    elif kind == "symlink-loop":
        os.symlink(folder, folder / "loop")  # a folder link back to its parent
        p = folder / "self.png"
        os.symlink(p, p)  # a file link to itself
    else:
        raise AssertionError(kind)
    return p


SKIPPED = ["zero-bytes", "truncated-jpeg", "truncated-png", "text-as-image", "bomb-above-pillow-guard",
           "144-mpx-below-pillow-guard"]
ENCODED = ["wrong-extension", "cmyk", "16-bit", "1x1", "animated-gif", "palette-transparency", "exif-rotated",
           "non-utf8-name", "255-byte-name"]


def shown(path: Path) -> str:
    """How messages print a path (undecodable bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("kind", SKIPPED + ENCODED + ["symlink-loop"])
def test_image_in_a_folder(base, tmp_path, kind):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes(rgb(seed=9)))
    p = write_case(folder, kind)
    code, out, err = run("encode", base / "run", "--images", folder, "--out", tmp_path / "c.npz", "-q")
    assert code == 0 and "Traceback" not in out + err, err
    cf = CodesFile.load(tmp_path / "c.npz")
    if kind in SKIPPED:
        assert "skipped 1 unreadable images" in out
        assert len(cf) == 1 and cf.paths == [str(folder / "good.png")]
        skipped = [x for x in err.splitlines() if x.startswith("skipped:")]
        assert len(skipped) == 1 and shown(p) in skipped[0], err
        if kind == "144-mpx-below-pillow-guard":
            assert "144,000,000 pixels, above the limit of 64,000,000" in skipped[0]
            assert "DEEPHASH_MAX_PIXELS" in skipped[0]
    elif kind == "symlink-loop":  # links are not followed into a loop; the looping file is no image
        assert "skipped 0" in out and cf.paths == [str(folder / "good.png")]
    else:
        assert "skipped 0 unreadable images" in out and err == ""
        assert sorted(cf.paths) == sorted([str(folder / "good.png"), str(p)])


@pytest.mark.parametrize("kind", SKIPPED)
def test_bad_single_query_image_is_refused(base, tmp_path, unchanged, kind):
    p = write_case(tmp_path, kind)
    refused(run("search", "--index", base / "index", "--image", p, "--checkpoint", base / "run"), p.name)


def test_missing_query_image_is_refused(base, tmp_path, unchanged):
    refused(run("search", "--index", base / "index", "--image", tmp_path / "nope.jpg", "--checkpoint", base / "run"),
            "nope.jpg")


def test_empty_image_folder_is_refused(base, tmp_path):
    (tmp_path / "empty").mkdir()
    refused(run("encode", base / "run", "--images", tmp_path / "empty", "--out", tmp_path / "c.npz"), "empty")
    assert not (tmp_path / "c.npz").exists()


def test_pixel_limit_is_settable(tmp_path, monkeypatch):
    from deephash.data import load_image
    from deephash.errors import InvalidInputError

    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(rgb(100, 100)))
    assert load_image(p).shape == (100, 100, 3)
    monkeypatch.setenv("DEEPHASH_MAX_PIXELS", "9999")
    with pytest.raises(InvalidInputError, match=r"a\.png has 100x100 = 10,000 pixels, above the limit of 9,999"):
        load_image(p)
    monkeypatch.setenv("DEEPHASH_MAX_PIXELS", "lots")
    with pytest.raises(InvalidInputError, match="DEEPHASH_MAX_PIXELS must be a positive integer"):
        load_image(p)


def test_large_jpeg_is_reduced_by_draft_before_the_limit(tmp_path, monkeypatch):
    """A JPEG above the limit that is being shrunk anyway decodes at a reduced scale instead of being refused."""
    from deephash.data import load_image
    from deephash.errors import InvalidInputError

    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg_bytes(rgb(800, 800)))
    monkeypatch.setenv("DEEPHASH_MAX_PIXELS", str(200 * 200))
    assert load_image(p, (32, 32)).shape == (32, 32, 3)  # drafted to 100x100 (1/8)
    with pytest.raises(InvalidInputError, match="above the limit"):
        load_image(p)


def test_decoded_pixels_of_special_images(tmp_path):
    """EXIF orientation applied, first frame of an animation, transparent palette pixels on white."""
    from deephash.data import load_image

    up = load_image(write_case(tmp_path, "exif-rotated"))
    assert up.shape == (40, 20, 3)  # rotated: was 20 tall x 40 wide
    assert up[:15, :, 0].mean() > 200 and up[:15, :, 2].mean() < 60  # red on top
    assert up[25:, :, 2].mean() > 200 and up[25:, :, 0].mean() < 60  # blue below
    anim = load_image(write_case(tmp_path, "animated-gif"))
    assert (anim == [255, 0, 0]).all()
    pal = load_image(write_case(tmp_path, "palette-transparency"))
    assert (pal[:, :8] == 255).all() and (pal[:, 8:] == [255, 0, 0]).all()


def test_exif_rotation_reaches_the_codes(base, tmp_path):
    """``encode`` codes an EXIF-rotated photo exactly as the same pixels stored upright."""
    from PIL import ImageOps

    folder = tmp_path / "photos"
    folder.mkdir()
    p = write_case(folder, "exif-rotated")
    with Image.open(p) as im:
        ImageOps.exif_transpose(im).save(folder / "upright.png")
    assert run("encode", base / "run", "--images", folder, "--out", tmp_path / "c.npz", "-q")[0] == 0
    cf = CodesFile.load(tmp_path / "c.npz")
    by_name = {Path(q).name: c for q, c in zip(cf.paths, cf.codes)}
    np.testing.assert_array_equal(by_name["rotated.jpg"], by_name["upright.png"])


def test_non_utf8_file_name_from_encode_to_index_and_search(base, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes(rgb(seed=9)))
    p = write_case(folder, "non-utf8-name")
    assert run("encode", base / "run", "--images", folder, "--out", tmp_path / "c.npz", "-q")[0] == 0
    code, out, err = run("index", "build", "--codes", tmp_path / "c.npz", "--out", tmp_path / "idx")
    assert code == 0, err
    code, out, err = run("search", "--index", tmp_path / "idx", "--query", tmp_path / "c.npz", "-k", "2", "--json")
    assert code == 0 and "Traceback" not in err, err
    paths = {r["path"] for line in out.splitlines() for r in json.loads(line)["results"]}
    assert str(p) in paths  # the file's bytes are kept (JSON escapes them), so the path opens again
    assert Path(next(x for x in paths if "caf" in x)).read_bytes() == p.read_bytes()
    code, out, err = run("search", "--index", tmp_path / "idx", "--query", tmp_path / "c.npz", "-k", "2")
    assert code == 0 and "caf\\xe9.png" in out  # the table shows the undecodable byte as \xNN


# ---- datasets (through ``encode --data``, which loads them as ``train`` does) -------------------------------------


def write_class_folder(root: Path, classes=("cat", "dog"), per_class=6):
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            (root / c / f"{j}.png").write_bytes(png_bytes(rgb(16, 16, seed=10 * i + j)))
    return root


def write_cifar(root: Path, bad: dict | None = None) -> Path:
    """The official CIFAR-10 python layout with 4 images per batch; ``bad`` replaces files' bytes."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, 4)]}, fh)
    for name, data in (bad or {}).items():
        (d / name).write_bytes(data)
    return d


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def dataset_case(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    """(dataset spec, strings the error must name) for a bad dataset."""
    if kind == "empty-folder":
        (tmp_path / "ds").mkdir()
        return tmp_path / "ds", ["ds", "no class folders"]
    if kind == "class-folders-without-images":
        (tmp_path / "ds" / "cat").mkdir(parents=True)
        (tmp_path / "ds" / "cat" / "readme.txt").write_text("no images here")
        return tmp_path / "ds", ["no images found under", "ds"]
    if kind in ("list-bad-label", "list-missing-image", "list-ragged-rows", "list-latin1-class-names"):
        ds = write_class_folder(tmp_path / "imgs")
        rows = [f"cat/{j}.png 1 0" for j in range(6)] + [f"dog/{j}.png 0 1" for j in range(6)]
        if kind == "list-bad-label":
            rows[3] = "cat/3.png 2 0"
            want = ["list.txt:4", "labels must be 0 or 1"]
        elif kind == "list-missing-image":
            rows[5] = "cat/missing.png 1 0"
            want = ["list.txt:6", "image not found", "missing.png"]
        elif kind == "list-ragged-rows":
            rows[7] = "dog/1.png 0 1 1"
            want = ["list.txt:8", "3 labels, but earlier lines have 2"]
        else:
            (ds / "classes.txt").write_bytes(b"caf\xe9\ndog\n")
            want = ["classes.txt", "UTF-8"]
        (ds / "list.txt").write_text("\n".join(rows) + "\n")
        return ds / "list.txt", want
    if kind == "cifar-corrupt-pickle":
        return write_cifar(tmp_path, {"data_batch_3": b"\x80\x04garbage" * 10}), ["data_batch_3", "cannot read"]
    if kind == "cifar-wrong-shape":
        data = pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
        return write_cifar(tmp_path, {"test_batch": data}), ["test_batch", "(4, 100)"]
    if kind == "cifar-not-a-dict":
        return write_cifar(tmp_path, {"data_batch_1": pickle.dumps([1, 2, 3])}), ["data_batch_1", "list"]
    if kind == "cifar-code-execution":
        return write_cifar(tmp_path, {"data_batch_2": pickle.dumps(_Evil())}), ["data_batch_2", "refusing", "system"]
    if kind in ("truncated-tar-gz", "truncated-cifar-tar-gz"):
        if kind == "truncated-tar-gz":
            src, name = write_class_folder(tmp_path / "src" / "train"), "photos.tar.gz"
            arc = "train"
        else:
            src, name = write_cifar(tmp_path / "src"), "cifar-10-python.tar.gz"
            arc = "cifar-10-batches-py"
        out = tmp_path / name
        with tarfile.open(out, "w:gz") as tar:
            tar.add(src, arcname=arc)
        data = out.read_bytes()
        out.write_bytes(data[: len(data) * 2 // 3])
        return out, [name, "cannot read"]
    if kind in ("yolo-class-999", "yolo-class-minus-1"):
        root = tmp_path / "yolo"
        (root / "images" / "train").mkdir(parents=True)
        (root / "labels" / "train").mkdir(parents=True)
        (root / "data.yaml").write_text("names: [cat, dog]\n")
        for j in range(3):
            (root / "images" / "train" / f"{j}.png").write_bytes(png_bytes(rgb(16, 16, seed=j)))
            (root / "labels" / "train" / f"{j}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        cls = "999" if kind == "yolo-class-999" else "-1"
        (root / "labels" / "train" / "1.txt").write_text(f"1 0.5 0.5 0.2 0.2\n\n{cls} 0.4 0.4 0.1 0.1\n")
        return root, ["1.txt:3", f"class id {cls} out of range 0..1"]
    raise AssertionError(kind)


DATASET_CASES = ["empty-folder", "class-folders-without-images", "list-bad-label", "list-missing-image",
                 "list-ragged-rows", "list-latin1-class-names", "cifar-corrupt-pickle", "cifar-wrong-shape",
                 "cifar-not-a-dict", "cifar-code-execution", "truncated-tar-gz", "truncated-cifar-tar-gz",
                 "yolo-class-999", "yolo-class-minus-1"]


@pytest.mark.parametrize("kind", DATASET_CASES)
def test_bad_dataset_is_refused(base, tmp_path, kind):
    spec, names = dataset_case(tmp_path, kind)
    refused(run("encode", base / "run", "--data", spec, "--out", tmp_path / "c.npz", cwd=tmp_path), *names)
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "pwned").exists()


def test_dataset_with_one_class_encodes(base, tmp_path):
    ds = write_class_folder(tmp_path / "ds", classes=("cat",))
    code, out, err = run("encode", base / "run", "--data", ds, "--out", tmp_path / "c.npz", "-q")
    assert code == 0, err
    assert CodesFile.load(tmp_path / "c.npz").class_names == ["cat"]


def test_label_list_with_a_latin1_file_name(base, tmp_path):
    """List files name image files by their bytes: a name that is not UTF-8 is found, not a UnicodeDecodeError."""
    ds = write_class_folder(tmp_path / "imgs")
    Path(os.fsdecode(os.fsencode(ds) + b"/cat/caf\xe9.png")).write_bytes(png_bytes(rgb(16, 16, seed=7)))
    rows = b"\n".join([f"cat/{j}.png 1 0".encode() for j in range(6)] + [f"dog/{j}.png 0 1".encode() for j in range(6)]
                      + [b"cat/caf\xe9.png 1 0"])
    (ds / "list.txt").write_bytes(rows + b"\n")
    code, out, err = run("encode", base / "run", "--data", ds / "list.txt", "--split", "train", "--out",
                         tmp_path / "c.npz", "-q")
    assert code == 0, err


# ---- codes files ----------------------------------------------------------------------------------------------------


def codes_case(path: Path, kind: str):
    """Write a bad codes file of ``kind`` at ``path``; returns what the error must name besides the file."""
    rng = np.random.default_rng(0)
    good = CodesFile(pack_bits(rng.integers(0, 2, (3, BITS))), BITS, paths=["a", "b", "c"])

    def raw(**arrays):
        header = {"format": "deephash-codes/1", "bits": BITS, "count": 3, "class_names": None, "meta": {}}
        arrays = {"header": np.array(json.dumps(header)), "codes": good.codes, "ids": good.ids, **arrays}
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})

    if kind == "int64-values":
        raw(codes=np.array([[300, 16], [513, 0], [1, 0]], np.int64))
        return "must lie in [0, 255], got 300"
    if kind == "float-codes":
        raw(codes=good.codes.astype(np.float64) + 0.5)
        return "packed codes must be integers, got float64"
    if kind == "float-ids":
        raw(ids=np.array([0.5, 1.0, 2.0]))
        return "ids must be integers, got float64"
    if kind == "negative-ids":
        raw(ids=np.array([0, -1, 2]))
        return "ids must lie in"
    if kind == "paths-length":
        raw(paths=np.array(["a", "b"]))
        return "2 paths for 3 codes"
    if kind == "labels-length":
        raw(labels=np.eye(2, dtype=np.uint8))
        return "for N = 3 codes"
    if kind == "labels-not-0-1":
        raw(labels=np.full((3, 2), 7, np.uint8))
        return "labels must lie in [0, 1]"
    if kind == "not-an-npz":
        path.write_text("id,code\n1,0101\n")
        return "not a readable deephash codes file"
    if kind == "bare-npy":
        with open(path, "wb") as fh:
            np.save(fh, good.codes)
        return "bare array"
    if kind == "npz-without-header":
        np.savez(path, codes=good.codes, ids=good.ids)
        return "without a deephash header"
    if kind == "wrong-bits":
        raw(header=np.array(json.dumps({"format": "deephash-codes/1", "bits": 64, "count": 3})))
        return "do not hold 64-bit codes"
    if kind == "count-mismatch":
        raw(header=np.array(json.dumps({"format": "deephash-codes/1", "bits": BITS, "count": 5})))
        return "header says 5 codes"
    if kind == "checksum-mismatch":
        good.save(path)
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["codes"][1, 0] ^= 0x80  # a valid code: only the checksum sees it
        np.savez(path, **arrays)
        return "checksum mismatch"
    raise AssertionError(kind)


CODES_CASES = ["int64-values", "float-codes", "float-ids", "negative-ids", "paths-length", "labels-length",
               "labels-not-0-1", "not-an-npz", "bare-npy", "npz-without-header", "wrong-bits", "count-mismatch",
               "checksum-mismatch"]


@pytest.mark.parametrize("kind", CODES_CASES)
def test_bad_codes_file_as_database_query_or_index_source(base, tmp_path, unchanged, kind):
    bad = tmp_path / "bad.npz"
    message = codes_case(bad, kind)
    before = tree_digest(bad)
    refused(run("search", "--database", bad, "--query", base / "query.npz"), bad, message)
    refused(run("search", "--index", base / "index", "--query", bad), bad, message)
    refused(run("index", "build", "--codes", bad, "--out", tmp_path / "idx"), bad, message)
    refused(run("index", "add", "--index", base / "index", "--codes", bad), bad, message)
    assert tree_digest(bad) == before and not (tmp_path / "idx").exists()


def test_evaluate_names_the_file_with_too_few_label_rows(base, tmp_path, unchanged):
    cf = CodesFile.load(base / "query.npz")
    with np.load(base / "query.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = cf.labels[:-3]
    np.savez(tmp_path / "short.npz", **arrays)
    line = refused(run("evaluate", "--query", base / "query.npz", "--database", tmp_path / "short.npz"), "short.npz")
    assert "(177, 10)" in line and "N = 180 codes" in line


def test_codes_of_other_length_are_refused(base, tmp_path, unchanged):
    CodesFile(np.zeros((2, 8), np.uint8), 64).save(tmp_path / "wide.npz")
    refused(run("search", "--database", base / "database.npz", "--query", tmp_path / "wide.npz"), "64 bits")
    refused(run("index", "add", "--index", base / "index", "--codes", tmp_path / "wide.npz"), "64-bit")


# ---- command-line arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,names", [
    (["-k", "0"], ["k must be a positive integer, got 0"]),
    (["-k", "-3"], ["k must be a positive integer, got -3"]),
    (["-k", "ten"], ["'-k'", "integer"]),
    (["--radius", "-1"], ["radius must be a non-negative integer, got -1"]),
    (["--radius", "two"], ["'--radius'"]),
    (["--mode", "fuzzy"], ["mode must be semantic or category", "fuzzy"]),
    (["--nonsense"], ["No such option: --nonsense"]),
])
def test_bad_search_arguments(base, unchanged, args, names):
    refused(run("search", "--index", base / "index", "--query", base / "query.npz", *args), *names)


def test_k_above_the_index_size_returns_every_item(base, unchanged):
    """k is clipped to the index size: ``-k 1000000000`` answers like ``-k len(index)``, in bounded memory."""
    code, out, err = run("search", "--index", base / "index", "--query", base / "query.npz", "-k", "1000000000",
                         "--json")
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 180 and all(len(r["results"]) == 1617 for r in rows)


def test_radius_above_the_code_length_finds_everything(base, unchanged):
    code, out, err = run("search", "--database", base / "database.npz", "--query", base / "query.npz",
                         "--radius", "100", "--json")
    assert code == 0, err
    assert all(len(json.loads(x)["results"]) == 1617 for x in out.splitlines())


def test_hamming_index_refuses_huge_padding():
    from deephash.errors import InvalidInputError
    from deephash.index import HammingIndex

    index = HammingIndex(64)
    index.add(np.zeros((3, 8), np.uint8))
    D, I = index.search(np.zeros((2, 8), np.uint8), 5)
    assert I.shape == (2, 5) and (I[:, 3:] == -1).all()  # the padding contract for small k stays
    with pytest.raises(InvalidInputError, match="ask for k <= 3"):
        index.search(np.zeros((2, 8), np.uint8), 10**9)


@pytest.mark.parametrize("args,names", [
    (["train", "--bits", "0"], ["code length must be between 1 and 1024", "0"]),
    (["train", "--bits", "2000"], ["code length must be between 1 and 1024", "2000"]),
    (["train", "--protocol", "nosuch"], ["nosuch"]),
    (["encode", "RUN", "--split", "query", "--protocol", "nosuch", "--out", "x.npz"], ["nosuch"]),
    (["encode", "RUN", "--split", "sideways", "--out", "x.npz"], ["sideways"]),
    (["evaluate", "--query", "Q", "--database", "DB", "--topk", "x"], ["'--topk'"]),
    (["evaluate", "--query", "Q", "--database", "DB", "--empty", "maybe"], ["maybe"]),
])
def test_bad_arguments_of_other_commands(base, tmp_path, unchanged, args, names):
    subst = {"RUN": base / "run", "Q": base / "query.npz", "DB": base / "database.npz"}
    refused(run(*[subst.get(a, a) for a in args], cwd=tmp_path), *names)
    assert not (tmp_path / "x.npz").exists()


def test_output_paths_that_are_folders_or_files(base, tmp_path, unchanged):
    (tmp_path / "adir").mkdir()
    refused(run("encode", base / "run", "--split", "query", "--out", tmp_path / "adir"), "adir", "is a folder")
    (tmp_path / "afile").write_text("keep me")
    refused(run("encode", base / "run", "--split", "query", "--out", tmp_path / "afile" / "c.npz"), "afile")
    refused(run("evaluate", "--query", base / "query.npz", "--database", base / "database.npz", "--out",
                tmp_path / "afile"), "afile", "is a file")
    assert (tmp_path / "afile").read_text() == "keep me" and list((tmp_path / "adir").iterdir()) == []


# ---- workflow -------------------------------------------------------------------------------------------------------


def test_two_encoded_folders_add_to_one_index(base, tmp_path):
    """``encode --images`` numbers each folder from 0; ``index add --codes`` gives the codes fresh ids by default,
    ``--keep-ids`` keeps the file's (and refuses ids already in the index)."""
    for name, seed in (("a", 0), ("b", 100)):
        (tmp_path / name).mkdir()
        for j in range(3):
            (tmp_path / name / f"{j}.png").write_bytes(png_bytes(rgb(seed=seed + j)))
        assert run("encode", base / "run", "--images", tmp_path / name, "--out", tmp_path / f"{name}.npz", "-q")[0] == 0
    assert run("index", "build", "--codes", tmp_path / "a.npz", "--out", tmp_path / "idx")[0] == 0
    before = tree_digest(tmp_path / "idx")
    refused(run("index", "add", "--index", tmp_path / "idx", "--codes", tmp_path / "b.npz", "--keep-ids"),
            "ids already in the index")
    assert tree_digest(tmp_path / "idx") == before
    code, out, err = run("index", "add", "--index", tmp_path / "idx", "--codes", tmp_path / "b.npz")
    assert code == 0 and "added 3 codes; index holds 6" in out, err
    code, out, err = run("search", "--index", tmp_path / "idx", "--query", tmp_path / "b.npz", "-k", "1", "--json")
    assert code == 0, err
    top = [json.loads(x)["results"][0] for x in out.splitlines()]
    assert [r["id"] for r in top] == [3, 4, 5] and [Path(r["path"]).parent.name for r in top] == ["b"] * 3
    refused(run("index", "add", "--index", tmp_path / "idx", "--images", tmp_path / "a", "--keep-ids"), "--keep-ids")
