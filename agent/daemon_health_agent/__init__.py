"""Keep a daemon registered and heartbeating with the daemon health service.

Standard library only, so it can go into any daemon without dragging in
dependencies. See README.md for library and command use.
"""

from __future__ import annotations

import logging

from daemon_health_agent.client import (
    AgentError,
    Client,
    LeaseHeld,
    NotRegistered,
    RequestRejected,
    ServiceUnavailable,
    parse_retry_after,
)
from daemon_health_agent.heartbeater import Heartbeater, Session
from daemon_health_agent.leader import Leader

__version__ = "0.1.0"
__all__ = [
    "AgentError",
    "Client",
    "Heartbeater",
    "Leader",
    "LeaseHeld",
    "NotRegistered",
    "RequestRejected",
    "ServiceUnavailable",
    "Session",
    "parse_retry_after",
]

# A library must not print anything unless its host configured logging.
logging.getLogger("daemon_health_agent").addHandler(logging.NullHandler())
