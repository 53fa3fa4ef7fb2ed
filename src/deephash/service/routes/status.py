"""``GET /health``, ``GET /v1/info`` and ``GET /metrics``: what a monitor or the page asks about the server."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from ... import __version__
from ..deps import ServiceMetrics, State
from ..metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["status"])


@router.get("/health")
def health(state: State):
    return {"status": "ok", "count": len(state.index)}


@router.get("/v1/info")
def info(state: State):
    """The index: code length, size, engine, model and class names, and what this server accepts."""
    idx, settings = state.index, state.settings
    raw = idx.info()
    return {
        "bits": idx.bits, "count": len(idx), "engine": raw.get("engine"), "method": idx.method,
        "model": idx.model_name, "checkpoint": Path(idx.checkpoint).name if idx.checkpoint else None,
        "class_names": idx.class_names, "index_format": raw.get("format"), "index_version": raw.get("version"),
        "category_codes": raw.get("category_codes"), "modes": ["semantic", "category"] if idx.category else
        ["semantic"], "writable": bool(settings.token), "server_paths": bool(settings.allow_root),
        "max_upload_mb": settings.max_upload_mb, "version": __version__,
    }


@router.get("/metrics", response_class=Response)
def metrics(metrics: ServiceMetrics):
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
