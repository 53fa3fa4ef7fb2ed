"""The service's endpoints, one module per concern, each with a module-level ``router`` (a FastAPI
``APIRouter``). ``routers()`` finds them by a package scan, so a new endpoint is one new module here (plus its
tests) and nothing to register: docs/architecture.md."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every ``router`` in this package's modules, in module-name order (a module without one is a helper)."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"{__name__}.{info.name}"), "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found
