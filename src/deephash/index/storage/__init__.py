"""On-disk index: a directory of versioned files named by an atomically replaced manifest.

Layout of ``idx/``::

    manifest.json           format, bits, count, engine params, checkpoint, file names + sha256
    codes.<tag>.npy         (count, bits/8) uint8, np.packbits order, memory-mappable
    ids.<tag>.npy           (count,) int64
    meta.<tag>.sqlite       per-id path, labels and free-form JSON
    table-<engine>-<array>.<tag>.npy   the default engine's built search tables (MIH), when it has any
    features.<tag>.npy      optional: (count, dim) float16, one float vector per code, in the same order
                            (the model's pooled features, for re-ranking a Hamming search by cosine)
    .lock                   flock'ed by every writer for its whole load-modify-save (``index_lock``)

Modules: ``locking`` (the writer lock), ``metadata`` (the SQLite metadata store), ``manifest`` (the versioned
file set: save and load), ``errors`` (how their failures read). This package names their public API.

A save writes a fresh file set under a new tag (temp file, fsync, rename), then replaces
manifest.json in one rename, and only then deletes the data files neither the new nor the
previous manifest names. A process killed at any moment therefore leaves either the old or
the new manifest, each pointing at complete files. Load checks the manifest's fields, sizes
and checksums and refuses anything else.

Readers take no lock. A reader that read the previous manifest still finds its files (they are
kept for one more version); a reader that fell two versions behind finds a file missing and
re-reads the manifest once. Once loaded, an index holds its files open (the codes memory-mapped
or read, the SQLite file connected), so later deletions do not affect it.

Writers in different processes (or threads) are serialised by ``index_lock``: an exclusive
``fcntl.flock`` on ``<index>/.lock``, released by the kernel when its process dies, so a killed
writer never leaves a stale lock. A save back to the folder an index was loaded from also checks
that nobody saved a newer version meanwhile (else an update would be lost).
"""

from .locking import (
           LOCK_NAME,
           LOCK_TIMEOUT,
           LOCK_TIMEOUT_ENV,
           IndexLockedError,
           index_lock,
           lock_timeout,
)
from .manifest import (
           FORMAT,
           MANIFEST,
           TABLE_KEY,
           check_target,
           load_index,
           load_tables,
           read_manifest,
           save_index,
)
from .metadata import MetadataStore

__all__ = ["FORMAT", "LOCK_NAME", "LOCK_TIMEOUT", "LOCK_TIMEOUT_ENV", "MANIFEST", "TABLE_KEY", "IndexLockedError",
           "MetadataStore", "check_target", "index_lock", "load_index", "load_tables", "lock_timeout", "read_manifest",
           "save_index"]
