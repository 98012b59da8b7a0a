"""Plum SDK for Python: a client of a Plum controller cluster with the Rust SDK's behaviour
(leader redirect, failover, deadlines, backoff with full jitter, per-replica circuit breakers,
no blind retry of a write whose outcome is unknown, KV with requestIds, a discovery cache fed
by a watch and served stale if the cluster is unreachable, register-and-heartbeat)."""

from ._core import Backoff, BreakerPolicy, Options
from .balance import Balancer
from .client import AsyncClient, Client
from .discovery import Discovered, DiscoveryOptions
from .errors import (Conflict, ConfigError, DecodeError, Forbidden, NotFound, OutcomeUnknown, PlumError,
                     StatusError, Unauthorized, Unreachable)
from .models import Endpoint, KvChange, KvItem, KvWritten, Query, VersionFilter
from .registration import Instance

__all__ = [
    "AsyncClient", "Backoff", "Balancer", "BreakerPolicy", "Client", "ConfigError", "Conflict", "DecodeError",
    "Discovered", "DiscoveryOptions", "Endpoint", "Forbidden", "Instance", "KvChange", "KvItem", "KvWritten",
    "NotFound", "Options", "OutcomeUnknown", "PlumError", "Query", "StatusError", "Unauthorized", "Unreachable",
    "VersionFilter",
]
__version__ = "0.1.0"
