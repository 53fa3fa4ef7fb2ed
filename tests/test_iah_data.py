"""Box datasets (YOLO, VOC, COCO) from small generated files, and the multi-object generator."""

import json

import numpy as np
import pytest
from PIL import Image

from deephash.data import (
    ArrayDataset,
    cached_multiobject,
    generate_multiobject,
    load_box_source,
    load_coco,
    load_voc,
    load_yolo,
)
from deephash.errors import DeephashError


def _img(path, w=40, h=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(path)


def make_yolo(root, n=2):
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n  2: car\n")
    for split in ("train", "val"):
        for i in range(n):
            _img(root / "images" / split / f"{i}.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "0.txt").write_text("0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.2\n0 0.9 0.9 0.4 0.4\n")
    return root


def test_yolo_labels_and_boxes(tmp_path):
    splits = load_yolo(make_yolo(tmp_path / "y"), image_size=16)
    assert set(splits) == {"train", "val"}
    tr = splits["train"]
    assert tr.class_names == ["cat", "dog", "car"]
    assert tr.labels.tolist() == [[1, 0, 1], [0, 0, 0]]  # image 1 has no label file: kept, unlabelled
    np.testing.assert_allclose(tr.boxes[0][0], [0, 0.25, 0.25, 0.75, 0.75])
    np.testing.assert_allclose(tr.boxes[0][2], [0, 0.7, 0.7, 1.0, 1.0])  # clipped to the image
    np.testing.assert_allclose(tr.boxes_pixels(0, 20, 40)[1], [2, 8, 3, 12, 7])
    sub = tr.subset([1, 0])
    assert len(sub.boxes[0]) == 0 and len(sub.boxes[1]) == 3
    arr = tr.as_arrays(progress=False)
    assert arr.images.shape == (2, 16, 16, 3) and len(arr.boxes[0]) == 3
    assert set(load_box_source(tmp_path / "y")) == {"train", "val"}


def test_yolo_bad_line(tmp_path):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "train" / "1.txt").write_text("cat 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DeephashError, match="1.txt:1"):
        load_yolo(root)


def test_voc(tmp_path):
    root = tmp_path / "voc"
    _img(root / "JPEGImages" / "a.jpg", 100, 50)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>dog</name><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>60</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>"
        "</annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    ds = load_voc(root, image_set="val")
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [[1, 1]]
    np.testing.assert_allclose(ds.boxes[0][0], [1, 0.1, 0.1, 0.6, 1.0])
    with pytest.raises(DeephashError, match="not in the class list"):
        load_voc(root, class_names=["cat"])


def test_coco(tmp_path):
    _img(tmp_path / "img" / "x.jpg", 200, 100)
    _img(tmp_path / "img" / "y.jpg", 200, 100)
    ann = {"images": [{"id": 7, "file_name": "x.jpg", "width": 200, "height": 100},
                      {"id": 3, "file_name": "y.jpg", "width": 200, "height": 100}],
           "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [20, 10, 100, 50]}]}
    (tmp_path / "inst.json").write_text(json.dumps(ann))
    ds = load_coco(tmp_path / "inst.json", tmp_path / "img")
    assert ds.class_names == ["person", "dog"]
    assert ds.paths[0].endswith("y.jpg") and ds.labels.tolist() == [[0, 0], [0, 1]]
    np.testing.assert_allclose(ds.boxes[1], [[1, 0.1, 0.1, 0.6, 0.6]])
    ann["annotations"][0]["category_id"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(ann))
    with pytest.raises(DeephashError, match="unknown image or category"):
        load_coco(tmp_path / "bad.json")


def _source(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
                        np.eye(4, dtype=np.uint8)[np.arange(n) % 4], ["a", "b", "c", "d"])


def test_multiobject_labels_match_boxes_and_pixels():
    src = _source()
    ds = generate_multiobject(src, 12, canvas=48, max_objects=3, seed=5, progress=False, max_overlap=0.0)
    assert ds.images.shape == (12, 48, 48, 3)
    for i in range(12):
        b = ds.boxes[i]
        assert 1 <= len(b) <= 3
        assert set(b[:, 0].astype(int)) == set(np.flatnonzero(ds.labels[i]))
        assert (b[:, 1:] >= 0).all() and (b[:, 1:] <= 1).all() and (b[:, 3] > b[:, 1]).all()
    again = generate_multiobject(src, 12, canvas=48, max_objects=3, seed=5, progress=False, max_overlap=0.0)
    np.testing.assert_array_equal(ds.images, again.images)
    other = generate_multiobject(src, 12, canvas=48, max_objects=3, seed=6, progress=False)
    assert not np.array_equal(ds.images, other.images)
    # an object pasted at full size is the source image itself: it must be found inside its box
    full = generate_multiobject(src, 3, canvas=32, max_objects=1, scale=(1.0, 1.0), seed=1, progress=False)
    for i in range(3):
        diffs = np.abs(src.images.astype(int) - full.images[i].astype(int)).mean((1, 2, 3))
        assert diffs.min() < 8 and src.labels[diffs.argmin()].argmax() == full.boxes[i][0, 0]


def test_multiobject_cache_and_validation(tmp_path):
    src = _source()
    a = cached_multiobject(src, 5, "unit", canvas=32, seed=0, progress=False)
    b = cached_multiobject(src, 5, "unit", canvas=32, seed=0, progress=False)
    np.testing.assert_array_equal(a.images, b.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes))
    with pytest.raises(DeephashError):
        generate_multiobject(src, 0, progress=False)
    multi = ArrayDataset(src.images, np.ones((40, 4), np.uint8), src.class_names)
    with pytest.raises(DeephashError, match="single-label"):
        generate_multiobject(multi, 3, progress=False)
