"""Muster: the roll call for fleets of services and AI agents."""

from muster.errors import (
    Conflict,
    Expired,
    FailedPrecondition,
    Invalid,
    MusterError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "Conflict",
    "Expired",
    "FailedPrecondition",
    "Invalid",
    "MusterError",
    "NotFound",
    "ResourceExhausted",
    "Unavailable",
    "__version__",
]

__version__ = "0.1.0"
