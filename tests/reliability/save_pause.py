"""Test helper, imported in a process that saves an index: each save then pauses for ``$DEEPHASH_TEST_SAVE_PAUSE``
seconds (read at every save) after its data files are written and before its manifest swap, holding the folder's
lock, so a test can SIGKILL a writer at that moment or make two writers overlap. Kept out of the library: it
wraps the manifest module's ``atomic_write``."""

import os
import time

from deephash.index.storage import manifest

ENV = "DEEPHASH_TEST_SAVE_PAUSE"
_write = manifest.atomic_write


def _paused_write(path, write):
    if path.name == manifest.MANIFEST and os.environ.get(ENV):
        time.sleep(float(os.environ[ENV]))
    return _write(path, write)


manifest.atomic_write = _paused_write
