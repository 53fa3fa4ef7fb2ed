"""Datasets with object boxes: YOLO label folders (coco128 layout), Pascal VOC XML, COCO instances JSON.

Each gives a ``HashDataset`` whose multi-hot labels are the set of classes with a box, plus
``boxes[i]``: float32 (n, 5) rows ``class, x1, y1, x2, y2`` normalised to [0, 1] of the image, so they
stay valid at any decode size. Images with no objects are kept (all-zero labels, no boxes).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidInputError, MissingFileError, NotFoundError
from .base import ArrayDataset, FileDataset
from .images import IMAGE_EXTENSIONS


class _Boxes:
    boxes: list[np.ndarray]

    def _take_boxes(self, idx) -> list[np.ndarray]:
        return [self.boxes[int(i)] for i in np.asarray(idx, dtype=np.int64)]

    def boxes_pixels(self, i: int, h: int, w: int) -> np.ndarray:
        """Box i's rows as (n, 5) ``class, x1, y1, x2, y2`` in pixels of an h×w image."""
        b = self.boxes[i].copy()
        b[:, 1:] *= np.array([w, h, w, h], np.float32)
        return b


class BoxFileDataset(_Boxes, FileDataset):
    def __init__(self, paths, labels, class_names, boxes, image_size=None, name: str = "boxes"):
        super().__init__(paths, labels, class_names, image_size, name)
        if len(boxes) != len(self.paths):
            raise InvalidInputError(f"dataset {name!r}: {len(boxes)} box lists for {len(self.paths)} images")
        self.boxes = [np.asarray(b, np.float32).reshape(-1, 5) for b in boxes]

    def subset(self, indices) -> "BoxFileDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return BoxFileDataset([self.paths[i] for i in idx], self.labels[idx], self.class_names,
                              self._take_boxes(idx), self.image_size, self.name)

    def as_arrays(self, progress: bool = True) -> "BoxArrayDataset":
        arr = FileDataset.as_arrays(self, progress)
        return BoxArrayDataset(arr.images, arr.labels, arr.class_names, self.boxes, arr.paths, arr.name)


class BoxArrayDataset(_Boxes, ArrayDataset):
    def __init__(self, images, labels, class_names, boxes, paths=None, name: str = "boxes"):
        super().__init__(images, labels, class_names, paths, name)
        if len(boxes) != len(self.images):
            raise InvalidInputError(f"dataset {name!r}: {len(boxes)} box lists for {len(self.images)} images")
        self.boxes = [np.asarray(b, np.float32).reshape(-1, 5) for b in boxes]

    def subset(self, indices) -> "BoxArrayDataset":
        idx = np.asarray(indices, dtype=np.int64)
        paths = [self.paths[i] for i in idx] if self.paths is not None else None
        return BoxArrayDataset(self.images[idx], self.labels[idx], self.class_names, self._take_boxes(idx), paths,
                               self.name)


