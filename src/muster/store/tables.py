"""Every table of every context on one metadata (for migrations and their check)."""

from muster.catalog import schema as catalog_schema
from muster.graph import schema as graph_schema
from muster.identity import schema as identity_schema
from muster.leases import schema as leases_schema
from muster.store.schema import metadata

__all__ = ["catalog_schema", "graph_schema", "identity_schema", "leases_schema", "metadata"]
