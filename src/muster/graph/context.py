"""The graph context's plug-in: built by the composition root, it wires the service to the doors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from muster.graph.service import GraphService

__all__ = ["GraphContext", "build"]


class GraphContext:
    name = "graph"

    def __init__(self, runtime: Any) -> None:
        self.service = GraphService(runtime.store, runtime.hub)

    async def load(self) -> None:
        await self.service.load()

    def start(self) -> None:
        """Nothing runs in the background: the hub applies events to the index."""

    async def close(self) -> None:
        """Nothing to release: the store and hub belong to the runtime."""

    def http_router(self) -> APIRouter:
        from muster.graph.http import router

        return router(self.service)

    def add_grpc(self, server: Any) -> list[str]:
        from muster._proto.muster.v1 import graph_pb2, graph_pb2_grpc
        from muster.graph.grpc import GraphServicer

        graph_pb2_grpc.add_GraphServicer_to_server(GraphServicer(self.service), server)
        return [graph_pb2.DESCRIPTOR.services_by_name["Graph"].full_name]


def build(runtime: Any) -> GraphContext:
    """Create the graph context and hand the catalog its impact hook."""
    context = GraphContext(runtime)
    runtime.catalog.impact_provider = context.service.impacted_services
    return context
