"""Datasets: every source gives named splits of ``HashDataset`` (image tensor, multi-hot labels).

``load_source(spec)`` recognises: ``digits`` (embedded), the official CIFAR-10 python
archive or folder, a dataset with boxes (YOLO folder with data.yaml, VOC folder, COCO
instances JSON: box datasets, see ``detection``), an image-folder tree or archive of one,
a multi-label list file, or a folder of list files (train.txt / test.txt / database.txt). ``make_split`` applies a named
protocol to get train / query / database sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, MissingFileError
from .images import decode_image, display_path, list_images, load_image, max_pixels

if TYPE_CHECKING:  # annotations only: the loaders import lazily
    from .base import HashDataset
    from .protocols import Split

# The datasets are torch Datasets: their modules are imported on first use of one of their names, so decoding
# an image (a one-photo search, a contact sheet) does not pay for importing torch.
_LAZY = {name: module for module, names in {
    "base": ("ArrayDataset", "DecodedImages", "FileDataset", "HashDataset", "one_hot", "to_tensor"),
    "cifar": ("is_cifar_python", "load_cifar10_python"),
    "detection": ("BoxArrayDataset", "BoxFileDataset", "is_box_source", "load_box_source", "load_box_split",
                  "load_coco", "load_voc", "load_yolo"),
    "digits": ("load_digits_dataset",),
    "folder": ("load_image_folder", "load_image_folder_archive"),
    "listfile": ("is_list_dir", "load_list_dir", "read_label_csv", "read_list_file"),
    "multiobject": ("cached_multiobject", "generate_multiobject"),
    "protocols": ("PROTOCOLS", "Split", "make_split", "split_indices"),
}.items() for name in names}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def load_source(spec: str | Path, image_size: int | tuple[int, int] | None = None,
                images_root: str | Path | None = None, progress: bool = True) -> dict[str, HashDataset]:
    """Open a dataset by name or path and return its splits (e.g. {"train", "test"} or {"all"})."""
    from .cifar import is_cifar_python, load_cifar10_python
    from .detection import is_box_source, load_box_source
    from .digits import load_digits_dataset
    from .folder import load_image_folder, load_image_folder_archive
    from .listfile import is_list_dir, load_list_dir, read_list_file

    if str(spec) == "digits":
        return load_digits_dataset(image_size if isinstance(image_size, int) else 32)
    path = Path(spec).expanduser()
    if not path.exists():
        raise MissingFileError(f"dataset not found: {spec} (give 'digits', a CIFAR-10 archive or folder, "
                            "a YOLO/VOC/COCO dataset, an image folder, or a label list file)")
    if is_cifar_python(path):
        return load_cifar10_python(path)
    if is_box_source(path):
        return _protocol_split_names(load_box_source(path, image_size))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return load_image_folder_archive(path, image_size, progress=progress)
    if path.is_file() and path.suffix in (".txt", ".lst", ".list"):
        return {"all": read_list_file(path, images_root, image_size)}
    if is_list_dir(path):
        return load_list_dir(path, images_root, image_size)
    if path.is_dir():
        return load_image_folder(path, image_size)
    raise InvalidInputError(f"unrecognised dataset {path}: expected a CIFAR-10 archive/folder, a YOLO/VOC folder or "
                        "COCO .json, an image-folder tree or .tar.gz of one, or a .txt label list")


def _protocol_split_names(splits: dict) -> dict:
    """YOLO split folders such as ``train2017`` / ``val2017`` named ``train`` / ``test`` (the query side) so a
    protocol applies; names are kept when they would not map one to one."""
    def short(name: str) -> str:
        return "train" if name.startswith("train") else "test" if name.startswith(("val", "test")) else name

    renamed = {short(k): v for k, v in splits.items()}
    return renamed if len(renamed) == len(splits) else splits


def load_split(spec: str | Path, protocol: str | None, seed: int, image_size: int | None = None,
               progress: bool = True) -> Split:
    """A dataset's train / query / database sets under a split protocol (``make_split`` over ``load_source``)."""
    from .protocols import make_split

    return make_split(load_source(spec, image_size=image_size, progress=progress), protocol, seed)


__all__ = [
    "ArrayDataset", "BoxArrayDataset", "DecodedImages", "BoxFileDataset", "FileDataset", "HashDataset", "PROTOCOLS", "Split",
    "cached_multiobject", "decode_image", "display_path", "generate_multiobject", "is_box_source", "list_images",
    "load_box_source", "load_box_split", "load_cifar10_python", "load_coco", "load_digits_dataset", "load_image",
    "load_image_folder", "load_image_folder_archive", "load_source", "load_split", "load_voc", "load_yolo", "make_split",
    "max_pixels", "one_hot", "read_label_csv", "read_list_file", "split_indices", "to_tensor",
]
