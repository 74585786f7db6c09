"""The service's Flask class: Flask, asking once per view or hook whether it is async.

Flask calls ``ensure_sync`` on the view and on every hook of every request
(nine or more for a heartbeat: the limiter's, the key check, the metrics, the
connection's), and each call inspects the function again to tell a coroutine
function from a plain one. ``ensure_sync`` is the method Flask documents for
overriding; here it remembers the plain functions it has seen, which cut a
heartbeat's instructions by about 0.5 % (README, Performance). An ``async def``
view or hook is still handed to Flask every time, as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask


class ServiceFlask(Flask):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Weak: a function registered for one request (after_this_request) leaves with it.
        self._plain_callables: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            if func in self._plain_callables:
                return func
        except TypeError:  # cannot be weakly referenced: Flask decides every time
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if sync is func:
            self._plain_callables.add(func)
        return sync
