"""A service or tool a test needs is not there: skip locally, fail under CI.

The helpers the benchmarks share raise ``Unavailable`` (no pytest there); the
fixtures turn it into a skip, or into a failure when CI is set, so a CI run
never reports a check it could not make as passed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


class Unavailable(Exception):
    """Postgres, Redis or a program is missing; the message says which and how to get it."""


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def skip_or_fail_when_unavailable() -> Iterator[None]:
    try:
        yield
    except Unavailable as exc:
        skip_or_fail(str(exc))
