"""Graph integration fixtures: a runtime on a fake clock, and helpers to write graphs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.graph.model import UpsertDependenciesInput, UpsertServicesInput
from muster.graph.service import GraphService
from muster.validation import parse
from tests.conftest import settings_for as make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked_runtime(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    """The whole service layer on a fresh database, its time driven by ``clock``."""
    from muster.server import build_runtime, close_runtime

    built = await build_runtime(make_settings(db_url, tmp_path), clock=clock)
    try:
        yield built
    finally:
        await close_runtime(built)


@pytest.fixture
async def second_graph(clocked_runtime: Any, db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    """The graph service of a second process on the same database: its own store, event hub and index."""
    from muster.server import build_runtime, close_runtime

    other = await build_runtime(make_settings(db_url, tmp_path / "second"), clock=clock)
    try:
        yield other.contexts["graph"].service
    finally:
        await close_runtime(other)


@pytest.fixture
def graph(clocked_runtime: Any) -> GraphService:
    service: GraphService = clocked_runtime.contexts["graph"].service
    return service


async def put_edges(graph: GraphService, *edges: tuple[str, str] | tuple[str, str, str], **extra: Any) -> Any:
    items = [
        {"source_service_id": e[0], "target_service_id": e[1], "criticality": e[2] if len(e) == 3 else "hard", **extra}
        for e in edges
    ]
    return await graph.upsert_dependencies(parse(UpsertDependenciesInput, {"dependencies": items}))


async def put_services(graph: GraphService, *services: dict[str, Any]) -> Any:
    return await graph.upsert_services(parse(UpsertServicesInput, {"services": list(services)}))
