"""What a route is handed: the app's ``ServiceState`` (index, settings, writer lock), its batchers and its
metrics, taken from the app that received the request, so several apps can live in one process (tests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .batcher import SearchBatchers
from .metrics import Metrics
from .state import ServiceState


async def service_state(request: Request) -> ServiceState:  # async: FastAPI runs a sync one on a thread
    return request.app.state.service


async def search_batchers(request: Request) -> SearchBatchers:
    return request.app.state.batchers


async def service_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


State = Annotated[ServiceState, Depends(service_state)]
Batchers = Annotated[SearchBatchers, Depends(search_batchers)]
ServiceMetrics = Annotated[Metrics, Depends(service_metrics)]
