import tarfile

import numpy as np
import pytest
from PIL import Image

from deephash import DeephashError
from deephash.data import ArrayDataset, FileDataset, load_image, load_source, make_split, read_list_file, split_indices
from deephash.data.base import one_hot


def test_cifar_python_folder_and_archive_agree(cifar_dir, cifar_tar):
    a = load_source(cifar_dir.parent)
    b = load_source(cifar_tar)
    assert set(a) == {"train", "test"} and len(a["train"]) == 100 and len(a["test"]) == 20
    np.testing.assert_array_equal(a["train"].images, b["train"].images)
    np.testing.assert_array_equal(a["test"].labels, b["test"].labels)
    assert a["train"].class_names[:2] == ["airplane", "automobile"]
    x, y = a["train"][0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert y.shape == (10,) and float(y.sum()) == 1


def test_cifar_pixels_are_in_chw_order(tmp_path):
    import pickle

    from tests.conftest import make_cifar_batches

    d = make_cifar_batches(tmp_path)
    with open(d / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    ds = load_source(d)["test"]
    row = raw[b"data"][3]
    assert ds.images[3, 0, 0, 0] == row[0]          # R plane first
    assert ds.images[3, 0, 0, 1] == row[1024]       # then G
    assert ds.images[3, 1, 2, 2] == row[2048 + 32 + 2]


def test_cifar_missing_batch_is_clear(cifar_dir):
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DeephashError, match="lacks data_batch_3"):
        load_source(cifar_dir)


def test_image_folder_dir_and_archive(image_folder, tmp_path):
    splits = load_source(image_folder, image_size=16)
    assert set(splits) == {"train", "test"}
    tr = splits["train"]
    assert isinstance(tr, FileDataset) and len(tr) == 12 and tr.class_names == ["cat", "dog", "ship"]
    assert tr.image_u8(0).shape == (16, 16, 3)
    arc = tmp_path / "folder.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        tar.add(image_folder, arcname="folder")
    a = load_source(arc)
    assert isinstance(a["train"], ArrayDataset) and a["train"].images.shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(a["train"].labels.argmax(1), tr.labels.argmax(1))
    again = load_source(arc)  # served from the cache
    np.testing.assert_array_equal(again["test"].images, a["test"].images)


def test_image_folder_without_splits(tmp_path):
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "flat", splits=(None,), per_class=2)
    splits = load_source(root, image_size=8)
    assert set(splits) == {"all"} and len(splits["all"]) == 6


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_any_image_mode_becomes_rgb_uint8(tmp_path, mode):
    arr = (np.arange(20 * 30) % 251).reshape(20, 30)
    if mode in ("I;16", "I"):
        img = Image.fromarray((arr * 200).astype(np.uint16 if mode == "I;16" else np.int32))
        assert img.mode == mode
    elif mode == "F":
        img = Image.fromarray(arr.astype(np.float32) / 7.0, mode)
    else:
        img = Image.fromarray(arr.astype(np.uint8), "L").convert(mode)
    ext = "tiff" if mode in ("I;16", "I", "F", "CMYK") else "png"
    path = tmp_path / f"im.{ext}"
    img.save(path)
    out = load_image(path, size=(8, 12))
    assert out.shape == (8, 12, 3) and out.dtype == np.uint8
    assert out.std() > 0


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DeephashError, match="bad.jpg"):
        load_image(bad)
    with pytest.raises(DeephashError, match="not found"):
        load_image(tmp_path / "nope.png")


def _write_list(tmp_path, lines, n_images=3):
    for i in range(n_images):
        Image.fromarray(np.full((10, 10, 3), i * 40, np.uint8)).save(tmp_path / f"im{i}.png")
    p = tmp_path / "list.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_list_file_multilabel(tmp_path):
    p = _write_list(tmp_path, ["im0.png 1 0 1", "im1.png 0 1 0", "# comment", "", "im2.png 1 1 1"])
    (tmp_path / "classes.txt").write_text("person\ndog\nsofa\n")
    ds = read_list_file(p, image_size=8)
    assert ds.class_names == ["person", "dog", "sofa"] and ds.multilabel
    assert ds.labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 1, 1]]
    x, y = ds[2]
    assert x.shape == (3, 8, 8) and y.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("lines,msg", [
    (["im0.png 1 0 1", "im1.png 0 1"], r"list.txt:2: 2 labels, but earlier lines have 3"),
    (["im0.png 1 0 2"], r"list.txt:1: labels must be 0 or 1"),
    (["im0.png 1 x 0"], r"list.txt:1: labels must be 0 or 1"),
    (["im0.png 1 0 0", "missing.png 0 1 0"], r"list.txt:2: image not found"),
    (["im0.png"], r"list.txt:1: expected 'path 0 1 ...'"),
    (["# nothing"], r"has no entries"),
])
def test_list_file_errors_name_the_line(tmp_path, lines, msg):
    p = _write_list(tmp_path, lines)
    with pytest.raises(DeephashError, match=msg):
        read_list_file(p)


