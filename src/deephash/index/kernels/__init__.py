"""Numba kernels for Hamming search on codes viewed as rows of uint64 words: ``cache`` (where numba caches
them), ``flat`` (the exact scan, and the key layout and tile distances shared with MIH), ``mih`` (multi-index
hashing's probes).

Codes arrive as packed bytes (np.packbits order); the engines view or zero-pad them to whole 64-bit words, which
changes no distance (zero XOR zero adds nothing). All kernels release the GIL so Python threads can run them on
query blocks.
"""
