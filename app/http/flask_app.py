"""The service's Flask class: Flask, asking once per view or hook whether it is async.

Flask calls ``ensure_sync`` on the view and on every hook of every request
(nine or more for a heartbeat: the limiter's, the key check, the metrics, the
connection's), and each call inspects the function again to tell a coroutine
function from a plain one. ``ensure_sync`` is the method Flask documents for
overriding; here it remembers the plain functions it has seen (README,
Performance). An ``async def`` view or hook is still handed to Flask every time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask


class ServiceFlask(Flask):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # By id, each entry a weak reference that removes it when its function goes (a
        # function registered for one request, after_this_request, leaves with it). A
        # lookup makes no object: a WeakSet would make a new weak reference every time.
        self._plain_callables: dict[int, weakref.ref[Callable[..., Any]]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self._plain_callables.get(id(func))
        # The same id is another object once the first is gone: compare the referent.
        if known is not None and known() is func:
            return func
        sync = super().ensure_sync(func)
        if sync is func:
            self._remember(func)
        return sync

    def _remember(self, func: Callable[..., Any]) -> None:
        key = id(func)
        entries = self._plain_callables

        def forget(ref: weakref.ref[Callable[..., Any]]) -> None:
            if entries.get(key) is ref:  # not a newer function's entry under a reused id
                del entries[key]

        try:
            entries[key] = weakref.ref(func, forget)
        except TypeError:  # cannot be weakly referenced: Flask decides every time
            pass
