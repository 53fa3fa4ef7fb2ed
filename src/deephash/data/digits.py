"""scikit-learn's bundled digits (1,797 real 8×8 handwritten digits): the embedded default
dataset that needs no files and no network. Upscaled to 32×32 RGB so the paper's network
sees its native input size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import ArrayDataset, one_hot


def load_digits_dataset(size: int = 32) -> dict[str, ArrayDataset]:
    from sklearn.datasets import load_digits

    d = load_digits()
    small = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in small])
    images = np.repeat(images[..., None], 3, axis=3)
    names = [str(i) for i in range(10)]
    return {"all": ArrayDataset(images, one_hot(d.target, 10), names, name="digits")}
