"""The write of a registration: a new instance, or an upsert of one keyed by (name, instance_id).

Each is one store operation (``Store.write``): its rows and its one
``catalog.registered`` event commit together. The event's payload is the whole
service and ``reregistered`` (``False`` for a new instance, ``True`` for one
updated in place under the same ``service_id``), so every index that keeps
services by id, in every process, ends up with one instance either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from muster.catalog import store as q
from muster.catalog.model import RegisterInput, ServiceRecord, registered_record, reregistered_record
from muster.errors import Unavailable
from muster.identity.model import Principal, require_owner
from muster.store.engine import Tx

__all__ = ["new_instance", "upsert_instance"]

RegisterOp = Callable[[Tx], Awaitable[ServiceRecord]]
# Enough for every interleaving (see ``upsert_instance``), with one to spare.
_PASSES = 3


def _emit(tx: Tx, record: ServiceRecord, *, reregistered: bool) -> None:
    tx.emit("catalog.registered", record.service_id, {"service": record.to_dict(), "reregistered": reregistered})


def new_instance(data: RegisterInput) -> RegisterOp:
    """A registration without an ``instance_id``: always a new instance (the hot path, one insert)."""

    async def op(tx: Tx) -> ServiceRecord:
        record = registered_record(data, service_id=str(uuid.uuid4()), owner=tx.actor, now=tx.now)
        await q.insert_service(tx, record)
        _emit(tx, record, reregistered=False)
        return record

    return op


def upsert_instance(data: RegisterInput, principal: Principal) -> RegisterOp:
    """A registration with an ``instance_id``: update that instance of ``data.name`` in place, or insert it.

    ``principal`` is the caller (the operation runs in the store's writer task,
    which is nobody): re-registering another principal's instance is
    ``PermissionDenied`` unless it is an admin, and the owner never changes.

    The read locks the row (PostgreSQL) against a concurrent re-registration or
    deregistration. When there is no row, the insert skips on a conflict with
    the unique index: another process inserted the instance and committed while
    this one waited for it. The next pass reads that row (READ COMMITTED: a new
    snapshot per statement) and updates it. SQLite's writer holds the only write
    lock from ``BEGIN IMMEDIATE``, so there the read already sees every row and
    the insert never conflicts. No pass ends in an integrity error.
    """
    instance_id = data.instance_id
    if instance_id is None:
        raise ValueError("upsert_instance needs a registration with an instance_id")

    async def op(tx: Tx) -> ServiceRecord:
        for _ in range(_PASSES):
            previous = await q.get_instance(tx.conn, data.name, instance_id)
            if previous is not None:
                require_owner(principal, previous.owner, f"instance {instance_id} of {data.name}")
                record = reregistered_record(previous, data, tx.now)
                if await q.update_instance(tx.conn, record):
                    _emit(tx, record, reregistered=True)
                    return record
            else:
                record = registered_record(data, service_id=str(uuid.uuid4()), owner=tx.actor, now=tx.now)
                if await q.insert_instance(tx, record):
                    _emit(tx, record, reregistered=False)
                    return record
        raise Unavailable(f"instance {instance_id} of {data.name} kept changing under this registration; retry")

    return op
