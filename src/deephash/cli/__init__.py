"""Command-line interface: ``deephash <command>``. Bad input ends in one ``error:`` line."""

from __future__ import annotations

# Command modules register themselves on ``app`` when imported.
from . import demo, dupes, encode, evaluate, iah, index, search, serve, train, up, version  # noqa: F401,E402
from ._app import app, fail


def main(argv: list[str] | None = None) -> None:
    quiet_third_party_warnings()
    app(args=argv, standalone_mode=True)


def quiet_third_party_warnings() -> None:
    """Hide warnings raised inside other packages (milvus_lite's pkg_resources deprecation, a library's
    FutureWarning): they address those packages' authors, and a user reading a command's output can do nothing
    about them. deephash's own warnings still show, and so does everything when the user asks for warnings
    (``python -W ...``, ``PYTHONWARNINGS``)."""
    import sys
    import warnings

    if sys.warnoptions:
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"deephash(\.|$)")


__all__ = ["app", "fail", "main", "quiet_third_party_warnings"]
