"""Storage: engines, schema, migrations, the event log."""

from muster.store.engine import Store, Tx

__all__ = ["Store", "Tx"]