def _labels_from_boxes(boxes: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Multi-hot labels of each image's box classes (a class id out of range is named, not its batch's max)."""
    labels = np.zeros((len(boxes), num_classes), np.uint8)
    for i, b in enumerate(boxes):
        cls = b[:, 0].astype(np.int64)
        bad = np.flatnonzero((cls < 0) | (cls >= num_classes))
        if len(bad):
            raise InvalidInputError(f"image {i}: class id {cls[bad[0]]} out of range 0..{num_classes - 1} "
                                    f"({num_classes} classes)")
        labels[i, cls] = 1
    return labels


def _yaml_names(path: Path) -> list[str]:
    import yaml

    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CorruptFileError(f"{path}: invalid YAML: {e}") from None
    names = d.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise InvalidInputError(f"{path}: no 'names' list or mapping of class names")


def load_yolo(root: str | Path, image_size=None) -> dict[str, BoxFileDataset]:
    """A YOLO tree: ``data.yaml`` (names), ``images/<split>/*.jpg`` and ``labels/<split>/*.txt`` with lines
    ``class cx cy w h`` (normalised). Returns one dataset per split folder."""
    root = Path(root)
    if not (root / "data.yaml").is_file() or not (root / "images").is_dir():
        raise InvalidInputError(f"{root}: not a YOLO dataset (needs data.yaml and images/)")
    names = _yaml_names(root / "data.yaml")
    out = {}
    splits = sorted(d for d in (root / "images").iterdir() if d.is_dir()) or [root / "images"]
    for split in splits:
        images = sorted(p for p in split.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            continue
        boxes = []
        for img in images:
            lbl = root / "labels" / split.relative_to(root / "images") / f"{img.stem}.txt"
            rows = _read_yolo_rows(lbl, len(names)) if lbl.is_file() else np.zeros((0, 5), np.float32)
            boxes.append(rows)
        name = split.name if split != root / "images" else "all"
        out[name] = BoxFileDataset(images, _labels_from_boxes(boxes, len(names)), names, boxes, image_size, name)
    if not out:
        raise InvalidInputError(f"{root}: no images under images/")
    return out


def _read_yolo_rows(path: Path, num_classes: int) -> np.ndarray:
    """Rows ``class x1 y1 x2 y2`` of a YOLO label file; a bad line is named by file and line number."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: not a UTF-8 text label file ({e})") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            c, cx, cy, w, h = (float(v) for v in parts[:5])
        except ValueError:
            raise InvalidInputError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}") from None
        if not np.isfinite([cx, cy, w, h]).all():
            raise InvalidInputError(f"{path}:{n}: box values must be finite numbers, got {line!r}")
        if not np.isfinite(c) or c != int(c):
            raise InvalidInputError(f"{path}:{n}: class id must be an integer, got {parts[0]!r}")
        if not 0 <= c < num_classes:
            raise InvalidInputError(f"{path}:{n}: class id {int(c)} out of range 0..{num_classes - 1} "
                                    f"({num_classes} classes in data.yaml)")
        rows.append([c, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    b = np.asarray(rows, np.float32).reshape(-1, 5)
    b[:, 1:] = b[:, 1:].clip(0, 1)
    return b


def load_voc(root: str | Path, image_set: str | None = None, class_names: list[str] | None = None,
             image_size=None) -> BoxFileDataset:
    """Pascal VOC: ``Annotations/*.xml`` and ``JPEGImages/``; ``image_set`` names an
    ``ImageSets/Main/<set>.txt`` list (default: every annotation). Classes default to the sorted names seen."""
    root = Path(root)
    ann = root / "Annotations"
    if not ann.is_dir():
        raise InvalidInputError(f"{root}: not a VOC folder (no Annotations/)")
    if image_set:
        lst = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not lst.is_file():
            raise MissingFileError(f"VOC image set not found: {lst}")
        files = [ann / f"{s.split()[0]}.xml" for s in lst.read_text().splitlines() if s.strip()]
    else:
        files = sorted(ann.glob("*.xml"))
    records = []
    for f in files:
        try:
            tree = ET.parse(f).getroot()
        except (ET.ParseError, FileNotFoundError) as e:
            raise CorruptFileError(f"cannot read VOC annotation {f}: {e}") from None
        w = float(tree.findtext("size/width", "0"))
        h = float(tree.findtext("size/height", "0"))
        if w <= 0 or h <= 0:
            raise InvalidInputError(f"{f}: missing image size")
        objs = []
        for o in tree.iter("object"):
            bb = o.find("bndbox")
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            objs.append((o.findtext("name").strip(), (coords[0] - 1) / w, (coords[1] - 1) / h, coords[2] / w,
                         coords[3] / h))
        records.append((root / "JPEGImages" / tree.findtext("filename", f"{f.stem}.jpg"), objs))
    names = class_names or sorted({o[0] for _, objs in records for o in objs})
    pos = {n: i for i, n in enumerate(names)}
    boxes = []
    for _, objs in records:
        unknown = [o[0] for o in objs if o[0] not in pos]
        if unknown:
            raise InvalidInputError(f"VOC class {unknown[0]!r} is not in the class list")
        boxes.append(np.array([[pos[o[0]], *o[1:]] for o in objs], np.float32).reshape(-1, 5).clip(0, None))
    return BoxFileDataset([p for p, _ in records], _labels_from_boxes(boxes, len(names)), names, boxes, image_size,
                          image_set or "voc")


def load_coco(annotations: str | Path, images_root: str | Path | None = None, image_size=None) -> BoxFileDataset:
    """COCO instances JSON (``images``, ``annotations`` with ``bbox`` = x, y, w, h in pixels, ``categories``).
    Category ids are mapped to 0..C−1 in id order."""
    annotations = Path(annotations)
    try:
        d = json.loads(annotations.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"cannot read COCO annotations {annotations}: {e}") from None
    if not {"images", "annotations", "categories"} <= d.keys():
        raise InvalidInputError(f"{annotations}: not a COCO instances file (needs images, annotations, categories)")
    cats = sorted(d["categories"], key=lambda c: c["id"])
    cat_pos = {c["id"]: i for i, c in enumerate(cats)}
    root = Path(images_root) if images_root is not None else annotations.parent
    images = sorted(d["images"], key=lambda im: im["id"])
    img_pos = {im["id"]: i for i, im in enumerate(images)}
    rows: list[list] = [[] for _ in images]
    for a in d["annotations"]:
        i = img_pos.get(a["image_id"])
        if i is None or a["category_id"] not in cat_pos:
            raise InvalidInputError(f"{annotations}: annotation {a.get('id')} refers to an unknown image or category")
        w, h = float(images[i]["width"]), float(images[i]["height"])
        x, y, bw, bh = (float(v) for v in a["bbox"])
        rows[i].append([cat_pos[a["category_id"]], x / w, y / h, (x + bw) / w, (y + bh) / h])
    boxes = [np.asarray(r, np.float32).reshape(-1, 5) for r in rows]
    for b in boxes:
        b[:, 1:] = b[:, 1:].clip(0, 1)
    return BoxFileDataset([root / im["file_name"] for im in images], _labels_from_boxes(boxes, len(cats)),
                          [c["name"] for c in cats], boxes, image_size, annotations.stem)


def is_box_source(path: Path) -> bool:
    """A YOLO tree (data.yaml), a VOC folder (Annotations/) or a COCO instances JSON file."""
    return (path.is_dir() and ((path / "data.yaml").is_file() or (path / "Annotations").is_dir())) or \
        (path.is_file() and path.suffix == ".json")


def load_box_source(spec: str | Path, image_size=None) -> dict[str, BoxFileDataset]:
    """A dataset with boxes by path: a YOLO tree (data.yaml), a VOC folder (Annotations/) or a COCO instances
    JSON file. Returns named splits (YOLO split folders; ``all`` otherwise). ``data.load_source`` opens
    these too; this is the boxes-only entry point."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise MissingFileError(f"dataset not found: {spec}")
    if path.is_dir() and (path / "data.yaml").is_file():
        return load_yolo(path, image_size)
    if path.is_dir() and (path / "Annotations").is_dir():
        return {"all": load_voc(path, image_size=image_size)}
    if path.is_file() and path.suffix == ".json":
        return {"all": load_coco(path, image_size=image_size)}
    raise InvalidInputError(f"{spec}: not a dataset with boxes (expected a YOLO folder with data.yaml, a VOC folder "
                        "with Annotations/, or a COCO instances .json)")


def load_box_split(spec: str | Path, split: str | None = None, image_size=None) -> BoxFileDataset:
    """One named split of a dataset with boxes (default: its first)."""
    splits = load_box_source(spec, image_size)
    name = split or next(iter(splits))
    if name not in splits:
        raise NotFoundError(f"{spec} has no split {name!r}; available: {', '.join(splits)}")
    return splits[name]