def test_list_folder_gives_splits(tmp_path):
    _write_list(tmp_path, ["im0.png 1 0"])
    (tmp_path / "train.txt").write_text("im0.png 1 0\nim1.png 0 1\n")
    (tmp_path / "test.txt").write_text("im2.png 1 1\n")
    splits = load_source(tmp_path, image_size=8)
    assert set(splits) == {"train", "test"}
    sp = make_split(splits)
    assert len(sp.query) == 1 and len(sp.database) == 2 and sp.database.paths == splits["train"].paths
    (tmp_path / "database.txt").write_text("im0.png 1 0\nim1.png 0 1\nim2.png 1 1\n")
    sp = make_split(load_source(tmp_path, image_size=8))
    assert sp.protocol == "given" and len(sp.train) == 2 and len(sp.database) == 3


def test_digits_embedded():
    ds = load_source("digits")["all"]
    assert len(ds) == 1797 and ds.images.shape == (1797, 32, 32, 3) and ds.num_classes == 10


def test_bad_dataset_paths(tmp_path):
    with pytest.raises(DeephashError, match="dataset not found"):
        load_source(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeephashError, match="no class folders"):
        load_source(tmp_path / "empty")
    with pytest.raises(DeephashError, match="is empty"):
        ArrayDataset(np.zeros((0, 4, 4, 3), np.uint8), np.zeros((0, 2), np.uint8), ["a", "b"])
    with pytest.raises(DeephashError, match="3 images but 2 label rows"):
        ArrayDataset(np.zeros((3, 4, 4, 3), np.uint8), np.zeros((2, 2), np.uint8), ["a", "b"])


def _cifar_like_labels(per_class_train=60, per_class_test=12):
    tr = np.repeat(np.arange(10), per_class_train)
    te = np.repeat(np.arange(10), per_class_test)
    return one_hot(np.concatenate([tr, te]), 10), len(tr)


def test_protocols_sizes_disjointness_and_seeding():
    labels, boundary = _cifar_like_labels()
    n = len(labels)
    tr, q, db = split_indices("dsh", labels, boundary)
    assert len(tr) == boundary and len(q) == n - boundary and np.array_equal(tr, db)
    tr, q, db = split_indices("cifar10-1", labels, boundary, seed=3, query_per_class=5, train_per_class=20)
    assert len(q) == 50 and len(db) == n - 50 and len(tr) == 200
    assert not set(q) & set(db) and set(tr) <= set(db)
    assert (labels[q].sum(0) == 5).all() and (labels[tr].sum(0) == 20).all()
    tr2, q2, _ = split_indices("cifar10-1", labels, boundary, seed=3, query_per_class=5, train_per_class=20)
    assert np.array_equal(q, q2) and np.array_equal(tr, tr2)
    _, q3, _ = split_indices("cifar10-1", labels, boundary, seed=4, query_per_class=5, train_per_class=20)
    assert not np.array_equal(q, q3)
    tr, q, db = split_indices("cifar10", labels, boundary, query_per_class=5, train_per_class=20)
    assert len(q) + len(tr) + len(db) == n and not (set(q) | set(tr)) & set(db)
    tr, q, db = split_indices("holdout", labels, boundary, query_fraction=0.1)
    assert len(q) == round(n * 0.1) and np.array_equal(tr, db) and not set(q) & set(db)


def test_per_class_protocol_on_multilabel():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 5)) < 0.3).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    tr, q, db = split_indices("per-class", labels, 0, query_per_class=4, train_per_class=10)
    assert len(q) == 20 and len(tr) == 50 and len(q) + len(tr) + len(db) == 400
    with pytest.raises(DeephashError, match="class 0 has only"):
        split_indices("per-class", labels[:10], 0, query_per_class=50)


def test_protocol_errors():
    labels, boundary = _cifar_like_labels()
    with pytest.raises(DeephashError, match="unknown protocol"):
        split_indices("nope", labels, boundary)
    with pytest.raises(DeephashError, match="separate train and test"):
        split_indices("dsh", labels, 0)


def _tiny(n, name):
    return ArrayDataset(np.zeros((n, 4, 4, 3), np.uint8), one_hot(np.arange(n) % 2, 2), ["a", "b"], name=name)


def test_make_split_names_and_refusals():
    sp = make_split({"train": _tiny(9, "x-train"), "test": _tiny(5, "x-test"), "val": _tiny(3, "x-val")})
    assert sp.protocol == "dsh" and len(sp.query) == 5 and len(sp.database) == 9    # val is not a query
    sp = make_split({"train": _tiny(9, "t"), "query": _tiny(2, "q"), "db": _tiny(7, "d")})
    assert sp.protocol == "given" and (len(sp.train), len(sp.query), len(sp.database)) == (9, 2, 7)
    with pytest.raises(DeephashError, match="use protocol 'given'"):
        make_split({"train": _tiny(9, "t"), "query": _tiny(2, "q"), "db": _tiny(7, "d")}, "dsh")
    with pytest.raises(DeephashError, match="defines one: use 'given'"):
        make_split({"train": _tiny(9, "t"), "query": _tiny(2, "q"), "db": _tiny(7, "d")}, "holdout")
    with pytest.raises(DeephashError, match="unknown split names"):
        make_split({"train": _tiny(9, "t"), "extra": _tiny(2, "e")})
    with pytest.raises(DeephashError, match="no default protocol"):
        make_split({"train": _tiny(9, "t")})
    sp = make_split({"train": _tiny(9, "t"), "test": _tiny(5, "q"), "val": _tiny(3, "v")}, "holdout",
                    query_fraction=0.25)
    assert len(sp.query) + len(sp.database) == 17
