"""deephash: learning to hash images (DSH, IAH) and fast search in Hamming space."""

from .codes import CodesFile, encode_outputs, hamming_distances, pack_bits, unpack_bits
from .errors import DeephashError

__version__ = "0.1.0"

__all__ = [
    "CodesFile",
    "DeephashError",
    "encode_outputs",
    "hamming_distances",
    "pack_bits",
    "unpack_bits",
    "__version__",
]
